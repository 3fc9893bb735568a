"""Stitching block-local labels into one consistent labelling of a volume of any size.

The three passes of :func:`vemkit.instances.instances_blockwise`: :func:`label_blocks` labels every
block (with a labelling function given by the caller) into a temporary zarr store with block-local ids
1..n, counting voxels per id; :func:`face_edges` finds the ids that continue across the faces between
neighbouring blocks; :func:`global_lut` joins them (union-find over a sparse graph) into final ids, and
:func:`relabelled` applies the table lazily, block by block. Memory: a few blocks at a time, plus a few
numbers per object. Not for: labelling a block (the caller's function) or writing the result.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._blockwise import block_grid, check_block, read_clipped
from ._checks import check_nonnegative, check_number, check_positive_int
from ._inputs import as_volume_array
from ._masks import check_connectivity, label_dtype, min_voxel_count
from ._progress import progress_bar
from ._voxel import check_voxel_size

#: Blocks smaller than this (voxels) are refused when the volume has more than :data:`MAX_SMALL_BLOCKS` of them.
MIN_BLOCK_VOXELS = 16 * 16 * 16
MAX_SMALL_BLOCKS = 1000

__all__ = ["blockwise_options", "check_out", "check_block_count", "values_present", "face_edges", "face_offsets", "global_ids", "global_lut", "label_blocks", "relabelled"]


def check_out(out, overwrite: bool) -> None:
    """Refuse an output path that exists (unless ``overwrite``) or a label image of a missing image."""
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


def blockwise_options(source, out, method, block, halo, voxel_size, class_id, threshold, connectivity,
                       min_size_nm3, min_distance_nm, h, stitch_overlap, n_workers, overwrite):
    """The opened source and the checked options (a dict) of :func:`vemkit.instances.instances_blockwise`."""
    if method not in ("cc", "watershed"):
        raise ValueError(f'method must be "cc" or "watershed", got {method!r}')
    source, vs, _ = as_volume_array(source, "mask_or_volume", voxel_size=voxel_size)
    shape = tuple(int(s) for s in source.shape)
    dtype = np.dtype(source.dtype)
    if threshold is None and class_id is None and not (np.issubdtype(dtype, np.integer) or dtype == bool):
        raise ValueError(
            f"mask_or_volume has dtype {dtype}: pass threshold= for a probability map, "
            "or give a bool/integer mask"
        )
    if threshold is not None:
        threshold = check_number(threshold, "threshold")
    connectivity = check_connectivity(connectivity)
    block = check_block(block, shape)
    check_block_count(block, shape)
    if class_id is not None and (isinstance(class_id, (bool, np.bool_)) or not isinstance(class_id, (int, np.integer))):
        raise ValueError(f"class_id must be an integer label value, got {class_id!r}")
    if n_workers is not None:
        n_workers = check_positive_int(n_workers, "n_workers")
    if method == "watershed":
        if vs is None:
            raise ValueError('method="watershed" needs voxel_size=(z, y, x) in nm')
        min_distance_nm = check_nonnegative(min_distance_nm, "min_distance_nm")
        if halo is None:
            reach = max(2 * min_distance_nm, 300.0)
            halo = tuple(int(math.ceil(reach / v)) for v in vs)
        stitch_overlap = float(stitch_overlap)
        if not 0 < stitch_overlap <= 1:
            raise ValueError(f"stitch_overlap must lie in (0, 1], got {stitch_overlap!r}")
    else:
        halo, stitch_overlap = (0, 0, 0), None
    halo = tuple(int(v) for v in halo)
    if len(halo) != 3 or min(halo) < 0:
        raise ValueError(f"halo must be three non-negative integers (z, y, x), got {halo!r}")
    min_voxels = min_voxel_count(min_size_nm3, vs, "min_size_nm3")
    if out is not None and vs is None:
        raise ValueError("writing OME-Zarr needs voxel_size=(z, y, x) in nm")
    if out is not None:
        check_out(out, overwrite)
    if n_workers is None:
        n_workers = max(1, min(4, os.cpu_count() or 1))
    vs = check_voxel_size(vs) if vs is not None else None
    return source, {"method": method, "block": block, "halo": halo, "vs": vs, "class_id": class_id,
                    "threshold": threshold, "connectivity": connectivity, "min_voxels": min_voxels,
                    "min_distance_nm": min_distance_nm, "h": h, "stitch_overlap": stitch_overlap,
                    "n_workers": n_workers}


def check_block_count(block, shape) -> None:
    """Refuse tiny blocks on a volume that needs many of them: every block costs a task, a read, a
    write and its faces to stitch (about a millisecond), so ``block=(1, 1, 1)`` on a 16 x 256 x 256
    volume would run for many minutes for a second's work.

    Examples
    --------
    >>> check_block_count((3, 7, 5), (11, 23, 29))        # 96 small blocks: fine
    >>> check_block_count((1, 1, 1), (16, 256, 256))
    Traceback (most recent call last):
    ...
    ValueError: block (1, 1, 1) splits the volume (16, 256, 256) into 1048576 blocks of 1 voxel(s): each block costs a task, a read, a write and the stitching of its faces, so this would run for minutes; use blocks of at least 4096 voxels, e.g. (16, 256, 256)
    """
    voxels = int(np.prod(block))
    n_blocks = int(np.prod([math.ceil(int(s) / int(b)) for s, b in zip(shape, block)]))
    if voxels < MIN_BLOCK_VOXELS and n_blocks > MAX_SMALL_BLOCKS:
        suggestion = tuple(min(int(s), b) for s, b in zip(shape, (64, 256, 256)))
        raise ValueError(
            f"block {tuple(block)} splits the volume {tuple(int(s) for s in shape)} into {n_blocks} blocks of "
            f"{voxels} voxel(s): each block costs a task, a read, a write and the stitching of its faces, so this "
            f"would run for minutes; use blocks of at least {MIN_BLOCK_VOXELS} voxels, e.g. {suggestion}"
        )


def values_present(source, block, limit: int = 20) -> list:
    """The distinct values of a volume (at most ``limit`` of them, smallest first), block by block."""
    import fastremap

    regions, _ = block_grid(tuple(int(s) for s in source.shape), block)
    values = set()
    for region in regions.values():
        data, _ = read_clipped(source, region, (0, 0, 0))
        values.update(fastremap.unique(np.asarray(data)).tolist())
        if len(values) > 10 * limit:
            break
    return sorted(values)[:limit]


def label_blocks(source, block, halo, label_fn, n_workers, path, progress):
    """Pass 1: label each block with local ids 1..n into a temporary zarr; count voxels per id.

    Parameters
    ----------
    source : array-like (Z, Y, X)
        Read block by block, each block grown by ``halo`` (clipped at the volume).
    block, halo : tuple of 3 int
    label_fn : callable
        ``label_fn(data, inner) -> labels``: ``data`` is the block with its halo, ``inner`` where the
        block lies in it; returns the block's labels (ids 1..n, shape of the block without halo).
    n_workers : int
        Blocks labelled at once, in threads.
    path : str or Path
        The temporary zarr store.

    Returns
    -------
    store : zarr array of uint32
        Block-local ids.
    offsets : ndarray of int64, shape of the block grid
        Global id = offset of the block + local id.
    counts : ndarray of int64
        Voxels per global id (index 0: background).
    """
    import fastremap
    import zarr

    shape = tuple(int(s) for s in source.shape)
    regions, counts_grid = block_grid(shape, block)
    store = zarr.create_array(store=str(path), shape=shape, chunks=block, dtype=np.uint32, fill_value=0,
                              zarr_format=3)

    def work(idx):
        region = regions[idx]
        data, inner = read_clipped(source, region, halo)
        local = label_fn(data, inner)
        ids, cnt = fastremap.unique(local, return_counts=True)
        n = int(ids.max(initial=0))
        sizes = np.zeros(n + 1, dtype=np.int64)
        sizes[ids] = cnt
        store[region] = local.astype(np.uint32, copy=False)
        return idx, n, sizes[1:]

    results = {}
    with ThreadPoolExecutor(n_workers) as pool, progress_bar(total=len(regions), desc="label blocks",
                                                             unit="block", disable=not progress) as bar:
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


def global_ids(plane, starts, block, offsets_grid, axis, axis_block):
    """Block-local ids of a 2D plane (the two axes other than ``axis``, starting at ``starts``) as
    global ids, adding each voxel's block offset.

    Examples
    --------
    >>> offsets = np.array([[[0, 5]]])          # a grid of 1 x 1 x 2 blocks of (1, 1, 2) voxels
    >>> global_ids(np.array([[1, 0, 2, 1]]), [0, 0], (1, 1, 2), offsets, 0, 0)
    array([[1, 0, 7, 6]])
    """
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


def face_offsets(connectivity: int):
    """In-plane shifts ``(du, dv)`` at which voxels across a face touch, for a 3D connectivity.

    Examples
    --------
    >>> face_offsets(6), len(face_offsets(18)), len(face_offsets(26))
    ([(0, 0)], 5, 9)
    """
    if connectivity == 6:
        return [(0, 0)]
    if connectivity == 18:
        return [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
    return [(du, dv) for du in (-1, 0, 1) for dv in (-1, 0, 1)]


def _face_pairs(lower, upper, eu, ev, shifts):
    """(N, 2) pairs of nonzero ids that touch across a face: ``lower`` (the last plane of a block) and
    ``upper`` (the first plane of the next, grown by ``eu``/``ev`` in-plane), at every shift."""
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
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def _overlapping(pairs, lower, upper, stitch_overlap):
    """The pairs that share at least ``stitch_overlap`` of the smaller id's footprint on the face."""
    pair_ids, contact = np.unique(pairs, axis=0, return_counts=True)
    ids_a, area_a = np.unique(lower[lower > 0], return_counts=True)
    ids_b, area_b = np.unique(upper[upper > 0], return_counts=True)
    smaller = np.minimum(area_a[np.searchsorted(ids_a, pair_ids[:, 0])],
                         area_b[np.searchsorted(ids_b, pair_ids[:, 1])])
    return pair_ids[contact >= stitch_overlap * smaller]


