"""ilastik-style pixel features for a random-forest pixel classifier, fast on CPU and GPU.

The six feature families of ilastik's pixel classification, each over a range of scales:
Gaussian smoothing, Laplacian of Gaussian, Gaussian gradient magnitude, difference of Gaussians,
structure-tensor eigenvalues and Hessian-of-Gaussian eigenvalues, computed per section ("2d") or
volumetrically ("3d") with anisotropy-aware sigmas, as float32 arrays of shape (F, Z, Y, X).

Conventions follow ilastik / vigra where they are documented:

- scales are Gaussian sigmas in in-plane pixels; in 3D each axis gets
  ``sigma * in_plane_voxel_size / axis_voxel_size`` so that the smoothing has the same physical width,
  and derivatives are taken per in-plane pixel (vigra's ``step_size``), so Hessians and gradients stay
  rotation-consistent on anisotropic data;
- kernels are sampled Gaussians truncated at ``3.5 * sigma`` (ilastik's window size), normalised so that
  smoothing keeps the mean and the first/second derivative kernels are exact on linear/quadratic ramps;
- difference of Gaussians is ``G(sigma) - G(0.66 * sigma)``; the structure tensor uses inner scale
  ``sigma`` and outer scale ``0.5 * sigma``; eigenvalues are sorted in descending order;
- volume borders are mirrored (numpy ``"reflect"``: the edge voxel is not repeated), the same way
  :func:`vemkit._blockwise.read_with_halo` pads, so blockwise results equal whole-volume results.

How it is fast (torch, float32, CPU or GPU): every 1D convolution is a matrix product. A slab is
stored transposed (x-major), so the x kernels (Gaussian, first and second derivative, the DoG Gaussian)
run together as one batched GEMM over a strided view; each y kernel then runs as a small banded
(Toeplitz) GEMM along the contiguous axis that transposes back, so results land in (y, x) layout with no
explicit transposes. Smoothing along y happens once per x result and is shared by all features; eigenvalues
use closed forms. Rows are processed in bands of 128 that stay in cache, and on the CPU the bands run in
worker threads (as many as ``torch.get_num_threads()``) with torch's own intra-op threading set to 1
for the duration of the call (restored afterwards): thousands of small ops scale badly with intra-op
threads and stall badly when the cores are shared, independent bands scale well.
The filters live in :mod:`vemkit._filters`, the band engine in :mod:`vemkit._feature_engine`.

Not for: training or applying the forest (:mod:`vemkit.pixel_classifier`), deep features.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from ._device import resolve_device
from ._feature_engine import Engine, axis_geometry, make_plan, single_threaded_ops
from ._filters import OUTER_RATIO, kernel_radius
from ._inputs import as_volume_array
from ._progress import progress_bar
from ._voxel import check_voxel_size

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_SCALES",
    "FEATURE_TYPES",
    "FeatureConfig",
    "auto_mode",
    "compute_features",
    "compute_features_blockwise",
]

#: ilastik's scales are 0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0; these are the ones users usually tick.
DEFAULT_SCALES = (0.7, 1.0, 1.6, 3.5, 5.0)

#: Feature families: Gaussian smoothing, Laplacian of Gaussian, Gaussian gradient magnitude,
#: difference of Gaussians, structure-tensor eigenvalues, Hessian-of-Gaussian eigenvalues.
FEATURE_TYPES = ("gaussian", "log", "ggm", "dog", "ste", "hoge")

#: The default set leaves out LoG and DoG: the LoG is the sum of the Hessian eigenvalues (already
#: there) and the DoG approximates it. On the VNC mitochondria (benchmarks/pixel_classifier.py, same
#: forest and scribbles) the 30 channels reached IoU 0.272 against 0.271 for all 40, in 0.113 s
#: instead of 0.359 s per 1024^2 section.
DEFAULT_FEATURES = ("gaussian", "ggm", "ste", "hoge")

_MODES = ("2d", "3d")
_AUTO_2D_ANISOTROPY = 3.0


# --------------------------------------------------------------------------------------------- config


def _format_scale(s: float) -> str:
    text = f"{s:g}"
    return text if ("." in text or "e" in text) else f"{s:.1f}"


@dataclass(frozen=True)
class FeatureConfig:
    """Which features, at which scales, per section or volumetric.

    Parameters
    ----------
    scales : tuple of float
        Gaussian sigmas in in-plane pixels (ilastik offers 0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0).
    features : tuple of str
        Any of ``"gaussian"`` (Gaussian smoothing), ``"log"`` (Laplacian of Gaussian), ``"ggm"``
        (Gaussian gradient magnitude), ``"dog"`` (difference of Gaussians), ``"ste"`` (structure-tensor
        eigenvalues), ``"hoge"`` (Hessian-of-Gaussian eigenvalues). Default :data:`DEFAULT_FEATURES`
        (all but LoG and DoG, which the Hessian eigenvalues already carry).
    mode : {"2d", "3d"}
        ``"2d"`` filters each z-section on its own (for anisotropic stacks such as ssTEM),
        ``"3d"`` filters volumetrically with z sigmas scaled by the voxel size.

    Examples
    --------
    >>> cfg = FeatureConfig(scales=(1.0, 3.5), features=("gaussian", "hoge"))
    >>> cfg.names()
    ['gaussian_s1.0', 'gaussian_s3.5', 'hoge_s1.0_ev0', 'hoge_s1.0_ev1', 'hoge_s3.5_ev0', 'hoge_s3.5_ev1']
    >>> cfg.n_features(), FeatureConfig().n_features(), FeatureConfig(features=FEATURE_TYPES).n_features()
    (6, 30, 40)
    >>> cfg.halo()
    (0, 13, 13)
    >>> FeatureConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    scales: tuple[float, ...] = DEFAULT_SCALES
    features: tuple[str, ...] = DEFAULT_FEATURES
    mode: str = "2d"

    def __post_init__(self):
        scales = self.scales
        if isinstance(scales, (int, float, np.number)):
            scales = (scales,)
        try:
            scales = tuple(float(s) for s in scales)
        except (TypeError, ValueError):
            raise ValueError(
                f"scales must be a sequence of positive numbers (pixels), got {self.scales!r}"
            ) from None
        if not scales:
            raise ValueError("scales must hold at least one positive number (pixels), got none")
        for s in scales:
            if not math.isfinite(s) or s <= 0:
                raise ValueError(f"scales must be finite and positive (pixels), got {self.scales!r}")
        if len(set(scales)) != len(scales):
            raise ValueError(f"scales must not repeat, got {self.scales!r}")
        features = self.features
        if isinstance(features, str):
            features = (features,)
        features = tuple(str(f).lower() for f in features)
        if not features:
            raise ValueError(f"features must name at least one of {', '.join(FEATURE_TYPES)}")
        unknown = [f for f in features if f not in FEATURE_TYPES]
        if unknown:
            raise ValueError(
                f"features: unknown feature name(s) {unknown}; expected any of {', '.join(FEATURE_TYPES)}"
            )
        if len(set(features)) != len(features):
            raise ValueError(f"features must not repeat, got {self.features!r}")
        mode = str(self.mode).lower()
        if mode not in _MODES:
            raise ValueError(f"mode must be '2d' (per section) or '3d' (volumetric), got {self.mode!r}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "mode", mode)

    def to_dict(self) -> dict:
        """A JSON-ready dict (``scales``, ``features``, ``mode``)."""
        return {"scales": list(self.scales), "features": list(self.features), "mode": self.mode}

    @classmethod
    def from_dict(cls, d) -> "FeatureConfig":
        """Rebuild a config from :meth:`to_dict` output (missing keys take their defaults)."""
        if isinstance(d, FeatureConfig):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"FeatureConfig.from_dict needs a dict, got {type(d).__name__}")
        unknown = set(d) - {"scales", "features", "mode"}
        if unknown:
            raise ValueError(f"FeatureConfig.from_dict: unknown key(s) {sorted(unknown)}; "
                             "expected scales, features, mode")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    @property
    def n_eigenvalues(self) -> int:
        return 2 if self.mode == "2d" else 3

    def names(self) -> list[str]:
        """One name per output channel, in output order (feature by feature, scale by scale)."""
        out = []
        for f in self.features:
            for s in self.scales:
                base = f"{f}_s{_format_scale(s)}"
                if f in ("ste", "hoge"):
                    out.extend(f"{base}_ev{i}" for i in range(self.n_eigenvalues))
                else:
                    out.append(base)
        return out

    def n_features(self) -> int:
        """Number of output channels."""
        return len(self.names())

    def halo(self, voxel_size=None) -> tuple[int, int, int]:
        """Voxels of context (z, y, x) that each side of a block needs for exact results.

        Parameters
        ----------
        voxel_size : tuple of 3 float, optional
            Voxel size (z, y, x) in nm; required in ``"3d"`` mode (it sets the z sigmas).

        Returns
        -------
        tuple of 3 int
            The largest kernel radius over the scales, plus the structure tensor's outer radius when
            ``"ste"`` is computed; 0 along z in ``"2d"`` mode.
        """
        sig, _ = axis_geometry(self, voxel_size)
        halo = [0, 0, 0]
        for s in self.scales:
            for a in range(3):
                if sig[a] == 0:
                    continue
                r = kernel_radius(s * sig[a])
                if "ste" in self.features:
                    r += kernel_radius(OUTER_RATIO * s * sig[a])
                halo[a] = max(halo[a], r)
        return tuple(halo)


