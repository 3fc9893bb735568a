"""Readers of container and cryo-EM formats behind :func:`vemkit._readers.read`: zarr (OME-Zarr
included), N5, HDF5 and MRC, plus :func:`guess_axes` (every reader's axes when a file does not name
them) and :func:`natural_key` (the order of numbered files).

Each reader returns ``(array, axes, voxel_size_nm_or_None, metadata)`` as :mod:`vemkit._readers`
describes. Not for: TIFF, image files and folders of sections (:mod:`vemkit._readers`), writing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ._errors import OutOfRangeError, UnknownNameError
from ._voxel import to_nm

__all__ = ["guess_axes", "multiscales", "natural_key", "read_hdf5", "read_mrc", "read_n5", "read_zarr"]


def natural_key(text: str):
    """Sort key that orders ``slice2`` before ``slice10``.

    Examples
    --------
    >>> sorted(["s10.png", "s2.png", "s1.png"], key=natural_key)
    ['s1.png', 's2.png', 's10.png']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def guess_axes(shape, source: str) -> str:
    """Axes of an array whose file does not name them: 2D is YX, 3D is ZYX, RGB(A) last axis is S."""
    nd = len(shape)
    if nd == 2:
        return "YX"
    if nd == 3:
        if shape[-1] in (3, 4) and shape[0] > 4:
            return "YXS"
        return "ZYX"
    if nd == 4 and shape[-1] in (1, 3, 4):
        return "ZYXS"  # RGB(A), or a trailing singleton channel as in ilastik exports
    if nd == 4:
        raise ValueError(
            f"{source} is 4D with shape {tuple(shape)} and its file does not name the axes; vemkit "
            "expects a (z, y, x) volume. Select one 3D volume first (for example one channel or "
            "time point) and save it on its own."
        )
    raise ValueError(
        f"{source} has {nd} dimensions (shape {tuple(shape)}); expected a 3D (z, y, x) volume or a 2D image"
    )


# --------------------------------------------------------------------------------------------------
# zarr and OME-Zarr


def read_zarr(path, key=None, level=0):
    import dask.array as da
    import zarr

    try:
        node = zarr.open(path, mode="r")
    except Exception as err:
        raise ValueError(f"could not open {str(path)!r} as zarr: {err}") from err
    if key:
        if not isinstance(node, zarr.Group) or key not in node:
            raise UnknownNameError(f"{str(path)!r} has no array or group {key!r}; it holds: {_zarr_listing(node)}")
        node = node[key]
    source = f"{path}:/{key}" if key else str(path)
    if isinstance(node, zarr.Group):
        ms = multiscales(dict(node.attrs))
        if ms is None:
            raise ValueError(
                f"{source} is a zarr group without OME-Zarr multiscales metadata; name an array inside "
                f"it (path.zarr:/name). It holds: {_zarr_listing(node)}"
            )
        return _read_ome_multiscale(node, ms, level, source)
    data = da.from_zarr(node)
    attrs = dict(node.attrs)
    voxel = _voxel_from_attrs(attrs)
    axes = _axes_from_attrs(attrs) or guess_axes(node.shape, source)
    return data, axes, voxel, {"format": f"zarr v{node.metadata.zarr_format}"}


def _zarr_listing(node):
    try:
        return ", ".join(sorted(node.keys())) or "(nothing)"
    except Exception:
        return "(not a group)"


def multiscales(attrs: dict):
    """The OME-Zarr multiscales list and version from a group's attributes (0.4 or 0.5 layout)."""
    if "ome" in attrs and isinstance(attrs["ome"], dict):  # 0.5
        ome = attrs["ome"]
        if "multiscales" in ome:
            return ome["multiscales"], ome.get("version", "0.5")
    if "multiscales" in attrs:  # 0.4 and earlier
        ms = attrs["multiscales"]
        return ms, ms[0].get("version", "0.4")
    return None


