"""The parts of a bioimage.io model package: texts, tags, test tensors, cover, files and the description.

:func:`vemkit.export.export_bioimageio` builds a package from these; they take a loaded vemkit
U-Net model (:class:`vemkit.models.SegmentationModel`) and its probability network. Not for:
loading models or validating packages (:mod:`vemkit.export`).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from ._provenance import sha256_file

#: Tags every exported package carries (the classes and a few bioimage.io category tags are added).
BASE_TAGS = ["electron-microscopy", "segmentation", "unet", "vemkit"]

INPUT_ID = "raw"
OUTPUT_ID = "probabilities"

NAME_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]")
JIT_DEPRECATION = r".*torch\.jit\.\w+.* is deprecated"
CITATIONS = [
    {"text": "Ronneberger O, Fischer P, Brox T (2015). U-Net: Convolutional Networks for Biomedical Image "
             "Segmentation. MICCAI 2015.", "doi": "10.1007/978-3-319-24574-4_28"},
    {"text": "Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH (2021). nnU-Net: a self-configuring "
             "method for deep learning-based biomedical image segmentation. Nature Methods 18, 203-211 "
             "(the network plan vemkit follows).", "doi": "10.1038/s41592-020-01008-z"},
]


def vemkit_citation() -> str:
    return (f"vemkit developers. vemkit {__version__}: from a raw volume-electron-microscopy stack to measured "
            "organelles (software).")


def default_name(model) -> str:
    fg = " ".join(c for c in model.classes[1:])
    name = NAME_CHARS.sub("-", f"vemkit {model.ndim}D U-Net {fg}").strip()
    return name[:64].rstrip()


def join_words(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def tags(model) -> list:
    tags = list(BASE_TAGS) + [f"{model.ndim}d", "pytorch", "semantic-segmentation", "ilastik", "deepimagej"]
    for c in [*model.classes[1:], *model.extra_targets]:
        t = tag(c)
        if t.startswith("mitochondri"):
            tags.append("mitochondria")
        if "membrane" in t:
            tags.append("cell-membrane")
        if t:
            tags.append(t)
    return list(dict.fromkeys(tags))


def spatial_layout(model):
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


def valid_size(target: int, min_size: int, step: int) -> int:
    """The smallest valid size (min + n * step) >= target."""
    return min_size + step * max(0, -(-(int(target) - min_size) // step))


def largest_valid(limit: int, min_size: int, step: int) -> int:
    return min_size + step * ((int(limit) - min_size) // step)


def preprocess(raw: np.ndarray, model):
    """What the package's preprocessing does to the test input (bioimage.io formulas, float32 result)."""
    norm = model.normalization
    x = raw.astype(np.float64)
    if norm["mode"] == "fixed":
        low, high = float(norm["low"]), float(norm["high"])
        return ((x - low) / (high - low)).astype(np.float32)
    lo, hi = np.percentile(x, [float(norm.get("lower", 1.0)), float(norm.get("upper", 99.0))])
    return ((x - lo) / (hi - lo + 1e-6)).astype(np.float32)


def preprocessing_descr(v5, model, axis_ids):
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


def normalisation_text(model) -> str:
    norm = model.normalization
    if norm["mode"] == "fixed":
        return (f"grey value {norm['low']:g} -> 0 and {norm['high']:g} -> 1 (`scale_linear`), the fixed range the "
                "model was trained with")
    return (f"the {norm.get('lower', 1.0):g} and {norm.get('upper', 99.0):g} percentiles of the input -> 0 and 1 "
            "(`scale_range`, no clipping). vemkit estimates these percentiles once per volume from a sample; a "
            "bioimage.io consumer computes them on the image it is given, so give it whole images or sections "
            "rather than small crops")


def trace(net, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(net, example, check_trace=False)
    return traced


def run(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def cover(path: Path, raw: np.ndarray, probs: np.ndarray, model):
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


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, default=str)[:300] + "`"
    return str(value)


def readme(model, name: str, description: str, layout, preprocessing_text: str) -> str:
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
        lines += ["| | |", "|---|---|"] + [f"| {k} | {fmt(v).replace('|', '/')} |" for k, v in rows]
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
              f"- {vemkit_citation()}"] + [f"- {c['text']} doi:{c['doi']}" for c in CITATIONS] + [""]
    return "\n".join(lines)


def training_details(t: dict) -> dict:
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