def auto_mode(voxel_size, shape=None, scales=DEFAULT_SCALES) -> str:
    """Choose ``"2d"`` (per section) when z is much coarser than the section plane or the stack is
    thinner than the 3D filters, else ``"3d"``.

    Parameters
    ----------
    voxel_size : tuple of 3 float or None
        Voxel size (z, y, x) in nm; ``None`` (unknown) gives ``"2d"``, which assumes nothing about z.
    shape : tuple of int, optional
        Shape (z, y, x) of the image (or (y, x): one section). A stack with fewer sections than the z
        window of the largest 3D Gaussian (``2 * radius + 1`` sections) gets ``"2d"``: there, most of what
        a 3D filter sees is the mirrored border, so 3D features cost several times more (and need a
        z halo of that radius on every block) for little more information than 2D ones.
    scales : tuple of float
        The feature scales (in-plane pixels) the window is computed for.

    Returns
    -------
    str
        ``"2d"`` when ``z / mean(y, x) > 3`` or the stack is thin, else ``"3d"``.

    Examples
    --------
    >>> auto_mode((50, 4, 4)), auto_mode((8, 8, 8)), auto_mode((20, 8, 8))
    ('2d', '3d', '3d')
    >>> auto_mode((8, 8, 8), shape=(1, 768, 1024)), auto_mode((8, 8, 8), shape=(64, 256, 256))
    ('2d', '3d')
    """
    if voxel_size is None:
        return "2d"
    z, y, x = check_voxel_size(voxel_size, name="voxel_size")
    if z / ((y + x) / 2) > _AUTO_2D_ANISOTROPY:
        return "2d"
    if shape is not None:
        n_z = int(shape[0]) if len(shape) == 3 else 1
        window = 2 * kernel_radius(max(scales) * ((y + x) / 2) / z) + 1
        if n_z < window:
            return "2d"
    return "3d"


