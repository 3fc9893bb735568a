"""``vemkit info``, ``fetch`` and ``convert``: look at a volume, download a dataset, write OME-Zarr.

Not for: the reading, fetching and writing themselves (:mod:`vemkit.io`, :mod:`vemkit.datasets`).
"""

from __future__ import annotations

import json
import sys

from ..datasets import fetch, get_entry, list_datasets
from ..io import open_volume, write_ome_zarr
from ._options import add_common, add_volume_args, triple_arg

__all__ = ["COMMANDS"]


def volume_summary(vol) -> dict:
    """What ``vemkit info`` says about a :class:`vemkit.io.Volume`."""
    return {
        "source": vol.source,
        "format": vol.metadata.get("format"),
        "shape_zyx": list(vol.shape),
        "dtype": str(vol.dtype),
        "voxel_size_nm_zyx": list(vol.voxel_size) if vol.voxel_size else None,
        "voxel_size_from_file": bool(vol.metadata.get("voxel_size_from_file")),
        "anisotropy_z_over_xy": round(vol.anisotropy, 3) if vol.anisotropy else None,
        "physical_size_um_zyx": [round(n * v / 1000, 4) for n, v in zip(vol.shape, vol.voxel_size)]
        if vol.voxel_size else None,
        "chunks_zyx": [int(c[0]) for c in vol.data.chunks],
        "size_bytes": int(vol.nbytes),
        "levels": vol.metadata.get("levels", 1),
    }


def add_info(sub):
    p = sub.add_parser("info", help="describe a volume file: shape, dtype, voxel size, chunks, size")
    p.add_argument("path", help="file, folder or glob (file.h5:/dataset for containers)")
    add_volume_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)


def run_info(args):
    vol = open_volume(args.path, voxel_size=args.voxel_size, level=args.level, channel=args.channel,
                      warn_missing_voxel_size=False)
    info = volume_summary(vol)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    width = max(len(k) for k in info)
    for k, v in info.items():
        if k == "voxel_size_nm_zyx" and v is None:
            v = "UNKNOWN (the file does not say; pass --voxel-size Z,Y,X)"
        if k == "size_bytes":
            v = f"{v} ({v / 2**30:.3f} GiB)"
        print(f"{k:<{width}}  {v}")
    return 0


def add_fetch(sub):
    p = sub.add_parser("fetch", help="download and verify a dataset of the manifest (--list to see them)")
    p.add_argument("name", nargs="?", help="dataset name")
    p.add_argument("--list", action="store_true", help="list the datasets")
    add_common(p, quiet=True)
    p.set_defaults(func=run_fetch)


def run_fetch(args):
    if args.list or not args.name:
        for name in list_datasets():
            e = get_entry(name)
            sizes = [f.get("size") for f in e["files"]]
            size = f"{sum(sizes) / 1e6:8.1f} MB" if all(sizes) else f"{'size ?':>11}"
            loads = "" if e.get("volumes") else "  [fetch only]"
            print(f"{name:<22} {e.get('modality', ''):<9} {size}  {e['title']}{loads}")
        return 0
    folder = fetch(args.name, progress=not args.quiet)
    entry = get_entry(args.name)
    print(f"{args.name}: {len(entry['files'])} files verified (SHA-256) in {folder}")
    print(f"licence: {entry.get('licence')}\ncite: {entry.get('citation')}")
    return 0


def add_convert(sub):
    p = sub.add_parser("convert", help="convert a volume to multiscale OME-Zarr, block by block")
    p.add_argument("input")
    p.add_argument("output", help="target, e.g. volume.ome.zarr (never the input, a folder holding it, or "
                                  "with --overwrite anything vemkit did not write)")
    add_volume_args(p)
    p.add_argument("--chunks", type=triple_arg("--chunks"), metavar="Z,Y,X")
    p.add_argument("--levels", type=int, default=None, help="pyramid levels incl. full size")
    p.add_argument("--ome-version", choices=["0.4", "0.5"], default="0.4")
    p.add_argument("--memory", default="256MB", help="source data held at once (default 256MB)")
    add_common(p, overwrite=True, quiet=True)
    p.set_defaults(func=run_convert)


def run_convert(args):
    vol = open_volume(args.input, voxel_size=args.voxel_size, level=args.level, channel=args.channel,
                      warn_missing_voxel_size=False)
    if vol.voxel_size is None:  # the API says voxel_size=; say which option gives it
        print(f"error: {args.input} does not say its voxel size; pass --voxel-size Z,Y,X (nm). "
              "vemkit never assumes one.", file=sys.stderr)
        return 2
    out = write_ome_zarr(
        vol, args.output, chunks=args.chunks, levels=args.levels, version=args.ome_version,
        overwrite=args.overwrite, memory_limit=args.memory, progress=not args.quiet,
    )
    print(f"wrote {out} ({vol.shape} {vol.dtype}, voxel size {vol.voxel_size} nm, OME-Zarr {args.ome_version})")
    return 0


#: The commands of this module, in the order ``vemkit --help`` lists them.
COMMANDS = (add_info, add_fetch, add_convert)
