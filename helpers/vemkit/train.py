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

The parts live in private modules: the planner in ``_trainplan``, patches in ``_patches``, losses in
``_losses``, and the loop every training method shares in ``_trainloop``.

Not for: running a trained model over a volume (:mod:`vemkit.predict`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._annotation_input import annotation_array
from ._basemodels import (BASE_MODELS_DIR, DEFAULT_BASE_MODELS, base_model_path, holds_model,  # noqa: F401
                          list_base_models, output_directory)
from ._device import resolve_device
from ._inputs import as_volume_array
from ._losses import EXTRA_TARGETS, extra_target_losses, masked_losses  # noqa: F401
from ._patches import PatchSampler, load_region
from ._progress import headless
from ._sections import with_voxel_size
from ._checks import check_finite_block, check_positive_int
from ._trainloop import TrainLoop, check_budget, run_environment
from ._trainplan import TrainingPlan, fingerprint, plan_training
from ._voxel import check_voxel_size

__all__ = [
    "TrainingPlan",
    "base_model_path",
    "finetune",
    "list_base_models",
    "masked_losses",
    "plan_training",
    "plot_history",
]

# ------------------------------------------------------------------------------------------ network
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


def finetune(image, annotations, *, classes=None, base="auto", out=None, plan: TrainingPlan | None = None,
             minutes: float | None = None, iterations: int | None = None, validation="auto", device="auto",
             seed: int = 0, extra_targets=(), amp="auto", checkpoint_every: float = 60.0, resume: bool = True,
             overwrite: bool = False, eval_every: int | None = None, live_plot: bool = False, progress: bool = True,
             voxel_size=None):
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

    from .models import SegmentationModel

    _check_budget(minutes, iterations, extra_targets, eval_every, checkpoint_every)
    base_dir = [base] if isinstance(base, (str, os.PathLike)) and Path(base).exists() else []
    out = output_directory(out, overwrite, [image, annotations, *base_dir])  # before any work
    dev = resolve_device(device)
    job = _job(image, annotations, classes, base, plan, voxel_size, extra_targets, dev)
    plan, n_classes = job["plan"], len(job["classes"])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net, head_note = _build_network(plan, job["classes"] + list(extra_targets), job["vs"], job["base"])
    if head_note and progress:
        print(head_note)
    sampler, val_data, low, high = _training_data(job, validation, rng)
    gen = torch.Generator().manual_seed(seed)
    loop = _FinetuneLoop(net, plan, sampler, gen, job["weights"], n_classes, extra_targets, device=dev, amp=amp,
                         progress=progress)
    ckpt = out / "checkpoint.pt" if out is not None else None
    history, elapsed_before = _resume(ckpt, loop, rng, gen, progress) if ckpt is not None and resume else (None, 0.0)
    history = history or {**loop.new_history(), "val_iteration": [], "val_iou": []}
    resumed_from = loop.step or None

    def validate():
        return _validate(net, val_data, n_classes, plan.ndim, dev)

    def checkpoint(step, seconds, history):
        _save_checkpoint(ckpt, net, loop.opt, step, seconds, history, rng, gen)

    if val_data is not None and loop.step == 0:  # where the curve starts: the base model (or random weights)
        loop.validate_into(history, validate)
    loop.run(history, minutes=minutes, iterations=iterations, elapsed=elapsed_before,
             validate=validate if val_data is not None else None,
             eval_every=eval_every or max(10, (iterations or 200) // 10), monitor=_LivePlot() if live_plot else None,
             checkpoint=checkpoint if ckpt is not None else None, checkpoint_every=checkpoint_every)
    loop.finish()
    record = _record(job, head_note, loop, resumed_from, seed, (low, high), history)
    model = SegmentationModel(net, job["classes"], voxel_size=job["vs"], normalization=dict(plan.normalization),
                              extra_targets=list(extra_targets), training=record)
    if out is not None:
        model.save(out, overwrite=True if (out.exists() and not holds_model(out)) else overwrite)
        if ckpt.exists():
            ckpt.unlink()
        plan.save(out / "plan.json")
    return model


def _job(image, annotations, classes, base, plan, voxel_size, extra_targets, dev) -> dict:
    """What to train on: data, annotations, voxel size, base, plan, class names and weights."""
    data, image_vs, image_source = as_volume_array(image, "image")
    ann, ann_classes, ann_vs = annotation_array(annotations)
    if tuple(ann.shape) != tuple(data.shape):
        raise ValueError(f"annotations have shape {tuple(ann.shape)} but the image has shape {tuple(data.shape)}")
    vs = check_voxel_size(voxel_size or image_vs or ann_vs) if (voxel_size or image_vs or ann_vs) else None
    if base in ("none", "None", ""):
        base = None
    if base == "auto":
        base = _auto_base(plan.ndim if plan else None, data, ann, vs, dev)
    if plan is None:
        plan = plan_training(data if vs is None else with_voxel_size(data, vs), ann, voxel_size=vs, device=str(dev), base=base)
    plan.extra_targets = list(extra_targets)
    counts = plan.fingerprint.get("counts") or fingerprint(data.shape, vs, ann)["counts"]
    classes = _class_names(classes or ann_classes, max(int(k) for k in counts))
    weights = list(plan.class_weights) + [1.0] * (len(classes) - len(plan.class_weights))
    return {"data": data, "ann": ann, "vs": vs, "source": image_source, "base": base, "plan": plan,
            "counts": counts, "classes": classes, "weights": weights}


def _training_data(job, validation, rng):
    """The patch sampler over the annotated region, the validation data (or None) and the intensity range."""
    from .pixel_classifier import intensity_range

    data, plan, n_classes = job["data"], job["plan"], len(job["classes"])
    low, high = intensity_range(data, plan.normalization.get("lower", 1.0), plan.normalization.get("upper", 99.0))
    finite = bool(np.isfinite([low, high]).all())
    # NaN or infinity in the patches' region would make every weight NaN: refuse it, saying where
    img, lab, offset = load_region(data, job["ann"], plan, low if finite else 0.0, high if finite else 1.0, n_classes)
    check_finite_block(img, "the image", tuple(slice(o, o + n) for o, n in zip(offset, img.shape)))
    if not finite:
        raise ValueError("the grey values sampled from the image to fix its intensity range hold NaN or infinite "
                         "values: fill or mask them first")
    val_sections = [z - offset[0] for z in plan.validation_sections] if validation in ("auto", None) and plan.ndim == 2 else []
    if validation is None:
        val_sections = []
    train_sections = None
    if val_sections:
        annotated = [z - offset[0] for z in plan.fingerprint["annotated_sections"]]
        train_sections = [z for z in annotated if z not in val_sections]
    sampler = PatchSampler(img, lab, plan.patch, plan.ndim, plan.foreground_fraction, rng, train_sections)
    return sampler, _validation_data(validation, val_sections, img, lab, low, high), low, high


def _resume(ckpt, loop, rng, gen, progress):
    """Network, optimiser, step and random streams from an interrupted run: ``(history, seconds)``, or
    ``(None, 0.0)`` without a checkpoint."""
    import torch

    if not ckpt.exists():
        return None, 0.0
    try:  # weights_only: a checkpoint is tensors and plain values; a planted pickle must not run code
        state = torch.load(ckpt, map_location=loop.device, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        raise ValueError(f"{ckpt} is not a training checkpoint that vemkit can load safely ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); nothing in it was run. Delete it to "
                         "train from the start, or pass resume=False") from None
    loop.modules[0].load_state_dict(state["network"])
    loop.opt.load_state_dict(state["optimizer"])
    loop.step = state["step"]
    rng.bit_generator.state = state["rng"]
    gen.set_state(state["torch_rng"])
    if progress:
        print(f"resumed from {ckpt} at iteration {loop.step}")
    return state["history"], state["seconds"]


def _record(job, head_note, loop, resumed_from, seed, intensity, history) -> dict:
    """The model's ``training`` record: plan, history, time, data, device."""
    from . import __version__

    classes = job["classes"]
    return {
        "vemkit_version": __version__,
        "method": "unet",
        "base": str(job["base"]) if job["base"] is not None else None,
        "head": head_note,
        "plan": job["plan"].to_dict(),
        "iterations": loop.step,
        "resumed_from": resumed_from,
        "seconds": round(loop.seconds(), 1),
        **run_environment(loop.device, seed),
        "amp": loop.amp,
        "intensity_range": list(intensity),
        "image": job["source"],
        "annotated_voxels": {classes[int(k) - 1] if int(k) - 1 < len(classes) else str(k): int(v)
                             for k, v in job["counts"].items()},
        "final_val_iou": history["val_iou"][-1] if history["val_iou"] else None,
        "history": history,
    }


def _check_budget(minutes, iterations, extra_targets, eval_every, checkpoint_every):
    check_budget(minutes, iterations)
    if eval_every is not None:
        check_positive_int(eval_every, "eval_every")
    if not checkpoint_every >= 0:  # 0: after every step; math.inf: never
        raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
    for t in extra_targets:
        if t not in EXTRA_TARGETS:
            raise ValueError(f"unknown extra target {t!r}; choose from {EXTRA_TARGETS}")


def _class_names(names, n_classes):
    """The class names (default: background, class_1, ...), at least one per annotated value."""
    classes = list(names or ["background"] + [f"class_{i}" for i in range(1, n_classes)])
    if len(classes) < n_classes:
        raise ValueError(f"the annotations use {n_classes} classes (values 1..{n_classes}) but only {classes} were named")
    return classes


class _FinetuneLoop(TrainLoop):
    """One fine-tuning step: foreground-biased patches, augmented, masked cross-entropy + Dice (plus the
    extra targets' losses)."""

    def __init__(self, net, plan, sampler, gen, weights, n_classes, extra_targets, **kw):
        import torch

        from .augment import AugmentConfig, Augmenter

        super().__init__([net], ndim=plan.ndim, lr=plan.lr, weight_decay=plan.weight_decay, **kw)
        cfg = getattr(AugmentConfig, plan.augment)() if isinstance(plan.augment, str) else AugmentConfig.from_dict(plan.augment)
        self.augmenter = Augmenter(cfg, ndim=plan.ndim, isotropic=plan.ndim == 3 and not plan.anisotropic)
        self.net, self.plan, self.sampler, self.gen = net, plan, sampler, gen
        self.cw = torch.tensor(weights, dtype=torch.float32, device=self.device)
        self.n_classes, self.extra_targets = n_classes, list(extra_targets)

    def forward_and_loss(self, fraction):
        import torch

        x_np, y_np = self.sampler.sample(self.plan.batch_size)
        x = torch.from_numpy(x_np).to(self.device)
        y = torch.from_numpy(y_np.astype(np.int64)).to(self.device)
        # the augmenter's labels are 0 = unlabelled, 1 = background (what enters from outside a patch is 0)
        x, y, _ = self.augmenter(x, y + 1, generator=self.gen)
        y = y - 1
        with self.autocast():
            logits = self.net(x.contiguous(memory_format=self.memory_format))
        loss, _ce, _dice = masked_losses(logits[:, : self.n_classes], y, self.cw, self.plan.dice_weight)
        if self.extra_targets:
            loss = loss + extra_target_losses(logits[:, self.n_classes :], y, self.extra_targets)
        return loss, {"loss": loss}


def _auto_base(ndim, data, ann, vs, dev):
    """The first shipped base model of the dimensionality the data calls for, or None."""
    from .models import load_model

    names = list(list_base_models())
    if not names:
        return None
    want = ndim
    if want is None:
        try:
            want = plan_training(with_voxel_size(data, vs) if vs else data, ann, voxel_size=vs, device=str(dev)).ndim
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
    data = as_volume_array(v_img, "validation image").data
    arr, _, _ = annotation_array(v_ann)
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
    """Loss (smoothed) and, when there was validation data, validation IoU against iterations.

    Parameters
    ----------
    history : dict
        ``model.training["history"]`` (or the live one).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One panel (loss) without validation data, else two (loss, validation IoU): a panel with nothing
        to show is left out, and the loss panel says in words that nothing was validated.

    Examples
    --------
    >>> fig = plot_history({"iteration": [1, 2, 3], "loss": [1.0, 0.8, 0.7]})
    >>> len(fig.axes)
    1
    >>> fig = plot_history({"iteration": [1, 2], "loss": [1.0, 0.8], "val_iteration": [2], "val_iou": [0.5]})
    >>> len(fig.axes)
    2
    """
    from .viz import figure

    validated = bool(history.get("val_iou"))
    fig = figure((8, 3.2) if validated else (4.8, 3.2))
    ax = fig.add_subplot(1, 2 if validated else 1, 1)
    it = np.asarray(history.get("iteration", []))
    loss = np.asarray(history.get("loss", []))
    if loss.size:
        ax.plot(it, loss, color="0.75", lw=0.8, label="batch")
        k = max(1, loss.size // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(it[k - 1 :], smooth, color="C0", lw=1.5, label=f"mean of {k}")
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no training steps recorded yet", ha="center", va="center", transform=ax.transAxes,
                color="0.5")
    ax.set_xlabel("iteration" if validated else "iteration (no validation data: IoU not tracked)")
    ax.set_ylabel("loss (cross-entropy + Dice)")
    if validated:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(history["val_iteration"], history["val_iou"], "o-", color="C1")
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("validation IoU (foreground)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class _LivePlot:
    """Redraws :func:`plot_history` in place in a notebook that someone watches live; a no-op elsewhere,
    including headless notebook runs (papermill, the tour), which keep only the figure drawn at the end."""

    def __init__(self):
        self.handle = None
        self.active = not headless()

    def update(self, history):
        if not self.active:
            return
        from IPython.display import display

        fig = plot_history(history)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
