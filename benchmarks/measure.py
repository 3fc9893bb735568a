"""Time and peak memory of measuring a large instance-label volume: vemkit beside scikit-image.

Writes a label volume of ``--shape`` voxels (uint32 OME-Zarr, outside the repository) filled with
ellipsoidal objects about ``--spacing`` voxels apart, each with its own id, block by block (memory: one
block). Then, each in a fresh child process so peak RSS is its own:

- vemkit: ``regionprops_blockwise`` on the OME-Zarr (volume, centroid, axes, bbox, n_sections by
  default; ``--surface`` adds per-object surface areas);
- peer: ``skimage.measure.regionprops_table`` (area, centroid, bbox, axis lengths) on the whole volume
  in memory, when it fits ``--peer-max-gb`` (otherwise on the first z slab of that size, scaled
  per voxel, and said so).

Run from the project root::

    python benchmarks/measure.py --shape 1000,1000,1000 --spacing 20      # 1e9 voxels, ~125 000 objects
    python benchmarks/measure.py --shape 128,512,512 --spacing 16         # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VOXEL = (30.0, 8.0, 8.0)

PEAK_WRAPPER = r"""
import json, resource, sys, time
kind, path, report, extra = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
t0 = time.perf_counter()
if kind == "vemkit":
    from vemkit.io import open_volume
    from vemkit.measure import regionprops_blockwise
    props = ("volume", "centroid", "axes", "bbox") + (("surface",) if extra["surface"] else ())
    df = regionprops_blockwise(open_volume(path), voxel_size=tuple(extra["voxel"]), properties=props,
                               block=tuple(extra["block"]), progress=False)
    n = len(df)
else:
    import numpy as np, zarr
    from skimage.measure import regionprops_table
    arr = zarr.open_group(path, mode="r")["0"]
    labels = np.asarray(arr[: extra["z"]])
    table = regionprops_table(labels, properties=("label", "area", "centroid", "bbox", "axis_major_length",
                                                  "axis_minor_length"), spacing=tuple(extra["voxel"]))
    n = len(table["label"])
wall = time.perf_counter() - t0
open(report, "w").write(json.dumps({"wall_s": wall, "objects": n,
                                    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def make_labels(path: Path, shape, spacing: int, block, seed=0):
    """Ellipsoids on a jittered grid, one id each, written block by block (z slabs)."""
    from vemkit.io import write_ome_zarr
    import dask.array as da

    rng = np.random.default_rng(seed)
    Z, Y, X = shape
    cz, cy, cx = [np.arange(spacing // 2, n, spacing) for n in shape]
    centres = np.stack(np.meshgrid(cz, cy, cx, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    centres += rng.uniform(-spacing / 5, spacing / 5, centres.shape)
    radii = rng.uniform(spacing * 0.2, spacing * 0.4, centres.shape) * np.array([0.4, 1.0, 1.0])
    ids = np.arange(1, len(centres) + 1, dtype=np.uint32)
    r_max = int(np.ceil(radii.max())) + 1

    def fill(block_info=None):
        (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        out = np.zeros((z1 - z0, y1 - y0, x1 - x0), np.uint32)
        near = np.all((centres >= np.array([z0, y0, x0]) - r_max) & (centres < np.array([z1, y1, x1]) + r_max), axis=1)
        for c, r, i in zip(centres[near], radii[near], ids[near]):
            lo = np.maximum(np.floor(c - r).astype(int), [z0, y0, x0])
            hi = np.minimum(np.ceil(c + r).astype(int) + 1, [z1, y1, x1])
            if np.any(hi <= lo):
                continue
            zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
            view = out[lo[0] - z0:hi[0] - z0, lo[1] - y0:hi[1] - y0, lo[2] - x0:hi[2] - x0]
            view[inside] = i
        return out

    chunks = tuple(tuple(min(b, n - s) for s in range(0, n, b)) for b, n in zip(block, shape))
    lazy = da.map_blocks(fill, dtype=np.uint32, chunks=chunks, meta=np.empty((0, 0, 0), np.uint32))
    write_ome_zarr(lazy, path, voxel_size=VOXEL, kind="labels", levels=1, chunks=block, overwrite=True)
    return len(centres)


def run(kind, path, work, extra):
    report = work / f"{kind}.json"
    subprocess.run([sys.executable, "-c", PEAK_WRAPPER, kind, str(path), str(report), json.dumps(extra)], check=True)
    return json.loads(report.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1000,1000,1000")
    parser.add_argument("--spacing", type=int, default=20, help="voxels between object centres")
    parser.add_argument("--block", default="64,256,256")
    parser.add_argument("--surface", action="store_true", help="also per-object surface areas (slower)")
    parser.add_argument("--peer-max-gb", type=float, default=4.0, help="largest label array given to skimage")
    parser.add_argument("--workdir", default="/tmp/vemkit-measure-bench")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    block = tuple(int(v) for v in args.block.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "labels.ome.zarr"
    t0 = time.perf_counter()
    n_objects = make_labels(path, shape, args.spacing, block)
    n_vox = int(np.prod(shape))
    print(f"labels {shape} = {n_vox / 1e9:.2f} G voxels, {n_objects} objects placed, written in {time.perf_counter() - t0:.0f} s")
    v = run("vemkit", path, work, {"voxel": VOXEL, "block": block, "surface": args.surface})
    print(f"vemkit regionprops_blockwise: {v['wall_s']:.1f} s, {v['objects']} objects, peak RSS {v['peak_rss_gb']:.2f} GB")
    z_peer = min(shape[0], max(1, int(args.peer_max_gb * 1e9 / (4 * shape[1] * shape[2]))))
    p = run("skimage", path, work, {"voxel": VOXEL, "z": z_peer})
    scale = shape[0] / z_peer
    note = "" if z_peer == shape[0] else f" on the first {z_peer} sections ({1 / scale:.0%} of the voxels)"
    print(f"skimage regionprops_table{note}: {p['wall_s']:.1f} s, {p['objects']} objects, peak RSS {p['peak_rss_gb']:.2f} GB")
    per_voxel = (p["wall_s"] * scale) / v["wall_s"]
    print(f"time per voxel, skimage/vemkit: {per_voxel:.2f}x")
    print(json.dumps({"shape": shape, "objects": n_objects, "vemkit": v, "skimage": {**p, "sections": z_peer}}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
