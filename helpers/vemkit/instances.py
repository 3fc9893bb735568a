"""From semantic masks or probability maps to instance labels, in memory or block by block.

A semantic mask says *what* a voxel is (mitochondrion or not); instance labels say *which* object it
belongs to (0 = background, 1..N = objects). This module turns the first into the second:

- :func:`connected_components`: every connected blob is one object (cc3d, 6/18/26-connectivity).
- :func:`distance_watershed`: splits touching objects at their necks, from the maxima of an
  anisotropy-aware distance transform (edt) flooded by a watershed.
- :func:`seeded_watershed`: the same with the extra targets a network can predict (a boundary map,
  a distance map), which separate touching objects far better than shape alone.
- :func:`size_filter` and :func:`relabel_sequential` tidy the result.
- :func:`instances_blockwise` does connected components or the distance watershed on volumes of any
  size (OME-Zarr, zarr, dask), block by block with bounded memory, and stitches the ids across block
  faces so that the result equals the whole-volume one (connected components) or is very close to it
  (watershed).

Every size is in nm or nm³ and converted per axis with the voxel size ``(z, y, x)``: nothing assumes
isotropic voxels. The in-memory functions load their input (crop large volumes first, or use
:func:`instances_blockwise`).

Not for: thresholding grey values (:mod:`vemkit.segment_classic`), predicting probabilities
(the network modules), measuring objects (:mod:`vemkit.measure`) or scoring them (:mod:`vemkit.metrics`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._inputs import as_volume_array

from ._geometry import distance_transform

__all__ = [
    "connected_components",
    "distance_watershed",
    "seeded_watershed",
    "size_filter",
    "relabel_sequential",
    "instances_blockwise",
]

_CONNECTIVITIES = (6, 18, 26)
_UINT32_MAX = np.iinfo(np.uint32).max


# --------------------------------------------------------------------------------------------------
# small helpers


def _label_dtype(n: int):
    """uint32 unless there are more objects than it can number."""
    return np.uint32 if n <= _UINT32_MAX else np.uint64


def _check_connectivity(connectivity) -> int:
    if isinstance(connectivity, bool) or connectivity not in _CONNECTIVITIES:
        raise ValueError(f"connectivity must be 6, 18 or 26 (3D neighbours), got {connectivity!r}")
    return int(connectivity)


def _min_voxels(size_nm3, voxel_size, name: str) -> int | None:
    """A size in nm³ as a number of voxels (rounded up: an object of exactly that size is kept)."""
    from .segment_classic import _check_nonnegative

    if size_nm3 is None:
        return None
    size = _check_nonnegative(size_nm3, name)
    if voxel_size is None:
        raise ValueError(f"{name} is in nm³ and needs voxel_size=(z, y, x) in nm")
    return math.ceil(size / float(np.prod(voxel_size)) - 1e-9)


def _max_voxels(size_nm3, voxel_size, name: str) -> int | None:
    from .segment_classic import _check_nonnegative

    if size_nm3 is None:
        return None
    size = _check_nonnegative(size_nm3, name)
    if voxel_size is None:
        raise ValueError(f"{name} is in nm³ and needs voxel_size=(z, y, x) in nm")
    return math.floor(size / float(np.prod(voxel_size)) + 1e-9)


def _components(mask: np.ndarray, connectivity: int = 6):
    import cc3d

    return cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=bool), connectivity=connectivity, return_N=True, out_dtype=np.uint32
    )


def _load_labels(labels, name: str = "labels") -> np.ndarray:
    from .segment_classic import _load

    array, _ = _load(labels, name)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer instance labels, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise ValueError(f"{name} must not hold negative ids (0 = background, 1.. = objects)")
    return array


# --------------------------------------------------------------------------------------------------
# connected components


def connected_components(mask, connectivity: int = 26, min_size_nm3: float | None = None, voxel_size=None):
    """Label every connected blob of a mask as one object.

    Parameters
    ----------
    mask : array-like or Volume of shape (Z, Y, X), bool or integer
        Foreground = nonzero (for one class of a semantic mask pass ``semantic == k``). Not modified.
    connectivity : {26, 18, 6}
        Which neighbours connect: 6 shares a face, 18 also an edge, 26 also a corner.
    min_size_nm3 : float, optional
        Remove objects smaller than this volume (nm³); needs the voxel size.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted).

    Returns
    -------
    ndarray of uint32, shape (Z, Y, X)
        0 = background, objects numbered 1..N in the order their first voxel is met in (z, y, x)
        raster order (uint64 only past 2³² - 1 objects).

    Raises
    ------
    ValueError
        A mask that is not 3D or not bool/integer, a bad connectivity, or a size without voxel size.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((1, 3, 5), bool)
    >>> mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 2, 4] = True   # two touch at a corner
    >>> connected_components(mask, connectivity=26)[0]
    array([[1, 0, 0, 0, 0],
           [0, 1, 0, 0, 0],
           [0, 0, 0, 0, 2]], dtype=uint32)
    >>> int(connected_components(mask, connectivity=6).max())
    3
    """
    import cc3d

    from .segment_classic import _load_mask

    array, carried = _load_mask(mask)
    connectivity = _check_connectivity(connectivity)
    vs = _resolve_voxel_size(voxel_size, carried, required=min_size_nm3 is not None, what="min_size_nm3")
    labels, n = cc3d.connected_components(
        np.ascontiguousarray(array), connectivity=connectivity, return_N=True,
        out_dtype=np.uint64 if array.size > _UINT32_MAX else np.uint32,
    )
    min_voxels = _min_voxels(min_size_nm3, vs, "min_size_nm3")
    if min_voxels is not None and min_voxels > 1 and n:
        labels = _filter_sizes(labels, min_voxels, None)
        labels = relabel_sequential(labels)
    return labels.astype(_label_dtype(int(labels.max(initial=0))), copy=False)


def _resolve_voxel_size(explicit, carried, required: bool, what: str):
    from .segment_classic import _voxel_size

    if explicit is None and carried is None and not required:
        return None
    return _voxel_size(explicit, carried, what)


# --------------------------------------------------------------------------------------------------
# size filter and relabelling


def _filter_sizes(labels: np.ndarray, min_voxels, max_voxels) -> np.ndarray:
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


def size_filter(labels, min_size_nm3: float | None = None, max_size_nm3: float | None = None, *,
                voxel_size=None, relabel: bool = False) -> np.ndarray:
    """Remove objects smaller or larger than given physical volumes.

    Parameters
    ----------
    labels : array-like or Volume of shape (Z, Y, X), integer
        Instance labels (0 = background). Not modified.
    min_size_nm3, max_size_nm3 : float, optional
        Keep objects whose volume (voxel count × voxel volume) lies in ``[min, max]`` nm³.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted); required with any size.
    relabel : bool
        Renumber the kept objects 1..N (:func:`relabel_sequential`); by default ids are kept.

    Returns
    -------
    ndarray of shape (Z, Y, X)
        Same dtype as ``labels`` (uint32 when relabelled); removed objects become 0.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[[1, 1, 1, 0, 2, 0, 3, 3]]])
    >>> size_filter(labels, min_size_nm3=2000, voxel_size=(10, 10, 10))   # 2 voxels and more
    array([[[1, 1, 1, 0, 0, 0, 3, 3]]])
    >>> size_filter(labels, min_size_nm3=2000, voxel_size=(10, 10, 10), relabel=True)
    array([[[1, 1, 1, 0, 0, 0, 2, 2]]], dtype=uint32)
    """
    array = _load_labels(labels)
    carried = getattr(labels, "voxel_size", None)
    vs = _resolve_voxel_size(voxel_size, carried, required=True, what="size_filter")
    out = _filter_sizes(array, _min_voxels(min_size_nm3, vs, "min_size_nm3"),
                        _max_voxels(max_size_nm3, vs, "max_size_nm3"))
    return relabel_sequential(out) if relabel else out


def relabel_sequential(labels, return_mapping: bool = False):
    """Renumber instance labels 1..N, in the order each id is first met in raster order.

    Parameters
    ----------
    labels : array-like of shape (Z, Y, X), integer
        Instance labels (0 stays 0). Not modified.
    return_mapping : bool
        Also return a dict ``{old id: new id}``.

    Returns
    -------
    ndarray of uint32 (uint64 past 2³² - 1 objects)
    dict, optional

    Examples
    --------
    >>> import numpy as np
    >>> relabel_sequential(np.array([[[0, 7, 7, 3, 100]]]))
    array([[[0, 1, 1, 2, 3]]], dtype=uint32)
    """
    import fastremap

    array = labels if isinstance(labels, np.ndarray) else _load_labels(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integer instance labels, got dtype {array.dtype}")
    out, mapping = fastremap.renumber(np.array(array, copy=True, order="C"), preserve_zero=True, in_place=True)
    n = max(mapping.values(), default=0)
    out = out.astype(_label_dtype(int(n)), copy=False)
    if return_mapping:
        return out, {int(k): int(v) for k, v in mapping.items() if k != 0}
    return out


# --------------------------------------------------------------------------------------------------
# distance watershed


def _distance_seeds(distance, mask, voxel_size, min_distance_nm: float, h: float | None) -> np.ndarray:
    """int32 markers (1..K) at the maxima of ``distance``: one per component at least, none closer
    than ``min_distance_nm`` within a component; with ``h``, only maxima rising ``h`` nm above the
    saddle to a higher maximum (h-maxima), each seed being its whole maximal plateau."""
    from skimage.feature import peak_local_max

    from .segment_classic import _spaced_peaks

    components, n = _components(mask, 6)
    markers = np.zeros(mask.shape, dtype=np.int32)
    if n == 0:
        return markers
    if h is None:
        # candidates within a box of min_distance_nm per axis (a box keeps scipy's maximum filter
        # separable, hence fast); the physical (Euclidean) spacing is enforced afterwards
        half = np.floor(min_distance_nm / np.asarray(voxel_size) + 1e-9).astype(int)
        footprint = np.ones(tuple(2 * half + 1), dtype=bool)
        coords = peak_local_max(distance, footprint=footprint, labels=components, exclude_border=False,
                                min_distance=1)
        index = tuple(coords.T)
        coords = _spaced_peaks(coords, distance[index], components[index], voxel_size, min_distance_nm)
        markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
        return markers
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima

    # h-maxima per blob, on its bounding box: the reconstruction behind h_maxima is costly per voxel
    # and blobs fill a small part of a volume
    maxima = np.zeros(mask.shape, dtype=bool)
    for i, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        own = components[box] == i
        crop = np.where(own, distance[box], 0).astype(np.float64)
        maxima[box] |= h_maxima(np.pad(crop, 1), float(h))[1:-1, 1:-1, 1:-1].astype(bool) & own
    regions, k = _components(maxima, 26)
    if k == 0:
        return markers
    # the highest voxel of each region stands for it (sorting only the few voxels of the regions)
    flat = np.flatnonzero(regions)
    ids, heights = regions.ravel()[flat], distance.ravel()[flat]
    order = np.lexsort((-heights, ids))
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    coords = np.column_stack(np.unravel_index(flat[first], regions.shape))
    heights = heights[first]
    # keep the highest regions spaced by min_distance_nm; each region seeds with all its voxels
    kept = _spaced_peaks(coords, heights, components[tuple(coords.T)], voxel_size, min_distance_nm)
    keep_ids = regions[tuple(kept.T)]
    lut = np.zeros(k + 1, dtype=np.int32)
    lut[keep_ids] = np.arange(1, len(keep_ids) + 1)
    return lut[regions]


def distance_watershed(mask, voxel_size=None, *, min_distance_nm: float = 100.0, h: float | None = 20.0,
                       min_size_nm3: float | None = None) -> np.ndarray:
    """Split a mask into objects at their necks: a watershed of the anisotropic distance transform.

    Every foreground voxel gets its physical distance to the background (the ``edt`` package with
    ``anisotropy=voxel_size``, so a 40 nm section counts 40 nm). The centres of objects are maxima
    of that map; each maximum seeds a region, and :func:`skimage.segmentation.watershed` floods the
    inverted distance within the mask, so touching objects meet where the mask is narrowest.

    Parameters
    ----------
    mask : array-like or Volume of shape (Z, Y, X), bool or integer
        Foreground = nonzero. Not modified.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted).
    min_distance_nm : float
        No two seeds of one connected blob are closer than this (nm): about the smallest object
        radius to keep whole. Larger values split less.
    h : float, optional
        Keep only maxima that rise at least ``h`` nm above the saddle joining them to a higher one
        (h-maxima, :func:`skimage.morphology.h_maxima`): two objects are split only where the neck is
        at least ``h`` nm narrower (in radius) than the thinner object. This stops bumpy or bent
        elongated objects (mitochondria) being cut into pieces; ``None`` takes every local maximum
        spaced by ``min_distance_nm`` (the classic behaviour, which over-splits them). On the
        phantom's mitochondria (150-400 nm thick) 20 nm splits most touching pairs and few single
        ones; scale it with the objects' thickness.
    min_size_nm3 : float, optional
        Remove objects smaller than this (nm³) after the split (their voxels become background).

    Returns
    -------
    ndarray of uint32, shape (Z, Y, X)
        0 = background, 1..N = objects (every connected blob gets at least one).

    See Also
    --------
    vemkit.segment_classic.watershed_split : the same idea in the classic baseline (scipy distance,
        no h-maxima, no size filter).

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.ogrid[:9, :9, :17]
    >>> two = ((z - 4) ** 2 + (y - 4) ** 2 + (x - 4) ** 2 <= 16) | ((z - 4) ** 2 + (y - 4) ** 2 + (x - 12) ** 2 <= 16)
    >>> labels = distance_watershed(two, voxel_size=(10, 10, 10), min_distance_nm=40, h=20)
    >>> labels.dtype, int(labels.max()), int(labels[4, 4, 4]) != int(labels[4, 4, 12])
    (dtype('uint32'), 2, True)
    >>> int(distance_watershed(two, voxel_size=(10, 10, 10), min_distance_nm=40, h=45).max())  # neck too shallow
    1
    """
    from skimage.segmentation import watershed

    from .segment_classic import _check_nonnegative, _load_mask

    array, carried = _load_mask(mask)
    vs = _resolve_voxel_size(voxel_size, carried, required=True, what="distance_watershed")
    min_distance_nm = _check_nonnegative(min_distance_nm, "min_distance_nm")
    if h is not None:
        h = _check_nonnegative(h, "h")
    min_voxels = _min_voxels(min_size_nm3, vs, "min_size_nm3")
    if not array.any():
        return np.zeros(array.shape, dtype=np.uint32)
    distance = distance_transform(array, vs)
    markers = _distance_seeds(distance, array, vs, min_distance_nm, h)
    labels = watershed(-distance, markers, mask=array).astype(np.uint32, copy=False)
    labels = _add_unseeded(labels, array)
    if min_voxels is not None and min_voxels > 1:
        labels = _filter_sizes(labels, min_voxels, None)
    return relabel_sequential(labels)


def _add_unseeded(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give the parts of the mask that no seed reached (blobs without a seed) their own ids."""
    rest = mask & (labels == 0)
    if not rest.any():
        return labels
    extra, n = _components(rest, 6)
    top = int(labels.max(initial=0))
    out = labels.astype(_label_dtype(top + n), copy=True)
    out[rest] = extra[rest] + top
    return out