# ------------------------------------------------------------------------------------------ reading


def _reflect_index(start: int, stop: int, n: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``0..n-1`` by mirroring without repeating the edge
    (numpy 'reflect', repeated for pads longer than the axis; an axis of length 1 repeats its voxel)."""
    idx = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m >= n, period - m, m)


def _read_padded(source, region, pad_lo, pad_hi):
    """Read ``source[region]`` grown by ``pad_lo`` / ``pad_hi`` voxels per axis, mirrored at the borders."""
    starts = [sl.start - lo for sl, lo in zip(region, pad_lo)]
    stops = [sl.stop + hi for sl, hi in zip(region, pad_hi)]
    inner = [slice(max(a, 0), min(b, n)) for a, b, n in zip(starts, stops, source.shape)]
    outside = [(sl.start - a, b - sl.stop) for a, b, sl in zip(starts, stops, inner)]
    if all(max(a, b) <= sl.stop - sl.start - 1 or a == b == 0 for (a, b), sl in zip(outside, inner)):
        block = np.asarray(source[tuple(inner)])  # one mirror fits inside the data read: np.pad is enough
        return np.pad(block, outside, mode="reflect") if any(a or b for a, b in outside) else block
    idx = [_reflect_index(a, b, n) for a, b, n in zip(starts, stops, source.shape)]
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    block = np.asarray(source[tuple(slice(a, b) for a, b in zip(lo, hi))])
    return block[np.ix_(*[i - a for i, a in zip(idx, lo)])]


def _as_source(image, voxel_size, name="image"):
    """(source array (Z, Y, X), voxel size) from a path, numpy / dask / zarr array or Volume; a 2D
    image is one section."""
    image, voxel_size, _ = as_volume_array(image, name, voxel_size=voxel_size, allow_2d=True)
    if any(int(s) == 0 for s in image.shape):
        raise ValueError(f"{name} is empty: shape {tuple(image.shape)}")
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {dtype}")
    return image, voxel_size


def _compute_block(torch, source, region, config, voxel_size, dev, executor=None, progress=False):
    """Features of ``source[region]`` (3 slices) as a float32 torch tensor (F, z, y, x) on ``dev``."""
    core = tuple(sl.stop - sl.start for sl in region)
    plan = make_plan(config, voxel_size, core)
    block = np.asarray(_read_padded(source, region, plan["pad_lo"], plan["pad_hi"]))
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        raise ValueError("image contains NaN or infinite values; features need finite grey values")
    xp = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(dev)
    out = torch.empty((config.n_features(), *core), dtype=torch.float32, device=dev)
    Engine(torch, xp, core, config, plan, out, dev).run(executor, progress)
    return out


@contextlib.contextmanager
def _workers(torch, dev):
    """A thread pool for the bands on the CPU (torch ops single-threaded meanwhile), else None."""
    if dev.type != "cpu":
        yield None
        return
    from concurrent.futures import ThreadPoolExecutor

    with single_threaded_ops(torch) as n:
        if n <= 1:
            yield None
            return
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="vemkit-features") as ex:
            yield ex


def _to_numpy(t):
    arr = t.cpu().numpy()
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------- public API


def compute_features(image, config=None, *, voxel_size=None, device="cpu", progress=False, region=None) -> np.ndarray:
    """Compute the feature stack of an image or (small) volume in memory, or of one region of it.

    Parameters
    ----------
    image : array-like of shape (Z, Y, X) or (Y, X), or :class:`vemkit.io.Volume`
        Grey values (any real dtype; numpy, dask or zarr). A 2D image is one section.
        The whole array is loaded: use :func:`compute_features_blockwise` for big volumes.
    config : FeatureConfig or dict, optional
        Features, scales and mode (default: :class:`FeatureConfig`, i.e. 2d, all six features at
        :data:`DEFAULT_SCALES`, 30 channels).
    voxel_size : tuple of 3 float, optional
        Voxel size (z, y, x) in nm (default: the Volume's). Required in ``"3d"`` mode.
    device : str
        ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"`` (see :func:`vemkit._device.resolve_device`).
    progress : bool
        Show a progress bar (over sections in 2D, scales in 3D).
    region : tuple of 3 slices, optional
        Compute only the features of ``image[region]`` (slices with explicit start and stop): the context
        they need is read from ``image`` around the region (mirrored only at the true borders), so the
        result equals the same region of the whole-image features, and only the region plus its halo
        is read (a lazy image stays lazy).

    Returns
    -------
    ndarray of shape (F, Z, Y, X), float32
        One channel per name of ``config.names()``; a 2D image gives Z = 1; with ``region``, its shape.

    Notes
    -----
    On the CPU the work runs in ``torch.get_num_threads()`` worker threads while torch's intra-op
    threading is set to 1; the thread count is restored when the call returns.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((32, 32), np.uint8); img[:, 16:] = 200
    >>> cfg = FeatureConfig(scales=(1.0,), features=("gaussian", "ggm"))
    >>> f = compute_features(img, cfg)
    >>> f.shape, f.dtype
    ((2, 1, 32, 32), dtype('float32'))
    >>> int(np.argmax(f[1, 0, 10]))  # the gradient magnitude peaks at the step
    15
    >>> part = compute_features(img, cfg, region=(slice(0, 1), slice(4, 12), slice(10, 20)))
    >>> part.shape, bool(np.allclose(part, f[:, :, 4:12, 10:20], atol=1e-5))
    ((2, 1, 8, 10), True)
    """
    import torch

    config = _check_config(config)
    source, voxel_size = _as_source(image, voxel_size)
    make_plan(config, voxel_size)  # checks the voxel size before any work
    dev = resolve_device(device)
    if region is None:
        if not isinstance(source, np.ndarray):
            source = np.asarray(source.compute() if hasattr(source, "compute") else source)
        region = tuple(slice(0, int(n)) for n in source.shape)
    else:
        region = _check_region(region, source.shape)
    with torch.no_grad(), _workers(torch, dev) as ex:
        out = _compute_block(torch, source, region, config, voxel_size, dev, ex, progress)
        return _to_numpy(out)


def compute_features_blockwise(volume, config=None, *, voxel_size=None, block=None, device="cpu", out=None,
                               progress=True):
    """Compute the feature stack of a large volume block by block, each block with its halo.

    Each block reads the data around it (``config.halo(voxel_size)`` voxels, mirrored only at the
    true volume borders), so the result equals :func:`compute_features` on the whole volume.

    Parameters
    ----------
    volume : array-like of shape (Z, Y, X) or (Y, X), or :class:`vemkit.io.Volume`
        Lazy (dask, zarr) or in-memory grey values.
    config : FeatureConfig or dict, optional
        As for :func:`compute_features`.
    voxel_size : tuple of 3 float, optional
        Voxel size (z, y, x) in nm (default: the Volume's); required in ``"3d"`` mode.
    block : tuple of 3 int, optional
        Block shape (z, y, x) without halo (default (2, 1024, 1024) in 2d, (32, 256, 256) in 3d).
    device : str
        Where the features are computed (``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"``).
    out : array-like of shape (F, Z, Y, X), optional
        Where to write (a zarr array or numpy array, float32 preferred); by default a new numpy array.
    progress : bool
        Show a progress bar over the blocks.

    Returns
    -------
    array of shape (F, Z, Y, X)
        ``out`` (or the new float32 numpy array); a 2D input gives Z = 1.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).random((6, 40, 40)).astype(np.float32)
    >>> cfg = FeatureConfig(scales=(1.0,), features=("gaussian", "ste"))
    >>> whole = compute_features(vol, cfg)
    >>> parts = compute_features_blockwise(vol, cfg, block=(2, 16, 16), progress=False)
    >>> bool(np.allclose(whole, parts, atol=1e-5))
    True
    """
    import torch

    config = _check_config(config)
    source, voxel_size = _as_source(volume, voxel_size, name="volume")
    make_plan(config, voxel_size)  # checks the voxel size before any work
    dev = resolve_device(device)
    shape = tuple(int(n) for n in source.shape)
    if block is None:
        block = (2, 1024, 1024) if config.mode == "2d" else (32, 256, 256)
    try:
        block = tuple(int(b) for b in block)
    except (TypeError, ValueError):
        raise ValueError(f"block must be three positive integers (z, y, x), got {block!r}") from None
    if len(block) != 3 or any(b <= 0 for b in block):
        raise ValueError(f"block must be three positive integers (z, y, x), got {block!r}")
    n = config.n_features()
    expected = (n, *shape)
    if out is None:
        out = np.empty(expected, np.float32)
    elif tuple(out.shape) != expected:
        raise ValueError(f"out must have shape (F, Z, Y, X) = {expected}, got {tuple(out.shape)}")
    starts = [range(0, s, b) for s, b in zip(shape, block)]
    regions = [
        (slice(z, min(z + block[0], shape[0])), slice(y, min(y + block[1], shape[1])),
         slice(x, min(x + block[2], shape[2])))
        for z in starts[0] for y in starts[1] for x in starts[2]
    ]
    with torch.no_grad(), _workers(torch, dev) as ex:
        for region in progress_bar(regions, desc="features (blocks)", unit="block", disable=not progress):
            feats = _compute_block(torch, source, region, config, voxel_size, dev, ex)
            out[(slice(None), *region)] = _to_numpy(feats)
    return out


def _check_region(region, shape):
    """``region`` as 3 slices with start < stop inside ``shape`` (a 2D image's region may leave out z)."""
    region = tuple(region)
    if len(region) == 2 and len(shape) == 3 and shape[0] == 1:
        region = (slice(0, 1), *region)
    if len(region) != 3 or not all(isinstance(sl, slice) and sl.step in (None, 1) for sl in region):
        raise ValueError(f"region must be 3 slices (z, y, x) with step 1, got {region!r}")
    out = []
    for sl, n in zip(region, shape):
        start, stop, _ = sl.indices(int(n))
        if stop <= start:
            raise ValueError(f"region {region!r} is empty or outside the image of shape {tuple(shape)}")
        out.append(slice(start, stop))
    return tuple(out)


def _check_config(config) -> FeatureConfig:
    if config is None:
        return FeatureConfig()
    if isinstance(config, dict):
        return FeatureConfig.from_dict(config)
    if not isinstance(config, FeatureConfig):
        raise ValueError(f"config must be a FeatureConfig or dict, got {type(config).__name__}")
    return config
