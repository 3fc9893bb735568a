"""Pretrain an EM base model on several labelled datasets at once (``vemkit pretrain``).

The base model is a 2D U-Net with three softmax classes, ``background``, ``membrane`` and
``mitochondria``, trained on sources that label different subsets: ISBI 2012 and FlyEM label only
membranes/boundaries, CDeep3M's SBF-SEM stack labels only mitochondria, the synthetic phantom and the
VNC stack label both. Partial labels are handled with a *marginal* cross-entropy: a voxel labelled
"not membrane" is right when the network puts its probability on background *or* mitochondria, one
labelled "not mitochondria" when it is on background *or* membrane; a class a source never singles out
gets no gradient from that source. All sources are resampled to 5 nm pixels so the network sees one
scale; :meth:`vemkit.augment.AugmentConfig.pretraining` then varies pixel size (0.6-1.6x), contrast,
gamma, blur and noise so it meets new microscopes. :data:`RECIPES` name the shipped trainings. The result is a normal model directory that
:func:`vemkit.predict.predict_volume` runs as it is and :func:`vemkit.train.finetune` starts from.

Not for: fine-tuning on your data (:mod:`vemkit.train`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._basemodels import resolve_model
from ._device import resolve_device
from ._losses import masked_losses
from ._outputs import check_output
from ._checks import check_positive, check_positive_int
from ._trainloop import TrainLoop, check_budget, run_environment
from .augment import AugmentConfig, Augmenter
from .instances import boundaries

__all__ = ["CLASSES", "RECIPES", "SOURCES", "class_index", "grouped_logits", "marginal_cross_entropy", "pretrain",
           "supervised_classes", "unseen_sections"]

CLASSES = ["background", "membrane", "mitochondria"]
TARGET_PIXEL_NM = 5.0
#: Source name -> what it labels. Each source's label values index rows of its class-set matrix.
SOURCES = {
    "isbi2012": "ssTEM 4 nm, membranes (0 = background or mitochondria, 1 = membrane)",
    "flyem_medulla_fibsem": "FIB-SEM 10 nm (upsampled to 5 nm), neuron boundaries as membranes",
    "drosophila_vnc_sstem": "ssTEM 4.6 nm, membranes and mitochondria (synapses count as background)",
    "cdeep3m_mito": "SBF-SEM 5.9 nm (volume 'training', sections 010-029), mitochondria only",
    "phantom": "synthetic EM-like volume at 5 nm, membranes and mitochondria (vesicles count as background)",
}
#: Named pretrainings (``vemkit pretrain --recipe NAME``): keyword arguments of :func:`pretrain`.
#: ``mito2d`` keeps VNC sections 16-19 and CDeep3M's 'validation' volume out, to score the result on, and
#: continues from ``em2d-small`` (ISBI, FlyEM, phantom: it never saw VNC or CDeep3M).
RECIPES = {
    "mito2d": {
        "sources": ("isbi2012", "flyem_medulla_fibsem", "drosophila_vnc_sstem", "cdeep3m_mito", "phantom"),
        "vnc_sections": tuple(range(16)), "minutes": 25.0, "model_size": "small", "patch": 256,
        "batch_size": 8, "augment": "pretraining", "init": "em2d-small", "lr": 5e-4,
        "description": "2D small U-Net, background/membrane/mitochondria: ISBI 2012, FlyEM, VNC (0-15), "
                       "CDeep3M SBF-SEM mitochondria, phantom; strong microscope augmentation",
    },
    "em2d": {
        "sources": ("isbi2012", "flyem_medulla_fibsem", "phantom"), "minutes": 20.0, "model_size": "small",
        "patch": 256, "batch_size": 16, "augment": "default",
        "description": "2D small U-Net: isbi2012, flyem_medulla_fibsem, phantom",
    },
}
# rows: label value; columns: CLASSES; 1 where the label allows that class
_PARTIAL = np.array([[1, 0, 1], [0, 1, 0]], np.float32)   # 0 = not membrane, 1 = membrane
_MITO = np.array([[1, 1, 0], [0, 0, 1]], np.float32)      # 0 = not mitochondria, 1 = mitochondria
_FULL = np.eye(3, dtype=np.float32)                          # 0 bg, 1 membrane, 2 mito


@dataclass
class _Source:
    name: str
    image: np.ndarray      # float32 (S, Y, X) sections, normalised to the source's 1-99 percentiles
    labels: np.ndarray     # int16 (S, Y, X), -1 = unlabelled
    sets: np.ndarray       # (n_values, 3) class-set matrix
    hashes: dict


def marginal_cross_entropy(logits, labels, class_sets):
    """Cross-entropy against a *set* of allowed classes per voxel: ``-log sum_{c in set} p_c``.

    Parameters
    ----------
    logits : tensor (N, C, ...)
    labels : int64 tensor (N, ...)
        Row of ``class_sets`` per voxel; -1 = unlabelled (ignored).
    class_sets : tensor (V, C) of 0/1
        Which classes each label value allows (identity = ordinary cross-entropy).

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[[0.0], [0.0], [0.0]]])  # three equally likely classes
    >>> sets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> round(float(marginal_cross_entropy(logits, torch.tensor([[0]]), sets)), 4)  # -log(2/3)
    0.4055
    """
    import torch

    valid = labels >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits.float(), dim=1)
    allowed = class_sets[labels.clamp_min(0)].movedim(-1, 1)  # (N, C, ...)
    masked = logp.masked_fill(allowed <= 0, float("-inf"))
    nll = -torch.logsumexp(masked, dim=1)
    return (nll * valid).sum() / valid.sum()


def supervised_classes(class_sets, labels=None) -> list[str]:
    """The classes a source's labels single out (a row of its class-set matrix allowing that class
    alone) and, given its ``labels``, that actually occur: the heads it trains.

    Examples
    --------
    >>> supervised_classes(_PARTIAL), supervised_classes(_MITO), supervised_classes(_FULL)
    (['membrane'], ['mitochondria'], ['background', 'membrane', 'mitochondria'])
    >>> supervised_classes(_FULL, np.array([[0, 1]]))  # no mitochondria in these labels
    ['background', 'membrane']
    """
    out = []
    for v, row in enumerate(np.asarray(class_sets)):
        if row.sum() == 1 and (labels is None or bool((np.asarray(labels) == v).any())):
            out.append(CLASSES[int(row.argmax())])
    return [c for c in CLASSES if c in out]


def unseen_sections(training: dict, dataset: str, n_sections: int, volume: str | None = None) -> list[int]:
    """Which of the first ``n_sections`` sections of ``dataset`` a pretrained model never trained on.

    Read from the model's training record (``model.training``, or its ``training.json``) and that of
    the base it started from: a dataset it used counts as seen whole, except the sections
    ``drosophila_vnc_sstem`` was limited to (``vnc_sections``) and ``cdeep3m_mito``'s 'validation'
    volume (pretraining reads its 'training' volume only). A fine-tuned model's record is read the
    same way; the user's own image (``dataset=""``) and a freshly made phantom (``"synthetic"``) are
    unseen.

    Examples
    --------
    >>> rec = {"sources": {"drosophila_vnc_sstem": {}, "isbi2012": {}}, "vnc_sections": list(range(16))}
    >>> unseen_sections(rec, "drosophila_vnc_sstem", 20), unseen_sections(rec, "isbi2012", 30)
    ([16, 17, 18, 19], [])
    >>> unseen_sections(rec, "cdeep3m_mito", 3, volume="validation"), unseen_sections(rec, "", 2)
    ([0, 1, 2], [0, 1])
    """
    every = list(range(int(n_sections)))
    if dataset in ("", "synthetic"):
        return every
    init = training.get("init") or {}
    seen = set(training.get("sources") or {}) | set(init.get("seen") or [])
    if dataset not in seen:
        return every
    if dataset == "cdeep3m_mito" and volume not in (None, "training"):
        return every
    if dataset == "drosophila_vnc_sstem" and volume not in (None, "stack1"):
        return every
    if dataset == "drosophila_vnc_sstem" and training.get("vnc_sections") is not None and \
            dataset not in (init.get("seen") or []):
        return [z for z in every if z not in set(training["vnc_sections"])]
    return []


def class_index(model, name: str) -> int:
    """Output channel of class ``name`` in a model; a clear ValueError lists the model's classes.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> class_index(SimpleNamespace(classes=CLASSES), "mitochondria")
    2
    >>> class_index(SimpleNamespace(classes=["background", "membrane"]), "mitochondria")
    Traceback (most recent call last):
    ...
    ValueError: this model has no class 'mitochondria'; its classes are: background, membrane
    """
    classes = list(model.classes)
    if name not in classes:
        raise ValueError(f"this model has no class {name!r}; its classes are: {', '.join(classes)}")
    return classes.index(name)


def _resample(sections, factor, order):
    """Each (Y, X) section zoomed by ``factor`` (order 0 for labels)."""
    from scipy import ndimage

    if abs(factor - 1.0) < 1e-3:
        return sections
    return np.stack([ndimage.zoom(s, factor, order=order, prefilter=False) for s in sections])


def _normalise(img):
    lo, hi = np.percentile(img, [1, 99])
    return ((img.astype(np.float32) - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _file_hashes(name):
    from .datasets import get_entry

    entry = get_entry(name)
    return {f["path"]: f["sha256"] for f in entry.get("files", [])}


def _raw_source(name, d):
    """(normalised image, labels, class sets, keep) of a loaded dataset, at its own pixel size."""
    img = np.asarray(d.image.data)
    if name == "isbi2012":  # slices 15-29 are contrast-stretched: normalise per slice
        lab = np.asarray(d.labels["membranes"].data).astype(np.int16)
        return np.stack([_normalise(s) for s in img]), lab, _PARTIAL, slice(None)
    if name == "drosophila_vnc_sstem":
        lab = np.zeros(img.shape, np.int16)
        lab[np.asarray(d.labels["membranes"].data) > 0] = 1
        lab[np.asarray(d.labels["mitochondria"].data) > 0] = 2
        return _normalise(img), lab, _FULL, slice(None)
    if name == "cdeep3m_mito":
        lab = (np.asarray(d.labels["mitochondria"].data) > 0).astype(np.int16)
        return _normalise(img), lab, _MITO, slice(None)
    if name == "flyem_medulla_fibsem":  # every 4th section (neighbours are near copies at 10 nm)
        keep = slice(None, None, 4)
        lab = boundaries(np.asarray(d.labels["neurons"].data), planar=False).astype(np.int16)
        return _normalise(img[keep]), lab[keep], _PARTIAL, keep
    raise ValueError(f"unknown pretraining source {name!r}; choose from {sorted(SOURCES)}")


def _load_source(name, sections=None, seed=0):
    from .datasets import load_dataset

    if name == "phantom":
        from .synthetic import make_phantom

        ph = make_phantom((12, 512, 512), voxel_size=(40.0, TARGET_PIXEL_NM, TARGET_PIXEL_NM), seed=seed)
        sem = np.asarray(ph.semantic).astype(np.int16)
        sem[sem == 3] = 0  # vesicles: background here
        return _Source(name, _normalise(np.asarray(ph.image)), sem, _FULL, {"make_phantom": f"seed={seed}"})
    if name not in SOURCES:
        raise ValueError(f"unknown pretraining source {name!r}; choose from {sorted(SOURCES)}")
    d = load_dataset(name, "training" if name == "cdeep3m_mito" else None, progress=False)
    norm, lab, sets, _ = _raw_source(name, d)
    if sections is not None:
        norm, lab = norm[list(sections)], lab[list(sections)]
    factor = float(d.voxel_size[-1]) / TARGET_PIXEL_NM  # to 5 nm pixels
    norm, lab = _resample(norm, factor, 1), _resample(lab, factor, 0).astype(np.int16)
    return _Source(name, norm.astype(np.float32), lab, sets, _file_hashes(name))


def _say_what_trains(loaded, warn=True):
    """Per source, the heads it trains; a warning for a source whose labels lack a class and for a
    class no source labels (that head then trains on nothing)."""
    import warnings

    supervision = {s.name: supervised_classes(s.sets, s.labels) for s in loaded}
    for s in loaded:
        missing = [c for c in CLASSES if c not in supervision[s.name]]
        if missing and warn:
            warnings.warn(f"pretraining source {s.name!r} has no labels for {', '.join(missing)}: it trains "
                          f"those heads on nothing (only 'not {supervision[s.name][0] if supervision[s.name] else '-'}' "
                          f"constrains them)", stacklevel=3)
    for c in CLASSES:
        if not any(c in v for v in supervision.values()):
            warnings.warn(f"no pretraining source labels {c!r}: the {c!r} head trains on nothing", stacklevel=3)
    return supervision


def pretrain(out, *, sources=("isbi2012", "flyem_medulla_fibsem", "phantom"), vnc_sections=None,
             minutes: float | None = 20.0, iterations: int | None = None, model_size: str = "small",
             patch: int = 256, batch_size: int = 4, device="auto", seed: int = 0, lr: float = 1e-3,
             description: str = "", progress: bool = True, half: bool = True, amp="auto", augment="default",
             recipe: str | None = None, init=None):
    """Train a 2D base model on several labelled EM sources and save it as a model directory.

    Parameters
    ----------
    out : str or Path
        Model directory to write (must not exist or be empty).
    sources : sequence of str
        Names from :data:`SOURCES`; real datasets come through the manifest (verified bytes).
    vnc_sections : sequence of int, optional
        Restrict ``drosophila_vnc_sstem`` to these sections (keep test sections out of pretraining).
        ``cdeep3m_mito`` always contributes its 'training' volume only (its 'validation' volume is
        never seen).
    minutes, iterations : budget
    model_size : {"tiny", "small", "base"}
    patch, batch_size : int
    device : str
    seed : int
    description : str
        One line for :func:`vemkit.train.list_base_models`.
    half : bool
        Store weights as float16 (half the size).
    amp : "auto", "bf16", "fp16" or False
        Mixed precision, as in :func:`vemkit.train.finetune`.
    augment : "default", "pretraining" or AugmentConfig
        :meth:`AugmentConfig.default` (fine-tuning strength) or :meth:`AugmentConfig.pretraining`
        (pixel size 0.6-1.6x and wide intensity changes, for unseen microscopes).
    recipe : str, optional
        Only recorded (the :data:`RECIPES` name the arguments came from).
    init : str or Path, optional
        Continue from this base model (a shipped name or a model directory with :data:`CLASSES`)
        instead of random weights; ``model_size`` is then the init's. What it was trained on is
        recorded and counts as seen (a leave-one-out run must start from a base that never saw the
        held-out dataset).

    Returns
    -------
    SegmentationModel
    """
    import torch

    from . import __version__
    from .models import SegmentationModel

    out = check_output(out, [init] if isinstance(init, (str, os.PathLike)) and Path(init).exists() else [], overwrite=False,
                       what="model directory", exists_ok=True)  # writable, and not the model it starts from
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{str(out)!r} exists and is not empty (or not a folder); choose another directory")
    minutes, iterations = check_budget(minutes, iterations)
    patch, batch_size = check_positive_int(patch, "patch", minimum=16), check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown pretraining source(s) {unknown}; choose from {sorted(SOURCES)}")
    aug = _augment_config(augment)
    loaded = []
    for name in sources:
        loaded.append(_load_source(name, vnc_sections if name == "drosophila_vnc_sstem" else None, seed))
    supervision = _say_what_trains(loaded)
    net, init_record = _initial_network(init, model_size, sources)
    loop = _PretrainLoop(net, loaded, rng, torch.Generator().manual_seed(seed), patch, batch_size, aug,
                         device=dev, amp=amp, lr=lr, progress=progress)
    history = loop.new_history()
    step = loop.run(history, minutes=minutes, iterations=iterations)
    loop.finish()
    seconds = loop.seconds()
    record = {
        "description": description or f"2D {model_size} U-Net: {', '.join(sources)}",
        "vemkit_version": __version__,
        "method": "pretrain",
        "command": _command(sources, vnc_sections, minutes, iterations, model_size, patch, batch_size, seed,
                            augment if isinstance(augment, str) else "custom")
        + (f" --init {init_record['model']} --lr {lr:g}" if init_record else ""),
        "recipe": recipe,
        "init": init_record,
        "supervision": supervision,
        "augment": aug.to_dict(),
        "sources": {s.name: {"what": SOURCES[s.name], "sections": int(s.image.shape[0]), "sha256": s.hashes}
                    for s in loaded},
        "vnc_sections": list(vnc_sections) if vnc_sections is not None else None,
        "pixel_nm": TARGET_PIXEL_NM,
        "iterations": step,
        "seconds": round(seconds, 1),
        **run_environment(dev, seed),
        "amp": loop.amp,
        "history": history,
    }
    model = SegmentationModel(net, CLASSES, voxel_size=(50.0, TARGET_PIXEL_NM, TARGET_PIXEL_NM),
                              normalization={"mode": "percentile", "lower": 1.0, "upper": 99.0}, training=record)
    model.save(out, half=half)
    _write_card(out, model)
    return model


def _initial_network(init, model_size, sources):
    """A fresh 2D U-Net of ``model_size``, or the network of base model ``init`` and its record."""
    from .models import UNET_SIZES, UNet, load_model

    if init is None:
        base_channels, depth = UNET_SIZES[model_size]
        return UNet(ndim=2, out_channels=len(CLASSES), base_channels=base_channels, depth=depth), None
    path = resolve_model(init)
    model = load_model(path)
    if list(model.classes) != CLASSES or model.network.ndim != 2 or model.extra_targets:
        raise ValueError(f"init {str(init)!r} must be a 2D base model with classes {CLASSES}; it has "
                         f"{list(model.classes)} ({model.network.ndim}D)")
    seen = sorted(set(model.training.get("sources", {})) | set((model.training.get("init") or {}).get("seen", [])))
    clash = sorted(set(seen) & set(sources) - {"phantom"})
    return model.network.float(), {"model": Path(path).name, "command": model.training.get("command"),
                                   "seen": seen, "also_in_sources": clash}


class _PretrainLoop(TrainLoop):
    """One pretraining step: a batch of random patches from one source (each has its own class-set
    matrix), marginal cross-entropy plus Dice on what the source's labels determine."""

    def __init__(self, net, sources, rng, gen, patch, batch_size, augment, **kw):
        import torch

        super().__init__([net], ndim=2, desc="pretraining", **kw)
        self.net, self.sources, self.rng, self.gen = net, sources, rng, gen
        self.patch, self.batch_size = patch, batch_size
        self.augmenter = Augmenter(augment, ndim=2)
        self.sets = [torch.from_numpy(s.sets).to(self.device) for s in sources]

    def forward_and_loss(self, fraction):
        import torch

        k = int(self.rng.integers(len(self.sources)))
        src = self.sources[k]
        x, y = self._batch(src)
        x, y, _ = self.augmenter(x.to(self.device), y.to(self.device) + 1, generator=self.gen)
        y = y - 1  # the augmenter's labels: 0 = unlabelled (also what enters from outside)
        with self.autocast():
            logits = self.net(x.contiguous(memory_format=self.memory_format))
        logits = logits.float()
        loss = marginal_cross_entropy(logits, y, self.sets[k]) + masked_losses(grouped_logits(logits, src.sets), y)[2]
        return loss, {"loss": loss, "source": src.name[:8]}

    def _batch(self, src):
        import torch

        imgs, labs = [], []
        for _ in range(self.batch_size):
            s = int(self.rng.integers(src.image.shape[0]))
            H, W = src.image.shape[1:]
            p = min(self.patch, H, W)
            y0, x0 = int(self.rng.integers(0, H - p + 1)), int(self.rng.integers(0, W - p + 1))
            imgs.append(src.image[s, y0 : y0 + p, x0 : x0 + p])
            labs.append(src.labels[s, y0 : y0 + p, x0 : x0 + p])
        return torch.from_numpy(np.stack(imgs)[:, None]), torch.from_numpy(np.stack(labs).astype(np.int64))