# --------------------------------------------------------------------------------------------------
# seeded watershed on network outputs


def _as_map(array, name: str, shape=None) -> np.ndarray:
    """A probability-like map as float32: floats as they are, unsigned integers scaled to 0..1."""
    from .segment_classic import _load

    data, _ = _load(array, name)
    if shape is not None and data.shape != shape:
        raise ValueError(f"{name} has shape {data.shape}; expected {shape} like foreground_prob")
    if data.dtype == bool:
        return data.astype(np.float32)
    if np.issubdtype(data.dtype, np.unsignedinteger):
        return data.astype(np.float32) / np.float32(np.iinfo(data.dtype).max)
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"{name} must be a float map (or unsigned integers scaled to 0..max), got {data.dtype}")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return data


def seeded_watershed(foreground_prob, boundary_prob=None, distance=None, *, threshold: float = 0.5,
                     seed_threshold: float = 0.5, voxel_size=None, min_seed_size_nm3: float | None = None,
                     min_size_nm3: float | None = None, min_distance_nm: float = 100.0,
                     h: float | None = 20.0) -> np.ndarray:
    """Instances from network outputs: seeds inside objects, flooded on the predicted boundaries.

    A network trained for instance segmentation predicts more than the foreground: a boundary map
    (high on object outlines, including where two objects touch) and/or a distance map (high at object
    centres). Seeds come from where the network is sure to be deep inside one object; the watershed
    then grows them over the foreground, meeting on the boundaries.

    - ``distance`` given: seeds are ``distance > seed_threshold`` (in the map's own units, e.g. a
      normalised 0..1 distance); flooded on ``boundary_prob`` if given, else on ``-distance``.
    - only ``boundary_prob`` given: seeds are ``foreground_prob - boundary_prob > seed_threshold``;
      flooded on ``boundary_prob``.
    - neither: seeds and flooding from the distance transform of the foreground mask, as
      :func:`distance_watershed`.

    Parameters
    ----------
    foreground_prob : array-like or Volume of shape (Z, Y, X)
        Foreground probability: float in 0..1, or uint8/uint16 scaled to their full range.
    boundary_prob : array-like of shape (Z, Y, X), optional
        Boundary probability, same scaling.
    distance : array-like of shape (Z, Y, X), optional
        Predicted distance to the boundary (any units, larger inside).
    threshold : float
        Foreground = ``foreground_prob > threshold``.
    seed_threshold : float
        See above.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm; needed for sizes and for the fallback without boundary or distance.
    min_seed_size_nm3 : float, optional
        Ignore seeds smaller than this (nm³): specks of noise in the predictions.
    min_size_nm3 : float, optional
        Remove objects smaller than this (nm³) at the end.
    min_distance_nm, h : float
        Seed spacing and depth for the fallback (see :func:`distance_watershed`).

    Returns
    -------
    ndarray of uint32, shape (Z, Y, X)
        0 = background, 1..N = objects; foreground blobs that hold no seed become objects of their own.

    Examples
    --------
    >>> import numpy as np
    >>> fg = np.zeros((1, 5, 9), np.float32)
    >>> fg[0, 1:4, 1:8] = 1.0                      # one blob ...
    >>> boundary = np.zeros_like(fg)
    >>> boundary[0, :, 4] = 0.9                    # ... that the network says is two objects
    >>> labels = seeded_watershed(fg, boundary)
    >>> labels[0, 2]                               # the boundary column joins one side or the other
    array([0, 1, 1, 1, 2, 2, 2, 2, 0], dtype=uint32)
    """
    from skimage.segmentation import watershed

    fg = _as_map(foreground_prob, "foreground_prob")
    carried = getattr(foreground_prob, "voxel_size", None)
    bd = None if boundary_prob is None else _as_map(boundary_prob, "boundary_prob", fg.shape)
    dist = None if distance is None else _as_map(distance, "distance", fg.shape)
    threshold, seed_threshold = float(threshold), float(seed_threshold)
    needs_vs = min_seed_size_nm3 is not None or min_size_nm3 is not None or (bd is None and dist is None)
    vs = _resolve_voxel_size(voxel_size, carried, required=needs_vs, what="seeded_watershed")
    mask = fg > threshold
    if bd is None and dist is None:
        return distance_watershed(mask, vs, min_distance_nm=min_distance_nm, h=h, min_size_nm3=min_size_nm3)
    if not mask.any():
        return np.zeros(fg.shape, dtype=np.uint32)
    seeds = (dist > seed_threshold) if dist is not None else (fg - bd > seed_threshold)
    seeds &= mask
    markers, n = _components(seeds, 6)
    min_seed = _min_voxels(min_seed_size_nm3, vs, "min_seed_size_nm3")
    if min_seed is not None and min_seed > 1 and n:
        markers = relabel_sequential(_filter_sizes(markers, min_seed, None))
    landscape = bd if bd is not None else -dist
    labels = watershed(landscape, markers.astype(np.int32), mask=mask).astype(np.uint32, copy=False)
    labels = _add_unseeded(labels, mask)
    min_voxels = _min_voxels(min_size_nm3, vs, "min_size_nm3")
    if min_voxels is not None and min_voxels > 1:
        labels = _filter_sizes(labels, min_voxels, None)
    return relabel_sequential(labels)