def package_texts(model, layout, name, description, authors):
    """The package's name, description and author list, checked (defaults from the model)."""
    name = default_name(model) if name is None else str(name)
    if NAME_CHARS.search(name) or not 5 <= len(name) <= 128:
        raise ValueError(f"name must be 5-128 characters of letters, digits, spaces and _+-(), got {name!r}")
    if description is None:
        vs_text = (" x ".join(f"{v:g}" for v in model.voxel_size) + " nm (z, y, x)" if model.voxel_size
                   else "unrecorded")
        description = (f"{model.ndim}D U-Net trained with vemkit to segment {join_words(model.classes[1:])} in volume "
                       f"electron microscopy (voxel size {vs_text}). Output: softmax probabilities per class "
                       f"({', '.join(model.classes)})"
                       + (f" then sigmoid outputs for {', '.join(model.extra_targets)}" if model.extra_targets else "")
                       + "; the label is the argmax of the class channels.")
    author_list = []
    for a in authors or []:
        a = {"name": a} if isinstance(a, str) else dict(a)
        if not str(a.get("name") or "").strip():
            raise ValueError(f"every author needs a name, got {a!r}")
        author_list.append(a)
    return name, description, author_list


def traced_network(net, model, raw: np.ndarray, layout):
    """The TorchScript trace of ``net`` and its output on the test crop ``raw``, checked against ``net``.

    Raises RuntimeError when the trace does not reproduce the eager network, on the test input or on
    another input size.
    """
    x = preprocess(raw[None, None], model)
    reference = run(net, x)
    traced = trace(net, torch.from_numpy(x))
    test_out = run(traced, x)
    if not np.allclose(test_out, reference, rtol=0, atol=1e-5):
        raise RuntimeError("the traced TorchScript network does not reproduce the eager network on the test input")
    # a second shape: the trace must not have frozen the input size
    other = tuple(m + d for _a, d, _h, _v, m in layout)
    probe = np.random.default_rng(0).random((2, 1, *other), dtype=np.float32)
    if not np.allclose(run(traced, probe), run(net, probe), rtol=0, atol=1e-5):
        raise RuntimeError("the traced TorchScript network does not generalise to other input sizes")
    return traced, test_out


#: The files of a package, as :func:`write_files` names them.
FILES = ("weights_torchscript.pt", "weights_state_dict.pt", "test_input.npy", "test_output.npy",
         "sample_input.tif", "sample_output.tif", "cover.png", "README.md", "vemkit_config.json", "training.json")


def write_files(stage: Path, model, net, traced, raw, test_out, *, name: str, description: str, layout):
    """Write every file of the package (:data:`FILES`) into the folder ``stage``."""
    import tifffile

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=DeprecationWarning)
        traced.save(str(stage / "weights_torchscript.pt"))
    torch.save({k: v.contiguous() for k, v in net.state_dict().items()}, stage / "weights_state_dict.pt")
    np.save(stage / "test_input.npy", raw[None, None])
    np.save(stage / "test_output.npy", test_out.astype(np.float32))
    tifffile.imwrite(stage / "sample_input.tif", raw, photometric="minisblack")
    tifffile.imwrite(stage / "sample_output.tif", test_out[0], photometric="minisblack")
    cover(stage / "cover.png", raw, test_out[0], model)
    (stage / "README.md").write_text(readme(model, name, description, layout, normalisation_text(model)))
    (stage / "vemkit_config.json").write_text(json.dumps(model.config(), indent=1))
    (stage / "training.json").write_text(json.dumps(model.training or {}, indent=1, default=str))


def offline_context(stage: Path):
    """A bioimageio.spec validation context rooted at ``stage`` that does no file IO (and no network)."""
    from bioimageio.spec import ValidationContext

    return ValidationContext(root=stage, perform_io_checks=False, raise_errors=True, log_warnings=False)


def _axes(v5, model, layout):
    """The input and output axes: batch, channel, then each spatial axis with its size rule and halo."""
    unit = "nanometer" if model.voxel_size else None
    in_axes = [v5.BatchAxis(), v5.ChannelAxis(channel_names=["em"])]
    out_axes = [v5.BatchAxis(), v5.ChannelAxis(channel_names=[*model.classes, *model.extra_targets])]
    for a, d, h, v, m in layout:
        scale = float(v) if v else 1.0
        in_axes.append(v5.SpaceInputAxis(id=v5.AxisId(a), size=v5.ParameterizedSize(min=m, step=d),
                                         unit=unit, scale=scale))
        ref = v5.SizeReference(tensor_id=v5.TensorId(INPUT_ID), axis_id=v5.AxisId(a))
        if h > 0:
            out_axes.append(v5.SpaceOutputAxisWithHalo(id=v5.AxisId(a), size=ref, halo=h, unit=unit, scale=scale))
        else:
            out_axes.append(v5.SpaceOutputAxis(id=v5.AxisId(a), size=ref, unit=unit, scale=scale))
    return in_axes, out_axes


