"""Quality checks of a segmentation or prediction that need no ground truth.

Each check looks for one error pattern typical of volume EM and returns a small dict: the numbers,
a table of findings (a pandas DataFrame) and, where one makes sense, a verdict. They are warnings
to look at, not scores: a real object can sit on a single section and a real mitochondrion can
end abruptly.

- :func:`single_section_objects`: objects on one z section only, often noise in anisotropic data.
- :func:`z_breaks`: objects whose cross-section area jumps between consecutive sections, or that
  vanish and reappear (a missing or misaligned section, a 2D segmentation stacked badly).
- :func:`block_seams`: label changes or probability jumps piled up on the borders of the blocks
  a volume was predicted in (a missing or too small halo, per-block normalisation).
- :func:`orthogonal_disagreement`: how much predictions made in xy, xz and yz planes disagree.

Inputs are numpy arrays, dask arrays or :class:`vemkit.Volume` objects of shape ``(z, y, x)``;
dask arrays and Volumes are reduced block by block and never loaded whole.

Not for: scores against ground truth (see :mod:`vemkit.metrics`).
"""

from __future__ import annotations

import math

import numpy as np

from ._contingency import confusion, count_pairs, default_labels, is_lazy, nanmean, scores_from_confusion
from ._inputs import as_volume_array
from ._volume import Volume

__all__ = [
    "single_section_objects",
    "z_breaks",
    "block_seams",
    "orthogonal_disagreement",
]

# A seam needs its border excess to stand this many standard errors above the interior's spread.
_MIN_Z_SCORE = 3.0


# --------------------------------------------------------------------------------------------------
# input handling


def _array(data, name: str, *, allow_float: bool, ndims=(3,)):
    """numpy or dask array of ``data`` (a Volume gives its dask array), checked; and whether lazy."""
    if isinstance(data, Volume):
        data = as_volume_array(data, name).data
    lazy = is_lazy(data)
    if not lazy:
        data = np.asarray(data)
    if data.ndim not in ndims:
        want = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(f"{name} must be a {want} array (z, y, x), got shape {tuple(data.shape)}")
    dtype = np.dtype(data.dtype)
    is_label = dtype == bool or np.issubdtype(dtype, np.integer)
    if not is_label and not (allow_float and np.issubdtype(dtype, np.floating)):
        what = "an integer, boolean or float" if allow_float else "an integer or boolean label"
        raise ValueError(f"{name} must be {what} array, got dtype {dtype}")
    return data, lazy


def _section_areas(labels, name: str = "labels"):
    """Voxels of every object (label > 0) on every z section: (label, z, area), sorted by label then z."""
    labels, lazy = _array(labels, name, allow_float=False)
    n_z = labels.shape[0]
    if lazy:
        import dask.array as da

        z = da.arange(n_z, chunks=(labels.chunks[0],), dtype=np.int64)[:, None, None]
        z = da.broadcast_to(z, labels.shape, chunks=labels.chunks)
    else:
        z = np.broadcast_to(np.arange(n_z, dtype=np.int64)[:, None, None], labels.shape)
    # the section index plays "prediction": one blockwise count gives every (object, section) area
    table = count_pairs(z, labels, None)[0]
    keep = table.truth > 0
    return table.truth[keep], table.pred[keep], table.counts[keep]


# --------------------------------------------------------------------------------------------------
# objects along z


