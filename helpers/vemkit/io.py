"""Reading any volume-EM file lazily with its voxel size, and writing OME-Zarr.

:func:`open_volume` is the one entry point for reading: TIFF (plain, OME, ImageJ), folders or globs
of 2D slices, single 2D images, zarr v2/v3, OME-Zarr 0.4/0.5, N5, HDF5 and MRC. It returns a
:class:`~vemkit.Volume`: a lazy dask array in (z, y, x) order with its voxel size in nanometres.
:func:`write_ome_zarr` streams a volume of any size into a multiscale OME-Zarr, and
:func:`write_labels` adds label images to it.

Not for: downloading datasets (:mod:`vemkit.datasets`) or showing volumes (:mod:`vemkit.viz`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._omezarr import set_ome_attrs, write_multiscale
from ._outputs import TIFF_SOFTWARE, check_output, check_replaceable, mark_output, remove_output
from ._progress import progress_bar
from ._readers import FORMATS_HELP, SUPPORTED_DTYPES, detect_format, read, split_key, to_zyx
from ._readers_container import multiscales
from ._volume import MissingVoxelSizeWarning, Volume, as_dask
from ._voxel import check_voxel_size

__all__ = [
    "FORMATS_HELP",
    "MissingVoxelSizeWarning",
    "Volume",
    "open_volume",
    "write_labels",
    "write_ome_zarr",
    "write_tiff",
]


def open_volume(
    path,
    *,
    voxel_size=None,
    key: str | None = None,
    level: int = 0,
    channel: int | None = None,
    chunks=None,
    warn_missing_voxel_size: bool = True,
) -> Volume:
    """Open a volume file lazily as a (z, y, x) :class:`~vemkit.Volume` with its voxel size.

    Parameters
    ----------
    path : str or Path
        A file or folder: ``stack.tif`` (multipage, OME-TIFF, ImageJ), a folder or glob of 2D slices
        (``"sections/*.png"``, natural sort order), ``image.png`` (one section), ``volume.zarr``
        (zarr v2/v3 array, or OME-Zarr 0.4/0.5 image), ``volume.n5``, ``volume.h5:/raw`` (HDF5 with a
        dataset) or ``tomo.mrc``. Inner paths of containers follow a colon:
        ``image.ome.zarr:/labels/mitochondria``.
    voxel_size : sequence of 3 float, optional
        Voxel size (z, y, x) in nm. Overrides what the file says.
    key : str, optional
        Dataset inside an HDF5/zarr/N5 container (instead of the ``path:/key`` form).
    level : int
        Resolution level of a multiscale file (OME-Zarr, pyramidal TIFF, N5 s0/s1...); 0 is full size.
    channel : int, optional
        The channel to take from a multi-channel or RGB file; vemkit works on one channel.
    chunks : tuple of 3 int, optional
        Rechunk the lazy array to these (z, y, x) chunks.
    warn_missing_voxel_size : bool
        Warn (:class:`MissingVoxelSizeWarning`) when the voxel size is unknown. It is never set to 1.

    Returns
    -------
    Volume
        ``volume.data`` is a dask array of shape (Z, Y, X); ``volume.voxel_size`` is (z, y, x) in nm or
        ``None`` when unknown; ``volume.metadata["format"]`` names the format read.

    Raises
    ------
    FileNotFoundError
        Nothing exists at ``path``.
    ValueError
        Unknown format, corrupt file, unsupported dtype, 4D/RGB data without ``channel``, or a voxel
        size that is not three positive numbers.
    KeyError
        The named dataset is not in the container (an ``UnknownNameError``, also a ValueError).

    Examples
    --------
    >>> import numpy as np, tifffile, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
    >>> tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint8), photometric="minisblack")
    >>> vol = open_volume(path, voxel_size=(50, 4, 4))
    >>> vol.shape, vol.voxel_size
    ((4, 32, 32), (50.0, 4.0, 4.0))
    """
    if voxel_size is not None:
        voxel_size = check_voxel_size(voxel_size)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
        raise ValueError(f"level must be a non-negative integer, got {level!r}")
    raw = str(path)
    file_part, inner = split_key(raw)
    if key is not None:
        inner = str(key).strip("/")
    fmt = detect_format(file_part)
    source = f"{file_part}:/{inner}" if inner else file_part
    data, axes, file_voxel, meta = read(file_part, fmt, inner, int(level))
    data, _ = to_zyx(data, axes, channel, repr(source))
    if data.dtype.name not in SUPPORTED_DTYPES:
        raise ValueError(
            f"{source} has dtype {data.dtype}; vemkit reads {', '.join(SUPPORTED_DTYPES)}"
        )
    if chunks is not None:
        data = data.rechunk(tuple(int(c) for c in chunks))
    meta = dict(meta)
    meta["voxel_size_from_file"] = file_voxel
    vol = Volume(data=data, voxel_size=voxel_size or file_voxel, source=source, metadata=meta)
    if warn_missing_voxel_size:
        vol.warn_if_no_voxel_size()
    return vol


def write_ome_zarr(
    image,
    path,
    *,
    voxel_size=None,
    labels: dict | None = None,
    name: str | None = None,
    chunks=None,
    levels: int | None = None,
    version: str = "0.4",
    overwrite: bool = False,
    memory_limit: str | int = "256MB",
    progress: bool = True,
    kind: str = "image",
) -> Path:
    """Write a volume as a multiscale OME-Zarr image, block by block.

    Parameters
    ----------
    image : Volume, dask array or numpy array of shape (Z, Y, X) or (C, Z, Y, X)
        The volume; a lazy one is read slab by slab, never whole. A leading channel axis (e.g. class
        probabilities) is stored as OME-Zarr axis ``c``; open one channel with ``open_volume(path,
        channel=k)``.
    path : str or Path
        Target folder, by convention ending in ``.ome.zarr``.
    voxel_size : sequence of 3 float, optional
        Voxel size (z, y, x) in nm; required unless ``image`` is a Volume that knows it.
    labels : dict of str to array, optional
        Label images of the same shape (integer dtype), written as OME-Zarr image-label groups
        under ``labels/<name>``.
    name : str, optional
        Image name stored in the metadata (default: the folder's stem).
    chunks : tuple of 3 int, optional
        Chunk shape (z, y, x); default about 4 MB, up to 64 sections deep and 256-512 px square.
    levels : int, optional
        Number of pyramid levels including full resolution; default: halve y, x (and z once it is no
        coarser than y, x) until the in-plane size is at most 256.
    version : {"0.4", "0.5"}
        OME-Zarr version: 0.4 writes zarr v2, 0.5 writes zarr v3.
    overwrite : bool
        Replace an existing ``path`` that vemkit wrote; by default an existing path is an error, never
        overwritten. Never replaced: anything vemkit did not write, a folder holding other files, an
        input (the output may not be, contain or lie inside what it is written from).
    memory_limit : str or int
        Bytes of source data held at once while writing (e.g. ``"256MB"``).
    progress : bool
        Show a progress bar.
    kind : {"image", "labels"}
        How coarser levels are made: "image" averages, "labels" takes every other voxel (nearest
        neighbour) so that label ids are never blended; use it for segmentations written as images.

    Returns
    -------
    Path
        The written store.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "img.ome.zarr")
    >>> _ = write_ome_zarr(np.zeros((4, 64, 64), np.uint8), out, voxel_size=(50, 4, 4), progress=False)
    >>> open_volume(out).voxel_size
    (50.0, 4.0, 4.0)
    """
    import dask
    import zarr

    if version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {version!r}")
    if kind not in ("image", "labels"):
        raise ValueError(f"kind must be 'image' or 'labels', got {kind!r}")
    data, vs = _image_for_writing(image, voxel_size, labels)
    label_arrays = _label_arrays(labels, data.shape)
    if chunks is not None:
        chunks = tuple(int(c) for c in chunks)
        if len(chunks) != 3 or min(chunks) < 1:
            raise ValueError(f"chunks must be three positive integers (z, y, x), got {chunks!r}")
    if levels is not None and (not isinstance(levels, (int, np.integer)) or levels < 1):
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    memory_bytes = dask.utils.parse_bytes(memory_limit) if isinstance(memory_limit, str) else int(memory_limit)
    path = check_output(path, [image, *(labels or {}).values()], overwrite=overwrite)
    if path.exists() or path.is_symlink():
        remove_output(path)
    name = name or path.name.split(".")[0]
    zarr_format = 2 if version == "0.4" else 3
    root = zarr.open_group(str(path), mode="w-", zarr_format=zarr_format)
    mark_output(root, "ome-zarr")
    ms, _ = write_multiscale(
        root, data, vs, name=name, version=version, chunks=chunks, levels=levels, kind=kind,
        memory_bytes=memory_bytes, progress=progress,
    )
    set_ome_attrs(root, version, {"multiscales": [ms]})
    for lname, larr in label_arrays.items():
        write_labels(path, lname, larr, voxel_size=vs, chunks=chunks, levels=levels,
                     memory_limit=memory_bytes, progress=progress)
    return path


def _image_for_writing(image, voxel_size, labels):
    """The image as a dask array of a supported dtype (bool -> uint8), with its checked voxel size."""
    if not isinstance(image, Volume) and getattr(image, "ndim", 3) == 4:
        # (c, z, y, x): channels such as class probabilities; the pyramid is built over z, y, x
        if voxel_size is None:
            raise ValueError("voxel_size is unknown and writing OME-Zarr needs it; pass voxel_size=(z, y, x) in nm")
        vs = check_voxel_size(voxel_size)
        data = as_dask(image)
        if labels:
            raise ValueError("labels can be attached to (z, y, x) images only")
    else:
        volume = image if isinstance(image, Volume) else Volume.from_array(image)
        if voxel_size is not None:
            volume = volume.with_voxel_size(voxel_size)
        vs = volume.require_voxel_size("writing OME-Zarr")
        data = volume.data
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype.name not in SUPPORTED_DTYPES:
        raise ValueError(f"image has dtype {data.dtype}; OME-Zarr writing takes {', '.join(SUPPORTED_DTYPES)}")
    return data, vs


def _label_arrays(labels, shape) -> dict:
    """The label images by name as dask arrays, checked to be integers of the image's ``shape``."""
    label_arrays = {}
    for lname, lab in (labels or {}).items():
        larr = as_dask(lab)
        if larr.ndim == 2:
            larr = larr[None]
        if tuple(larr.shape) != tuple(shape):
            raise ValueError(
                f"labels[{lname!r}] has shape {tuple(larr.shape)}; expected the image's shape {tuple(shape)}"
            )
        if not (np.issubdtype(larr.dtype, np.integer) or larr.dtype == bool):
            raise ValueError(f"labels[{lname!r}] has dtype {larr.dtype}; label images must be integers")
        label_arrays[str(lname)] = larr
    return label_arrays


