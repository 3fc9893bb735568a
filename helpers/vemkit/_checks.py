"""Validators shared by every stage: dimensionality, shapes, dtypes, finite values, positive sizes.

Each raises a ``ValueError`` (``TypeError`` for a wrong kind of object) naming the input and what was
expected, in the spirit of scikit-image's ``_shared/utils.py::check_nD``. Not for: opening inputs
(:mod:`vemkit._inputs`) or voxel sizes (:mod:`vemkit._voxel`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_ndim",
    "check_same_shape",
    "check_integer_dtype",
    "check_grey_dtype",
    "check_finite",
    "check_number",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_nonempty",
    "check_finite_block",
    "check_annotation_values",
    "triple",
]


def check_ndim(array, ndims, name: str) -> None:
    """Raise unless ``array.ndim`` is in ``ndims`` (an int or a collection of ints).

    Examples
    --------
    >>> check_ndim(np.zeros((2, 3)), (2, 3), "image")
    >>> check_ndim(np.zeros(3), 3, "image")
    Traceback (most recent call last):
    ...
    ValueError: image must be 3D, got shape (3,)
    """
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    shape = tuple(int(s) for s in np.shape(array)) if not hasattr(array, "shape") else tuple(int(s) for s in array.shape)
    if len(shape) not in ndims:
        want = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(f"{name} must be {want}, got shape {shape}")


def check_same_shape(a, b, names: tuple[str, str]) -> None:
    """Raise unless ``a`` and ``b`` have the same shape.

    Examples
    --------
    >>> check_same_shape(np.zeros((1, 2)), np.zeros((1, 3)), ("image", "labels"))
    Traceback (most recent call last):
    ...
    ValueError: image and labels must have the same shape, got (1, 2) and (1, 3)
    """
    sa, sb = tuple(int(s) for s in a.shape), tuple(int(s) for s in b.shape)
    if sa != sb:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {sa} and {sb}")


def check_integer_dtype(array, name: str, what: str = "integer labels") -> None:
    """Raise unless ``array`` has an integer (or boolean) dtype.

    Examples
    --------
    >>> check_integer_dtype(np.zeros(2, np.float32), "labels")
    Traceback (most recent call last):
    ...
    ValueError: labels has dtype float32; expected integer labels
    """
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype == bool):
        raise ValueError(f"{name} has dtype {dtype}; expected {what}")


def check_grey_dtype(array, name: str) -> None:
    """Raise unless ``array`` holds grey values (integer or floating point, not boolean).

    Examples
    --------
    >>> check_grey_dtype(np.zeros(2, bool), "image")
    Traceback (most recent call last):
    ...
    ValueError: image must be a grey-value image (integer or float), got dtype bool
    """
    dtype = np.dtype(array.dtype)
    if dtype == bool or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"{name} must be a grey-value image (integer or float), got dtype {dtype}")


def check_finite(array, name: str) -> None:
    """Raise when a floating-point ``array`` (numpy or dask) holds NaN or infinite values, saying how
    many and where the first one is.

    Integer arrays pass without a scan. A dask array is scanned chunk by chunk.

    Examples
    --------
    >>> a = np.zeros((2, 2), np.float32); a[1, 0] = np.nan
    >>> check_finite(a, "image")
    Traceback (most recent call last):
    ...
    ValueError: image contains 1 NaN or infinite value(s), the first at (1, 0); fill or mask them first
    """
    if not np.issubdtype(np.dtype(array.dtype), np.floating):
        return
    bad = ~np.isfinite(array)
    count = int(bad.sum().compute() if hasattr(bad, "compute") else bad.sum())
    if count:
        flat = bad.ravel()
        first = int(flat.argmax().compute() if hasattr(flat, "compute") else flat.argmax())
        where = tuple(int(i) for i in np.unravel_index(first, tuple(int(s) for s in array.shape)))
        raise ValueError(
            f"{name} contains {count} NaN or infinite value(s), the first at {where}; fill or mask them first"
        )


def check_number(value, name: str) -> float:
    """``value`` as a finite float; a clear error for anything else (strings, NaN, infinity).

    Examples
    --------
    >>> check_number("2.5", "sigma")
    2.5
    >>> check_number(float("nan"), "minutes")
    Traceback (most recent call last):
    ...
    ValueError: minutes must be a finite number, got nan
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def check_nonnegative(value, name: str) -> float:
    """``value`` as a finite float >= 0.

    Examples
    --------
    >>> check_nonnegative(0, "radius")
    0.0
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_positive(value, name: str) -> float:
    """``value`` as a finite float > 0.

    Examples
    --------
    >>> check_positive(-1, "minutes")
    Traceback (most recent call last):
    ...
    ValueError: minutes must be a finite number > 0, got -1
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (booleans and non-integral floats refused).

    Examples
    --------
    >>> check_positive_int(4, "batch_size")
    4
    >>> check_positive_int(0, "batch_size")
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1, got 0
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        ok, value = True, int(value)
    if not ok or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def triple(value, name: str, minimum: int = 0):
    """``value`` (one int, or three) as a ``(z, y, x)`` tuple of ints >= ``minimum``; ``None`` passes.

    Examples
    --------
    >>> triple(4, "halo")
    (4, 4, 4)
    >>> triple((1, 64, 64), "block", minimum=1)
    (1, 64, 64)
    >>> triple((1, 2), "block")
    Traceback (most recent call last):
    ...
    ValueError: block must be three integers >= 0 (z, y, x), got (1, 2)
    """
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        value = (int(value),) * 3
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three integers >= {minimum} (z, y, x), got {value!r}") from None
    if len(out) != 3 or min(out) < minimum:
        raise ValueError(f"{name} must be three integers >= {minimum} (z, y, x), got {value!r}")
    return out


