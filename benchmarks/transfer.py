"""Transfer learning on real data: fine-tuned base model vs from scratch vs random forest.

Same annotations, same test sections, same time budget for every method; IoU of the foreground class
on the sections no method was trained on. Two experiments:

- ``--experiment vnc`` (default): VNC ssTEM mitochondria, dense labels on sections 0 and 10, tested on
  the other 18 (the split of issue #5).
- ``--experiment isbi-curve``: ISBI 2012 membranes, IoU against the number of annotated sections
  (1, 2, 4, 8 from sections 0-19), tested on sections 20-29 — "how many sections must I annotate?".

Each mask is also scored after dropping objects smaller than ``--min-size-nm3`` (notebook 05's default,
2e6 nm³), ``--tta`` scores the U-Nets with flip test-time augmentation too, ``--plan KEY=JSON`` overrides
a field of their training plan, and ``--keep DIR`` keeps the models and probabilities.

A base model must not have seen the test labels: ``em2d-small`` never saw the VNC stack (use it for
``vnc``); ``em2d-small-vnc`` never saw ISBI (use it for ``isbi-curve``); the script refuses a base
model whose training record lists the test dataset.

Usage::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/transfer.py --minutes 10
    VEMKIT_DATA_DIR=../shared/data python benchmarks/transfer.py --experiment isbi-curve --minutes 2 --base em2d-small-vnc
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _iou(pred, truth):
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else float("nan")


def _load(experiment):
    from vemkit.datasets import load_dataset

    if experiment == "vnc":
        d = load_dataset("drosophila_vnc_sstem", progress=False)
        return d.image, np.asarray(d.labels["mitochondria"].data) > 0, "mitochondria", "drosophila_vnc_sstem"
    d = load_dataset("isbi2012", progress=False)
    return d.image, np.asarray(d.labels["membranes"].data) > 0, "membrane", "isbi2012"


def _annotations(truth, sections):
    ann = np.zeros(truth.shape, np.uint8)
    for z in sections:
        ann[z] = 1 + truth[z]
    return ann


def _check_base(base, dataset):
    from vemkit.models import load_model
    from vemkit.train import base_model_path

    path = Path(base) if Path(base).is_dir() else base_model_path(base)
    seen = load_model(path).training.get("sources", {})
    if dataset in seen:
        raise SystemExit(f"base model {base!r} was pretrained on {dataset}: its test sections are not unseen; "
                         "choose a base model that never saw this dataset")
    return path


def run_unet(image, ann, test, truth, classes, *, base, minutes, iterations, seed, device, workdir, tag, tta=False,
             overrides=None, min_size_nm3=None):
    from vemkit.io import open_volume
    from vemkit.predict import predict_volume
    from vemkit.train import finetune, plan_training

    plan = plan_training(image, ann, device=device, base=base, **(overrides or {}))
    t0 = time.perf_counter()
    model = finetune(image, ann, classes=classes, base=base, plan=plan, minutes=minutes, iterations=iterations,
                     validation=None, device=device, seed=seed, progress=False,
                     out=Path(workdir) / f"{tag}.model", overwrite=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = predict_volume(model, image, Path(workdir) / f"{tag}.ome.zarr", device=device, probabilities=True,
                         overwrite=True, progress=False)
    pred = np.asarray(open_volume(res.labels).data)
    out = {"iou": _iou(pred[test] == 1, truth[test]), "train_s": round(train_s, 1),
           "iterations": model.training["iterations"], "predict_s": round(time.perf_counter() - t0, 1)}
    if min_size_nm3:
        out["iou_min_size"] = _iou(_size_filtered(pred == 1, min_size_nm3, image.voxel_size)[test], truth[test])
    if tta:  # the same model, predicted with flip test-time augmentation
        res = predict_volume(model, image, Path(workdir) / f"{tag}-tta.ome.zarr", device=device, tta=True,
                             overwrite=True, progress=False)
        pred = np.asarray(open_volume(res.labels).data)
        out["iou_tta"] = _iou(pred[test] == 1, truth[test])
        if min_size_nm3:
            out["iou_tta_min_size"] = _iou(_size_filtered(pred == 1, min_size_nm3, image.voxel_size)[test], truth[test])
    return out


def _size_filtered(mask, min_size_nm3, voxel_size):
    """The mask without objects smaller than min_size_nm3 (26-connected), as notebook 05 drops them."""
    from vemkit.instances import connected_components

    return connected_components(mask, min_size_nm3=min_size_nm3, voxel_size=voxel_size) > 0


def run_rf(image, ann, test, truth, classes, *, seed, workdir, tag, n_estimators=100, min_size_nm3=None):
    from vemkit.io import open_volume
    from vemkit.pixel_classifier import PixelClassifier

    t0 = time.perf_counter()
    clf = PixelClassifier(classes=classes, n_estimators=n_estimators, seed=seed)
    clf.fit(image, ann, progress=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = clf.predict_to(image, Path(workdir) / f"{tag}.ome.zarr", overwrite=True, progress=False)
    pred = np.asarray(open_volume(out).data)
    r = {"iou": _iou(pred[test] == 1, truth[test]), "train_s": round(train_s, 1),
         "predict_s": round(time.perf_counter() - t0, 1)}
    if min_size_nm3:
        r["iou_min_size"] = _iou(_size_filtered(pred == 1, min_size_nm3, image.voxel_size)[test], truth[test])
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", choices=["vnc", "isbi-curve"], default="vnc")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per U-Net run")
    p.add_argument("--iterations", type=int, help="an iteration budget instead of --minutes (repeatable, "
                   "independent of the machine's load)")
    p.add_argument("--base", default=None, help="base model (default: em2d-small for vnc, em2d-small-vnc for isbi-curve)")
    p.add_argument("--methods", default="finetuned,scratch,rf")
    p.add_argument("--sections", default=None, help="annotated sections (vnc default 0,10)")
    p.add_argument("--curve", default="1,2,4,8", help="isbi-curve: numbers of annotated sections")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tta", action="store_true", help="also score the U-Nets with flip test-time augmentation")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--min-size-nm3", type=float, default=2e6,
                   help="also score each mask after dropping objects smaller than this (nm^3; default 2e6, "
                        "notebook 05's default; 0 to skip)")
    p.add_argument("--plan", action="append", default=[], metavar="KEY=JSON",
                   help="override a field of the U-Nets' training plan, e.g. --plan class_weights=[1,1] "
                        "--plan foreground_fraction=0.33 (repeatable)")
    p.add_argument("--keep", help="keep the trained models and predictions (with probabilities) in this folder "
                                  "instead of a temporary one, to study the errors afterwards")
    args = p.parse_args(argv)
    import torch

    from vemkit._volume import Volume

    image, truth, fg_name, dataset = _load(args.experiment)
    image = Volume(data=image.data.persist() if hasattr(image.data, "persist") else image.data,
                   voxel_size=image.voxel_size, source=image.source)
    classes = ["background", fg_name]
    base = args.base or ("em2d-small" if args.experiment == "vnc" else "em2d-small-vnc")
    methods = args.methods.split(",")
    if "finetuned" in methods:
        base = str(_check_base(base, dataset))
    overrides = {}
    for item in args.plan:
        key, _, value = item.partition("=")
        overrides[key.strip()] = json.loads(value)
    if overrides:
        print("plan overrides:", overrides)
    runs = []
    if args.experiment == "vnc":
        sections = [int(s) for s in (args.sections or "0,10").split(",")]
        runs.append(sections)
        test = [z for z in range(truth.shape[0]) if z not in sections]
    else:
        pool = list(range(20))
        test = list(range(20, 30))
        for k in (int(v) for v in args.curve.split(",")):
            runs.append(sorted({int(round(v)) for v in np.linspace(0, pool[-1], k)}))
    device = "cpu" if args.device == "cpu" else args.device
    minutes = None if args.iterations else args.minutes
    budget = f"{args.iterations} iterations" if args.iterations else f"{args.minutes:g} min"
    print(f"{args.experiment}: {dataset}, {fg_name}; test sections {test[0]}..{test[-1]} ({len(test)}); "
          f"device {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}); U-Net budget {budget} each")
    results = []
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as workdir:
        for sections in runs:
            ann = _annotations(truth, sections)
            row = {"sections": sections}
            for method in methods:
                t0 = time.perf_counter()
                if method == "finetuned":
                    r = run_unet(image, ann, test, truth, classes, base=base, minutes=minutes, iterations=args.iterations, seed=args.seed,
                                 device=device, workdir=workdir, tag=f"ft{len(sections)}", tta=args.tta, overrides=overrides,
                                 min_size_nm3=args.min_size_nm3)
                elif method == "scratch":
                    r = run_unet(image, ann, test, truth, classes, base=None, minutes=minutes, iterations=args.iterations, seed=args.seed,
                                 device=device, workdir=workdir, tag=f"sc{len(sections)}", tta=args.tta, overrides=overrides,
                                 min_size_nm3=args.min_size_nm3)
                elif method == "rf":
                    r = run_rf(image, ann, test, truth, classes, seed=args.seed, workdir=workdir, tag=f"rf{len(sections)}",
                               min_size_nm3=args.min_size_nm3)
                else:
                    raise SystemExit(f"unknown method {method!r}")
                row[method] = r
                tta_note = "".join(f", {label} {r[key]:.3f}" for key, label in
                                   [("iou_min_size", "objects >= min size"), ("iou_tta", "flip TTA"),
                                    ("iou_tta_min_size", "TTA + min size")] if key in r)
                tta_note = f" ({tta_note[2:]})" if tta_note else ""
                print(f"  {len(sections)} section(s) {sections}: {method:9s} IoU {r['iou']:.3f}{tta_note}  "
                      f"(train {r['train_s']:.0f} s{', ' + str(r.get('iterations')) + ' it' if 'iterations' in r else ''}; "
                      f"total {time.perf_counter() - t0:.0f} s)", flush=True)
            results.append(row)
    print()
    header = "sections | " + " | ".join(f"{m} IoU" for m in methods)
    print(header)
    print("-" * len(header))
    for row in results:
        print(f"{len(row['sections']):8d} | " + " | ".join(f"{row[m]['iou']:.3f}".rjust(len(m) + 4) for m in methods))
    if args.json:
        Path(args.json).write_text(json.dumps({"experiment": args.experiment, "base": base, "budget": budget, "plan": overrides,
                                               "test_sections": test, "results": results}, indent=1))


if __name__ == "__main__":
    main()
