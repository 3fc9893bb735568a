"""Prompt latency of the generalist SAM models: seconds per section embedding, and click-to-mask time.

For each SAM architecture (vit_t = MobileSAM's TinyViT, as in micro-sam's vit_t_em_organelles; vit_b =
SAM / micro-sam vit_b) at its published size with RANDOM weights (the real weights cannot be fetched
on the machines that test vemkit; speed does not depend on the weight values): build the network
through vemkit's own loader code (``sam_config`` -> network, strict state-dict load), embed a
``--size`` x ``--size`` section ``--repeats`` times (``PromptSegmenter.embed``: resize, normalise,
pad, encode), then time ``--clicks`` single-point prompts on that embedding
(``PromptSegmenter.predict``: prompt encoder, mask decoder, upsampling to the section). Medians are
printed with the threads used, the CPU and the load average, and the ratio to the target (click-to-mask
under 0.5 s on CPU for the small model). ``--zero-shot`` adds MitoNet-style blockwise throughput
(``predict_volume`` with the tiny MitoNet stand-in: the runner's overhead, not MitoNet's speed).
``--sam-auto`` adds automatic SAM on one section (``AutoMaskGenerator.segment``: embedding plus a
32 x 32 grid of point prompts through the decoder; with random weights few masks pass SAM's filters,
so this is the embedding + decoding cost, not the cost of painting many real masks).

Run from the project root::

    python benchmarks/prompt_latency.py --threads 2              # the issue's 2-core setting
    python benchmarks/prompt_latency.py --quick                  # smoke test: vit_t only, 512 px
    taskset -c 0,1 python benchmarks/prompt_latency.py --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def _arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="vit_t,vit_b", help="comma-separated: vit_t, vit_b")
    p.add_argument("--size", type=int, default=1024, help="section side in pixels")
    p.add_argument("--repeats", type=int, default=3, help="embeddings timed per architecture")
    p.add_argument("--clicks", type=int, default=10, help="click-to-mask prompts timed per architecture")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the issue's setting: 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--zero-shot", action="store_true", help="also time blockwise zero-shot inference")
    p.add_argument("--sam-auto", action="store_true", help="also time automatic SAM on one section (vit_t)")
    p.add_argument("--quick", action="store_true", help="vit_t only, 512 px, 1 repeat, 3 clicks")
    p.add_argument("--json", help="write the figures to this file")
    return p.parse_args(argv)


def _environment(threads, device) -> dict:
    import torch

    return {"device": device, "torch_threads": threads, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "cuda": torch.cuda.get_device_name(0) if device.startswith("cuda") else None}


def _time(fn, repeats, sync, cpu=None):
    """Wall seconds per call; ``cpu`` (a list) receives the process CPU seconds per call, a figure a
    loaded machine inflates far less than the wall time (on an idle machine with T threads the wall
    time lies between cpu / T and cpu)."""
    out = []
    for _ in range(repeats):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return out


def bench_arch(arch, size, repeats, clicks, device) -> dict:
    import numpy as np
    import torch

    from vemkit.generalist import PromptSegmenter, sam_config
    from vemkit.generalist._sam import sam_state_for
    from vemkit.generalist._sam_net import build_sam

    state = sam_state_for(arch)
    net = build_sam(sam_config(state))
    net.load_state_dict(state, strict=True)
    seg = PromptSegmenter(net.to(device).eval(), name=f"{arch} (random weights)", device=torch.device(device))
    section = np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    seg.embed(section)  # warm-up (allocations, kernels)
    emb_cpu, click_cpu = [], []
    emb_times = _time(lambda: seg.embed(section), repeats, sync, emb_cpu)
    emb = seg.embed(section)
    rng = np.random.default_rng(1)
    pts = [(int(rng.integers(0, size)), int(rng.integers(0, size))) for _ in range(clicks + 1)]
    seg.predict(emb, points=[pts[0]])  # warm-up
    click_times = []
    for p in pts[1:]:
        click_times += _time(lambda p=p: seg.predict(emb, points=[p]), 1, sync, click_cpu)
    n_params = sum(v.numel() for k, v in state.items() if k.startswith("image_encoder.") and ".head." not in k)
    return {"arch": arch, "size": size, "encoder_parameters": int(n_params),
            "embedding_s_median": statistics.median(emb_times), "embedding_s_all": emb_times,
            "embedding_cpu_s_median": statistics.median(emb_cpu),
            "click_to_mask_s_median": statistics.median(click_times), "click_to_mask_s_max": max(click_times),
            "click_to_mask_cpu_s_median": statistics.median(click_cpu)}


def bench_sam_auto(arch, size, device, points=32) -> dict:
    import numpy as np
    import torch

    from vemkit.generalist import AutoMaskGenerator, AutoMaskSettings, PromptSegmenter, sam_config
    from vemkit.generalist._sam import sam_state_for
    from vemkit.generalist._sam_net import build_sam

    state = sam_state_for(arch)
    net = build_sam(sam_config(state))
    net.load_state_dict(state, strict=True)
    seg = PromptSegmenter(net.to(device).eval(), name=f"{arch} (random weights)", device=torch.device(device))
    gen = AutoMaskGenerator(seg, AutoMaskSettings(points_per_side=points))
    section = np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)
    cpu = []
    wall = _time(lambda: gen.segment(section), 1, lambda: None, cpu)
    labels = gen.segment(section)
    return {"arch": arch, "size": size, "points": points * points, "seconds": wall[0], "cpu_seconds": cpu[0],
            "objects": int(labels.max())}


def bench_zero_shot(device) -> dict:
    import tempfile
    from pathlib import Path

    from vemkit.generalist import write_tiny_model
    from vemkit.io import open_volume, write_tiff
    from vemkit.predict import predict_volume
    from vemkit.synthetic import make_phantom

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VEMKIT_DATA_DIR"] = str(Path(tmp) / "cache")
        write_tiny_model("mitonet_mini_v1", Path(tmp) / "m.json")
        ph = make_phantom(shape=(8, 512, 512), voxel_size=(40.0, 8.0, 8.0), seed=0)
        vol = open_volume(str(write_tiff(ph.image, Path(tmp) / "i.tif", voxel_size=(40.0, 8.0, 8.0), progress=False)))
        t0 = time.perf_counter()
        res = predict_volume("mitonet_mini_v1", vol, Path(tmp) / "o.ome.zarr", device=device, progress=False)
        seconds = time.perf_counter() - t0
    return {"volume": [8, 512, 512], "seconds": seconds, "mvoxels_per_s": 8 * 512 * 512 / seconds / 1e6,
            "blocks": res.blocks, "note": "tiny MitoNet stand-in: runner overhead, not MitoNet's own speed"}


def main(argv=None):
    args = _arguments(argv)
    import torch

    torch.set_num_threads(args.threads)
    archs = ["vit_t"] if args.quick else [a.strip() for a in args.archs.split(",") if a.strip()]
    size, repeats, clicks = (512, 1, 3) if args.quick else (args.size, args.repeats, args.clicks)
    env = _environment(args.threads, args.device)
    print(json.dumps(env))
    results = {"environment": env, "weights": "random (published sizes); no real-weight figures", "archs": []}
    for arch in archs:
        r = bench_arch(arch, size, repeats, clicks, args.device)
        results["archs"].append(r)
        print(f"{arch}: {r['encoder_parameters'] / 1e6:.2f} M encoder parameters; embedding of {size}x{size}: "
              f"{r['embedding_s_median']:.2f} s wall, {r['embedding_cpu_s_median']:.2f} s CPU (median of {repeats}); "
              f"click-to-mask: {r['click_to_mask_s_median'] * 1000:.0f} ms wall median "
              f"({r['click_to_mask_s_max'] * 1000:.0f} ms max), {r['click_to_mask_cpu_s_median'] * 1000:.0f} ms CPU "
              f"(target 500 ms wall: ratio {r['click_to_mask_s_median'] / 0.5:.2f})")
    if len(results["archs"]) == 2:
        a, b = results["archs"]
        print(f"embedding {b['arch']} / {a['arch']}: {b['embedding_s_median'] / a['embedding_s_median']:.1f}x")
    if args.zero_shot:
        results["zero_shot"] = z = bench_zero_shot(args.device)
        print(f"zero-shot blockwise (tiny MitoNet stand-in) {z['volume']}: {z['seconds']:.1f} s, "
              f"{z['mvoxels_per_s']:.2f} Mvoxel/s, {z['blocks']} blocks")
    if args.sam_auto:
        results["sam_auto"] = a = bench_sam_auto("vit_t", size, args.device)
        print(f"sam-auto {a['arch']} on one {size}x{size} section, {a['points']} point prompts: {a['seconds']:.1f} s "
              f"wall, {a['cpu_seconds']:.1f} s CPU ({a['objects']} objects pass the filters with random weights)")
    env["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"load average after: {env['load_average_after']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
