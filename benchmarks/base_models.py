"""Zero-shot quality of base models (IoU per class, no fine-tuning) and the honest leave-one-out table.

Two modes:

- ``base_models.py MODEL``: zero-shot IoU per class of a shipped base model (or model directory) on
  the shared datasets; each dataset the model's training record lists is marked "(seen in
  pretraining)", and the held-out test split (see ``TEST_SPLIT``) is scored apart from the rest.
- ``base_models.py --leave-one-out cdeep3m_mito,drosophila_vnc_sstem``: for each named dataset,
  pretrain the ``mito2d`` recipe *without it* (once; reused from ``--work`` when already there), score
  its mitochondria IoU zero-shot, then fine-tune on 1, 2 and 4 of its sections (``--shots``) for
  ``--finetune-minutes`` each, beside a U-Net from scratch and the random forest with the same sections
  and budget, all scored on the dataset's test split, which no method trains on.

Test splits: ``cdeep3m_mito`` -> its 'validation' volume (10 sections), fine-tuning sections come from
its 'training' volume; ``drosophila_vnc_sstem`` -> sections 16-19, fine-tuning sections from 0-15.
The shipped ``em2d-mito`` saw neither test split.

Usage::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/base_models.py em2d-mito
    VEMKIT_DATA_DIR=../shared/data python benchmarks/base_models.py --leave-one-out cdeep3m_mito,drosophila_vnc_sstem \\
        --work /tmp/loo --pretrain-minutes 30 --shots 1,2,4 --finetune-minutes 5 --json /tmp/loo.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

TARGETS = {
    "drosophila_vnc_sstem": {"membrane": "membranes", "mitochondria": "mitochondria"},
    "isbi2012": {"membrane": "membranes"},
    "cdeep3m_mito": {"mitochondria": "mitochondria"},
    # labs and microscopes no vemkit model saw, for `--datasets lucchi_pp,mitoem_h` on a machine with network
    # (declared in data_manifest.json, not in ../shared/data; never run here): Lucchi++ FIB-SEM 5 nm, MitoEM-H
    # multi-beam SEM 8 nm (its 'val' volume, 100 x 4096 x 4096: a GPU job); both are scored on all sections
    "lucchi_pp": {"mitochondria": "mitochondria"},
    "mitoem_h": {"mitochondria": "mitochondria"},
}
#: what ``base_models.py MODEL`` scores without --datasets (the ones in ../shared/data)
DEFAULT_DATASETS = ("drosophila_vnc_sstem", "isbi2012", "cdeep3m_mito")
#: dataset -> (sections fine-tuning may use, test sections), in the stacked (training [+ validation]) volume
TEST_SPLIT = {"drosophila_vnc_sstem": (list(range(16)), [16, 17, 18, 19]),
              "cdeep3m_mito": (list(range(20)), list(range(20, 30)))}
#: which fine-tuning sections for k shots (spread over the allowed ones)
SHOTS = {1: [0], 2: [0, 10], 4: [0, 5, 10, 15]}


def _iou(pred, truth):
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else float("nan")


def load_stack(name):
    """(image Volume, {label name: bool array}) of a dataset, cdeep3m's two volumes stacked in z order."""
    from vemkit._volume import Volume
    from vemkit.datasets import load_dataset

    if name == "cdeep3m_mito":
        parts = [load_dataset(name, v, progress=False) for v in ("training", "validation")]
        img = np.concatenate([np.asarray(d.image.data) for d in parts])
        mito = np.concatenate([np.asarray(d.labels["mitochondria"].data) > 0 for d in parts])
        return Volume.from_array(img, voxel_size=parts[0].voxel_size, source=name), {"mitochondria": mito}
    d = load_dataset(name, progress=False)
    return d.image, {k: np.asarray(v.data) > 0 for k, v in d.labels.items() if k in TARGETS[name].values()}


def predict_classes(model, image, workdir, tag, device="cpu", rescale=1.0):
    """Labels of ``image`` and the rescale factor the prediction used."""
    from vemkit.io import open_volume
    from vemkit.predict import predict_volume

    res = predict_volume(model, image, Path(workdir) / f"{tag}.ome.zarr", device=device, overwrite=True, progress=False,
                         rescale=rescale)
    return np.asarray(open_volume(res.labels).data), res.parameters["rescale"]


