"""The ``vemkit`` command line: the package's steps without a notebook.

Each sub-command is a thin wrapper over one public function; run ``vemkit COMMAND --help``.
Not for: logic of its own (that lives in the modules it calls).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser"]


def _volume_summary(vol) -> dict:
    data = vol.data
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
        "chunks_zyx": [int(c[0]) for c in data.chunks],
        "size_bytes": int(vol.nbytes),
        "levels": vol.metadata.get("levels", 1),
    }


def _cmd_info(args):
    from .io import open_volume

    vol = open_volume(args.path, voxel_size=args.voxel_size, level=args.level, channel=args.channel,
                      warn_missing_voxel_size=False)
    info = _volume_summary(vol)
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


def _cmd_fetch(args):
    from .datasets import fetch, get_entry, list_datasets

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


def _cmd_convert(args):
    from .io import open_volume, write_ome_zarr

    vol = open_volume(args.input, voxel_size=args.voxel_size, level=args.level, channel=args.channel,
                      warn_missing_voxel_size=False)
    if vol.voxel_size is None:
        print(
            f"error: {args.input} does not say its voxel size; pass --voxel-size Z,Y,X (nm). "
            "vemkit never assumes one.",
            file=sys.stderr,
        )
        return 2
    out = write_ome_zarr(
        vol, args.output, chunks=args.chunks, levels=args.levels, version=args.ome_version,
        overwrite=args.overwrite, memory_limit=args.memory, progress=not args.quiet,
    )
    print(f"wrote {out} ({vol.shape} {vol.dtype}, voxel size {vol.voxel_size} nm, OME-Zarr {args.ome_version})")
    return 0


def _triple(kind):
    def parse(text):
        from ._voxel import parse_voxel_size

        if kind == "voxel":
            return parse_voxel_size(text)
        try:
            vals = tuple(int(p) for p in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected Z,Y,X integers, got {text!r}") from None
        if len(vals) != 3 or min(vals) < 1:
            raise argparse.ArgumentTypeError(f"expected three positive integers Z,Y,X, got {text!r}")
        return vals

    def wrapped(text):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return wrapped


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vemkit`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="vemkit",
        description="vemkit: from a raw volume-EM stack to measured organelles.",
    )
    parser.add_argument("--version", action="version", version=f"vemkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def volume_args(p):
        p.add_argument("--voxel-size", type=_triple("voxel"), metavar="Z,Y,X",
                       help="voxel size in nm; overrides the file's")
        p.add_argument("--level", type=int, default=0, help="resolution level of a multiscale file")
        p.add_argument("--channel", type=int, default=None, help="channel to take from multichannel/RGB files")

    p = sub.add_parser("info", help="describe a volume file: shape, dtype, voxel size, chunks, size")
    p.add_argument("path", help="file, folder or glob (file.h5:/dataset for containers)")
    volume_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("fetch", help="download and verify a dataset of the manifest (--list to see them)")
    p.add_argument("name", nargs="?", help="dataset name")
    p.add_argument("--list", action="store_true", help="list the datasets")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("convert", help="convert a volume to multiscale OME-Zarr, block by block")
    p.add_argument("input")
    p.add_argument("output", help="target, e.g. volume.ome.zarr")
    volume_args(p)
    p.add_argument("--chunks", type=_triple("int"), metavar="Z,Y,X")
    p.add_argument("--levels", type=int, default=None, help="pyramid levels incl. full size")
    p.add_argument("--ome-version", choices=["0.4", "0.5"], default="0.4")
    p.add_argument("--memory", default="256MB", help="source data held at once (default 256MB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_convert)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, IndexError, ConnectionError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