def _read_ome_multiscale(group, ms_and_version, level, source):
    import dask.array as da

    multiscales, version = ms_and_version
    ms = multiscales[0]
    datasets = ms["datasets"]
    if not 0 <= level < len(datasets):
        raise OutOfRangeError(
            f"{source} has {len(datasets)} resolution level(s) (0..{len(datasets) - 1}); level={level} does not exist"
        )
    axes_meta = ms.get("axes")
    if axes_meta is None:
        axes = "TCZYX"[-group[datasets[level]["path"]].ndim :]
        units = [None] * len(axes)
    else:
        axes = "".join(
            (a["name"] if isinstance(a, dict) else a)[0].upper() for a in axes_meta
        )
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
    arr = group[datasets[level]["path"]]
    scale = [1.0] * arr.ndim
    for t in datasets[level].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [s * f for s, f in zip(scale, t["scale"])]
    for t in ms.get("coordinateTransformations", []) or []:
        if t.get("type") == "scale":
            scale = [s * f for s, f in zip(scale, t["scale"])]
    voxel = None
    spatial = [i for i, a in enumerate(axes) if a in "ZYX"]
    if len(spatial) >= 2:
        try:
            sizes = {axes[i]: to_nm(scale[i], units[i]) for i in spatial if units[i]}
        except ValueError:
            sizes = {}
        if all(a in sizes for a in "ZYX"):
            voxel = (sizes["Z"], sizes["Y"], sizes["X"])
    meta = {
        "format": f"ome-zarr {version}",
        "levels": len(datasets),
        "level": level,
        "name": ms.get("name"),
        "level_paths": [d["path"] for d in datasets],
    }
    return da.from_zarr(arr), axes, voxel, meta


def _axes_from_attrs(attrs):
    tags = attrs.get("axistags")  # ilastik / vigra HDF5 exports
    if tags:
        try:
            keys = "".join(a["key"] for a in json.loads(tags)["axes"]).upper()
            if set(keys) <= set("TCZYX"):
                return keys
        except (ValueError, KeyError, TypeError):
            pass
    axes = attrs.get("axes") or attrs.get("_ARRAY_DIMENSIONS") or attrs.get("dimension_names")
    if isinstance(axes, (list, tuple)) and all(isinstance(a, str) for a in axes):
        letters = "".join(a[0].upper() for a in axes)
        if set(letters) <= set("TCZYXS"):
            return letters
    if isinstance(axes, str) and set(axes.upper()) <= set("TCZYXS"):
        return axes.upper()
    return None


def _voxel_from_attrs(attrs: dict, reverse: bool = False):
    """Voxel size from the attribute conventions in use: element_size_um, resolution, voxel_size."""
    def order(v):
        v = [float(x) for x in v]
        return tuple(v[::-1]) if reverse else tuple(v)

    if "element_size_um" in attrs and len(attrs["element_size_um"]) == 3:
        return tuple(to_nm(v, "um") for v in order(attrs["element_size_um"]))
    if "pixelResolution" in attrs and isinstance(attrs["pixelResolution"], dict):
        pr = attrs["pixelResolution"]
        dims = pr.get("dimensions")
        if dims and len(dims) == 3:
            return tuple(to_nm(v, pr.get("unit", "nm")) for v in order(dims))
    for name in ("voxel_size", "voxel_size_nm", "resolution"):
        if name in attrs:
            v = attrs[name]
            if isinstance(v, dict):
                unit = v.get("unit", "nm")
                v = v.get("values") or v.get("value")
            else:
                unit = attrs.get("unit", attrs.get("units", "nm"))
            if isinstance(v, (list, tuple)) and len(v) == 3:
                try:
                    return tuple(to_nm(x, unit) for x in order(v))
                except ValueError:
                    return None
    return None


# --------------------------------------------------------------------------------------------------
# N5 (through tensorstore, which reads every N5 compression)


class _TensorStoreArray:
    """Minimal array interface over a tensorstore handle, so dask can read it block by block."""

    def __init__(self, store):
        self._store = store
        self.shape = tuple(int(s) for s in store.shape)
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return np.asarray(self._store[key].read().result())


