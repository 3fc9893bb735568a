"""What every display of a volume shares: its input as a lazy array, a few slices read in one pass, and
the display range (contrast).

Used by :mod:`vemkit.viz` (static figures and the orthoslice viewer) and :mod:`vemkit._annotator` (the
painting widget). Not for: drawing (matplotlib lives in :mod:`vemkit.viz`), or reading whole volumes.
"""

from __future__ import annotations

import math

import numpy as np

from ._inputs import as_volume_array
from ._volume import Volume, as_dask

__all__ = ["as_display_array", "check_contrast", "compute", "contrast_limits", "is_dask"]


def as_display_array(obj, name, *, voxel_size=None):
    """``(array, voxel_size, source)`` of a volume to display, without reading it.

    :func:`vemkit._inputs.as_volume_array` with a 2D (Y, X) array taken as one section, and two
    display extras: numpy and dask arrays pass through, other array-likes (zarr, h5py) are wrapped
    lazily in dask (so slices of them compute together), and a boolean mask becomes uint8.

    Examples
    --------
    >>> arr, vs, source = as_display_array(np.ones((4, 5), bool), "mask")
    >>> arr.shape, arr.dtype, vs, source
    ((1, 4, 5), dtype('uint8'), None, None)
    """
    if _is_other_array(obj):  # before adding an axis to a 2D section, which zarr and h5py cannot index
        obj = as_dask(obj)
    arr, vs, source = as_volume_array(obj, name, voxel_size=voxel_size, allow_2d=True)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr, vs, source


def _is_other_array(obj) -> bool:
    """An array-like that is neither numpy, dask nor a Volume (zarr, h5py...)."""
    if isinstance(obj, (np.ndarray, Volume)) or is_dask(obj):
        return False
    return all(hasattr(obj, a) for a in ("shape", "dtype", "ndim", "__getitem__"))


def is_dask(arr) -> bool:
    """Whether ``arr`` is a dask array (without importing dask when it is not loaded)."""
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(arr, da.Array)


def compute(*arrays):
    """Compute a few slices of numpy or dask arrays in one pass (shared chunks read once).

    Examples
    --------
    >>> [a.tolist() for a in compute(np.arange(3), [4, 5])]
    [[0, 1, 2], [4, 5]]
    """
    if any(is_dask(a) for a in arrays):
        import dask

        arrays = dask.compute(*arrays)
    return [np.asarray(a) for a in arrays]


def check_contrast(contrast):
    """``None``, ``"auto"`` or a validated ``(low, high)`` pair of floats.

    Examples
    --------
    >>> check_contrast([0, 255])
    (0.0, 255.0)
    >>> check_contrast("max")
    Traceback (most recent call last):
    ...
    ValueError: contrast must be None, 'auto' or (low, high), got 'max'
    """
    if contrast is None or (isinstance(contrast, str) and contrast == "auto"):
        return contrast
    if isinstance(contrast, str):
        raise ValueError(f"contrast must be None, 'auto' or (low, high), got {contrast!r}")
    try:
        lo, hi = (float(c) for c in contrast)
    except (TypeError, ValueError):
        raise ValueError(f"contrast must be None, 'auto' or (low, high), got {contrast!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"contrast must be (low, high) with low <= high, got {contrast!r}")
    return lo, hi


def contrast_limits(images, contrast):
    """Shared display range for ``images``: given, min/max (None) or 1-99 percentiles ("auto").

    Examples
    --------
    >>> contrast_limits([np.arange(101)], None), contrast_limits([np.arange(101)], "auto")
    ((0.0, 100.0), (1.0, 99.0))
    """
    if contrast is not None and not isinstance(contrast, str):
        lo, hi = contrast
    else:
        values = np.concatenate([np.asarray(im, dtype=np.float64).ravel() for im in images])
        if values.size > 4_000_000:  # percentiles of a regular subsample are plenty for a display range
            values = values[:: values.size // 2_000_000]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return 0.0, 1.0
        if contrast is None:
            lo, hi = float(values.min()), float(values.max())
        else:
            lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)