def check_nonempty(shape, name: str, source: str | None = None) -> None:
    """Raise when a volume of ``shape`` holds no voxels (an axis of length 0), naming it and its shape.

    Examples
    --------
    >>> check_nonempty((0, 64, 64), "image", "data.h5:/raw")
    Traceback (most recent call last):
    ...
    ValueError: image 'data.h5:/raw' has shape (0, 64, 64): it holds no voxels
    """
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) == 0:
        label = f"{name} {source!r}" if source else name
        raise ValueError(f"{label} has shape {shape}: it holds no voxels")


def _region_text(region) -> str:
    return ", ".join(f"{a} {s.start}:{s.stop}" for a, s in zip("zyx"[-len(region):], region))


def check_finite_block(block, name: str, region, halo=(0, 0, 0), shape=None) -> None:
    """Raise when a block read from a volume holds NaN or infinite values, naming the part of the
    volume read, how many bad voxels it holds and the first one (volume coordinates).

    ``block`` is the block as read: ``region`` (slices into the volume) grown by ``halo`` voxels of
    context on each side, mirrored where it leaves a volume of ``shape`` (mirrored copies are not
    counted twice). Integer blocks pass without a scan. For per-block checks as a volume is read, so
    that no pass over the whole volume is needed.

    Examples
    --------
    >>> b = np.zeros((1, 8, 8), np.float32); b[0, 3, 4] = np.inf
    >>> check_finite_block(b, "image", (slice(2, 3), slice(0, 8), slice(8, 16)))
    Traceback (most recent call last):
    ...
    ValueError: image holds 1 NaN or infinite value(s) in z 2:3, y 0:8, x 8:16 (read for the block z 2:3, y 0:8, x 8:16), the first at (z, y, x) = (2, 3, 12); fill or mask them first
    """
    if not np.issubdtype(np.dtype(block.dtype), np.floating):
        return
    bad = ~np.isfinite(block)
    if not bad.any():
        return
    halo = tuple(int(h) for h in halo)
    if shape is None:
        shape = tuple(s.stop for s in region)
    starts = np.array([s.start - h for s, h in zip(region, halo)])
    coords = np.argwhere(bad) + starts  # volume coordinates; mirrored copies fall outside the volume
    inside = np.all((coords >= 0) & (coords < np.asarray(shape)), axis=1)
    coords = coords[inside]
    where = tuple(int(c) for c in coords[0]) if len(coords) else "outside the volume"
    read = tuple(slice(max(0, s.start - h), min(int(n), s.stop + h)) for s, h, n in zip(region, halo, shape))
    raise ValueError(
        f"{name} holds {len(coords)} NaN or infinite value(s) in {_region_text(read)} (read for the block "
        f"{_region_text(region)}), the first at (z, y, x) = {where}; fill or mask them first"
    )


def check_annotation_values(labels, n_values: int | None = None, where: str = "") -> None:
    """Raise unless annotation values lie in 0..``n_values`` (0 = unlabelled, 1 = background, 2.. =
    classes); negative values are refused always. ``where`` says which part was checked (``"in section 3"``).

    The one check of annotation values that the U-Net and the random forest both make.

    Examples
    --------
    >>> check_annotation_values(np.array([[0, 1, 2]]), 2)
    >>> check_annotation_values(np.array([[0, -1, 2]]), 2, "in section 0")
    Traceback (most recent call last):
    ...
    ValueError: annotations hold negative value -1 in section 0; expected 0 = unlabelled, 1 = background, 2.. = classes
    """
    values = np.asarray(labels)
    if values.size == 0:
        return
    suffix = f" {where}" if where else ""
    low, high = int(values.min()), int(values.max())
    if low < 0:
        raise ValueError(f"annotations hold negative value {low}{suffix}; expected 0 = unlabelled, 1 = background, "
                         "2.. = classes")
    if n_values is not None and high > n_values:
        raise ValueError(f"annotations hold value {high}{suffix}, but the classes allow 0..{n_values}")
