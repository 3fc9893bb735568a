"""A synthetic volume-EM phantom with exact ground truth, deterministic by seed.

The phantom looks like a serial-section EM stack (SBF-SEM / ssTEM contrast: dark stained membranes on a
mid-grey cytoplasm): cells from a 3D Voronoi tessellation with dark membranes, elongated mitochondria
with a dark double membrane and cristae-like stripes, and clusters of small vesicles next to membranes.
Its imaging model adds an anisotropic Gaussian blur, signal-dependent noise, a slow intensity drift
along z, uneven in-plane illumination, and optional missing or misaligned sections. Every length is in
nanometres and every shape is built in physical coordinates, so anisotropic voxels give the right shapes.

It serves tests (segmentation, instance splitting, metrics, anisotropy handling) and offline demos.

Not for: benchmarking absolute accuracy on real tissue, or realistic biology (the cells are Voronoi
polyhedra, not neurites).
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CLASSES", "Phantom", "make_phantom"]

#: Semantic classes of :attr:`Phantom.semantic` (0 is cytoplasm / background).
CLASSES = {1: "membrane", 2: "mitochondria", 3: "vesicle"}

# ---- geometry (all lengths in nm, densities per cubic micrometre) ----
_CELL_VOLUME_UM3 = 1.0  # mean volume of one cell
_MITO_PER_UM3 = 3.0
_VESICLES_PER_UM3 = 30.0
_VESICLES_PER_CLUSTER = 25
_MEMBRANE_NM = 16.0  # two apposed plasma membranes and the cleft between them
_MITO_LENGTH_NM = (300.0, 1500.0)
_MITO_DIAMETER_NM = (150.0, 400.0)
_MITO_RIM_NM = 18.0  # outer + inner membrane
_MITO_PAIR_PROB = 0.35  # chance that a mitochondrion gets a touching partner (the first always does)
_VESICLE_DIAMETER_NM = (30.0, 60.0)
_VESICLE_RIM_NM = 8.0
_BLOCK_NM = 300.0  # block size of the Voronoi computation

# ---- intensities before the imaging model (0 = black, 1 = white) ----
_CYTOPLASM = 0.62
_CELL_SPREAD = 0.035  # cell-to-cell standard deviation of the cytoplasm grey level
_GRAIN = 0.10  # fine cytoplasm texture (before blur)
_MEMBRANE = 0.10
_MITO_MATRIX = 0.36
_MITO_CRISTAE = 0.16
_MITO_RIM = 0.18
_VESICLE_LUMEN = 0.72
_VESICLE_RIM = 0.16

_DTYPES = ("uint8", "uint16", "float32")


@dataclass(eq=False)
class Phantom:
    """A synthetic EM volume and its exact ground truth.

    Attributes
    ----------
    image : ndarray of shape (Z, Y, X)
        The simulated micrograph stack (``uint8`` unless another ``dtype`` was asked for; ``float32``
        images lie in [0, 1]). Membranes are dark, cytoplasm mid-grey.
    semantic : ndarray of shape (Z, Y, X), uint8
        0 = cytoplasm / background, 1 = membrane, 2 = mitochondria, 3 = vesicle (see :data:`CLASSES`).
    instances : dict of str to ndarray of shape (Z, Y, X), uint32
        ``"cells"``: the cell each voxel lies in (ids 1..N; the cells fill space, so membrane,
        mitochondria and vesicle voxels carry the id of their cell too; mask with ``semantic == 1`` to
        drop membranes). ``"mitochondria"`` and ``"vesicles"``: one id per object (1..N), 0 elsewhere;
        nonzero exactly where ``semantic`` is 2 or 3. Touching mitochondria keep their own ids.
    voxel_size : tuple of 3 float
        Voxel size ``(z, y, x)`` in nm.
    seed : int
        The seed that reproduces this phantom.
    classes : dict of int to str
        Names of the semantic classes.
    missing_sections : tuple of int
        Sections whose image was replaced by a flat value (0); the ground truth still holds the labels
        that the lost section had.
    misaligned_sections : dict of int to (int, int)
        Sections whose image was shifted by ``(dy, dx)`` pixels (content moves by +dy, +dx; the exposed
        border is mirrored); the ground truth is NOT shifted.
    info : dict
        What was generated: ``n_cells``, ``n_mitochondria`` and ``n_vesicles`` (objects present),
        ``mitochondria_pairs`` (id pairs placed side by side on purpose, all touching),
        ``touching_mitochondria`` (every id pair sharing a voxel face) and ``parameters``.

    Examples
    --------
    >>> p = make_phantom((4, 48, 48), seed=1)
    >>> p.image.shape, p.image.dtype.name, p.semantic.dtype.name
    ((4, 48, 48), 'uint8', 'uint8')
    >>> sorted(p.instances)
    ['cells', 'mitochondria', 'vesicles']
    >>> p.to_volume().voxel_size
    (40.0, 8.0, 8.0)
    """

    image: np.ndarray
    semantic: np.ndarray
    instances: dict
    voxel_size: tuple
    seed: int
    classes: dict = field(default_factory=lambda: dict(CLASSES))
    missing_sections: tuple = ()
    misaligned_sections: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        """Shape ``(Z, Y, X)`` of the volume."""
        return tuple(int(s) for s in self.image.shape)

    def to_volume(self, layer: str = "image"):
        """Wrap one layer as a :class:`vemkit._volume.Volume` with the phantom's voxel size.

        Parameters
        ----------
        layer : {"image", "semantic", "cells", "mitochondria", "vesicles"}
            Which array to wrap; the default is the micrograph.

        Returns
        -------
        Volume
            A lazy (dask-backed) volume whose ``source`` says ``synthetic phantom (seed=...)``.
        """
        from ._volume import Volume

        arrays = {"image": self.image, "semantic": self.semantic, **self.instances}
        if layer not in arrays:
            raise ValueError(f"layer must be one of {sorted(arrays)}, got {layer!r}")
        source = f"synthetic phantom (seed={self.seed})"
        if layer != "image":
            source += f" {layer}"
        return Volume.from_array(
            arrays[layer], voxel_size=self.voxel_size, source=source, metadata={"format": "synthetic"}
        )

    def __repr__(self):
        vs = "x".join(f"{v:g}" for v in self.voxel_size)
        counts = ", ".join(
            f"{k}={self.info.get('n_' + k, '?')}" for k in ("cells", "mitochondria", "vesicles")
        )
        return (
            f"Phantom(shape={self.shape}, dtype={self.image.dtype}, voxel_size={vs} nm, seed={self.seed}, "
            f"{counts})"
        )


def make_phantom(
    shape=(24, 256, 256),
    voxel_size=(40.0, 8.0, 8.0),
    seed=0,
    *,
    n_cells=None,
    n_mitochondria=None,
    n_vesicles=None,
    noise=0.08,
    blur_nm=(20.0, 8.0, 8.0),
    drift=0.15,
    shading=0.1,
    missing_sections=(),
    misaligned_sections=(),
    dtype="uint8",
) -> Phantom:
    """Make a synthetic EM stack with exact semantic and instance ground truth.

    The tissue is built in physical coordinates (nm): a 3D Voronoi tessellation of cells whose
    boundaries are dark membranes 16 nm thick; bent, capsule-shaped mitochondria (300-1500 nm long,
    150-400 nm across, random 3D directions) inside the cells, some of them touching a partner; and
    clusters of vesicles (30-60 nm across) next to membranes. Each voxel is rendered with the partial
    volume of thin membranes it contains, so a membrane that runs along the section plane appears as a
    faint smear, as in real serial sections. Then the imaging model blurs, shades and adds noise.

    The geometry, the texture, the noise and the section defects draw from separate random streams of
    ``seed``: changing ``noise``, ``blur_nm``, ``drift``, ``shading`` or the defects leaves the ground
    truth unchanged, and the same seed always gives identical arrays.

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape ``(Z, Y, X)``; a single section is ``(1, Y, X)``.
    voxel_size : tuple of 3 float
        Voxel size ``(z, y, x)`` in nm.
    seed : int or None
        Seed of :func:`numpy.random.default_rng`; ``None`` draws a fresh one (kept in ``Phantom.seed``).
    n_cells : int, optional
        Number of cell seeds inside the volume; it sets the cell density. Seeds at the same density
        also lie in a shell around the volume so that border cells are not inflated, and their cells
        reach in too: ``Phantom.info["n_cells"]`` counts the cells present. Default: one per µm³.
    n_mitochondria : int, optional
        Number of mitochondria to place (fewer when the cells leave no room; the count placed is in
        ``Phantom.info``). Default: 1.4 per µm³, about 7 % of the voxels.
    n_vesicles : int, optional
        Number of vesicles, in clusters of about 25 next to membranes (fewer when a cluster has no
        room; the count placed is in ``Phantom.info``). Default: 30 per µm³.
    noise : float
        Standard deviation of the noise at cytoplasm grey level, relative to the intensity range;
        it grows with the square root of the signal (shot noise). 0 disables it.
    blur_nm : float or tuple of 3 float
        Standard deviation ``(z, y, x)`` in nm of the Gaussian point-spread function.
    drift : float
        Peak-to-peak relative change of brightness along z (slow staining / beam drift), in [0, 1).
    shading : float
        Peak-to-peak relative change of brightness across each section (uneven illumination), in [0, 1).
    missing_sections : sequence of int
        Sections whose image is lost: they are set to 0 (black). The ground truth keeps their labels.
    misaligned_sections : sequence of int or dict of int to (int, int)
        Sections whose image is shifted in-plane, by a random 3-8 pixels or by the given ``(dy, dx)``.
        The ground truth is not shifted. A section both missing and misaligned stays missing.
    dtype : {"uint8", "uint16", "float32"}
        Output type of the image: integers use their full range, ``float32`` lies in [0, 1]. The
        rescale maps the 0.02 and 99.98 percentiles to the ends of the range.

    Returns
    -------
    Phantom
        The image, semantic labels, instance labels and metadata.

    Raises
    ------
    ValueError
        If an argument is malformed; the message names the argument.

    Examples
    --------
    >>> p = make_phantom((8, 96, 96), seed=3)
    >>> p.image.shape, p.image.dtype.name
    ((8, 96, 96), 'uint8')
    >>> p.classes[1], p.classes[2]
    ('membrane', 'mitochondria')
    >>> bool((p.semantic == 2).sum() == (p.instances["mitochondria"] > 0).sum())
    True
    >>> same = make_phantom((8, 96, 96), seed=3)
    >>> bool((same.image == p.image).all())
    True
    >>> iso = make_phantom((16, 64, 64), voxel_size=(10, 10, 10), seed=0, n_vesicles=0, dtype="float32")
    >>> iso.image.dtype.name, int(iso.instances["vesicles"].max())
    ('float32', 0)
    """
    shape = _check_shape(shape)
    from ._voxel import check_voxel_size

    vs = check_voxel_size(voxel_size)
    seed = _check_seed(seed)
    n_cells = _check_count("n_cells", n_cells, minimum=1)
    n_mitochondria = _check_count("n_mitochondria", n_mitochondria)
    n_vesicles = _check_count("n_vesicles", n_vesicles)
    noise = _check_float("noise", noise, 0.0, math.inf)
    drift = _check_float("drift", drift, 0.0, 1.0, closed_high=False)
    shading = _check_float("shading", shading, 0.0, 1.0, closed_high=False)
    blur = _check_blur(blur_nm)
    missing = _check_sections("missing_sections", missing_sections, shape[0])
    misaligned = _check_misaligned(misaligned_sections, shape[0])
    dtype = _check_dtype(dtype)

    volume_um3 = float(np.prod(np.asarray(shape) * np.asarray(vs))) * 1e-9
    if n_cells is None:
        n_cells = round(volume_um3 / _CELL_VOLUME_UM3)
        cell_spacing = (_CELL_VOLUME_UM3 * 1e9) ** (1 / 3)
    else:
        cell_spacing = (volume_um3 * 1e9 / n_cells) ** (1 / 3)
    if n_mitochondria is None:
        n_mitochondria = max(1, round(volume_um3 * _MITO_PER_UM3)) if volume_um3 > 0.05 else 0
    if n_vesicles is None:
        n_vesicles = round(volume_um3 * _VESICLES_PER_UM3)

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_cells, rng_mito, rng_ves, rng_texture, rng_noise, rng_defects = streams

    # --- tissue ---
    seeds = _cell_seeds(rng_cells, n_cells, cell_spacing, shape, vs)
    cells, cover, membrane = _voronoi(shape, vs, seeds, rng_cells)
    cyt_level = (_CYTOPLASM + _CELL_SPREAD * rng_cells.standard_normal(len(seeds))).astype(np.float32)

    mito = _Mitochondria(shape, vs, seeds, cells, membrane)
    pairs = mito.place(rng_mito, n_mitochondria)
    ves = _Vesicles(shape, vs, seeds, cells, membrane, mito)
    ves.place(rng_ves, n_vesicles)

    # --- labels ---
    cell_ids, n_cells_present = _relabel(cells)
    mito_ids, mito_lut = _relabel_lut(mito.labels, mito.count)
    ves_ids, _ = _relabel_lut(ves.labels, ves.count)
    semantic = np.zeros(shape, np.uint8)
    semantic[membrane] = 1
    semantic[mito_ids > 0] = 2
    semantic[ves_ids > 0] = 3
    touching = _touching_pairs(mito_ids)
    pair_ids = [
        (int(mito_lut[a]), int(mito_lut[b]))
        for a, b in pairs
        if (int(mito_lut[a]), int(mito_lut[b])) in touching
    ]

    # --- image ---
    img = cyt_level[cells]
    img += rng_texture.standard_normal(shape, dtype=np.float32) * np.float32(_GRAIN)
    img *= 1 - cover
    img += np.float32(_MEMBRANE) * cover
    has_mito = mito.labels > 0
    img[has_mito] = mito.intensity[has_mito]
    has_ves = ves.labels > 0
    img[has_ves] = ves.intensity[has_ves]
    del cover
    image = _imaging(img, vs, blur, drift, shading, noise, rng_texture, rng_noise, dtype)

    # --- section defects (after the rescale, so they do not change the other sections) ---
    for z in sorted(misaligned):
        dy, dx = misaligned[z] if misaligned[z] is not None else _random_shift(rng_defects)
        misaligned[z] = (dy, dx)
        image[z] = _shift_section(image[z], dy, dx)
    for z in missing:
        image[z] = 0
        misaligned.pop(z, None)

    info = {
        "n_cells": n_cells_present,
        "n_mitochondria": int(mito_ids.max(initial=0)),
        "n_vesicles": int(ves_ids.max(initial=0)),
        "mitochondria_pairs": pair_ids,
        "touching_mitochondria": sorted(touching),
        "parameters": {
            "shape": shape,
            "voxel_size": vs,
            "seed": seed,
            "n_cells": n_cells,
            "n_mitochondria": n_mitochondria,
            "n_vesicles": n_vesicles,
            "noise": noise,
            "blur_nm": blur,
            "drift": drift,
            "shading": shading,
            "dtype": dtype,
        },
    }
    return Phantom(
        image=image,
        semantic=semantic,
        instances={"cells": cell_ids, "mitochondria": mito_ids, "vesicles": ves_ids},
        voxel_size=vs,
        seed=seed,
        missing_sections=tuple(missing),
        misaligned_sections=dict(sorted(misaligned.items())),
        info=info,
    )


# ----------------------------------------------------------------------------------------------------
# input checks


def _check_shape(shape):
    try:
        values = tuple(shape)
    except TypeError:
        values = None
    if values is None or isinstance(shape, (str, bytes)) or len(values) != 3:
        raise ValueError(
            f"shape must be three positive integers (z, y, x), got {shape!r}; "
            "for a single section use (1, Y, X)"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"shape must be three positive integers (z, y, x), got {shape!r}")
    return tuple(int(v) for v in values)


def _check_seed(seed):
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _check_count(name, value, minimum=0):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} or None, got {value!r}")
    return int(value)


def _check_float(name, value, low, high, closed_high=True):
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = math.isfinite(f) and f >= low and (f <= high if closed_high else f < high)
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}{bracket}, got {value!r}")
    return f


def _check_blur(blur_nm):
    if isinstance(blur_nm, numbers.Real) and not isinstance(blur_nm, bool):
        values = [blur_nm] * 3
    else:
        try:
            values = list(blur_nm)
        except TypeError:
            values = []
        if isinstance(blur_nm, (str, bytes)) or len(values) != 3:
            raise ValueError(f"blur_nm must be a number or three numbers (z, y, x) in nm, got {blur_nm!r}")
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"blur_nm must be numbers (z, y, x) in nm, got {blur_nm!r}") from None
        if not math.isfinite(f) or f < 0:
            raise ValueError(f"blur_nm must be finite and >= 0 (nm), got {blur_nm!r}")
        out.append(f)
    return tuple(out)


def _section_index(name, value, nz):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must hold integer section indexes, got {value!r}")
    if not 0 <= value < nz:
        raise ValueError(
            f"{name}: section {value} is out of range for a volume of {nz} sections (0..{nz - 1})"
        )
    return int(value)


def _check_sections(name, sections, nz):
    if sections is None:
        return []
    if isinstance(sections, numbers.Integral) and not isinstance(sections, bool):
        sections = [sections]
    try:
        values = list(sections)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of section indexes, got {sections!r}") from None
    return sorted({_section_index(name, v, nz) for v in values})


def _check_misaligned(sections, nz):
    name = "misaligned_sections"
    if isinstance(sections, dict):
        out = {}
        for z, shift in sections.items():
            z = _section_index(name, z, nz)
            try:
                dy, dx = shift
            except (TypeError, ValueError):
                raise ValueError(f"{name}[{z}] must be a (dy, dx) pair of integers, got {shift!r}") from None
            for v in (dy, dx):
                if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                    raise ValueError(f"{name}[{z}] must be a (dy, dx) pair of integers, got {shift!r}")
            out[z] = (int(dy), int(dx))
        return out
    return {z: None for z in _check_sections(name, sections, nz)}


def _check_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return name


# ----------------------------------------------------------------------------------------------------
# cells


def _coords(shape, vs):
    """Physical coordinates (nm) of the voxel centres along each axis (voxel 0 is at 0)."""
    return [np.arange(n, dtype=np.float64) * v for n, v in zip(shape, vs)]


def _cell_seeds(rng, n_cells, spacing, shape, vs):
    """Seed points (nm): ``n_cells`` inside the volume and more, at the same density (one per
    ``spacing`` cubed), in a shell one spacing thick around it; kept apart by dart throwing."""
    lo = -0.5 * np.asarray(vs)
    hi = lo + np.asarray(shape) * np.asarray(vs)
    volume = float(np.prod(hi - lo))
    pad = spacing
    plo, phi = lo - pad, hi + pad
    n_shell = max(1, round((float(np.prod(phi - plo)) - volume) / spacing**3))
    min_dist = 0.6 * spacing

    accepted = np.empty((0, 3))

    def throw(n, inside, min_dist):
        nonlocal accepted
        placed = 0
        tries = 0
        while placed < n:
            batch = rng.uniform(plo if not inside else lo, phi if not inside else hi, size=(256, 3))
            for p in batch:
                tries += 1
                if tries > 200 * n + 1000:  # too crowded: relax the spacing
                    min_dist *= 0.8
                    tries = 0
                if not inside and np.all((p >= lo) & (p <= hi)):
                    continue
                if len(accepted) and np.min(np.sum((accepted - p) ** 2, axis=1)) < min_dist**2:
                    continue
                accepted = np.vstack([accepted, p])
                placed += 1
                if placed == n:
                    break

    throw(n_cells, True, min_dist)
    throw(n_shell, False, min_dist)
    return accepted


def _voronoi(shape, vs, seeds, rng):
    """Voronoi cells of ``seeds`` on the voxel grid, block by block.

    Returns the nearest seed of each voxel, the fraction of the voxel covered by the membrane slab
    (partial volume, scaled by a staining factor drawn from ``rng`` for each pair of cells) and the
    membrane mask: voxels that a boundary passes through or that lie within half a membrane thickness
    of one.
    """
    stain = rng.uniform(0.7, 1.1, size=(len(seeds), len(seeds))).astype(np.float32)
    stain = np.triu(stain) + np.triu(stain, 1).T
    cells = np.empty(shape, np.int32)
    cover = np.empty(shape, np.float32)
    membrane = np.empty(shape, bool)
    coords = _coords(shape, vs)
    vsa = np.asarray(vs)
    half_t = _MEMBRANE_NM / 2
    gmax = max(half_t, float(vsa.sum()) / 2) + 1.0
    blocks = [max(1, min(n, round(_BLOCK_NM / v))) for n, v in zip(shape, vs)]
    for z0 in range(0, shape[0], blocks[0]):
        for y0 in range(0, shape[1], blocks[1]):
            for x0 in range(0, shape[2], blocks[2]):
                sl = tuple(slice(a, a + b) for a, b in zip((z0, y0, x0), blocks))
                cz, cy, cx = (c[s] for c, s in zip(coords, sl))
                centre = np.array([(c[0] + c[-1]) / 2 for c in (cz, cy, cx)])
                radius = 0.5 * math.sqrt(sum((c[-1] - c[0]) ** 2 for c in (cz, cy, cx)))
                dist = np.sqrt(np.sum((seeds - centre) ** 2, axis=1))
                cand = np.flatnonzero(dist <= dist.min() + 2 * radius + 2 * gmax)
                if len(cand) == 1:
                    cells[sl] = cand[0]
                    cover[sl] = 0
                    membrane[sl] = False
                    continue
                s = seeds[cand] - centre
                dz = ((cz - centre[0])[:, None] - s[:, 0]).astype(np.float32)
                dy = ((cy - centre[1])[:, None] - s[:, 1]).astype(np.float32)
                dx = ((cx - centre[2])[:, None] - s[:, 2]).astype(np.float32)
                d2 = dz[:, None, None, :] ** 2 + dy[None, :, None, :] ** 2 + dx[None, None, :, :] ** 2
                i = d2.argmin(axis=-1)
                d1 = np.take_along_axis(d2, i[..., None], axis=-1)
                # distance to the bisector plane between seed i and seed j: (|p-sj|^2 - |p-si|^2) / 2|si-sj|
                diff = s[None, :, :] - s[:, None, :]
                length = np.sqrt(np.sum(diff**2, axis=-1))
                np.fill_diagonal(length, 1.0)
                inv = (0.5 / length).astype(np.float32)
                never = np.zeros_like(inv)
                np.fill_diagonal(never, np.inf)
                g_all = (d2 - d1) * inv[i] + never[i]
                j = g_all.argmin(axis=-1)
                g = np.take_along_axis(g_all, j[..., None], axis=-1)[..., 0]
                # extent of a voxel along the boundary normal
                foot = (np.abs(diff) @ vsa / length).astype(np.float32)
                w = foot[i, j]
                overlap = np.minimum(g + w / 2, half_t) - np.maximum(g - w / 2, -half_t)
                cells[sl] = cand[i]
                cover[sl] = np.clip(overlap / w, 0, 1) * stain[cand[i], cand[j]]
                # membrane where any boundary plane passes through the voxel (so that cells are always
                # separated by membrane voxels) or lies within half a membrane thickness
                membrane[sl] = np.any(g_all < np.maximum(half_t, foot / 2)[i], axis=-1)
    return cells, cover, membrane


def _nearest_and_gap(points, seeds, reach=None):
    """Nearest seed of each point and its distance (nm) to that seed's cell boundary.

    With ``reach`` (nm), only the seeds that can matter for gaps below ``reach`` are compared (faster
    for a compact group of points); gaps below ``reach`` stay exact, larger ones may be overestimated.
    """
    index = np.arange(len(seeds))
    if reach is not None and len(seeds) > 8:
        centre = points.mean(axis=0)
        extent = float(np.sqrt(np.max(np.sum((points - centre) ** 2, axis=1))))
        dist = np.sqrt(np.sum((seeds - centre) ** 2, axis=1))
        index = np.flatnonzero(dist <= dist.min() + 2 * extent + 2 * reach)
        seeds = seeds[index]
    d2 = np.sum((points[:, None, :] - seeds[None, :, :]) ** 2, axis=-1)
    i = d2.argmin(axis=1)
    rows = np.arange(len(points))
    d1 = d2[rows, i]
    length = np.sqrt(np.sum((seeds[None, :, :] - seeds[i][:, None, :]) ** 2, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (d2 - d1[:, None]) / (2 * length)
    g[rows, i] = np.inf
    return index[i], g.min(axis=1)


def _random_unit(rng):
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _perpendicular(rng, u):
    v = np.cross(u, _random_unit(rng))
    while np.linalg.norm(v) < 1e-6:
        v = np.cross(u, _random_unit(rng))
    return v / np.linalg.norm(v)


def _box(lo_nm, hi_nm, shape, vs):
    """Voxel slices covering the physical box [lo_nm, hi_nm], clipped to the volume (None if empty)."""
    sl = []
    for lo, hi, n, v in zip(lo_nm, hi_nm, shape, vs):
        a = max(0, math.floor(lo / v))
        b = min(n, math.ceil(hi / v) + 1)
        if b <= a:
            return None
        sl.append(slice(a, b))
    return tuple(sl)


def _box_coords(sl, vs):
    """Physical coordinates of a box's voxels, shaped to broadcast as (z, 1, 1), (1, y, 1), (1, 1, x)."""
    out = []
    for axis, (s, v) in enumerate(zip(sl, vs)):
        c = (np.arange(s.start, s.stop, dtype=np.float32) * np.float32(v)).reshape(
            [-1 if a == axis else 1 for a in range(3)]
        )
        out.append(c)
    return out


