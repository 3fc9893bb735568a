"""Domain shift: how far a model trained on one EM dataset carries to another, and the cheap remedies.

A model trained on one microscope's images (tissue, stain, modality, voxel size) often fails on
another's. This module measures the gap without any target labels and holds the remedies users
should try before training anything:

- :func:`domain_gap` compares source and target: voxel size, grey-value statistics, the distance
  between the network's encoder features on both (maximum mean discrepancy and a proxy
  A-distance), and label-free signs of how well the model will do on the target (confidence, and
  agreement of its prediction with that of the flipped image); :func:`plot_domain_gap` shows it.
- :func:`resample_sections` brings a volume to the model's pixel size (in-plane, lazily).
- :func:`match_histogram` maps a volume's grey-value distribution onto the training data's;
  :func:`histogram_normalization` stores that mapping in a model so prediction applies it itself.
- :func:`adapt_batchnorm` re-estimates the network's normalisation statistics on the target (AdaBN).
- :func:`predict_sections` runs a 2D model over a few sections in memory, resampling to its pixel
  size and back, for quick comparisons (use :func:`vemkit.predict.predict_volume` for volumes).

Not for: training-based adaptation (:mod:`vemkit.adapt`: Y-Net, DANN).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ._checks import check_positive_int
from ._featuredist import mmd2, pooled_features, proxy_a_distance
from ._inputs import as_volume_array
from ._sections import as_model, pick_sections, random_patches, replace_network, run_2d, softmax, zoom2d, zoom_factor

__all__ = [
    "DomainGap",
    "adapt_batchnorm",
    "domain_gap",
    "histogram_normalization",
    "intensity_stats",
    "label_free_scores",
    "load_sections",
    "match_histogram",
    "plot_domain_gap",
    "predict_sections",
    "resample_sections",
]


# ---------------------------------------------------------------------------------------- sections
def load_sections(model, image, *, voxel_size=None, sections=None, max_sections: int = 16, resample: bool = True):
    """Sections of a volume as the model's input: normalised as the model says and, with ``resample``,
    zoomed in-plane to the model's pixel size.

    Parameters
    ----------
    model : SegmentationModel or path
    image : path, Volume or array (Z, Y, X)
    voxel_size : (z, y, x) nm, optional
        Overrides the image's.
    sections : list of int, optional
        Which sections (default: ``max_sections`` evenly spaced).
    max_sections : int
    resample : bool

    Returns
    -------
    sections : float32 array (S, Y', X')
    picked : list of int
    factor : float
        The in-plane zoom applied (1.0 without resampling).

    Examples
    --------
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> img = np.random.default_rng(0).integers(0, 255, (6, 40, 40)).astype(np.uint8)
    >>> x, picked, factor = load_sections(model, img, voxel_size=(50, 10, 10), max_sections=3)
    >>> x.shape, picked, factor
    ((3, 80, 80), [0, 2, 5], 2.0)
    """
    check_positive_int(max_sections, "max_sections")
    model = as_model(model)
    from ._intensity import apply_mapping, input_mapping

    data, vs, _ = as_volume_array(image, "image", voxel_size=voxel_size)
    picked = pick_sections(data.shape[0], sections, max_sections)
    low, scale, lut = input_mapping(model.normalization, data)
    factor = zoom_factor(vs, model.voxel_size) if resample else 1.0
    out = []
    for z in picked:
        s = apply_mapping(np.asarray(data[z]), low, scale, lut)
        out.append(zoom2d(s, factor).astype(np.float32))
    return np.stack(out), picked, factor


def predict_sections(model, image, *, voxel_size=None, sections=None, max_sections: int = 16,
                     resample: bool = True, device="cpu", batch: int = 4):
    """Class probabilities of a 2D model on a few sections, in the image's own pixel grid.

    With ``resample`` each section is zoomed to the model's pixel size first and the probabilities
    zoomed back, which is what a model trained at another pixel size needs
    (:func:`resample_sections` does the same lazily for whole volumes).

    Returns
    -------
    probabilities : float32 array (C, S, Y, X)
    picked : list of int

    Examples
    --------
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> img = np.random.default_rng(0).integers(0, 255, (4, 30, 30)).astype(np.uint8)
    >>> p, picked = predict_sections(model, img, voxel_size=(50, 10, 10), max_sections=2)
    >>> p.shape, picked
    ((2, 2, 30, 30), [0, 3])
    """
    check_positive_int(max_sections, "max_sections")
    check_positive_int(batch, "batch")
    model = as_model(model)
    from ._device import resolve_device

    if model.ndim != 2:
        raise ValueError("predict_sections runs 2D models; use vemkit.predict.predict_volume for 3D ones")
    data, _, _ = as_volume_array(image, "image", voxel_size=voxel_size)
    x, picked, factor = load_sections(model, image, voxel_size=voxel_size, sections=sections,
                                      max_sections=max_sections, resample=resample)
    dev = resolve_device(device)
    net = model.network.to(dev)
    logits = run_2d(net, x, batch, dev)[:, : model.n_classes]
    probs = softmax(logits)
    shape = tuple(data.shape[1:])
    if probs.shape[2:] != shape:
        probs = np.stack([np.stack([zoom2d(c, 1 / factor, order=1, shape=shape) for c in p]) for p in probs])
    return np.ascontiguousarray(probs.transpose(1, 0, 2, 3)).astype(np.float32), picked


# ------------------------------------------------------------------------------------ the remedies
def resample_sections(image, to_voxel_size, *, voxel_size=None, order: int = 1):
    """The volume zoomed in-plane to ``to_voxel_size``'s pixel size, lazily (a dask-backed Volume).

    z is left as it is: 2D models see one section at a time. Each section is zoomed on its own, so
    a terabyte volume costs one section of memory per worker.

    Parameters
    ----------
    image : path, Volume or array (Z, Y, X)
    to_voxel_size : (z, y, x) nm
        E.g. the model's ``voxel_size``; only its in-plane size is used.
    voxel_size : (z, y, x) nm, optional
        The image's, if it does not carry one.
    order : int
        Spline order (1 = linear for images, 0 = nearest for labels).

    Returns
    -------
    Volume

    Examples
    --------
    >>> vol = resample_sections(np.zeros((3, 50, 50), np.uint8), (50, 4, 4), voxel_size=(50, 10, 10))
    >>> vol.shape, vol.voxel_size, vol.dtype
    ((3, 125, 125), (50.0, 4.0, 4.0), dtype('uint8'))
    """
    if order not in range(6):
        raise ValueError(f"order must be an integer spline order 0..5, got {order!r}")
    import dask.array as da

    from ._volume import Volume
    from ._voxel import check_voxel_size

    data, vs, _ = as_volume_array(image, "image", voxel_size=voxel_size)
    if vs is None:
        raise ValueError("the image has no voxel size: pass voxel_size=(z, y, x) in nm so it can be resampled")
    to = check_voxel_size(to_voxel_size)
    factor = zoom_factor(vs, to)
    shape = (int(data.shape[0]), *(max(1, int(round(n * factor))) for n in data.shape[1:]))
    new_vs = (vs[0], vs[1] / (shape[1] / data.shape[1]), vs[2] / (shape[2] / data.shape[2]))
    arr = data if isinstance(data, da.Array) else da.from_array(data, chunks=(1, *data.shape[1:]))
    arr = arr.rechunk((1, *arr.shape[1:]))
    dtype = np.dtype(arr.dtype)

    def zoom_block(block):
        out = np.stack([zoom2d(s, factor, order=order, shape=shape[1:]) for s in block])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            out = np.clip(np.round(out), info.min, info.max)
        return out.astype(dtype)

    zoomed = arr.map_blocks(zoom_block, chunks=((1,) * shape[0], (shape[1],), (shape[2],)), dtype=dtype)
    return Volume(data=zoomed, voxel_size=new_vs, source=f"resampled to {new_vs[1]:g} nm pixels",
                  metadata={"resampled_from": list(vs)})


def histogram_normalization(source, *, voxel_size=None, normalization=None, levels=None) -> dict:
    """A ``histogram`` normalisation for a model: the source's grey-value percentiles, as the model's
    input, at ``levels``. A model carrying it maps any new volume's percentiles onto these.

    Parameters
    ----------
    source : path, Volume or array
        The data the model was trained on.
    normalization : dict, optional
        How the model normalises the source (default: 1-99 percentiles).
    levels : list of float, optional
        Percent levels (default :data:`vemkit._intensity.HISTOGRAM_LEVELS`).

    Examples
    --------
    >>> norm = histogram_normalization(np.arange(1000, dtype=np.uint16).reshape(10, 10, 10), levels=[1, 50, 99])
    >>> norm["mode"], [round(v, 3) for v in norm["reference"]]
    ('histogram', [0.0, 0.5, 1.0])
    """
    from ._intensity import HISTOGRAM_LEVELS, apply_mapping, input_mapping, percentiles

    data, _, _ = as_volume_array(source, "source", voxel_size=voxel_size)
    levels = list(HISTOGRAM_LEVELS if levels is None else levels)
    if any(not 0 <= v <= 100 for v in levels) or sorted(levels) != levels:
        raise ValueError(f"levels must be increasing percentages in [0, 100], got {levels}")
    low, scale, lut = input_mapping(normalization or {"mode": "percentile", "lower": 1.0, "upper": 99.0}, data)
    ref = apply_mapping(percentiles(data, levels), low, scale, lut).astype(np.float64)
    return {"mode": "histogram", "levels": levels, "reference": np.maximum.accumulate(ref).round(6).tolist()}


def match_histogram(image, reference, *, voxel_size=None, levels=None):
    """The image with its grey-value distribution mapped onto the reference's, lazily.

    A monotone piecewise-linear map between the two volumes' percentiles (estimated from a sample of
    each), so it is the same for every block of a large volume.

    Parameters
    ----------
    image, reference : path, Volume or array (Z, Y, X)
    levels : list of float, optional
        Percent levels of the map.

    Returns
    -------
    Volume
        float32, the image's voxel size.

    Examples
    --------
    >>> img = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    >>> ref = (img // 4).astype(np.uint8)
    >>> out = match_histogram(img, ref)
    >>> round(float(out.data[5, 5, 5].compute()), 1), int(ref[5, 5, 5])
    (138.3, 138)
    """
    import dask.array as da

    from ._intensity import HISTOGRAM_LEVELS, increasing, percentiles
    from ._volume import Volume

    data, vs, _ = as_volume_array(image, "image", voxel_size=voxel_size)
    ref, _, _ = as_volume_array(reference, "reference")
    levels = list(HISTOGRAM_LEVELS if levels is None else [0.0, *levels, 100.0])
    xp = increasing(percentiles(data, levels))
    fp = np.maximum.accumulate(percentiles(ref, levels))
    arr = data if isinstance(data, da.Array) else da.from_array(data, chunks=(1, *data.shape[1:]))
    out = arr.map_blocks(lambda b: np.interp(b, xp, fp).astype(np.float32), dtype=np.float32)
    return Volume(data=out, voxel_size=vs, source="histogram-matched", metadata={"levels": levels})


def adapt_batchnorm(model, target, *, voxel_size=None, n_patches: int = 64, patch: int = 256,
                    batch_size: int = 8, resample: bool = True, device="cpu", seed: int = 0):
    """A copy of the model whose BatchNorm statistics are re-estimated on the target (AdaBN).

    BatchNorm layers normalise with the mean and variance of the training data's features; on a
    new microscope those are off, and every layer's input with them. Re-estimating them on target
    patches (no labels, no gradient steps) is the cheapest remedy that touches the network
    (Li et al., "Revisiting batch normalization for practical domain adaptation", 2016).

    Parameters
    ----------
    model : SegmentationModel or path
        Not changed.
    target : path, Volume or array (Z, Y, X)
    n_patches, patch, batch_size : int
        Target patches that estimate the statistics.
    resample : bool
        Zoom the target to the model's pixel size first.

    Returns
    -------
    SegmentationModel

    Examples
    --------
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> img = np.random.default_rng(0).integers(0, 255, (4, 64, 64)).astype(np.uint8)
    >>> adapted = adapt_batchnorm(model, img, voxel_size=(50, 5, 5), n_patches=4, patch=32)
    >>> adapted.training["adaptation"]["method"]
    'adabn'
    """
    check_positive_int(n_patches, "n_patches")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(patch, "patch", minimum=16)
    model = as_model(model)
    import torch

    from ._device import resolve_device

    if model.ndim != 2:
        raise ValueError("adapt_batchnorm works on 2D models here (sections of the target)")
    x, picked, factor = load_sections(model, target, voxel_size=voxel_size, max_sections=max(n_patches // 4, 4),
                                      resample=resample)
    patches = random_patches(x, n_patches, patch, model.network.divisor, np.random.default_rng(seed))
    dev = resolve_device(device)
    net = copy.deepcopy(model.network).to(dev)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the model's network has no BatchNorm layers to re-estimate")
    net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    with torch.no_grad():
        for i in range(0, len(patches), batch_size):
            net(torch.from_numpy(patches[i : i + batch_size, None]).to(dev))
    for m in norms:
        m.momentum = 0.1
    net.eval().cpu()
    training = dict(model.training)
    training["adaptation"] = {"method": "adabn", "target_sections": picked, "patches": len(patches),
                              "patch": int(patches.shape[-1]), "zoom": round(factor, 4)}
    return replace_network(model, net, training)


# ---------------------------------------------------------------------------------- the diagnosis
def intensity_stats(image, *, voxel_size=None) -> dict:
    """Grey-value statistics of a volume from a bounded sample: percentiles, mean, spread, contrast
    and noise (Immerkaer's estimate of the noise standard deviation), plus its voxel size.

    Examples
    --------
    >>> s = intensity_stats(np.full((4, 32, 32), 100, np.uint8))
    >>> s["mean"], s["std"], s["dtype"]
    (100.0, 0.0, 'uint8')
    """
    from scipy import ndimage

    from ._intensity import sample_values

    data, vs, _ = as_volume_array(image, "image", voxel_size=voxel_size)
    values = sample_values(data)
    p = np.percentile(values, [1, 5, 50, 95, 99])
    mid = np.asarray(data[data.shape[0] // 2]).astype(np.float64)
    side = min(512, *mid.shape)
    y0, x0 = (mid.shape[0] - side) // 2, (mid.shape[1] - side) // 2
    # Immerkaer's estimate (1996): a mask that cancels smooth image structure, leaving the noise
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    crop = mid[y0 : y0 + side, x0 : x0 + side]
    resp = np.abs(ndimage.convolve(crop, mask, mode="reflect"))[1:-1, 1:-1]
    noise = float(np.sqrt(np.pi / 2) * resp.sum() / (6.0 * resp.size)) if resp.size else 0.0
    spread = float(p[4] - p[0])
    return {
        "dtype": str(np.dtype(data.dtype)),
        "voxel_size_nm": list(vs) if vs is not None else None,
        "percentiles": {"1": p[0], "5": p[1], "50": p[2], "95": p[3], "99": p[4]},
        "mean": float(values.mean()),
        "std": float(values.std()),
        "contrast_1_99": spread,
        "noise_sigma": noise,
        "noise_over_contrast": noise / spread if spread > 0 else float("inf"),
    }


def label_free_scores(model, image, *, voxel_size=None, sections=None, max_sections: int = 8,
                      resample: bool = True, device="cpu") -> dict:
    """Signs of how well a model does on data without labels.

    - ``confidence``: mean top-class probability.
    - ``flip_agreement``: foreground IoU between the prediction and the prediction of the mirrored
      image, mirrored back. A model on familiar data gives the same answer either way; on data it
      does not understand its answers often wander.

    These are hints, not measurements: on the VNC -> FlyEM benchmark (``benchmarks/domain.py``, which
    prints both) neither ranked the adaptation methods as their true target IoU did. Score a few
    labelled target sections when you can.
    - ``foreground_fraction``: share of voxels labelled as any foreground class (compare with the source).

    Examples
    --------
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> img = np.random.default_rng(0).integers(0, 255, (2, 32, 32)).astype(np.uint8)
    >>> sorted(label_free_scores(model, img, voxel_size=(50, 5, 5)))
    ['confidence', 'flip_agreement', 'foreground_fraction', 'sections']
    """
    check_positive_int(max_sections, "max_sections")
    model = as_model(model)
    from ._device import resolve_device

    dev = resolve_device(device)
    x, picked, _ = load_sections(model, image, voxel_size=voxel_size, sections=sections,
                                 max_sections=max_sections, resample=resample)
    net = model.network.to(dev)
    p = softmax(run_2d(net, x, 4, dev)[:, : model.n_classes])
    pf = softmax(run_2d(net, np.ascontiguousarray(x[:, :, ::-1]), 4, dev)[:, : model.n_classes])[:, :, :, ::-1]
    a, b = p.argmax(1) > 0, pf.argmax(1) > 0
    union = np.logical_or(a, b).sum()
    return {
        "confidence": float(p.max(1).mean()),
        "flip_agreement": float(np.logical_and(a, b).sum() / union) if union else 1.0,
        "foreground_fraction": float(a.mean()),
        "sections": picked,
    }


@dataclass
class DomainGap:
    """What :func:`domain_gap` measured; ``advice`` says what to try, ``plot`` shows it."""

    source: dict
    target: dict
    zoom: float
    resampled: bool
    intensity_distance: float
    feature_mmd2: float
    proxy_a_distance: float
    source_scores: dict
    target_scores: dict
    advice: list = field(default_factory=list)
    _features: tuple = field(default=None, repr=False)
    _samples: tuple = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __str__(self):
        s, t = self.source, self.target
        rows = [
            ("voxel size (nm)", s["voxel_size_nm"], t["voxel_size_nm"]),
            ("grey-value median", round(s["percentiles"]["50"], 1), round(t["percentiles"]["50"], 1)),
            ("contrast (1-99 %)", round(s["contrast_1_99"], 1), round(t["contrast_1_99"], 1)),
            ("noise / contrast", round(s["noise_over_contrast"], 3), round(t["noise_over_contrast"], 3)),
            ("model confidence", round(self.source_scores["confidence"], 3), round(self.target_scores["confidence"], 3)),
            ("flip agreement", round(self.source_scores["flip_agreement"], 3),
             round(self.target_scores["flip_agreement"], 3)),
        ]
        lines = [f"{'':<20} {'source':>16} {'target':>16}"]
        lines += [f"{name:<20} {str(a):>16} {str(b):>16}" for name, a, b in rows]
        lines.append(f"in-plane zoom to the model's pixels: {self.zoom:.2f} ({'applied' if self.resampled else 'not applied'})")
        lines.append(f"normalised grey-value distance (Wasserstein): {self.intensity_distance:.3f}")
        lines.append(f"encoder features: MMD^2 {self.feature_mmd2:.3f}, proxy A-distance {self.proxy_a_distance:.2f} (0..2)")
        lines += [f"- {a}" for a in self.advice]
        return "\n".join(lines)

    def plot(self):
        return plot_domain_gap(self)


def domain_gap(model, source, target, *, source_voxel_size=None, target_voxel_size=None, resample: bool = False,
               n_patches: int = 96, patch: int = 128, max_sections: int = 12, device="cpu", seed: int = 0) -> DomainGap:
    """Compare a model's training data with a new dataset, without labels on either.

    Parameters
    ----------
    model : SegmentationModel or path
        A 2D model trained on ``source``.
    source, target : path, Volume or array (Z, Y, X)
    source_voxel_size, target_voxel_size : (z, y, x) nm, optional
        When the data does not carry them.
    resample : bool
        Measure after zooming the target to the model's pixel size (False: as a user would first run it).
    n_patches, patch : int
        Patches per domain for the feature distances.
    max_sections : int
        Sections per domain (evenly spaced).

    Returns
    -------
    DomainGap

    Examples
    --------
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> rng = np.random.default_rng(0)
    >>> src = rng.integers(0, 255, (4, 64, 64)).astype(np.uint8)
    >>> gap = domain_gap(model, src, src // 2 + 100, source_voxel_size=(50, 5, 5), target_voxel_size=(50, 10, 10),
    ...                  n_patches=10, patch=32)
    >>> round(gap.zoom, 2), gap.advice[0].split(":")[0]
    (2.0, 'resample')
    """
    check_positive_int(n_patches, "n_patches")
    check_positive_int(max_sections, "max_sections")
    check_positive_int(patch, "patch", minimum=16)
    model = as_model(model)
    from scipy.stats import wasserstein_distance

    from ._device import resolve_device

    if model.ndim != 2:
        raise ValueError("domain_gap compares sections: it needs a 2D model")
    dev = resolve_device(device)
    s_stats = intensity_stats(source, voxel_size=source_voxel_size)
    t_stats = intensity_stats(target, voxel_size=target_voxel_size)
    xs, _, _ = load_sections(model, source, voxel_size=source_voxel_size, max_sections=max_sections, resample=True)
    xt, _, zoom_t = load_sections(model, target, voxel_size=target_voxel_size, max_sections=max_sections,
                                  resample=resample)
    _, tvs, _ = as_volume_array(target, "target", voxel_size=target_voxel_size)
    zoom = zoom_factor(tvs, model.voxel_size)
    rng = np.random.default_rng(seed)
    sub = rng.choice(xs.size, min(xs.size, 200_000), replace=False)
    subt = rng.choice(xt.size, min(xt.size, 200_000), replace=False)
    intensity = float(wasserstein_distance(xs.ravel()[sub], xt.ravel()[subt]))
    net = model.network.to(dev)
    fs = pooled_features(net, xs, patch, n_patches, rng, dev)
    ft = pooled_features(net, xt, patch, n_patches, rng, dev)
    scale = fs.std(0) + 1e-6
    mmd = mmd2((fs - fs.mean(0)) / scale, (ft - fs.mean(0)) / scale)
    pad = proxy_a_distance(fs, ft, seed)
    ss = label_free_scores(model, source, voxel_size=source_voxel_size, max_sections=min(max_sections, 4), device=dev)
    ts = label_free_scores(model, target, voxel_size=target_voxel_size, max_sections=min(max_sections, 4),
                           resample=resample, device=dev)
    advice = []
    if abs(np.log(zoom)) > np.log(1.25):
        verb = "was" if resample else "needs to be"
        advice.append(f"resample: the target's pixels are {zoom:.2f}x the model's; the target {verb} zoomed to the "
                      "model's pixel size (vemkit.domain.resample_sections), the first thing to fix")
    if intensity > 0.1:
        advice.append(f"histogram: the normalised grey values differ (distance {intensity:.2f}); try "
                      "match_histogram / adapt --method histogram")
    if pad > 1.0:
        advice.append(f"features: the encoder tells the domains apart (proxy A-distance {pad:.2f} of 2); try "
                      "adapt_batchnorm, then vemkit.adapt (ynet or dann), or fine-tune on a few labelled target sections")
    drop = ss["flip_agreement"] - ts["flip_agreement"]
    if drop > 0.1:
        advice.append(f"predictions: flip agreement falls from {ss['flip_agreement']:.2f} on the source to "
                      f"{ts['flip_agreement']:.2f} on the target: expect a clearly worse segmentation there")
    if not advice:
        advice.append("no large gap found: the model should carry over; check a few target sections by eye")
    return DomainGap(s_stats, t_stats, zoom, bool(resample), intensity, mmd, pad, ss, ts, advice,
                     _features=(fs, ft), _samples=(xs.ravel()[sub], xt.ravel()[subt]))


def plot_domain_gap(gap: DomainGap):
    """Three panels: normalised grey-value histograms, encoder features of both domains in their
    first two principal components, and the label-free scores side by side.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    xs, xt = gap._samples
    bins = np.linspace(min(np.percentile(xs, 0.5), np.percentile(xt, 0.5)),
                       max(np.percentile(xs, 99.5), np.percentile(xt, 99.5)), 80)
    axes[0].hist(xs, bins, density=True, alpha=0.6, label="source")
    axes[0].hist(xt, bins, density=True, alpha=0.6, label="target")
    axes[0].set(title=f"model input grey values (distance {gap.intensity_distance:.2f})", xlabel="normalised value")
    axes[0].legend()
    fs, ft = gap._features
    mu, sd = fs.mean(0), fs.std(0) + 1e-6
    z = np.concatenate([(fs - mu) / sd, (ft - mu) / sd])
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    pcs = (z - z.mean(0)) @ vt[:2].T
    axes[1].scatter(*pcs[: len(fs)].T, s=10, alpha=0.7, label="source")
    axes[1].scatter(*pcs[len(fs):].T, s=10, alpha=0.7, label="target")
    axes[1].set(title=f"encoder features (proxy A-distance {gap.proxy_a_distance:.2f} of 2)", xlabel="PC 1", ylabel="PC 2")
    axes[1].legend()
    names = ["confidence", "flip_agreement", "foreground_fraction"]
    pos = np.arange(len(names))
    axes[2].bar(pos - 0.2, [gap.source_scores[n] for n in names], 0.4, label="source")
    axes[2].bar(pos + 0.2, [gap.target_scores[n] for n in names], 0.4, label="target")
    axes[2].set_xticks(pos, ["confidence", "flip\nagreement", "foreground\nfraction"])
    axes[2].set(title="label-free scores of the model", ylim=(0, 1))
    axes[2].legend()
    fig.tight_layout()
    return fig
