"""Train and fine-tune U-Nets on sparse annotations: self-configuring plan, sampling, losses, loop.

- :func:`plan_training` fingerprints the data (voxel size, where the annotations are, class
  balance, device memory) and chooses 2D / anisotropic 3D / 3D, patch and batch size, normalisation,
  sampling and class weights (1 unless overridden), nnU-Net style; every choice says why and can be overridden.
- :func:`finetune` trains a :class:`~vemkit.models.SegmentationModel` from a base model (or from
  scratch) under a time or iteration budget: 0-valued annotations are ignored by every loss,
  cross-entropy (optionally class-weighted) plus Dice, foreground-biased patches, augmentations
  (:mod:`vemkit.augment`), mixed precision on GPU, validation on held-out annotated sections,
  checkpoints and resume, a progress bar and a live loss/IoU plot.
- :func:`list_base_models` / :func:`base_model_path`: the pretrained base models shipped with vemkit.

Not for: running a trained model over a volume (:mod:`vemkit.predict`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

__all__ = [
    "TrainingPlan",
    "base_model_path",
    "finetune",
    "list_base_models",
    "masked_losses",
    "plan_training",
    "plot_history",
]

BASE_MODELS_DIR = Path(__file__).parent / "base_models"
EXTRA_TARGETS = ("boundary", "distance")


# -------------------------------------------------------------------------------------- base models
#: The base ``finetune(base="auto")`` starts from, per network dimensionality: the general one (the
#: others are variants kept for benchmarks, such as ``em2d-small-vnc``, which saw the VNC stack).
DEFAULT_BASE_MODELS = {2: "em2d-small"}


def list_base_models() -> dict:
    """The pretrained base models shipped with vemkit: name -> one-line description.

    Examples
    --------
    >>> isinstance(list_base_models(), dict)
    True
    """
    out = {}
    if BASE_MODELS_DIR.is_dir():
        for d in sorted(BASE_MODELS_DIR.iterdir()):
            cfg = d / "config.json"
            if cfg.is_file():
                rec = d / "training.json"
                desc = json.loads(rec.read_text()).get("description", "") if rec.is_file() else ""
                out[d.name] = desc
    return out


def base_model_path(name: str) -> Path:
    """Directory of a shipped base model (see :func:`list_base_models`)."""
    path = BASE_MODELS_DIR / name
    if not (path / "config.json").is_file():
        known = ", ".join(list_base_models()) or "none shipped"
        raise ValueError(f"unknown base model {name!r}; shipped base models: {known}")
    return path


# --------------------------------------------------------------------------------------------- plan
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


def _annotation_array(annotations):
    from ._annotations import Annotations

    if isinstance(annotations, (str, Path)):
        from ._annotations import open_annotations

        annotations = open_annotations(annotations)
    classes = annotations.classes if isinstance(annotations, Annotations) else None
    array = annotations.array if isinstance(annotations, Annotations) else annotations
    if getattr(array, "ndim", 0) == 2:
        array = np.asarray(array)[None]
    if getattr(array, "ndim", 0) != 3:
        raise ValueError(f"annotations must be (z, y, x), got shape {getattr(array, 'shape', None)}")
    if not np.issubdtype(np.dtype(array.dtype), np.integer):
        raise ValueError(f"annotations have dtype {array.dtype}; expected integers (0 = unlabelled, 1 = background, 2.. = classes)")
    return array, classes, getattr(annotations, "voxel_size", None)


def _fingerprint(image_shape, voxel_size, ann):
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
    from ._device import resolve_device
    from ._voxel import check_voxel_size
    from .predict import _open_image

    unknown = set(overrides) - {f.name for f in fields(TrainingPlan)}
    if unknown:
        raise ValueError(f"unknown plan settings {sorted(unknown)}; choose from {[f.name for f in fields(TrainingPlan)]}")
    data, image_vs, _ = _open_image(image)
    ann, _classes, ann_vs = _annotation_array(annotations)
    if tuple(ann.shape) != tuple(data.shape):
        raise ValueError(f"annotations have shape {tuple(ann.shape)} but the image has shape {tuple(data.shape)}")
    vs = voxel_size or image_vs or ann_vs
    if vs is None:
        raise ValueError("the voxel size is unknown: pass voxel_size=(z, y, x) in nm (the plan depends on it)")
    vs = check_voxel_size(vs)
    fp = _fingerprint(data.shape, vs, ann)
    counts = fp["counts"]
    if not counts:
        raise ValueError("the annotations are empty: paint background (value 1) and each class (2..) on a few sections")
    if len(counts) < 2:
        only = next(iter(counts))
        raise ValueError(f"the annotations hold a single value ({only}); a segmentation needs background (1) and at "
                         "least one class (2..): annotate both")
    if max(counts) < 2:
        raise ValueError("the annotations have no foreground (values 2..): annotate some objects of each class")
    dev = resolve_device(device)
    reasons = {}
    # -- dimensionality
    a = fp["anisotropy"]
    if base in ("auto", "none"):
        base = None  # "auto" follows the plan's dimensionality (vemkit.train.finetune)
    if base is not None and "ndim" not in overrides:
        from .models import load_model

        base_model = load_model(base if isinstance(base, (str, Path)) and Path(base).is_dir() else base_model_path(str(base)))
        ndim = base_model.ndim
        reasons["ndim"] = f"the base model is {ndim}D"
    elif a > 3:
        ndim = 2
        reasons["ndim"] = f"z spacing is {a:.1f}x the in-plane spacing: neighbouring sections differ too much for 3D kernels to pay off"
    elif fp["longest_annotated_run"] < 8:
        ndim = 2
        reasons["ndim"] = (f"annotations lie on isolated sections (longest run {fp['longest_annotated_run']}): a 3D patch "
                           "would be mostly unlabelled")
    else:
        ndim = 3
        reasons["ndim"] = f"{fp['longest_annotated_run']} consecutive annotated sections at anisotropy {a:.1f}"
    ndim = int(overrides.get("ndim", ndim))
    anisotropic = a > 1.5
    # -- patch and batch from device memory
    gpu = dev.type == "cuda"
    Z, Y, X = data.shape
    if ndim == 2:
        side = 512 if gpu else 256
        side = max(32, min(side, _floor16(Y), _floor16(X)))
        patch = (1, side, side)
        batch = 16 if gpu else 4
        reasons["patch"] = f"{side}x{side}: {'GPU' if gpu else 'CPU'} memory and speed, within the image"
    else:
        pz = min(32 if anisotropic else 64, _floor_to(Z, 4 if not anisotropic else 2))
        side = 192 if gpu else 128
        side = max(32, min(side, _floor16(Y), _floor16(X)))
        if not anisotropic:
            side = min(side, 96 if not gpu else 128)
            pz = min(pz, side)
        patch = (max(pz, 4), side, side)
        batch = 4 if gpu else 2
        reasons["patch"] = f"{patch}: {'GPU' if gpu else 'CPU'} memory; z {'shallower' if anisotropic else 'as deep as'} than in-plane"
    # -- class balance
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
    w = np.where(present, 1.0, 0.0)
    fg_share = freq[1:].sum() / freq.sum()
    fg_fraction = 0.5 if fg_share < 0.3 else 0.33
    reasons["foreground_fraction"] = f"foreground is {fg_share:.1%} of the annotated voxels"
    # -- validation: hold out annotated sections when there are enough
    sections = fp["annotated_sections"]
    val = []
    if ndim == 2 and len(sections) >= 3:
        k = max(1, len(sections) // 5)
        val = sections[len(sections) // 2 :: max(1, len(sections) // k)][:k]
        reasons["validation_sections"] = f"{len(val)} of {len(sections)} annotated sections held out to watch IoU"
    else:
        reasons["validation_sections"] = ("too few annotated sections to hold some out" if ndim == 2 else
                                          "3D: pass validation data explicitly to watch IoU")
    plan = TrainingPlan(ndim=ndim, patch=patch, batch_size=batch, anisotropic=anisotropic,
                        class_weights=[float(v) for v in w], foreground_fraction=fg_fraction,
                        validation_sections=val, reasons=reasons, fingerprint=fp)
    for k, v in overrides.items():
        setattr(plan, k, tuple(v) if k == "patch" else v)
        plan.reasons[k] = "set by the user"
    if len(plan.patch) != 3:
        raise ValueError(f"patch must be (z, y, x), got {plan.patch}")
    if plan.ndim == 2 and plan.patch[0] != 1:
        plan.patch = (1, *plan.patch[1:])
    return plan


def _floor16(n):
    return max(16, (int(n) // 16) * 16)


def _floor_to(n, d):
    return max(d, (int(n) // d) * d)


# -------------------------------------------------------------------------------------------- data
class _PatchSampler:
    """Random training patches from an in-memory region, centred on annotated voxels (foreground
    classes with probability ``fg_fraction``)."""

    def __init__(self, image, labels, patch, ndim, fg_fraction, rng, sections=None):
        self.image, self.labels = image, labels  # float32 (Z, Y, X), int16 (Z, Y, X) with -1 = ignore
        self.patch, self.ndim, self.fg, self.rng = tuple(patch), ndim, fg_fraction, rng
        mask = labels >= 0
        if sections is not None:
            keep = np.zeros(labels.shape[0], bool)
            keep[list(sections)] = True
            mask &= keep[:, None, None]
        coords = np.argwhere(mask)
        if coords.size == 0:
            raise ValueError("no annotated voxels left for training (all held out for validation?)")
        values = labels[tuple(coords.T)]
        limit = 2_000_000
        self.any = coords[rng.choice(len(coords), limit, replace=False)] if len(coords) > limit else coords
        fgc = coords[values >= 1]
        self.fg_coords = fgc[rng.choice(len(fgc), limit, replace=False)] if len(fgc) > limit else fgc

    def _crop(self, centre):
        from ._blockwise import read_with_halo

        pz, py, px = self.patch
        start = [int(c) - p // 2 for c, p in zip(centre, (pz, py, px))]
        # jitter so the annotated voxel is not always in the middle
        start[1] += int(self.rng.integers(-py // 4, py // 4 + 1))
        start[2] += int(self.rng.integers(-px // 4, px // 4 + 1))
        region = tuple(slice(s, s + p) for s, p in zip(start, (pz, py, px)))
        img = read_with_halo(self.image, region, (0, 0, 0)) if _inside(region, self.image.shape) else \
            _padded(self.image, region, 0.0)
        lab = _padded(self.labels, region, -1)
        return img, lab

    def sample(self, batch):
        imgs, labs = [], []
        for _ in range(batch):
            pool = self.fg_coords if (len(self.fg_coords) and self.rng.random() < self.fg) else self.any
            centre = pool[self.rng.integers(len(pool))]
            img, lab = self._crop(centre)
            imgs.append(img)
            labs.append(lab)
        img = np.stack(imgs)[:, None]
        lab = np.stack(labs)
        if self.ndim == 2:
            img, lab = img[:, :, 0], lab[:, 0]
        return img, lab


def _inside(region, shape):
    return all(0 <= s.start and s.stop <= n for s, n in zip(region, shape))


def _padded(array, region, fill):
    """``array[region]`` with ``fill`` where the region leaves the array."""
    out = np.full([s.stop - s.start for s in region], fill, dtype=array.dtype)
    src, dst = [], []
    for s, n in zip(region, array.shape):
        lo, hi = max(s.start, 0), min(s.stop, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s.start, hi - s.start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _load_region(data, ann, plan, low, high, n_classes):
    """The annotated bounding box (plus half a patch of context) in memory: float32 image normalised
    to the volume's range, int16 labels (annotation - 1; -1 = unlabelled)."""
    box = plan.fingerprint["bounding_box"]
    half = [p // 2 for p in plan.patch]
    if plan.ndim == 2:
        half[0] = 0
    z0, z1 = max(0, box[0] - half[0]), min(data.shape[0], box[1] + half[0])
    y0, y1 = max(0, box[2] - half[1]), min(data.shape[1], box[3] + half[1])
    x0, x1 = max(0, box[4] - half[2]), min(data.shape[2], box[5] + half[2])
    region = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    nbytes = (z1 - z0) * (y1 - y0) * (x1 - x0) * 6
    if nbytes > 8 * 2**30:
        raise ValueError(f"the annotated region {region} needs {nbytes / 2**30:.1f} GiB in memory; annotate a "
                         "more compact region or train on a crop")
    part = data[region]
    img = np.asarray(part.compute() if hasattr(part, "compute") else part, dtype=np.float32)
    img = (img - low) / (high - low)
    lab = np.asarray(ann[region]).astype(np.int16) - 1
    if lab.max() >= n_classes:
        raise ValueError(f"annotations hold value {int(lab.max()) + 1} but only {n_classes} classes were declared "
                         f"(values 1..{n_classes})")
    return img, lab, (z0, y0, x0)


# -------------------------------------------------------------------------------------------- losses
def masked_losses(logits, labels, class_weights=None, dice_weight: float = 1.0):
    """Weighted cross-entropy plus soft Dice, both over labelled voxels only.

    Parameters
    ----------
    logits : tensor (N, C, ...)
    labels : int64 tensor (N, ...)
        Class index, or -1 for unlabelled voxels, which no term sees.
    class_weights : tensor (C,), optional
    dice_weight : float

    Returns
    -------
    total, ce, dice : tensors
        ``total = ce + dice_weight * dice``; Dice is 1 - mean soft Dice over foreground classes that
        occur in the labelled voxels of the batch (0 when none does).

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[[10.0, -10.0], [-10.0, 10.0]]])  # (N=1, C=2, X=2)
    >>> total, ce, dice = masked_losses(logits, torch.tensor([[0, -1]]))
    >>> float(ce) < 1e-6, float(dice)
    (True, 0.0)
    """
    import torch
    import torch.nn.functional as F

    labels = labels.long()
    valid = labels >= 0
    if not bool(valid.any()):
        zero = logits.sum() * 0.0
        return zero, zero, zero
    ce = F.cross_entropy(logits.float(), labels.clamp_min(0), weight=class_weights, reduction="none")
    w = valid.float()
    if class_weights is not None:
        w = w * class_weights[labels.clamp_min(0)]
    ce = (ce * valid).sum() / w.sum().clamp_min(1e-8)
    probs = torch.softmax(logits.float(), dim=1)
    C = logits.shape[1]
    dims = [0] + list(range(2, logits.ndim))
    onehot = F.one_hot(labels.clamp_min(0), C).movedim(-1, 1).float() * valid.unsqueeze(1)
    p = probs * valid.unsqueeze(1)
    inter = (p * onehot).sum(dims)
    denom = p.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims)[1:] > 0
    if bool(present.any()):
        dice_per = (2 * inter[1:] + 1e-5) / (denom[1:] + 1e-5)
        dice = 1 - dice_per[present].mean()
    else:
        dice = probs.sum() * 0.0
    return ce + dice_weight * dice, ce, dice


