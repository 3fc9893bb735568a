"""The block grid: blocks of a volume, read with a halo of context (clipped or mirrored).

Every blockwise stage (prediction, instances, features, measurements) tiles a volume with
:func:`block_grid` / :func:`block_starts` and reads each block with :func:`read_clipped` (the halo
stops at the volume's border: exactly what a whole-volume computation sees) or :func:`read_with_halo`
(the halo is mirrored past the border, as a whole-volume computation pads).
:func:`map_with_halo` turns ``fn(block_with_halo) -> result`` into a lazy dask array of results: each
output block reads its region plus the halo from the source (mirrored at the volume's borders, the same
way a whole-volume computation pads), applies ``fn`` and crops the halo away. The result is a dask
array, so any writer (OME-Zarr, TIFF) streams it with bounded memory and any dask scheduler runs it.
Not for: choosing block sizes for a device (the inference issue's planner does that).
"""

from __future__ import annotations

import itertools
import math
import uuid

import numpy as np

__all__ = [
    "block_grid",
    "block_starts",
    "check_block",
    "map_with_halo",
    "padded",
    "read_clipped",
    "read_with_halo",
]


def check_block(block, shape, name: str = "block"):
    """``block`` as three positive ints (z, y, x), clipped to ``shape``; a clear error otherwise.

    Examples
    --------
    >>> check_block((4, 512, 512), (2, 100, 1000))
    (2, 100, 512)
    """
    try:
        block = tuple(int(b) for b in block)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three positive integers (z, y, x), got {block!r}") from None
    if len(block) != 3 or min(block) < 1:
        raise ValueError(f"{name} must be three positive integers (z, y, x), got {block!r}")
    return tuple(min(b, max(int(n), 1)) for b, n in zip(block, shape))


def block_starts(shape, block):
    """The start corner of every block of ``block`` voxels tiling ``shape``, in C order.

    Examples
    --------
    >>> block_starts((1, 3, 5), (1, 2, 4))
    [(0, 0, 0), (0, 0, 4), (0, 2, 0), (0, 2, 4)]
    """
    ranges = [range(0, int(n), int(b)) for n, b in zip(shape, block)]
    return [tuple(s) for s in itertools.product(*ranges)]


def block_grid(shape, block):
    """``(regions, counts)``: block index -> region (tuple of slices) for every block tiling ``shape``
    (edge blocks are cut at the volume), and the number of blocks per axis.

    Examples
    --------
    >>> regions, counts = block_grid((1, 3, 5), (1, 2, 4))
    >>> counts, regions[(0, 1, 1)]
    ((1, 2, 2), (slice(0, 1, None), slice(2, 3, None), slice(4, 5, None)))
    """
    counts = [math.ceil(int(n) / int(b)) for n, b in zip(shape, block)]
    regions = {}
    for idx in itertools.product(*(range(c) for c in counts)):
        regions[idx] = tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(idx, block, shape))
    return regions, tuple(counts)


def padded(block, halo):
    """The shape of ``block`` grown by ``halo`` on both sides of every axis.

    Examples
    --------
    >>> padded((1, 64, 64), (0, 8, 8))
    (1, 80, 80)
    """
    return tuple(int(b) + 2 * int(h) for b, h in zip(block, halo))


def read_clipped(source, region, halo):
    """``(block, inner)``: ``source[region]`` grown by ``halo`` but clipped at the volume (never
    padded), and where ``region`` lies inside the block read.

    Examples
    --------
    >>> block, inner = read_clipped(np.arange(5)[None, None, :], (slice(0, 1), slice(0, 1), slice(0, 2)), (0, 0, 2))
    >>> block[0, 0], inner[2]
    (array([0, 1, 2, 3]), slice(0, 2, None))
    """
    outer, inner = [], []
    for sl, h, n in zip(region, halo, source.shape):
        lo, hi = max(sl.start - h, 0), min(sl.stop + h, n)
        outer.append(slice(lo, hi))
        inner.append(slice(sl.start - lo, sl.stop - lo))
    return np.asarray(source[tuple(outer)]), tuple(inner)


