"""Masks and label arrays in memory: the low-level steps the segmentation stages share.

Loading a mask as booleans (with the in-memory size limit), the voxel size a step in nm needs,
connected components with cc3d, the label dtype, removing ids by size, and giving unseeded blobs ids of
their own. Used by :mod:`vemkit.segment_classic` and :mod:`vemkit.instances`.
Not for: seeds and peaks (:mod:`vemkit._peaks`), block-by-block stitching (:mod:`vemkit._stitching`).
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_nonnegative

from ._inputs import load_in_memory

__all__ = [
    "MAX_IN_MEMORY_BYTES",
    "add_unseeded",
    "check_connectivity",
    "components",
    "filter_sizes",
    "label_dtype",
    "load_labels",
    "load_mask",
    "max_voxel_count",
    "min_voxel_count",
    "require_voxel_size",
]

#: Largest input (in bytes) the in-memory segmentation steps accept; crop bigger volumes first.
MAX_IN_MEMORY_BYTES = 4 * 1024**3

_UINT32_MAX = np.iinfo(np.uint32).max
_CONNECTIVITIES = (6, 18, 26)


def load_mask(mask, name: str = "mask"):
    """``(bool array, voxel size it carries or None)``: nonzero integers are foreground.

    Examples
    --------
    >>> array, vs = load_mask(np.array([[[0, 2, 1]]], np.uint8))
    >>> array, vs
    (array([[[False,  True,  True]]]), None)
    """
    array, voxel_size, _ = load_in_memory(mask, name, max_bytes=MAX_IN_MEMORY_BYTES)
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be a boolean (or integer label) array, got dtype {array.dtype}")
        array = array != 0
    return array, voxel_size


def load_labels(labels, name: str = "labels") -> np.ndarray:
    """Instance labels in memory: integers without negative ids (booleans become uint8).

    Examples
    --------
    >>> load_labels(np.array([[[-1, 2]]]))
    Traceback (most recent call last):
    ...
    ValueError: labels must not hold negative ids (0 = background, 1.. = objects)
    """
    array, _, _ = load_in_memory(labels, name, max_bytes=MAX_IN_MEMORY_BYTES)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer instance labels, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise ValueError(f"{name} must not hold negative ids (0 = background, 1.. = objects)")
    return array


def check_connectivity(connectivity) -> int:
    """``connectivity`` as 6, 18 or 26 (3D neighbours); a clear error otherwise."""
    if isinstance(connectivity, bool) or connectivity not in _CONNECTIVITIES:
        raise ValueError(f"connectivity must be 6, 18 or 26 (3D neighbours), got {connectivity!r}")
    return int(connectivity)


def min_voxel_count(size_nm3, voxel_size, name: str) -> int | None:
    """A minimum size in nm³ as a number of voxels, rounded up (an object of exactly that size is
    kept); None stays None.

    Examples
    --------
    >>> min_voxel_count(8000, (10, 10, 20), "min_size_nm3"), min_voxel_count(None, None, "min_size_nm3")
    (4, None)
    """
    return _voxel_count(size_nm3, voxel_size, name, math.ceil, -1e-9)


def max_voxel_count(size_nm3, voxel_size, name: str) -> int | None:
    """A maximum size in nm³ as a number of voxels, rounded down; None stays None."""
    return _voxel_count(size_nm3, voxel_size, name, math.floor, 1e-9)


def _voxel_count(size_nm3, voxel_size, name, rounding, nudge):
    if size_nm3 is None:
        return None
    size = check_nonnegative(size_nm3, name)
    if voxel_size is None:
        raise ValueError(f"{name} is in nm³ and needs voxel_size=(z, y, x) in nm")
    return rounding(size / float(np.prod(voxel_size)) + nudge)


def require_voxel_size(explicit, carried, what: str):
    """The voxel size to use: the one given, else the one the input carries, else an error.

    Examples
    --------
    >>> require_voxel_size(None, (40, 8, 8), "clean")
    (40.0, 8.0, 8.0)
    >>> require_voxel_size(None, None, "watershed_split")
    Traceback (most recent call last):
    ...
    ValueError: watershed_split needs voxel_size=(z, y, x) in nm (vemkit never assumes isotropic 1 nm voxels)
    """
    from ._voxel import check_voxel_size

    if explicit is not None:
        return check_voxel_size(explicit)
    if carried is not None:
        return check_voxel_size(carried)
    raise ValueError(f"{what} needs voxel_size=(z, y, x) in nm (vemkit never assumes isotropic 1 nm voxels)")


def label_dtype(n: int):
    """uint32 unless there are more objects than it can number.

    Examples
    --------
    >>> label_dtype(7).__name__, label_dtype(2**33).__name__
    ('uint32', 'uint64')
    """
    return np.uint32 if n <= _UINT32_MAX else np.uint64


def components(mask: np.ndarray, connectivity: int = 6):
    """``(uint32 labels, count)``: connected components of a boolean mask (cc3d).

    Examples
    --------
    >>> components(np.array([[[1, 0, 1]]], bool))
    (array([[[1, 0, 2]]], dtype=uint32), 2)
    """
    import cc3d

    return cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=bool), connectivity=connectivity, return_N=True, out_dtype=np.uint32
    )


def filter_sizes(labels: np.ndarray, min_voxels, max_voxels) -> np.ndarray:
    """A copy of ``labels`` without the ids of fewer than ``min_voxels`` or more than ``max_voxels``
    voxels (either may be None).

    Examples
    --------
    >>> filter_sizes(np.array([[[1, 1, 2, 3, 3, 3]]]), 2, 2)
    array([[[1, 1, 0, 0, 0, 0]]])
    """
    import fastremap

    ids, counts = fastremap.unique(labels, return_counts=True)
    drop = np.zeros(len(ids), dtype=bool)
    if min_voxels is not None:
        drop |= counts < min_voxels
    if max_voxels is not None:
        drop |= counts > max_voxels
    drop &= ids != 0
    if not drop.any():
        return labels.copy()
    return fastremap.mask(labels, ids[drop], in_place=False)


def add_unseeded(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give the parts of the mask that no seed reached (blobs without a seed) their own ids.

    Examples
    --------
    >>> add_unseeded(np.array([[[1, 0, 0]]], np.uint32), np.array([[[1, 0, 1]]], bool))
    array([[[1, 0, 2]]], dtype=uint32)
    """
    rest = mask & (labels == 0)
    if not rest.any():
        return labels
    extra, n = components(rest, 6)
    top = int(labels.max(initial=0))
    out = labels.astype(label_dtype(top + n), copy=True)
    out[rest] = extra[rest] + top
    return out
