"""Neurons on FlyEM FIB-SEM: boundary U-Net + seeded watershed against affinities + agglomeration.

Data: FlyEM medulla FIB-SEM training sample 2 (250^3 voxels at 10 nm, dense neuron ids). Split in z:
sections 0-149 train both networks, 160-249 are the test volume (a 10-section gap so no training patch
touches it).

Rows, all scored with VOI (split, merge; bits) and the adapted Rand error on the test volume:

(a) a boundary U-Net (classes inside / boundary, :func:`vemkit.train.finetune` from scratch) and
    today's :func:`vemkit.instances.seeded_watershed` on its boundary probability;
(b) an affinity U-Net (:func:`vemkit.neurons.train_affinities`) and the mutex watershed;
(c) the same affinities, watershed fragments and mean-affinity agglomeration at threshold 0.5.

Same network budget: same 3D U-Net size, patch, batch, augmentations and iteration count; only the head
(2 channels against 2 + offsets) and the loss differ. The headline rows use each method's default
parameters (no tuning on the test volume); the sweep rows below them show the trade-off over
thresholds (also on the test volume, for reference only). Also printed: that the blockwise
agglomeration equals the whole-volume one, and its throughput.

Usage::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/neurons.py --iterations 300
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

TRAIN = slice(0, 150)
TEST = slice(160, 250)


def load():
    from vemkit.datasets import load_dataset

    d = load_dataset("flyem_medulla_fibsem", progress=False)
    img = np.asarray(d.image.data)
    lab = np.asarray(d.labels["neurons"]).astype(np.int64)
    return img, lab, tuple(d.voxel_size)


def plan_kw(args):
    return {"patch": tuple(args.patch), "batch_size": args.batch, "model_size": args.model_size}


def train_boundary(img, lab, vs, args, out):
    from vemkit.neurons import boundary_map
    from vemkit.train import finetune, plan_training

    ann = np.where(lab > 0, 1 + boundary_map(lab), 0).astype(np.uint8)
    plan = plan_training(img, ann, voxel_size=vs, device="cpu", ndim=3, **plan_kw(args))
    t = time.perf_counter()
    model = finetune(img, ann, classes=["inside", "boundary"], base=None, out=out, plan=plan,
                     iterations=args.iterations, device="cpu", seed=args.seed, overwrite=True, progress=False,
                     voxel_size=vs)
    return model, time.perf_counter() - t


def train_affinity(img, lab, vs, args, out):
    from vemkit.neurons import train_affinities

    t = time.perf_counter()
    model = train_affinities(img, lab, voxel_size=vs, out=out, iterations=args.iterations, device="cpu",
                             seed=args.seed, overwrite=True, progress=False, **plan_kw(args))
    return model, time.perf_counter() - t


def probabilities(model, img, vs, out):
    import zarr

    from vemkit.predict import predict_volume

    res = predict_volume(model, img, out, probabilities=True, labels=False, device="cpu", overwrite=True,
                         pyramid=False, progress=False)
    return np.asarray(zarr.open_group(str(res.probabilities), mode="r")["0"])


def row(name, seg, truth, seconds=None, **extra):
    from vemkit.neurons import score

    return {"method": name, **score(seg, truth), **({"seconds": round(seconds, 2)} if seconds else {}), **extra}


def run_boundary(model, img, lab, vs, work):
    from vemkit.instances import seeded_watershed

    p = probabilities(model, img, vs, work / "boundary.ome.zarr")[1].astype(np.float32) / 255
    fg = np.ones_like(p)
    rows = []
    t = time.perf_counter()
    seg = seeded_watershed(fg, p, voxel_size=vs)
    rows.append(row("(a) boundary U-Net + seeded watershed", seg, lab, time.perf_counter() - t, setting="defaults"))
    for s in (0.3, 0.5, 0.7, 0.9):
        seg = seeded_watershed(fg, p, voxel_size=vs, seed_threshold=s, min_distance_nm=50.0)
        rows.append(row("(a) sweep", seg, lab, setting=f"seed_threshold={s}, min_distance 50 nm"))
    return rows


def run_affinities(model, img, lab, vs, work, block):
    from vemkit.neurons import AFFINITY_CLASSES, agglomerate, threshold_sweep

    probs = probabilities(model, img, vs, work / "affinities.ome.zarr")
    affs = probs[len(AFFINITY_CLASSES):]
    offsets = [tuple(o) for o in model.target["offsets"]]
    rows, checks = [], {}
    for method, name in (("mws", "(b) affinities + mutex watershed"), ("mean", "(c) affinities + mean agglomeration")):
        t = time.perf_counter()
        whole = agglomerate(affs, offsets, method=method, block=lab.shape)
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        blocked = agglomerate(affs, offsets, method=method, block=block)
        b_seconds = time.perf_counter() - t
        checks[method] = {"blockwise_equals_whole": bool(np.array_equal(whole, blocked)),
                          "whole_seconds": round(seconds, 2), "blockwise_seconds": round(b_seconds, 2),
                          "blockwise_voxels_per_second": round(lab.size / b_seconds),
                          "block": list(block)}
        rows.append(row(name, whole, lab, seconds, setting="defaults (mws: bias 0; mean: threshold 0.5)"))
    for r in threshold_sweep(affs, offsets, lab, (0.3, 0.5, 0.7, 0.8, 0.9), method="mean"):
        rows.append({"method": "(c) sweep", "setting": f"threshold={r.pop('threshold')}", **r})
    for r in threshold_sweep(affs, offsets, lab, (-0.2, 0.0, 0.2, 0.4), method="mws"):
        rows.append({"method": "(b) sweep", "setting": f"bias={r.pop('threshold')}", **r})
    return rows, checks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--patch", type=int, nargs=3, default=(32, 64, 64))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model-size", default="tiny", choices=["tiny", "small", "base"])
    ap.add_argument("--block", type=int, nargs=3, default=(45, 125, 125))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/vemkit_neurons_bench")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    img, lab, vs = load()
    tr_img, tr_lab, te_img, te_lab = img[TRAIN], lab[TRAIN], img[TEST], lab[TEST]
    b_model, b_sec = train_boundary(tr_img, tr_lab, vs, args, work / "boundary_model")
    print(f"boundary U-Net: {args.iterations} iterations in {b_sec / 60:.1f} min", flush=True)
    a_model, a_sec = train_affinity(tr_img, tr_lab, vs, args, work / "affinity_model")
    print(f"affinity U-Net: {args.iterations} iterations in {a_sec / 60:.1f} min", flush=True)
    rows = run_boundary(b_model, te_img, te_lab, vs, work)
    a_rows, checks = run_affinities(a_model, te_img, te_lab, vs, work, tuple(args.block))
    rows += a_rows
    base = rows[0]["voi"]
    print(f"\ntest volume {te_lab.shape} ({np.unique(te_lab).size} true neurons); training {args.iterations} "
          f"iterations each, patch {tuple(args.patch)}, batch {args.batch}, U-Net {args.model_size}, CPU "
          f"({platform.processor() or platform.machine()}); boundary {b_sec / 60:.1f} min, affinities {a_sec / 60:.1f} min")
    print(f"{'method':42s} {'setting':40s} {'VOI split':>9s} {'VOI merge':>9s} {'VOI':>7s} {'ARAND':>7s} {'segments':>8s} {'VOI vs (a)':>10s}")
    for r in rows:
        print(f"{r['method']:42s} {r.get('setting', ''):40s} {r['voi_split']:9.3f} {r['voi_merge']:9.3f} {r['voi']:7.3f} "
              f"{r['arand']:7.3f} {r['segments']:8d} {r['voi'] / base:10.2f}")
    for method, c in checks.items():
        print(f"{method}: blockwise (block {tuple(c['block'])}) equals whole volume: {c['blockwise_equals_whole']}; "
              f"{c['blockwise_voxels_per_second'] / 1e6:.2f} million voxels/s blockwise "
              f"({c['blockwise_seconds']} s; whole volume {c['whole_seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "checks": checks, "args": vars(args),
                                               "train_minutes": {"boundary": b_sec / 60, "affinities": a_sec / 60}},
                                              indent=1))


if __name__ == "__main__":
    main()
