"""The training planner: fingerprint the data and choose how to train on it, nnU-Net style, with the
reason for every choice (public as :func:`vemkit.train.plan_training` and :class:`vemkit.train.TrainingPlan`).

Not for: running the training (:func:`vemkit.train.finetune`, :mod:`vemkit._trainloop`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ._annotation_input import annotation_array
from ._basemodels import base_model_path
from ._device import resolve_device
from ._inputs import as_volume_array, paired_voxel_size

__all__ = ["TrainingPlan", "fingerprint", "plan_training"]


@dataclass
class TrainingPlan:
    """Every training choice, with the reason for it (:func:`plan_training`)."""

    ndim: int
    patch: tuple
    batch_size: int
    model_size: str = "small"
    residual: bool = False
    anisotropic: bool = True
    normalization: dict = field(default_factory=lambda: {"mode": "percentile", "lower": 1.0, "upper": 99.0})
    foreground_fraction: float = 0.5
    class_weights: list = field(default_factory=list)
    dice_weight: float = 1.0
    augment: str = "default"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    validation_sections: list = field(default_factory=list)
    extra_targets: list = field(default_factory=list)
    reasons: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch"] = list(self.patch)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingPlan":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d["patch"] = tuple(d["patch"])
        return cls(**d)

    def __str__(self):
        rows = [("network", f"{self.ndim}D U-Net, size {self.model_size}"
                 + (", anisotropic" if self.ndim == 3 and self.anisotropic else "")
                 + (", residual encoder" if self.residual else "")),
                ("patch", " x ".join(map(str, self.patch))),
                ("batch", str(self.batch_size)),
                ("normalisation", json.dumps(self.normalization)),
                ("sampling", f"{self.foreground_fraction:.0%} of patches centred on a foreground class"),
                ("class weights", ", ".join(f"{w:.2f}" for w in self.class_weights)),
                ("loss", f"{'' if len(set(self.class_weights)) <= 1 else 'weighted '}cross-entropy + "
                         f"{self.dice_weight:g} x Dice, unlabelled voxels ignored"),
                ("augmentation", self.augment),
                ("optimiser", f"AdamW lr {self.lr:g}, weight decay {self.weight_decay:g}, poly decay"),
                ("validation", f"sections {self.validation_sections}" if self.validation_sections else "none"),
                ("extra targets", ", ".join(self.extra_targets) or "none")]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        if self.reasons:
            lines.append("why:")
            lines += [f"  {k}: {v}" for k, v in self.reasons.items()]
        return "\n".join(lines)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path



def fingerprint(image_shape, voxel_size, ann):
    """Annotated sections, their bounding box and per-value counts, read section by section."""
    zs, counts, boxes = [], np.zeros(256, np.int64), []
    for z in range(ann.shape[0]):
        sec = np.asarray(ann[z])
        if sec.min() < 0:
            raise ValueError(f"annotations hold negative values in section {z}; expected 0 = unlabelled, 1 = background, 2.. = classes")
        if np.any(sec):
            zs.append(z)
            counts += np.bincount(sec.ravel().astype(np.int64), minlength=256)[:256]
            ys, xs = np.nonzero(sec)
            boxes.append((ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
    runs, run = [], 0
    for i, z in enumerate(zs):
        run = run + 1 if i and z == zs[i - 1] + 1 else 1
        runs.append(run)
    box = None
    if boxes:
        b = np.array(boxes)
        box = [int(min(zs)), int(max(zs)) + 1, int(b[:, 0].min()), int(b[:, 1].max()), int(b[:, 2].min()), int(b[:, 3].max())]
    return {
        "image_shape": [int(s) for s in image_shape],
        "voxel_size": list(voxel_size) if voxel_size else None,
        "anisotropy": float(voxel_size[0] / min(voxel_size[1:])) if voxel_size else 1.0,
        "annotated_sections": [int(z) for z in zs],
        "longest_annotated_run": int(max(runs) if runs else 0),
        "bounding_box": box,
        "counts": {int(v): int(c) for v, c in enumerate(counts) if c and v},
    }



def plan_training(image, annotations, *, voxel_size=None, device="auto", memory_limit=None, base=None,
                  **overrides) -> TrainingPlan:
    """Choose how to train on these annotations, nnU-Net style, and say why.

    Parameters
    ----------
    image : path, Volume or array (Z, Y, X)
    annotations : Annotations, path or integer array (Z, Y, X)
        0 = unlabelled, 1 = background, 2.. = classes.
    voxel_size : tuple of 3 float, optional
        Default: the image's or the annotations'.
    device : str
        Where training will run (patch and batch follow its memory).
    base : str or Path, optional
        A base model to fine-tune: its dimensionality wins over the planner's choice.
    **overrides
        Any :class:`TrainingPlan` field, e.g. ``ndim=3, patch=(16, 128, 128), batch_size=2``.

    Returns
    -------
    TrainingPlan

    Examples
    --------
    >>> import numpy as np
    >>> ann = np.zeros((20, 256, 256), np.uint8); ann[[0, 10], :, :] = 1; ann[[0, 10], 100:140, 100:140] = 2
    >>> plan = plan_training(np.zeros((20, 256, 256), np.uint8), ann, voxel_size=(50, 5, 5), device="cpu")
    >>> plan.ndim, plan.patch
    (2, (1, 256, 256))
    """
    unknown = set(overrides) - {f.name for f in fields(TrainingPlan)}
    if unknown:
        raise ValueError(f"unknown plan settings {sorted(unknown)}; choose from {[f.name for f in fields(TrainingPlan)]}")
    data, image_vs, _ = as_volume_array(image, "image")
    ann, _classes, ann_vs = annotation_array(annotations)
    vs = paired_voxel_size(data, image_vs, ann, ann_vs, other_name="annotations", voxel_size=voxel_size,
                           needed_for="the plan depends on it")
    fp = fingerprint(data.shape, vs, ann)
    _check_counts(fp["counts"])
    dev = resolve_device(device)
    reasons = {}
    ndim = int(overrides.get("ndim", _choose_ndim(fp, base, "ndim" in overrides, reasons)))
    anisotropic = fp["anisotropy"] > 1.5
    patch, batch = _choose_patch(ndim, anisotropic, dev.type == "cuda", data.shape, reasons)
    weights, fg_fraction = _class_weights(fp["counts"], reasons)
    val = _validation_sections(ndim, fp["annotated_sections"], reasons)
    plan = TrainingPlan(ndim=ndim, patch=patch, batch_size=batch, anisotropic=anisotropic,
                        class_weights=weights, foreground_fraction=fg_fraction,
                        validation_sections=val, reasons=reasons, fingerprint=fp)
    for k, v in overrides.items():
        setattr(plan, k, tuple(v) if k == "patch" else v)
        plan.reasons[k] = "set by the user"
    if len(plan.patch) != 3:
        raise ValueError(f"patch must be (z, y, x), got {plan.patch}")
    if plan.ndim == 2 and plan.patch[0] != 1:
        plan.patch = (1, *plan.patch[1:])
    return plan


def _check_counts(counts):
    if not counts:
        raise ValueError("the annotations are empty: paint background (value 1) and each class (2..) on a few sections")
    if len(counts) < 2:
        only = next(iter(counts))
        raise ValueError(f"the annotations hold a single value ({only}); a segmentation needs background (1) and at "
                         "least one class (2..): annotate both")
    if max(counts) < 2:
        raise ValueError("the annotations have no foreground (values 2..): annotate some objects of each class")


def _choose_ndim(fp, base, overridden, reasons):
    """2D or 3D: the base model's, else from the anisotropy and how the annotated sections lie."""
    from .models import load_model

    a = fp["anisotropy"]
    if base in ("auto", "none"):
        base = None  # "auto" follows the plan's dimensionality (vemkit.train.finetune)
    if base is not None and not overridden:
        base_model = load_model(base if isinstance(base, (str, Path)) and Path(base).is_dir() else base_model_path(str(base)))
        reasons["ndim"] = f"the base model is {base_model.ndim}D"
        return base_model.ndim
    run = fp["longest_annotated_run"]
    if a > 3:
        reasons["ndim"] = f"z spacing is {a:.1f}x the in-plane spacing: neighbouring sections differ too much for 3D kernels to pay off"
        return 2
    if run < 8:
        reasons["ndim"] = f"annotations lie on isolated sections (longest run {run}): a 3D patch would be mostly unlabelled"
        return 2
    reasons["ndim"] = f"{run} consecutive annotated sections at anisotropy {a:.1f}"
    return 3