def single_section_objects(labels, min_sections=2) -> dict:
    """Objects found on fewer than ``min_sections`` z sections (by default: on one section only).

    In anisotropic data (sections 30-60 nm thick, pixels 4-10 nm) an organelle spans several
    sections; an object on a single section is most often a speck of noise or a fragment cut off
    by a split error.

    Parameters
    ----------
    labels : array-like, dask array or Volume of shape (Z, Y, X), integer or bool
        Instance labels (0 = background).
    min_sections : int, default 2
        Objects on fewer distinct sections than this are reported.

    Returns
    -------
    dict
        ``objects``: DataFrame of the flagged objects with columns ``label, n_sections, z_first,
        z_last, n_voxels``; ``n_objects`` (all objects), ``n_flagged``, ``fraction_flagged``
        (of objects) and ``voxel_fraction_flagged`` (of object voxels; ``nan`` without objects),
        ``min_sections``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((3, 4, 4), np.uint16)
    >>> labels[:, :2, :2] = 1  # on every section
    >>> labels[1, 3, 3] = 2  # a speck on section 1
    >>> r = single_section_objects(labels)
    >>> r["n_objects"], r["n_flagged"], r["objects"]["label"].tolist(), r["objects"]["z_first"].tolist()
    (2, 1, [2], [1])
    """
    import pandas as pd

    if isinstance(min_sections, (bool, np.bool_)) or not isinstance(min_sections, (int, np.integer)) or (
        min_sections < 1
    ):
        raise ValueError(f"min_sections must be a positive integer, got {min_sections!r}")
    label, z, area = _section_areas(labels)
    ids, start = np.unique(label, return_index=True)  # rows are sorted by label, then z
    stop = np.r_[start[1:], label.size]
    per = pd.DataFrame(
        {
            "label": ids,
            "n_sections": stop - start,
            "z_first": z[start] if ids.size else z[:0],
            "z_last": z[stop - 1] if ids.size else z[:0],
            "n_voxels": np.add.reduceat(area, start) if ids.size else area[:0],
        }
    )
    flagged = per[per["n_sections"] < min_sections].reset_index(drop=True)
    n_objects = len(per)
    return {
        "objects": flagged,
        "n_objects": n_objects,
        "n_flagged": len(flagged),
        "fraction_flagged": len(flagged) / n_objects if n_objects else math.nan,
        "voxel_fraction_flagged": (
            float(flagged["n_voxels"].sum() / area.sum()) if n_objects else math.nan
        ),
        "min_sections": int(min_sections),
    }


