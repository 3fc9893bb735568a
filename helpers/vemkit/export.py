"""Export a vemkit U-Net to the bioimage.io model format, for deepImageJ, ilastik, bioimageio.core and others.

- :func:`export_bioimageio`: write a model directory (or a :class:`~vemkit.models.SegmentationModel`) as a
  bioimage.io model package (format 0.5): TorchScript weights that run without vemkit, a PyTorch state
  dict for Python users, the input normalisation as bioimage.io preprocessing, the halo, test tensors,
  a cover image and a README made from the training record. The package is validated before it is kept.
- :func:`validate_bioimageio`: load a package with ``bioimageio.spec`` (format checks plus the offline
  file checks: every file present, hashes, test tensors against the tensor descriptions) and summarise.
- :class:`ProbabilityUNet`: the architecture of the package's state-dict weights, a
  :class:`~vemkit.models.UNet` whose output is already probabilities.

The exported network includes the output activation, as :mod:`vemkit.predict` applies it: softmax over
the class channels and a sigmoid on any extra target. The spec's own ``softmax`` postprocessing was
not used because it is recent (not in ``bioimageio.spec`` < 0.5.9, unknown to older consumers, whose
users would get logits without noticing) and cannot leave extra-target channels out of the softmax.

Needs ``bioimageio.spec`` (``pip install 'vemkit[export]'``); it is imported only when used, and
nothing here touches the network.

Not for: running bioimage.io models from the zoo (use bioimageio.core), training (:mod:`vemkit.train`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .models import SegmentationModel, UNet, load_model

__all__ = ["ProbabilityUNet", "export_bioimageio", "validate_bioimageio"]

#: Tags every exported package carries (the classes and a few bioimage.io category tags are added).
BASE_TAGS = ["electron-microscopy", "segmentation", "unet", "vemkit"]

INPUT_ID = "raw"
OUTPUT_ID = "probabilities"

_INSTALL_HINT = "pip install 'vemkit[export]'"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]")
_JIT_DEPRECATION = r".*torch\.jit\.\w+.* is deprecated"
#: Description keys whose URLs are links, not files (validation would only ping them).
_LINK_KEYS = {"url", "git_repo"}

_CITATIONS = [
    {"text": "Ronneberger O, Fischer P, Brox T (2015). U-Net: Convolutional Networks for Biomedical Image "
             "Segmentation. MICCAI 2015.", "doi": "10.1007/978-3-319-24574-4_28"},
    {"text": "Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH (2021). nnU-Net: a self-configuring "
             "method for deep learning-based biomedical image segmentation. Nature Methods 18, 203-211 "
             "(the network plan vemkit follows).", "doi": "10.1038/s41592-020-01008-z"},
]


def _vemkit_citation() -> str:
    from . import __version__

    return (f"vemkit developers. vemkit {__version__}: from a raw volume-electron-microscopy stack to measured "
            "organelles (software).")


class ProbabilityUNet(UNet):
    """A :class:`~vemkit.models.UNet` that outputs probabilities: softmax over the first ``n_classes``
    channels and a sigmoid on the rest (extra targets), as :mod:`vemkit.predict` does.

    Its state dict has the same keys as the plain U-Net's, so the same weights file loads into either.

    Parameters
    ----------
    n_classes : int
        Number of semantic classes (the first output channels).
    **kwargs
        :class:`~vemkit.models.UNet` arguments (its :meth:`~vemkit.models.UNet.config`, less ``name``).

    Examples
    --------
    >>> net = ProbabilityUNet(n_classes=2, ndim=2, out_channels=3, base_channels=4, depth=1).eval()
    >>> p = net(torch.zeros(1, 1, 16, 16))
    >>> p.shape, bool(torch.allclose(p[:, :2].sum(1), torch.ones(1, 16, 16)))
    (torch.Size([1, 3, 16, 16]), True)
    """

    def __init__(self, n_classes: int, **kwargs):
        kwargs.pop("name", None)
        super().__init__(**kwargs)
        n_classes = int(n_classes)
        if not 1 <= n_classes <= self.out_channels:
            raise ValueError(f"n_classes must be between 1 and out_channels ({self.out_channels}), got {n_classes}")
        self.n_classes = n_classes

    @classmethod
    def from_unet(cls, net: UNet, n_classes: int) -> "ProbabilityUNet":
        """A copy of ``net`` (weights included, on the CPU, in eval mode) with the activation added."""
        cfg = net.config()
        out = cls(n_classes=n_classes, **cfg)
        state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
                 for k, v in net.state_dict().items()}
        out.load_state_dict(state)
        return out.eval()

    def forward(self, x):
        y = super().forward(x)
        if self.n_classes == self.out_channels:
            return torch.softmax(y, dim=1)
        return torch.cat([torch.softmax(y[:, : self.n_classes], dim=1), torch.sigmoid(y[:, self.n_classes :])], dim=1)


@contextlib.contextmanager
def _quiet_spec():
    """bioimageio.spec leaves file handles for garbage collection (ResourceWarning at collection);
    collect them here, with the warning silenced, instead of at some later point."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def _require_spec():
    try:
        import bioimageio.spec as spec
    except ImportError as e:  # pragma: no cover - exercised only where the extra is missing
        raise ImportError(f"exporting to bioimage.io needs the bioimageio.spec package: {_INSTALL_HINT}") from e
    return spec


