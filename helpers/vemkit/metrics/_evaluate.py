"""All scores of one kind in one pass, as a JSON-ready dict: :func:`evaluate` (``metrics.json``).

Not for: the scores themselves (:mod:`vemkit.metrics._semantic`, :mod:`vemkit.metrics._instances`).
"""

from __future__ import annotations

import math

import numpy as np

from .._contingency import count_pairs, default_labels, nanmean, ratio, scores_from_confusion
from ._instances import (
    ap_from_overlaps,
    are_from_table,
    check_instances,
    drop_truth_background,
    iou_thresholds,
    overlaps,
    vi_from_table,
)

#: With ``kind="auto"``, more distinct labels than this in either input look like instance labels.
MAX_AUTO_CLASSES = 64


def _semantic_table(pred, truth, ignore, kind):
    """The contingency table for semantic scoring; with ``kind="auto"``, refuse inputs that look like
    instance labels (one pass over the data either way)."""
    table, both_bool = count_pairs(pred, truth, ignore)
    if kind == "auto":
        for name, labels in (("truth", table.truth), ("pred", table.pred)):
            n = len(np.unique(labels[labels != 0]))
            if n > MAX_AUTO_CLASSES:
                raise ValueError(
                    f"{name} holds {n} distinct labels: it looks like instance labels, which semantic scoring would "
                    f"treat as {n} classes (a meaningless mean IoU). Say which: kind='instances' to match objects, "
                    "or kind='semantic' to score every label as a class (--kind on the command line)"
                )
    return table, both_bool


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


def evaluate(pred, truth, kind="auto", ignore=None, *, thresholds=None) -> dict:
    """All scores of one kind in one pass over the data, as a JSON-ready dict (``metrics.json``).

    Parameters
    ----------
    pred, truth : array-like, dask array or Volume of the same shape, integer (or bool for semantic)
        Prediction and ground truth. dask arrays and Volumes are counted block by block, once.
    kind : {"auto", "semantic", "instances"}
        ``"semantic"``: class masks (0 = background). ``"instances"``: instance labels. ``"auto"``
        (default): semantic, unless either input holds more than :data:`MAX_AUTO_CLASSES` distinct
        labels; then it looks like instance labels and a ``ValueError`` asks for ``kind`` (guessing
        could give plausible-looking numbers for the wrong question).
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
    if kind in ("auto", "semantic"):
        table, both_bool = _semantic_table(pred, truth, ignore, kind)
        cm = table.to_dense()
        scores = scores_from_confusion(cm, default_labels(cm, both_bool, ignore))
        total = int(cm.sum())
        result = {
            "kind": "semantic",
            "n_voxels": total,
            "accuracy": ratio(int(np.trace(cm)), total),
            "mean_iou": nanmean(s["iou"] for s in scores.values()),
            "mean_dice": nanmean(s["dice"] for s in scores.values()),
            "classes": scores,
            "confusion_matrix": cm.tolist(),
        }
    elif kind == "instances":
        values = iou_thresholds(thresholds)
        check_instances(pred, truth)
        table = count_pairs(pred, truth, ignore)[0]
        ap = ap_from_overlaps(overlaps(table), values)
        split, merge = vi_from_table(table)
        are, rand_split, rand_merge = are_from_table(drop_truth_background(table))
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
        raise ValueError(f'kind must be "auto", "semantic" or "instances", got {kind!r}')
    return _json_ready(result)