def _augment_config(augment):
    if isinstance(augment, AugmentConfig):
        return augment
    if augment == "pretraining":
        return AugmentConfig.pretraining()
    if augment == "default":
        return AugmentConfig.default()
    raise ValueError(f"augment must be 'default', 'pretraining' or an AugmentConfig, got {augment!r}")


def grouped_logits(logits, class_sets):
    """Logits of the label values of a class-set matrix: ``logsumexp`` over each row's classes
    (identity rows give the logits back), for a Dice term on what a source's labels determine."""
    import torch

    rows = [np.flatnonzero(np.asarray(r) > 0).tolist() for r in class_sets]
    return torch.stack([torch.logsumexp(logits[:, r], 1) for r in rows], 1)


def _command(sources, vnc_sections, minutes, iterations, model_size, patch, batch_size, seed, augment="default"):
    parts = ["vemkit pretrain", "--sources", ",".join(sources)]
    if vnc_sections is not None:
        parts += ["--vnc-sections", ",".join(map(str, vnc_sections))]
    if minutes is not None:
        parts += ["--minutes", f"{minutes:g}"]
    if iterations is not None:
        parts += ["--iterations", str(iterations)]
    parts += ["--model-size", model_size, "--patch", str(patch), "--batch-size", str(batch_size), "--seed", str(seed)]
    if augment != "default":
        parts += ["--augment", str(augment)]
    return " ".join(parts)