def face_edges(store, block, offsets, connectivity, stitch_overlap, n_workers, progress):
    """Pass 2: pairs of global ids to merge, from every face between neighbouring blocks.

    With ``stitch_overlap`` None (connected components) ids merge when any of their voxels touch
    (across the face, or an edge or corner, following ``connectivity``); with a fraction (watershed)
    only ids sharing that much of the smaller one's footprint on the face.
    """

    shape = tuple(int(s) for s in store.shape)
    regions, counts_grid = block_grid(shape, block)
    jobs = [(idx, axis) for idx in regions for axis in range(3) if idx[axis] + 1 < counts_grid[axis]]
    shifts = face_offsets(connectivity) if stitch_overlap is None else [(0, 0)]

    def work(job):
        idx, axis = job
        region = regions[idx]
        other = [a for a in range(3) if a != axis]
        last = region[axis].stop - 1
        lo_key = list(region)
        lo_key[axis] = last
        lower = global_ids(np.asarray(store[tuple(lo_key)]), [region[a].start for a in other], block,
                           offsets, axis, idx[axis])
        grow = 1 if len(shifts) > 1 else 0
        ext = [slice(max(region[a].start - grow, 0), min(region[a].stop + grow, shape[a])) for a in other]
        hi_key = [None, None, None]
        hi_key[axis] = last + 1
        hi_key[other[0]], hi_key[other[1]] = ext
        upper = global_ids(np.asarray(store[tuple(hi_key)]), [e.start for e in ext], block, offsets, axis,
                           idx[axis] + 1)
        pairs = _face_pairs(lower, upper, region[other[0]].start - ext[0].start,
                            region[other[1]].start - ext[1].start, shifts)
        if stitch_overlap is None or len(pairs) == 0:
            return np.unique(pairs, axis=0) if len(pairs) else pairs
        return _overlapping(pairs, lower, upper, stitch_overlap)

    edges = [np.zeros((0, 2), np.int64)]
    with ThreadPoolExecutor(n_workers) as pool, progress_bar(total=len(jobs), desc="stitch faces",
                                                             unit="face", disable=not progress) as bar:
        for e in pool.map(work, jobs):
            edges.append(e)
            bar.update(1)
    return np.concatenate(edges)


def global_lut(counts, edges, min_voxels):
    """Global id -> final id (0 for background and removed objects), numbered in block order.

    Examples
    --------
    >>> global_lut(np.array([0, 3, 1, 4]), np.array([[1, 3]]), 2)   # ids 1 and 3 join; id 2 is too small
    array([0, 1, 0, 1], dtype=uint32)
    """
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
    return final[comp].astype(label_dtype(len(order)))


def relabelled(store, offsets, lut):
    """Pass 3 (lazy): block-local ids -> final ids, as a dask array over the temporary store."""
    import dask.array as da

    local = da.from_zarr(store)

    def apply(data, block_info=None):
        off = offsets[tuple(block_info[0]["chunk-location"])]
        ids = data.astype(np.int64)
        ids[data > 0] += off
        return lut[ids]

    return local.map_blocks(apply, dtype=lut.dtype)