def read_n5(path, key=None, level=0):
    import dask.array as da
    import tensorstore as ts

    root = Path(path)
    node = root / key if key else root
    attrs_file = node / "attributes.json"
    attrs = json.loads(attrs_file.read_text()) if attrs_file.exists() else {}
    source = f"{path}:/{key}" if key else str(path)
    if "dimensions" not in attrs:
        # a group: BigDataViewer/n5-viewer multiscale groups hold s0, s1, ...
        scales = sorted((d.name for d in node.iterdir() if re.fullmatch(r"s\d+", d.name)), key=natural_key)
        if scales:
            if level >= len(scales):
                raise OutOfRangeError(f"{source} has {len(scales)} level(s); level={level} does not exist")
            sub = f"{key}/{scales[level]}" if key else scales[level]
            data, axes, voxel, meta = read_n5(path, key=sub, level=0)
            if voxel is None:
                voxel = _voxel_from_attrs(attrs, reverse=True)
                factors = attrs.get("scales") or attrs.get("downsamplingFactors")
                if voxel is not None and factors:
                    f = factors[level][::-1]
                    voxel = tuple(v * s for v, s in zip(voxel, f))
            meta["levels"] = len(scales)
            return data, axes, voxel, meta
        children = sorted(d.name for d in node.iterdir() if d.is_dir())
        raise ValueError(
            f"{source} is an N5 group; name a dataset inside it (path.n5:/name). It holds: "
            + (", ".join(children) or "(nothing)")
        )
    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": str(node)}, "open": True}
    store = ts.open(spec, read=True).result()
    arr = _TensorStoreArray(store)
    block = attrs.get("blockSize")
    chunks = tuple(block[::-1]) if block else "auto"
    data = da.from_array(arr, chunks=chunks, asarray=False)
    voxel = _voxel_from_attrs(attrs, reverse=True)  # N5 attributes list x first
    axes_attr = attrs.get("axes")
    axes = "".join(a[0].upper() for a in axes_attr[::-1]) if axes_attr else guess_axes(arr.shape, source)
    return data, axes, voxel, {"format": "n5", "compression": attrs.get("compression", {}).get("type")}


# --------------------------------------------------------------------------------------------------
# HDF5


def read_hdf5(path, key=None, level=0):
    import dask.array as da
    import h5py

    fh = h5py.File(path, "r")
    if key is None:
        found = []
        fh.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        candidates = [n for n in found if fh[n].ndim >= 2]
        if len(candidates) != 1:
            fh.close()
            listing = ", ".join(f"/{n} {fh_shape}" for n, fh_shape in _h5_shapes(path, found)) or "(no datasets)"
            raise ValueError(
                f"{str(path)!r} holds {len(candidates)} image datasets; name one as "
                f"'{path}:/dataset'. Datasets: {listing}"
            )
        key = candidates[0]
    if key not in fh:
        listing = []
        fh.visititems(lambda name, obj: listing.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
        fh.close()
        raise UnknownNameError(f"{str(path)!r} has no dataset {key!r}; it holds: {', '.join(listing) or '(nothing)'}")
    dset = fh[key]
    if not isinstance(dset, h5py.Dataset):
        fh.close()
        raise ValueError(f"{path}:/{key} is an HDF5 group, not a dataset; name a dataset inside it")
    chunks = dset.chunks or "auto"
    data = da.from_array(dset, chunks=chunks, lock=True)
    voxel = _voxel_from_attrs(dict(dset.attrs))
    axes = _axes_from_attrs(dict(dset.attrs)) or guess_axes(dset.shape, f"{path}:/{key}")
    return data, axes, voxel, {"format": "hdf5", "dataset": "/" + key}


def _h5_shapes(path, names):
    import h5py

    with h5py.File(path, "r") as fh:
        return [(n, tuple(fh[n].shape)) for n in names]


# --------------------------------------------------------------------------------------------------
# MRC


def read_mrc(path, key=None, level=0):
    import dask.array as da
    import mrcfile

    mrc = mrcfile.mmap(path, mode="r", permissive=False)
    data = mrc.data
    if data is None:
        raise ValueError(f"{str(path)!r} holds no image data")
    vs = mrc.voxel_size  # Angstrom, (x, y, z) record
    voxel = None
    if float(vs.x) > 0 and float(vs.y) > 0 and float(vs.z) > 0:
        voxel = (to_nm(vs.z, "angstrom"), to_nm(vs.y, "angstrom"), to_nm(vs.x, "angstrom"))
    axes = guess_axes(data.shape, repr(str(path)))
    if data.ndim == 3 and mrc.is_image_stack():
        axes = "ZYX"
    return da.from_array(data, chunks="auto"), axes, voxel, {"format": "mrc"}
