"""Blockwise inference at scale: vemkit's ``predict_volume`` beside MONAI's ``sliding_window_inference``.

Both run the same U-Net with the same weights on the same uint8 OME-Zarr volume in one process, end to
end: read from zarr, normalise (the model's fixed range), run the network, softmax + argmax to uint8
labels, write to a zarr array with the same chunks.

- vemkit: ``predict_volume(model, image, out, labels=True, pyramid=False)`` with its planned block and
  halo (printed), BatchNorm folded into the convolutions, channels-last, the decoder run only inside
  each block, reading and writing overlapped with compute.
- MONAI (the peer most users would pick): the whole volume read into memory, normalised the same way,
  ``sliding_window_inference(x, roi_size=<training patch>, sw_batch_size=<4 on GPU, 1 on CPU>,
  predictor=<the module>, overlap=0.25, mode="gaussian")`` under ``torch.inference_mode`` (and the same
  autocast dtype as vemkit on CUDA), softmax, argmax, written to zarr.

The methods alternate in order over ``--repeats`` runs; medians are printed with the ratio, and the
fraction of voxels on which the two label volumes agree. Peak host memory (``ru_maxrss``) and peak
device memory (``torch.cuda.max_memory_allocated``) of each method come from a fresh child process per
method (``--only vemkit|monai``), so that one method's peak is not the other's. The device, CPU model,
core and thread counts, torch and MONAI versions and the load average are printed with every figure.

``--memory-test GB`` runs a GB-sized volume through a small model (vemkit, peak host memory) and
prints what MONAI would need for it (whole input, output, count map, softmax and argmax), measured
on a sub-volume and scaled.

Run from the project root (generated volumes are cached in --workdir, outside the repository)::

    python benchmarks/inference.py                          # default 3D U-Net, default volume
    python benchmarks/inference.py --shape 256,1024,1024 --repeats 5      # on a GPU
    python benchmarks/inference.py --memory-test 4          # 4 GB volume, tiny model, peak RSS
    python benchmarks/inference.py --quick                  # smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VOXEL = (8.0, 8.0, 8.0)  # isotropic, FIB-SEM-like
CLASSES = ["background", "mito"]
NORMALIZATION = {"mode": "fixed", "low": 0, "high": 255}
VOLUME_VERSION = 1  # bump when the generator changes, so cached volumes are rebuilt
MONAI_OVERLAP = 0.25


# ------------------------------------------------------------------------------------------- inputs
def make_model(size: str, ndim: int, seed: int = 0):
    """The default 3D U-Net (``size="small"``: 16 base channels, 4 poolings) or another size, random
    weights and non-trivial BatchNorm running statistics, in eval mode."""
    import torch

    from vemkit.models import UNET_SIZES, SegmentationModel, UNet

    base, depth = UNET_SIZES[size]
    torch.manual_seed(seed)
    net = UNet(ndim=ndim, base_channels=base, depth=depth, voxel_size=VOXEL, out_channels=len(CLASSES))
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    net.eval()
    # random weights put every voxel in one class; shift the head's bias so that both classes occur
    # (about half each on this benchmark's volumes), so that the agreement figure means something
    side = [d * max(1, math.ceil(32 / d)) for d in net.divisor]
    loc = [(0, side[0] if ndim == 3 else 1), (0, side[-2]), (0, side[-1])]
    sample = _volume_block({None: {"array-location": loc}}).astype(np.float32) / 255.0
    with torch.inference_mode():
        x = torch.from_numpy(sample)[None, None] if ndim == 3 else torch.from_numpy(sample)[:, None]
        logits = net(x)
        net.head.bias[1] -= float(torch.median(logits[:, 1] - logits[:, 0]))
    return SegmentationModel(net, list(CLASSES), voxel_size=VOXEL, normalization=dict(NORMALIZATION))


def _volume_block(block_info=None):
    """Smooth EM-like structure (global coordinates, so no seams) plus noise seeded by the block."""
    loc = block_info[None]["array-location"]
    z, y, x = (np.arange(a, b, dtype=np.float32) for a, b in loc)
    z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
    v = (128.0 + 45.0 * np.sin(z / 11.0 + np.sin(y / 37.0)) * np.cos(x / 13.0 + y / 29.0)
         + 25.0 * np.sin((x + y) / 7.3) * np.cos(z / 5.1) + 15.0 * np.cos(x / 53.0 - z / 41.0))
    rng = np.random.default_rng([VOLUME_VERSION, *(a for a, _ in loc)])
    v = v + rng.normal(0.0, 10.0, size=v.shape).astype(np.float32)
    return np.clip(v, 0, 255).astype(np.uint8)


def ensure_volume(workdir: Path, shape) -> Path:
    """The uint8 OME-Zarr of this shape under ``workdir``, written once (slab by slab) and reused."""
    import dask.array as da

    from vemkit.io import write_ome_zarr

    name = f"volume-v{VOLUME_VERSION}-{'x'.join(map(str, shape))}.ome.zarr"
    path = workdir / name
    if (path / ".complete").exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    chunks = (min(64, shape[0]), min(256, shape[1]), min(256, shape[2]))
    data = da.map_blocks(_volume_block, dtype=np.uint8, chunks=da.core.normalize_chunks(chunks, shape),
                         meta=np.empty((0, 0, 0), np.uint8))
    t0 = time.perf_counter()
    write_ome_zarr(data, tmp, voxel_size=VOXEL, chunks=chunks, levels=1, progress=False)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    (path / ".complete").write_text("")
    print(f"wrote {path} ({np.prod(shape) / 1e9:.2f} GB uint8) in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


# -------------------------------------------------------------------------------------- environment
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_line(device) -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    host = f"{cpu_model()}, {cores} cores available, torch {torch.get_num_threads()} threads"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (f"GPU {torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB, CUDA "
                f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}); host {host}")
    return f"CPU {host}"


def versions() -> str:
    import torch

    import vemkit

    out = f"python {platform.python_version()}, torch {torch.__version__}, vemkit {vemkit.__version__}"
    try:
        import monai

        out += f", monai {monai.__version__}"
    except ImportError:
        out += ", monai not installed"
    return out


def load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def rss_now_gb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError):
        return float("nan")


def peak_rss_gb() -> float:
    """This process's peak resident memory. On Linux VmHWM (/proc/self/status): ``ru_maxrss`` of a
    child started from a large parent starts at the parent's RSS (the kernel carries it across fork
    and exec), so it would report the parent's figure, not the child's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError):
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * (1 if sys.platform == "darwin" else 1024) / 1e9


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------ methods
def run_vemkit(cfg, model, image: Path, out: Path):
    from vemkit.predict import predict_volume

    shutil.rmtree(out, ignore_errors=True)
    sync(cfg.device)
    t0 = time.perf_counter()
    res = predict_volume(model, image, out, device=str(cfg.device), labels=True, probabilities=False,
                         amp=cfg.amp, pyramid=False, progress=False, memory_limit=cfg.memory_limit,
                         block=cfg.block, halo=cfg.halo)
    sync(cfg.device)
    seconds = time.perf_counter() - t0
    return seconds, {"block": list(res.block), "halo": list(res.halo), "batch_size": res.batch_size}


