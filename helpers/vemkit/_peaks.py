"""Seeds for distance-transform watersheds: maxima of a distance map, spaced in nm.

:func:`spaced_peaks` keeps the highest peaks so that no two of one object are closer than a physical
distance; :func:`distance_seeds` turns a distance map into watershed markers (plain local maxima, or
h-maxima that ignore shallow necks). Used by :mod:`vemkit.segment_classic` and :mod:`vemkit.instances`.
Not for: the watershed itself or distance transforms (:mod:`vemkit._geometry`).
"""

from __future__ import annotations

import numpy as np

from ._masks import components

__all__ = ["distance_seeds", "spaced_peaks"]


def spaced_peaks(coords, heights, labels, voxel_size, min_distance_nm: float) -> np.ndarray:
    """Keep the highest peaks so that no two of one object are closer than ``min_distance_nm`` (physical).

    Parameters
    ----------
    coords : ndarray (N, 3) of int
        Peak positions in voxels.
    heights : ndarray (N,)
        Peak heights (the highest are kept first; ties keep their order).
    labels : ndarray (N,)
        The object of each peak: peaks of different objects never remove each other.
    voxel_size : sequence of 3 float
        ``(z, y, x)`` in nm.
    min_distance_nm : float
        Smallest distance between two kept peaks of one object.

    Returns
    -------
    ndarray (K, 3) of int
        The kept peaks, highest first.

    Examples
    --------
    >>> coords = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 5]])
    >>> spaced_peaks(coords, np.array([1.0, 2.0, 1.5]), np.array([1, 1, 1]), (10, 10, 10), 20)
    array([[0, 0, 1],
           [0, 0, 5]])
    """
    from scipy.spatial import cKDTree

    order = np.argsort(-heights, kind="stable")
    coords, labels = coords[order], labels[order]
    if min_distance_nm <= 0 or len(coords) < 2:
        return coords
    physical = coords * np.asarray(voxel_size)
    tree = cKDTree(physical)
    removed = np.zeros(len(coords), dtype=bool)
    for i in range(len(coords)):
        if removed[i]:
            continue
        for j in tree.query_ball_point(physical[i], r=min_distance_nm * (1 - 1e-9)):
            if j > i and labels[j] == labels[i]:  # every object keeps its highest peak
                removed[j] = True
    return coords[~removed]


def distance_seeds(distance, mask, voxel_size, min_distance_nm: float, h: float | None) -> np.ndarray:
    """int32 markers (1..K) at the maxima of ``distance``: one per component at least, none closer
    than ``min_distance_nm`` within a component; with ``h``, only maxima rising ``h`` nm above the
    saddle to a higher maximum (h-maxima), each seed being its whole maximal plateau.

    Examples
    --------
    >>> mask = np.zeros((1, 1, 9), bool); mask[0, 0, 1:8] = True
    >>> distance = np.where(mask, [[[0, 1, 2, 3, 4, 3, 2, 1, 0]]], 0).astype(float)
    >>> distance_seeds(distance, mask, (10, 10, 10), 20, None)[0, 0]
    array([0, 0, 0, 0, 1, 0, 0, 0, 0], dtype=int32)
    """
    from skimage.feature import peak_local_max

    labels, n = components(mask, 6)
    markers = np.zeros(mask.shape, dtype=np.int32)
    if n == 0:
        return markers
    if h is not None:
        return _h_maxima_seeds(distance, labels, voxel_size, min_distance_nm, h)
    # candidates within a box of min_distance_nm per axis (a box keeps scipy's maximum filter
    # separable, hence fast); the physical (Euclidean) spacing is enforced afterwards
    half = np.floor(min_distance_nm / np.asarray(voxel_size) + 1e-9).astype(int)
    footprint = np.ones(tuple(2 * half + 1), dtype=bool)
    coords = peak_local_max(distance, footprint=footprint, labels=labels, exclude_border=False, min_distance=1)
    index = tuple(coords.T)
    coords = spaced_peaks(coords, distance[index], labels[index], voxel_size, min_distance_nm)
    markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    return markers


def _h_maxima_seeds(distance, labels, voxel_size, min_distance_nm, h):
    """Markers from the h-maxima of each blob of ``labels``, kept spaced by ``min_distance_nm``."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima

    # h-maxima per blob, on its bounding box: the reconstruction behind h_maxima is costly per voxel
    # and blobs fill a small part of a volume
    maxima = np.zeros(labels.shape, dtype=bool)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == i
        crop = np.where(own, distance[box], 0).astype(np.float64)
        maxima[box] |= h_maxima(np.pad(crop, 1), float(h))[1:-1, 1:-1, 1:-1].astype(bool) & own
    regions, k = components(maxima, 26)
    if k == 0:
        return np.zeros(labels.shape, dtype=np.int32)
    # the highest voxel of each region stands for it (sorting only the few voxels of the regions)
    flat = np.flatnonzero(regions)
    ids, heights = regions.ravel()[flat], distance.ravel()[flat]
    order = np.lexsort((-heights, ids))
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    coords = np.column_stack(np.unravel_index(flat[first], regions.shape))
    heights = heights[first]
    # keep the highest regions spaced by min_distance_nm; each region seeds with all its voxels
    kept = spaced_peaks(coords, heights, labels[tuple(coords.T)], voxel_size, min_distance_nm)
    keep_ids = regions[tuple(kept.T)]
    lut = np.zeros(k + 1, dtype=np.int32)
    lut[keep_ids] = np.arange(1, len(keep_ids) + 1)
    return lut[regions]