def z_breaks(labels, threshold=0.75) -> dict:
    """Objects whose cross-section area jumps between consecutive z sections, or that skip sections.

    For each object present on at least two sections, the relative area change between two
    consecutive sections ``z - 1`` and ``z`` is ``|a(z) - a(z-1)| / max(a(z), a(z-1))``: 0 for the
    same area, 0.5 when it halves or doubles, 0.75 for a factor 4, close to 1 when it collapses.
    A label that is absent on some sections between its first and last one has *gaps* (it
    vanishes and reappears). Either is what a missing, misaligned or badly stacked section leaves
    behind, but also what a genuinely tapering or branching object does: look, then decide.

    Parameters
    ----------
    labels : array-like, dask array or Volume of shape (Z, Y, X), integer or bool
        Instance labels (0 = background).
    threshold : float in (0, 1], default 0.75
        Objects whose largest relative change reaches it are flagged (0.75: area changes by a
        factor of 4 or more between neighbouring sections).

    Returns
    -------
    dict
        ``objects``: DataFrame, one row per object on >= 2 sections, with columns ``label,
        z_first, z_last, n_sections, n_gaps`` (runs of missing sections), ``max_jump`` (largest
        relative change between two consecutive present sections; ``nan`` when it has none),
        ``jump_z`` (the section ``z`` at which it happens, compared with ``z - 1``) and
        ``flagged``; sorted by decreasing ``max_jump``. Also ``n_objects`` (objects on >= 2
        sections), ``n_flagged``, ``n_with_gaps``, ``n_with_jumps`` and ``threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 8, 8), np.uint8)
    >>> labels[:, :4, :4] = 1  # steady: 16 voxels on every section
    >>> labels[:, 4:, 4:] = 2
    >>> labels[2, 4:, 4:] = 0  # 2 vanishes on section 2 and comes back
    >>> labels[3, 4:6, :4] = 3  # 3 is on one section only: not reported here
    >>> labels[0, :4, :4] = 0
    >>> labels[0, 0, 0] = 1  # 1 grows from 1 to 16 voxels between sections 0 and 1
    >>> r = z_breaks(labels)
    >>> r["objects"][["label", "n_gaps", "max_jump", "jump_z", "flagged"]].values.tolist()
    [[1, 0, 0.9375, 1, True], [2, 1, 0.0, 1, True]]
    """
    import pandas as pd

    if isinstance(threshold, (bool, np.bool_)) or not 0 < float(threshold) <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    threshold = float(threshold)
    label, z, area = _section_areas(labels)
    same = label[1:] == label[:-1]  # consecutive rows of one object, z increasing
    dz = z[1:] - z[:-1]
    a0, a1 = area[:-1], area[1:]
    steps = same & (dz == 1)
    transitions = pd.DataFrame(
        {
            "label": label[1:][steps],
            "jump_z": z[1:][steps],
            "max_jump": np.abs(a1 - a0)[steps] / np.maximum(a0, a1)[steps],
        }
    )
    ids, start, n_sections = np.unique(label, return_index=True, return_counts=True)
    stop = start + n_sections
    per = pd.DataFrame(
        {
            "label": ids,
            "z_first": z[start] if ids.size else z[:0],
            "z_last": z[stop - 1] if ids.size else z[:0],
            "n_sections": n_sections,
            "n_gaps": np.bincount(
                np.searchsorted(ids, label[1:][same & (dz > 1)]), minlength=ids.size
            ).astype(np.int64),
        }
    )
    per = per[per["n_sections"] >= 2]
    if len(transitions):
        best = transitions.loc[transitions.groupby("label", sort=True)["max_jump"].idxmax()]
        per = per.merge(best, on="label", how="left")
    else:
        per = per.assign(max_jump=np.full(len(per), np.nan), jump_z=np.full(len(per), np.nan))
    per["jump_z"] = per["jump_z"].astype("Int64")  # nullable: an object may have gaps only
    with_jumps = per["max_jump"].fillna(0) >= threshold
    with_gaps = per["n_gaps"] > 0
    per["flagged"] = with_jumps | with_gaps
    per = per.sort_values(["max_jump", "label"], ascending=[False, True], na_position="last")
    per = per.reset_index(drop=True)
    return {
        "objects": per,
        "n_objects": len(per),
        "n_flagged": int(per["flagged"].sum()),
        "n_with_gaps": int(with_gaps.sum()),
        "n_with_jumps": int(with_jumps.sum()),
        "threshold": threshold,
    }


# --------------------------------------------------------------------------------------------------
# seams between blocks


def _check_block_shape(block_shape, n_spatial: int) -> tuple[int, ...]:
    if isinstance(block_shape, (int, np.integer)) and not isinstance(block_shape, (bool, np.bool_)):
        block_shape = (int(block_shape),) * n_spatial
    block_shape = tuple(block_shape)
    if len(block_shape) != n_spatial or not all(
        isinstance(b, (int, np.integer)) and not isinstance(b, (bool, np.bool_)) and b >= 1
        for b in block_shape
    ):
        raise ValueError(
            f"block_shape must be {n_spatial} positive integers (z, y, x) or one integer, got {block_shape!r}"
        )
    return tuple(int(b) for b in block_shape)


def _change_profiles(data, lazy: bool, is_label: bool, n_channels_axis: int):
    """Per axis, the summed change across each interface position (a 1D array per spatial axis)."""
    spatial = range(n_channels_axis, data.ndim)
    profiles = []
    for axis in spatial:
        lo = [slice(None)] * data.ndim
        hi = [slice(None)] * data.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        a, b = data[tuple(lo)], data[tuple(hi)]
        if is_label:
            change = a != b
        else:
            change = abs(b.astype(np.float64) - a.astype(np.float64))
        others = tuple(ax for ax in range(data.ndim) if ax != axis)
        profiles.append(change.sum(axis=others, dtype=np.float64))
    if lazy:
        import dask

        profiles = list(dask.compute(*profiles))
    return [np.asarray(p, dtype=np.float64) for p in profiles]


