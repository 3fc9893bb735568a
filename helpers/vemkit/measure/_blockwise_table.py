"""The measurement table of a volume of any size, read block by block: :func:`regionprops_blockwise`.

Pass 1 accumulates per-object statistics block by block (:mod:`vemkit.measure._accumulate`) and
measures the shapes of objects that stay inside a block; the pieces of objects cut by block faces
are kept and put together afterwards (:func:`_block_shapes`, :func:`_merge_shapes`). Not for:
volumes already in memory (:func:`vemkit.measure.regionprops_table`).
"""

from __future__ import annotations

import math

import numpy as np

from .._blockwise import block_grid, check_block, read_clipped
from .._checks import check_nonnegative
from .._progress import progress_bar
from ._accumulate import block_stats, combine, contact_field, distance_field
from ._shape import measure_object
from ._table import DEFAULT_PROPERTIES, build_table, prepare, shape_of, worker_count

#: Pieces of objects cut by block faces kept from pass 1 of :func:`regionprops_blockwise`: at most
#: this many voxels per piece and in all (bytes of boolean masks); beyond, objects are read again.
_PIECE_MAX_VOXELS = 1 << 22
_PIECES_BUDGET_VOXELS = 1 << 28


def _block_shapes(lab, region, shape, stats, vs, surface, skeleton):
    """Pass 1 of the per-object shape measurements, on one block already in memory.

    Objects that do not reach an inner face of the block are measured here (``("done", count,
    row)``); the others give their piece of mask (``("piece", count, lower corner, mask)``), or only
    their count when the piece is too large (``("big", count)``). After all blocks, an object with a
    single ``done`` entry whose count is its total count was wholly inside its block; pieces whose
    counts add up to the total are put together; anything else is read again from the volume.
    """
    origin = np.array([s.start for s in region])
    stop = np.array([s.stop for s in region])
    lo = np.stack([stats["z0"], stats["y0"], stats["x0"]], axis=1).astype(np.int64)
    hi = np.stack([stats["z1"], stats["y1"], stats["x1"]], axis=1).astype(np.int64)
    cut = (((lo == origin) & (origin > 0)) | ((hi == stop) & (stop < np.asarray(shape)))).any(axis=1)
    out = {}
    for i, label in enumerate(stats["label"]):
        count = int(stats["count"][i])
        box = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo[i], hi[i], origin))
        if not cut[i]:
            out[int(label)] = ("done", count, measure_object(lab[box] == label, vs, surface, skeleton))
        elif int(np.prod(hi[i] - lo[i])) <= _PIECE_MAX_VOXELS:
            out[int(label)] = ("piece", count, lo[i], lab[box] == label)
        else:
            out[int(label)] = ("big", count)
    return out


def _merge_shapes(merged, part, budget):
    """Add one block's :func:`_block_shapes` to ``merged`` (label -> list); returns the budget left."""
    for label, entry in part.items():
        if entry[0] == "piece":
            if entry[3].size > budget:
                entry = ("big", entry[1])
            else:
                budget -= entry[3].size
        merged.setdefault(label, []).append(entry)
    return budget