def _resolve_model(model) -> SegmentationModel:
    if isinstance(model, SegmentationModel):
        resolved = model
    elif isinstance(model, (str, os.PathLike)):
        resolved = load_model(model, device="cpu")
    else:
        raise TypeError(f"model must be a model directory path or a SegmentationModel, got {type(model).__name__}")
    if not isinstance(resolved.network, UNet):
        raise TypeError(f"only vemkit.models.UNet networks can be exported to bioimage.io, this model's network is "
                        f"a {type(resolved.network).__module__}.{type(resolved.network).__name__}")
    if resolved.in_channels != 1:
        raise ValueError(f"bioimage.io export expects a one-channel (grey-value EM) network, this one takes "
                         f"{resolved.in_channels} input channels")
    return resolved


def _check_out(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` is a zip file (else a folder); refuses to replace what was not asked for."""
    is_zip = out.suffix.lower() == ".zip"
    if is_zip:
        if out.is_dir():
            raise FileExistsError(f"output {str(out)!r} is a folder, not a .zip file")
        if out.exists() and not overwrite:
            raise FileExistsError(f"output {str(out)!r} exists; pass overwrite=True to replace it")
    elif out.exists():
        if not out.is_dir():
            raise FileExistsError(f"output folder {str(out)!r} is a file")
        if any(out.iterdir()):
            if not overwrite:
                raise FileExistsError(f"output folder {str(out)!r} exists and is not empty; pass overwrite=True")
            if not any((out / n).is_file() for n in ("rdf.yaml", "bioimageio.yaml")):
                raise FileExistsError(f"output folder {str(out)!r} is not empty and holds no bioimage.io package "
                                      "(rdf.yaml); refusing to replace it even with overwrite=True")
    return is_zip


def _default_name(model: SegmentationModel) -> str:
    fg = " ".join(c for c in model.classes[1:])
    name = _NAME_CHARS.sub("-", f"vemkit {model.ndim}D U-Net {fg}").strip()
    return name[:64].rstrip()


def _join(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _tags(model: SegmentationModel) -> list:
    tags = list(BASE_TAGS) + [f"{model.ndim}d", "pytorch", "semantic-segmentation", "ilastik", "deepimagej"]
    for c in [*model.classes[1:], *model.extra_targets]:
        t = _tag(c)
        if t.startswith("mitochondri"):
            tags.append("mitochondria")
        if "membrane" in t:
            tags.append("cell-membrane")
        if t:
            tags.append(t)
    return list(dict.fromkeys(tags))


def _spatial_layout(model: SegmentationModel):
    """Per network spatial axis: (axis id, divisor, halo, voxel size or None, minimum size)."""
    ids = ("z", "y", "x")[3 - model.ndim:]
    div = model.divisor[3 - model.ndim:]
    halo = model.halo[3 - model.ndim:]
    vs = model.voxel_size[3 - model.ndim:] if model.voxel_size else (None,) * model.ndim
    out = []
    for a, d, h, v in zip(ids, div, halo, vs):
        d, h = int(d), int(h)
        min_size = (2 * h // d + 1) * d  # the smallest multiple of the divisor that leaves >= 1 voxel after the halo
        out.append((a, d, h, v, min_size))
    return out


def _valid_size(target: int, min_size: int, step: int) -> int:
    """The smallest valid size (min + n * step) >= target."""
    return min_size + step * max(0, -(-(int(target) - min_size) // step))


def _largest_valid(limit: int, min_size: int, step: int) -> int:
    return min_size + step * ((int(limit) - min_size) // step)


def _test_image(model: SegmentationModel, layout, test_image):
    """The raw test crop, shaped like the network's spatial input."""
    if test_image is None:
        from .synthetic import make_phantom

        targets = {"z": 8, "y": 96, "x": 96}
        shape = [_valid_size(targets[a], m, d) for a, d, _h, _v, m in layout]
        zyx = (1, *shape) if model.ndim == 2 else tuple(shape)
        ph = make_phantom(zyx, voxel_size=model.voxel_size or (40.0, 8.0, 8.0), seed=0)
        return np.asarray(ph.image, dtype=np.float32).reshape(shape)
    img = np.asarray(test_image)
    if img.dtype == bool or not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise ValueError(f"test_image must hold integer or float grey values, got dtype {img.dtype}")
    if model.ndim == 2 and img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != model.ndim:
        raise ValueError(f"test_image must be a {model.ndim}D array for a {model.ndim}D network "
                         f"(a single section (1, y, x) is fine for 2D), got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("test_image holds NaN or infinite values")
    caps = {"z": 32, "y": 256, "x": 256} if model.ndim == 3 else {"y": 512, "x": 512}
    crop = []
    for n, (a, d, _h, _v, m) in zip(img.shape, layout):
        if n < m:
            raise ValueError(f"test_image is too small along {a}: {n} voxels, the network needs at least {m} "
                             f"(a multiple of {d} with room for the {_h}-voxel halo)")
        size = _largest_valid(min(n, max(caps[a], m)), m, d)
        start = (n - size) // 2
        crop.append(slice(start, start + size))
    return np.ascontiguousarray(img[tuple(crop)], dtype=np.float32)


def _preprocess(raw: np.ndarray, model: SegmentationModel):
    """What the package's preprocessing does to the test input (bioimage.io formulas, float32 result)."""
    norm = model.normalization
    x = raw.astype(np.float64)
    if norm["mode"] == "fixed":
        low, high = float(norm["low"]), float(norm["high"])
        return ((x - low) / (high - low)).astype(np.float32)
    lo, hi = np.percentile(x, [float(norm.get("lower", 1.0)), float(norm.get("upper", 99.0))])
    return ((x - lo) / (hi - lo + 1e-6)).astype(np.float32)


def _preprocessing_descr(v5, model: SegmentationModel, axis_ids):
    norm = model.normalization
    if norm["mode"] == "fixed":
        low, high = float(norm["low"]), float(norm["high"])
        if not high > low:
            raise ValueError(f"fixed normalisation needs high > low, got low={low}, high={high}")
        gain, offset = 1.0 / (high - low), -low / (high - low)
        if gain == 1.0 and offset == 0.0:
            return []  # grey values are already network input
        return [v5.ScaleLinearDescr(kwargs=v5.ScaleLinearKwargs(gain=gain, offset=offset))]
    return [v5.ScaleRangeDescr(kwargs=v5.ScaleRangeKwargs(
        axes=[v5.AxisId(a) for a in axis_ids],
        min_percentile=float(norm.get("lower", 1.0)),
        max_percentile=float(norm.get("upper", 99.0))))]


def _normalisation_text(model: SegmentationModel) -> str:
    norm = model.normalization
    if norm["mode"] == "fixed":
        return (f"grey value {norm['low']:g} -> 0 and {norm['high']:g} -> 1 (`scale_linear`), the fixed range the "
                "model was trained with")
    return (f"the {norm.get('lower', 1.0):g} and {norm.get('upper', 99.0):g} percentiles of the input -> 0 and 1 "
            "(`scale_range`, no clipping). vemkit estimates these percentiles once per volume from a sample; a "
            "bioimage.io consumer computes them on the image it is given, so give it whole images or sections "
            "rather than small crops")


def _trace(net: ProbabilityUNet, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(net, example, check_trace=False)
    return traced


def _run(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _cover(path: Path, raw: np.ndarray, probs: np.ndarray, model: SegmentationModel):
    """Input | prediction, side by side (2:1), the middle section of a 3D crop."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    if raw.ndim == 3:
        raw, probs = raw[raw.shape[0] // 2], probs[:, probs.shape[1] // 2]
    labels = probs[: model.n_classes].argmax(0)
    palette = [(0, 0, 0, 0), (0.12, 0.47, 0.71, 1), (1.0, 0.5, 0.05, 1), (0.17, 0.63, 0.17, 1),
               (0.84, 0.15, 0.16, 1), (0.58, 0.4, 0.74, 1), (0.55, 0.34, 0.29, 1), (0.89, 0.47, 0.76, 1)]
    cmap = ListedColormap([palette[i % len(palette)] if i else palette[0] for i in range(model.n_classes)])
    lo, hi = np.percentile(raw, [1, 99])
    fig = Figure(figsize=(8, 4), dpi=100)
    for i, title in enumerate(("input", "prediction")):
        ax = fig.add_axes((i / 2, 0, 0.5, 1))
        ax.imshow(raw, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", aspect="auto")
        if i:
            ax.imshow(labels, cmap=cmap, vmin=-0.5, vmax=model.n_classes - 0.5, alpha=0.55, interpolation="nearest",
                      aspect="auto")
        ax.set_axis_off()
        ax.text(0.02, 0.97, title, transform=ax.transAxes, color="white", va="top", fontsize=12,
                bbox={"facecolor": "black", "alpha": 0.5, "edgecolor": "none"})
    fig.savefig(path, dpi=100)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, default=str)[:300] + "`"
    return str(value)


def _readme(model: SegmentationModel, name: str, description: str, layout, preprocessing_text: str) -> str:
    from . import __version__

    t = model.training or {}
    lines = [f"# {name}", "", description, "",
             "## Model", "",
             f"- Network: {model.ndim}D U-Net (vemkit {__version__}), kernels {model.network.kernels}, "
             f"pooling {model.network.pools}, {model.network.base_channels} base channels"
             + (", residual encoder" if model.network.residual else "") + ".",
             f"- Voxel size it was trained at (z, y, x): {model.voxel_size} nm." if model.voxel_size
             else "- Voxel size it was trained at: not recorded.",
             f"- Input `{INPUT_ID}`: one grey-value channel, axes batch, channel, "
             + ", ".join(a for a, *_ in layout) + ". Each spatial side must be "
             + ", ".join(f"{a}: {m} + n x {d}" for a, d, _h, _v, m in layout) + ".",
             f"- Normalisation: {preprocessing_text}.",
             f"- Output `{OUTPUT_ID}`: one channel per class (" + ", ".join(model.classes) + ")"
             + (" then per extra target (" + ", ".join(model.extra_targets) + ")" if model.extra_targets else "")
             + ". The class channels are softmax probabilities (they sum to 1; the label is their argmax, 0 = "
             "background)" + ("; extra targets are sigmoid outputs" if model.extra_targets else "")
             + ". The activation is part of the network in both weight formats.",
             "- Halo: " + ", ".join(f"{a}: {h}" for a, _d, h, _v, _m in layout)
             + " voxels per side. Tile with this much context and crop it from the output for seam-free results.",
             "",
             "## Weights", "",
             "- `weights_torchscript.pt`: TorchScript, runs without vemkit (deepImageJ, ilastik, bioimageio.core).",
             "- `weights_state_dict.pt`: a PyTorch state dict for `vemkit.export.ProbabilityUNet` (architecture "
             "kwargs in `rdf.yaml`); the same keys load into `vemkit.models.UNet`, which outputs logits. Needs "
             "vemkit installed. `vemkit_config.json` and `training.json` are the vemkit model directory's files.",
             "",
             "## Training", ""]
    plan = t.get("plan") or {}
    rows = [("data", t.get("image")), ("base model", t.get("base")), ("method", t.get("method")),
            ("iterations", t.get("iterations")), ("time (s)", t.get("seconds")), ("device", t.get("device")),
            ("machine", t.get("machine")), ("torch", t.get("torch")), ("seed", t.get("seed")),
            ("annotated voxels", t.get("annotated_voxels")), ("final validation IoU", t.get("final_val_iou")),
            ("patch", plan.get("patch")), ("batch size", plan.get("batch_size")), ("learning rate", plan.get("lr")),
            ("augmentation", plan.get("augment")), ("class weights", plan.get("class_weights")),
            ("validation sections", plan.get("validation_sections"))]
    rows = [(k, v) for k, v in rows if v not in (None, "", [], {})]
    if rows:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v).replace('|', '/')} |" for k, v in rows]
    else:
        lines.append("No training record was saved with this model.")
    if plan.get("reasons"):
        lines += ["", "Why this plan:", ""] + [f"- {k}: {v}" for k, v in plan["reasons"].items()]
    if t:
        lines += ["", "The full record (with the loss and validation history) is in `training.json`."]
    lines += ["", "## Validation", "",
              "`test_input.npy` (raw grey values) and `test_output.npy` (probabilities) reproduce with either weight "
              "format after the preprocessing above. Before trusting the model on new data, annotate a few sections "
              "of it and score the prediction (e.g. `vemkit evaluate`, per-class IoU); EM from another instrument, "
              "stain or voxel size than the training data usually needs fine-tuning.", "",
              "## Use with vemkit", "",
              "Predict with the original model directory (`vemkit predict`), which handles the normalisation, "
              "halo and blocks over whole volumes.", "",
              "## Citation", "",
              f"- {_vemkit_citation()}"] + [f"- {c['text']} doi:{c['doi']}" for c in _CITATIONS] + [""]
    return "\n".join(lines)


