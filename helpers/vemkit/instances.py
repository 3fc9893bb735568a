"""From semantic masks or probability maps to instance labels, in memory or block by block.

A semantic mask says *what* a voxel is (mitochondrion or not); instance labels say *which* object it
belongs to (0 = background, 1..N = objects). This module turns the first into the second:

- :func:`connected_components`: every connected blob is one object (cc3d, 6/18/26-connectivity).
- :func:`distance_watershed`: splits touching objects at their necks, from the maxima of an
  anisotropy-aware distance transform (edt) flooded by a watershed.
- :func:`seeded_watershed`: the same with the extra targets a network can predict (a boundary map,
  a distance map), which separate touching objects far better than shape alone.
- :func:`size_filter` and :func:`relabel_sequential` tidy the result; :func:`boundaries` marks the
  voxels where ids meet (membrane-like ground truth from instance labels).
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

import tempfile
import warnings
from pathlib import Path

import numpy as np

from ._checks import check_integer_dtype, check_nonnegative, check_number
from ._geometry import distance_transform
from ._inputs import load_in_memory
from ._masks import (
    MAX_IN_MEMORY_BYTES,
    add_unseeded,
    check_connectivity,
    components,
    filter_sizes,
    label_dtype,
    load_labels,
    load_mask,
    max_voxel_count,
    min_voxel_count,
    require_voxel_size,
)
from ._outputs import check_output
from ._peaks import distance_seeds
from ._stitching import blockwise_options, face_edges, global_lut, label_blocks, relabelled, values_present
from .io import write_labels, write_ome_zarr

__all__ = [
    "connected_components",
    "distance_watershed",
    "seeded_watershed",
    "size_filter",
    "relabel_sequential",
    "boundaries",
    "instances_blockwise",
]

_UINT32_MAX = np.iinfo(np.uint32).max


# --------------------------------------------------------------------------------------------------
# small helpers


def _resolve_voxel_size(explicit, carried, required: bool, what: str):
    if explicit is None and carried is None and not required:
        return None
    return require_voxel_size(explicit, carried, what)


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

    array, carried = load_mask(mask)
    connectivity = check_connectivity(connectivity)
    vs = _resolve_voxel_size(voxel_size, carried, required=min_size_nm3 is not None, what="min_size_nm3")
    labels, n = cc3d.connected_components(
        np.ascontiguousarray(array), connectivity=connectivity, return_N=True,
        out_dtype=np.uint64 if array.size > _UINT32_MAX else np.uint32,
    )
    min_voxels = min_voxel_count(min_size_nm3, vs, "min_size_nm3")
    if min_voxels is not None and min_voxels > 1 and n:
        labels = filter_sizes(labels, min_voxels, None)
        labels = relabel_sequential(labels)
    return labels.astype(label_dtype(int(labels.max(initial=0))), copy=False)


# --------------------------------------------------------------------------------------------------
# size filter and relabelling


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
    array = load_labels(labels)
    carried = getattr(labels, "voxel_size", None)
    vs = _resolve_voxel_size(voxel_size, carried, required=True, what="size_filter")
    out = filter_sizes(array, min_voxel_count(min_size_nm3, vs, "min_size_nm3"),
                        max_voxel_count(max_size_nm3, vs, "max_size_nm3"))
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

    array = labels if isinstance(labels, np.ndarray) else load_labels(labels)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integer instance labels, got dtype {array.dtype}")
    out, mapping = fastremap.renumber(np.array(array, copy=True, order="C"), preserve_zero=True, in_place=True)
    n = max(mapping.values(), default=0)
    out = out.astype(label_dtype(int(n)), copy=False)
    if return_mapping:
        return out, {int(k): int(v) for k, v in mapping.items() if k != 0}
    return out


def boundaries(labels, *, planar: bool = True) -> np.ndarray:
    """Voxels on the border of an object: those with a neighbour of another id (0 counts as an id).

    A membrane-like ground truth from instance labels (e.g. neuron bodies, which tile the tissue):
    both voxels of every pair of neighbours with different ids are marked.

    Parameters
    ----------
    labels : array-like or Volume of shape (Z, Y, X), integer
        Instance labels (0 = background). Not modified.
    planar : bool
        True: compare the 4 in-plane neighbours (y, x) only, section by section, as for thin
        sections; False: the 6 face neighbours in 3D, z included.

    Returns
    -------
    ndarray of bool, shape (Z, Y, X)

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[[1, 1, 2, 2]], [[1, 1, 1, 1]]])
    >>> boundaries(labels).astype(int)
    array([[[0, 1, 1, 0]],
    <BLANKLINE>
           [[0, 0, 0, 0]]])
    >>> boundaries(labels, planar=False).astype(int)[1]   # section 1 touches section 0's object 2
    array([[0, 0, 1, 1]])
    """
    array, _, _ = load_in_memory(labels, "labels", max_bytes=MAX_IN_MEMORY_BYTES)
    check_integer_dtype(array, "labels")
    out = np.zeros(array.shape, dtype=bool)
    for axis in (1, 2) if planar else (0, 1, 2):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        differs = array[tuple(lo)] != array[tuple(hi)]
        out[tuple(lo)] |= differs
        out[tuple(hi)] |= differs
    return out


# --------------------------------------------------------------------------------------------------
# distance watershed


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

    array, carried = load_mask(mask)
    vs = _resolve_voxel_size(voxel_size, carried, required=True, what="distance_watershed")
    min_distance_nm = check_nonnegative(min_distance_nm, "min_distance_nm")
    if h is not None:
        h = check_nonnegative(h, "h")
    min_voxels = min_voxel_count(min_size_nm3, vs, "min_size_nm3")
    if not array.any():
        return np.zeros(array.shape, dtype=np.uint32)
    distance = distance_transform(array, vs)
    markers = distance_seeds(distance, array, vs, min_distance_nm, h)
    labels = watershed(-distance, markers, mask=array).astype(np.uint32, copy=False)
    labels = add_unseeded(labels, array)
    if min_voxels is not None and min_voxels > 1:
        labels = filter_sizes(labels, min_voxels, None)
    return relabel_sequential(labels)


# --------------------------------------------------------------------------------------------------
# seeded watershed on network outputs


def _as_map(array, name: str, shape=None) -> np.ndarray:
    """A probability-like map as float32: floats as they are, unsigned integers scaled to 0..1."""
    data, _, _ = load_in_memory(array, name, max_bytes=MAX_IN_MEMORY_BYTES)
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
    threshold, seed_threshold = check_number(threshold, "threshold"), check_number(seed_threshold, "seed_threshold")
    needs_vs = min_seed_size_nm3 is not None or min_size_nm3 is not None or (bd is None and dist is None)
    vs = _resolve_voxel_size(voxel_size, carried, required=needs_vs, what="seeded_watershed")
    mask = fg > threshold
    if bd is None and dist is None:
        return distance_watershed(mask, vs, min_distance_nm=min_distance_nm, h=h, min_size_nm3=min_size_nm3)
    if not mask.any():
        return np.zeros(fg.shape, dtype=np.uint32)
    seeds = (dist > seed_threshold) if dist is not None else (fg - bd > seed_threshold)
    seeds &= mask
    markers, n = components(seeds, 6)
    min_seed = min_voxel_count(min_seed_size_nm3, vs, "min_seed_size_nm3")
    if min_seed is not None and min_seed > 1 and n:
        markers = relabel_sequential(filter_sizes(markers, min_seed, None))
    landscape = bd if bd is not None else -dist
    labels = watershed(landscape, markers.astype(np.int32), mask=mask).astype(np.uint32, copy=False)
    labels = add_unseeded(labels, mask)
    min_voxels = min_voxel_count(min_size_nm3, vs, "min_size_nm3")
    if min_voxels is not None and min_voxels > 1:
        labels = filter_sizes(labels, min_voxels, None)
    return relabel_sequential(labels)


# --------------------------------------------------------------------------------------------------
# blockwise


def _to_mask(block, class_id, threshold):
    if class_id is not None:
        return block == class_id
    if threshold is not None:
        return block > threshold
    return block != 0


def instances_blockwise(mask_or_volume, out=None, *, method: str = "cc", block=(64, 256, 256), halo=None,
                        voxel_size=None, class_id: int | None = None, threshold: float | None = None,
                        connectivity: int = 26, min_size_nm3: float | None = None, min_distance_nm: float = 100.0,
                        h: float | None = 20.0, stitch_overlap: float = 0.5, n_workers: int | None = None,
                        tmp_dir=None, overwrite: bool = False, progress: bool = True):
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
    if out is not None:  # before any work: never where it reads, only vemkit's own outputs replaced
        check_output(out, [mask_or_volume], overwrite=overwrite)
    source, opts = blockwise_options(mask_or_volume, out, method, block, halo, voxel_size, class_id, threshold,
                                      connectivity, min_size_nm3, min_distance_nm, h, stitch_overlap, n_workers,
                                      overwrite)
    with tempfile.TemporaryDirectory(prefix="vemkit-instances-", dir=tmp_dir) as tmp:
        labels = _stitched(source, opts, Path(tmp) / "blocks.zarr", progress)
        if out is None:
            import dask

            with dask.config.set(scheduler="threads"):
                return labels.compute()
        return _write(labels, out, opts["vs"], overwrite, progress)


def _stitched(source, opts, path, progress):
    """The three passes: label the blocks, merge ids across faces, relabel (a lazy dask array)."""

    found = []  # blocks holding foreground (a class_id absent from the volume is worth a warning)

    def label(data, inner):
        mask = _to_mask(data, opts["class_id"], opts["threshold"])
        if not found and mask.any():
            found.append(True)
        if opts["method"] == "cc":
            return components(mask, opts["connectivity"])[0]
        local = distance_watershed(mask, opts["vs"], min_distance_nm=opts["min_distance_nm"], h=opts["h"])
        return relabel_sequential(local[inner])

    block, n_workers = opts["block"], opts["n_workers"]
    store, offsets, counts = label_blocks(source, block, opts["halo"], label, n_workers, path, progress)
    if opts["class_id"] is not None and not found:
        present = values_present(source, block)
        warnings.warn(f"class_id={opts['class_id']} is not in the volume, so there are no objects; its values are "
                      f"{', '.join(map(str, present))}{' ...' if len(present) == 20 else ''}", UserWarning,
                      stacklevel=3)
    edges = face_edges(store, block, offsets, opts["connectivity"], opts["stitch_overlap"], n_workers, progress)
    return relabelled(store, offsets, global_lut(counts, edges, opts["min_voxels"]))


def _write(labels, out, vs, overwrite, progress):
    text = str(out)
    if ":/labels/" in text:
        image_path, name = text.split(":/labels/", 1)
        return write_labels(image_path, name, labels, voxel_size=vs, overwrite=overwrite, progress=progress)
    # a label pyramid (nearest neighbour): ids are never averaged into ids that do not exist
    write_ome_zarr(labels, text, voxel_size=vs, kind="labels", overwrite=overwrite, progress=progress)
    return text