def _image_version(root) -> str:
    found = multiscales(dict(root.attrs))
    if found is None:
        raise ValueError(f"{root.store} is not an OME-Zarr image (no multiscales metadata)")
    return "0.5" if found[1].startswith("0.5") else "0.4"


def write_labels(
    image_path,
    name: str,
    labels,
    *,
    voxel_size=None,
    colors: dict | None = None,
    chunks=None,
    levels: int | None = None,
    overwrite: bool = False,
    memory_limit: str | int = "256MB",
    progress: bool = True,
) -> str:
    """Add a label image to an existing OME-Zarr image as ``labels/<name>``.

    Parameters
    ----------
    image_path : str or Path
        An OME-Zarr image written by :func:`write_ome_zarr` (or any OME-Zarr 0.4/0.5 image).
    name : str
        Name of the label image, e.g. ``"mitochondria"``.
    labels : Volume, dask or numpy array of shape (Z, Y, X), integer dtype
        0 = background. Downsampled by nearest neighbour, so ids are never blended.
    voxel_size : sequence of 3 float, optional
        Default: the image's full-resolution voxel size.
    colors : dict of int to (r, g, b, a), optional
        Display colours (0-255) per label value.
    overwrite : bool
        Replace a label image of the same name that vemkit wrote.

    Returns
    -------
    str
        ``"<image_path>:/labels/<name>"``, which :func:`open_volume` opens.
    """
    import dask
    import zarr

    if not name or "/" in str(name):
        raise ValueError(f"label name must be a non-empty name without '/', got {name!r}")
    target = check_output(Path(image_path) / "labels" / name, [labels], overwrite=overwrite, exists_ok=True,
                          what="label image")
    root = zarr.open_group(str(image_path), mode="r+")
    version = _image_version(root)
    image = open_volume(image_path, warn_missing_voxel_size=False)
    larr = as_dask(labels)
    if larr.ndim == 2:
        larr = larr[None]
    if tuple(larr.shape) != image.shape:
        raise ValueError(f"labels {name!r} have shape {tuple(larr.shape)}; expected the image's {image.shape}")
    if larr.dtype == bool:
        larr = larr.astype(np.uint8)
    if not np.issubdtype(larr.dtype, np.integer):
        raise ValueError(f"labels {name!r} have dtype {larr.dtype}; label images must be integers")
    vs = check_voxel_size(voxel_size) if voxel_size is not None else image.require_voxel_size("writing labels")
    labels_group = root.require_group("labels")
    existing = list(labels_group.attrs.get("labels", []) if version == "0.4"
                    else labels_group.attrs.get("ome", {}).get("labels", []))
    if name in labels_group:
        if not overwrite:
            raise FileExistsError(
                f"{image_path}:/labels/{name} already exists; pass overwrite=True to replace it"
            )
        check_replaceable(target, "label image")
        del labels_group[name]
    group = labels_group.create_group(name)
    mark_output(group, "labels")
    memory_bytes = dask.utils.parse_bytes(memory_limit) if isinstance(memory_limit, str) else int(memory_limit)
    ms, _ = write_multiscale(
        group, larr, vs, name=name, version=version, chunks=chunks, levels=levels, kind="labels",
        memory_bytes=memory_bytes, progress=progress,
    )
    image_label = {"source": {"image": "../../"}}
    if version == "0.4":
        image_label["version"] = "0.4"
    if colors:
        image_label["colors"] = [
            {"label-value": int(k), "rgba": [int(c) for c in v]} for k, v in sorted(colors.items())
        ]
    set_ome_attrs(group, version, {"multiscales": [ms], "image-label": image_label})
    if name not in existing:
        existing.append(name)
    set_ome_attrs(labels_group, version, {"labels": existing})
    return f"{image_path}:/labels/{name}"