def _training_details(t: dict) -> dict:
    plan = t.get("plan") or {}
    details = {}
    if plan.get("batch_size") is not None:
        details["training_batch_size"] = float(plan["batch_size"])
    if plan.get("lr") is not None:
        details["initial_learning_rate"] = float(plan["lr"])
        details["optimizer"] = "torch.optim.AdamW"
        details["learning_rate_schedule"] = "polynomial decay"
    if plan:
        weighted = len(set(plan.get("class_weights") or [1.0])) > 1
        details["loss_function"] = (f"{'weighted ' if weighted else ''}cross-entropy + Dice "
                                    "(unlabelled voxels ignored)")
    if t.get("seconds") is not None:
        details["training_duration"] = float(t["seconds"]) / 3600.0
    return details


def export_bioimageio(model, out, *, name=None, description=None, authors=None, test_image=None,
                      license="CC-BY-4.0", overwrite=False) -> Path:
    """Export a U-Net model as a bioimage.io model package (format 0.5).

    Parameters
    ----------
    model : str, Path or SegmentationModel
        A vemkit model directory (``config.json`` + ``weights.safetensors``) or a loaded model; its
        network must be a :class:`vemkit.models.UNet` with one input channel.
    out : str or Path
        ``something.zip`` for a zipped package (what bioimage.io, deepImageJ and ilastik open), or a
        folder to write the package into.
    name : str, optional
        Model name (letters, digits, spaces, ``_+-()``; 5-128 characters). Default from the classes.
    description : str, optional
        One paragraph (at most 1024 characters). Default: network, classes, voxel size and output.
    authors : list of str or dict, optional
        Who made the model: names, or dicts with ``name`` and optionally ``affiliation``, ``email``,
        ``orcid``, ``github_user``. bioimage.io asks for at least one before upload (validation warns).
    test_image : array, optional
        A 2D (2D network) or 3D (3D network) crop of grey values for the test tensors and cover;
        it is centre-cropped to a size the network takes. Default: a synthetic EM phantom.
    license : str
        SPDX identifier of the model's licence.
    overwrite : bool
        Replace an existing ``.zip``, or the package in an existing folder.

    Returns
    -------
    Path
        ``out``, holding a package that passed :func:`validate_bioimageio`.

    Raises
    ------
    ImportError
        If ``bioimageio.spec`` is missing (``pip install 'vemkit[export]'``).
    TypeError
        If the model is not a vemkit U-Net.
    FileExistsError
        If ``out`` exists and ``overwrite`` is False.
    ValueError
        If an argument is invalid or the package fails validation.

    Notes
    -----
    The package holds ``rdf.yaml``; ``weights_torchscript.pt`` (traced in eval mode, self-contained)
    and ``weights_state_dict.pt`` (architecture ``vemkit.export:ProbabilityUNet``); ``test_input.npy``
    (raw grey values, shape (1, 1, [z,] y, x)) and ``test_output.npy`` (probabilities, computed with
    the exported network); ``cover.png``; ``README.md`` (from the training record); and the model
    directory's ``vemkit_config.json`` and ``training.json``. The input is described with a
    parameterised size per spatial axis (minimum a multiple of the network's divisor, step the
    divisor), the model's halo sits on the output axes, and the normalisation is the preprocessing.
    """
    _require_spec()
    from bioimageio.spec import (
        ValidationContext,
        save_bioimageio_package_as_folder,
        save_bioimageio_package_to_stream,
    )
    from bioimageio.spec.model import v0_5 as v5
    from pydantic import ValidationError

    seg = _resolve_model(model)
    if seg.normalization.get("mode") == "histogram":
        raise ValueError("this model maps grey values by histogram matching (vemkit adapt --method histogram), "
                         "which the bioimage.io format cannot describe; export the model it was adapted from, "
                         "and histogram-match the images with vemkit.domain.match_histogram instead")
    out = Path(out)
    is_zip = _check_out(out, overwrite)
    name = _default_name(seg) if name is None else str(name)
    if _NAME_CHARS.search(name) or not 5 <= len(name) <= 128:
        raise ValueError(f"name must be 5-128 characters of letters, digits, spaces and _+-(), got {name!r}")
    layout = _spatial_layout(seg)
    axis_ids = [a for a, *_ in layout]
    vs_text = " x ".join(f"{v:g}" for v in seg.voxel_size) + " nm (z, y, x)" if seg.voxel_size else "unrecorded"
    if description is None:
        fg = _join(seg.classes[1:])
        description = (f"{seg.ndim}D U-Net trained with vemkit to segment {fg} in volume electron microscopy "
                       f"(voxel size {vs_text}). Output: softmax probabilities per class "
                       f"({', '.join(seg.classes)})"
                       + (f" then sigmoid outputs for {', '.join(seg.extra_targets)}" if seg.extra_targets else "")
                       + "; the label is the argmax of the class channels.")
    author_list = []
    for a in authors or []:
        a = {"name": a} if isinstance(a, str) else dict(a)
        if not str(a.get("name") or "").strip():
            raise ValueError(f"every author needs a name, got {a!r}")
        author_list.append(a)

    net = ProbabilityUNet.from_unet(seg.network, seg.n_classes)
    raw = _test_image(seg, layout, test_image)
    test_in = raw[None, None]
    x = _preprocess(test_in, seg)
    reference = _run(net, x)
    traced = _trace(net, torch.from_numpy(x))
    test_out = _run(traced, x)
    if not np.allclose(test_out, reference, rtol=0, atol=1e-5):
        raise RuntimeError("the traced TorchScript network does not reproduce the eager network on the test input")
    # a second shape: the trace must not have frozen the input size
    other = tuple(m + d for _a, d, _h, _v, m in layout)
    probe = np.random.default_rng(0).random((2, 1, *other), dtype=np.float32)
    if not np.allclose(_run(traced, probe), _run(net, probe), rtol=0, atol=1e-5):
        raise RuntimeError("the traced TorchScript network does not generalise to other input sizes")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vemkit-bioimageio-", dir=out.parent) as tmp, _quiet_spec():
        tmp = Path(tmp).resolve()
        stage = tmp / "files"
        stage.mkdir()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=DeprecationWarning)
            traced.save(str(stage / "weights_torchscript.pt"))
        torch.save({k: v.contiguous() for k, v in net.state_dict().items()}, stage / "weights_state_dict.pt")
        np.save(stage / "test_input.npy", test_in)
        np.save(stage / "test_output.npy", test_out.astype(np.float32))
        import tifffile

        tifffile.imwrite(stage / "sample_input.tif", raw, photometric="minisblack")
        tifffile.imwrite(stage / "sample_output.tif", test_out[0], photometric="minisblack")
        _cover(stage / "cover.png", raw, test_out[0], seg)
        preprocessing_text = _normalisation_text(seg)
        (stage / "README.md").write_text(_readme(seg, name, description, layout, preprocessing_text))
        (stage / "vemkit_config.json").write_text(json.dumps(seg.config(), indent=1))
        (stage / "training.json").write_text(json.dumps(seg.training or {}, indent=1, default=str))

        unit = "nanometer" if seg.voxel_size else None
        in_axes = [v5.BatchAxis(), v5.ChannelAxis(channel_names=["em"])]
        out_axes = [v5.BatchAxis(), v5.ChannelAxis(channel_names=[*seg.classes, *seg.extra_targets])]
        for a, d, h, v, m in layout:
            scale = float(v) if v else 1.0
            in_axes.append(v5.SpaceInputAxis(id=v5.AxisId(a), size=v5.ParameterizedSize(min=m, step=d),
                                             unit=unit, scale=scale))
            ref = v5.SizeReference(tensor_id=v5.TensorId(INPUT_ID), axis_id=v5.AxisId(a))
            if h > 0:
                out_axes.append(v5.SpaceOutputAxisWithHalo(id=v5.AxisId(a), size=ref, halo=h, unit=unit, scale=scale))
            else:
                out_axes.append(v5.SpaceOutputAxis(id=v5.AxisId(a), size=ref, unit=unit, scale=scale))
        torch_version = v5.Version(torch.__version__.split("+")[0])
        arch_kwargs = {k: v for k, v in seg.network.config().items() if k != "name"}
        arch_kwargs["n_classes"] = seg.n_classes
        t = seg.training or {}
        bioimageio_config = {
            "architecture_type": f"{seg.ndim}D U-Net",
            "architecture_description": (f"vemkit U-Net: {len(seg.network.pools)} poolings {seg.network.pools}, "
                                         f"kernels {seg.network.kernels}, channels {seg.network.channels}, "
                                         "BatchNorm + LeakyReLU, softmax output"),
            "modality": "electron microscopy",
            "target_structure": list(seg.classes[1:]),
            "task": "semantic segmentation",
            "model_parameter_count": int(sum(p.numel() for p in net.parameters())),
            "training": _training_details(t),
        }
        if t.get("device"):
            bioimageio_config["environmental_impact"] = {"hardware_type": str(t["device"])}
        vemkit_config = {"model": seg.config(), "fingerprint": seg.fingerprint(), "citation": _vemkit_citation(),
                         "output": "probabilities: softmax over the classes, sigmoid on extra targets"}
        # Built without file IO (the hashes are given): with IO on, bioimageio.spec would look authors'
        # github_user up online. The written package gets the full offline IO validation below.
        offline = ValidationContext(root=stage, perform_io_checks=False, raise_errors=True, log_warnings=False)
        names = ("weights_torchscript.pt", "weights_state_dict.pt", "test_input.npy", "test_output.npy",
                 "sample_input.tif", "sample_output.tif", "cover.png", "README.md", "vemkit_config.json",
                 "training.json")
        try:
            with offline:
                files = {n: v5.FileDescr(source=stage / n, sha256=v5.Sha256(_sha256(stage / n))) for n in names}
                descr = v5.ModelDescr(
                    name=name,
                    description=description,
                    authors=author_list,
                    cite=[v5.CiteEntry(text=c["text"], doi=v5.Doi(c["doi"])) for c in _CITATIONS],
                    license=v5.LicenseId(license),
                    tags=_tags(seg),
                    covers=[files["cover.png"]],
                    documentation=files["README.md"],
                    attachments=[files["vemkit_config.json"],
                                 files["training.json"]],
                    inputs=[v5.InputTensorDescr(
                        id=v5.TensorId(INPUT_ID),
                        description="EM grey values, one channel (any integer or float type; cast to float32)",
                        axes=in_axes,
                        test_tensor=files["test_input.npy"],
                        sample_tensor=files["sample_input.tif"],
                        data=v5.IntervalOrRatioDataDescr(type="float32"),
                        preprocessing=_preprocessing_descr(v5, seg, axis_ids),
                    )],
                    outputs=[v5.OutputTensorDescr(
                        id=v5.TensorId(OUTPUT_ID),
                        description=("softmax probability per class (sum 1, label = argmax)"
                                     + ("; sigmoid per extra target" if seg.extra_targets else "")),
                        axes=out_axes,
                        test_tensor=files["test_output.npy"],
                        sample_tensor=files["sample_output.tif"],
                        data=v5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                    )],
                    weights=v5.WeightsDescr(
                        pytorch_state_dict=v5.PytorchStateDictWeightsDescr(
                            source=files["weights_state_dict.pt"].source,
                            sha256=files["weights_state_dict.pt"].sha256,
                            architecture=v5.ArchitectureFromLibraryDescr(
                                callable=v5.Identifier("ProbabilityUNet"), import_from="vemkit.export",
                                kwargs=arch_kwargs),
                            pytorch_version=torch_version,
                            comment="vemkit.export.ProbabilityUNet; needs vemkit installed",
                        ),
                        torchscript=v5.TorchscriptWeightsDescr(
                            source=files["weights_torchscript.pt"].source,
                            sha256=files["weights_torchscript.pt"].sha256,
                            pytorch_version=torch_version,
                            parent="pytorch_state_dict",
                            comment="traced in eval mode from the state-dict network; runs without vemkit",
                        ),
                    ),
                    config={"bioimageio": bioimageio_config, "vemkit": vemkit_config},
                )
        except ValidationError as e:
            raise ValueError(f"the bioimage.io description of this model is invalid:\n{e}") from e

        written = tmp / ("package.zip" if is_zip else "package")
        with offline:
            if is_zip:
                with open(written, "wb") as f:
                    save_bioimageio_package_to_stream(descr, output_stream=f)
            else:
                save_bioimageio_package_as_folder(descr, output_path=written)
        del descr
        summary = validate_bioimageio(written)
        if summary["status"] == "failed":
            raise ValueError("the exported bioimage.io package failed validation:\n" + "\n".join(summary["errors"]))
        if summary.get("test", {}).get("status") == "failed":
            raise ValueError(f"the exported TorchScript weights do not reproduce the test output: {summary['test']}")
        if is_zip:
            os.replace(written, out)
        else:
            if out.exists():
                shutil.rmtree(out)
            shutil.move(str(written), str(out))
    return out