# --------------------------------------------------------------------------------------------------
# blockwise


def _open_source(source, voxel_size):
    """(array that can be sliced block by block, voxel size or None)."""
    source, vs, _ = as_volume_array(source, "mask_or_volume", voxel_size=voxel_size)
    return source, vs


def _check_block(block, shape):
    """``block`` as three positive ints (z, y, x), clipped to ``shape``; a clear error otherwise."""
    try:
        block = tuple(int(b) for b in block)
    except TypeError:
        raise ValueError(f"block must be three positive integers (z, y, x), got {block!r}") from None
    if len(block) != 3 or min(block) < 1:
        raise ValueError(f"block must be three positive integers (z, y, x), got {block!r}")
    return tuple(min(b, max(n, 1)) for b, n in zip(block, shape))


def _grid(shape, block):
    """Block index -> region (tuple of slices), for every block of the grid."""
    import itertools

    counts = [math.ceil(n / b) for n, b in zip(shape, block)]
    regions = {}
    for idx in itertools.product(*(range(c) for c in counts)):
        regions[idx] = tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(idx, block, shape))
    return regions, tuple(counts)


def _read_clipped(source, region, halo):
    """``source[region]`` grown by ``halo`` (clipped at the volume, never padded), and where the
    region lies in it: the block sees exactly what a whole-volume computation sees."""
    outer, inner = [], []
    for sl, h, n in zip(region, halo, source.shape):
        lo, hi = max(sl.start - h, 0), min(sl.stop + h, n)
        outer.append(slice(lo, hi))
        inner.append(slice(sl.start - lo, sl.stop - lo))
    return np.asarray(source[tuple(outer)]), tuple(inner)