def _config(model, net) -> dict:
    """The description's ``config``: bioimage.io's model facts and vemkit's own record."""
    t = model.training or {}
    bioimageio_config = {
        "architecture_type": f"{model.ndim}D U-Net",
        "architecture_description": (f"vemkit U-Net: {len(model.network.pools)} poolings {model.network.pools}, "
                                     f"kernels {model.network.kernels}, channels {model.network.channels}, "
                                     "BatchNorm + LeakyReLU, softmax output"),
        "modality": "electron microscopy",
        "target_structure": list(model.classes[1:]),
        "task": "semantic segmentation",
        "model_parameter_count": int(sum(p.numel() for p in net.parameters())),
        "training": training_details(t),
    }
    if t.get("device"):
        bioimageio_config["environmental_impact"] = {"hardware_type": str(t["device"])}
    vemkit_config = {"model": model.config(), "fingerprint": model.fingerprint(), "citation": vemkit_citation(),
                     "output": "probabilities: softmax over the classes, sigmoid on extra targets"}
    return {"bioimageio": bioimageio_config, "vemkit": vemkit_config}


def _weights(v5, model, files: dict):
    """Both weight formats: the state dict of ``vemkit.export.ProbabilityUNet`` and its TorchScript trace."""
    torch_version = v5.Version(torch.__version__.split("+")[0])
    arch_kwargs = {k: v for k, v in model.network.config().items() if k != "name"}
    arch_kwargs["n_classes"] = model.n_classes
    return v5.WeightsDescr(
        pytorch_state_dict=v5.PytorchStateDictWeightsDescr(
            source=files["weights_state_dict.pt"].source,
            sha256=files["weights_state_dict.pt"].sha256,
            architecture=v5.ArchitectureFromLibraryDescr(
                callable=v5.Identifier("ProbabilityUNet"), import_from="vemkit.export", kwargs=arch_kwargs),
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
    )


def describe(stage: Path, model, net, *, name: str, description: str, authors: list, license: str, layout):
    """The bioimage.io model description (format 0.5) of the files in ``stage``.

    Built without file IO (the hashes are given): with IO on, bioimageio.spec would look authors'
    github_user up online. The written package gets the full offline IO validation afterwards.
    Raises ValueError when bioimageio.spec rejects the description.
    """
    from bioimageio.spec.model import v0_5 as v5
    from pydantic import ValidationError

    in_axes, out_axes = _axes(v5, model, layout)
    try:
        with offline_context(stage):
            files = {n: v5.FileDescr(source=stage / n, sha256=v5.Sha256(sha256_file(stage / n))) for n in FILES}
            return v5.ModelDescr(
                name=name, description=description, authors=authors,
                cite=[v5.CiteEntry(text=c["text"], doi=v5.Doi(c["doi"])) for c in CITATIONS],
                license=v5.LicenseId(license), tags=tags(model), covers=[files["cover.png"]],
                documentation=files["README.md"], attachments=[files["vemkit_config.json"], files["training.json"]],
                inputs=[v5.InputTensorDescr(
                    id=v5.TensorId(INPUT_ID),
                    description="EM grey values, one channel (any integer or float type; cast to float32)",
                    axes=in_axes, test_tensor=files["test_input.npy"], sample_tensor=files["sample_input.tif"],
                    data=v5.IntervalOrRatioDataDescr(type="float32"),
                    preprocessing=preprocessing_descr(v5, model, [a for a, *_ in layout]),
                )],
                outputs=[v5.OutputTensorDescr(
                    id=v5.TensorId(OUTPUT_ID),
                    description=("softmax probability per class (sum 1, label = argmax)"
                                 + ("; sigmoid per extra target" if model.extra_targets else "")),
                    axes=out_axes, test_tensor=files["test_output.npy"], sample_tensor=files["sample_output.tif"],
                    data=v5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                )],
                weights=_weights(v5, model, files),
                config=_config(model, net),
            )
    except ValidationError as e:
        raise ValueError(f"the bioimage.io description of this model is invalid:\n{e}") from e


def save(descr, written: Path, stage: Path):
    """Write the package of ``descr``: a zip file when ``written`` ends in ``.zip``, else a folder."""
    from bioimageio.spec import save_bioimageio_package_as_folder, save_bioimageio_package_to_stream

    with offline_context(stage):
        if written.suffix == ".zip":
            with open(written, "wb") as f:
                save_bioimageio_package_to_stream(descr, output_stream=f)
        else:
            save_bioimageio_package_as_folder(descr, output_path=written)
