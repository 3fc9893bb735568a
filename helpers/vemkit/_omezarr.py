"""OME-Zarr writing: multiscale images and image-label groups, streamed block by block.

Memory stays bounded by the slab budget, whatever the volume's size: each level is written in
chunk-aligned slabs computed from a lazy (dask) source, and every coarser level is computed from the
level below it as stored on disk. Not for: reading (see :mod:`vemkit._readers`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from ._progress import progress_bar

__all__ = [
    "default_chunks",
    "pyramid_factors",
    "remove_tree",
    "set_ome_attrs",
    "write_multiscale",
]

_AXES = [
    {"name": "z", "type": "space", "unit": "nanometer"},
    {"name": "y", "type": "space", "unit": "nanometer"},
    {"name": "x", "type": "space", "unit": "nanometer"},
]


def default_chunks(shape, itemsize: int, target_bytes: int = 4 * 2**20):
    """Chunk shape (z, y, x) of about ``target_bytes``: square in-plane, a few sections deep.

    Examples
    --------
    >>> default_chunks((100, 4096, 4096), 1)
    (64, 256, 256)
    >>> default_chunks((1, 512, 512), 1)
    (1, 512, 512)
    """
    z, y, x = shape
    cz = min(z, 64)
    side = int(math.sqrt(target_bytes / max(cz * itemsize, 1)))
    side = max(64, min(512, 2 ** int(math.log2(max(side, 1)))))
    return (max(cz, 1), max(min(y, side), 1), max(min(x, side), 1))


def pyramid_factors(shape, voxel_size, levels=None, min_size: int = 256):
    """Downsampling factors (z, y, x) of each level after the first, anisotropy-aware.

    y and x halve at every level; z halves only once its spacing is no coarser than the new in-plane
    spacing, so a 50 x 4 x 4 nm ssTEM stack keeps all its sections until the in-plane spacing
    reaches about 50 nm. Without ``levels``, levels are added until the largest in-plane side is at
    most ``min_size``.

    Returns
    -------
    list of tuple of int
        One (fz, fy, fx) per added level, relative to the level before it.

    Examples
    --------
    >>> pyramid_factors((20, 1024, 1024), (50.0, 4.0, 4.0))
    [(1, 2, 2), (1, 2, 2)]
    >>> pyramid_factors((256, 1024, 1024), (10.0, 10.0, 10.0))
    [(2, 2, 2), (2, 2, 2)]
    """
    vz, vy, vx = voxel_size
    z, y, x = shape
    out = []
    while True:
        if levels is None:
            if max(y, x) <= min_size:
                break
        elif len(out) >= levels - 1:
            break
        if min(y, x) < 2:
            break
        new_vxy = min(vy, vx) * 2
        fz = 2 if (vz <= new_vxy and z >= 2) else 1
        out.append((fz, 2, 2))
        z, y, x = max(z // fz, 1), y // 2, x // 2
        vz, vy, vx = vz * fz, vy * 2, vx * 2
    return out


def _downsample(data, factors, kind: str):
    """Downsample a dask array by integer (z, y, x) factors: mean for images, nearest (stride) for
    labels. A leading channel axis (4D data) is kept as it is."""
    import dask.array as da

    if data.ndim == 4:
        factors = (1, *factors)
    if all(f == 1 for f in factors):
        return data
    # trim so each axis is a multiple of its factor
    trimmed = data[tuple(slice(0, (n // f) * f) for n, f in zip(data.shape, factors))]
    if kind == "labels":
        return trimmed[tuple(slice(f // 2, None, f) for f in factors)]
    # make the chunks multiples of the factors so coarsen works block by block
    chunks = tuple(max(f, (c // f) * f) for c, f in zip(trimmed.chunksize, factors))
    trimmed = trimmed.rechunk(chunks)
    dtype = data.dtype
    mean = da.coarsen(np.mean, trimmed.astype(np.float32), dict(enumerate(factors)), trim_excess=True)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        mean = da.clip(da.round(mean), info.min, info.max)
    return mean.astype(dtype)


def _slabs(shape, chunks, itemsize: int, memory_bytes: int):
    """Chunk-aligned (z0, z1, y0, y1) slabs: one chunk row in z, as many chunk rows in y as fit."""
    cz, cy, _ = chunks
    Z, Y, X = shape
    row_bytes = cz * cy * X * itemsize
    band = max(1, int(memory_bytes // max(row_bytes, 1))) * cy
    return [(z0, min(z0 + cz, Z), y0, min(y0 + band, Y)) for z0 in range(0, Z, cz) for y0 in range(0, Y, band)]


def _store_slabs(data, target, memory_bytes: int, bar):
    """Write ``data`` into the zarr array ``target`` slab by slab (bounded memory).

    Each slab is filled in place from the dask blocks (``da.store`` into one reused buffer, so the
    blocks are never concatenated into a second copy), then written as whole zarr chunks. 4D data
    (c, z, y, x) is cut into slabs along z and y with all channels together.
    """
    import dask
    import dask.array as da

    # threads unless the caller chose a scheduler (a model that parallelises inside each block runs
    # its blocks one after another: dask.config.set(scheduler="synchronous"))
    scheduler = dask.config.get("scheduler", None) or "threads"
    lead = (slice(None),) * (data.ndim - 3)
    n_channels = int(np.prod(data.shape[:-3])) if data.ndim > 3 else 1
    itemsize = np.dtype(data.dtype).itemsize * n_channels
    buffer = None
    for z0, z1, y0, y1 in _slabs(data.shape[-3:], target.chunks[-3:], itemsize, memory_bytes):
        region = (*lead, slice(z0, z1), slice(y0, y1))
        shape = (*data.shape[:-3], z1 - z0, y1 - y0, data.shape[-1])
        if buffer is None or buffer.shape != shape:
            buffer = np.empty(shape, dtype=data.dtype)
        da.store(data[region], buffer, lock=False, scheduler=scheduler)
        target[region] = buffer
        bar.update(1)


def _multiscale_meta(name, version, paths, scales, translations, kind, n_channel_axes=0):
    datasets = []
    for p, s, t in zip(paths, scales, translations):
        ct = [{"type": "scale", "scale": [float(v) for v in s]}]
        if any(abs(v) > 0 for v in t):
            ct.append({"type": "translation", "translation": [float(v) for v in t]})
        datasets.append({"path": p, "coordinateTransformations": ct})
    axes = ([{"name": "c", "type": "channel"}] if n_channel_axes else []) + _AXES
    ms = {
        "axes": axes,
        "datasets": datasets,
        "name": name,
        "type": "mean" if kind == "image" else "nearest",
        "metadata": {"method": "vemkit", "kind": kind},
    }
    if version == "0.4":
        ms["version"] = "0.4"
    return ms


def write_multiscale(
    group,
    data,
    voxel_size,
    *,
    name: str,
    version: str,
    chunks,
    levels,
    kind: str,
    memory_bytes: int,
    progress: bool,
    compressor_level: int = 3,
    base_written: bool = False,
):
    """Write ``data`` as a multiscale pyramid into the zarr ``group``; return the level shapes.

    With ``base_written``, level ``"0"`` already holds ``data`` (written block by block elsewhere, e.g.
    by :mod:`vemkit.predict`); only the coarser levels are computed, from it.
    """
    import dask.array as da

    if data.ndim not in (3, 4):
        raise ValueError(f"OME-Zarr writing takes (z, y, x) or (c, z, y, x) data, got shape {data.shape}")
    n_lead = data.ndim - 3
    spatial = tuple(int(s) for s in data.shape[-3:])
    itemsize = np.dtype(data.dtype).itemsize * (int(data.shape[0]) if n_lead else 1)
    if chunks is None:
        chunks = default_chunks(spatial, itemsize)
    chunks = tuple(int(min(c, max(s, 1))) for c, s in zip(chunks, spatial))
    factors = pyramid_factors(spatial, voxel_size, levels)
    level_shapes = [spatial]
    for f in factors:
        level_shapes.append(tuple(max(n // fi, 1) for n, fi in zip(level_shapes[-1], f)))
    total = sum(
        len(_slabs(shp, tuple(min(c, n) for c, n in zip(chunks, shp)), itemsize, memory_bytes))
        for shp in level_shapes[1 if base_written else 0:]
    )
    bar = progress_bar(total=total, desc=f"{name}: {len(level_shapes)} level(s)", unit="slab", disable=not progress)
    zarr_format = 2 if version == "0.4" else 3
    paths, scales, translations, shapes = [], [], [], []
    scale = list(voxel_size)
    translation = [0.0, 0.0, 0.0]
    current = data
    for level in range(len(factors) + 1):
        if level > 0:
            f = factors[level - 1]
            prev = da.from_zarr(group[paths[-1]])
            current = _downsample(prev, f, kind)
            if kind == "image":  # mean pooling moves voxel centres by half the pooled extent
                translation = [t + (fi - 1) * s / 2 for t, fi, s in zip(translation, f, scale)]
            scale = [s * fi for s, fi in zip(scale, f)]
        path = str(level)
        level_chunks = (1,) * n_lead + tuple(min(c, max(n, 1)) for c, n in zip(chunks, current.shape[-3:]))
        kwargs = dict(
            name=path,
            shape=current.shape,
            chunks=level_chunks,
            dtype=current.dtype,
            fill_value=0,
            overwrite=False,
        )
        if zarr_format == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = ["c", "z", "y", "x"][-current.ndim :]
        if level == 0 and base_written:
            arr = group[path]
            if tuple(arr.shape) != tuple(current.shape):
                raise ValueError(f"level 0 has shape {arr.shape}, expected {current.shape}")
        else:
            arr = group.create_array(**kwargs)
            _store_slabs(current, arr, memory_bytes, bar)
        paths.append(path)
        scales.append([1.0] * n_lead + list(scale))
        translations.append([0.0] * n_lead + list(translation))
        shapes.append(tuple(int(s) for s in current.shape))
    bar.close()
    ms = _multiscale_meta(name, version, paths, scales, translations, kind, n_lead)
    return ms, shapes


def remove_tree(path: Path):
    """Delete a store that vemkit is about to replace (only after the user asked to overwrite)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def set_ome_attrs(group, version, content: dict):
    """Merge ``content`` into a group's OME-NGFF metadata: top-level attributes for NGFF 0.4, under
    ``"ome"`` (with its version) for 0.5."""
    if version == "0.4":
        group.attrs.update(content)
    else:
        ome = dict(group.attrs.get("ome", {}))
        ome.update(content)
        ome["version"] = "0.5"
        group.attrs["ome"] = ome
