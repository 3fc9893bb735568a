"""Instance scores: one-to-one matching by IoU, average precision, variation of information and the
adapted Rand error, all read off one contingency table.

Not for: semantic scores (:mod:`vemkit.metrics._semantic`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._contingency import ContingencyTable, count_pairs, nanmean, ratio

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


def overlaps(table: ContingencyTable) -> _Overlaps:
    """Objects of both sides (label 0 left out) and the IoU of every overlapping pair."""
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
        "precision": ratio(tp, n_pred),
        "recall": ratio(tp, n_truth),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp, tp + fp + fn),
        "mean_matched_iou": ratio(sum_iou, tp),
        "panoptic_quality": ratio(sum_iou, tp + fp / 2 + fn / 2),
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
    check_instances(pred, truth)
    ov = overlaps(count_pairs(pred, truth, ignore)[0])
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


def check_instances(pred, truth):
    """Refuse boolean masks where instance labels are needed."""
    for name, a in (("pred", pred), ("truth", truth)):
        if np.dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype) == bool:
            raise ValueError(
                f"{name} is a boolean mask, but instance scores need instance labels (0 = background, "
                "unique positive ids); label the mask first, e.g. scipy.ndimage.label"
            )


def iou_thresholds(thresholds) -> list[float]:
    """The IoU thresholds checked (default :data:`DEFAULT_IOU_THRESHOLDS`)."""
    if thresholds is None:
        return list(DEFAULT_IOU_THRESHOLDS)
    values = [_check_threshold(t) for t in np.atleast_1d(np.asarray(thresholds, dtype=object))]
    if not values:
        raise ValueError("thresholds must hold at least one IoU threshold")
    return values


def ap_from_overlaps(ov: _Overlaps, thresholds) -> dict:
    """AP at each threshold, their mean, and the matching scores at IoU 0.5."""
    ap = {thr: _match_scores(ov, _match_pairs(ov, thr))["accuracy"] for thr in thresholds}
    at_half = _match_scores(ov, _match_pairs(ov, 0.5))
    return {
        "ap": ap,
        "mean_ap": nanmean(ap.values()),
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
    values = iou_thresholds(thresholds)
    check_instances(pred, truth)
    return ap_from_overlaps(overlaps(count_pairs(pred, truth, ignore)[0]), values)


def drop_truth_background(table: ContingencyTable) -> ContingencyTable:
    """The table without the voxels whose truth label is 0."""
    keep = table.truth != 0
    return ContingencyTable(truth=table.truth[keep], pred=table.pred[keep], counts=table.counts[keep])


def vi_from_table(table: ContingencyTable) -> tuple[float, float]:
    """``(split, merge)`` conditional entropies in bits."""
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
    table = count_pairs(pred, truth, ignore)[0]
    if ignore_background:
        table = drop_truth_background(table)
    return vi_from_table(table)


def are_from_table(table: ContingencyTable, alpha: float = 0.5) -> tuple[float, float, float]:
    """``(error, P / A, P / B)`` of :func:`adapted_rand_error`."""
    c = table.counts.astype(np.float64)
    _, a, _ = _group_sums(table.truth, table.counts)  # truth object sizes
    _, b, _ = _group_sums(table.pred, table.counts)  # predicted object sizes
    a, b = a.astype(np.float64), b.astype(np.float64)
    pairs_both = float(c @ c - c.sum())  # 2 x pairs of voxels together in truth and in pred
    pairs_truth = float(a @ a - a.sum())
    pairs_pred = float(b @ b - b.sum())
    precision = ratio(pairs_both, pairs_truth)
    recall = ratio(pairs_both, pairs_pred)
    score = ratio(pairs_both, alpha * pairs_truth + (1 - alpha) * pairs_pred)
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
    table = count_pairs(pred, truth, ignore)[0]
    if ignore_background:
        table = drop_truth_background(table)
    return are_from_table(table, float(alpha))