def write_tiff(image, path, *, voxel_size=None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write a volume as an ImageJ-compatible multipage TIFF with its voxel size, section by section.

    Parameters
    ----------
    image : Volume, dask or numpy array of shape (Z, Y, X)
    path : str or Path
    voxel_size : sequence of 3 float, optional
        Voxel size (z, y, x) in nm; stored as ImageJ spacing and resolution (in µm, as Fiji expects).
    overwrite : bool
        Replace an existing TIFF that vemkit wrote (its ``Software`` tag says ``vemkit``).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "v.tif")
    >>> _ = write_tiff(np.ones((3, 8, 8), np.uint16), p, voxel_size=(30, 5, 5), progress=False)
    >>> open_volume(p).voxel_size
    (30.0, 5.0, 5.0)
    """
    import tifffile

    volume = image if isinstance(image, Volume) else Volume.from_array(image)
    if voxel_size is not None:
        volume = volume.with_voxel_size(voxel_size)
    path = check_output(path, [image], overwrite=overwrite)
    if path.is_dir():  # a folder vemkit wrote under this name (checked above): a TIFF replaces it
        remove_output(path)
    data = volume.data
    if data.dtype == bool:
        data = data.astype(np.uint8)
    kwargs = {"imagej": True, "metadata": {"axes": "ZYX"}, "software": TIFF_SOFTWARE}
    if volume.voxel_size is not None:
        z, y, x = (v / 1000 for v in volume.voxel_size)
        kwargs["resolution"] = (1 / x, 1 / y)
        kwargs["metadata"].update(spacing=z, unit="micron")
    if data.dtype not in (np.uint8, np.uint16, np.float32):
        # ImageJ TIFF takes only these dtypes: write an OME-TIFF, which keeps the voxel size too
        kwargs = {"ome": True, "metadata": {"axes": "ZYX"}, "software": TIFF_SOFTWARE}
        if volume.voxel_size is not None:
            for ax, v in zip("ZYX", volume.voxel_size):
                kwargs["metadata"][f"PhysicalSize{ax}"] = v
                kwargs["metadata"][f"PhysicalSize{ax}Unit"] = "nm"
    sections = (np.asarray(data[i].compute()) for i in progress_bar(range(data.shape[0]), desc="TIFF", unit="section",
                                                                         disable=not progress))
    tmp = path.with_name(path.name + ".part")
    try:
        tifffile.imwrite(tmp, sections, shape=data.shape, dtype=data.dtype, **kwargs)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
