"""bioimage.io models (by id, DOI, URL, zip or local folder) as networks vemkit can run.

:func:`load_bioimageio` reads the description with ``bioimageio.spec`` (already vemkit's export
dependency; it resolves ids, DOIs and URLs and caches what it downloads) and loads the TorchScript
weights, whose SHA-256 the description must give and the bytes must match: TorchScript runs code, so
an unpinned file is refused. ``pytorch_state_dict`` weights need the package's own architecture
source to be imported, which is running someone else's code too: refused with that reason.
The result, :class:`BioimageioNetwork`, knows the input axes (2D or 3D), the size rule
(minimum + n x step), the halo and the preprocessing (``scale_range`` becomes vemkit's per-volume
percentile normalisation; ``scale_linear``, ``zero_mean_unit_variance`` and ``clip`` run inside).

Why not ``bioimageio.core``: it adds xarray and more to every install, runs pytorch_state_dict
architectures' code, and tiles on its own; vemkit already tiles (blockwise, resumable) and needs
only the description and the weights. Not for: exporting (:mod:`vemkit.export`).
"""

from __future__ import annotations

import gc
import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import UnknownNameError
from ._registry import UnpinnedCodeError

__all__ = ["BioimageioNetwork", "load_bioimageio"]

_PREFIX = "bioimageio:"


@dataclass
class BioimageioNetwork:
    """A bioimage.io model's TorchScript network with what running it needs."""

    module: object = field(repr=False)
    name: str
    ndim: int
    in_channels: int
    out_channels: int
    divisor: tuple
    min_size: tuple
    halo: tuple
    normalization: dict
    inner: list = field(default_factory=list)  # preprocessing run inside: (op, kwargs)
    sha256: str = ""
    source: str = ""
    output_is_probability: bool = True


def _source_of(model) -> str:
    s = str(model)
    if s.startswith(_PREFIX):
        s = s[len(_PREFIX):]
    p = Path(s)
    if p.is_dir():
        found = [p / n for n in ("rdf.yaml", "bioimageio.yaml") if (p / n).is_file()]
        if not found:
            raise FileNotFoundError(f"folder {s!r} holds no rdf.yaml / bioimageio.yaml")
        return str(found[0])
    return s


def _describe(source: str):
    try:
        from bioimageio.spec import InvalidDescr, load_model_description
    except ImportError as err:
        raise ImportError("bioimage.io models need the bioimageio.spec package: pip install 'vemkit[generalist]'") from err
    local = Path(source).exists()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ResourceWarning)
        try:
            descr = load_model_description(source, perform_io_checks=False)
        except Exception as err:
            where = "" if local else " (an id, DOI or URL needs the network; without one, give the unpacked package's folder)"
            raise ValueError(f"cannot read a bioimage.io model from {source!r}{where}: {type(err).__name__}: {err}") from err
    if isinstance(descr, InvalidDescr):
        raise ValueError(f"{source!r} is not a valid bioimage.io model description")
    return descr


def _axes(tensor):
    """(batch?, channel count, spatial axis ids, min sizes, steps, halos)."""
    from bioimageio.spec.model.v0_5 import ParameterizedSize

    channels, spatial, mins, steps, halos = 1, [], [], [], []
    for a in tensor.axes:
        kind = getattr(a, "type", "")
        if kind == "channel":
            channels = len(a.channel_names)
        elif kind == "space":
            spatial.append(str(a.id))
            size = a.size
            if isinstance(size, ParameterizedSize):
                mins.append(int(size.min))
                steps.append(int(size.step))
            elif isinstance(size, int):
                mins.append(size)
                steps.append(0)
            else:
                mins.append(1)
                steps.append(1)
            halos.append(int(getattr(a, "halo", 0) or 0))
    return channels, spatial, mins, steps, halos


