"""Semantic scores: the contingency table, the confusion matrix, IoU and Dice per class.

Everything is read off one count of ``(truth, pred)`` voxel pairs (:func:`vemkit._contingency.count_pairs`).
Not for: instance scores (:mod:`vemkit.metrics._instances`).
"""

from __future__ import annotations

import numpy as np

from .._contingency import (
    ContingencyTable,
    confusion,
    count_pairs,
    default_labels,
    nanmean,
    scores_from_confusion,
)

def contingency_table(pred, truth, *, ignore=None) -> ContingencyTable:
    """Count the voxels of every ``(truth label, predicted label)`` pair.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer or bool
        Predicted and true labels (semantic classes or instance ids, all >= 0). dask arrays and
        Volumes are counted block by block (``pred`` is rechunked to ``truth``'s chunks).
    ignore : bool array of the same shape, or int, optional
        Voxels left out of every count: True in a mask, or where ``truth`` equals the given value.

    Returns
    -------
    ContingencyTable
        Sparse counts, sorted by truth label then predicted label.

    Raises
    ------
    ValueError
        On a shape mismatch, non-integer labels or negative labels.

    Examples
    --------
    >>> import numpy as np
    >>> t = contingency_table(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    >>> t.truth.tolist(), t.pred.tolist(), t.counts.tolist()
    ([0, 1, 2, 2], [0, 1, 1, 2], [1, 1, 1, 1])
    """
    return count_pairs(pred, truth, ignore)[0]


def confusion_matrix(pred, truth, n_classes=None, ignore=None) -> np.ndarray:
    """Confusion matrix of semantic labels: ``C[i, j]`` voxels of true class ``i`` predicted as ``j``.

    Rows are truth and columns prediction, as in scikit-learn. Boolean masks are classes 0 and 1.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer or bool
        Predicted and true semantic labels (0 = background, 1.. = classes). dask arrays and Volumes
        are counted block by block without loading them whole.
    n_classes : int, optional
        Size of the matrix; default: the largest label in either input plus one. A label
        ``>= n_classes`` is an error.
    ignore : bool array of the same shape, or int, optional
        Voxels left out of the counts: True in a mask, or where ``truth`` equals the given value.

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)

    Raises
    ------
    ValueError
        On a shape mismatch, non-integer or negative labels, or a label ``>= n_classes``.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 0, 1, 1]])
    >>> pred = np.array([[0, 1, 1, 1]])
    >>> confusion_matrix(pred, truth)
    array([[1, 1],
           [0, 2]])
    >>> confusion_matrix(pred, truth, n_classes=3, ignore=np.array([[False, True, False, False]]))
    array([[1, 0, 0],
           [0, 2, 0],
           [0, 0, 0]])
    """
    return confusion(pred, truth, n_classes, ignore)[0]


def _check_labels(labels) -> list[int]:
    if isinstance(labels, (int, np.integer)):
        labels = [labels]
    out = []
    for k in labels:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"labels must be non-negative integers, got {labels!r}")
        out.append(int(k))
    return out


def class_scores(pred, truth, *, labels=None, ignore=None) -> dict[int, dict[str, float]]:
    """IoU, Dice, precision, recall and voxel counts per class, in one pass over the data.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer or bool
        Predicted and true semantic labels (0 = background, 1.. = classes; a bool mask is class 1).
    labels : int or sequence of int, optional
        Classes to score. Default: every class from 1 to the largest label present in either input
        (class 1 for boolean masks), without the ``ignore`` value. Pass ``0`` to score background.
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.

    Returns
    -------
    dict
        ``{class: {"iou", "dice", "precision", "recall", "n_truth", "n_pred"}}``. A score whose
        denominator is zero is ``nan`` (e.g. IoU of a class absent from both inputs, precision of a
        class never predicted).

    Examples
    --------
    >>> import numpy as np
    >>> s = class_scores(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    >>> s[1]["iou"], s[1]["precision"], s[1]["recall"]
    (0.6666666666666666, 0.6666666666666666, 1.0)
    """
    cm, both_bool = confusion(pred, truth, None, ignore)
    labels = default_labels(cm, both_bool, ignore) if labels is None else _check_labels(labels)
    return scores_from_confusion(cm, labels)


def iou(pred, truth, *, labels=None, ignore=None) -> dict[int, float]:
    """Intersection over union (Jaccard index) per class: ``TP / (TP + FP + FN)``.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer or bool
        Predicted and true semantic labels (0 = background, 1.. = classes; a bool mask is class 1).
        dask arrays and Volumes are counted block by block without loading them whole.
    labels : int or sequence of int, optional
        Classes to score. Default: every class from 1 to the largest label present in either input
        (class 1 for boolean masks), without the ``ignore`` value. Pass ``labels=[0, 1]`` to score
        background too.
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.

    Returns
    -------
    dict of int to float
        ``{class: IoU}``. A class absent from both inputs (after ignoring) has IoU ``nan``.

    Raises
    ------
    ValueError
        On a shape mismatch (the message names ``pred`` and ``truth`` with their shapes),
        non-integer labels or negative labels.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 1, 0]], dtype=bool)
    >>> pred = np.array([[0, 1, 1, 1]], dtype=bool)
    >>> iou(pred, truth)
    {1: 0.6666666666666666}
    >>> iou(pred, truth, ignore=np.array([[0, 0, 0, 1]], dtype=bool))
    {1: 1.0}
    >>> iou(np.array([0, 2]), np.array([0, 2]))  # class 1 is in neither input
    {1: nan, 2: 1.0}
    """
    return {k: v["iou"] for k, v in class_scores(pred, truth, labels=labels, ignore=ignore).items()}


def dice(pred, truth, *, labels=None, ignore=None) -> dict[int, float]:
    """Dice coefficient (F1 score) per class: ``2 TP / (2 TP + FP + FN)``.

    Parameters and conventions are those of :func:`iou`; ``dice = 2 IoU / (1 + IoU)``.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer or bool
        Predicted and true semantic labels (0 = background, 1.. = classes; a bool mask is class 1).
    labels : int or sequence of int, optional
        Classes to score (default as in :func:`iou`).
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.

    Returns
    -------
    dict of int to float
        ``{class: Dice}``; ``nan`` for a class absent from both inputs.

    Examples
    --------
    >>> import numpy as np
    >>> dice(np.array([0, 1, 1, 1]), np.array([0, 1, 1, 0]))
    {1: 0.8}
    """
    return {k: v["dice"] for k, v in class_scores(pred, truth, labels=labels, ignore=ignore).items()}


def mean_iou(pred, truth, *, labels=None, ignore=None) -> float:
    """Mean of :func:`iou` over classes, leaving out classes absent from both inputs (``nan``).

    Returns ``nan`` when no class is present at all. Parameters are those of :func:`iou`.

    Examples
    --------
    >>> import numpy as np
    >>> mean_iou(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), labels=[1, 2, 3])
    0.5
    """
    return nanmean(iou(pred, truth, labels=labels, ignore=ignore).values())


def mean_dice(pred, truth, *, labels=None, ignore=None) -> float:
    """Mean of :func:`dice` over classes, leaving out classes absent from both inputs (``nan``).

    Returns ``nan`` when no class is present at all. Parameters are those of :func:`iou`.

    Examples
    --------
    >>> import numpy as np
    >>> round(mean_dice(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])), 4)
    0.6667
    """
    return nanmean(dice(pred, truth, labels=labels, ignore=ignore).values())
