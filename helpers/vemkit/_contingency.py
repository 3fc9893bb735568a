"""The contingency table of two label volumes, and the per-class scores read off it.

Counts, for each pair ``(truth label, predicted label)``, how many voxels carry it: numpy arrays at
once, dask arrays and :class:`vemkit.Volume` objects block by block (a tree reduction, so a volume
larger than memory is never loaded whole). :mod:`vemkit.metrics` builds every score on
:func:`count_pairs`; :mod:`vemkit.quality` uses :func:`confusion` and :func:`scores_from_confusion`
to compare predictions without ground truth. Not for: the public scoring API (:mod:`vemkit.metrics`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from ._inputs import as_volume_array
from ._volume import Volume

__all__ = [
    "ContingencyTable",
    "confusion",
    "count_pairs",
    "default_labels",
    "is_lazy",
    "nanmean",
    "ratio",
    "scores_from_confusion",
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


def is_lazy(array) -> bool:
    """Whether ``array`` is a Volume or a dask array (counted block by block)."""
    if isinstance(array, Volume):
        return True
    da = _dask_array_module()
    return da is not None and isinstance(array, da.Array)


def _dask_array_module():
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


def _unwrap(array, name: str):
    """``(data, voxel size)``: a Volume goes through the one input normaliser (its dask data); arrays
    pass as they are, of any number of dimensions (scores are not only for 3D volumes)."""
    if isinstance(array, Volume):
        data, voxel_size, _ = as_volume_array(array, name)
        return data, voxel_size
    return array, None


def _split_ignore(ignore):
    """``ignore`` as ``(mask or None, truth label value or None)``."""
    if ignore is None:
        return None, None
    if isinstance(ignore, (bool, np.bool_)):
        raise TypeError("ignore must be a boolean mask array or an integer label value, got a bool")
    if isinstance(ignore, (int, np.integer)):
        return None, int(ignore)
    return ignore, None


def _check_pair(pred, truth, ignore_mask):
    if tuple(pred.shape) != tuple(truth.shape):
        raise ValueError(
            f"pred and truth must have the same shape, got pred {tuple(pred.shape)} "
            f"and truth {tuple(truth.shape)}"
        )
    _check_label_dtype(pred, "pred")
    _check_label_dtype(truth, "truth")
    if ignore_mask is not None:
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


def _prepare_pair(pred, truth, ignore):
    """Validate the inputs; return (pred, truth, ignore_mask, ignore_value, lazy, both_bool)."""
    pred, pred_vs = _unwrap(pred, "pred")
    truth, truth_vs = _unwrap(truth, "truth")
    if pred_vs and truth_vs and pred_vs != truth_vs:
        raise ValueError(
            f"pred and truth have different voxel sizes: pred {pred_vs} nm, "
            f"truth {truth_vs} nm; resample one onto the other's grid first"
        )
    ignore_mask, ignore_value = _split_ignore(ignore)
    if ignore_mask is not None:
        ignore_mask, _ = _unwrap(ignore_mask, "ignore")
    arrays = [a if is_lazy(a) else np.asarray(a) for a in (pred, truth, ignore_mask) if a is not None]
    lazy = any(is_lazy(a) for a in arrays)
    pred, truth = arrays[:2]
    ignore_mask = arrays[2] if ignore_mask is not None else None
    _check_pair(pred, truth, ignore_mask)
    both_bool = np.dtype(pred.dtype) == bool and np.dtype(truth.dtype) == bool
    if lazy:  # one chunk grid for all: truth's, else pred's, else the mask's
        da = _dask_array_module()
        chunks = next(a.chunks for a in (truth, pred, ignore_mask) if isinstance(a, da.Array))
        pred, truth = _with_chunks(pred, chunks), _with_chunks(truth, chunks)
        ignore_mask = _with_chunks(ignore_mask, chunks) if ignore_mask is not None else None
    return pred, truth, ignore_mask, ignore_value, lazy, both_bool


def _with_chunks(array, chunks):
    da = _dask_array_module()
    return array.rechunk(chunks) if isinstance(array, da.Array) else da.from_array(array, chunks)


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


def count_pairs(pred, truth, ignore):
    """The contingency table, and whether both inputs are boolean masks."""
    pred, truth, ignore_mask, ignore_value, lazy, both_bool = _prepare_pair(pred, truth, ignore)
    if lazy:
        t, p, c = _count_lazy(pred, truth, ignore_mask, ignore_value)
    else:
        t, p, c = _count_block(pred, truth, ignore_mask, ignore_value)
    return ContingencyTable(truth=t, pred=p, counts=c), both_bool


def confusion(pred, truth, n_classes, ignore):
    """``(dense confusion matrix, whether both inputs are boolean masks)``; rows = truth."""
    if n_classes is not None:
        if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) or (
            n_classes < 1
        ):
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    table, both_bool = count_pairs(pred, truth, ignore)
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


def default_labels(cm: np.ndarray, both_bool: bool, ignore) -> list[int]:
    """The classes scored by default: 1 to the largest label (1 for boolean masks), without ``ignore``."""
    top = cm.shape[0] - 1
    if both_bool:
        top = max(top, 1)
    labels = list(range(1, top + 1))
    if isinstance(ignore, (int, np.integer)) and not isinstance(ignore, (bool, np.bool_)):
        labels = [k for k in labels if k != int(ignore)]
    return labels


def ratio(num: int, den: int) -> float:
    """``num / den``, nan when ``den`` is 0."""
    return num / den if den else math.nan


def scores_from_confusion(cm: np.ndarray, labels) -> dict[int, dict[str, float]]:
    """``{class: {iou, dice, precision, recall, n_truth, n_pred}}`` for each of ``labels``."""
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
            "iou": ratio(tp, tp + fp + fn),
            "dice": ratio(2 * tp, 2 * tp + fp + fn),
            "precision": ratio(tp, n_pred),
            "recall": ratio(tp, n_truth),
            "n_truth": n_truth,
            "n_pred": n_pred,
        }
    return scores


def nanmean(values) -> float:
    """Mean of the values that are not nan; nan when none is left."""
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else math.nan