def _extra_target_losses(extra_logits, labels, names):
    """Boundary (voxels of a foreground class next to another value) and a normalised in-plane
    distance to the nearest non-foreground voxel, both as sigmoid targets; unlabelled voxels ignored."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    lab = labels.detach().cpu().numpy()
    valid = torch.from_numpy(lab >= 0).to(extra_logits.device)
    fg = lab >= 1
    losses = []
    for k, name in enumerate(names):
        if name == "boundary":
            target = np.zeros(lab.shape, np.float32)
            for i in range(lab.shape[0]):
                grown = ndimage.grey_dilation(lab[i], size=3)
                shrunk = ndimage.grey_erosion(np.where(lab[i] < 0, 10**4, lab[i]), size=3)
                target[i] = (fg[i] & ((grown != lab[i]) | (shrunk != lab[i]))).astype(np.float32)
        elif name == "distance":
            target = np.zeros(lab.shape, np.float32)
            for i in range(lab.shape[0]):
                sampling = None
                d = ndimage.distance_transform_edt(fg[i], sampling=sampling)
                target[i] = np.tanh(d / 8.0)
        else:
            raise ValueError(f"unknown extra target {name!r}; choose from {EXTRA_TARGETS}")
        t = torch.from_numpy(target).to(extra_logits.device)
        loss = F.binary_cross_entropy_with_logits(extra_logits[:, k].float(), t, reduction="none")
        losses.append((loss * valid).sum() / valid.sum().clamp_min(1))
    return sum(losses)


# ----------------------------------------------------------------------------------------- training
_CLASS_ALIASES = {"bg": "background", "mito": "mitochondria", "mitochondrion": "mitochondria",
                  "membranes": "membrane", "boundary": "membrane", "boundaries": "membrane"}


def _class_key(name):
    name = str(name).strip().lower()
    return _CLASS_ALIASES.get(name, name)


def _build_network(plan, outputs, voxel_size, base):
    """A fresh U-Net for the plan, or the base model's with a head for these outputs.

    ``outputs`` names the output channels (classes, then extra targets). Where the base's head differs,
    a new head is made, and every output the base already has under the same name (or a common alias:
    ``mito`` for ``mitochondria``, ``boundary`` for ``membrane``...) starts from the base's weights
    for it, so fine-tuning starts from what the base knows of that class instead of from noise.
    """
    import torch

    from .models import UNET_SIZES, UNet, load_model

    n_out = len(outputs)
    if base is None:
        base_channels, depth = UNET_SIZES[plan.model_size]
        vs = voxel_size if (plan.ndim == 3 and plan.anisotropic) else None
        return UNet(ndim=plan.ndim, out_channels=n_out, base_channels=base_channels, depth=depth,
                    voxel_size=vs, residual=plan.residual), None
    path = Path(base) if Path(str(base)).is_dir() else base_model_path(str(base))
    model = load_model(path)
    net = model.network
    if net.ndim != plan.ndim:
        raise ValueError(f"the base model {path.name!r} is {net.ndim}D but the plan is {plan.ndim}D: pass "
                         f"ndim={net.ndim} to the plan or base='none' to train from scratch")
    base_outputs = list(model.classes) + list(model.extra_targets)
    n_base_classes = len(model.classes)
    n_classes = len(outputs) - len(plan.extra_targets)

    def keys(names, n_cls):  # classes match classes (with aliases), extra targets match by name only
        return [("class", _class_key(o)) if k < n_cls else ("extra", str(o)) for k, o in enumerate(names)]

    base_keys, out_keys = keys(base_outputs, n_base_classes), keys(outputs, n_classes)
    if base_keys == out_keys:
        return net, None
    old = net.head
    Conv = torch.nn.Conv3d if net.ndim == 3 else torch.nn.Conv2d
    net.head = Conv(net.channels[0], n_out, 1)
    net.out_channels = n_out
    index = {k: i for i, k in enumerate(base_keys)}
    carried = []
    with torch.no_grad():
        for j, o in enumerate(outputs):
            i = index.get(out_keys[j])
            if i is not None and i < old.out_channels:
                net.head.weight[j].copy_(old.weight[i])
                net.head.bias[j].copy_(old.bias[i])
                carried.append(f"{o} <- {base_outputs[i]}")
    note = (f"the base model's head ({len(base_outputs)} outputs: {base_outputs}) was replaced by one for "
            f"{list(outputs)}; " + (f"carried over from the base: {', '.join(carried)}; " if carried else
                                    "no output matches one of the base's, so the head starts afresh; ")
            + "encoder and decoder keep their pretrained weights")
    return net, note


def finetune(
    image,
    annotations,
    *,
    classes=None,
    base="auto",
    out=None,
    plan: TrainingPlan | None = None,
    minutes: float | None = None,
    iterations: int | None = None,
    validation="auto",
    device="auto",
    seed: int = 0,
    extra_targets=(),
    amp="auto",
    checkpoint_every: float = 60.0,
    resume: bool = True,
    overwrite: bool = False,
    eval_every: int | None = None,
    live_plot: bool = False,
    progress: bool = True,
    voxel_size=None,
):
    """Fine-tune a base model (or train from scratch) on sparse annotations.

    Parameters
    ----------
    image : path, Volume or array (Z, Y, X)
    annotations : Annotations, path or integer array (Z, Y, X)
        0 = unlabelled (ignored), 1 = background, 2.. = classes.
    classes : list of str, optional
        Class names, background first (default: the annotation store's).
    base : "auto", str, Path or None
        A shipped base model name (:func:`list_base_models`), a model directory, ``"auto"`` (the
        first shipped base model of the plan's dimensionality, else from scratch) or None/"none".
    out : str or Path, optional
        Model directory to write (also holds checkpoints while training); never overwritten unless
        ``overwrite``.
    plan : TrainingPlan, optional
        Default: :func:`plan_training`.
    minutes, iterations : budget
        Stop after this much wall time and/or this many iterations (at least one must be given).
    validation : "auto", None or (image, annotations)
        Held-out data for the IoU curve (``"auto"``: the plan's held-out sections).
    device : str
    seed : int
        Sampling, augmentation and initialisation; with an iteration budget the run is repeatable.
    extra_targets : sequence of {"boundary", "distance"}
        Extra output channels for splitting touching objects (:mod:`vemkit.instances`).
    amp : "auto", "bf16", "fp16" or False
        Mixed precision. "auto": bf16 (else fp16) on CUDA, bf16 on a CPU with bfloat16 matrix units
        (Intel AMX; 2.2-2.9x faster steps than float32 there, ``benchmarks/cpu_precision.py``), float32 elsewhere.
    checkpoint_every : float
        Seconds between checkpoints (``out/checkpoint.pt``); a run with the same ``out`` resumes.
    eval_every : int, optional
        Iterations between validations (default: about 10 over the budget).
    live_plot : bool
        Redraw the loss/IoU figure in the notebook while training.

    Returns
    -------
    SegmentationModel
        With ``training`` holding the plan, history (loss, IoU), time, data fingerprint and device.

    Raises
    ------
    ValueError
        Empty or single-class annotations, shape mismatch, a base model that cannot serve the plan,
        no budget.
    """
    import torch
    from tqdm.auto import tqdm

    from . import __version__
    from ._device import resolve_device
    from ._voxel import check_voxel_size
    from .augment import AugmentConfig, Augmenter
    from .models import SegmentationModel
    from .pixel_classifier import intensity_range
    from .predict import _open_image

    if minutes is None and iterations is None:
        raise ValueError("give a budget: minutes=... and/or iterations=...")
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    for t in extra_targets:
        if t not in EXTRA_TARGETS:
            raise ValueError(f"unknown extra target {t!r}; choose from {EXTRA_TARGETS}")
    out = Path(out) if out is not None else None
    if out is not None and out.exists() and (out / "config.json").exists() and not overwrite:
        raise FileExistsError(f"model directory {str(out)!r} already holds a model; pass overwrite=True or choose another")
    dev = resolve_device(device)
    data, image_vs, image_source = _open_image(image)
    ann, ann_classes, ann_vs = _annotation_array(annotations)
    if tuple(ann.shape) != tuple(data.shape):
        raise ValueError(f"annotations have shape {tuple(ann.shape)} but the image has shape {tuple(data.shape)}")
    vs = check_voxel_size(voxel_size or image_vs or ann_vs) if (voxel_size or image_vs or ann_vs) else None
    if base in ("none", "None", ""):
        base = None
    if base == "auto":
        base = _auto_base(plan.ndim if plan else None, data, ann, vs, dev)
    if plan is None:
        plan = plan_training(data if vs is None else _with_vs(data, vs), ann, voxel_size=vs, device=str(dev), base=base)
    plan.extra_targets = list(extra_targets)
    counts = plan.fingerprint.get("counts") or _fingerprint(data.shape, vs, ann)["counts"]
    n_classes = max(int(k) for k in counts)
    classes = list(classes or ann_classes or ["background"] + [f"class_{i}" for i in range(1, n_classes)])
    if len(classes) < n_classes:
        raise ValueError(f"the annotations use {n_classes} classes (values 1..{n_classes}) but only {classes} were named")
    n_classes = len(classes)
    weights = list(plan.class_weights) + [1.0] * (n_classes - len(plan.class_weights))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net, head_note = _build_network(plan, classes + list(extra_targets), vs, base)
    if head_note and progress:
        print(head_note)
    amp_r, dtype, fmt, scaler = _training_precision(amp, dev, plan.ndim)
    net = net.to(dev, memory_format=fmt)
    low, high = intensity_range(data, plan.normalization.get("lower", 1.0), plan.normalization.get("upper", 99.0))
    img, lab, offset = _load_region(data, ann, plan, low, high, n_classes)
    val_sections = [z - offset[0] for z in plan.validation_sections] if validation in ("auto", None) and plan.ndim == 2 else []
    if validation is None:
        val_sections = []
    train_sections = None
    if val_sections:
        annotated = [z - offset[0] for z in plan.fingerprint["annotated_sections"]]
        train_sections = [z for z in annotated if z not in val_sections]
    sampler = _PatchSampler(img, lab, plan.patch, plan.ndim, plan.foreground_fraction, rng, train_sections)
    val_data = _validation_data(validation, val_sections, img, lab, low, high)
    aug_cfg = getattr(AugmentConfig, plan.augment)() if isinstance(plan.augment, str) else AugmentConfig.from_dict(plan.augment)
    augmenter = Augmenter(aug_cfg, ndim=plan.ndim, isotropic=plan.ndim == 3 and not plan.anisotropic)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    cw = torch.tensor(weights, dtype=torch.float32, device=dev)
    history = {"iteration": [], "seconds": [], "loss": [], "val_iteration": [], "val_iou": []}
    step, elapsed_before = 0, 0.0
    ckpt = out / "checkpoint.pt" if out is not None else None
    if ckpt is not None and ckpt.exists() and resume:
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        net.load_state_dict(state["network"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed_before, history = state["step"], state["seconds"], state["history"]
        rng.bit_generator.state = state["rng"]
        gen.set_state(state["torch_rng"])
        sampler.rng = rng
        if progress:
            print(f"resumed from {ckpt} at iteration {step}")
    budget_s = minutes * 60 if minutes is not None else math.inf
    total_iters = iterations if iterations is not None else None
    if eval_every is None:
        eval_every = max(10, (total_iters or 200) // 10)
    monitor = _LivePlot() if live_plot else None
    resumed_from = step if step else None
    if val_data is not None and step == 0:  # where the curve starts: the base model (or random weights)
        history["val_iteration"].append(0)
        history["val_iou"].append(_validate(net, val_data, n_classes, plan.ndim, dev))
    t0 = time.perf_counter() - elapsed_before
    last_ckpt = time.perf_counter()
    bar = tqdm(total=total_iters, initial=step, disable=not progress, desc="training", unit="it")
    net.train()
    first = True
    while True:
        elapsed = time.perf_counter() - t0
        if (total_iters is not None and step >= total_iters) or (elapsed >= budget_s and not first):
            break
        first = False
        frac = min(1.0, max(step / total_iters if total_iters else 0.0, elapsed / budget_s if budget_s < math.inf else 0.0))
        for g in opt.param_groups:
            g["lr"] = plan.lr * (1 - frac) ** 0.9
        x_np, y_np = sampler.sample(plan.batch_size)
        x = torch.from_numpy(x_np).to(dev)
        y = torch.from_numpy(y_np.astype(np.int64)).to(dev)
        # the augmenter's labels are 0 = unlabelled, 1 = background (what enters from outside a patch is 0)
        x, y, _ = augmenter(x, y + 1, generator=gen)
        y = y - 1
        x = x.contiguous(memory_format=fmt)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            logits = net(x)
        loss, _ce, _dice = masked_losses(logits[:, :n_classes], y, cw, plan.dice_weight)
        if extra_targets:
            loss = loss + _extra_target_losses(logits[:, n_classes:], y, list(extra_targets))
        _optimizer_step(loss, opt, scaler)
        step += 1
        bar.update(1)
        history["iteration"].append(step)
        history["seconds"].append(round(time.perf_counter() - t0, 3))
        history["loss"].append(float(loss.detach()))
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        if val_data is not None and step % eval_every == 0:
            history["val_iteration"].append(step)
            history["val_iou"].append(_validate(net, val_data, n_classes, plan.ndim, dev))
            net.train()
            if monitor:
                monitor.update(history)
        elif monitor and step % 5 == 0:
            monitor.update(history)
        if ckpt is not None and time.perf_counter() - last_ckpt > checkpoint_every:
            _save_checkpoint(ckpt, net, opt, step, time.perf_counter() - t0, history, rng, gen)
            last_ckpt = time.perf_counter()
    bar.close()
    if val_data is not None and (not history["val_iteration"] or history["val_iteration"][-1] != step):
        history["val_iteration"].append(step)
        history["val_iou"].append(_validate(net, val_data, n_classes, plan.ndim, dev))
    if monitor:
        monitor.update(history)
    net.eval().cpu().to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - t0
    record = {
        "vemkit_version": __version__,
        "method": "unet",
        "base": str(base) if base is not None else None,
        "head": head_note,
        "plan": plan.to_dict(),
        "iterations": step,
        "resumed_from": resumed_from,
        "seconds": round(seconds, 1),
        **run_environment(dev, seed),
        "amp": amp_r,
        "intensity_range": [low, high],
        "image": image_source,
        "annotated_voxels": {classes[int(k) - 1] if int(k) - 1 < len(classes) else str(k): int(v) for k, v in counts.items()},
        "final_val_iou": history["val_iou"][-1] if history["val_iou"] else None,
        "history": history,
    }
    model = SegmentationModel(net, classes, voxel_size=vs, normalization=dict(plan.normalization),
                              extra_targets=list(extra_targets), training=record)
    if out is not None:
        model.save(out, overwrite=True if (out.exists() and not (out / "config.json").exists()) else overwrite)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()
        plan.save(out / "plan.json")
    return model


def _training_precision(amp, dev, ndim):
    """How a training loop runs on ``dev``: (amp name, autocast dtype or None, memory format, GradScaler
    or None).

    Channels-last on the CPU, where oneDNN's convolutions (and AMX bfloat16) skip a reorder of every
    activation, the standard layout elsewhere; the autocast dtype follows
    :func:`vemkit.predict._resolve_amp`; fp16 gets a loss scaler.
    """
    import torch

    from .predict import _resolve_amp

    name = _resolve_amp(amp, dev)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    fmt = (torch.channels_last_3d if ndim == 3 else torch.channels_last) if dev.type == "cpu" else torch.contiguous_format
    scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None
    return name, dtype, fmt, scaler


def _optimizer_step(loss, opt, scaler=None):
    """Backward pass and optimiser step, through the fp16 loss scaler when there is one."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()


def run_environment(device, seed) -> dict:
    """Where and how a training ran, for its record: device (with the GPU's name), machine, torch, seed."""
    import platform

    import torch

    name = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    return {"device": name, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "seed": seed}


def _with_vs(data, vs):
    from ._volume import Volume

    return Volume.from_array(data, voxel_size=vs) if not hasattr(data, "dask") else Volume(data=data, voxel_size=vs)


def _auto_base(ndim, data, ann, vs, dev):
    """The first shipped base model of the dimensionality the data calls for, or None."""
    from .models import load_model

    names = list(list_base_models())
    if not names:
        return None
    want = ndim
    if want is None:
        try:
            want = plan_training(_with_vs(data, vs) if vs else data, ann, voxel_size=vs, device=str(dev)).ndim
        except ValueError:
            raise
    if DEFAULT_BASE_MODELS.get(want) in names:
        return DEFAULT_BASE_MODELS[want]
    for name in names:
        if load_model(base_model_path(name)).ndim == want:
            return name
    return None


def _validation_data(validation, val_sections, img, lab, low, high):
    if validation is None or validation == "auto":
        if not val_sections:
            return None
        return [(img[z], lab[z]) for z in val_sections]
    v_img, v_ann = validation
    data, _, _ = __import__("vemkit.predict", fromlist=["_open_image"])._open_image(v_img)
    arr, _, _ = _annotation_array(v_ann)
    vi = (np.asarray(data, dtype=np.float32) - low) / (high - low)
    vl = np.asarray(arr).astype(np.int16) - 1
    return [(vi, vl)] if vi.ndim == 3 else [(vi, vl)]


def _validate(net, val_data, n_classes, ndim, dev):
    """Mean foreground IoU over labelled voxels of the validation data (whole sections / volumes)."""
    import torch

    net.eval()
    inter = np.zeros(n_classes)
    union = np.zeros(n_classes)
    div = np.array(getattr(net, "divisor", (1,) * ndim))
    with torch.inference_mode():
        for img, lab in val_data:
            shape = img.shape
            pad = [(0, (-n) % d) for n, d in zip(shape[-ndim:], div)]
            if ndim == 2 and img.ndim == 3:  # a validation volume, section by section
                x = np.pad(img, [(0, 0)] + pad, mode="reflect")[:, None]
            elif ndim == 2:
                x = np.pad(img, pad, mode="reflect")[None, None]
            else:
                x = np.pad(img, pad, mode="reflect")[None, None]
            pred = net(torch.from_numpy(np.ascontiguousarray(x)).to(dev))[:, :n_classes].argmax(1).cpu().numpy()
            pred = pred.reshape(-1, *pred.shape[-ndim:]) if ndim == 2 else pred[0]
            pred = pred[tuple(slice(0, n) for n in pred.shape[:-ndim])
                        + tuple(slice(0, n) for n in shape[-ndim:])].reshape(lab.shape)
            m = lab >= 0
            for c in range(1, n_classes):
                p, t = (pred == c) & m, (lab == c) & m
                inter[c] += np.logical_and(p, t).sum()
                union[c] += np.logical_or(p, t).sum()
    ious = [inter[c] / union[c] for c in range(1, n_classes) if union[c] > 0]
    return float(np.mean(ious)) if ious else float("nan")


def _save_checkpoint(path, net, opt, step, seconds, history, rng, gen):
    import torch

    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "seconds": seconds,
                "history": history, "rng": rng.bit_generator.state, "torch_rng": gen.get_state()}, tmp)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------- plots
def plot_history(history, *, title: str | None = None):
    """Loss (smoothed) and validation IoU against iterations, as a matplotlib Figure.

    Parameters
    ----------
    history : dict
        ``model.training["history"]`` (or the live one).
    """
    from .viz import figure

    fig = figure((8, 3.2))
    ax = fig.add_subplot(1, 2, 1)
    it = np.asarray(history.get("iteration", []))
    loss = np.asarray(history.get("loss", []))
    if loss.size:
        ax.plot(it, loss, color="0.75", lw=0.8, label="batch")
        k = max(1, loss.size // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(it[k - 1 :], smooth, color="C0", lw=1.5, label=f"mean of {k}")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (cross-entropy + Dice)")
    ax2 = fig.add_subplot(1, 2, 2)
    if history.get("val_iou"):
        ax2.plot(history["val_iteration"], history["val_iou"], "o-", color="C1")
        ax2.set_ylim(0, 1)
    else:
        ax2.text(0.5, 0.5, "no validation data", ha="center", va="center", transform=ax2.transAxes, color="0.5")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("validation IoU (foreground)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class _LivePlot:
    """Redraws :func:`plot_history` in place in a notebook (a no-op elsewhere)."""

    def __init__(self):
        self.handle = None
        try:
            from IPython import get_ipython

            self.active = get_ipython() is not None and hasattr(get_ipython(), "kernel")
        except ImportError:
            self.active = False

    def update(self, history):
        if not self.active:
            return
        from IPython.display import display

        fig = plot_history(history)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
