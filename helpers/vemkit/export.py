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
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from . import _bioimageio_package as _pkg
from ._outputs import check_output
from ._bioimageio_package import BASE_TAGS, INPUT_ID, OUTPUT_ID  # noqa: F401 - this module's constants
from .models import SegmentationModel, UNet, load_model
from .synthetic import make_phantom

__all__ = ["ProbabilityUNet", "export_bioimageio", "validate_bioimageio"]

_INSTALL_HINT = "pip install 'vemkit[export]'"
#: Description keys whose URLs are links, not files (validation would only ping them).
_LINK_KEYS = {"url", "git_repo"}

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


def _test_image(model: SegmentationModel, layout, test_image):
    """The raw test crop, shaped like the network's spatial input."""
    if test_image is None:
        targets = {"z": 8, "y": 96, "x": 96}
        shape = [_pkg.valid_size(targets[a], m, d) for a, d, _h, _v, m in layout]
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
        size = _pkg.largest_valid(min(n, max(caps[a], m)), m, d)
        start = (n - size) // 2
        crop.append(slice(start, start + size))
    return np.ascontiguousarray(img[tuple(crop)], dtype=np.float32)


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
    seg = _resolve_model(model)
    if seg.normalization.get("mode") == "histogram":
        raise ValueError("this model maps grey values by histogram matching (vemkit adapt --method histogram), "
                         "which the bioimage.io format cannot describe; export the model it was adapted from, "
                         "and histogram-match the images with vemkit.domain.match_histogram instead")
    out = check_output(out, [model] if isinstance(model, (str, os.PathLike)) else [], overwrite=overwrite,
                       exists_ok=True)  # never into the model directory it exports (nor around it)
    is_zip = _check_out(out, overwrite)
    layout = _pkg.spatial_layout(seg)
    name, description, author_list = _pkg.package_texts(seg, layout, name, description, authors)
    net = ProbabilityUNet.from_unet(seg.network, seg.n_classes)
    raw = _test_image(seg, layout, test_image)
    traced, test_out = _pkg.traced_network(net, seg, raw, layout)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vemkit-bioimageio-", dir=out.parent) as tmp, _quiet_spec():
        tmp = Path(tmp).resolve()
        stage = tmp / "files"
        stage.mkdir()
        _pkg.write_files(stage, seg, net, traced, raw, test_out, name=name, description=description, layout=layout)
        descr = _pkg.describe(stage, seg, net, name=name, description=description, authors=author_list,
                              license=license, layout=layout)
        written = tmp / ("package.zip" if is_zip else "package")
        _pkg.save(descr, written, stage)
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
            warnings.filterwarnings("ignore", message=_pkg.JIT_DEPRECATION, category=DeprecationWarning)
            net = torch.jit.load(io.BytesIO(weights.get_reader().read()), map_location="cpu")
        got = _pkg.run(net.eval(), np.asarray(x, dtype=np.float32)).astype(expected.dtype)
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
