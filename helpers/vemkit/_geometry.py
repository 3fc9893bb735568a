"""Distances and object surfaces in physical units: shared by instances, measurements and 3D views.

:func:`distance_transform` (anisotropic Euclidean distance to the background), and the per-object
signed field and marching-cubes mesh that :mod:`vemkit.measure` measures and :mod:`vemkit.viz` draws.
Not for: tables of measurements (:mod:`vemkit.measure`).
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["PAD", "distance_transform", "planar_edt", "object_field", "object_mesh"]


def distance_transform(mask: np.ndarray, voxel_size) -> np.ndarray:
    """Physical distance (nm) of every mask voxel to the nearest background voxel (0 outside).

    The volume border is not background (as :func:`scipy.ndimage.distance_transform_edt`), so objects
    cut by the border are not thinned there. Uses the ``edt`` package (multi-threaded, anisotropic),
    or scipy when it is not installed. An array without any background (a block inside a large
    object) gets the length of its diagonal everywhere: a flat plateau, not infinity.
    """
    if mask.size and mask.all():
        diagonal = float(np.sqrt(sum((n * v) ** 2 for n, v in zip(mask.shape, voxel_size))))
        return np.full(mask.shape, diagonal, dtype=np.float32)
    try:
        import edt
    except ImportError:  # pragma: no cover - edt is a dependency; scipy is the slower fallback
        from scipy import ndimage as ndi

        return ndi.distance_transform_edt(mask, sampling=voxel_size).astype(np.float32)
    return edt.edt(
        np.ascontiguousarray(mask, dtype=bool),
        anisotropy=tuple(float(v) for v in voxel_size),
        black_border=False,
        parallel=max(1, min(8, os.cpu_count() or 1)),
    ).astype(np.float32, copy=False)


#: Padding (sections, rows, columns) around an object's bounding box for its field.
PAD = (1, 2, 2)

#: Crops smaller than this many voxels use scipy's distance transform (less overhead per call);
#: larger ones the multi-threaded ``edt`` package.
SMALL_EDT = 200_000

def planar_edt(mask, vs, far):
    """Distance (nm) of every True voxel to the nearest False voxel of its own section (z plane).

    One 3D transform with the z spacing set to ``far`` (longer than any in-plane distance), so the
    nearest voxel is always found in-plane: the same numbers as a 2D transform per section, without a
    call per section.
    """
    sampling = (far, float(vs[1]), float(vs[2]))
    if mask.size < SMALL_EDT:
        from scipy import ndimage as ndi

        return ndi.distance_transform_edt(mask, sampling=sampling).astype(np.float32)
    import edt

    return edt.edt(np.ascontiguousarray(mask), anisotropy=sampling, black_border=False, parallel=1)


def object_field(obj, vs):
    """Signed field (nm, positive inside) of an object crop padded by ``PAD``, ready for contouring.

    Each section holds its in-plane signed distance to the object's outline, so linear interpolation
    between sections (marching cubes, resampling) morphs one outline into the next (shape-based
    interpolation) instead of stepping. A section without the object next to one with it closes the
    object: half-way to it (as the voxel cuboids do) where the outline was flat, and earlier near the
    rim where the outline was already shrinking towards it (the signed distance extrapolated from the
    two last sections), so the rounded ends of balls and tubes cut along their side are not walled
    off by a vertical step of half a section.
    """
    padded = np.zeros(tuple(n + 2 * p for n, p in zip(obj.shape, PAD)), dtype=bool)
    padded[tuple(slice(p, p + n) for p, n in zip(PAD, obj.shape))] = obj
    far = 2.0 * math.hypot(padded.shape[1] * vs[1], padded.shape[2] * vs[2]) + 1.0
    sdf = planar_edt(padded, vs, far)
    sdf -= planar_edt(~padded, vs, far)
    filled = padded.any(axis=(1, 2))
    n = len(filled)
    cap = np.float32(-10 * max(vs))
    closing = {}
    for k in np.flatnonzero(~filled):
        near = []
        for j, beyond in ((k - 1, k - 2), (k + 1, k + 2)):
            if 0 <= j < n and filled[j]:
                value = -np.abs(sdf[j])
                if 0 <= beyond < n and filled[beyond]:
                    value = np.minimum(value, 2 * sdf[j] - sdf[beyond])
                near.append(value)
        closing[k] = np.maximum.reduce(near) if near else None
    for k, value in closing.items():
        sdf[k] = cap if value is None else value
    return sdf


def object_mesh(field, vs, step_size=1):
    """Marching-cubes mesh (vertices in nm within the padded crop, faces) of the zero level of
    ``field`` (see :func:`object_field`) after a Gaussian of half the smallest voxel size has
    rounded the in-plane pixel staircase."""
    from scipy import ndimage as ndi
    from skimage.measure import marching_cubes

    sigma = 0.5 * min(vs)
    smooth = field
    for axis, v in enumerate(vs):
        if sigma / v >= 0.125:  # a thinner Gaussian is the identity at scipy's truncation (radius 0)
            smooth = ndi.gaussian_filter1d(smooth, sigma / v, axis=axis)
    if smooth.max() <= 0:  # smoothing swallowed a speck: contour the unsmoothed field
        smooth = field
    verts, faces, _, _ = marching_cubes(smooth, 0.0, spacing=tuple(float(v) for v in vs), step_size=step_size,
                                        allow_degenerate=True)
    return verts, faces