def block_seams(labels_or_prob, block_shape, *, threshold=1.5) -> dict:
    """Do label changes or probability jumps pile up on the borders of the processing blocks?

    A volume predicted block by block without enough halo shows seams: objects cut (and, for
    instance labels, renumbered) exactly at block borders, or probabilities that step there.
    Along each axis this counts, for every plane between two neighbouring voxel layers, how
    often the label changes across it (labels) or the mean absolute probability difference
    across it (probabilities). Planes on a block border are compared with the interior planes of
    the same axis, so anisotropy (more change between z sections than between x columns) does
    not matter. ``seam_score`` = changes observed on border planes / changes expected there from
    the interior planes: about 1 without seams. ``z_score`` = the border excess in units of the
    interior planes' own spread (standard error of the mean), guarding against chance in small
    volumes.

    Parameters
    ----------
    labels_or_prob : array-like, dask array or Volume
        Labels (integer or bool, shape (Z, Y, X)) or probabilities (float, shape (Z, Y, X) or
        (C, Z, Y, X) with a leading channel axis).
    block_shape : int or tuple of 3 int
        Shape ``(z, y, x)`` of the blocks the volume was processed in, starting at the origin.
        Axes with a single block or with blocks of one voxel are skipped.
    threshold : float, default 1.5
        ``seam_score`` from which (with ``z_score >= 3``) the verdict is ``"seams"``.

    Returns
    -------
    dict
        ``verdict``: ``"seams"``, ``"no seams"`` or ``"undetermined"`` (no axis with both border
        and interior planes, or no change at all); ``seam_score``, ``z_score``; ``border_fraction``
        (share of all change lying on border planes) and ``expected_border_fraction`` (the share
        expected without seams); ``kind`` (``"labels"`` or ``"probabilities"``); ``per_axis``:
        DataFrame with ``axis, block, n_border_planes, border_mean, interior_mean, ratio``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> smooth = np.cumsum(rng.normal(size=(8, 32, 32)), axis=2) / 10  # seam-free "probabilities"
    >>> block_seams(smooth, (8, 32, 16))["verdict"]
    'no seams'
    >>> stepped = smooth + (np.arange(32) >= 16)  # a jump of 1 at the border x = 16
    >>> r = block_seams(stepped, (8, 32, 16))
    >>> r["verdict"], r["seam_score"] > 5
    ('seams', True)
    """
    data, lazy, is_label = _seam_input(labels_or_prob, threshold)
    n_lead = data.ndim - 3
    shape = tuple(int(s) for s in data.shape[n_lead:])
    blocks = _check_block_shape(block_shape, 3)
    usable = [a for a in range(3) if 1 < blocks[a] < shape[a]]
    profiles = _change_profiles(data, lazy, is_label, n_lead) if usable else []
    if not all(np.all(np.isfinite(p)) for p in profiles):
        raise ValueError("labels_or_prob holds NaN or infinite values")
    per_axis, sums, interior_norm, border_norm = _axis_seams(profiles, usable, blocks, shape, data.size)
    border_obs, border_exp, total_obs = sums
    seam_score = _divide(border_obs, border_exp)
    if border_norm:
        z_score = _excess_z_score(np.concatenate(interior_norm), np.concatenate(border_norm))
    else:
        z_score = math.inf if border_obs > 0 else math.nan
    if not usable or (border_obs == 0 and border_exp == 0):
        verdict = "undetermined"
    elif seam_score >= threshold and z_score >= _MIN_Z_SCORE:
        verdict = "seams"
    else:
        verdict = "no seams"
    return {
        "verdict": verdict,
        "seam_score": seam_score,
        "z_score": z_score,
        "border_fraction": _divide(border_obs, total_obs),
        "expected_border_fraction": _divide(border_exp, border_exp + (total_obs - border_obs)),
        "kind": "labels" if is_label else "probabilities",
        "block_shape": blocks,
        "per_axis": per_axis,
    }