def _slab_cover(d, w, inner, outer):
    """Fraction of a voxel (extent ``w`` across the surface, centre at ``d``) inside [inner, outer]."""
    overlap = np.minimum(d + w / 2, outer) - np.maximum(d - w / 2, inner)
    return np.clip(overlap / w, 0, 1)


# ----------------------------------------------------------------------------------------------------
# mitochondria


class _Mitochondria:
    """Bent capsules inside cells; where two overlap, each voxel goes to the one whose axis is nearer
    relative to its radius, so touching partners keep their own ids and share a flat contact face."""

    def __init__(self, shape, vs, seeds, cells, membrane):
        self.shape, self.vs, self.seeds, self.cells, self.membrane = shape, vs, seeds, cells, membrane
        self.labels = np.zeros(shape, np.uint32)
        self.intensity = np.zeros(shape, np.float32)
        self.best = None  # normalised distance d / r of the winning object, made lazily
        self.count = 0
        self._pts = np.empty((0, 3))  # points along the axes of all placed mitochondria,
        self._pr = np.empty(0)  # their radii
        self._owner = np.empty(0, int)  # and which mitochondrion (0-based) they belong to
        self.infos = []  # (centre, direction, body length, radius, host cell) of every placed one
        lo = -0.5 * np.asarray(vs)
        self.lo, self.hi = lo, lo + np.asarray(shape) * np.asarray(vs)

    def _axis_samples(self, path):
        pts = [path[0]]
        for a, b in itertools.pairwise(path):
            n = max(2, int(np.linalg.norm(b - a) / 20.0) + 1)
            pts.append(a + (b - a) * np.linspace(0, 1, n)[1:, None])
        return np.vstack([np.atleast_2d(p) for p in pts])

    def _fits(self, path, radius, host, partner=None):
        """Whether a tube stays inside its host cell, clear of the membrane and of other mitochondria."""
        pts = self._axis_samples(path)
        near = np.all((pts >= self.lo - radius) & (pts <= self.hi + radius), axis=1)
        if not near.any():
            return False
        pts = pts[near]
        i, g = _nearest_and_gap(pts, self.seeds, reach=radius + 2 * _MEMBRANE_NM)
        if np.any(i != host) or np.any(g < radius + _MEMBRANE_NM):
            return False
        if len(self._pts):
            keep = self._owner != (-1 if partner is None else partner)
            d2 = np.sum((pts[:, None, :] - self._pts[None, keep, :]) ** 2, axis=-1)
            if np.any(np.sqrt(d2) < radius + self._pr[None, keep] + 20.0):
                return False
        return True

    def surface_distance(self, points, within):
        """Distance (nm) from each point to the nearest mitochondrion surface (negative inside);
        distances beyond ``within`` nm may come back as ``inf``."""
        out = np.full(len(points), np.inf)
        if not len(self._pts) or not len(points):
            return out
        centre = points.mean(axis=0)
        extent = float(np.sqrt(np.max(np.sum((points - centre) ** 2, axis=1))))
        dist = np.sqrt(np.sum((self._pts - centre) ** 2, axis=1)) - self._pr
        near = dist <= extent + within
        if near.any():
            d2 = np.sum((points[:, None, :] - self._pts[None, near, :]) ** 2, axis=-1)
            out = np.min(np.sqrt(d2) - self._pr[None, near], axis=1)
        return out

    def place(self, rng, n):
        """Place up to ``n`` mitochondria; returns the (label, label) pairs made to touch."""
        pairs = []
        pending = None  # index of a mitochondrion waiting for its touching partner
        while self.count < n:
            if pending is not None:
                made = self._place_partner(rng, pending)
                if made:
                    pairs.append((pending + 1, self.count))
                pending = None
                continue
            if not self._place_single(rng, straight=False):
                break
            first = len(pairs) == 0 and self.count == 1
            if self.count < n and (first or rng.random() < _MITO_PAIR_PROB):
                pending = self.count - 1
        return pairs

    def _place_single(self, rng, straight):
        vs = np.asarray(self.vs)
        for attempt in range(60):
            length = rng.uniform(*_MITO_LENGTH_NM) * (0.85 ** (attempt // 10))
            radius = rng.uniform(*_MITO_DIAMETER_NM) / 2 * (0.9 ** (attempt // 20))
            centre = rng.uniform(self.lo, self.hi)
            u = _random_unit(rng)
            body = max(length - 2 * radius, 1.0)  # the caps add a radius at each end
            bend = 0.0 if straight else rng.uniform(0, 0.2) * body
            mid = centre + _perpendicular(rng, u) * bend
            path = np.array([centre - u * body / 2, mid, centre + u * body / 2])
            idx = np.clip(np.round(centre / vs).astype(int), 0, np.asarray(self.shape) - 1)
            host = int(self.cells[tuple(idx)])
            if self._fits(path, radius, host):
                self._render(rng, path, radius, host)
                self.infos.append((centre, u, body, radius, host))
                return True
        return False

    def _place_partner(self, rng, k):
        centre0, u0, body0, r0, host = self.infos[k]
        for _ in range(40):
            radius = rng.uniform(*_MITO_DIAMETER_NM) / 2
            length = rng.uniform(*_MITO_LENGTH_NM)
            body = max(length - 2 * radius, 1.0)
            e = _perpendicular(rng, u0)
            # rotate the direction about the offset vector: the two axes never come closer than the offset
            theta = rng.uniform(-0.35, 0.35)
            u = u0 * math.cos(theta) + np.cross(e, u0) * math.sin(theta)
            centre = centre0 + e * 0.9 * (r0 + radius) + u0 * rng.uniform(-0.25, 0.25) * min(body0, body)
            path = np.array([centre - u * body / 2, centre, centre + u * body / 2])
            if self._fits(path, radius, host, partner=k):
                self._render(rng, path, radius, host)
                self.infos.append((centre, u, body, radius, host))
                return True
        return False

    def _render(self, rng, path, radius, host):
        pts = self._axis_samples(path)
        self._pts = np.vstack([self._pts, pts])
        self._pr = np.concatenate([self._pr, np.full(len(pts), radius)])
        self._owner = np.concatenate([self._owner, np.full(len(pts), self.count)])
        self.count += 1
        label = self.count
        vs = self.vs
        sl = _box(path.min(axis=0) - radius, path.max(axis=0) + radius, self.shape, vs)
        if sl is None:
            return
        if self.best is None:
            self.best = np.full(self.shape, np.inf, np.float32)
        pz, py, px = _box_coords(sl, vs)
        best_d2 = None
        arc = 0.0
        for a, b in itertools.pairwise(path):
            ab = (b - a).astype(np.float32)
            seg = float(np.linalg.norm(ab))
            if seg == 0:
                continue
            az, ay, ax = (np.float32(c) for c in a)
            t = ((pz - az) * ab[0] + (py - ay) * ab[1] + (px - ax) * ab[2]) / np.float32(seg * seg)
            np.clip(t, 0, 1, out=t)
            qz = pz - az - t * ab[0]
            qy = py - ay - t * ab[1]
            qx = px - ax - t * ab[2]
            d2 = qz * qz + qy * qy + qx * qx
            s = np.float32(arc) + t * np.float32(seg)
            if best_d2 is None:
                best_d2, best_s, nz, ny, nx = d2, s, qz, qy, qx
            else:
                closer = d2 < best_d2
                best_d2 = np.where(closer, d2, best_d2)
                best_s = np.where(closer, s, best_s)
                nz, ny, nx = (np.where(closer, q, n0) for q, n0 in ((qz, nz), (qy, ny), (qx, nx)))
            arc += seg
        d = np.sqrt(best_d2)
        dn = d / np.float32(radius)
        win = (dn < 1) & (dn < self.best[sl]) & (self.cells[sl] == host) & ~self.membrane[sl]
        if not win.any():
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            foot = (np.abs(nz) * vs[0] + np.abs(ny) * vs[1] + np.abs(nx) * vs[2]) / d
        foot = np.where(np.isfinite(foot), foot, min(vs)).astype(np.float32)
        # cristae: stripes across the long axis, wobbling with a transverse coordinate
        u = (path[-1] - path[0]) / max(np.linalg.norm(path[-1] - path[0]), 1e-9)
        v = _perpendicular(rng, u)
        period = rng.uniform(45.0, 80.0)
        trans = (pz - path[1][0]) * v[0] + (py - path[1][1]) * v[1] + (px - path[1][2]) * v[2]
        wobble = rng.uniform(5.0, 15.0) * np.sin(
            2 * np.pi * trans / rng.uniform(120.0, 250.0) + rng.uniform(0, 6.3)
        )
        phase = 2 * np.pi * (best_s + wobble) / np.float32(period) + np.float32(rng.uniform(0, 2 * np.pi))
        stripes = (0.5 + 0.5 * np.cos(phase)) ** 4
        inner = np.clip((np.float32(radius - _MITO_RIM_NM) - d) / 10.0, 0, 1)  # fade out near the rim
        level = np.float32(_MITO_MATRIX * rng.uniform(0.92, 1.08))
        value = level + np.float32(_MITO_CRISTAE) * (stripes - 0.2) * inner
        rim = _slab_cover(d, foot, radius - _MITO_RIM_NM, radius)
        value = value * (1 - rim) + np.float32(_MITO_RIM) * rim
        self.best[sl][win] = dn[win]
        self.labels[sl][win] = label
        self.intensity[sl][win] = value[win]


# ----------------------------------------------------------------------------------------------------
# vesicles


class _Vesicles:
    """Clusters of small spheres next to membranes, each inside one cell and clear of mitochondria.

    Sections are imaged in projection: a voxel belongs to a vesicle when the sphere reaches into the
    voxel's section slab within the voxel's in-plane footprint, so vesicles thinner than a section
    still appear.
    """

    def __init__(self, shape, vs, seeds, cells, membrane, mito):
        self.shape, self.vs, self.seeds, self.cells = shape, vs, seeds, cells
        self.membrane, self.mito = membrane, mito
        self.labels = np.zeros(shape, np.uint32)
        self.intensity = np.zeros(shape, np.float32)
        self.count = 0
        lo = -0.5 * np.asarray(vs)
        self.lo, self.hi = lo, lo + np.asarray(shape) * np.asarray(vs)

    def place(self, rng, n):
        if n == 0:
            return
        anchors = np.flatnonzero(self.membrane)
        if len(anchors) == 0:
            return
        n_clusters = max(1, round(n / _VESICLES_PER_CLUSTER))
        sizes = np.bincount(rng.integers(0, n_clusters, size=n), minlength=n_clusters)
        vs = np.asarray(self.vs)
        centres, radii = np.empty((0, 3)), np.empty(0)
        for size in sizes:
            if size == 0:
                continue
            anchor = np.array(np.unravel_index(anchors[rng.integers(len(anchors))], self.shape)) * vs
            host, _ = _nearest_and_gap(anchor[None], self.seeds)
            host = int(host[0])
            inward = self.seeds[host] - anchor
            inward /= max(np.linalg.norm(inward), 1e-9)
            spread = rng.uniform(60.0, 120.0)
            centre = anchor + inward * (spread + _MEMBRANE_NM)
            # candidates in a ball around the cluster centre, screened all at once
            m = 15 * size
            r = rng.uniform(*_VESICLE_DIAMETER_NM, size=m) / 2
            direction = rng.standard_normal((m, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            p = centre + direction * (spread * rng.random(m) ** (1 / 3))[:, None]
            ok = np.all((p >= self.lo - r[:, None]) & (p <= self.hi + r[:, None]), axis=1)
            i, g = _nearest_and_gap(p, self.seeds, reach=2 * _VESICLE_DIAMETER_NM[1])
            ok &= (i == host) & (g >= r + _MEMBRANE_NM / 2 + 4.0)
            ok &= self.mito.surface_distance(p, within=100.0) >= r + 10.0
            close = np.sum((centres - centre) ** 2, axis=1) < (spread + 2 * _VESICLE_DIAMETER_NM[1]) ** 2
            near_c, near_r = centres[close], radii[close]
            placed = 0
            for k in np.flatnonzero(ok):
                if (
                    len(near_c)
                    and np.min(np.sqrt(np.sum((near_c - p[k]) ** 2, axis=1)) - near_r) < r[k] + 3.0
                ):
                    continue
                near_c = np.vstack([near_c, p[k]])
                near_r = np.append(near_r, r[k])
                centres = np.vstack([centres, p[k]])
                radii = np.append(radii, r[k])
                self._render(p[k], r[k], host)
                placed += 1
                if placed == size:
                    break

    def _render(self, centre, radius, host):
        vs = self.vs
        reach = np.array([radius + vs[0] / 2, radius, radius])
        sl = _box(centre - reach, centre + reach, self.shape, vs)
        self.count += 1
        if sl is None:
            return
        pz, py, px = _box_coords(sl, vs)
        cz, cy, cx = (np.float32(c) for c in centre)
        dz = np.maximum(np.abs(pz - cz) - np.float32(vs[0] / 2), 0)  # distance to the section slab
        dy, dx = py - cy, px - cx
        d = np.sqrt(dz * dz + dy * dy + dx * dx)
        win = (
            (d < radius)
            & (self.cells[sl] == host)
            & ~self.membrane[sl]
            & (self.mito.labels[sl] == 0)
            & (self.labels[sl] == 0)
        )
        if not win.any():
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            foot = (np.abs(dy) * vs[1] + np.abs(dx) * vs[2]) / np.sqrt(dy * dy + dx * dx)
        foot = np.where(np.isfinite(foot), foot, min(vs[1:])).astype(np.float32)
        rim = _slab_cover(d, foot, radius - _VESICLE_RIM_NM, radius)
        value = np.float32(_VESICLE_LUMEN) * (1 - rim) + np.float32(_VESICLE_RIM) * rim
        self.labels[sl][win] = self.count
        self.intensity[sl][win] = value[win]


# ----------------------------------------------------------------------------------------------------
# labels and imaging


def _touching_pairs(labels):
    """Pairs ``(a, b)``, ``a < b``, of different nonzero labels that share a face (6-connectivity)."""
    pairs = set()
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1], a[1:]
        touch = (lo != hi) & (lo > 0) & (hi > 0)
        if touch.any():
            u, v = lo[touch].astype(np.int64), hi[touch].astype(np.int64)
            pairs.update(zip(np.minimum(u, v).tolist(), np.maximum(u, v).tolist()))
    return pairs


def _relabel(labels):
    """Map the values present to 1..N (keeping their order); returns uint32 labels and N."""
    present = np.bincount(labels.ravel()) > 0
    lut = np.zeros(len(present), np.uint32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.uint32)
    return lut[labels], int(present.sum())


def _relabel_lut(labels, count):
    """Map the ids 1..count present in ``labels`` to 1..N, 0 staying 0; returns labels and the lookup."""
    present = np.bincount(labels.ravel(), minlength=count + 1) > 0
    present[0] = False
    lut = np.zeros(count + 1, np.uint32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.uint32)
    return lut[labels], lut


def _smooth_field(rng, n, amplitude):
    """A smooth random profile of length ``n`` with peak-to-peak ``amplitude`` around 1."""
    t = np.linspace(0, 1, n)
    f = rng.uniform(-1, 1) * t
    for k in (1, 2):
        f = f + rng.uniform(-0.5, 0.5) / k * np.sin(np.pi * k * t + rng.uniform(0, 2 * np.pi))
    span = f.max() - f.min()
    f = (f - f.mean()) / span if span > 0 else np.zeros(n)
    return 1 + amplitude * f


def _imaging(img, vs, blur, drift, shading, noise, rng_texture, rng_noise, dtype):
    """Blur, shade, add noise and rescale ``img`` (float32, modified in place) to ``dtype``."""
    from scipy import ndimage

    sigma = [b / v for b, v in zip(blur, vs)]
    if any(s > 0 for s in sigma):
        img = ndimage.gaussian_filter(img, sigma=sigma, mode="reflect", truncate=3.0)
    nz, ny, nx = img.shape
    gain_z = _smooth_field(rng_texture, nz, drift).astype(np.float32)
    # in-plane: a tilted plane plus a broad vignette, peak-to-peak `shading`
    yy = np.linspace(-1, 1, ny)[:, None]
    xx = np.linspace(-1, 1, nx)[None, :]
    angle = rng_texture.uniform(0, 2 * np.pi)
    plane = np.cos(angle) * yy + np.sin(angle) * xx
    vignette = -((yy - rng_texture.uniform(-0.5, 0.5)) ** 2 + (xx - rng_texture.uniform(-0.5, 0.5)) ** 2)
    field2d = plane + 0.5 * vignette
    span = field2d.max() - field2d.min()
    field2d = 1 + shading * ((field2d - field2d.mean()) / span if span > 0 else 0 * field2d)
    img *= gain_z[:, None, None]
    img *= field2d.astype(np.float32)[None]
    if noise > 0:
        scale = np.sqrt(np.maximum(img, 0) / np.float32(_CYTOPLASM))
        scale *= np.float32(noise)
        img += rng_noise.standard_normal(img.shape, dtype=np.float32) * scale
    sample = img.ravel()[:: max(1, img.size // 1_000_000)]
    lo, hi = np.percentile(sample, [0.02, 99.98])
    if hi <= lo:
        hi = lo + 1.0
    img -= np.float32(lo)
    img *= np.float32(1.0 / (hi - lo))
    np.clip(img, 0, 1, out=img)
    if dtype == "float32":
        return img
    top = np.iinfo(dtype).max
    img *= np.float32(top)
    return np.rint(img).astype(dtype)


def _random_shift(rng):
    dy, dx = rng.integers(3, 9, size=2) * rng.choice([-1, 1], size=2)
    return int(dy), int(dx)


def _shift_section(section, dy, dx):
    """Move a section's content by (dy, dx) pixels, mirroring the exposed border."""
    from scipy import ndimage

    return ndimage.shift(section, (dy, dx), order=0, mode="mirror")
