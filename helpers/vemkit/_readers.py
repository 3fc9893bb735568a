"""Format readers behind :func:`vemkit.io.open_volume`: each returns a lazy array, its axes and voxel size.

Every reader returns ``(array, axes, voxel_size_nm_or_None, metadata)`` where ``array`` is a dask array
and ``axes`` names its dimensions (letters from ``"TCZYXS"``). Turning that into a (z, y, x) volume is
done once, in :func:`to_zyx`. Not for: writing (see :mod:`vemkit._omezarr`).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import numpy as np

from ._errors import OutOfRangeError
from ._readers_container import guess_axes, natural_key, read_hdf5, read_mrc, read_n5, read_zarr
from ._voxel import to_nm

__all__ = [
    "IMAGE_SUFFIXES",
    "SUPPORTED_DTYPES",
    "detect_format",
    "missing_slice_numbers",
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
        "zarr": read_zarr,
        "n5": read_n5,
        "hdf5": read_hdf5,
        "mrc": read_mrc,
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


def missing_slice_numbers(names) -> tuple[list[int], str | None]:
    """Numbers missing from a run of numbered slice names, and the name the first missing one would have.

    The names must share one pattern around their last number (``s_000.tif``, ``s_001.tif``, ...);
    the step is the greatest common divisor of the numbers' differences, so every tenth slice
    exported (0, 10, 20, ...) is no gap. ``([], None)`` for names without such a pattern.

    Examples
    --------
    >>> missing_slice_numbers([f"s_{i:03d}.tif" for i in range(20) if i != 7])
    ([7], 's_007.tif')
    >>> missing_slice_numbers(["a0.png", "a10.png", "a20.png"])
    ([], None)
    """
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", str(n)) for n in names]
    if len(names) < 3 or not all(parts) or len({(m[1], m[3]) for m in parts}) != 1:
        return [], None
    numbers = sorted(int(m[2]) for m in parts)
    if len(set(numbers)) != len(numbers):
        return [], None
    step = int(np.gcd.reduce(np.diff(numbers)))
    missing = sorted(set(range(numbers[0], numbers[-1] + 1, step)) - set(numbers))
    if not missing:
        return [], None
    widths = {len(m[2]) for m in parts}
    width = widths.pop() if len(widths) == 1 else 0
    return missing, f"{parts[0][1]}{missing[0]:0{width}d}{parts[0][3]}"


def _check_gaps(files, path, from_folder: bool):
    """A folder of numbered slices with a number missing would load as a stack with one section fewer
    (every section after the gap a section off): refused for a folder, a warning for a glob (the user's
    explicit choice of files)."""
    missing, example = missing_slice_numbers([f.name for f in files])
    if not missing:
        return
    shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    text = (f"the slices in {str(path)!r} are numbered with {len(missing)} number(s) missing: {shown} (e.g. "
            f"{example!r}); the stack would have {len(missing)} section(s) fewer and every section after a gap "
            "would be off")
    if from_folder:
        pattern = str(Path(path) / ("*" + files[0].suffix))
        raise ValueError(f"{text}. Restore the missing file(s), or open the glob {pattern!r} to accept the "
                         f"{len(files)} slices as they are")
    import warnings

    warnings.warn(f"{text}; loading the {len(files)} slices the glob matches", UserWarning, stacklevel=4)


def _read_image2d(path, key=None, level=0):
    import dask.array as da

    img = _imread2d(path)
    axes = guess_axes(img.shape, repr(str(path)))
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
    _check_gaps(files, path, p.is_dir())
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
