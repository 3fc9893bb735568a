"""Scores that compare a segmentation with ground truth: semantic (IoU, Dice) and instance scores.

Every score is built on one blockwise pass that counts, for each pair ``(truth label, predicted
label)``, how many voxels carry it (a sparse contingency table). numpy arrays are counted at once;
dask arrays and :class:`vemkit.Volume` objects are counted block by block, so a volume larger than
memory is never loaded whole. Semantic scores (:func:`confusion_matrix`, :func:`iou`, :func:`dice`)
and instance scores (:func:`match_instances`, :func:`average_precision`,
:func:`variation_of_information`, :func:`adapted_rand_error`) are all read off that table;
:func:`evaluate` gathers them into one JSON-ready dict (``metrics.json``, ``vemkit evaluate``).

Conventions
-----------
- Semantic masks: 0 = background, 1.. = class. A boolean mask is class 1 on background 0.
- Instance labels: 0 = background, unique positive ids. Label 0 is never an object.
- ``ignore`` removes voxels from every count: a boolean mask (True = ignored) or one label value of
  ``truth`` (e.g. 255, or 0 for sparse annotations where 0 = unlabelled).
- A class absent from both ``pred`` and ``truth`` (after ignoring) has no defined IoU or Dice: it is
  reported as ``nan`` and left out of :func:`mean_iou` and :func:`mean_dice`. Likewise every ratio
  whose denominator is zero is ``nan``.

Not for: loss functions for training, or checks without ground truth (see :mod:`vemkit.quality`).

Layout: ``_semantic`` (contingency table, confusion matrix, IoU, Dice), ``_instances`` (matching,
AP, VOI, adapted Rand error), ``_evaluate`` (:func:`evaluate`); the counting itself lives in the
private base module ``vemkit._contingency``, which :mod:`vemkit.quality` shares.
"""

from __future__ import annotations

from .._contingency import ContingencyTable
from ._evaluate import evaluate
from ._instances import (
    DEFAULT_IOU_THRESHOLDS,
    adapted_rand_error,
    average_precision,
    match_instances,
    variation_of_information,
)
from ._semantic import (
    class_scores,
    confusion_matrix,
    contingency_table,
    dice,
    iou,
    mean_dice,
    mean_iou,
)


__all__ = [
    "ContingencyTable",
    "contingency_table",
    "confusion_matrix",
    "class_scores",
    "iou",
    "dice",
    "mean_iou",
    "mean_dice",
    "match_instances",
    "average_precision",
    "variation_of_information",
    "adapted_rand_error",
    "evaluate",
    "DEFAULT_IOU_THRESHOLDS",
]
