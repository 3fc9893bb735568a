"""Cellpose-SAM, an optional extra: the ``cellpose`` package run on vemkit's verified weights.

Cellpose-SAM (``cpsam``) predicts Cellpose's flows with a SAM ViT-L encoder and follows them to
instances, one section at a time. Its network and flow dynamics are the ``cellpose`` package's (>= 4),
which vemkit does not depend on: :func:`load_cellpose` imports it only when asked (a clear error
says how to install it), hands it the weights vemkit fetched and verified through the manifest
(``cellpose_sam``; pinned SHA-256, so the package never downloads anything itself), and wraps the
model as a section segmenter. :func:`vemkit.predict.predict_volume` with ``model="cellpose"`` (or
``"cellpose:<manifest name or weights file>"``) runs it section by section and links the instances
across sections, as for ``sam-auto`` (:mod:`vemkit.predict._samauto`).

Not for: training Cellpose; vemkit's own SAM code (:mod:`._sam`).
"""

from __future__ import annotations

import os

import numpy as np

from .._device import resolve_device
from ._registry import manifest_weights

__all__ = ["CellposeSegmenter", "load_cellpose", "CELLPOSE_INSTALL", "OptionalDependencyError"]

CELLPOSE_INSTALL = "pip install 'cellpose>=4'"


class OptionalDependencyError(ImportError):
    """An optional package a feature needs is not installed (the message says how to install it)."""


class CellposeSegmenter:
    """A Cellpose model as a section segmenter: ``segment(section) -> uint32 labels``.

    Parameters
    ----------
    model : cellpose.models.CellposeModel
    name : str
    diameter : float, optional
        Typical object diameter in pixels (default: the model's own; Cellpose-SAM was trained on
        7.5-120 pixels).
    """

    def __init__(self, model, name: str = "cellpose", diameter: float | None = None):
        self.model, self.name, self.diameter = model, name, diameter

    def segment(self, section) -> np.ndarray:
        section = np.asarray(section)
        if section.ndim != 2:
            raise ValueError(f"a section must be 2D (y, x), got shape {section.shape}")
        kw = {} if self.diameter is None else {"diameter": float(self.diameter)}
        masks = self.model.eval(section, **kw)[0]
        return np.asarray(masks).astype(np.uint32)


def _cellpose_models():
    try:
        from cellpose import models
    except ImportError:
        raise OptionalDependencyError(f"Cellpose-SAM needs the optional package cellpose, which is not installed: {CELLPOSE_INSTALL} "
                          "(vemkit hands it the verified weights; it downloads nothing itself)") from None
    return models


def load_cellpose(model="cellpose_sam", *, device="auto", diameter=None, manifest_path=None, progress=True):
    """A :class:`CellposeSegmenter` for a Cellpose model of the manifest or a weights file.

    Parameters
    ----------
    model : str or path
        A manifest name (``cellpose_sam``: fetched and verified on first use; its SHA-256 must be
        published or pinned) or the path of a weights file the ``cellpose`` package loads.
    device : str
    diameter : float, optional
        See :class:`CellposeSegmenter`.

    Raises
    ------
    OptionalDependencyError
        The ``cellpose`` package is missing (an ImportError that says how to install it).
    UnpinnedCodeError
        The manifest model has no SHA-256 yet (says how to pin it).
    """
    models = _cellpose_models()
    if isinstance(model, (str, os.PathLike)) and os.path.isfile(model):
        path, name = str(model), os.path.basename(str(model))
    else:
        path, name, entry = manifest_weights(model, "cellpose", "Cellpose", progress=progress, manifest_path=manifest_path)
    dev = resolve_device(device)
    net = models.CellposeModel(gpu=dev.type == "cuda", pretrained_model=str(path), device=dev)
    return CellposeSegmenter(net, name=name, diameter=diameter)
