"""Provenance of a run: file hashes, package versions, the machine, the device and the source.

:func:`vemkit.tour.tour` records these in ``tour.json`` and its report. Not for: running anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

from ._device import resolve_device

__all__ = ["children_peak_rss", "device_info", "folder_files", "load_average", "machine_info", "package_versions",
           "sha256_file", "source_info"]


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict:
    """Python's and the installed versions of vemkit and the packages it runs on (None where missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("vemkit", "torch", "numpy", "scipy", "scikit-image", "scikit-learn", "dask", "distributed",
                 "zarr", "ome-zarr", "tifffile", "pandas", "matplotlib", "papermill", "ipykernel", "pooch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict:
    """Platform, processor, CPU count, memory (GiB) and host name."""
    import platform

    memory = None
    with contextlib.suppress(AttributeError, ValueError, OSError):
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
            "memory_gib": memory, "hostname": platform.node()}


def load_average():
    """The machine's 1, 5 and 15 minute load averages (None where the system does not say)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def children_peak_rss():
    """Peak resident memory of the largest finished child process (a notebook's kernel, or a process it
    started), in GiB; None where the system does not say."""
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(kib / (2**30 if sys.platform == "darwin" else 2**20), 2)


def device_info(device: str) -> dict:
    """The device ``device`` resolves to, with its name and memory and torch's versions (a missing one raises)."""
    dev = resolve_device(device)
    import torch

    info = {"requested": device, "resolved": str(dev), "torch": torch.__version__, "cuda": torch.version.cuda}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev.index or 0)
        info["name"] = props.name
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
    elif dev.type == "cpu":
        info["name"] = f"CPU ({os.cpu_count()} cores)"
    else:
        info["name"] = "Apple GPU (MPS)"
    return info


def source_info() -> dict:
    """Where the running vemkit lives, with its git commit and whether it has uncommitted changes."""
    import subprocess

    here = Path(__file__).resolve().parent  # the vemkit package
    info = {"package": str(here)}
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(here.parent.parent), "status", "--porcelain", "--",
                                    "helpers", "notebooks"], capture_output=True, text=True, timeout=10)
            info["uncommitted_changes"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def folder_files(folder) -> list[dict]:
    """Every file under ``folder`` with its SHA-256 and size ([] when it is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [{"path": str(p.relative_to(folder)), "sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file()]
