"""Scores that compare a segmentation with ground truth: confusion matrix, IoU and Dice per class.

Every score is built on one blockwise pass that counts, for each pair ``(truth label, predicted
label)``, how many voxels carry it (a sparse contingency table). numpy arrays are counted at once;
dask arrays and :class:`vemkit.Volume` objects are counted block by block, so a volume larger than
memory is never loaded whole. The same table is what instance scores (average precision, variation
of information, Rand index) need, so they can be added on top of :func:`contingency_table`.

Conventions
-----------
- Semantic masks: 0 = background, 1.. = class. A boolean mask is class 1 on background 0.
- ``ignore`` removes voxels from every count: a boolean mask (True = ignored) or one label value of
  ``truth`` (e.g. 255, or 0 for sparse annotations where 0 = unlabelled).
- A class absent from both ``pred`` and ``truth`` (after ignoring) has no defined IoU or Dice: it is
  reported as ``nan`` and left out of :func:`mean_iou` and :func:`mean_dice`.

Not for: loss functions for training, or instance matching (a later addition to this module).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ContingencyTable",
    "contingency_table",
    "confusion_matrix",
    "class_scores",
    "iou",
    "dice",
    "mean_iou",
    "mean_dice",
]

# How many blocks' counts are merged at once when a dask array is counted block by block.
_MERGE_FAN_IN = 16


@dataclass(frozen=True)
class ContingencyTable:
    """Sparse counts of voxels per ``(truth label, predicted label)`` pair.

    Attributes
    ----------
    truth : ndarray of int64, shape (K,)
        Truth label of each pair.
    pred : ndarray of int64, shape (K,)
        Predicted label of each pair.
    counts : ndarray of int64, shape (K,)
        Number of (non-ignored) voxels with that pair; pairs that never occur are absent.
        Pairs are sorted by ``truth`` then ``pred``.
    """

    truth: np.ndarray
    pred: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        """Number of voxels counted (ignored voxels excluded)."""
        return int(self.counts.sum())

    def to_dense(self, n_classes: int | None = None) -> np.ndarray:
        """The dense ``(n_classes, n_classes)`` matrix, rows = truth, columns = prediction."""
        top = int(max(self.truth.max(initial=-1), self.pred.max(initial=-1))) + 1
        n = top if n_classes is None else int(n_classes)
        if top > n:
            raise ValueError(f"labels go up to {top - 1} but n_classes={n}")
        dense = np.zeros((n, n), dtype=np.int64)
        dense[self.truth, self.pred] = self.counts
        return dense


# --------------------------------------------------------------------------------------------------
# input handling


def _is_lazy(array) -> bool:
    from ._volume import Volume

    if isinstance(array, Volume):
        return True
    da = _dask_array_module()
    return da is not None and isinstance(array, da.Array)


def _dask_array_module():
    import sys

    if "dask.array" not in sys.modules:  # nothing can be a dask array if dask.array was never imported
        return None
    import dask.array as da

    return da


def _check_label_dtype(array, name: str):
    dtype = np.dtype(array.dtype)
    if dtype != bool and not np.issubdtype(dtype, np.integer):
        raise ValueError(
            f"{name} must be an integer or boolean label array, got dtype {dtype}; "
            "threshold or argmax probabilities into labels first"
        )


def _prepare(pred, truth, ignore):
    """Validate the inputs; return (pred, truth, ignore_mask, ignore_value, lazy, both_bool)."""
    from ._volume import Volume

    if isinstance(pred, Volume) and isinstance(truth, Volume):
        if pred.voxel_size and truth.voxel_size and pred.voxel_size != truth.voxel_size:
            raise ValueError(
                f"pred and truth have different voxel sizes: pred {pred.voxel_size} nm, "
                f"truth {truth.voxel_size} nm; resample one onto the other's grid first"
            )
    ignore_value = None
    ignore_mask = None
    if ignore is not None:
        if isinstance(ignore, (bool, np.bool_)):
            raise TypeError("ignore must be a boolean mask array or an integer label value, got a bool")
        if isinstance(ignore, (int, np.integer)):
            ignore_value = int(ignore)
        else:
            ignore_mask = ignore
    lazy = any(_is_lazy(a) for a in (pred, truth, ignore_mask) if a is not None)

    arrays = {"pred": pred, "truth": truth}
    if ignore_mask is not None:
        arrays["ignore"] = ignore_mask
    if lazy:
        from ._volume import as_dask

        for key, a in arrays.items():
            arrays[key] = as_dask(a) if _is_lazy(a) else np.asarray(a)
    else:
        arrays = {key: np.asarray(a) for key, a in arrays.items()}

    pred, truth = arrays["pred"], arrays["truth"]
    if tuple(pred.shape) != tuple(truth.shape):
        raise ValueError(
            f"pred and truth must have the same shape, got pred {tuple(pred.shape)} "
            f"and truth {tuple(truth.shape)}"
        )
    _check_label_dtype(pred, "pred")
    _check_label_dtype(truth, "truth")
    if ignore_mask is not None:
        ignore_mask = arrays["ignore"]
        if tuple(ignore_mask.shape) != tuple(truth.shape):
            raise ValueError(
                f"the ignore mask must have the shape of truth {tuple(truth.shape)}, "
                f"got {tuple(ignore_mask.shape)}"
            )
        if np.dtype(ignore_mask.dtype) != bool:
            raise ValueError(
                f"an ignore mask must be boolean (True = ignored voxel), got dtype {ignore_mask.dtype}; "
                "to ignore one label value of truth pass it as an int, e.g. ignore=255"
            )
    both_bool = np.dtype(pred.dtype) == bool and np.dtype(truth.dtype) == bool

    if lazy:
        da = _dask_array_module()
        chunks = truth.chunks if isinstance(truth, da.Array) else (
            pred.chunks if isinstance(pred, da.Array) else ignore_mask.chunks
        )
        pred = da.asarray(pred).rechunk(chunks) if isinstance(pred, da.Array) else da.from_array(pred, chunks)
        truth = da.asarray(truth).rechunk(chunks) if isinstance(truth, da.Array) else da.from_array(
            truth, chunks
        )
        if ignore_mask is not None:
            ignore_mask = (
                ignore_mask.rechunk(chunks)
                if isinstance(ignore_mask, da.Array)
                else da.from_array(ignore_mask, chunks)
            )
    return pred, truth, ignore_mask, ignore_value, lazy, both_bool


# --------------------------------------------------------------------------------------------------
# counting


def _as_ids(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == bool:
        return values.astype(np.int64)
    if values.size and np.issubdtype(values.dtype, np.signedinteger) and values.min() < 0:
        raise ValueError(f"{name} has negative labels (min {values.min()}); labels must be >= 0")
    if values.dtype == np.uint64 and values.size and values.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has labels above 2**63 - 1, which vemkit.metrics cannot count")
    return values.astype(np.int64, copy=False)


def _empty_pairs():
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty.copy(), empty.copy()


def _count_block(pred, truth, ignore_mask=None, ignore_value=None):
    """Count (truth, pred) pairs in one block: three int64 arrays, sorted by truth then pred."""
    pred = np.asarray(pred).ravel()
    truth = np.asarray(truth).ravel()
    keep = None
    if ignore_mask is not None:
        keep = ~np.asarray(ignore_mask, dtype=bool).ravel()
    if ignore_value is not None:
        not_ignored = truth != ignore_value
        keep = not_ignored if keep is None else keep & not_ignored
    if keep is not None:
        pred, truth = pred[keep], truth[keep]
    if truth.size == 0:
        return _empty_pairs()
    t = _as_ids(truth, "truth")
    p = _as_ids(pred, "pred")
    n_t, n_p = int(t.max()) + 1, int(p.max()) + 1
    if n_t * n_p <= max(t.size, 1 << 16):
        # few labels (semantic masks): one bincount over the pair index, linear time
        counts = np.bincount(t * n_p + p, minlength=n_t * n_p)
        nz = np.flatnonzero(counts)
        return nz // n_p, nz % n_p, counts[nz].astype(np.int64)
    # many labels (instances): relabel each side densely, then count the distinct pairs
    ut, ti = np.unique(t, return_inverse=True)
    up, pi = np.unique(p, return_inverse=True)
    keys, counts = np.unique(ti.ravel() * len(up) + pi.ravel(), return_counts=True)
    return ut[keys // len(up)], up[keys % len(up)], counts.astype(np.int64)


def _merge_counts(*parts):
    """Sum several (truth, pred, counts) triples into one, sorted by truth then pred."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return _empty_pairs()
    if len(parts) == 1:
        return parts[0]
    t = np.concatenate([p[0] for p in parts])
    p = np.concatenate([p[1] for p in parts])
    c = np.concatenate([p[2] for p in parts])
    order = np.lexsort((p, t))
    t, p, c = t[order], p[order], c[order]
    starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (p[1:] != p[:-1])])
    return t[starts], p[starts], np.add.reduceat(c, starts)


