"""Domain shift on real data: a membrane model trained on ssTEM, carried to FIB-SEM without target labels.

Source: Drosophila VNC ssTEM (stack1, 50 x 4.6 x 4.6 nm), membranes labelled on sections 0-15 (16-19
held out to score the source model on its own domain). Target: FlyEM medulla FIB-SEM (10 nm
isotropic). Its neuron labels are never used for training except by the few-label reference: sections
0-124 are the unlabelled target data the methods may see, sections 125-249 (every 5th) are where the
target IoU of the membrane class is measured against the neuron boundaries (2 px wide, in the
target's own 10 nm grid).

Rows: no adaptation (target at its own pixel size), resampling to the source pixel size, and on top
of resampling histogram matching, AdaBN, Y-Net and DANN (same iterations each), the control
(``--control``: the same continued source training and AdaBN refresh without the target's terms), then
fine-tuning on a few labelled target sections (the reference an unsupervised method tries to approach). Next to the
IoU, the label-free scores of :func:`vemkit.domain.label_free_scores` on the same sections, and how
well they rank the rows (Spearman).

Usage::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/domain.py --source-iterations 300 --iterations 150 --patch 128 --control
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

SOURCE_TRAIN = list(range(16))
SOURCE_TEST = [16, 17, 18, 19]
TARGET_ADAPT = slice(0, 125)
TARGET_TEST = list(range(125, 250, 5))


def boundaries(ids):
    """In-plane neuron boundaries of an instance volume: voxels whose 4-neighbour has another id."""
    b = np.zeros(ids.shape, bool)
    for ax in (1, 2):
        d = np.diff(ids, axis=ax) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        b[tuple(lo)] |= d
        b[tuple(hi)] |= d
    return b


def iou(pred, truth):
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else float("nan")


def load_data():
    from vemkit.datasets import load_dataset
    from vemkit.io import Volume

    vnc = load_dataset("drosophila_vnc_sstem", progress=False)
    fly = load_dataset("flyem_medulla_fibsem", progress=False)
    membranes = np.asarray(vnc.labels["membranes"].data) > 0
    ann = np.zeros(membranes.shape, np.uint8)
    ann[SOURCE_TRAIN] = 1 + membranes[SOURCE_TRAIN]
    fimg = np.asarray(fly.image.data)
    target_truth = boundaries(np.asarray(fly.labels["neurons"].data))
    target_adapt = Volume.from_array(fimg[TARGET_ADAPT], voxel_size=fly.voxel_size)
    target_all = Volume.from_array(fimg, voxel_size=fly.voxel_size)
    return vnc.image, membranes, ann, target_adapt, target_all, target_truth


def score(model, target_all, target_truth, resample=True):
    from vemkit.domain import label_free_scores, predict_sections

    probs, picked = predict_sections(model, target_all, sections=TARGET_TEST, resample=resample)
    pred = probs.argmax(0) == 1
    lf = label_free_scores(model, target_all, sections=TARGET_TEST[::3], resample=resample)
    return {"iou": iou(pred, target_truth[picked]), "confidence": lf["confidence"],
            "flip_agreement": lf["flip_agreement"], "foreground_fraction": lf["foreground_fraction"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-iterations", type=int, default=300, help="training budget of the source model")
    ap.add_argument("--iterations", type=int, default=150,
                    help="budget of each trained method (ynet, dann, few-label fine-tuning); iterations, not minutes, "
                         "so a busy machine changes the time but not the result")
    ap.add_argument("--few-label-sections", default="0,60", help="labelled target sections of the reference")
    ap.add_argument("--cache", default="/tmp/vemkit-domain", help="where the source model is kept between runs")
    ap.add_argument("--methods", default="histogram,adabn,ynet,dann", help="adaptation methods to run")
    ap.add_argument("--patch", type=int, default=256, help="adaptation patch side (128 gives a CPU 4x the steps)")
    ap.add_argument("--control", action="store_true",
                    help="also the control row: continued source training + AdaBN without the target (no adaptation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    from vemkit.adapt import adapt
    from vemkit.domain import domain_gap, predict_sections, resample_sections
    from vemkit.io import Volume
    from vemkit.models import load_model
    from vemkit.train import finetune

    torch.manual_seed(args.seed)
    src_img, membranes, ann, target_adapt, target_all, target_truth = load_data()
    cache = Path(args.cache) / f"source-{args.source_iterations}it-seed{args.seed}"
    t0 = time.perf_counter()
    if (cache / "config.json").exists():
        source_model = load_model(cache)
        print(f"source model: {cache} (cached)")
    else:
        source_model = finetune(src_img, ann, classes=["background", "membrane"], base=None,
                                iterations=args.source_iterations, validation=None, device="cpu", seed=args.seed,
                                out=cache, progress=False)
        print(f"source model: trained {source_model.training['iterations']} iterations in "
              f"{time.perf_counter() - t0:.0f} s -> {cache}")
    probs, picked = predict_sections(source_model, src_img, sections=SOURCE_TEST)
    source_iou = iou(probs.argmax(0) == 1, membranes[picked])
    print(f"source domain (VNC sections {SOURCE_TEST}): membrane IoU {source_iou:.3f}")

    gap = domain_gap(source_model, src_img, target_adapt, seed=args.seed)
    print("\ndomain gap (target as it comes):\n" + str(gap))

    rows = {}
    t = time.perf_counter()
    rows["no adaptation (target at 10 nm)"] = {**score(source_model, target_all, target_truth, resample=False),
                                                "seconds": 0.0}
    rows["resample to 4.6 nm"] = {**score(source_model, target_all, target_truth), "seconds": round(time.perf_counter() - t, 1)}
    for method in [m for m in args.methods.split(",") if m]:
        t = time.perf_counter()
        model = adapt(source_model, src_img, ann, target_adapt, method=method, iterations=args.iterations, device="cpu",
                      seed=args.seed, patch=args.patch, progress=False)
        seconds = time.perf_counter() - t
        extra = model.training["adaptation"].get("iterations")
        name = f"resample + {method}" + (f" ({extra} it)" if extra else "")
        rows[name] = {**score(model, target_all, target_truth), "seconds": round(seconds, 1)}
        print(f"{name}: IoU {rows[name]['iou']:.3f} ({seconds:.0f} s)", flush=True)

    if args.control:
        # the control: the same continued source training and AdaBN refresh with the target's part switched
        # off (DANN with zero reversed gradient), so that the gain of ynet/dann is not more source training
        t = time.perf_counter()
        model = adapt(source_model, src_img, ann, target_adapt, method="dann", domain_weight=0.0,
                      iterations=args.iterations, device="cpu", seed=args.seed, patch=args.patch, progress=False)
        name = f"control: {args.iterations} more source it + adabn"
        rows[name] = {**score(model, target_all, target_truth), "seconds": round(time.perf_counter() - t, 1)}
        print(f"{name}: IoU {rows[name]['iou']:.3f}", flush=True)

    # the reference: a few labelled target sections, resampled to the source pixels, fine-tuned from the source model
    sections = [int(s) for s in args.few_label_sections.split(",") if s]
    if sections:
        t = time.perf_counter()
        zoomed = resample_sections(target_adapt, source_model.voxel_size)
        truth = resample_sections(target_truth[TARGET_ADAPT].astype(np.uint8), source_model.voxel_size,
                                  voxel_size=target_adapt.voxel_size, order=0)
        tann = np.zeros(zoomed.shape, np.uint8)
        truth_np = np.asarray(truth.data)
        for z in sections:
            tann[z] = 1 + truth_np[z]
        zoomed = Volume.from_array(np.asarray(zoomed.data), voxel_size=zoomed.voxel_size)
        ft = finetune(zoomed, tann, classes=["background", "membrane"], base=str(cache), iterations=args.iterations,
                      validation=None, device="cpu", seed=args.seed, progress=False)
        name = f"fine-tune on {len(sections)} labelled target sections ({ft.training['iterations']} it)"
        rows[name] = {**score(ft, target_all, target_truth), "seconds": round(time.perf_counter() - t, 1)}

    print(f"\nTarget: FlyEM FIB-SEM sections {TARGET_TEST[0]}..{TARGET_TEST[-1]} step 5 (never seen); membrane IoU "
          f"against neuron boundaries. Source model: {source_model.training.get('iterations')} it; "
          f"each trained method {args.iterations} it (patch {args.patch}) on {platform.processor() or platform.machine()}, torch {torch.__version__}.")
    print(f"source model: membrane IoU {source_iou:.3f} on its own held-out sections")
    print(f"{'method':<58} {'target IoU':>10} {'flip agr.':>9} {'confid.':>8} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:<58} {r['iou']:>10.3f} {r['flip_agreement']:>9.3f} {r['confidence']:>8.3f} {r['seconds']:>8.1f}")
    from scipy.stats import spearmanr

    unsup = {k: v for k, v in rows.items() if not k.startswith(("fine-tune", "control"))}
    rho = spearmanr([r["iou"] for r in unsup.values()], [r["flip_agreement"] for r in unsup.values()]).statistic
    rho_c = spearmanr([r["iou"] for r in unsup.values()], [r["confidence"] for r in unsup.values()]).statistic
    print(f"rank correlation with the target IoU over the unsupervised rows: flip agreement {rho:.2f}, confidence {rho_c:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"source_iou": source_iou, "rows": rows, "gap": gap.to_dict(),
                                               "spearman_flip": rho, "spearman_confidence": rho_c,
                                               "args": vars(args)}, indent=1, default=float))
    return rows


if __name__ == "__main__":
    main()
