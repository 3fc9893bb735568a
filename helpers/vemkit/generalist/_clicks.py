"""Click-to-segment measured without a person: the standard simulated-user protocol.

:func:`simulate_clicks` plays the user of the prompt mode against ground truth, as interactive
segmentation papers (and micro-sam's evaluation) do: the first click goes to the innermost pixel of
the object; each next click to the innermost pixel of the largest error (a missed part: a positive
click; a spill: a negative one), until the mask reaches ``target_iou`` or ``max_clicks``. It reports
per object the clicks, the seconds the model took (embedding shared per section, reported apart) and
the IoU reached: clicks-per-object and seconds-per-object for notebook 07's comparison.

Not for: the widget (:mod:`vemkit._prompt`), scoring whole segmentations (:mod:`vemkit.metrics`).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["simulate_clicks", "click_summary"]


def _innermost(region: np.ndarray):
    from scipy import ndimage

    lab, n = ndimage.label(region)
    if n > 1:
        sizes = ndimage.sum(region, lab, range(1, n + 1))
        region = lab == (1 + int(np.argmax(sizes)))
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), region.shape))


def _iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _objects(truth_section, max_objects, min_pixels):
    from scipy import ndimage

    lab = truth_section if truth_section.dtype != bool and truth_section.max() > 1 else ndimage.label(truth_section > 0)[0]
    ids, sizes = np.unique(lab[lab > 0], return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    return lab, [int(ids[i]) for i in order if sizes[i] >= min_pixels][:max_objects]


def simulate_clicks(segmenter, image, truth, *, sections=None, max_objects=10, max_clicks=5, target_iou=0.85,
                    min_pixels=20) -> list[dict]:
    """Segment ground-truth objects with simulated clicks; one row per object.

    Parameters
    ----------
    segmenter
        ``embed(section)`` and ``predict(embedding, points, labels)`` (:class:`~vemkit.generalist.PromptSegmenter`).
    image, truth : array (z, y, x)
        The EM volume and its truth: instance ids, or a mask (objects = connected components per section).
    sections : list of int, optional
        Sections to use (default all); objects are taken largest first, ``max_objects`` in all.
    max_clicks, target_iou
        Stop an object at this IoU or after this many clicks.
    min_pixels
        Smaller objects are skipped (a click on a few pixels says little).

    Returns
    -------
    list of dict
        ``section, object, pixels, clicks, iou, reached, seconds`` (model time for this object's
        prompts) and ``embedding_seconds`` (its section's embedding, shared by its objects).
    """
    image, truth = np.asarray(image), np.asarray(truth)
    if image.shape != truth.shape or image.ndim != 3:
        raise ValueError(f"image and truth must be (z, y, x) of one shape, got {image.shape} and {truth.shape}")
    rows = []
    for z in range(image.shape[0]) if sections is None else sections:
        if len(rows) >= max_objects:
            break
        lab, ids = _objects(truth[z], max_objects - len(rows), min_pixels)
        if not ids:
            continue
        t0 = time.perf_counter()
        emb = segmenter.embed(image[z])
        emb_s = time.perf_counter() - t0
        for obj in ids:
            rows.append(_one_object(segmenter, emb, lab == obj, max_clicks, target_iou) |
                        {"section": int(z), "object": obj, "embedding_seconds": emb_s})
    return rows


def _one_object(segmenter, emb, target, max_clicks, target_iou) -> dict:
    points, labels = [], []
    pred = np.zeros_like(target)
    seconds, iou = 0.0, 0.0
    for _ in range(max_clicks):
        missed, spilled = target & ~pred, pred & ~target
        positive = missed.sum() >= spilled.sum()
        points.append(_innermost(missed if positive else spilled))
        labels.append(1 if positive else 0)
        t0 = time.perf_counter()
        pred, _ = segmenter.predict(emb, points=points, labels=labels)
        seconds += time.perf_counter() - t0
        pred = np.asarray(pred, dtype=bool)
        iou = _iou(pred, target)
        if iou >= target_iou:
            break
    return {"pixels": int(target.sum()), "clicks": len(points), "iou": iou, "reached": iou >= target_iou,
            "seconds": seconds}


def click_summary(rows) -> dict:
    """Mean clicks, seconds (prompts plus the embedding shared per section) and IoU per object."""
    if not rows:
        return {"objects": 0}
    per_section = {r["section"]: r["embedding_seconds"] for r in rows}
    return {
        "objects": len(rows),
        "clicks_per_object": float(np.mean([r["clicks"] for r in rows])),
        "seconds_per_object": float((sum(r["seconds"] for r in rows) + sum(per_section.values())) / len(rows)),
        "mean_iou": float(np.mean([r["iou"] for r in rows])),
        "reached_target": float(np.mean([r["reached"] for r in rows])),
    }