def _count_lazy(pred, truth, ignore_mask, ignore_value):
    import dask

    blocks_p = pred.to_delayed().ravel()
    blocks_t = truth.to_delayed().ravel()
    blocks_m = ignore_mask.to_delayed().ravel() if ignore_mask is not None else [None] * len(blocks_t)
    count = dask.delayed(_count_block, pure=True)
    merge = dask.delayed(_merge_counts, pure=True)
    parts = [count(bp, bt, bm, ignore_value) for bp, bt, bm in zip(blocks_p, blocks_t, blocks_m)]
    while len(parts) > 1:  # tree reduction: no single task ever holds every block's counts
        parts = [merge(*parts[i : i + _MERGE_FAN_IN]) for i in range(0, len(parts), _MERGE_FAN_IN)]
    (result,) = dask.compute(parts[0])
    return result


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
    return _table(pred, truth, ignore)[0]


def _table(pred, truth, ignore):
    """The contingency table, and whether both inputs are boolean masks."""
    pred, truth, ignore_mask, ignore_value, lazy, both_bool = _prepare(pred, truth, ignore)
    if lazy:
        t, p, c = _count_lazy(pred, truth, ignore_mask, ignore_value)
    else:
        t, p, c = _count_block(pred, truth, ignore_mask, ignore_value)
    return ContingencyTable(truth=t, pred=p, counts=c), both_bool


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
    return _confusion(pred, truth, n_classes, ignore)[0]


