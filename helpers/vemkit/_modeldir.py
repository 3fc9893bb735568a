"""Reading a vemkit model directory's ``config.json``: the one place that knows its kinds.

Every loader (U-Nets in :mod:`vemkit.models`, forests in :mod:`vemkit.pixel_classifier`, the
command line and :func:`vemkit.predict.predict_volume`) asks :func:`read_config` which kind of
model a folder holds. Not for: loading weights (each model family does that itself).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["MODEL_KINDS", "UNET_KIND", "FOREST_KIND", "NotAModelDirectory", "read_config", "model_kind"]

#: ``config.json`` ``kind`` of a U-Net model directory (:class:`vemkit.models.SegmentationModel`).
UNET_KIND = "vemkit.unet"
#: ``config.json`` ``kind`` of a random-forest model directory (:class:`vemkit.pixel_classifier.PixelClassifier`).
FOREST_KIND = "vemkit.pixel_classifier"
#: Every kind of model directory vemkit writes, with what runs it.
MODEL_KINDS = {
    UNET_KIND: "a U-Net (vemkit.models.load_model, vemkit.predict.predict_volume)",
    FOREST_KIND: "a random forest (vemkit.pixel_classifier.load_pixel_classifier)",
}


class NotAModelDirectory(FileNotFoundError, ValueError):
    """The folder is missing or has no ``config.json`` (both a ``FileNotFoundError`` and a ``ValueError``)."""


def read_config(path, kind: str | None = None) -> dict:
    """The ``config.json`` of the model directory ``path``, checked to be of ``kind``.

    Parameters
    ----------
    path : str or Path
        A model directory.
    kind : str, optional
        The kind the caller can run (:data:`UNET_KIND`, :data:`FOREST_KIND`); ``None`` accepts every
        kind in :data:`MODEL_KINDS`.

    Returns
    -------
    dict
        The parsed configuration (always has ``"kind"``).

    Raises
    ------
    NotAModelDirectory
        When ``path`` has no ``config.json``.
    ValueError
        When the file is not valid JSON, or holds another kind than ``kind``.

    Examples
    --------
    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text(json.dumps({"kind": "vemkit.unet"}))
    >>> read_config(d, kind=UNET_KIND)["kind"]
    'vemkit.unet'
    """
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise NotAModelDirectory(f"{str(path)!r} is not a vemkit model directory: it has no config.json")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(cfg_path)!r} is not valid JSON ({err}); is this a vemkit model directory?") from None
    found = config.get("kind") if isinstance(config, dict) else None
    if found not in MODEL_KINDS:
        raise ValueError(
            f"{str(path)!r} holds a model of kind {found!r}, which this version of vemkit cannot run; "
            f"known kinds: {', '.join(MODEL_KINDS)}"
        )
    if kind is not None and found != kind:
        raise ValueError(
            f"{str(path)!r} holds a model of kind {found!r} ({MODEL_KINDS[found]}), not {kind!r} "
            f"({MODEL_KINDS.get(kind, 'unknown kind')})"
        )
    return config


def model_kind(path) -> str:
    """The kind of model the directory ``path`` holds (see :func:`read_config`)."""
    return read_config(path)["kind"]
