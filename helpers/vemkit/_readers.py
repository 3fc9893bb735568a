"""Format readers behind :func:`vemkit.io.open_volume`: each returns a lazy array, its axes and voxel size.

Every reader returns ``(array, axes, voxel_size_nm_or_None, metadata)`` where ``array`` is a dask array
and ``axes`` names its dimensions (letters from ``"TCZYXS"``). Turning that into a (z, y, x) volume is
done once, in :func:`to_zyx`. Not for: writing (see :mod:`vemkit._omezarr`).
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

import numpy as np

from ._errors import OutOfRangeError, UnknownNameError
from ._voxel import to_nm

__all__ = [
    "IMAGE_SUFFIXES",
    "SUPPORTED_DTYPES",
    "detect_format",
    "natural_key",
    "read",
    "split_key",
    "to_zyx",
]

#: File suffixes of single 2D images and of slice stacks.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".hdf5")
MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".st", ".ali", ".map")
CONTAINER_SUFFIXES = (".zarr", ".n5", *HDF5_SUFFIXES)

SUPPORTED_DTYPES = (
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64",
)

FORMATS_HELP = (
    "multipage TIFF / OME-TIFF / ImageJ TIFF (.tif, .tiff), a folder or glob of 2D slices (PNG/TIF), "
    "a single 2D image (PNG/TIF/JPG), zarr v2/v3 and OME-Zarr (.zarr), N5 (.n5), "
    "HDF5 (file.h5:/dataset) and MRC (.mrc, .rec, .st, .map)"
)


def natural_key(text: str):
    """Sort key that orders ``slice2`` before ``slice10``.

    Examples
    --------
    >>> sorted(["s10.png", "s2.png", "s1.png"], key=natural_key)
    ['s1.png', 's2.png', 's10.png']
    """
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def split_key(path: str) -> tuple[str, str | None]:
    """Split ``"file.h5:/dataset"`` or ``"image.zarr:/labels/mito"`` into the file and the inner key.

    Examples
    --------
    >>> split_key("data/vol.h5:/raw")
    ('data/vol.h5', 'raw')
    >>> split_key("vol.tif")
    ('vol.tif', None)
    """
    text = str(path)
    m = re.match(r"^(.*?\.(?:zarr|n5|h5|hdf5|hdf|he5))(?:/?:|::)/?(.*)$", text, flags=re.IGNORECASE)
    if m:
        key = m.group(2).strip("/")
        return m.group(1), key or None
    return text, None


def detect_format(path: str) -> str:
    """Name the format of ``path``: tiff, slices, image2d, zarr, n5, hdf5 or mrc.

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path`` (and it is no glob pattern matching files).
    ValueError
        If the format is not one vemkit reads.
    """
    p = Path(path)
    if any(ch in str(path) for ch in "*?["):
        return "slices"
    if not p.exists():
        raise FileNotFoundError(f"no file or folder at {str(path)!r}")
    name = p.name.lower()
    if p.is_dir():
        if name.endswith(".n5") or (p / "attributes.json").exists():
            return "n5"
        if name.endswith(".zarr") or any((p / f).exists() for f in (".zarray", ".zgroup", "zarr.json")):
            return "zarr"
        if _slice_files(p):
            return "slices"
        raise ValueError(
            f"{str(path)!r} is a folder but holds no zarr/N5 metadata and no 2D slices "
            f"({', '.join(IMAGE_SUFFIXES)}); expected one of: {FORMATS_HELP}"
        )
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    if name.endswith(MRC_SUFFIXES):
        return "mrc"
    if name.endswith(IMAGE_SUFFIXES):
        return "image2d"
    # No telling suffix: look at the magic bytes.
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head == b"\x89PNG\r\n\x1a\n":
        return "image2d"
    if head[:2] == b"\x1f\x8b":
        raise ValueError(
            f"{str(path)!r} is gzip-compressed; decompress it first (e.g. `gunzip`), then open the result"
        )
    raise ValueError(f"cannot tell the format of {str(path)!r}; expected one of: {FORMATS_HELP}")


def read(path: str, fmt: str, key: str | None, level: int):
    """Dispatch to the reader of ``fmt``; see the module docstring for what it returns."""
    reader = {
        "tiff": _read_tiff,
        "slices": _read_slices,
        "image2d": _read_image2d,
        "zarr": _read_zarr,
        "n5": _read_n5,
        "hdf5": _read_hdf5,
        "mrc": _read_mrc,
    }[fmt]
    try:
        return reader(path, key=key, level=level)
    except (FileNotFoundError, KeyError, ValueError, IndexError):
        raise
    except Exception as err:  # a library's own error on a corrupt file: say which file and format
        raise ValueError(f"could not read {str(path)!r} as {fmt}: {type(err).__name__}: {err}") from err


# --------------------------------------------------------------------------------------------------
# axes handling


def to_zyx(array, axes: str, channel: int | None, source: str):
    """Reduce an array with named axes to (z, y, x).

    Singleton time/channel axes are dropped; a channel or RGB axis with several entries needs
    ``channel`` to pick one; a 2D (y, x) image becomes one section (z = 1).
    """
    axes = axes.upper()
    if len(axes) != array.ndim:
        raise ValueError(f"{source}: axes {axes!r} do not match the array's {array.ndim} dimensions")
    index = []
    kept = []
    for ax, n in zip(axes, array.shape):
        if ax in "ZYX":
            index.append(slice(None))
            kept.append(ax)
        elif ax in "CS":
            if n == 1:
                index.append(0)
            elif channel is None:
                what = "RGB colour" if ax == "S" and n in (3, 4) else f"{n}-channel"
                raise ValueError(
                    f"{source} is a {what} image with axes {axes!r} and shape {tuple(array.shape)}; "
                    "vemkit works on single-channel EM volumes (z, y, x). Pass channel=N "
                    f"(0..{n - 1}; command line --channel N) to pick one channel, or convert it to "
                    "greyscale first."
                )
            elif not 0 <= channel < n:
                raise ValueError(f"{source}: channel={channel} is out of range 0..{n - 1}")
            else:
                index.append(channel)
        elif n == 1:  # T, Q, or anything else of length 1
            index.append(0)
        else:
            raise ValueError(
                f"{source} has a {ax!r} axis of length {n} (axes {axes!r}, shape {tuple(array.shape)}); "
                "vemkit expects one (z, y, x) volume. Save one time point or one volume per file."
            )
    array = array[tuple(index)]
    kept = "".join(kept)
    if kept == "YX":
        return array[None], "ZYX"
    if kept == "ZYX":
        return array, kept
    if sorted(kept) == sorted("ZYX"):
        order = [kept.index(a) for a in "ZYX"]
        return array.transpose(order), "ZYX"
    raise ValueError(
        f"{source}: expected axes z, y, x (or y, x for one section), found {axes!r} "
        f"with shape {tuple(array.shape)}"
    )


def _guess_axes(shape, source: str) -> str:
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
# TIFF


class _TiffRegionReader:
    """Reads regions of one TIFF series level, opening the file per read.

    Opening per read keeps no file handle alive between reads (nothing leaks when a volume is
    dropped) and pickles to other processes (dask.distributed workers).
    """

    def __init__(self, path, level, shape, dtype):
        self.path, self.level = str(path), level
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __getitem__(self, key):
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tf:
            store = tf.series[0].aszarr(level=self.level)
            try:
                node = zarr.open(store, mode="r")
                if isinstance(node, zarr.Group):
                    node = node[str(self.level)]
                return np.asarray(node[key])
            finally:
                store.close()


def _read_tiff(path, key=None, level=0):
    import dask.array as da
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.series:
            raise ValueError(f"could not read {path!r} as tiff: it holds no readable image series (corrupt or truncated?)")
        series = tf.series[0]
        meta = {"format": "tiff", "tiff_axes": series.axes}
        voxel = None
        axes = series.axes.replace("I", "Z").replace("Q", "Z")
        if tf.is_ome:
            meta["format"] = "ome-tiff"
            voxel = _ome_tiff_voxel_size(tf.ome_metadata)
        elif tf.is_imagej:
            meta["format"] = "imagej-tiff"
            voxel = _imagej_voxel_size(tf)
        n_levels = len(series.levels)
        if level >= n_levels:
            raise OutOfRangeError(f"{path!r} has {n_levels} resolution level(s); level={level} does not exist")
        shape, dtype = series.levels[level].shape, series.levels[level].dtype
        if level and voxel is not None:
            factors = [b / s for b, s in zip(series.shape, shape)]
            zyx = [factors[axes.index(a)] if a in axes else 1.0 for a in "ZYX"]
            voxel = tuple(v * f for v, f in zip(voxel, zyx))
    # chunks: whole planes, as many as make about 16 MB (a TIFF stores planes, so reading part of a
    # plane costs nearly as much as reading the plane)
    plane = int(np.prod(shape[-2:])) * np.dtype(dtype).itemsize
    chunks = [1] * (len(shape) - 2) + list(shape[-2:])
    if "Z" in axes and len(shape) > 2:
        zi = axes.index("Z")
        chunks[zi] = int(max(1, min(shape[zi], (16 * 2**20) // max(plane, 1))))
    reader = _TiffRegionReader(path, level, shape, dtype)
    data = da.from_array(reader, chunks=tuple(chunks), asarray=False, name=f"tiff-{path}-{level}-{os.path.getmtime(path)}")
    meta["levels"] = n_levels
    return data, axes, voxel, meta


def _imagej_voxel_size(tf):
    ij = tf.imagej_metadata or {}
    page = tf.pages[0]
    unit = ij.get("unit")
    if unit in (None, "", "pixel", "pixels", "inch"):
        return None
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    except KeyError:
        return None
    try:
        x = to_nm(xres[1] / xres[0], unit)
        y = to_nm(yres[1] / yres[0], unit)
    except (ZeroDivisionError, ValueError):
        return None
    z = ij.get("spacing")
    z = to_nm(z, unit) if z else None
    if z is None:
        # a single-section ImageJ file: z thickness unknown
        return None
    return (z, y, x)


def _ome_tiff_voxel_size(xml: str | None):
    if not xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    sizes = []
    for ax in "ZYX":
        v = pixels.get(f"PhysicalSize{ax}")
        if v is None:
            return None
        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")
        sizes.append(to_nm(float(v), unit))
    return tuple(sizes)


# --------------------------------------------------------------------------------------------------
# 2D images and slice stacks


def _imread2d(path):
    name = str(path).lower()
    if name.endswith(TIFF_SUFFIXES):
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return iio.imread(path)


def _slice_files(folder: Path):
    return sorted(
        (f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_SUFFIXES)),
        key=lambda f: natural_key(f.name),
    )


def _read_image2d(path, key=None, level=0):
    import dask.array as da

    img = _imread2d(path)
    axes = _guess_axes(img.shape, repr(str(path)))
    return da.from_array(img, chunks=img.shape), axes, None, {"format": "image2d"}


def _read_slices(path, key=None, level=0):
    import dask
    import dask.array as da

    p = Path(path)
    if p.is_dir():
        files = _slice_files(p)
        suffixes = {f.suffix.lower() for f in files}
        if len(suffixes) > 1:
            raise ValueError(
                f"folder {str(path)!r} mixes image types {sorted(suffixes)}; give a glob such as "
                f"'{p}/*.png' to choose one"
            )
    else:
        files = sorted((Path(f) for f in glob.glob(str(path)) if os.path.isfile(f)), key=lambda f: natural_key(f.name))
    if not files:
        raise FileNotFoundError(f"no 2D slices match {str(path)!r}")
    first = _imread2d(files[0])
    if first.ndim != 2 and not (first.ndim == 3 and first.shape[-1] in (3, 4)):
        raise ValueError(f"{str(files[0])!r}: expected a 2D image for a slice stack, got shape {first.shape}")
    # 1-bit slices read as bool; a stack may mix them with 8-bit ones (seen in real label stacks),
    # so bool slices are read as 8-bit 0/255, the value an 8-bit viewer shows.
    dtype = np.dtype(np.uint8) if first.dtype == bool else first.dtype
    lazy = [
        da.from_delayed(dask.delayed(_checked_slice)(str(f), first.shape, dtype), first.shape, dtype)
        for f in files
    ]
    data = da.stack(lazy)
    axes = "ZYXS" if first.ndim == 3 else "ZYX"
    meta = {"format": "slices", "files": [str(f) for f in files]}
    return data, axes, None, meta


def _checked_slice(path, shape, dtype):
    img = _imread2d(path)
    if img.dtype == bool and dtype == np.uint8:
        img = img.astype(np.uint8) * np.uint8(255)
    if img.shape != shape or img.dtype != dtype:
        raise ValueError(
            f"slice {path!r} has shape {img.shape} and dtype {img.dtype}; the stack's first slice has "
            f"{shape} and {dtype}; all slices must match"
        )
    return img


# --------------------------------------------------------------------------------------------------
# zarr and OME-Zarr


def _read_zarr(path, key=None, level=0):
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
        ms = _multiscales(dict(node.attrs))
        if ms is None:
            raise ValueError(
                f"{source} is a zarr group without OME-Zarr multiscales metadata; name an array inside "
                f"it (path.zarr:/name). It holds: {_zarr_listing(node)}"
            )
        return _read_ome_multiscale(node, ms, level, source)
    data = da.from_zarr(node)
    attrs = dict(node.attrs)
    voxel = _voxel_from_attrs(attrs)
    axes = _axes_from_attrs(attrs) or _guess_axes(node.shape, source)
    return data, axes, voxel, {"format": f"zarr v{node.metadata.zarr_format}"}


def _zarr_listing(node):
    try:
        return ", ".join(sorted(node.keys())) or "(nothing)"
    except Exception:
        return "(not a group)"


def _multiscales(attrs: dict):
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


def _read_n5(path, key=None, level=0):
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
            data, axes, voxel, meta = _read_n5(path, key=sub, level=0)
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
    axes = "".join(a[0].upper() for a in axes_attr[::-1]) if axes_attr else _guess_axes(arr.shape, source)
    return data, axes, voxel, {"format": "n5", "compression": attrs.get("compression", {}).get("type")}


# --------------------------------------------------------------------------------------------------
# HDF5


def _read_hdf5(path, key=None, level=0):
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
    axes = _axes_from_attrs(dict(dset.attrs)) or _guess_axes(dset.shape, f"{path}:/{key}")
    return data, axes, voxel, {"format": "hdf5", "dataset": "/" + key}


def _h5_shapes(path, names):
    import h5py

    with h5py.File(path, "r") as fh:
        return [(n, tuple(fh[n].shape)) for n in names]


# --------------------------------------------------------------------------------------------------
# MRC


def _read_mrc(path, key=None, level=0):
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
    axes = _guess_axes(data.shape, repr(str(path)))
    if data.ndim == 3 and mrc.is_image_stack():
        axes = "ZYX"
    return da.from_array(data, chunks="auto"), axes, voxel, {"format": "mrc"}