def _seam_input(labels_or_prob, threshold):
    """The checked input of :func:`block_seams`: ``(data, lazy, is_label)``."""
    data, lazy = _array(labels_or_prob, "labels_or_prob", allow_float=True, ndims=(3, 4))
    dtype = np.dtype(data.dtype)
    is_label = dtype == bool or np.issubdtype(dtype, np.integer)
    if is_label and data.ndim != 3:
        raise ValueError(f"labels must be 3D (z, y, x), got shape {tuple(data.shape)}")
    if isinstance(threshold, (bool, np.bool_)) or not float(threshold) > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return data, lazy, is_label


def _axis_seams(profiles, usable, blocks, shape, n_values):
    """Border planes against interior planes, per usable axis: the ``per_axis`` table, the summed
    ``(border observed, border expected, total)`` change, and every plane's change relative to its
    axis' interior mean (interior planes, border planes)."""
    import pandas as pd

    rows, border_obs, border_exp, total_obs, interior_norm, border_norm = [], 0.0, 0.0, 0.0, [], []
    for axis in usable:
        profile = profiles[axis] / (n_values / shape[axis])  # mean per plane
        position = np.arange(1, shape[axis])  # plane between voxel position - 1 and position
        on_border = position % blocks[axis] == 0
        border, interior = profile[on_border], profile[~on_border]
        interior_mean = float(interior.mean())
        border_mean = float(border.mean())
        rows.append(
            {
                "axis": "zyx"[axis],
                "block": blocks[axis],
                "n_border_planes": int(border.size),
                "border_mean": border_mean,
                "interior_mean": interior_mean,
                "ratio": _divide(border_mean, interior_mean),
            }
        )
        border_obs += float(border.sum())
        border_exp += border.size * interior_mean
        total_obs += float(profile.sum())
        if interior_mean > 0:
            interior_norm.append(interior / interior_mean)
            border_norm.append(border / interior_mean)
    columns = ["axis", "block", "n_border_planes", "border_mean", "interior_mean", "ratio"]
    per_axis = pd.DataFrame(rows, columns=columns)
    return per_axis, (border_obs, border_exp, total_obs), interior_norm, border_norm


def _excess_z_score(inside, on):
    """The border planes' mean excess over 1 in standard errors of the interior planes' spread."""
    spread = float(inside.std(ddof=1)) if inside.size > 1 else 0.0
    excess = float(on.mean()) - 1.0
    return _divide(excess, spread / math.sqrt(on.size))


def _divide(num: float, den: float) -> float:
    """num / den, with x / 0 = inf for x > 0 and 0 / 0 = nan."""
    if den:
        return num / den
    return math.inf if num > 0 else (-math.inf if num < 0 else math.nan)


# --------------------------------------------------------------------------------------------------
# predictions made in different orientations


def _as_labels(data, lazy: bool, threshold: float):
    """Labels of a prediction: labels as they are; probabilities thresholded (3D) or argmax (4D)."""
    dtype = np.dtype(data.dtype)
    if dtype == bool or np.issubdtype(dtype, np.integer):
        return data, False
    if data.ndim == 4:
        return data.argmax(axis=0), True
    return data >= threshold, True


