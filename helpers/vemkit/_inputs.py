"""One way in: any volume a user hands vemkit becomes ``(array, voxel size, source)``.

:func:`as_volume_array` accepts a path (opened lazily with :func:`vemkit.io.open_volume`), a
:class:`~vemkit._volume.Volume`, a numpy, dask, zarr or h5py array, or anything ``np.asarray`` takes;
every stage module calls it instead of unwrapping inputs itself. :func:`load_in_memory` is the same
for steps that need the voxels in memory. Not for: reading file formats (:mod:`vemkit._readers`).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from ._volume import Volume, as_dask
from ._voxel import check_voxel_size

__all__ = ["VolumeInput", "as_volume_array", "load_in_memory", "paired_voxel_size"]


class VolumeInput(NamedTuple):
    """What :func:`as_volume_array` returns."""

    data: Any
    """Array of shape (Z, Y, X): numpy stays numpy, dask stays dask, other array-likes pass through."""
    voxel_size: tuple | None
    """``(z, y, x)`` in nm: the one passed, else the one the input carries, else ``None``."""
    source: str | None
    """Where the data came from (a path or a Volume's source), ``None`` for bare arrays."""


def as_volume_array(obj, name: str, *, voxel_size=None, allow_2d: bool = False) -> VolumeInput:
    """``(array, voxel size, source)`` for a path, a Volume or an array of shape (Z, Y, X).

    Parameters
    ----------
    obj : str, Path, Volume or array-like
        Paths are opened lazily; Volumes give their dask data, voxel size and source; numpy, dask and
        other array-likes (zarr, h5py: anything with ``shape``, ``dtype`` and ``__getitem__``) pass
        through without being read; anything else goes through ``np.asarray``.
    name : str
        How error messages call the input (``"image"``, ``"mask"``...).
    voxel_size : tuple of 3 float, optional
        Overrides the voxel size the input carries; validated.
    allow_2d : bool
        Accept a 2D (Y, X) array as one section (it comes back as (1, Y, X)).

    Raises
    ------
    ValueError
        Naming ``name``, when the data is not 3D (or 2D with ``allow_2d``), or the voxel size is bad.

    Examples
    --------
    >>> data, vs, src = as_volume_array(np.zeros((2, 3, 4)), "image", voxel_size=(50, 4, 4))
    >>> data.shape, vs, src
    ((2, 3, 4), (50.0, 4.0, 4.0), None)
    >>> as_volume_array(np.zeros((3, 4)), "image", allow_2d=True).data.shape
    (1, 3, 4)
    >>> import zarr
    >>> as_volume_array(zarr.zeros((3, 4)), "image", allow_2d=True).data.shape
    (1, 3, 4)
    """
    source = None
    if isinstance(obj, (str, os.PathLike)):
        from .io import open_volume

        obj = open_volume(obj, warn_missing_voxel_size=False)
    carried = None
    if isinstance(obj, Volume):
        carried, source, obj = obj.voxel_size, str(obj.source), obj.data
    if not (hasattr(obj, "shape") and hasattr(obj, "dtype") and hasattr(obj, "__getitem__")):
        obj = np.asarray(obj)
    shape = tuple(int(s) for s in obj.shape)
    if allow_2d and len(shape) == 2:
        if not (isinstance(obj, np.ndarray) or hasattr(obj, "compute")):
            obj = as_dask(obj)  # zarr and h5py arrays cannot index with None
        obj, shape = obj[None], (1, *shape)
    if len(shape) != 3:
        expected = "a 3D (z, y, x) volume or a 2D (y, x) section" if allow_2d else "a 3D (z, y, x) array"
        hint = f" (for a single 2D section pass {name}[None])" if len(shape) == 2 and not allow_2d else ""
        raise ValueError(f"{name} must be {expected}, got shape {shape}{hint}")
    chosen = voxel_size if voxel_size is not None else carried
    return VolumeInput(obj, check_voxel_size(chosen) if chosen is not None else None, source)


def load_in_memory(obj, name: str, *, max_bytes: int | None = None, voxel_size=None) -> VolumeInput:
    """Like :func:`as_volume_array`, with the voxels read into a numpy array.

    Parameters
    ----------
    max_bytes : int, optional
        Refuse (before reading) inputs larger than this, suggesting a crop.

    Examples
    --------
    >>> type(load_in_memory(np.ones((1, 2, 2), np.uint8), "image").data).__name__
    'ndarray'
    >>> load_in_memory(np.ones((1, 64, 64)), "image", max_bytes=1024)
    Traceback (most recent call last):
    ...
    ValueError: image is 0.0 GiB (32768 bytes); this step works in memory up to 1024 bytes: crop a region first (e.g. volume.data[:, :2048, :2048])
    """
    data, vs, source = as_volume_array(obj, name, voxel_size=voxel_size)
    nbytes = int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize
    if max_bytes is not None and nbytes > max_bytes:
        limit = f"{max_bytes / 1024**3:.0f} GiB" if max_bytes >= 1024**3 else f"{max_bytes} bytes"
        raise ValueError(
            f"{name} is {nbytes / 1024**3:.1f} GiB ({nbytes} bytes); this step works in memory up to {limit}: "
            "crop a region first (e.g. volume.data[:, :2048, :2048])"
        )
    if hasattr(data, "compute") and not isinstance(data, np.ndarray):
        data = data.compute()
    return VolumeInput(np.asarray(data), vs, source)


def paired_voxel_size(data, image_vs, other, other_vs, *, other_name: str, voxel_size=None, needed_for: str):
    """The voxel size of an image and the labels (or annotations) that go with it, checked as a pair.

    ``other`` must have the image's shape; the voxel size is ``voxel_size`` if given, else the image's,
    else the other's (all from :func:`as_volume_array`), and is required.

    Raises
    ------
    ValueError
        When the shapes differ (naming both), or no voxel size is known (saying what needs it).

    Examples
    --------
    >>> paired_voxel_size(np.zeros((1, 2, 2)), None, np.zeros((1, 2, 2)), (40, 4, 4), other_name="labels",
    ...                   needed_for="the plan depends on it")
    (40.0, 4.0, 4.0)
    """
    if tuple(other.shape) != tuple(data.shape):
        raise ValueError(f"{other_name} have shape {tuple(other.shape)} but the image has shape {tuple(data.shape)}")
    vs = voxel_size or image_vs or other_vs
    if vs is None:
        raise ValueError(f"the voxel size is unknown: pass voxel_size=(z, y, x) in nm ({needed_for})")
    return check_voxel_size(vs)
