"""Per-block accumulators of a measurement table: counts, moments, bounding boxes, intensities, and
the per-voxel contact and distance fields that other structures add.

:func:`block_stats` reduces one block of labels to per-object sums, minima and maxima;
:func:`combine` merges those of several blocks (the same object cut by block faces); the table
(:mod:`vemkit.measure._table`) turns them into columns. Not for: shape measurements that need the whole
object (:mod:`vemkit.measure._shape`).
"""

from __future__ import annotations

import numpy as np

from .._geometry import distance_transform

#: Accumulators summed, minimised and maximised over blocks.
SUM = ("count", "sz", "sy", "sx", "szz", "syy", "sxx", "szy", "szx", "syx", "isum", "isq")
MIN = ("z0", "y0", "x0", "imin")
MAX = ("z1", "y1", "x1", "imax")


# --------------------------------------------------------------------------------------------------
# per-block statistics


def _group(ids):
    """Sort order of ``ids`` and the start of each run of equal ids."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if len(ids) else np.zeros(0, int)
    return order, sorted_ids, starts


def block_stats(labels, origin, image=None, sums=None, mins=None):
    """Per-object accumulators of one block: counts, coordinate moments, bbox, intensity, fields.

    ``labels``: the block (numpy); ``origin``: its (z, y, x) offset in the volume; ``sums``/``mins``:
    dicts of per-voxel float arrays (same shape) summed / minimised per object.
    """
    flat = np.flatnonzero(labels)
    if flat.size == 0:
        return None
    lab = labels.ravel()[flat]
    order, ids_sorted, starts = _group(lab)
    flat = flat[order]
    zyx = [c.astype(np.float64) + o for c, o in zip(np.unravel_index(flat, labels.shape), origin)]
    z, y, x = zyx
    out = {"label": ids_sorted[starts].astype(np.uint64),
           "count": np.add.reduceat(np.ones(len(flat)), starts)}
    for key, arr in (("sz", z), ("sy", y), ("sx", x), ("szz", z * z), ("syy", y * y), ("sxx", x * x),
                     ("szy", z * y), ("szx", z * x), ("syx", y * x)):
        out[key] = np.add.reduceat(arr, starts)
    for key, arr in (("z0", z), ("y0", y), ("x0", x)):
        out[key] = np.minimum.reduceat(arr, starts)
    for key, arr in (("z1", z), ("y1", y), ("x1", x)):
        out[key] = np.maximum.reduceat(arr, starts) + 1
    if image is not None:
        values = image.ravel()[flat].astype(np.float64)
        out["isum"] = np.add.reduceat(values, starts)
        out["isq"] = np.add.reduceat(values * values, starts)
        out["imin"] = np.minimum.reduceat(values, starts)
        out["imax"] = np.maximum.reduceat(values, starts)
    for key, arr in (sums or {}).items():
        out["sum:" + key] = np.add.reduceat(arr.ravel()[flat].astype(np.float64), starts)
    for key, arr in (mins or {}).items():
        out["min:" + key] = np.fmin.reduceat(arr.ravel()[flat].astype(np.float64), starts)
    return out


def combine(parts):
    """Merge per-block accumulators of the same objects."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    keys = parts[0].keys()
    ids = np.concatenate([p["label"] for p in parts])
    order, ids_sorted, starts = _group(ids)
    out = {"label": ids_sorted[starts]}
    for key in keys:
        if key == "label":
            continue
        values = np.concatenate([p[key] for p in parts])[order]
        if key in MIN or key.startswith("min:"):
            out[key] = np.fmin.reduceat(values, starts)
        elif key in MAX:
            out[key] = np.fmax.reduceat(values, starts)
        else:
            out[key] = np.add.reduceat(values, starts)
    return out


# --------------------------------------------------------------------------------------------------
# per-voxel fields for distance and contact with other structures


def _shifted(array, axis, step, fill=0):
    """``out[p] = array[p + step * e_axis]``, ``fill`` where that leaves the array."""
    out = np.full_like(array, fill)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    n = array.shape[axis]
    if abs(step) >= n:
        return out
    if step > 0:
        src[axis], dst[axis] = slice(step, None), slice(0, n - step)
    else:
        src[axis], dst[axis] = slice(0, n + step), slice(-step, None)
    out[tuple(dst)] = array[tuple(src)]
    return out


def contact_field(labels_ext, other_ext, inner, vs):
    """Per voxel of the core: physical area of its faces that touch ``other`` (not itself)."""
    face = (vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1])
    core = labels_ext[inner]
    field = np.zeros(core.shape, dtype=np.float64)
    for axis in range(3):
        for step in (-1, 1):
            # neighbours read from the grown block; outside the volume nothing touches
            o = _shifted(other_ext, axis, step)[inner]
            n = _shifted(labels_ext, axis, step)[inner]
            field += face[axis] * ((o != 0) & (n != core))
    return field


def distance_field(other_ext, inner, vs, max_distance_nm):
    """Per voxel of the core: physical distance to the nearest nonzero ``other`` voxel (inf if none
    within reach)."""

    if not (other_ext != 0).any():
        return np.full(tuple(s.stop - s.start for s in inner), np.inf)
    d = distance_transform(other_ext == 0, vs)[inner].astype(np.float64)
    if max_distance_nm is not None:
        d[d > max_distance_nm] = np.inf
    return d