def _monai_module(cfg, model):
    """The module MONAI runs: the model's own network, as a user would pass it (or, with
    ``--monai-optimized``, BatchNorm folded and channels-last, vemkit's preparation)."""
    import torch

    module = copy.deepcopy(model.network).to(cfg.device).eval()
    if cfg.monai_optimized:
        from vemkit.predict._network import fuse_conv_bn

        fmt = torch.channels_last_3d if model.ndim == 3 else torch.channels_last
        module = fuse_conv_bn(module).to(cfg.device).to(memory_format=fmt)
    return module


def monai_layout(cfg, shape):
    """(where the input and the stitched output live, voxels MONAI computes per voxel)."""
    roi = cfg.roi
    spatial = shape if cfg.ndim == 3 else shape[1:]
    image_size = tuple(max(s, r) for s, r in zip(spatial, roi))
    # MONAI's scan: interval int(roi * (1 - overlap)), windows until the last one reaches the end
    interval = [max(1, int(r * (1 - MONAI_OVERLAP))) for r in roi]
    n_windows = math.prod(1 if s == r else math.ceil((s - r) / i) + 1 for s, r, i in zip(image_size, roi, interval))
    if cfg.ndim == 2:
        n_windows *= shape[0]
    computed = n_windows * float(np.prod(roi))
    return n_windows, computed / float(np.prod(shape))


