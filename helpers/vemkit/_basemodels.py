"""The pretrained base models shipped with vemkit (``vemkit/base_models/<name>/``): listing and paths.

Public through :func:`vemkit.train.list_base_models` and :func:`vemkit.train.base_model_path`; the
planner and :func:`vemkit.train.finetune` start from them. Not for: loading a model
(:func:`vemkit.models.load_model`) or writing one (:func:`vemkit.pretrain.pretrain`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ._modeldir import NotAModelDirectory, read_config
from ._outputs import check_model_directory

__all__ = ["BASE_MODELS_DIR", "DEFAULT_BASE_MODELS", "base_model_path", "holds_model", "list_base_models", "output_directory",
           "resolve_model"]

BASE_MODELS_DIR = Path(__file__).parent / "base_models"

#: The base ``finetune(base="auto")`` starts from, per network dimensionality: the general one (the
#: others are variants kept for benchmarks, such as ``em2d-small-vnc``, which saw the VNC stack).
DEFAULT_BASE_MODELS = {2: "em2d-small"}


def holds_model(path) -> bool:
    """Whether the folder ``path`` is a vemkit model directory (has a ``config.json``).

    Examples
    --------
    >>> holds_model(BASE_MODELS_DIR / "em2d-small"), holds_model(BASE_MODELS_DIR)
    (True, False)
    """
    try:
        read_config(path)
    except NotAModelDirectory:
        return False
    return True


def output_directory(out, overwrite: bool, inputs=()):
    """``out`` as a Path (or None), checked before any work by :func:`vemkit._outputs.check_model_directory`:
    never one of ``inputs`` (or inside or around one), never a folder holding other files, and one that
    already holds a model only with ``overwrite``."""
    if out is None:
        return None
    return check_model_directory(out, inputs, overwrite=overwrite)


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
            if holds_model(d):
                rec = d / "training.json"
                desc = json.loads(rec.read_text()).get("description", "") if rec.is_file() else ""
                out[d.name] = desc
    return out


def base_model_path(name: str) -> Path:
    """Directory of a shipped base model (see :func:`list_base_models`)."""
    path = BASE_MODELS_DIR / name
    if not holds_model(path):
        known = ", ".join(list_base_models()) or "none shipped"
        raise ValueError(f"unknown base model {name!r}; shipped base models: {known}")
    return path


def resolve_model(model):
    """A model argument as given on the command line: an existing folder as it is, else the name of a
    shipped base model (its folder), else unchanged (the loader then reports what is wrong).

    Examples
    --------
    >>> resolve_model("em2d-small") == BASE_MODELS_DIR / "em2d-small"
    True
    >>> resolve_model("no/such/dir")
    'no/such/dir'
    """
    if isinstance(model, (str, Path)) and not Path(model).exists() and holds_model(BASE_MODELS_DIR / str(model)):
        return BASE_MODELS_DIR / str(model)
    return model