def _scale_range(x: np.ndarray, kwargs, axis_ids) -> np.ndarray:
    axes = tuple(axis_ids.index(str(a)) for a in kwargs.axes) if kwargs.axes else None
    lo = np.percentile(x, kwargs.min_percentile, axis=axes, keepdims=True)
    hi = np.percentile(x, kwargs.max_percentile, axis=axes, keepdims=True)
    return (x - lo) / (hi - lo + kwargs.eps)


def _run_test(descr) -> dict:
    """Run the TorchScript weights on the test input with the described processing; compare outputs."""
    import io

    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        return {"status": "skipped", "reason": "only single-input, single-output models are run here"}
    weights = descr.weights.torchscript
    if weights is None:
        return {"status": "skipped", "reason": "no TorchScript weights"}
    ipt, opt = descr.inputs[0], descr.outputs[0]
    x = descr.get_input_test_arrays()[0]
    expected = descr.get_output_test_arrays()[0]
    axis_ids = [str(a.id) for a in ipt.axes]
    for p in ipt.preprocessing:
        if p.id == "ensure_dtype":
            x = x.astype(p.kwargs.dtype)
        elif p.id == "scale_linear" and not hasattr(p.kwargs, "axis"):
            x = x * p.kwargs.gain + p.kwargs.offset
        elif p.id == "scale_range" and p.kwargs.reference_tensor in (None, ipt.id):
            x = _scale_range(x, p.kwargs, axis_ids)
        else:
            return {"status": "skipped", "reason": f"preprocessing {p.id!r} is not implemented here (use bioimageio.core)"}
    if any(p.id != "ensure_dtype" for p in opt.postprocessing):
        return {"status": "skipped", "reason": "postprocessing other than ensure_dtype is not implemented here"}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=DeprecationWarning)
            net = torch.jit.load(io.BytesIO(weights.get_reader().read()), map_location="cpu")
        got = _run(net.eval(), np.asarray(x, dtype=np.float32)).astype(expected.dtype)
    except Exception as e:  # a broken weights file is a failed test, not a crash of the validation
        return {"weights": "torchscript", "status": "failed", "reason": f"{type(e).__name__}: {e}"}
    rtol, atol, per_million = 1e-3, 1e-3, 100
    for tol in descr.config.bioimageio.reproducibility_tolerance:
        ids, formats = tol.output_ids, tol.weights_formats
        if formats and "torchscript" not in formats:
            continue
        if ids in ((), "any_continuous_output") or (not isinstance(ids, str) and opt.id in ids):
            rtol, atol, per_million = tol.relative_tolerance, tol.absolute_tolerance, tol.mismatched_elements_per_million
            break
    if got.shape != expected.shape:
        return {"weights": "torchscript", "status": "failed",
                "reason": f"output shape {got.shape} differs from the test output's {expected.shape}"}
    diff = np.abs(got.astype(np.float64) - expected)
    mismatched = float((diff > atol + rtol * np.abs(expected)).mean() * 1e6)
    return {"weights": "torchscript", "status": "passed" if mismatched <= per_million else "failed",
            "max_abs_diff": float(diff.max()), "mismatched_per_million": mismatched}