def resample_sections(image, labels, pixel):
    """The stack as a microscope with ``pixel`` times the pixel size would record it (sections zoomed
    by 1 / pixel: grey values linear, labels nearest)."""
    from scipy import ndimage

    from vemkit._volume import Volume

    img = np.stack([ndimage.zoom(s.astype(np.float32), 1 / pixel, order=1) for s in np.asarray(image.data)])
    img = img.round().clip(0, 255).astype(np.uint8)
    labels = {k: np.stack([ndimage.zoom(s.astype(np.uint8), 1 / pixel, order=0) for s in v]).astype(bool)
              for k, v in labels.items()}
    vs = tuple(v * f for v, f in zip(image.voxel_size, (1, pixel, pixel)))
    return Volume.from_array(img, voxel_size=vs, source=f"{image.source} x{pixel:g}"), labels


def zero_shot(model_path, device="cpu", datasets=None, rescale=1.0, pixel=1.0):
    """IoU per (dataset, class) of a model with no fine-tuning: all sections and the test split
    (``pixel`` != 1: the sections resampled as by a microscope with that many times the pixel size)."""
    from vemkit.models import load_model
    from vemkit.pretrain import class_index

    model = load_model(model_path)
    seen = set(model.training.get("sources", {})) | set((model.training.get("init") or {}).get("seen", []))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets or DEFAULT_DATASETS:
            image, labels = load_stack(name)
            if pixel != 1.0:
                image, labels = resample_sections(image, labels, pixel)
            t0 = time.perf_counter()
            pred, factor = predict_classes(model, image, tmp, name, device, rescale)
            for cls, key in TARGETS[name].items():
                mask = pred == class_index(model, cls)
                truth = labels[key]
                test = TEST_SPLIT.get(name, (None, list(range(truth.shape[0]))))[1]
                r = {"iou_all": round(_iou(mask, truth), 3), "iou_test": round(_iou(mask[test], truth[test]), 3),
                     "seen": name in seen, "rescale": factor}
                results[f"{name} {cls}"] = r
                note = " (seen in pretraining)" if name in seen else ""
                print(f"{name:22s} {cls:13s} IoU all {r['iou_all']:.3f}  test split {r['iou_test']:.3f}{note}  "
                      f"rescale {factor:g} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return results


def pretrain_without(held_out, work, minutes, device):
    """The mito2d recipe without ``held_out`` (VNC: all its sections when it is not the one held out)."""
    from vemkit.models import load_model
    from vemkit.pretrain import RECIPES, pretrain

    out = Path(work) / f"loo-{held_out}"
    if (out / "config.json").is_file():
        print(f"reusing {out} (pretrained without {held_out})", flush=True)
        return out, load_model(out).training
    recipe = dict(RECIPES["mito2d"])
    recipe["sources"] = tuple(s for s in recipe["sources"] if s != held_out)
    recipe["vnc_sections"] = None
    recipe["description"] = f"mito2d recipe without {held_out} (leave-one-out benchmark)"
    recipe["minutes"] = minutes
    model = pretrain(out, device=device, progress=False, recipe="mito2d", **recipe)
    if held_out in (model.training.get("init") or {}).get("seen", []):
        raise SystemExit(f"the recipe's init base model saw {held_out}: not a leave-one-out")
    return out, model.training


def finetune_row(name, base, k, minutes, device, work, methods=("finetuned", "scratch", "random_forest")):
    """IoU on the test split after training on k sections: fine-tuned base, scratch U-Net, random forest."""
    from transfer import run_rf, run_unet

    image, labels = load_stack(name)
    truth = labels["mitochondria"]
    train = SHOTS[k]
    test = TEST_SPLIT[name][1]
    ann = np.zeros(truth.shape, np.uint8)
    for z in train:
        ann[z] = 1 + truth[z]
    classes = ["background", "mitochondria"]
    row = {}
    for method, b in (("finetuned", str(base)), ("scratch", None)):
        if method not in methods:
            continue
        row[method] = run_unet(image, ann, test, truth, classes, base=b, minutes=minutes, iterations=None, seed=0,
                               device=device, workdir=work, tag=f"{name}-{k}-{method}")
        print(f"{name} {k} section(s) {method:9s} IoU {row[method]['iou']:.3f} ({row[method]['iterations']} it)",
              flush=True)
    if "random_forest" in methods:
        row["random_forest"] = run_rf(image, ann, test, truth, classes, seed=0, workdir=work, tag=f"{name}-{k}-rf")
        print(f"{name} {k} section(s) random forest IoU {row['random_forest']['iou']:.3f}", flush=True)
    return row


def leave_one_out(args):
    import platform

    results = {"device": args.device, "machine": platform.processor() or platform.machine(), "datasets": {}}
    for name in args.leave_one_out.split(","):
        if name not in TEST_SPLIT:
            raise SystemExit(f"--leave-one-out: no test split for {name!r}; choose from {sorted(TEST_SPLIT)}")
        entry = {}
        path = None
        if not args.skip_zero_shot or "finetuned" in args.methods.split(","):  # only these need the model
            path, record = pretrain_without(name, args.work, args.pretrain_minutes, args.device)
            entry = {"model": str(path), "pretrain_seconds": record["seconds"],
                     "pretrain_iterations": record["iterations"], "pretrain_device": record["device"]}
        if not args.skip_zero_shot:
            entry["zero_shot"] = zero_shot(path, args.device, [name], args.rescale)[f"{name} mitochondria"]
        for k in [int(v) for v in args.shots.split(",")] if args.shots else []:
            entry[f"{k}_sections"] = finetune_row(name, path, k, args.finetune_minutes, args.device, args.work,
                                                  args.methods.split(","))
        results["datasets"][name] = entry
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def _rescale_arg(text):
    from vemkit.predict import check_rescale  # the checks and messages predict_volume itself uses

    return check_rescale(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", help="shipped base model name or model directory (zero-shot scores)")
    p.add_argument("--leave-one-out", metavar="DATASETS", help="comma-separated datasets to hold out, one pretraining each")
    p.add_argument("--work", default="loo-models", help="where leave-one-out models are written (and reused)")
    p.add_argument("--pretrain-minutes", type=float, default=30.0)
    p.add_argument("--shots", default="", help="fine-tuning rows, e.g. 1,2,4 (default: zero-shot only)")
    p.add_argument("--finetune-minutes", type=float, default=5.0)
    p.add_argument("--skip-zero-shot", action="store_true")
    p.add_argument("--methods", default="finetuned,scratch,random_forest",
                   help="fine-tuning rows: which of finetuned, scratch, random_forest (run them as parallel jobs)")
    p.add_argument("--datasets", help="MODEL mode: comma-separated subset of " + ", ".join(TARGETS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--rescale", type=_rescale_arg, default=1.0, help="zero-shot prediction at this size factor, or 'auto' "
                   "(vemkit.predict.predict_volume's rescale; default 1: the image as it is)")
    p.add_argument("--pixel", type=float, default=1.0, help="MODEL mode: score on the sections resampled as a "
                   "microscope with this many times the pixel size would record them (e.g. 2: 9.2 nm VNC)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--write-card", action="store_true",
                   help="MODEL mode: append the measured table to the model's MODEL_CARD.md and training.json")
    args = p.parse_args(argv)
    if args.leave_one_out:
        leave_one_out(args)
        return
    if not args.model:
        p.error("give a MODEL or --leave-one-out")
    from vemkit.train import base_model_path

    path = Path(args.model) if Path(args.model).is_dir() else base_model_path(args.model)
    t0 = time.perf_counter()
    results = zero_shot(path, args.device, args.datasets.split(",") if args.datasets else None, args.rescale,
                        args.pixel)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(path), "results": results}, indent=1))
    if args.write_card:
        write_scores(path, results, " ".join(["python benchmarks/base_models.py", *(argv or sys.argv[1:])]),
                     args.device, time.perf_counter() - t0)