def orthogonal_disagreement(pred_xy, pred_xz, pred_yz=None, *, threshold=0.5) -> dict:
    """How much predictions of the same volume made in differently oriented planes disagree.

    A 2D network applied to xy sections, then to xz and yz sections (empanada's orthoplane
    inference) should find the same objects; where the orientations disagree the model is
    unsure, or the data is anisotropic in a way the model did not learn. All predictions must
    already be on the same ``(z, y, x)`` grid.

    Parameters
    ----------
    pred_xy, pred_xz : array-like, dask array or Volume of the same shape
        Semantic labels (integer or bool, shape (Z, Y, X)), or probabilities (float): a (Z, Y, X)
        foreground probability is thresholded at ``threshold``, a (C, Z, Y, X) class
        probability map is turned into labels by argmax. Instance labels are not comparable
        voxel by voxel (ids differ between runs): pass ``labels > 0``.
    pred_yz : same, optional
        The third orientation, when it was predicted.
    threshold : float, default 0.5
        Foreground threshold of (Z, Y, X) probabilities.

    Returns
    -------
    dict
        ``pairs``: DataFrame, one row per pair of orientations, with ``pair`` (e.g. ``"xy-xz"``),
        ``disagreement`` (fraction of voxels whose labels differ), ``mean_iou`` (mean over
        foreground classes present, see :func:`vemkit.metrics.mean_iou`) and, for probabilities,
        ``mean_abs_difference``; ``disagreement``: fraction of voxels on which not all given
        orientations agree (0 for identical predictions); ``mean_iou``: mean over pairs;
        ``n_voxels``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((2, 4, 4), bool)
    >>> a[:, 1:3, 1:3] = True
    >>> r = orthogonal_disagreement(a, a.copy(), a.copy())
    >>> r["disagreement"], r["mean_iou"]
    (0.0, 1.0)
    >>> b = a.copy()
    >>> b[0, 1, 1] = False
    >>> orthogonal_disagreement(a, b)["disagreement"]
    0.03125
    """
    import pandas as pd

    named = {"xy": pred_xy, "xz": pred_xz}
    if pred_yz is not None:
        named["yz"] = pred_yz
    labels, probs, lazy_any = _orientation_labels(named, threshold)
    keys = list(labels)
    rows, lazy_terms = [], {}
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            a, b = keys[i], keys[j]
            rows.append(_pair_row(labels[a], labels[b], f"{a}-{b}"))
            if probs:
                difference = probs[a].astype(np.float64) - probs[b].astype(np.float64)
                lazy_terms[rows[-1]["pair"]] = abs(difference).mean()
    first = labels[keys[0]]
    agree = None
    for key in keys[1:]:
        same = first == labels[key]
        agree = same if agree is None else agree & same
    n_voxels = int(np.prod(first.shape))
    agree_count = agree.sum()
    if lazy_any:
        import dask

        agree_count, lazy_terms = dask.compute(agree_count, lazy_terms)
    for row in rows:
        if probs:
            row["mean_abs_difference"] = float(lazy_terms[row["pair"]])
    return {
        "pairs": pd.DataFrame(rows),
        "disagreement": 1.0 - int(agree_count) / n_voxels if n_voxels else math.nan,
        "mean_iou": nanmean(r["mean_iou"] for r in rows),
        "n_voxels": n_voxels,
    }


def _orientation_labels(named, threshold):
    """The checked predictions of :func:`orthogonal_disagreement` as labels: ``(labels by orientation,
    the probabilities they came from (empty for labels), whether any is lazy)``."""
    arrays, lazy_any, probs = {}, False, {}
    for key, value in named.items():
        data, lazy = _array(value, f"pred_{key}", allow_float=True, ndims=(3, 4))
        lazy_any |= lazy
        arrays[key] = data
    shapes = {key: tuple(int(s) for s in a.shape) for key, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"pred_{k} {s}" for k, s in shapes.items())
        raise ValueError(
            f"the predictions must have the same shape (resample them onto one grid), got {listed}"
        )
    labels = {}
    for key, data in arrays.items():
        labels[key], is_prob = _as_labels(data, lazy_any, threshold)
        if is_prob:
            probs[key] = data
    if probs and len(probs) != len(arrays):
        raise ValueError("give all predictions as labels or all as probabilities, not a mix")
    return labels, probs, lazy_any


def _pair_row(a, b, pair: str) -> dict:
    """Disagreement and mean IoU of two label volumes (one row of ``pairs``)."""
    cm, both_bool = confusion(a, b, None, None)
    scores = scores_from_confusion(cm, default_labels(cm, both_bool, None))
    total = int(cm.sum())
    return {
        "pair": pair,
        "disagreement": 1.0 - int(np.trace(cm)) / total if total else math.nan,
        "mean_iou": nanmean(s["iou"] for s in scores.values()),
    }