def monai_bytes(shape, n_classes: int) -> float:
    """Host/device bytes MONAI's whole-volume path holds at its peak: uint8 read, float32 input,
    float32 output per class, float32 count map, softmax (float32 per class) and argmax (int64),
    and the uint8 labels."""
    return float(np.prod(shape)) * (1 + 4 + 4 * n_classes + 4 + 4 * n_classes + 8 + 1)


def run_monai(cfg, model, image: Path, out: Path, chunks, crop=None):
    import torch
    import zarr
    from monai.inferers import sliding_window_inference

    from vemkit.predict._store import create_output

    module = _monai_module(cfg, model)
    low, high = float(NORMALIZATION["low"]), float(NORMALIZATION["high"])
    scale = 1.0 / (high - low)
    shutil.rmtree(out, ignore_errors=True)
    sync(cfg.device)
    t0 = time.perf_counter()
    source = zarr.open_group(str(image), mode="r")["0"]
    vol = source[tuple(slice(0, c) for c in crop)] if crop else source[...]
    shape = vol.shape
    x = torch.from_numpy(vol)
    on_device = cfg.device.type == "cuda" and monai_bytes(shape, len(CLASSES)) < 0.5 * torch.cuda.mem_get_info(cfg.device)[0]
    if on_device:
        x = x.to(cfg.device)
    x = x.float().sub_(low).mul_(scale)  # as vemkit: (v - low) * (1 / (high - low)) in float32
    x = x[None, None] if cfg.ndim == 3 else x[:, None]  # 2D: the sections are the batch
    dtype = cfg.amp_dtype
    with torch.inference_mode():
        with torch.autocast(cfg.device.type, dtype=dtype) if dtype is not None else _null():
            y = sliding_window_inference(x, roi_size=cfg.roi, sw_batch_size=cfg.sw_batch_size, predictor=module,
                                         overlap=MONAI_OVERLAP, mode="gaussian", sw_device=cfg.device,
                                         device=cfg.device if on_device else torch.device("cpu"))
        del x
        labels = torch.softmax(y.float(), dim=1).argmax(dim=1).to(torch.uint8)
        del y
        labels = labels[0] if cfg.ndim == 3 else labels
        labels = labels.cpu().numpy()
    # the same kind of array vemkit writes (zarr v2, same chunks, same codecs)
    create_output(out, shape, tuple(chunks), 1, "uint8", False, True, len(CLASSES), "0.4")
    zarr.open_array(str(out / "0"), mode="r+")[...] = labels
    sync(cfg.device)
    seconds = time.perf_counter() - t0
    return seconds, {"input_on": "device" if on_device else "host", "shape": list(shape)}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def agreement(a_path: Path, b_path: Path):
    """(fraction of voxels with the same label, foreground fraction of a, of b), slab by slab."""
    import zarr

    a, b = zarr.open_array(str(a_path / "0"), mode="r"), zarr.open_array(str(b_path / "0"), mode="r")
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {a.shape} vs {b.shape}")
    same = fa = fb = 0
    step = max(1, a.chunks[0])
    for z in range(0, a.shape[0], step):
        x, y = a[z : z + step], b[z : z + step]
        same += int(np.count_nonzero(x == y))
        fa += int(np.count_nonzero(x))
        fb += int(np.count_nonzero(y))
    n = float(np.prod(a.shape))
    return same / n, fa / n, fb / n


# ------------------------------------------------------------------------------------------- config
class Config:
    def __init__(self, args):
        import torch

        from vemkit._device import resolve_device
        from vemkit._precision import resolve_amp

        self.args = args
        self.device = resolve_device(args.device)
        self.ndim = args.ndim
        self.size = args.model_size
        self.amp = False if args.no_amp else "auto"
        amp = resolve_amp(self.amp, self.device)
        self.amp_name = amp if amp != "none" else "fp32"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        gpu = self.device.type == "cuda"
        if args.roi:
            self.roi = tuple(int(v) for v in args.roi.split(","))
        else:
            self.roi = (64, 128, 128) if self.ndim == 3 else ((512, 512) if gpu else (256, 256))
        self.sw_batch_size = args.sw_batch_size or (4 if gpu else 1)
        self.memory_limit = args.memory_limit
        self.block = tuple(int(v) for v in args.block.split(",")) if args.block else None
        self.halo = tuple(int(v) for v in args.halo.split(",")) if args.halo else None
        self.monai_optimized = args.monai_optimized