def read_with_halo(source, region, halo):
    """Read ``source[region]`` grown by ``halo`` voxels per axis, mirrored where it leaves the volume.

    Parameters
    ----------
    source : array-like of shape (Z, Y, X)
        Anything that can be sliced (numpy, zarr, dask).
    region : tuple of 3 slice
        The block, with explicit starts and stops.
    halo : tuple of 3 int
        Context in voxels on each side.

    Returns
    -------
    ndarray
        Shape ``(stop - start + 2 * halo)`` per axis.

    Examples
    --------
    >>> import numpy as np
    >>> read_with_halo(np.arange(5)[None, None, :], (slice(0, 1), slice(0, 1), slice(0, 2)), (0, 0, 2))[0, 0]
    array([2, 1, 0, 1, 2, 3])
    """
    shape = source.shape
    inner, pads = [], []
    for sl, h, n in zip(region, halo, shape):
        start, stop = sl.start - h, sl.stop + h
        lo, hi = max(start, 0), min(stop, n)
        inner.append(slice(lo, hi))
        pads.append((lo - start, stop - hi))
    block = np.asarray(source[tuple(inner)])
    if any(p != (0, 0) for p in pads):
        block = _mirror_pad(block, pads)
    return block


def _mirror_pad(block, pads):
    """Pad like numpy's 'reflect' (edge not repeated); repeat the reflection for pads larger than the
    axis (tiny volumes), and fall back to 'edge' on axes of length 1."""
    for axis, (before, after) in enumerate(pads):
        while before or after:
            n = block.shape[axis]
            if n == 1:
                width = [(0, 0)] * block.ndim
                width[axis] = (before, after)
                block = np.pad(block, width, mode="edge")
                break
            b, a = min(before, n - 1), min(after, n - 1)
            width = [(0, 0)] * block.ndim
            width[axis] = (b, a)
            block = np.pad(block, width, mode="reflect")
            before, after = before - b, after - a
    return block


def map_with_halo(fn, source, *, halo, chunks, dtype, n_channels: int | None = None, name: str = "halo-map"):
    """Lazily apply ``fn`` to every block of ``source`` with ``halo`` voxels of context.

    Parameters
    ----------
    fn : callable
        ``fn(block) -> ndarray``: ``block`` is (z, y, x) grown by the halo; the result has the same
        spatial shape (or a leading channel axis of length ``n_channels``).
    source : dask or zarr array of shape (Z, Y, X)
    halo : tuple of 3 int
    chunks : tuple of 3 int
        Output block shape (z, y, x).
    dtype : numpy dtype of the result
    n_channels : int, optional
        Length of a leading channel axis of ``fn``'s result.

    Returns
    -------
    dask.array.Array
        (Z, Y, X) or (C, Z, Y, X), lazily computed.
    """
    import dask.array as da

    shape = tuple(int(s) for s in source.shape)
    halo = tuple(int(h) for h in halo)
    grid = tuple(tuple(min(c, n - i) for i in range(0, n, c)) for c, n in zip(chunks, shape))

    def block(block_info=None):
        loc = block_info[None]["array-location"][-3:]
        region = tuple(slice(a, b) for a, b in loc)
        data = read_with_halo(source, region, halo)
        out = np.asarray(fn(data))
        crop = tuple(slice(h, h + (b - a)) for h, (a, b) in zip(halo, loc))
        return out[(Ellipsis, *crop)].astype(dtype, copy=False)

    out_chunks = ((int(n_channels),), *grid) if n_channels else grid
    return da.map_blocks(block, dtype=dtype, chunks=out_chunks, name=f"{name}-{uuid.uuid4().hex}",
                         meta=np.empty((0,) * len(out_chunks), dtype))