def _to_mask(block, class_id, threshold):
    if class_id is not None:
        return block == class_id
    if threshold is not None:
        return block > threshold
    return block != 0


def _face_offsets(connectivity: int):
    if connectivity == 6:
        return [(0, 0)]
    if connectivity == 18:
        return [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
    return [(du, dv) for du in (-1, 0, 1) for dv in (-1, 0, 1)]


def instances_blockwise(
    mask_or_volume,
    out=None,
    *,
    method: str = "cc",
    block=(64, 256, 256),
    halo=None,
    voxel_size=None,
    class_id: int | None = None,
    threshold: float | None = None,
    connectivity: int = 26,
    min_size_nm3: float | None = None,
    min_distance_nm: float = 100.0,
    h: float | None = 20.0,
    stitch_overlap: float = 0.5,
    n_workers: int | None = None,
    tmp_dir=None,
    overwrite: bool = False,
    progress: bool = True,
):
    """Instance labels of a volume of any size, block by block, with ids consistent across blocks.

    The volume is never loaded whole: each block (plus a halo for the watershed) is read, labelled
    and written with block-local ids to a temporary zarr store; then every pair of neighbouring
    blocks is compared across their shared face and the ids that continue across it are merged with
    a union-find (:func:`scipy.sparse.csgraph.connected_components` over the face pairs); finally
    each block is relabelled through one global lookup table (1..N, sizes filtered) and streamed to
    the output. Memory: a few blocks at a time, plus a few numbers per object.

    - ``method="cc"``: connected components (:func:`connected_components`). Two ids are merged when
      any of their voxels touch across a face (or an edge or corner of a block, following
      ``connectivity``), so the result **equals** the whole-volume :func:`connected_components` up to
      the numbering.
    - ``method="watershed"``: :func:`distance_watershed` on each block grown by ``halo`` voxels (the
      halo gives each block the context to place the same seeds and borders as a whole-volume run);
      only the block's central part is kept. Two ids are merged when they share at least
      ``stitch_overlap`` of the smaller one's footprint on the face. The result is close to the
      whole-volume one (the same objects, borders within a few voxels) when the halo is larger than
      the objects' radius.

    Parameters
    ----------
    mask_or_volume : Volume, path, dask, zarr or numpy array of shape (Z, Y, X)
        A mask (bool/integer, foreground = nonzero), a semantic mask with ``class_id``, or a
        probability map with ``threshold``. Paths are opened with :func:`vemkit.io.open_volume`
        (``"image.ome.zarr:/labels/semantic"`` works).
    out : str or Path, optional
        Where to write the uint32 labels: a new OME-Zarr (``"mito.ome.zarr"``, full resolution only,
        so no level blends ids), or ``"image.ome.zarr:/labels/<name>"`` to add them as a label image
        (with a nearest-neighbour pyramid) to an existing OME-Zarr image. Without ``out`` the labels
        are returned as a numpy array (small volumes only).
    method : {"cc", "watershed"}
        See above.
    block : tuple of 3 int
        Block shape (z, y, x) in voxels; memory grows with its volume (about 10 bytes per voxel for
        ``"cc"``, 40 for ``"watershed"``, plus the halo).
    halo : tuple of 3 int, optional
        Context in voxels per side for the watershed (ignored by ``"cc"``, which needs none).
        Default: ``2 * min_distance_nm`` converted per axis, at least 300 nm.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted); needed for the watershed, for sizes
        and for writing OME-Zarr.
    class_id : int, optional
        Foreground = ``mask_or_volume == class_id`` (one class of a semantic mask).
    threshold : float, optional
        Foreground = ``mask_or_volume > threshold`` (required for float probability maps).
    connectivity : {26, 18, 6}
        For ``"cc"`` (see :func:`connected_components`).
    min_size_nm3 : float, optional
        Remove objects smaller than this (nm³), measured over the whole volume after stitching.
    min_distance_nm, h : float
        For ``"watershed"`` (see :func:`distance_watershed`).
    stitch_overlap : float
        For ``"watershed"``: fraction in (0, 1] of face contact needed to merge two ids.
    n_workers : int, optional
        Blocks processed at once in threads (default: up to 4, one per CPU).
    tmp_dir : str or Path, optional
        Where to keep the temporary block labels (default: the system's temporary folder); choose a
        scratch disk for large volumes. It is removed at the end.
    overwrite : bool
        Replace an existing ``out``; by default an existing output is an error.
    progress : bool
        Show progress bars.

    Returns
    -------
    ndarray of uint32 or str
        The labels (0 = background, 1..N) when ``out`` is None, else the path written (a string that
        :func:`vemkit.io.open_volume` opens).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((4, 20, 20), bool)
    >>> mask[1:3, 2:18, 5:8] = True                       # one bar crossing four blocks
    >>> mask[1:3, 12:15, 12:18] = True                    # and one more object
    >>> labels = instances_blockwise(mask, block=(4, 8, 8), progress=False)
    >>> int(labels.max()), labels.dtype
    (2, dtype('uint32'))
    >>> bool((labels > 0).sum() == mask.sum())
    True
    """
    from ._voxel import check_voxel_size
    from .segment_classic import _check_nonnegative

    if method not in ("cc", "watershed"):
        raise ValueError(f'method must be "cc" or "watershed", got {method!r}')
    source, vs = _open_source(mask_or_volume, voxel_size)
    shape = tuple(int(s) for s in source.shape)
    dtype = np.dtype(source.dtype)
    if threshold is None and class_id is None and not (np.issubdtype(dtype, np.integer) or dtype == bool):
        raise ValueError(
            f"mask_or_volume has dtype {dtype}: pass threshold= for a probability map, "
            "or give a bool/integer mask"
        )
    if threshold is not None:
        threshold = float(threshold)
    connectivity = _check_connectivity(connectivity)
    block = _check_block(block, shape)
    if method == "watershed":
        if vs is None:
            raise ValueError('method="watershed" needs voxel_size=(z, y, x) in nm')
        min_distance_nm = _check_nonnegative(min_distance_nm, "min_distance_nm")
        if halo is None:
            reach = max(2 * min_distance_nm, 300.0)
            halo = tuple(int(math.ceil(reach / v)) for v in vs)
        stitch_overlap = float(stitch_overlap)
        if not 0 < stitch_overlap <= 1:
            raise ValueError(f"stitch_overlap must lie in (0, 1], got {stitch_overlap!r}")
    else:
        halo = (0, 0, 0)
    halo = tuple(int(v) for v in halo)
    if len(halo) != 3 or min(halo) < 0:
        raise ValueError(f"halo must be three non-negative integers (z, y, x), got {halo!r}")
    min_voxels = _min_voxels(min_size_nm3, vs, "min_size_nm3")
    if out is not None and vs is None:
        raise ValueError("writing OME-Zarr needs voxel_size=(z, y, x) in nm")
    if out is not None:
        _check_out(out, overwrite)
    if n_workers is None:
        import os

        n_workers = max(1, min(4, os.cpu_count() or 1))
    vs = check_voxel_size(vs) if vs is not None else None

    import tempfile

    with tempfile.TemporaryDirectory(prefix="vemkit-instances-", dir=tmp_dir) as tmp:
        store, offsets, counts = _label_blocks(
            source, shape, block, halo, method, class_id, threshold, connectivity, vs,
            min_distance_nm, h, n_workers, Path(tmp) / "blocks.zarr", progress,
        )
        edges = _face_edges(store, shape, block, offsets, method, connectivity, stitch_overlap, n_workers,
                            progress)
        lut = _global_lut(counts, edges, min_voxels)
        labels = _relabelled(store, block, offsets, lut)
        if out is None:
            import dask

            with dask.config.set(scheduler="threads"):
                return labels.compute()
        return _write(labels, out, vs, overwrite, progress)


def _check_out(out, overwrite):
    text = str(out)
    if ":/labels/" in text:
        image_path, name = text.split(":/labels/", 1)
        if not Path(image_path).exists():
            raise FileNotFoundError(f"out names labels of {image_path!r}, which does not exist")
        if not name or "/" in name:
            raise ValueError(f"the label name in out must be a plain name, got {name!r}")
        if (Path(image_path) / "labels" / name).exists() and not overwrite:
            raise FileExistsError(f"{text} already exists; pass overwrite=True to replace it")
    elif Path(text).exists() and not overwrite:
        raise FileExistsError(
            f"output {text!r} already exists; vemkit never replaces your files unless asked: "
            "pass overwrite=True or choose another path"
        )


def _write(labels, out, vs, overwrite, progress):
    from .io import write_labels, write_ome_zarr

    text = str(out)
    if ":/labels/" in text:
        image_path, name = text.split(":/labels/", 1)
        return write_labels(image_path, name, labels, voxel_size=vs, overwrite=overwrite, progress=progress)
    # a label pyramid (nearest neighbour): ids are never averaged into ids that do not exist
    write_ome_zarr(labels, text, voxel_size=vs, kind="labels", overwrite=overwrite, progress=progress)
    return text


def _label_blocks(source, shape, block, halo, method, class_id, threshold, connectivity, vs,
                  min_distance_nm, h, n_workers, path, progress):
    """Pass 1: label each block with local ids 1..n into a temporary zarr; count voxels per id."""
    from concurrent.futures import ThreadPoolExecutor

    import zarr
    from tqdm.auto import tqdm

    regions, counts_grid = _grid(shape, block)
    store = zarr.create_array(store=str(path), shape=shape, chunks=block, dtype=np.uint32, fill_value=0,
                              zarr_format=3)

    def work(idx):
        region = regions[idx]
        data, inner = _read_clipped(source, region, halo)
        mask = _to_mask(data, class_id, threshold)
        if method == "cc":
            local, _ = _components(mask, connectivity)
        else:
            local = distance_watershed(mask, vs, min_distance_nm=min_distance_nm, h=h)[inner]
            local = relabel_sequential(local)
        import fastremap

        ids, cnt = fastremap.unique(local, return_counts=True)
        n = int(ids.max(initial=0))
        sizes = np.zeros(n + 1, dtype=np.int64)
        sizes[ids] = cnt
        store[region] = local.astype(np.uint32, copy=False)
        return idx, n, sizes[1:]

    results = {}
    with ThreadPoolExecutor(n_workers) as pool, tqdm(total=len(regions), desc="label blocks",
                                                     disable=not progress) as bar:
        for idx, n, sizes in pool.map(work, regions):
            results[idx] = (n, sizes)
            bar.update(1)
    # global id = offset of the block + local id
    offsets = np.zeros(counts_grid, dtype=np.int64)
    total = 0
    all_sizes = [np.zeros(1, dtype=np.int64)]
    for idx in sorted(regions):
        n, sizes = results[idx]
        offsets[idx] = total
        total += n
        all_sizes.append(sizes)
    return store, offsets, np.concatenate(all_sizes)


def _global_ids(plane, starts, block, offsets_grid, axis, axis_block):
    """Block-local ids of a 2D plane (the two axes other than ``axis``, starting at ``starts``) as
    global ids, adding each voxel's block offset."""
    other = [a for a in range(3) if a != axis]
    bu = (starts[0] + np.arange(plane.shape[0])) // block[other[0]]
    bv = (starts[1] + np.arange(plane.shape[1])) // block[other[1]]
    index = [None, None, None]
    index[axis] = axis_block
    index[other[0]] = bu[:, None]
    index[other[1]] = bv[None, :]
    off = offsets_grid[tuple(index)]
    out = plane.astype(np.int64) + off
    out[plane == 0] = 0
    return out


def _face_edges(store, shape, block, offsets, method, connectivity, stitch_overlap, n_workers, progress):
    """Pass 2: pairs of global ids to merge, from every face between neighbouring blocks."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    regions, counts_grid = _grid(shape, block)
    jobs = [(idx, axis) for idx in regions for axis in range(3) if idx[axis] + 1 < counts_grid[axis]]
    shifts = _face_offsets(connectivity) if method == "cc" else [(0, 0)]

    def work(job):
        idx, axis = job
        region = regions[idx]
        other = [a for a in range(3) if a != axis]
        last = region[axis].stop - 1
        lo_key = list(region)
        lo_key[axis] = last
        lower = _global_ids(np.asarray(store[tuple(lo_key)]), [region[a].start for a in other], block,
                            offsets, axis, idx[axis])
        grow = 1 if len(shifts) > 1 else 0
        ext = [slice(max(region[a].start - grow, 0), min(region[a].stop + grow, shape[a])) for a in other]
        hi_key = [None, None, None]
        hi_key[axis] = last + 1
        hi_key[other[0]], hi_key[other[1]] = ext
        upper = _global_ids(np.asarray(store[tuple(hi_key)]), [e.start for e in ext], block, offsets, axis,
                            idx[axis] + 1)
        eu = region[other[0]].start - ext[0].start
        ev = region[other[1]].start - ext[1].start
        nu, nv = lower.shape
        pairs = []
        for du, dv in shifts:
            u0, u1 = max(0, -eu - du), min(nu, upper.shape[0] - eu - du)
            v0, v1 = max(0, -ev - dv), min(nv, upper.shape[1] - ev - dv)
            if u0 >= u1 or v0 >= v1:
                continue
            a = lower[u0:u1, v0:v1]
            b = upper[u0 + eu + du:u1 + eu + du, v0 + ev + dv:v1 + ev + dv]
            both = (a > 0) & (b > 0)
            pairs.append(np.column_stack([a[both], b[both]]))
        pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        if method == "cc" or len(pairs) == 0:
            return np.unique(pairs, axis=0) if len(pairs) else pairs
        # watershed: merge only ids sharing most of the smaller one's footprint on this face
        pair_ids, contact = np.unique(pairs, axis=0, return_counts=True)
        ids_a, area_a = np.unique(lower[lower > 0], return_counts=True)
        ids_b, area_b = np.unique(upper[upper > 0], return_counts=True)
        smaller = np.minimum(area_a[np.searchsorted(ids_a, pair_ids[:, 0])],
                             area_b[np.searchsorted(ids_b, pair_ids[:, 1])])
        return pair_ids[contact >= stitch_overlap * smaller]

    edges = [np.zeros((0, 2), np.int64)]
    with ThreadPoolExecutor(n_workers) as pool, tqdm(total=len(jobs), desc="stitch faces",
                                                     disable=not progress) as bar:
        for e in pool.map(work, jobs):
            edges.append(e)
            bar.update(1)
    return np.concatenate(edges)


def _global_lut(counts, edges, min_voxels):
    """Global id -> final id (0 for background and removed objects), numbered in block order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as graph_components

    n = len(counts)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, comp = graph_components(graph, directed=False)
    sizes = np.bincount(comp, weights=counts, minlength=comp.max(initial=0) + 1)
    keep = np.ones(len(sizes), dtype=bool)
    keep[comp[0]] = False  # id 0: background
    if min_voxels is not None:
        keep &= sizes >= min_voxels
    # number the kept components by their smallest global id
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first, kind="stable")
    order = order[keep[order]]
    final = np.zeros(len(sizes), dtype=np.uint64)
    final[order] = np.arange(1, len(order) + 1, dtype=np.uint64)
    return final[comp].astype(_label_dtype(len(order)))


def _relabelled(store, block, offsets, lut):
    """Pass 3 (lazy): block-local ids -> final ids, as a dask array over the temporary store."""
    import dask.array as da

    local = da.from_zarr(store)

    def apply(data, block_info=None):
        off = offsets[tuple(block_info[0]["chunk-location"])]
        ids = data.astype(np.int64)
        ids[data > 0] += off
        return lut[ids]

    return local.map_blocks(apply, dtype=lut.dtype)
