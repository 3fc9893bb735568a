"""The :class:`Volume` record: a lazy (z, y, x) array travelling with its voxel size and metadata.

Not for: reading or writing files (see :mod:`vemkit.io`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from ._voxel import VoxelSize, check_voxel_size

__all__ = ["Volume", "MissingVoxelSizeWarning", "as_dask"]


class MissingVoxelSizeWarning(UserWarning):
    """The file did not say how large its voxels are and none was given."""


@dataclass
class Volume:
    """A lazily loaded volume with its physical voxel size.

    Attributes
    ----------
    data : dask.array.Array of shape (Z, Y, X)
        The voxels, never loaded until asked for (``volume.data.compute()`` or ``np.asarray(volume)``).
    voxel_size : tuple of 3 float or None
        Voxel size ``(z, y, x)`` in nanometres; ``None`` when neither the file nor the user gave one.
    source : str
        Where the data came from (a path, ``path:/dataset`` or a description).
    metadata : dict
        Format-specific metadata (format name, original axes, units, channel names ...).

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume.from_array(np.zeros((2, 3, 4), np.uint8), voxel_size=(50, 4, 4))
    >>> v.shape, v.voxel_size
    ((2, 3, 4), (50.0, 4.0, 4.0))
    """

    data: Any
    voxel_size: VoxelSize | None
    source: str = "<array>"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3D (z, y, x), got shape {self.data.shape}")
        if self.voxel_size is not None:
            self.voxel_size = check_voxel_size(self.voxel_size)

    @classmethod
    def from_array(cls, array, voxel_size=None, source="<array>", metadata=None, chunks="auto"):
        """Wrap an in-memory or dask array as a Volume (2D arrays become one section)."""
        data = as_dask(array, chunks=chunks)
        if data.ndim == 2:
            data = data[None]
        return cls(data=data, voxel_size=voxel_size, source=source, metadata=dict(metadata or {}))

    @property
    def shape(self):
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return 3

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def anisotropy(self) -> float | None:
        """Ratio of the z voxel size to the mean in-plane voxel size (1 = isotropic)."""
        if self.voxel_size is None:
            return None
        z, y, x = self.voxel_size
        return z / ((y + x) / 2)

    def require_voxel_size(self, what: str = "this step") -> VoxelSize:
        """Return the voxel size, or raise a clear error when it is unknown."""
        if self.voxel_size is None:
            raise ValueError(
                f"the voxel size of {self.source} is unknown and {what} needs it; "
                "pass voxel_size=(z, y, x) in nm (command line: --voxel-size Z,Y,X)"
            )
        return self.voxel_size

    def with_voxel_size(self, voxel_size) -> "Volume":
        """A copy with another voxel size (the data is shared, not copied)."""
        return Volume(self.data, check_voxel_size(voxel_size), self.source, dict(self.metadata))

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        arr = np.asarray(self.data.compute())
        return arr.astype(dtype) if dtype is not None else arr

    def __getitem__(self, key):
        return self.data[key]

    def __repr__(self):
        vs = "unknown" if self.voxel_size is None else "x".join(f"{v:g}" for v in self.voxel_size) + " nm"
        return (
            f"Volume(shape={self.shape}, dtype={self.dtype}, voxel_size={vs}, "
            f"chunks={tuple(c[0] for c in self.data.chunks)}, source={self.source!r})"
        )

    def warn_if_no_voxel_size(self):
        if self.voxel_size is None:
            warnings.warn(
                f"{self.source}: the file gives no voxel size; pass voxel_size=(z, y, x) in nm. "
                "vemkit never assumes 1 nm.",
                MissingVoxelSizeWarning,
                stacklevel=3,
            )


def as_dask(array, chunks="auto"):
    """Return ``array`` as a dask array (a :class:`Volume` gives its data, dask arrays pass through)."""
    import dask.array as da

    if isinstance(array, Volume):
        return array.data
    if isinstance(array, da.Array):
        return array
    return da.from_array(array, chunks=chunks)