def write_scores(path, results, command, device, seconds):
    """Append the measured zero-shot table to the model's MODEL_CARD.md and its training.json."""
    import datetime
    import platform

    path = Path(path)
    when = datetime.date.today().isoformat()
    where = f"{device} ({platform.processor() or platform.machine()})"
    rows = ["", "## Validation", "", "Zero-shot (no fine-tuning), measured by the benchmark, not by pretraining.",
            f"Measured with `VEMKIT_DATA_DIR=../shared/data {command}` on {where}, {when}, in "
            f"{seconds / 60:.1f} min. Test split: CDeep3M's 'validation' volume and VNC sections 16-19 (never seen "
            "by the recipe mito2d); ISBI has no held-out split (the recipe trains on all its sections).", "",
            "| dataset | class | IoU test split | IoU all sections | note |", "|---|---|---|---|---|"]
    for key, r in results.items():
        name, cls = key.split(" ")
        note = "dataset seen in pretraining (other sections)" if r["seen"] else "never seen"
        rows.append(f"| {name} | {cls} | {r['iou_test']:.3f} | {r['iou_all']:.3f} | {note} |")
    card = path / "MODEL_CARD.md"
    card.write_text(card.read_text().rstrip("\n") + "\n" + "\n".join(rows) + "\n")
    rec_path = path / "training.json"
    rec = json.loads(rec_path.read_text())
    rec["zero_shot"] = {"command": command, "device": where, "date": when, "results": results}
    rec_path.write_text(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