def _choose_patch(ndim, anisotropic, gpu, shape, reasons):
    """Patch and batch size from the device's memory, within the image."""
    Z, Y, X = shape
    if ndim == 2:
        side = 512 if gpu else 256
        side = max(32, min(side, _floor16(Y), _floor16(X)))
        reasons["patch"] = f"{side}x{side}: {'GPU' if gpu else 'CPU'} memory and speed, within the image"
        return (1, side, side), (16 if gpu else 4)
    pz = min(32 if anisotropic else 64, _floor_to(Z, 4 if not anisotropic else 2))
    side = 192 if gpu else 128
    side = max(32, min(side, _floor16(Y), _floor16(X)))
    if not anisotropic:
        side = min(side, 96 if not gpu else 128)
        pz = min(pz, side)
    patch = (max(pz, 4), side, side)
    reasons["patch"] = f"{patch}: {'GPU' if gpu else 'CPU'} memory; z {'shallower' if anisotropic else 'as deep as'} than in-plane"
    return patch, (4 if gpu else 2)


def _class_weights(counts, reasons):
    """Class weights (1 for every annotated class) and the share of foreground-centred patches."""
    n_classes = max(counts)  # annotation values 1..n -> classes 0..n-1
    freq = np.array([counts.get(v, 0) for v in range(1, n_classes + 1)], float)
    present = freq > 0
    w = np.zeros(n_classes)
    w[present] = 1.0 / np.sqrt(freq[present] / freq[present].sum())
    w[present] /= w[present].mean()
    w = np.clip(w, 0.2, 5.0)
    # Dice and foreground-centred patches already balance the classes (nnU-Net's recipe); weighting the
    # cross-entropy as well over-segments the rare class (benchmarks/transfer.py, VNC mitochondria).
    reasons["class_weights"] = ("1 for every class: the Dice term and the foreground-centred patches already "
                                "balance rare classes, and weighting the cross-entropy as well made "
                                "mitochondria over-segmented; to weigh rare classes up anyway, pass "
                                "class_weights=[" + ", ".join(f"{v:.2f}" for v in w) + "] (inverse square "
                                "root of each class's share of annotated voxels)")
    fg_share = freq[1:].sum() / freq.sum()
    reasons["foreground_fraction"] = f"foreground is {fg_share:.1%} of the annotated voxels"
    return [float(v) for v in np.where(present, 1.0, 0.0)], (0.5 if fg_share < 0.3 else 0.33)


def _validation_sections(ndim, sections, reasons):
    """Annotated sections held out to watch IoU (2D, at least three annotated sections)."""
    if ndim == 2 and len(sections) >= 3:
        k = max(1, len(sections) // 5)
        val = sections[len(sections) // 2 :: max(1, len(sections) // k)][:k]
        reasons["validation_sections"] = f"{len(val)} of {len(sections)} annotated sections held out to watch IoU"
        return val
    reasons["validation_sections"] = ("too few annotated sections to hold some out" if ndim == 2 else
                                      "3D: pass validation data explicitly to watch IoU")
    return []


def _floor16(n):
    return max(16, (int(n) // 16) * 16)


def _floor_to(n, d):
    return max(d, (int(n) // d) * d)
