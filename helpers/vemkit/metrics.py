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
    "match_instances",
    "average_precision",
    "variation_of_information",
    "adapted_rand_error",
    "evaluate",
    "DEFAULT_IOU_THRESHOLDS",
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


# --------------------------------------------------------------------------------------------------
# instance scores: everything below is read off one contingency table

#: IoU thresholds of :func:`average_precision`: 0.5, 0.55, ..., 0.95 (as in DSB2018, StarDist, COCO).
DEFAULT_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class _Overlaps:
    """Objects (labels > 0) of both sides and every overlapping (truth, pred) pair with its IoU."""

    truth_ids: np.ndarray  # (T,) object ids, sorted
    truth_sizes: np.ndarray  # (T,) voxels of each (ignored voxels excluded)
    pred_ids: np.ndarray  # (P,)
    pred_sizes: np.ndarray  # (P,)
    pair_t: np.ndarray  # (K,) index into truth_ids
    pair_p: np.ndarray  # (K,) index into pred_ids
    inter: np.ndarray  # (K,) overlapping voxels
    iou: np.ndarray  # (K,) intersection over union


def _group_sums(labels: np.ndarray, counts: np.ndarray):
    """Distinct labels and the summed counts of each (exact int64)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros(len(ids), dtype=np.int64)
    np.add.at(sums, inverse.ravel(), counts)
    return ids, sums, inverse.ravel()


def _overlaps(table: ContingencyTable) -> _Overlaps:
    t_ids, t_sizes, t_inv = _group_sums(table.truth, table.counts)
    p_ids, p_sizes, p_inv = _group_sums(table.pred, table.counts)
    objects = (table.truth > 0) & (table.pred > 0)
    # drop label 0 (background is never an object); shift the pair indices accordingly
    t_first = int(t_ids.size > 0 and t_ids[0] == 0)
    p_first = int(p_ids.size > 0 and p_ids[0] == 0)
    pair_t = t_inv[objects] - t_first
    pair_p = p_inv[objects] - p_first
    t_ids, t_sizes = t_ids[t_first:], t_sizes[t_first:]
    p_ids, p_sizes = p_ids[p_first:], p_sizes[p_first:]
    inter = table.counts[objects]
    iou = inter / (t_sizes[pair_t] + p_sizes[pair_p] - inter)
    return _Overlaps(t_ids, t_sizes, p_ids, p_sizes, pair_t, pair_p, inter, iou)


def _check_threshold(value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"an IoU threshold must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not 0 < value <= 1:
        raise ValueError(f"an IoU threshold must be in (0, 1], got {value}")
    # round away np.arange's float noise (0.7000000000000001): an IoU of exactly 7/10 matches at 0.7
    return round(value, 10)


def _match_pairs(ov: _Overlaps, threshold: float) -> np.ndarray:
    """Indices of the overlapping pairs kept by an optimal one-to-one matching at ``threshold``.

    As StarDist's ``matching``: the number of pairs with IoU >= threshold is maximised, ties broken
    by the largest summed IoU. Only candidate pairs are looked at: an object with exactly one
    candidate partner that has no other candidate is matched directly (always the case above
    IoU 0.5, where two partners cannot both exceed it); the rest is split into connected
    components of the candidate graph, each solved with ``scipy.optimize.linear_sum_assignment``
    on its small dense IoU matrix.
    """
    candidates = np.flatnonzero(ov.iou >= threshold)
    if candidates.size == 0:
        return candidates
    t, p = ov.pair_t[candidates], ov.pair_p[candidates]
    deg_t = np.bincount(t, minlength=len(ov.truth_ids))
    deg_p = np.bincount(p, minlength=len(ov.pred_ids))
    simple = (deg_t[t] == 1) & (deg_p[p] == 1)
    chosen = [candidates[simple]]
    rest = candidates[~simple]
    if rest.size:
        from scipy.optimize import linear_sum_assignment
        from scipy.sparse import coo_array
        from scipy.sparse.csgraph import connected_components

        rt, rp = ov.pair_t[rest], ov.pair_p[rest]
        n_t = len(ov.truth_ids)
        n = n_t + len(ov.pred_ids)
        graph = coo_array((np.ones(rest.size), (rt, n_t + rp)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        edge_component = component[rt]
        order = np.argsort(edge_component, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(edge_component[order]) != 0, True])
        for start, stop in zip(bounds[:-1], bounds[1:]):
            edges = rest[order[start:stop]]
            ut, ti = np.unique(ov.pair_t[edges], return_inverse=True)
            up, pi = np.unique(ov.pair_p[edges], return_inverse=True)
            size = min(len(ut), len(up))
            # a match is worth 1, plus its IoU / (2 size) as tie-breaker: the tie-breakers of all
            # matches sum to at most 1/2, so the number of matches always comes first
            cost = np.zeros((len(ut), len(up)))
            cost[ti, pi] = -(1.0 + ov.iou[edges] / (2 * size))
            edge_of = np.full(cost.shape, -1, dtype=np.int64)
            edge_of[ti, pi] = edges
            rows, cols = linear_sum_assignment(cost)
            picked = edge_of[rows, cols]
            chosen.append(picked[picked >= 0])
    return np.sort(np.concatenate(chosen))


def _match_scores(ov: _Overlaps, picked: np.ndarray) -> dict:
    tp = int(picked.size)
    n_truth, n_pred = len(ov.truth_ids), len(ov.pred_ids)
    fp, fn = n_pred - tp, n_truth - tp
    sum_iou = float(ov.iou[picked].sum())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_truth": n_truth,
        "n_pred": n_pred,
        "precision": _ratio(tp, n_pred),
        "recall": _ratio(tp, n_truth),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp, tp + fp + fn),
        "mean_matched_iou": _ratio(sum_iou, tp),
        "panoptic_quality": _ratio(sum_iou, tp + fp / 2 + fn / 2),
    }


def match_instances(pred, truth, iou_threshold=0.5, ignore=None) -> dict:
    """Match predicted to true objects one-to-one by IoU; count true/false positives and negatives.

    The matching is that of StarDist's ``matching`` (and of the DSB2018 score at thresholds >= 0.5,
    where it is unique): a pair can match when its IoU is >= ``iou_threshold``; among all
    one-to-one matchings the one with the most pairs is chosen, ties broken by the largest summed
    IoU (``scipy.optimize.linear_sum_assignment``). Only overlapping pairs are ever considered, so
    volumes with many thousands of objects need no dense IoU matrix. An object's size, and so its
    IoU, counts all its (non-ignored) voxels, including those over the other side's background.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer
        Instance labels (0 = background, unique positive ids). dask arrays and Volumes are counted
        block by block.
    iou_threshold : float, default 0.5
        Smallest IoU of a match, in (0, 1].
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value. A predicted
        object lying wholly in ignored voxels is not counted (not a false positive).

    Returns
    -------
    dict
        ``matches`` : pandas.DataFrame with columns ``truth, pred, iou, intersection, truth_size,
        pred_size``, one row per matched pair, sorted by ``truth``;
        ``false_positives`` / ``false_negatives`` : int64 arrays of unmatched pred / truth ids;
        ``tp, fp, fn, n_truth, n_pred`` : int;
        ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``f1 = 2 TP / (2 TP + FP + FN)``,
        ``accuracy = TP / (TP + FP + FN)`` (the "AP" of :func:`average_precision`),
        ``mean_matched_iou``, ``panoptic_quality = sum of matched IoU / (TP + FP/2 + FN/2)``:
        float, ``nan`` where the denominator is zero; ``iou_threshold`` : float.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7, 7]])
    >>> m = match_instances(pred, truth)
    >>> m["matches"][["truth", "pred", "iou"]].to_dict("records")
    [{'truth': 1, 'pred': 5, 'iou': 0.75}]
    >>> m["tp"], m["fp"], m["fn"], m["false_positives"].tolist(), m["false_negatives"].tolist()
    (1, 1, 1, [7], [2])
    """
    import pandas as pd

    threshold = _check_threshold(iou_threshold)
    _check_instances(pred, truth)
    ov = _overlaps(_table(pred, truth, ignore)[0])
    picked = _match_pairs(ov, threshold)
    t, p = ov.pair_t[picked], ov.pair_p[picked]
    matches = pd.DataFrame(
        {
            "truth": ov.truth_ids[t],
            "pred": ov.pred_ids[p],
            "iou": ov.iou[picked],
            "intersection": ov.inter[picked],
            "truth_size": ov.truth_sizes[t],
            "pred_size": ov.pred_sizes[p],
        }
    )
    unmatched_t = np.ones(len(ov.truth_ids), bool)
    unmatched_t[t] = False
    unmatched_p = np.ones(len(ov.pred_ids), bool)
    unmatched_p[p] = False
    return {
        "matches": matches,
        "false_positives": ov.pred_ids[unmatched_p],
        "false_negatives": ov.truth_ids[unmatched_t],
        **_match_scores(ov, picked),
        "iou_threshold": threshold,
    }


def _check_instances(pred, truth):
    for name, a in (("pred", pred), ("truth", truth)):
        if np.dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype) == bool:
            raise ValueError(
                f"{name} is a boolean mask, but instance scores need instance labels (0 = background, "
                "unique positive ids); label the mask first, e.g. scipy.ndimage.label"
            )


def _thresholds(thresholds) -> list[float]:
    if thresholds is None:
        return list(DEFAULT_IOU_THRESHOLDS)
    values = [_check_threshold(t) for t in np.atleast_1d(np.asarray(thresholds, dtype=object))]
    if not values:
        raise ValueError("thresholds must hold at least one IoU threshold")
    return values


def _ap_from_overlaps(ov: _Overlaps, thresholds) -> dict:
    ap = {thr: _match_scores(ov, _match_pairs(ov, thr))["accuracy"] for thr in thresholds}
    at_half = _match_scores(ov, _match_pairs(ov, 0.5))
    return {
        "ap": ap,
        "mean_ap": _nanmean(ap.values()),
        "iou_threshold": 0.5,
        **{k: at_half[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "n_truth", "n_pred")},
        "mean_matched_iou": at_half["mean_matched_iou"],
        "panoptic_quality": at_half["panoptic_quality"],
    }


def average_precision(pred, truth, thresholds=None, ignore=None) -> dict:
    """Average precision of instance segmentation at several IoU thresholds, and their mean.

    "AP" here is the score used for cell and organelle instance segmentation in the 2018 Data
    Science Bowl and by StarDist's ``matching`` (where it is called ``accuracy``):
    ``AP(t) = TP / (TP + FP + FN)`` with the one-to-one matching of :func:`match_instances` at IoU
    threshold ``t``. It is *not* the area under a precision-recall curve (COCO's AP), which needs
    a confidence per object.

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer
        Instance labels (0 = background). dask arrays and Volumes are counted block by block, once
        for all thresholds.
    thresholds : sequence of float, optional
        IoU thresholds in (0, 1]; default 0.5, 0.55, ..., 0.95 (:data:`DEFAULT_IOU_THRESHOLDS`).
        Rounded to 10 decimals, so ``np.arange(0.5, 1.0, 0.05)`` gives the same keys.
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.

    Returns
    -------
    dict
        ``ap`` : ``{threshold: AP}``; ``mean_ap`` : mean over thresholds; and at IoU 0.5
        (``iou_threshold``): ``precision, recall, f1, tp, fp, fn, n_truth, n_pred,
        mean_matched_iou, panoptic_quality``. Ratios with a zero denominator (no objects on
        either side) are ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7, 7]])
    >>> r = average_precision(pred, truth, thresholds=[0.5, 0.8])
    >>> r["ap"], r["mean_ap"], r["f1"]
    ({0.5: 0.3333333333333333, 0.8: 0.0}, 0.16666666666666666, 0.5)
    """
    values = _thresholds(thresholds)
    _check_instances(pred, truth)
    return _ap_from_overlaps(_overlaps(_table(pred, truth, ignore)[0]), values)


def _drop_truth_background(table: ContingencyTable) -> ContingencyTable:
    keep = table.truth != 0
    return ContingencyTable(truth=table.truth[keep], pred=table.pred[keep], counts=table.counts[keep])


def _vi_from_table(table: ContingencyTable) -> tuple[float, float]:
    n = table.total
    if n == 0:
        return math.nan, math.nan
    c = table.counts.astype(np.float64)
    _, t_sizes, t_inv = _group_sums(table.truth, table.counts)
    _, p_sizes, p_inv = _group_sums(table.pred, table.counts)
    # H(pred | truth) = -sum_ij p_ij log2(n_ij / a_i), from integer counts so identical labelings give 0
    split = -float(np.sum(c * np.log2(c / t_sizes[t_inv]))) / n
    merge = -float(np.sum(c * np.log2(c / p_sizes[p_inv]))) / n
    return max(split, 0.0) + 0.0, max(merge, 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def variation_of_information(pred, truth, ignore=None, *, ignore_background=False) -> tuple[float, float]:
    """Variation of information split into its two conditional entropies, in bits: ``(split, merge)``.

    ``split = H(pred | truth)``: the information the prediction adds to the truth, which grows
    when true objects are cut into pieces (over-segmentation; a perfect over-segmentation has
    ``merge = 0``). ``merge = H(truth | pred)``: grows when true objects are fused together or with
    the background (under-segmentation). ``VI = split + merge``. This is exactly
    ``skimage.metrics.variation_of_information(truth, pred)`` (note skimage's order: truth first),
    which returns ``[H(pred|truth), H(truth|pred)]``, "false splits, false merges" (Meila 2007;
    Nunez-Iglesias et al. 2013).

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer
        Label volumes (any labels; 0 is a segment like any other unless ``ignore_background``).
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.
    ignore_background : bool, default False
        Also leave out voxels where ``truth`` is 0 (CREMI's convention). The default keeps them,
        as skimage does (``ignore_labels=()``): a missed object then counts as a merge with the
        background.

    Returns
    -------
    (float, float)
        ``(split, merge)`` in bits; ``(nan, nan)`` when no voxel is left to count.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 1, 1]])
    >>> variation_of_information(np.array([[1, 1, 2, 2]]), truth)  # one object cut in halves
    (1.0, 0.0)
    >>> variation_of_information(truth, np.array([[1, 1, 2, 2]]))  # two halves merged
    (0.0, 1.0)
    """
    table = _table(pred, truth, ignore)[0]
    if ignore_background:
        table = _drop_truth_background(table)
    return _vi_from_table(table)


def _are_from_table(table: ContingencyTable, alpha: float = 0.5) -> tuple[float, float, float]:
    c = table.counts.astype(np.float64)
    _, a, _ = _group_sums(table.truth, table.counts)  # truth object sizes
    _, b, _ = _group_sums(table.pred, table.counts)  # predicted object sizes
    a, b = a.astype(np.float64), b.astype(np.float64)
    pairs_both = float(c @ c - c.sum())  # 2 x pairs of voxels together in truth and in pred
    pairs_truth = float(a @ a - a.sum())
    pairs_pred = float(b @ b - b.sum())
    precision = _ratio(pairs_both, pairs_truth)
    recall = _ratio(pairs_both, pairs_pred)
    score = _ratio(pairs_both, alpha * pairs_truth + (1 - alpha) * pairs_pred)
    return 1.0 - score, precision, recall


def adapted_rand_error(pred, truth, ignore=None, *, ignore_background=True, alpha=0.5):
    """Adapted Rand error of the SNEMI3D challenge, exactly as ``skimage.metrics.adapted_rand_error``.

    With ``n_ij`` the voxels of truth object ``i`` and predicted object ``j``, ``a_i`` and ``b_j``
    the object sizes, and pairs counted without a voxel paired with itself::

        P = sum n_ij (n_ij - 1),  A = sum a_i (a_i - 1),  B = sum b_j (b_j - 1)
        error = 1 - P / (alpha A + (1 - alpha) B)

    Returns ``(error, P / A, P / B)``, the same numbers in the same order as
    ``skimage.metrics.adapted_rand_error(truth, pred)`` (truth first there), which calls them
    ``(are, prec, rec)``. Beware: ``P / A`` is the fraction of voxel pairs together in the truth
    that the prediction keeps together, lowered only by *splits*; ``P / B`` is lowered only by
    *merges*. skimage's docstring describes them the other way round (scikit-image issue #6485);
    in the usual sense of precision, ``P / B`` is the precision. :func:`evaluate` reports them
    under unambiguous names, ``rand_split_score = P / A`` and ``rand_merge_score = P / B``
    (Arganda-Carreras et al. 2015, "Rand split / merge score").

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer
        Label volumes. Predicted label 0 is an ordinary segment (as in skimage).
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.
    ignore_background : bool, default True
        Leave out voxels where ``truth`` is 0, as skimage does by default (``ignore_labels=(0,)``).
    alpha : float in [0, 1], default 0.5
        Weight of ``A`` against ``B`` (skimage's ``alpha``); 0.5 gives ``1 - F1`` of the two scores.

    Returns
    -------
    (float, float, float)
        ``(error, P / A, P / B)``; a ratio with a zero denominator is ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 1, 1]])
    >>> adapted_rand_error(np.array([[1, 1, 2, 2]]), truth)  # a split: P/A drops, P/B stays 1
    (0.5, 0.3333333333333333, 1.0)
    """
    if isinstance(alpha, (bool, np.bool_)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    table = _table(pred, truth, ignore)[0]
    if ignore_background:
        table = _drop_truth_background(table)
    return _are_from_table(table, float(alpha))


def _json_key(key) -> str:
    if isinstance(key, (float, np.floating)):
        return f"{float(key):g}"  # IoU thresholds: 0.5 -> "0.5", 0.55 -> "0.55"
    return str(key)


def _json_ready(value):
    """nan -> None, numpy scalars -> Python, dict keys -> str: a value ``json.dumps`` writes strictly."""
    if isinstance(value, dict):
        return {_json_key(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def evaluate(pred, truth, kind="semantic", ignore=None, *, thresholds=None) -> dict:
    """All scores of one kind in one pass over the data, as a JSON-ready dict (``metrics.json``).

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer (or bool for semantic)
        Prediction and ground truth. dask arrays and Volumes are counted block by block, once.
    kind : {"semantic", "instances"}
        ``"semantic"``: class masks (0 = background). ``"instances"``: instance labels.
    ignore : bool array of the same shape, or int, optional
        Voxels left out: True in a mask, or where ``truth`` equals the given value.
    thresholds : sequence of float, optional
        IoU thresholds of the AP (instances only); default 0.5, 0.55, ..., 0.95.

    Returns
    -------
    dict
        Plain Python values, ``nan`` written as ``None`` and keys as strings, so
        ``json.dumps(..., allow_nan=False)`` accepts it.

        ``"semantic"``: ``kind, n_voxels, accuracy`` (fraction of voxels with the right class),
        ``mean_iou, mean_dice``, ``classes`` (``{"1": {iou, dice, precision, recall, n_truth,
        n_pred}, ...}``, see :func:`class_scores`) and ``confusion_matrix`` (rows = truth).

        ``"instances"``: ``kind, n_voxels, n_truth, n_pred``; ``ap`` (``{"0.5": AP, ...}``) and
        ``mean_ap`` (:func:`average_precision`); at IoU 0.5 (``iou_threshold``): ``tp, fp, fn,
        precision, recall, f1, mean_matched_iou, panoptic_quality``; ``vi_split, vi_merge, vi``
        (:func:`variation_of_information`, bits, background kept); ``adapted_rand_error,
        rand_split_score, rand_merge_score`` (:func:`adapted_rand_error`, truth background left out).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7, 7]])
    >>> m = evaluate(pred, truth, kind="instances", thresholds=[0.5, 0.75])
    >>> m["ap"], m["tp"], m["fp"], m["fn"]
    ({'0.5': 0.3333333333333333, '0.75': 0.3333333333333333}, 1, 1, 1)
    >>> evaluate(pred > 0, truth > 0)["classes"]["1"]["iou"]
    0.5714285714285714
    """
    if kind == "semantic":
        cm, both_bool = _confusion(pred, truth, None, ignore)
        scores = _scores_from_confusion(cm, _default_labels(cm, both_bool, ignore))
        total = int(cm.sum())
        result = {
            "kind": "semantic",
            "n_voxels": total,
            "accuracy": _ratio(int(np.trace(cm)), total),
            "mean_iou": _nanmean(s["iou"] for s in scores.values()),
            "mean_dice": _nanmean(s["dice"] for s in scores.values()),
            "classes": scores,
            "confusion_matrix": cm.tolist(),
        }
    elif kind == "instances":
        values = _thresholds(thresholds)
        _check_instances(pred, truth)
        table = _table(pred, truth, ignore)[0]
        ap = _ap_from_overlaps(_overlaps(table), values)
        split, merge = _vi_from_table(table)
        are, rand_split, rand_merge = _are_from_table(_drop_truth_background(table))
        result = {
            "kind": "instances",
            "n_voxels": table.total,
            "n_truth": ap.pop("n_truth"),
            "n_pred": ap.pop("n_pred"),
            **ap,
            "vi_split": split,
            "vi_merge": merge,
            "vi": split + merge,
            "adapted_rand_error": are,
            "rand_split_score": rand_split,
            "rand_merge_score": rand_merge,
        }
    else:
        raise ValueError(f'kind must be "semantic" or "instances", got {kind!r}')
    return _json_ready(result)
