"""Zero-shot quality of a base model: IoU per class on the shared datasets, no fine-tuning.

A base model is only honestly scored on data it never saw: the output marks each dataset the model's
training record lists as "(seen in pretraining)".

Usage::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/base_models.py em2d-small
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS = {
    "drosophila_vnc_sstem": {"membrane": "membranes", "mitochondria": "mitochondria"},
    "isbi2012": {"membrane": "membranes"},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="shipped base model name or model directory")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    from vemkit.datasets import load_dataset
    from vemkit.io import open_volume
    from vemkit.models import load_model
    from vemkit.predict import predict_volume
    from vemkit.train import base_model_path

    path = Path(args.model) if Path(args.model).is_dir() else base_model_path(args.model)
    model = load_model(path)
    seen = set(model.training.get("sources", {}))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, labels in TARGETS.items():
            d = load_dataset(name, progress=False)
            t0 = time.perf_counter()
            res = predict_volume(model, d.image, Path(tmp) / f"{name}.ome.zarr", device=args.device, progress=False)
            pred = np.asarray(open_volume(res.labels).data)
            for cls, key in labels.items():
                truth = np.asarray(d.labels[key].data) > 0
                mask = pred == model.classes.index(cls)
                iou = float((mask & truth).sum() / max((mask | truth).sum(), 1))
                note = " (seen in pretraining)" if name in seen else ""
                results[f"{name} {cls}"] = {"iou": round(iou, 3), "seen": name in seen}
                print(f"{name:22s} {cls:13s} IoU {iou:.3f}{note}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(path), "results": results}, indent=1))


if __name__ == "__main__":
    main()