def regionprops_blockwise(labels_volume, image=None, *, voxel_size=None, properties=DEFAULT_PROPERTIES,
                          skeleton: bool = False, other_labels=None, max_distance_nm: float = 1000.0,
                          block=(64, 256, 256), n_workers: int | None = None, progress: bool = True):
    """The table of :func:`regionprops_table` for volumes of any size, read block by block.

    Pass 1 reads the labels (and the image, and the other structures grown by a halo) block by block
    and accumulates per object: voxel count, sums of coordinates and of their squares and products,
    bounding box, intensity sums, minima and maxima, contact areas and minimal distances; blocks are
    then combined per object. Volumes, centroids, axes, bounding boxes and intensities are exactly
    those of the in-memory table. Surface areas (and skeletons) cannot be added up from blocks
    (marching cubes needs the whole object): objects that stay inside a block are measured while it
    is in memory; the pieces of objects cut by block faces are kept (up to 2^28 voxels, 256 MiB, of masks) and
    put together afterwards; only larger objects, and ids found in separate parts, are read again
    from the (lazy) labels, one bounding box each. The numbers equal the in-memory table's. Memory:
    a few blocks, the kept pieces, and the largest object's box.

    Parameters
    ----------
    labels_volume : Volume, path, dask, zarr or numpy array of shape (Z, Y, X), integer
        Instance labels (``"image.ome.zarr:/labels/mitochondria"`` opens an OME-Zarr label image).
    image : same kinds, optional
        Grey values for the intensity columns.
    voxel_size, properties, skeleton, n_workers, progress
        As in :func:`regionprops_table`.
    other_labels : array-like or dict of str to array-like, optional
        As in :func:`regionprops_table`; distances are searched up to ``max_distance_nm``.
    max_distance_nm : float
        Reach of the distance search (the halo read around each block); objects with nothing within
        it get NaN.
    block : tuple of 3 int
        Block shape (z, y, x) in voxels.

    Returns
    -------
    pandas.DataFrame
        As :func:`regionprops_table`.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> labels = np.zeros((8, 64, 64), np.uint16)
    >>> labels[1:7, 5:60, 20:30] = 3                  # one object across several blocks
    >>> lazy = da.from_array(labels, chunks=(4, 32, 32))
    >>> df = regionprops_blockwise(lazy, voxel_size=(50, 5, 5), block=(4, 32, 32), progress=False)
    >>> int(df.label[0]), int(df.n_voxels[0]), int(df.n_sections[0])
    (3, 3300, 6)
    """
    from concurrent.futures import ThreadPoolExecutor


    labels, image, others, vs, properties = prepare(labels_volume, image, other_labels, voxel_size,
                                                    properties, lazy=True)
    max_distance_nm = check_nonnegative(max_distance_nm, "max_distance_nm")
    shape = shape_of(labels)
    block = check_block(block, shape)
    regions, _ = block_grid(shape, block)
    halo = tuple(int(math.ceil(max_distance_nm / v)) + 1 for v in vs)
    use_image = image is not None and "intensity" in properties
    n_workers = worker_count(n_workers)

    def work(region):
        lab = np.asarray(labels[region])
        if not lab.any():
            return None
        sums, mins = {}, {}
        if others:
            lab1, inner1 = read_clipped(labels, region, (1, 1, 1))
            for name, other in others.items():
                other1, _ = read_clipped(other, region, (1, 1, 1))
                sums["contact_" + name] = contact_field(lab1, other1, inner1, vs)
                other_h, inner_h = read_clipped(other, region, halo)
                mins["distance_" + name] = distance_field(other_h, inner_h, vs, max_distance_nm)
        img = np.asarray(image[region]) if use_image else None
        stats = block_stats(lab, tuple(s.start for s in region), img, sums, mins)
        return stats, (_block_shapes(lab, region, shape, stats, vs, shaped, skeleton) if shapes_wanted else None)

    shaped = "surface" in properties
    shapes_wanted = shaped or skeleton
    parts, shapes, budget = [], {}, _PIECES_BUDGET_VOXELS
    with ThreadPoolExecutor(n_workers) as pool:
        for result in progress_bar(pool.map(work, regions.values()), total=len(regions), desc="measure blocks",
                                   unit="block", disable=not progress):
            if result is None:
                continue
            parts.append(result[0])
            if result[1]:
                budget = _merge_shapes(shapes, result[1], budget)
            if len(parts) >= 64:  # keep the per-block results small: combine as we go
                parts = [combine(parts)]
    stats = combine(parts)
    return build_table(stats, labels, vs, properties, image is not None, others, skeleton, shape,
                       n_workers, progress, shapes)
