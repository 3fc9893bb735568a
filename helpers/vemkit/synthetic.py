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

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ._phantom_shapes import Mitochondria, Vesicles, cell_seeds, voronoi
from ._voxel import check_voxel_size

__all__ = ["CLASSES", "Phantom", "make_phantom"]

#: Semantic classes of :attr:`Phantom.semantic` (0 is cytoplasm / background).
CLASSES = {1: "membrane", 2: "mitochondria", 3: "vesicle"}

# ---- densities per cubic micrometre (the shapes themselves are in vemkit._phantom_shapes) ----
_CELL_VOLUME_UM3 = 1.0  # mean volume of one cell
_MITO_PER_UM3 = 3.0
_VESICLES_PER_UM3 = 30.0

# ---- intensities before the imaging model (0 = black, 1 = white) ----
_CYTOPLASM = 0.62
_CELL_SPREAD = 0.035  # cell-to-cell standard deviation of the cytoplasm grey level
_GRAIN = 0.10  # fine cytoplasm texture (before blur)
_MEMBRANE = 0.10

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


def make_phantom(shape=(24, 256, 256), voxel_size=(40.0, 8.0, 8.0), seed=0, *, n_cells=None, n_mitochondria=None,
                 n_vesicles=None, noise=0.08, blur_nm=(20.0, 8.0, 8.0), drift=0.15, shading=0.1,
                 missing_sections=(), misaligned_sections=(), dtype="uint8") -> Phantom:
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
    params, spacing, missing, misaligned = _checked(shape, voxel_size, seed, n_cells, n_mitochondria, n_vesicles,
                                                    noise, blur_nm, drift, shading, missing_sections,
                                                    misaligned_sections, dtype)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(params["seed"]).spawn(6)]
    rng_cells, rng_mito, rng_ves, rng_texture, rng_noise, rng_defects = streams
    tissue = _tissue(params, spacing, rng_cells, rng_mito, rng_ves)
    labels = _labels(tissue)
    image = _render(tissue, params, rng_texture, rng_noise)
    _section_defects(image, missing, misaligned, rng_defects)
    info = {
        "n_cells": labels["n_cells"],
        "n_mitochondria": int(labels["mitochondria"].max(initial=0)),
        "n_vesicles": int(labels["vesicles"].max(initial=0)),
        "mitochondria_pairs": labels["pairs"],
        "touching_mitochondria": sorted(labels["touching"]),
        "parameters": params,
    }
    instances = {k: labels[k] for k in ("cells", "mitochondria", "vesicles")}
    return Phantom(image=image, semantic=labels["semantic"], instances=instances, voxel_size=params["voxel_size"],
                   seed=params["seed"], missing_sections=tuple(missing),
                   misaligned_sections=dict(sorted(misaligned.items())), info=info)


def _checked(shape, voxel_size, seed, n_cells, n_mitochondria, n_vesicles, noise, blur_nm, drift, shading,
             missing_sections, misaligned_sections, dtype):
    """``(parameters, cell spacing in nm, missing sections, misaligned sections)`` of :func:`make_phantom`,
    checked, with the counts that were not given derived from the volume (the parameters as
    ``Phantom.info`` keeps them)."""
    shape = _check_shape(shape)
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
    params = {"shape": shape, "voxel_size": vs, "seed": seed, "n_cells": n_cells, "n_mitochondria": n_mitochondria,
              "n_vesicles": n_vesicles, "noise": noise, "blur_nm": blur, "drift": drift, "shading": shading,
              "dtype": dtype}
    return params, cell_spacing, missing, misaligned


def _tissue(params, cell_spacing, rng_cells, rng_mito, rng_ves):
    """Cells, membranes, mitochondria and vesicles (before labels are numbered and before imaging)."""
    shape, vs = params["shape"], params["voxel_size"]
    seeds = cell_seeds(rng_cells, params["n_cells"], cell_spacing, shape, vs)
    cells, cover, membrane = voronoi(shape, vs, seeds, rng_cells)
    cyt_level = (_CYTOPLASM + _CELL_SPREAD * rng_cells.standard_normal(len(seeds))).astype(np.float32)
    mito = Mitochondria(shape, vs, seeds, cells, membrane)
    pairs = mito.place(rng_mito, params["n_mitochondria"])
    ves = Vesicles(shape, vs, seeds, cells, membrane, mito)
    ves.place(rng_ves, params["n_vesicles"])
    return {"cells": cells, "cover": cover, "membrane": membrane, "cyt_level": cyt_level, "mito": mito,
            "pairs": pairs, "ves": ves}


def _labels(tissue):
    """The instance labels numbered 1..N, the semantic labels and the touching mitochondria."""
    cell_ids, n_cells_present = _relabel(tissue["cells"])
    mito, ves = tissue["mito"], tissue["ves"]
    mito_ids, mito_lut = _relabel_lut(mito.labels, mito.count)
    ves_ids, _ = _relabel_lut(ves.labels, ves.count)
    semantic = np.zeros(cell_ids.shape, np.uint8)
    semantic[tissue["membrane"]] = 1
    semantic[mito_ids > 0] = 2
    semantic[ves_ids > 0] = 3
    touching = _touching_pairs(mito_ids)
    pair_ids = [
        (int(mito_lut[a]), int(mito_lut[b]))
        for a, b in tissue["pairs"]
        if (int(mito_lut[a]), int(mito_lut[b])) in touching
    ]
    return {"cells": cell_ids, "n_cells": n_cells_present, "mitochondria": mito_ids, "vesicles": ves_ids,
            "semantic": semantic, "touching": touching, "pairs": pair_ids}


def _render(tissue, params, rng_texture, rng_noise):
    """The grey values of the tissue (texture, membranes with their partial volume, organelles), then
    the imaging model. Frees the membrane cover of ``tissue``."""
    mito, ves = tissue["mito"], tissue["ves"]
    img = tissue["cyt_level"][tissue["cells"]]
    img += rng_texture.standard_normal(params["shape"], dtype=np.float32) * np.float32(_GRAIN)
    cover = tissue.pop("cover")
    img *= 1 - cover
    img += np.float32(_MEMBRANE) * cover
    has_mito = mito.labels > 0
    img[has_mito] = mito.intensity[has_mito]
    has_ves = ves.labels > 0
    img[has_ves] = ves.intensity[has_ves]
    del cover
    return _imaging(img, params["voxel_size"], params["blur_nm"], params["drift"], params["shading"],
                    params["noise"], rng_texture, rng_noise, params["dtype"])


def _section_defects(image, missing, misaligned, rng_defects):
    """Shift and blank sections in place (after the rescale, so they do not change the other sections);
    fills in the random shifts of ``misaligned`` and drops the sections that are missing anyway."""
    for z in sorted(misaligned):
        dy, dx = misaligned[z] if misaligned[z] is not None else _random_shift(rng_defects)
        misaligned[z] = (dy, dx)
        image[z] = _shift_section(image[z], dy, dx)
    for z in missing:
        image[z] = 0
        misaligned.pop(z, None)


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