def _confusion(pred, truth, n_classes, ignore):
    if n_classes is not None:
        if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) or (
            n_classes < 1
        ):
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    table, both_bool = _table(pred, truth, ignore)
    if n_classes is not None:
        for name, labels in (("pred", table.pred), ("truth", table.truth)):
            if labels.size and labels.max() >= n_classes:
                raise ValueError(
                    f"{name} has label {int(labels.max())} but n_classes={n_classes} "
                    f"(labels must be 0..{n_classes - 1})"
                )
    return table.to_dense(n_classes), both_bool


# --------------------------------------------------------------------------------------------------
# per-class scores


def _default_labels(cm: np.ndarray, both_bool: bool, ignore) -> list[int]:
    top = cm.shape[0] - 1
    if both_bool:
        top = max(top, 1)
    labels = list(range(1, top + 1))
    if isinstance(ignore, (int, np.integer)) and not isinstance(ignore, (bool, np.bool_)):
        labels = [k for k in labels if k != int(ignore)]
    return labels


def _check_labels(labels) -> list[int]:
    if isinstance(labels, (int, np.integer)):
        labels = [labels]
    out = []
    for k in labels:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"labels must be non-negative integers, got {labels!r}")
        out.append(int(k))
    return out


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def _scores_from_confusion(cm: np.ndarray, labels) -> dict[int, dict[str, float]]:
    scores = {}
    n = cm.shape[0]
    for k in labels:
        if k < n:
            tp = int(cm[k, k])
            n_truth = int(cm[k, :].sum())
            n_pred = int(cm[:, k].sum())
        else:
            tp = n_truth = n_pred = 0
        fp, fn = n_pred - tp, n_truth - tp
        scores[k] = {
            "iou": _ratio(tp, tp + fp + fn),
            "dice": _ratio(2 * tp, 2 * tp + fp + fn),
            "precision": _ratio(tp, n_pred),
            "recall": _ratio(tp, n_truth),
            "n_truth": n_truth,
            "n_pred": n_pred,
        }
    return scores


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
    cm, both_bool = _confusion(pred, truth, None, ignore)
    labels = _default_labels(cm, both_bool, ignore) if labels is None else _check_labels(labels)
    return _scores_from_confusion(cm, labels)


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


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else math.nan


def mean_iou(pred, truth, *, labels=None, ignore=None) -> float:
    """Mean of :func:`iou` over classes, leaving out classes absent from both inputs (``nan``).

    Returns ``nan`` when no class is present at all. Parameters are those of :func:`iou`.

    Examples
    --------
    >>> import numpy as np
    >>> mean_iou(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), labels=[1, 2, 3])
    0.5
    """
    return _nanmean(iou(pred, truth, labels=labels, ignore=ignore).values())


def mean_dice(pred, truth, *, labels=None, ignore=None) -> float:
    """Mean of :func:`dice` over classes, leaving out classes absent from both inputs (``nan``).

    Returns ``nan`` when no class is present at all. Parameters are those of :func:`iou`.

    Examples
    --------
    >>> import numpy as np
    >>> round(mean_dice(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])), 4)
    0.6667
    """
    return _nanmean(dice(pred, truth, labels=labels, ignore=ignore).values())
