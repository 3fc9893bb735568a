"""Voxel-size handling shared by every module: parsing, checking and formatting (z, y, x) in nm.

Not for: reading voxel sizes out of files (that is :mod:`vemkit.io`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["VoxelSize", "check_voxel_size", "parse_voxel_size", "UNIT_TO_NM", "to_nm"]

VoxelSize = tuple[float, float, float]

#: Length units met in microscopy metadata, with their size in nanometres.
UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "ångström": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
}


def to_nm(value: float, unit: str | None) -> float:
    """Convert a length in ``unit`` to nanometres.

    Parameters
    ----------
    value : float
        The length.
    unit : str
        A unit name such as ``"nm"``, ``"micron"``, ``"µm"`` or ``"angstrom"`` (case-insensitive).

    Returns
    -------
    float
        The length in nanometres.

    Examples
    --------
    >>> to_nm(0.004, "micron")
    4.0
    """
    if unit is None:
        raise ValueError("no length unit given; expected one of " + ", ".join(sorted(UNIT_TO_NM)))
    key = str(unit).strip().lower()
    if key not in UNIT_TO_NM:
        raise ValueError(f"unknown length unit {unit!r}; expected one of " + ", ".join(sorted(UNIT_TO_NM)))
    return round(float(value) * UNIT_TO_NM[key], 9)


def check_voxel_size(voxel_size, name: str = "voxel_size") -> VoxelSize:
    """Validate a voxel size and return it as a ``(z, y, x)`` tuple of floats in nm.

    Parameters
    ----------
    voxel_size : sequence of 3 positive numbers
        Voxel size ``(z, y, x)`` in nanometres.
    name : str
        How to call the input in the error message.

    Returns
    -------
    tuple of float

    Raises
    ------
    ValueError
        If it is not three finite positive numbers.

    Examples
    --------
    >>> check_voxel_size([50, 4, 4])
    (50.0, 4.0, 4.0)
    """
    if isinstance(voxel_size, (str, bytes)) or not isinstance(voxel_size, Sequence | tuple | list):
        try:
            voxel_size = list(voxel_size)  # numpy arrays and other iterables
        except TypeError:
            raise ValueError(
                f"{name} must be three numbers (z, y, x) in nm, got {voxel_size!r}"
            ) from None
    values = list(voxel_size)
    if len(values) != 3:
        raise ValueError(
            f"{name} must have three values (z, y, x) in nm, got {len(values)}: {voxel_size!r}"
        )
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numbers (z, y, x) in nm, got {voxel_size!r}") from None
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"{name} values must be finite and positive (nm), got {voxel_size!r}")
        out.append(f)
    return tuple(out)


def parse_voxel_size(text: str, name: str = "--voxel-size") -> VoxelSize:
    """Parse ``"Z,Y,X"`` (nm) as typed on a command line.

    Examples
    --------
    >>> parse_voxel_size("50,4,4")
    (50.0, 4.0, 4.0)
    """
    parts = [p for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name} must look like Z,Y,X in nm (e.g. 50,4,4), got {text!r}") from None
    return check_voxel_size(values, name=name)
