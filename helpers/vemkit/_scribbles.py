"""Realistic sparse strokes made from dense ground truth, to simulate a user painting.

A person annotating in ilastik or the vemkit Annotator draws a line or two through some objects, dabs a
blob here and there, and paints a few strokes across the background, keeping a little away from the
boundaries. :func:`scribbles_from_masks` does the same from a dense mask, so that notebooks and tests
run headless and benchmarks can stand in for a user. Not for: storing annotations
(:mod:`vemkit._annotations`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["scribbles_from_masks"]


def _disk(radius: int):
    r = int(max(radius, 0))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def _thicken_line(shape, p, q, radius):
    """Boolean image of the segment p-q drawn with a brush of ``radius`` (pixels)."""
    from scipy.ndimage import binary_dilation
    from skimage.draw import line

    out = np.zeros(shape, bool)
    rr, cc = line(int(p[0]), int(p[1]), int(q[0]), int(q[1]))
    keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    out[rr[keep], cc[keep]] = True
    if radius > 0:
        out = binary_dilation(out, _disk(radius))
    return out


def _object_scribbles(obj, rng, radius, margin, lines, blobs):
    """Strokes inside one object (a boolean crop); returns a boolean crop."""
    from scipy.ndimage import binary_erosion

    inner = obj
    for m in range(int(margin), -1, -1):  # the largest margin that leaves room to paint
        inner = binary_erosion(obj, _disk(m)) if m > 0 else obj
        if inner.any():
            break
    pts = np.argwhere(inner)
    if len(pts) == 0:
        return np.zeros_like(obj)
    out = np.zeros_like(obj)
    for _ in range(lines):
        p = pts[rng.integers(len(pts))]
        d = ((pts - p) ** 2).sum(axis=1)
        q = pts[int(np.argmax(d))]  # run the stroke along the object's long extent
        # stop short of the far end like a hand does
        q = p + (q - p) * rng.uniform(0.6, 0.9)
        out |= _thicken_line(obj.shape, p, q, radius) & inner
    for _ in range(blobs):
        c = pts[rng.integers(len(pts))]
        out |= _thicken_line(obj.shape, c, c, radius * 2) & inner
    if not out.any():  # tiny object: mark its inner part
        out = inner.copy()
    return out


def scribbles_from_masks(
    labels,
    *,
    sections=None,
    n_objects: int | None = None,
    lines_per_object: int = 1,
    blobs_per_object: int = 1,
    background_strokes: int | None = None,
    stroke_length: tuple[int, int] = (20, 80),
    radius: int = 2,
    margin: int = 3,
    min_object_size: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """Turn dense ground truth into sparse strokes like a person would paint.

    Parameters
    ----------
    labels : array of shape (Z, Y, X) or (Y, X)
        Semantic ground truth: 0 = background, 1.. = classes (a boolean mask is class 1).
    sections : sequence of int, optional
        The sections (z) to annotate; default every section. The others stay unlabelled.
    n_objects : int, optional
        At most this many objects per class and section get strokes (default: all).
    lines_per_object, blobs_per_object : int
        Lines drawn along each object's long extent, and round dabs inside it.
    background_strokes : int, optional
        Straight strokes across the background per section (default: twice the number of objects
        annotated, at least 10).
    stroke_length : (int, int)
        Range of background stroke lengths in pixels.
    radius : int
        Brush radius in pixels.
    margin : int
        Distance in pixels kept from object boundaries (shrunk for small objects).
    min_object_size : int
        Objects with fewer pixels in a section are skipped (a person would not paint them).
    seed : int
        Random seed: the same inputs and seed give the same strokes.

    Returns
    -------
    ndarray of uint8, same shape as ``labels`` (3D)
        Annotations: 0 = unlabelled, 1 = background, k + 1 = class k.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((1, 64, 64), np.uint8)
    >>> truth[0, 20:40, 10:50] = 1
    >>> ann = scribbles_from_masks(truth, seed=0)
    >>> sorted(np.unique(ann).tolist())
    [0, 1, 2]
    >>> bool(np.all(truth[ann == 2] == 1) and np.all(truth[ann == 1] == 0))
    True
    """
    labels = _check_labels(labels)
    if sections is None:
        sections = range(labels.shape[0])
    sections = [int(z) for z in sections]
    for z in sections:
        if not 0 <= z < labels.shape[0]:
            raise ValueError(f"section {z} is outside 0..{labels.shape[0] - 1}")
    rng = np.random.default_rng(seed)
    out = np.zeros(labels.shape, np.uint8)
    for z in sections:
        annotated = _scribble_objects(labels[z], out[z], rng, n_objects=n_objects, radius=radius, margin=margin,
                                      lines=lines_per_object, blobs=blobs_per_object,
                                      min_object_size=min_object_size)  # fmt: skip
        # people paint more background than objects (there is more of it, and it holds the confusers)
        n_bg = background_strokes if background_strokes is not None else max(10, 2 * annotated)
        _scribble_background(labels[z], out[z], rng, n_bg, stroke_length, radius, margin)
    return out


def _check_labels(labels):
    """Semantic labels as a 3D integer array storable as annotations (value = class + 1 <= 254)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError(f"labels must be 2D or 3D (z, y, x), got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative (0 = background, 1.. = classes)")
    if labels.size and labels.max() > 253:
        raise ValueError("labels above 253 cannot be stored as annotations (uint8, value = class + 1)")
    return labels


def _scribble_objects(sec, target, rng, *, n_objects, radius, margin, lines, blobs, min_object_size):
    """Paint strokes into the objects of one section (``target``, in place); returns how many objects."""
    from scipy.ndimage import find_objects, label

    annotated = 0
    for cls in [int(c) for c in np.unique(sec) if c > 0]:
        objects, n = label(sec == cls)
        boxes = find_objects(objects)
        order = rng.permutation(n)
        taken = 0
        for i in order:
            if n_objects is not None and taken >= n_objects:
                break
            box = boxes[i]
            obj = objects[box] == i + 1
            if obj.sum() < min_object_size:
                continue
            strokes = _object_scribbles(obj, rng, radius, margin, lines, blobs)
            region = target[box]
            region[strokes] = cls + 1
            taken += 1
        annotated += taken
    return annotated


def _scribble_background(sec, target, rng, n_strokes, stroke_length, radius, margin):
    """Paint ``n_strokes`` straight background strokes, ``margin`` away from objects, where still unlabelled."""
    from scipy.ndimage import binary_erosion

    background = sec == 0
    inner_bg = binary_erosion(background, _disk(margin)) if margin > 0 else background
    pts = np.argwhere(inner_bg)
    for _ in range(n_strokes if len(pts) else 0):
        p = pts[rng.integers(len(pts))]
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(*stroke_length)
        q = p + length * np.array([np.sin(angle), np.cos(angle)])
        stroke = _thicken_line(sec.shape, p, q, radius) & inner_bg
        target[stroke & (target == 0)] = 1