def _preprocessing(tensor) -> tuple[dict, list]:
    norm, inner = {"mode": "fixed", "low": 0.0, "high": 1.0}, []
    for p in tensor.preprocessing:
        kw = p.kwargs if hasattr(p, "kwargs") else None
        if p.id == "ensure_dtype":
            continue
        if p.id == "scale_range" and not inner:
            norm = {"mode": "percentile", "lower": float(kw.min_percentile), "upper": float(kw.max_percentile)}
        elif p.id == "scale_linear" and isinstance(getattr(kw, "gain", None), (int, float)):
            inner.append(("scale_linear", {"gain": float(kw.gain), "offset": float(kw.offset)}))
        elif p.id == "zero_mean_unit_variance":
            inner.append(("zero_mean_unit_variance", {"eps": float(getattr(kw, "eps", 1e-6))}))
        elif p.id == "clip":
            inner.append(("clip", {"min": float(kw.min), "max": float(kw.max)}))
        else:
            raise ValueError(f"preprocessing {p.id!r} of this bioimage.io model is not supported by vemkit's runner")
    return norm, inner


def _weights(descr, source: str):
    import torch

    w = descr.weights
    if w.torchscript is None:
        if getattr(w, "pytorch_state_dict", None) is not None:
            raise UnpinnedCodeError(
                f"{source!r} has pytorch_state_dict weights only: loading them means importing the package's own "
                "architecture code, which vemkit does not run. Ask for (or export) TorchScript weights.")
        raise ValueError(f"{source!r} has no TorchScript weights (formats: {[k for k, v in w if v is not None]})")
    ts = w.torchscript
    expected = getattr(ts, "sha256", None)
    if not expected:
        raise UnpinnedCodeError(f"{source!r}: its TorchScript weights carry no SHA-256; TorchScript runs code, so vemkit refuses them")
    with warnings.catch_warnings():  # bioimageio.spec leaves the file for the garbage collector: collect it here
        warnings.filterwarnings("ignore", category=ResourceWarning)
        data, problem = None, None
        try:
            data = ts.get_reader().read()  # bioimageio.spec checks the SHA-256 as it reads
        except ValueError as err:
            problem = str(err)  # raised below, once the reader (held by the traceback) is collected
        gc.collect()
    if problem is not None:
        raise ValueError(f"{source!r}: TorchScript weights {ts.source} do not match their SHA-256 ({problem})")
    found = hashlib.sha256(data).hexdigest()
    if found != str(expected):
        raise ValueError(f"{source!r}: TorchScript weights {ts.source} do not match their SHA-256 "
                         f"(expected {expected}, found {found})")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated", category=DeprecationWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    return module, found


def load_bioimageio(model) -> BioimageioNetwork:
    """Load a bioimage.io model for blockwise inference.

    Parameters
    ----------
    model : str or path
        ``bioimageio:<id>``, an id (``affable-shark``), a DOI, a URL of an ``rdf.yaml`` or package
        zip, or a local folder / ``rdf.yaml`` / zip.

    Raises
    ------
    ValueError
        Unreadable description, several inputs or outputs, preprocessing vemkit cannot run, weights
        that do not match their hash.
    UnpinnedCodeError
        Weights that would run code without a pinned hash (TorchScript without SHA-256, state dicts).
    """
    if not str(model).strip() or str(model) == _PREFIX:
        raise UnknownNameError("give a bioimage.io model: bioimageio:<id>, a DOI, a URL or a folder")
    source = _source_of(model)
    descr = _describe(source)
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ValueError(f"{source!r} has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; vemkit runs single-input, single-output models")
    cin, spatial, mins, steps, halos = _axes(descr.inputs[0])
    cout, out_spatial, _m, _s, out_halos = _axes(descr.outputs[0])
    if len(spatial) not in (2, 3) or spatial[-2:] != ["y", "x"]:
        raise ValueError(f"{source!r}: input axes {spatial} are not (z,) y, x")
    norm, inner = _preprocessing(descr.inputs[0])
    module, sha = _weights(descr, source)
    nd = len(spatial)
    halo = [max(a, b) for a, b in zip(halos, out_halos)] if len(out_halos) == nd else halos
    pad = (1,) * (3 - nd)
    steps = [s if s > 0 else m for s, m in zip(steps, mins)]
    return BioimageioNetwork(
        module=module, name=str(getattr(descr, "name", source)), ndim=nd, in_channels=cin, out_channels=cout,
        divisor=(*pad, *steps), min_size=(*pad, *mins), halo=(*(0,) * (3 - nd), *halo), normalization=norm,
        inner=inner, sha256=sha, source=source,
    )