def parse_shape(text):
    shape = tuple(int(v) for v in text.split(","))
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--shape takes Z,Y,X, got {text!r}")
    return shape


def child_args(args, only, extra=()):
    """The command line that reruns this benchmark for one method in a fresh process."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--only", only, "--shape", ",".join(map(str, args.shape)),
            "--ndim", str(args.ndim), "--model-size", args.model_size, "--device", args.device,
            "--workdir", str(args.workdir)]
    for flag, value in (("--roi", args.roi), ("--sw-batch-size", args.sw_batch_size),
                        ("--memory-limit", args.memory_limit), ("--block", args.block), ("--halo", args.halo),
                        ("--threads", args.threads)):
        if value:
            argv += [flag, str(value)]
    for flag, value in (("--no-amp", args.no_amp), ("--monai-optimized", args.monai_optimized)):
        if value:
            argv.append(flag)
    return argv + list(extra)


def run_child(argv):
    """Run a child; return its RESULT record (its own peak RSS and device memory, its time)."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(argv[2:5])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"child printed no RESULT line:\n{proc.stdout[-2000:]}")


def only_main(args):
    """Child mode: one method, once; print its time and memory as one RESULT line."""
    import torch

    cfg = Config(args)
    image = ensure_volume(Path(args.workdir), args.shape)
    model = make_model(cfg.size, cfg.ndim)
    out = Path(args.workdir) / f"out-{args.only}-child-{os.getpid()}.zarr"
    if cfg.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(cfg.device)
    base = rss_now_gb()
    cpu0 = cpu_seconds()
    if args.only == "vemkit":
        seconds, info = run_vemkit(cfg, model, image, out)
    else:
        from vemkit.predict import estimate

        chunks = estimate(model, image, device=str(cfg.device), memory_limit=cfg.memory_limit, block=cfg.block,
                          halo=cfg.halo, probe=False).block  # vemkit's chunks
        crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
        seconds, info = run_monai(cfg, model, image, out, chunks, crop=crop)
    cpu = cpu_seconds() - cpu0
    n = float(np.prod(info.get("shape", args.shape)))
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record = {"method": args.only, "seconds": seconds, "cpu_seconds": cpu, "voxels": n, "voxels_per_second": n / seconds,
              "baseline_rss_gb": base, "peak_rss_gb": peak_rss_gb(), "ru_maxrss_gb": kib * 1024 / 1e9,
              "device": str(cfg.device), **info}
    if cfg.device.type == "cuda":
        record["peak_device_gb"] = torch.cuda.max_memory_allocated(cfg.device) / 1e9
    shutil.rmtree(out, ignore_errors=True)
    print("RESULT " + json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------- benchmark
def fmt_rate(v):
    return f"{v / 1e6:.3f} M" if v < 1e8 else f"{v / 1e9:.3f} G"


def header(cfg, shape, extra=""):
    print(f"device : {device_line(cfg.device)}")
    print(f"         {versions()}; precision {cfg.amp_name}; load average {load()}")
    print(f"volume : {' x '.join(map(str, shape))} uint8 ({np.prod(shape) / 1e6:.1f} M voxels, "
          f"{np.prod(shape) / 1e9:.2f} GB){extra}", flush=True)


def benchmark(args):
    import torch

    from vemkit.predict import estimate

    cfg = Config(args)
    if cfg.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for both methods (vemkit sets it anyway)
    workdir = Path(args.workdir)
    image = ensure_volume(workdir, args.shape)
    model = make_model(cfg.size, cfg.ndim)
    n_params = sum(p.numel() for p in model.network.parameters())
    net = model.network
    header(cfg, args.shape)
    print(f"model  : {cfg.ndim}D U-Net '{cfg.size}' ({net.base_channels} base channels, {len(net.pools)} poolings, "
          f"{n_params / 1e6:.2f} M parameters), random weights, BatchNorm with random running statistics")

    plan = estimate(model, image, device=str(cfg.device), amp=cfg.amp, memory_limit=cfg.memory_limit,
                    block=cfg.block, halo=cfg.halo, probe=True)  # also warms up the network on its block
    print(f"vemkit : block {' x '.join(map(str, plan.block))} + halo {' x '.join(map(str, plan.halo))} per side, "
          f"batch {plan.batch_size}, {plan.n_blocks} blocks, compute overhead {plan.overhead:.2f}x, "
          f"{plan.memory_per_batch_bytes / 2**20:.0f} MiB per batch of {plan.memory_budget_bytes / 2**20:.0f} MiB "
          f"(probe {plan.voxels_per_second / 1e6:.2f} M voxels/s)")
    n_windows, monai_overhead = monai_layout(cfg, args.shape)
    print(f"MONAI  : roi {' x '.join(map(str, cfg.roi))}, sw_batch_size {cfg.sw_batch_size}, overlap {MONAI_OVERLAP}, "
          f"gaussian; {n_windows} windows, {monai_overhead:.2f}x voxels computed per voxel written"
          + ("; module: BatchNorm folded, channels-last (--monai-optimized)" if cfg.monai_optimized else ""), flush=True)
    # warm-up of MONAI's window shape (cuDNN autotuning, oneDNN primitives), untimed
    module = _monai_module(cfg, model)
    with torch.inference_mode():
        with torch.autocast(cfg.device.type, dtype=cfg.amp_dtype) if cfg.amp_dtype is not None else _null():
            module(torch.zeros((cfg.sw_batch_size, 1, *cfg.roi), device=cfg.device))
    sync(cfg.device)
    del module

    chunks = tuple(plan.block)
    outs = {"vemkit": workdir / "out-vemkit.zarr", "MONAI": workdir / "out-monai.zarr"}
    runs = {"vemkit": [], "MONAI": []}
    device_peak = {}
    order = ["vemkit", "MONAI"]
    for rep in range(args.repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            if cfg.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(cfg.device)
            cpu0 = cpu_seconds()
            if name == "vemkit":
                seconds, info = run_vemkit(cfg, model, image, outs[name])
            else:
                seconds, info = run_monai(cfg, model, image, outs[name], chunks)
            cpu = cpu_seconds() - cpu0
            if cfg.device.type == "cuda":
                device_peak[name] = max(device_peak.get(name, 0.0), torch.cuda.max_memory_allocated(cfg.device) / 1e9)
            runs[name].append({"seconds": seconds, "cpu_seconds": cpu, **info})
            print(f"  run {rep + 1}/{args.repeats} {name:6s}: {seconds:8.2f} s, {fmt_rate(np.prod(args.shape) / seconds)}"
                  f"voxels/s, CPU {cpu:.0f} s (load {load()})", flush=True)

    memory = {}
    if not args.no_memory:
        for name, only in (("vemkit", "vemkit"), ("MONAI", "monai")):
            memory[name] = run_child(child_args(args, only))

    same, fg_v, fg_m = agreement(outs["vemkit"], outs["MONAI"])
    n = float(np.prod(args.shape))
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    pair = [m["seconds"] / v["seconds"] for v, m in zip(runs["vemkit"], runs["MONAI"])]
    print()
    print(f"{'method':8s} {'voxels/s':>12s} {'seconds':>9s} {'CPU s':>7s} {'runs':>5s} {'peak host GB':>13s} "
          f"{'(baseline)':>10s} {'peak device GB':>15s}")
    for name in ("vemkit", "MONAI"):
        mem = memory.get(name, {})
        host = f"{mem['peak_rss_gb']:.2f}" if mem else "-"
        base = f"({mem['baseline_rss_gb']:.2f})" if mem else ""
        dev = device_peak.get(name)
        dev_s = f"{dev:.2f}" if dev is not None else "- (CPU)"
        cpu = statistics.median(r["cpu_seconds"] for r in runs[name])
        print(f"{name:8s} {fmt_rate(n / med[name]):>12s} {med[name]:9.2f} {cpu:7.0f} {len(runs[name]):5d} {host:>13s} "
              f"{base:>10s} {dev_s:>15s}")
    ratio = med["MONAI"] / med["vemkit"]
    print(f"ratio vemkit / MONAI (voxels/s): {ratio:.2f}x  (per-repeat ratios {', '.join(f'{r:.2f}' for r in pair)}; "
          f"device {cfg.device.type}: {device_line(cfg.device).split(',')[0]})")
    print(f"agreement: {same * 100:.2f} % of voxels get the same label (foreground {fg_v * 100:.1f} % vemkit, "
          f"{fg_m * 100:.1f} % MONAI)")
    if memory:
        print("peak host memory: peak RSS (VmHWM) of a fresh process per method (baseline: its RSS before the "
              "run: python, torch, imports, model); peak device memory: torch.cuda.max_memory_allocated")
    print(f"load average at the end: {load()}")
    record = {
        "device": device_line(cfg.device), "versions": versions(), "precision": cfg.amp_name, "shape": list(args.shape),
        "ndim": cfg.ndim, "model_size": cfg.size, "vemkit_plan": {"block": list(plan.block), "halo": list(plan.halo),
        "batch_size": plan.batch_size, "compute_overhead": plan.overhead}, "monai": {"roi": list(cfg.roi),
        "sw_batch_size": cfg.sw_batch_size, "overlap": MONAI_OVERLAP, "windows": n_windows,
        "voxels_computed_per_voxel": monai_overhead, "optimized_module": cfg.monai_optimized},
        "voxels_per_second": {k: n / v for k, v in med.items()}, "ratio": ratio, "per_repeat_ratios": pair,
        "agreement": same, "foreground": {"vemkit": fg_v, "MONAI": fg_m}, "runs": runs, "memory": memory,
        "peak_device_gb": device_peak,
    }
    print(json.dumps(record))
    if not args.keep_outputs:
        for p in outs.values():
            shutil.rmtree(p, ignore_errors=True)


def memory_test(args):
    """A GB-sized volume through a small model: vemkit's peak host memory, MONAI's need beside it."""
    gb = args.memory_test
    side = args.side
    z = max(64, int(round(gb * 1e9 / side**2 / 16)) * 16)
    args.shape = (z, side, side)
    cfg = Config(args)
    workdir = Path(args.workdir)
    image = ensure_volume(workdir, args.shape)
    n = float(np.prod(args.shape))
    header(cfg, args.shape, extra=f"; model: {cfg.ndim}D U-Net '{cfg.size}'")
    model = make_model(cfg.size, cfg.ndim)
    from vemkit.predict import estimate

    plan = estimate(model, image, device=str(cfg.device), memory_limit=cfg.memory_limit, block=cfg.block,
                    halo=cfg.halo, probe=False)
    print(f"vemkit : block {' x '.join(map(str, plan.block))} + halo {' x '.join(map(str, plan.halo))}, "
          f"{plan.n_blocks} blocks, {plan.memory_per_batch_bytes / 2**20:.0f} MiB per batch of "
          f"{plan.memory_budget_bytes / 2**20:.0f} MiB", flush=True)
    del model
    v = run_child(child_args(args, "vemkit"))
    print(f"vemkit : peak host memory {v['peak_rss_gb']:.2f} GB (baseline {v['baseline_rss_gb']:.2f} GB before the run), "
          f"{v['seconds']:.0f} s, {fmt_rate(v['voxels_per_second'])}voxels/s"
          + (f", peak device memory {v['peak_device_gb']:.2f} GB" if "peak_device_gb" in v else ""), flush=True)

    need = monai_bytes(args.shape, len(CLASSES))
    print(f"MONAI  : its whole-volume path needs about {need / 1e9:.1f} GB for this volume (uint8 read, float32 input, "
          f"{len(CLASSES)} float32 output channels, float32 count map, softmax, int64 argmax, uint8 labels: "
          f"{need / n:.0f} bytes per voxel) on {'the GPU or ' if cfg.device.type == 'cuda' else ''}the host")
    m = None
    if not args.skip_peer:
        crop = (min(args.shape[0], 64), min(args.shape[1], 1024), min(args.shape[2], 1024))
        if crop == tuple(args.shape):  # a small test volume: measure MONAI on half of it
            crop = (crop[0], crop[1], max(1, crop[2] // 2))
        avail = _mem_available()
        if avail is None or monai_bytes(crop, len(CLASSES)) < 0.5 * avail:
            args.crop = ",".join(map(str, crop))
            m = run_child(child_args(args, "monai", extra=["--crop", args.crop]))
            frac = float(np.prod(crop)) / n
            per_voxel = (m["peak_rss_gb"] - m["baseline_rss_gb"]) * 1e9 / float(np.prod(crop))
            scaled = m["baseline_rss_gb"] + per_voxel * n / 1e9
            fits = avail is not None and scaled * 1e9 < avail
            print(f"MONAI  : measured on a {' x '.join(map(str, crop))} sub-volume ({frac * 100:.1f} % of the volume): "
                  f"peak host memory {m['peak_rss_gb']:.2f} GB (baseline {m['baseline_rss_gb']:.2f} GB), "
                  f"{per_voxel:.1f} bytes per voxel above baseline; scaled linearly to the whole volume: "
                  f"{scaled:.1f} GB ({'fits' if fits else 'does not fit'} in the {avail / 1e9 if avail else float('nan'):.0f} "
                  f"GB available here)")
        else:
            print("MONAI  : not run, even a sub-volume would not fit in half the available memory")
    target = 1.5
    print(f"\nmemory test: {n / 1e9:.2f} GB uint8 volume, vemkit peak host memory {v['peak_rss_gb']:.2f} GB "
          f"({'under' if v['peak_rss_gb'] < target else 'OVER'} the {target} GB target); MONAI ~{need / 1e9:.0f} GB")
    print(json.dumps({"device": device_line(cfg.device), "versions": versions(), "shape": list(args.shape),
                      "volume_gb": n / 1e9, "model_size": cfg.size, "vemkit": v, "monai_need_gb": need / 1e9,
                      "monai_subvolume": m, "plan": {"block": list(plan.block), "halo": list(plan.halo)}}))


def _mem_available():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, default=None,
                        help="volume Z,Y,X (default 160,640,640 on CPU, 512,1024,1024 on GPU; --quick 32,96,96)")
    parser.add_argument("--ndim", type=int, choices=(2, 3), default=3, help="2D or 3D U-Net (default 3)")
    parser.add_argument("--model-size", choices=("tiny", "small", "base"), default=None,
                        help="vemkit.models.UNET_SIZES (default small: the default 3D U-Net; tiny for --quick "
                             "and --memory-test)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda[:N]")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method (alternating order)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too (both methods)")
    parser.add_argument("--roi", default=None, help="MONAI roi_size (default 64,128,128 in 3D; 256,256 / 512,512 in 2D)")
    parser.add_argument("--sw-batch-size", type=int, default=None, help="MONAI sw_batch_size (default 4 on GPU, 1 on CPU)")
    parser.add_argument("--monai-optimized", action="store_true",
                        help="give MONAI vemkit's prepared module (BatchNorm folded, channels-last) instead of the plain one")
    parser.add_argument("--memory-limit", default=None, help="vemkit memory_limit (default: its own)")
    parser.add_argument("--block", default=None, help="vemkit block Z,Y,X (default: planned)")
    parser.add_argument("--halo", default=None, help="vemkit halo Z,Y,X (default: the model's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-method child processes (peak memory)")
    parser.add_argument("--memory-test", type=float, default=None, metavar="GB",
                        help="peak host memory of a GB-sized volume (vemkit) and MONAI's need")
    parser.add_argument("--side", type=int, default=2048, help="--memory-test: the volume's Y and X (Z follows from GB)")
    parser.add_argument("--skip-peer", action="store_true", help="--memory-test: do not measure MONAI on a sub-volume")
    parser.add_argument("--quick", action="store_true", help="tiny volume and model, < 30 s (smoke test)")
    parser.add_argument("--workdir", default=os.environ.get("VEMKIT_BENCH_DIR", "/tmp/vemkit-bench"),
                        help="cache of generated volumes and outputs, outside the repository")
    parser.add_argument("--keep-outputs", action="store_true")
    parser.add_argument("--only", choices=("vemkit", "monai"), help=argparse.SUPPRESS)
    parser.add_argument("--crop", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.quick:
        args.shape = args.shape or (32, 96, 96)
        args.model_size = args.model_size or "tiny"
        args.roi = args.roi or ("32,96,96" if args.ndim == 3 else "96,96")
        args.repeats = 1 if args.repeats == 3 else args.repeats
    args.model_size = args.model_size or ("tiny" if args.memory_test else "small")
    if args.shape is None:  # about 1-3 minutes per method on a 2-core CPU; on a GPU a volume worth timing
        import torch

        gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
        args.shape = (512, 1024, 1024) if gpu else (160, 640, 640)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.only:
        only_main(args)
    elif args.memory_test:
        memory_test(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