def _offline_content(content):
    """The description with what would need the network set aside: URLs (returned, to be passed as
    known files, i.e. not fetched) and GitHub user names (removed: bioimageio.spec looks them up online).
    Remote files and ``output_of`` links cannot be checked offline: ValueError."""
    urls, users = set(), set()

    def walk(node, key=None):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "config":  # free-form tool metadata: not validated, so nothing fetched
                    out[k] = v
                    continue
                if k == "github_user" and isinstance(v, str):
                    users.add(v)
                    continue
                if k == "output_of" and v:
                    raise ValueError(f"the description links to another model ({v!r}) that cannot be checked offline")
                out[k] = walk(v, k)
            return out
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str) and node.lower().startswith(("http://", "https://")):
            if key not in _LINK_KEYS:  # a file: it would be downloaded
                raise ValueError(f"the package references a remote file ({key}: {node}); vemkit validates "
                                 "offline, so only self-contained packages")
            urls.add(node)
        return node

    return walk(dict(content)), urls, users


def validate_bioimageio(path, *, run_test: bool = True) -> dict:
    """Validate a bioimage.io package (zip, folder or ``rdf.yaml``) with ``bioimageio.spec``, offline.

    Runs the format validation and the file checks that need no network: every referenced file is
    present, its SHA-256 matches, the test tensors load and fit the tensor descriptions (shapes,
    parameterised sizes, halo, data type), the documentation and cover exist. ``bioimageio.spec``
    alone reports at best ``"valid-format"``; its ``"passed"`` needs bioimageio.core's inference test
    (``bioimageio test PACKAGE``). With ``run_test``, the TorchScript weights are run here on the test
    input with the described preprocessing and compared with the test output (the tolerances of the
    description), for the processing steps vemkit exports.

    Parameters
    ----------
    path : str or Path
    run_test : bool
        Also run the TorchScript weights on the test input (``summary["test"]``).

    Returns
    -------
    dict
        ``status`` (bioimageio.spec's: "passed", "valid-format" or "failed"), ``name``,
        ``format_version``, ``type``, ``errors`` and ``warnings`` (lists of "location: message"),
        ``source`` and, with ``run_test`` on a valid model, ``test`` (``status`` "passed", "failed" or
        "skipped", ``max_abs_diff``, ...).

    Raises
    ------
    ImportError
        If ``bioimageio.spec`` is missing.
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the description references remote files (or another model's outputs): those cannot be
        checked without the network, which vemkit never uses.
    """
    _require_spec()
    from bioimageio.spec import InvalidDescr, ValidationContext, build_description
    from bioimageio.spec.utils import open_bioimageio_yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no bioimage.io package at {str(path)!r}")
    if path.is_dir():
        found = [path / n for n in ("rdf.yaml", "bioimageio.yaml") if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"folder {str(path)!r} holds no rdf.yaml / bioimageio.yaml")
        path = found[0]

    def loc(entry):
        return ".".join(str(p) for p in entry.loc) or "(root)"

    with _quiet_spec():
        opened = open_bioimageio_yaml(path)
        content, urls, github_users = _offline_content(opened.content)
        context = ValidationContext(root=opened.original_root, file_name=opened.original_file_name,
                                    perform_io_checks=True, known_files={u: None for u in urls},
                                    log_warnings=False)
        descr = build_description(content, context=context)
        summary = descr.validation_summary
        warnings_ = [f"{loc(w)}: {w.msg}" for w in summary.warnings]
        if github_users:  # set aside above, so the "no github_user" alert does not apply
            warnings_ = [w for w in warnings_ if "github_user" not in w]
        result = {
            "status": summary.status,
            "name": getattr(descr, "name", None),
            "type": summary.type,
            "format_version": summary.format_version,
            "errors": [f"{loc(e)}: {e.msg}" for e in summary.errors],
            "warnings": warnings_,
            "source": str(path),
            "not_checked_offline": [*sorted(urls), *(f"github_user {u}" for u in sorted(github_users))],
        }
        if run_test and not isinstance(descr, InvalidDescr) and summary.type == "model":
            result["test"] = _run_test(descr)
        del descr, opened, context
    return result
