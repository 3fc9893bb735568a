"""Peak memory and time of converting a large TIFF to OME-Zarr: vemkit beside ome-zarr-py.

Writes a synthetic EM-like BigTIFF (OME-TIFF with voxel size) of ``--size-gb`` gigabytes section by
section, then converts it twice, each in a fresh child process so that peak RSS is the conversion's
alone:

- vemkit: ``vemkit convert IN OUT.ome.zarr`` (streams chunk-aligned slabs, builds the pyramid from disk)
- peer:   ome-zarr-py ``write_image`` on the same lazy dask array (tifffile's zarr store)

and prints peak RSS, wall time and their ratios. The vemkit target: peak RSS under 1 GB for >= 4 GB.

Run from the project root::

    python benchmarks/convert_memory.py --size-gb 4.3 --workdir /tmp/vemkit-bench
    python benchmarks/convert_memory.py --size-gb 1 --skip-peer      # quicker

Generated data goes to --workdir (outside the repository) and is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VOXEL = (30.0, 8.0, 8.0)

PEER_SCRIPT = r"""
import sys, tifffile, zarr, dask.array as da
from ome_zarr.writer import write_image
from ome_zarr.format import FormatV04
src, out = sys.argv[1], sys.argv[2]
store = tifffile.imread(src, aszarr=True)
arr = da.from_zarr(zarr.open(store, mode="r"))
root = zarr.open_group(out, mode="w", zarr_format=2)
write_image(arr, root, axes="zyx", fmt=FormatV04(), scale={"z": 30.0, "y": 8.0, "x": 8.0},
            axes_units={a: "nanometer" for a in "zyx"},
            scale_factors=[{"z": 1, "y": 2 ** i, "x": 2 ** i} for i in range(1, 5)],
            storage_options={"chunks": (64, 256, 256)})
"""


def make_tiff(path: Path, shape, seed=0):
    """An OME BigTIFF written one section at a time (memory: one section)."""
    import tifffile

    z, y, x = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:y, 0:x].astype(np.float32)
    base = 140 + 40 * np.sin(yy / 97.0) * np.cos(xx / 131.0)

    def sections():
        for i in range(z):
            noise = rng.normal(0, 12, size=(y, x)).astype(np.float32)
            yield np.clip(base + noise - 0.05 * i, 0, 255).astype(np.uint8)

    tifffile.imwrite(
        path, sections(), shape=shape, dtype=np.uint8, bigtiff=True, ome=True, photometric="minisblack",
        metadata={"axes": "ZYX", **{f"PhysicalSize{a}": v for a, v in zip("ZYX", VOXEL)},
                  **{f"PhysicalSize{a}Unit": "nm" for a in "ZYX"}},
    )


# Runs a module (-m NAME) or a script in this child process, then reports the child's own peak RSS.
PEAK_WRAPPER = r"""
import resource, runpy, sys
report, kind, target, *argv = sys.argv[1:]
sys.argv = [target, *argv]
try:
    if kind == "-m":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
except SystemExit as e:
    if e.code not in (0, None):
        raise
finally:
    open(report, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run_child(kind, target, args, work: Path) -> tuple[float, float]:
    """Run a module or script in a fresh child process; return (wall seconds, its peak RSS in GB)."""
    report = work / "peak_rss_kib.txt"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(report), kind, target, *args], check=True)
    wall = time.perf_counter() - t0
    return wall, int(report.read_text()) / 2**20  # ru_maxrss is in KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=4.3, help="TIFF size in GB (default 4.3)")
    parser.add_argument("--workdir", default="/tmp/vemkit-convert-bench")
    parser.add_argument("--skip-peer", action="store_true", help="do not run ome-zarr-py")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    side = 4096
    z = max(1, math.ceil(args.size_gb * 1e9 / (side * side)))
    shape = (z, side, side)
    tif = work / "volume.ome.tif"
    t0 = time.perf_counter()
    make_tiff(tif, shape)
    print(f"wrote {tif}: shape {shape} uint8, {tif.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s")

    results = {}
    out = work / "vemkit.ome.zarr"
    shutil.rmtree(out, ignore_errors=True)
    wall, rss = run_child("-m", "vemkit.cli", ["convert", str(tif), str(out), "--quiet"], work)
    results["vemkit"] = {"wall_s": wall, "peak_rss_gb": rss}
    print(f"vemkit convert : {wall:7.1f} s, peak RSS {rss:.3f} GB")

    if not args.skip_peer:
        peer_out = work / "peer.ome.zarr"
        shutil.rmtree(peer_out, ignore_errors=True)
        script = work / "peer.py"
        script.write_text(PEER_SCRIPT)
        try:
            wall, rss = run_child("-f", str(script), [str(tif), str(peer_out)], work)
            results["ome-zarr-py"] = {"wall_s": wall, "peak_rss_gb": rss}
            print(f"ome-zarr-py    : {wall:7.1f} s, peak RSS {rss:.3f} GB")
        except subprocess.CalledProcessError as err:
            print(f"ome-zarr-py failed: {err}")

    volume_gb = np.prod(shape) / 1e9
    print(f"\nvolume: {volume_gb:.2f} GB ({shape}); vemkit peak RSS {results['vemkit']['peak_rss_gb']:.3f} GB "
          f"({'under' if results['vemkit']['peak_rss_gb'] < 1 else 'OVER'} the 1 GB target)")
    if "ome-zarr-py" in results:
        v, p = results["vemkit"], results["ome-zarr-py"]
        print(f"ratios peer/vemkit: time {p['wall_s'] / v['wall_s']:.2f}x, peak RSS {p['peak_rss_gb'] / v['peak_rss_gb']:.2f}x")
    print(json.dumps({"shape": shape, "volume_gb": volume_gb, **results}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