def _write_card(out: Path, model):
    """MODEL_CARD.md: data and hashes, command, hardware, time (validation figures are added by the
    benchmark that measures them)."""
    r = model.training
    weights = out / "weights.safetensors"
    lines = [
        f"# {out.name}",
        "",
        r["description"],
        "",
        f"- Architecture: {json.dumps(model.network.config())}",
        f"- Classes: {', '.join(model.classes)} (softmax); input: one grey channel, 1-99 percentile normalised, "
        f"about {TARGET_PIXEL_NM:g} nm pixels",
        f"- Command: `{r['command']}`",
        f"- Hardware: {r['device']} ({r['machine']}), torch {r['torch']}; {r['iterations']} iterations in "
        f"{r['seconds'] / 60:.1f} min",
        f"- Weights: `weights.safetensors`, SHA-256 {hashlib.sha256(weights.read_bytes()).hexdigest()}",
        "",
        "## Training data",
        "",
    ]
    supervision = r.get("supervision", {})
    for name, s in r["sources"].items():
        if name in supervision:
            s = {**s, "what": f"{s['what']} [trains: {', '.join(supervision[name]) or 'nothing'}]"}
        if name == "phantom":
            lines.append(f"- **phantom** ({s['sections']} sections): {s['what']}; generated by "
                         f"`vemkit.synthetic.make_phantom((12, 512, 512), voxel_size=(40, 5, 5), {s['sha256'].get('make_phantom')})`")
            continue
        files = s["sha256"]
        digest = hashlib.sha256("".join(f"{p} {h}\n" for p, h in sorted(files.items())).encode()).hexdigest()
        lines.append(f"- **{name}** ({s['sections']} sections): {s['what']}; {len(files)} file(s) of "
                     f"data_manifest.json, each verified by SHA-256 on download; digest of their sorted "
                     f"`path sha256` lines: `{digest}`")
    if r.get("vnc_sections") is not None:
        lines.append(f"- VNC sections used: {r['vnc_sections']} (the others are kept for testing)")
    if "cdeep3m_mito" in r["sources"]:
        lines.append("- CDeep3M: the 'training' volume only (its 'validation' volume is kept for testing)")
    if r.get("init"):
        i = r["init"]
        lines.append(f"- Continued from the base model `{i['model']}` (itself trained on {', '.join(i['seen'])}: "
                     f"`{i['command']}`)")
    if r.get("augment"):
        a = r["augment"]
        lines.append(f"- Augmentation: zoom {a['scale_range']} (p {a['scale']}), contrast {a['contrast_range']}, "
                     f"gamma {a['gamma_range']}, blur sigma {a['blur_range']}, noise {a['noise_range']}, "
                     f"inversion p {a.get('invert', 0)}, flips, rotations, elastic")
    lines += ["", "Final training loss (mean of the last 50 iterations): "
              f"{np.mean(r['history']['loss'][-50:]):.3f}", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))
