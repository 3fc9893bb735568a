"""The classic heuristics the field started with: normalise, threshold, clean up, split with a watershed.

They are here as baselines, to show in numbers what they get right and why they fail on mitochondria
in EM (membranes, vesicles and other organelles are as dark as mitochondria; touching or elongated
mitochondria are merged or over-split). Every size is given in nanometres and converted per axis with
the voxel size ``(z, y, x)``, so nothing assumes isotropic voxels.

Not for: large volumes (these functions load their input into memory; crop first), or learned
segmentation (see the random-forest and network modules).
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import check_finite, check_grey_dtype, check_nonnegative
from ._inputs import load_in_memory
from ._masks import MAX_IN_MEMORY_BYTES, load_mask, require_voxel_size
from ._peaks import spaced_peaks
from ._voxel import check_voxel_size

__all__ = [
    "normalize",
    "threshold",
    "structuring_element",
    "clean",
    "watershed_split",
    "classic_pipeline",
    "MAX_IN_MEMORY_BYTES",
]

_METHODS = ("otsu", "li", "global", "local")


# --------------------------------------------------------------------------------------------------
# input handling


def _load_image(image, name: str = "image"):
    """``(grey values, voxel size it carries or None)``: finite integers or floats, in memory."""
    array, voxel_size, _ = load_in_memory(image, name, max_bytes=MAX_IN_MEMORY_BYTES)
    check_grey_dtype(array, name)
    check_finite(array, name)
    return array, voxel_size


# --------------------------------------------------------------------------------------------------
# normalisation and thresholds


def normalize(image, lower: float = 1, upper: float = 99, per_section: bool = False) -> np.ndarray:
    """Rescale grey values to 0..1 between two percentiles, clipping what lies outside.

    Parameters
    ----------
    image : array-like or Volume of shape (Z, Y, X)
        Grey values of any integer or float dtype (not modified).
    lower, upper : float
        Percentiles (0..100) mapped to 0 and 1; ``lower < upper``.
    per_section : bool
        Take the percentiles of each z-section separately: corrects contrast that drifts from
        section to section (common in serial-section and SBF-SEM stacks).

    Returns
    -------
    ndarray of float32, shape (Z, Y, X)
        Values in ``[0, 1]``; a section (or image) with a single grey value becomes 0.

    Raises
    ------
    ValueError
        If the image is not 3D, has NaNs, or the percentiles are out of order or range.

    Examples
    --------
    >>> import numpy as np
    >>> out = normalize(np.arange(101, dtype=np.uint8).reshape(1, 1, 101), lower=10, upper=90)
    >>> out.dtype, float(out.min()), float(out.max()), float(out[0, 0, 50])
    (dtype('float32'), 0.0, 1.0, 0.5)
    """
    array, _ = _load_image(image)
    lower, upper = float(lower), float(upper)
    if not (0 <= lower < upper <= 100):
        raise ValueError(f"need 0 <= lower < upper <= 100 (percentiles), got lower={lower}, upper={upper}")
    data = array.astype(np.float64, copy=False)
    axes = (1, 2) if per_section else None
    lo = np.percentile(data, lower, axis=axes, keepdims=True)
    hi = np.percentile(data, upper, axis=axes, keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.clip((data - lo) / safe, 0.0, 1.0)
    out = np.where(span > 0, out, 0.0)
    return out.astype(np.float32)


def _physical_radius_to_voxels(radius_nm: float, voxel_size) -> np.ndarray:
    return np.asarray([radius_nm / v for v in voxel_size], dtype=float)


def threshold(
    image,
    value: float | None = None,
    method: str | None = None,
    dark_objects: bool = True,
    *,
    voxel_size=None,
    block_size_nm: float = 2000.0,
    offset: float = 0.0,
    return_threshold: bool = False,
):
    """Segment objects by grey value alone.

    Mitochondria are dark in (heavy-metal stained) EM, so by default objects are the voxels at or
    below the threshold.

    Parameters
    ----------
    image : array-like or Volume of shape (Z, Y, X)
        Grey values (raw or from :func:`normalize`).
    value : float, optional
        A fixed threshold in the image's grey values (implies ``method="global"``).
    method : {"otsu", "li", "global", "local"}, optional
        ``"otsu"`` (default without ``value``) and ``"li"`` pick one threshold from the histogram of
        the whole volume (:func:`skimage.filters.threshold_otsu`, :func:`skimage.filters.threshold_li`);
        ``"global"`` uses ``value``; ``"local"`` compares each voxel with the Gaussian-weighted mean of
        its neighbourhood (:func:`skimage.filters.threshold_local`), a window ``block_size_nm`` wide
        converted per axis with ``voxel_size``.
    dark_objects : bool
        True: objects are ``image <= threshold`` (EM organelles); False: ``image > threshold``.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm; needed by ``"local"`` (a Volume's own voxel size is used if omitted).
    block_size_nm : float
        Width of the local window for ``"local"``, in nm; choose it larger than the objects.
    offset : float
        For ``"local"``: how far (in grey values) below the local mean a voxel must be to count as
        a dark object (above it, for bright objects).
    return_threshold : bool
        Also return the threshold: a float, or for ``"local"`` a float32 array of the image's shape.

    Returns
    -------
    mask : ndarray of bool, shape (Z, Y, X)
    threshold : float or ndarray
        Only if ``return_threshold`` is True.

    Raises
    ------
    ValueError
        On a non-3D image, an unknown method, ``value`` missing for (or given with) a method, a
        constant image for an automatic method, or a missing voxel size for ``"local"``.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.full((1, 4, 4), 200, np.uint8)
    >>> image[0, 1:3, 1:3] = 50   # a dark object
    >>> mask, t = threshold(image, return_threshold=True)
    >>> int(mask.sum()), 50 <= t < 200
    (4, True)
    >>> int(threshold(image, value=100, dark_objects=False).sum())  # the bright surroundings
    12
    """
    from skimage import filters

    array, carried = _load_image(image)
    if method is None:
        method = "global" if value is not None else "otsu"
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    if method == "global":
        if value is None:
            raise ValueError('method="global" needs a threshold value=')
        t = float(value)
    else:
        if value is not None:
            raise ValueError(
                f'value= is a fixed threshold for method="global"; method={method!r} picks its own'
            )
        if array.size == 0 or array.min() == array.max():
            raise ValueError(
                f"image has a single grey value; method={method!r} cannot separate objects from background"
            )
        if method == "otsu":
            t = float(filters.threshold_otsu(array.ravel()))
        elif method == "li":
            t = float(filters.threshold_li(array.ravel()))
        else:
            vs = require_voxel_size(voxel_size, carried, 'threshold(method="local")')
            width = check_nonnegative(block_size_nm, "block_size_nm")
            # odd window per axis; 1 along an axis whose voxels are wider than the window (thick sections)
            block = tuple(int(2 * (w // 2) + 1) for w in _physical_radius_to_voxels(width, vs))
            offset = float(offset)
            data = array.astype(np.float32, copy=False)
            t = filters.threshold_local(
                data, block, method="gaussian", offset=offset if dark_objects else -offset
            ).astype(np.float32, copy=False)
    mask = array <= t if dark_objects else array > t
    return (mask, t) if return_threshold else mask


# --------------------------------------------------------------------------------------------------
# morphology


def structuring_element(radius_nm: float, voxel_size) -> np.ndarray:
    """An ellipsoid of ``radius_nm`` in physical space, sampled on the voxel grid.

    Its half-extent along each axis is ``floor(radius_nm / voxel_size[axis])`` voxels, so on
    anisotropic data it is flatter in z; when the z voxels are thicker than the radius it is a 2D
    disk that acts on each section alone.

    Parameters
    ----------
    radius_nm : float
        Radius in nm (>= 0; 0 gives a single voxel).
    voxel_size : sequence of 3 float
        ``(z, y, x)`` in nm.

    Returns
    -------
    ndarray of bool, shape (2 rz + 1, 2 ry + 1, 2 rx + 1)

    Examples
    --------
    >>> structuring_element(10, (50, 5, 5)).shape   # thick sections: a flat disk, 2 voxels in-plane
    (1, 5, 5)
    >>> structuring_element(10, (5, 5, 5)).shape
    (5, 5, 5)
    """
    vs = np.asarray(check_voxel_size(voxel_size))
    radius_nm = check_nonnegative(radius_nm, "radius_nm")
    half = np.floor(radius_nm / vs + 1e-9).astype(int)
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    if radius_nm == 0:
        return np.ones((1, 1, 1), dtype=bool)
    dist2 = sum((g * v / radius_nm) ** 2 for g, v in zip(grids, vs))
    return dist2 <= 1 + 1e-9


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask)  # face connectivity, as skimage's default
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def clean(
    mask,
    voxel_size=None,
    *,
    min_size: int | None = None,
    min_size_nm3: float | None = None,
    opening_radius_nm: float = 0.0,
    fill_holes: bool | str = "auto",
) -> np.ndarray:
    """Tidy a binary mask: morphological opening, removal of small objects, hole filling.

    Parameters
    ----------
    mask : array-like or Volume of shape (Z, Y, X), bool (or integer: nonzero = object)
        The mask to clean (not modified).
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm; needed for any size given in nm (a Volume's own is used if omitted).
    min_size : int, optional
        Remove connected objects (face connectivity) of fewer voxels.
    min_size_nm3 : float, optional
        The same in physical volume (nm³), converted with ``voxel_size``; not together with ``min_size``.
    opening_radius_nm : float
        Radius of the opening's ellipsoidal structuring element (:func:`structuring_element`);
        removes protrusions and bridges thinner than about twice this. 0 skips the opening. Objects
        touching the volume border are not eroded from outside.
    fill_holes : {"auto", True, "section", False}
        True fills cavities enclosed in 3D; ``"section"`` fills holes in each z-section (for thick
        sections, where a hollow profile rarely closes in z, and for crops that cut objects at the top
        and bottom); False skips it. ``"auto"`` (default) is ``"section"`` when the z voxel size is more
        than twice the in-plane one, else True (also True when no voxel size is known).

    Returns
    -------
    ndarray of bool, shape (Z, Y, X)

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((1, 8, 8), bool)
    >>> mask[0, 1:6, 1:6] = True
    >>> mask[0, 3, 3] = False       # a hole
    >>> mask[0, 7, 7] = True        # a speck
    >>> out = clean(mask, voxel_size=(50, 5, 5), min_size=4)   # thick sections: holes filled per section
    >>> bool(out[0, 3, 3]), bool(out[0, 7, 7]), int(out.sum())
    (True, False, 25)
    """
    from scipy import ndimage as ndi

    array, carried = load_mask(mask)
    if min_size is not None and min_size_nm3 is not None:
        raise ValueError("give min_size (voxels) or min_size_nm3 (nm³), not both")
    if fill_holes not in ("auto", True, False, "section"):
        raise ValueError(f'fill_holes must be "auto", True, False or "section", got {fill_holes!r}')
    radius = check_nonnegative(opening_radius_nm, "opening_radius_nm")
    vs = None
    if radius > 0 or min_size_nm3 is not None:
        vs = require_voxel_size(voxel_size, carried, "a size in nm")
    elif voxel_size is not None or carried is not None:
        vs = require_voxel_size(voxel_size, carried, "clean")
    if fill_holes == "auto":
        fill_holes = "section" if vs is not None and vs[0] > vs[1] + vs[2] else True
    out = array.copy()

    if radius > 0:
        footprint = structuring_element(radius, vs)
        # border_value=1 on erosion: the volume edge is not a boundary of the object
        out = ndi.binary_dilation(ndi.binary_erosion(out, footprint, border_value=1), footprint)
        out &= array  # an opening never adds voxels

    if min_size_nm3 is not None:
        min_size = math.ceil(check_nonnegative(min_size_nm3, "min_size_nm3") / float(np.prod(vs)) - 1e-9)
    if min_size is not None:
        if isinstance(min_size, bool) or int(min_size) != min_size or min_size < 0:
            raise ValueError(f"min_size must be a non-negative integer (voxels), got {min_size!r}")
        if min_size > 1:
            out = _remove_small(out, int(min_size))

    if fill_holes == "section":
        out = np.stack([ndi.binary_fill_holes(section) for section in out]) if len(out) else out
    elif fill_holes:
        out = ndi.binary_fill_holes(out)
    return out.astype(bool, copy=False)


# --------------------------------------------------------------------------------------------------
# instances


def watershed_split(mask, voxel_size=None, min_distance_nm: float = 150.0) -> np.ndarray:
    """Split a binary mask into objects with a distance-transform watershed.

    Each object voxel gets its physical distance to the background
    (:func:`scipy.ndimage.distance_transform_edt` with ``sampling=voxel_size``); the maxima of that
    map that are at least ``min_distance_nm`` apart seed a watershed
    (:func:`skimage.segmentation.watershed`) of the inverted distance, restricted to the mask. Two
    touching round objects are separated at their neck; an elongated one may be cut into pieces.

    Parameters
    ----------
    mask : array-like or Volume of shape (Z, Y, X), bool (or integer: nonzero = object)
        Foreground to split.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted).
    min_distance_nm : float
        Smallest distance between two seeds, in nm; about the smallest object radius to keep whole.

    Returns
    -------
    ndarray of uint32, shape (Z, Y, X)
        Instance labels: 0 = background, 1..N = objects.

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.ogrid[:1, :9, :17]
    >>> two_disks = ((y - 4) ** 2 + (x - 4) ** 2 <= 16) | ((y - 4) ** 2 + (x - 12) ** 2 <= 16)
    >>> labels = watershed_split(two_disks, voxel_size=(50, 10, 10), min_distance_nm=40)
    >>> labels.dtype, int(labels.max())
    (dtype('uint32'), 2)
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    array, carried = load_mask(mask)
    vs = require_voxel_size(voxel_size, carried, "watershed_split")
    min_distance_nm = check_nonnegative(min_distance_nm, "min_distance_nm")
    labels = np.zeros(array.shape, dtype=np.uint32)
    if not array.any():
        return labels
    distance = ndi.distance_transform_edt(array, sampling=vs)
    components, _ = ndi.label(array)
    # candidate maxima within a box of min_distance_nm per axis (a box keeps scipy's maximum filter
    # separable, hence fast); the physical (Euclidean) spacing is enforced afterwards
    half = np.floor(min_distance_nm / np.asarray(vs) + 1e-9).astype(int)
    footprint = np.ones(tuple(2 * half + 1), dtype=bool)
    coords = peak_local_max(
        distance, footprint=footprint, labels=components, exclude_border=False, min_distance=1
    )
    index = tuple(coords.T)
    coords = spaced_peaks(coords, distance[index], components[index], vs, min_distance_nm)
    markers = np.zeros(array.shape, dtype=np.int32)
    markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    labels[...] = watershed(-distance, markers, mask=array)
    return labels


# --------------------------------------------------------------------------------------------------
# the whole baseline


def classic_pipeline(
    image,
    voxel_size=None,
    method: str = "otsu",
    *,
    value: float | None = None,
    dark_objects: bool = True,
    lower: float = 1,
    upper: float = 99,
    per_section: bool = False,
    block_size_nm: float = 2000.0,
    offset: float = 0.0,
    opening_radius_nm: float = 20.0,
    min_size_nm3: float = 1e6,
    fill_holes: bool | str = "auto",
    min_distance_nm: float = 150.0,
) -> dict:
    """Run the classic baseline: normalize → threshold → clean → watershed split.

    Parameters
    ----------
    image : array-like or Volume of shape (Z, Y, X)
        Grey values (dark objects by default).
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted).
    method : {"otsu", "li", "global", "local"}
        Threshold method (see :func:`threshold`); ``"global"`` needs ``value`` on the normalised
        0..1 scale.
    value : float, optional
        Fixed threshold for ``method="global"``, in normalised units (0..1).
    dark_objects : bool
        Objects are darker than their surroundings (EM organelles).
    lower, upper, per_section
        Passed to :func:`normalize`.
    block_size_nm, offset
        Passed to :func:`threshold` for ``method="local"`` (``offset`` in normalised units).
    opening_radius_nm, min_size_nm3, fill_holes
        Passed to :func:`clean`; the default minimum size, 10⁶ nm³, is a ball of about 62 nm radius.
    min_distance_nm : float
        Passed to :func:`watershed_split`.

    Returns
    -------
    dict
        ``mask`` (bool, cleaned), ``raw_mask`` (bool, straight from the threshold),
        ``instances`` (uint32 labels, 0 = background) and ``threshold`` (float on the normalised
        0..1 scale, or a float32 array for ``"local"``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(200, 10, (8, 32, 32))
    >>> image[2:6, 8:24, 8:24] -= 120          # one dark block
    >>> result = classic_pipeline(image, voxel_size=(40, 10, 10))
    >>> sorted(result), int(result["instances"].max()), 0 < result["threshold"] < 1
    (['instances', 'mask', 'raw_mask', 'threshold'], 1, True)
    """
    array, carried = _load_image(image)
    vs = require_voxel_size(voxel_size, carried, "classic_pipeline")
    norm = normalize(array, lower=lower, upper=upper, per_section=per_section)
    raw, t = threshold(
        norm,
        value=value,
        method=method,
        dark_objects=dark_objects,
        voxel_size=vs,
        block_size_nm=block_size_nm,
        offset=offset,
        return_threshold=True,
    )
    mask = clean(
        raw, vs, min_size_nm3=min_size_nm3, opening_radius_nm=opening_radius_nm, fill_holes=fill_holes
    )
    instances = watershed_split(mask, vs, min_distance_nm=min_distance_nm)
    return {"mask": mask, "raw_mask": raw, "instances": instances, "threshold": t}
