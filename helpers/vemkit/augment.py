"""Training-time data augmentation for EM segmentation networks, batched, on CPU or GPU tensors.

An :class:`Augmenter` takes a batch ``image (N, C, *spatial)`` (float), ``labels (N, *spatial)``
(integer sparse annotations: 0 = unlabelled, 1 = background, 2.. = classes) and optional extra float
targets ``(N, K, *spatial)`` (distance maps, ...) and applies a random subset of augmentations to each
sample, on whatever device the tensors live. ``spatial`` is ``(Y, X)`` for 2D patches and ``(Z, Y, X)``
for 3D patches. What each augmentation does, in the order they run:

- spatial, exact: flips along every axis (z included) and 90-degree rotations in the y-x plane (in any
  axis plane when ``isotropic=True``); a quarter turn needs a square plane, a non-square plane gets a
  half turn instead;
- spatial, resampled: in-plane rotation, zoom, elastic deformation and section misalignment are composed
  into one sampling grid and applied with one :func:`torch.nn.functional.grid_sample` pass (bilinear for
  the image and the extras, nearest for the labels), so the image is interpolated once, not once per
  transform. A voxel whose source lies outside the patch gets label 0 (ignored by every loss), so the
  network is never trained on invented content; the image there is filled by reflection (or border);
- intensity (image only): brightness, contrast, gamma (on the image rescaled to its own min/max, then
  back), in-plane Gaussian blur (separable convolution), per-section EM defects, additive Gaussian noise,
  contrast inversion (off unless asked for);
- EM defects of a section (2D patches, and each z-section of a 3D patch): uneven illumination or
  charging (a smooth additive field), curtaining or knife-chatter stripes (every row or column shifted
  by its own amount) and folds (a dark band along a random line, its labels set to 0); all off by
  default, on in :meth:`AugmentConfig.pretraining`;
- EM defects (3D patches only, each with a probability *per z-section*): a missing section (its image
  replaced by the patch mean, labels untouched), a low-contrast section (contrast strongly reduced), and a
  misaligned section: either every section from k onward ("step") or section k alone ("slip") shifted in
  y/x by a few whole pixels, with labels and extras shifted identically so they stay aligned and the
  uncovered strip set to label 0.

In 3D the z axis may be much coarser than y/x (anisotropic ssTEM): rotation, zoom and elastic
deformation then act in-plane only and z never mixes between sections. With ``isotropic=True`` (FIB-SEM
at isotropic voxels) zoom and elastic deformation also act along z and 90-degree rotations may use any
axis plane. Brightness, noise and the like are in units of each sample's own intensity standard
deviation, so the same config works for images in [0, 1], [0, 255] or z-scored.

Every random number comes from a CPU :class:`torch.Generator` (the parameters, the elastic control
points and the noise field), so one seed gives the same result on every device. Each augmentation draws
from its own stream, so changing one probability leaves the others' draws unchanged.

Not for: making the training targets (boundaries, affinities, distance maps: compute direction-dependent
targets *after* augmentation; extras are resampled as scalar fields and not rescaled by a zoom),
normalising intensities, sampling patches from a volume, or test-time augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ._augment_ops import State, flip, intensity, resample, rot90
from ._colours import LABEL_PALETTE

__all__ = ["AugmentConfig", "Augmenter", "preview"]

_PADDINGS = ("reflection", "border")

# Each augmentation draws from its own generator, seeded from the caller's generator in this order.
_STREAMS = (
    "flip", "rot90", "rotate", "scale", "elastic", "misalign", "brightness", "contrast", "gamma",
    "blur", "low_contrast", "missing_section", "noise", "invert", "shading", "stripes", "fold",
)  # fmt: skip  (new streams go last: the others keep their draws for a given seed)


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations fire, how often and how strongly.

    Every ``float`` without a suffix is a probability in [0, 1]: per sample, except ``flip`` (per axis)
    and the EM defects: ``missing_section``, ``misalign`` and ``low_contrast`` per z-section of a 3D
    patch (skipped for 2D patches); ``shading``, ``stripes`` and ``fold`` per 2D patch, or per
    z-section of a 3D patch.

    Parameters
    ----------
    flip : float
        Flip along each spatial axis (z included) independently with this probability.
    rot90 : float
        Rotate by a random multiple of 90 degrees (y-x plane; any plane when isotropic).
    rotate, rotate_max : float
        In-plane rotation by an angle uniform in ``[-rotate_max, rotate_max]`` degrees. With ``rot90``
        and ``flip`` on, 45 degrees reaches every angle.
    scale, scale_range : float, (float, float)
        Zoom by a factor drawn log-uniformly from ``scale_range`` (> 1 magnifies); in-plane unless
        isotropic.
    elastic, elastic_strength, elastic_spacing : float, float, int
        Elastic deformation: random displacements (standard deviation ``elastic_strength`` pixels) at
        control points every ``elastic_spacing`` voxels, interpolated smoothly (bicubic in-plane, linear
        along z). Displacements are in-plane unless isotropic.
    padding : {"reflection", "border"}
        How the image (and extras) are filled where a resampled voxel comes from outside the patch;
        labels there are always 0.
    brightness, brightness_range : float, float
        Add a shift uniform in ``[-brightness_range, brightness_range]`` image standard deviations.
    contrast, contrast_range : float, (float, float)
        Scale deviations from the mean by a factor drawn log-uniformly from ``contrast_range``.
    gamma, gamma_range : float, (float, float)
        Gamma correction with an exponent drawn log-uniformly from ``gamma_range``, applied to the image
        rescaled to its own [min, max] and mapped back.
    blur, blur_range : float, (float, float)
        In-plane Gaussian blur with sigma (pixels) uniform in ``blur_range``.
    noise, noise_range : float, (float, float)
        Additive Gaussian noise with standard deviation uniform in ``noise_range`` image standard
        deviations.
    missing_section : float
        Per z-section: replace the section's image by the patch mean (labels untouched).
    misalign, misalign_max_shift, misalign_slip : float, int, float
        Per z-section: shift the image, labels and extras by up to ``misalign_max_shift`` whole pixels in
        y/x; with probability ``misalign_slip`` only that section moves ("slip"), otherwise it and all
        later sections move ("step"). Uncovered voxels get label 0.
    low_contrast, low_contrast_range : float, (float, float)
        Per z-section: scale the section's contrast about its mean by a factor uniform in
        ``low_contrast_range``.
    shading, shading_strength : float, (float, float)
        Uneven illumination or charging: add a smooth field (bicubic from 3 x 3 random control values,
        peak amplitude uniform in ``shading_strength`` image standard deviations) to a section.
    stripes, stripes_strength : float, (float, float)
        Curtaining (FIB-SEM) or knife chatter: every row, or every column, of a section shifted by
        its own random amount (standard deviation uniform in ``stripes_strength`` image standard
        deviations).
    fold, fold_width : float, (float, float)
        A section fold or crack: a dark band of width uniform in ``fold_width`` pixels along a random
        line; the content under it is lost, so its labels become 0 (ignored by every loss).
    invert : float
        Contrast inversion (``min + max - image`` per sample), last: for microscopes whose detector
        shows membranes bright (off by default; pretraining for many microscopes turns it on).

    Examples
    --------
    >>> cfg = AugmentConfig.default()
    >>> cfg == AugmentConfig(), cfg.flip, cfg.rotate_max
    (True, 0.5, 45.0)
    >>> AugmentConfig.none().any()
    False
    >>> light = AugmentConfig.light()
    >>> [name for name in AugmentConfig.probabilities() if getattr(light, name) > 0]
    ['flip', 'rot90', 'brightness', 'contrast', 'noise']
    >>> AugmentConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> AugmentConfig(rotate=1.0, rotate_max=180).rotate_max
    180.0
    """

    flip: float = 0.5
    rot90: float = 0.5
    rotate: float = 0.25
    rotate_max: float = 45.0
    scale: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.15)
    elastic: float = 0.25
    elastic_strength: float = 3.0
    elastic_spacing: int = 32
    padding: str = "reflection"
    brightness: float = 0.5
    brightness_range: float = 0.2
    contrast: float = 0.5
    contrast_range: tuple[float, float] = (0.75, 1.33)
    gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    blur: float = 0.15
    blur_range: tuple[float, float] = (0.5, 1.5)
    noise: float = 0.2
    noise_range: tuple[float, float] = (0.02, 0.15)
    missing_section: float = 0.02
    misalign: float = 0.02
    misalign_max_shift: int = 6
    misalign_slip: float = 0.5
    low_contrast: float = 0.02
    low_contrast_range: tuple[float, float] = (0.1, 0.3)
    shading: float = 0.0
    shading_strength: tuple[float, float] = (0.2, 1.0)
    stripes: float = 0.0
    stripes_strength: tuple[float, float] = (0.05, 0.3)
    fold: float = 0.0
    fold_width: tuple[float, float] = (2.0, 8.0)
    invert: float = 0.0

    @staticmethod
    def probabilities() -> tuple[str, ...]:
        """Names of the probability fields, one per augmentation, in the order they run."""
        return (
            "flip", "rot90", "rotate", "scale", "elastic", "misalign", "brightness", "contrast",
            "gamma", "blur", "shading", "stripes", "fold", "low_contrast", "missing_section", "noise",
            "invert",
        )  # fmt: skip

    def __post_init__(self):
        def number(name, value, lo=None, hi=None, integer=False):
            try:
                v = int(value) if integer else float(value)
            except (TypeError, ValueError):
                raise ValueError(f"AugmentConfig.{name} must be a number, got {value!r}") from None
            if integer and v != value:
                raise ValueError(f"AugmentConfig.{name} must be a whole number, got {value!r}")
            if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
                bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"AugmentConfig.{name} must be {bounds}, got {value!r}")
            object.__setattr__(self, name, v)

        for name in self.probabilities():
            number(name, getattr(self, name), 0.0, 1.0)
        number("misalign_slip", self.misalign_slip, 0.0, 1.0)
        number("rotate_max", self.rotate_max, 0.0, 180.0)
        number("elastic_strength", self.elastic_strength, 0.0)
        number("elastic_spacing", self.elastic_spacing, 2, integer=True)
        number("brightness_range", self.brightness_range, 0.0)
        number("misalign_max_shift", self.misalign_max_shift, 1, integer=True)
        for name, lo, positive in (
            ("scale_range", 0.0, True), ("contrast_range", 0.0, True), ("gamma_range", 0.0, True),
            ("blur_range", 0.0, True), ("noise_range", 0.0, False), ("low_contrast_range", 0.0, False),
            ("shading_strength", 0.0, False), ("stripes_strength", 0.0, False), ("fold_width", 0.0, True),
        ):  # fmt: skip
            value = getattr(self, name)
            try:
                a, b = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"AugmentConfig.{name} must be a pair (low, high), got {value!r}") from None
            if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < lo or (positive and a <= 0):
                kind = "positive" if positive else "non-negative"
                raise ValueError(f"AugmentConfig.{name} must be {kind} numbers with low <= high, got {value!r}")
            object.__setattr__(self, name, (a, b))
        padding = str(self.padding).lower()
        if padding not in _PADDINGS:
            raise ValueError(f"AugmentConfig.padding must be 'reflection' or 'border', got {self.padding!r}")
        object.__setattr__(self, "padding", padding)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """Every probability 0: the augmenter returns copies of its inputs (for validation batches)."""
        return cls(**{name: 0.0 for name in cls.probabilities()})

    @classmethod
    def light(cls) -> "AugmentConfig":
        """Exact spatial transforms (flips, 90-degree rotations), mild brightness/contrast and noise."""
        off = {name: 0.0 for name in cls.probabilities()}
        return cls(**{
            **off, "flip": 0.5, "rot90": 0.5, "brightness": 0.3, "brightness_range": 0.1, "contrast": 0.3,
            "contrast_range": (0.85, 1.18), "noise": 0.1, "noise_range": (0.02, 0.08),
        })  # fmt: skip

    @classmethod
    def pretraining(cls, invert: float = 0.0) -> "AugmentConfig":
        """Strong augmentation for base models meant for microscopes they never saw: pixel size
        0.6-1.6x, wide contrast and gamma, blur, noise, section defects (uneven illumination,
        curtaining / knife-chatter stripes, folds), optional contrast inversion.

        Examples
        --------
        >>> AugmentConfig.pretraining().scale_range, AugmentConfig.pretraining(invert=0.1).invert
        ((0.6, 1.6), 0.1)
        """
        return cls(scale=0.6, scale_range=(0.6, 1.6), rotate=0.3, elastic=0.25, brightness=0.5,
                   brightness_range=0.3, contrast=0.6, contrast_range=(0.5, 2.0), gamma=0.5,
                   gamma_range=(0.5, 2.0), blur=0.3, blur_range=(0.5, 2.0), noise=0.4,
                   noise_range=(0.02, 0.3), shading=0.3, stripes=0.15, fold=0.05, invert=invert)

    @classmethod
    def default(cls) -> "AugmentConfig":
        """The defaults: everything on, at strengths typical for EM fine-tuning (the field defaults)."""
        return cls()

    def any(self) -> bool:
        """Whether any augmentation can fire."""
        return any(getattr(self, name) > 0 for name in self.probabilities())

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d) -> "AugmentConfig":
        """Rebuild a config from :meth:`to_dict` output (missing keys take their defaults)."""
        if isinstance(d, AugmentConfig):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"AugmentConfig.from_dict needs a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"AugmentConfig.from_dict: unknown key(s) {sorted(unknown)}; expected any of "
                             f"{', '.join(sorted(known))}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


# ----------------------------------------------------------------------------------------- augmenter


class Augmenter:
    """Apply a random subset of augmentations to each sample of a batch.

    Parameters
    ----------
    config : AugmentConfig or dict, optional
        What to apply (default :meth:`AugmentConfig.default`); a dict goes through
        :meth:`AugmentConfig.from_dict`.
    ndim : {2, 3}
        Spatial dimensions of the patches: ``(Y, X)`` or ``(Z, Y, X)``.
    isotropic : bool
        3D only: z has the same resolution as y/x, so zoom and elastic deformation also act along z and
        90-degree rotations may turn any axis plane. Default False (anisotropic: in-plane only).

    Call it as ``image, labels, extras = augmenter(image, labels, extras=None, generator=None)``:

    image : float tensor of shape (N, C, *spatial)
    labels : integer tensor of shape (N, *spatial)
        0 = unlabelled/ignored, 1 = background, 2.. = classes. Voxels that a spatial transform brings
        in from outside the patch become 0.
    extras : float tensor of shape (N, K, *spatial), optional
        Further per-voxel targets that move with the labels (spatial transforms only), resampled
        bilinearly as scalar fields.
    generator : torch.Generator (CPU) or int, optional
        Source of randomness (an int is a seed); default: a generator seeded from torch's global RNG.

    It returns new tensors on the inputs' device, in their dtypes (``extras`` is None when none were
    given); the inputs are never modified.

    Examples
    --------
    >>> import torch
    >>> aug = Augmenter(AugmentConfig(rotate=1.0, elastic=1.0), ndim=2)
    >>> labels = torch.ones(4, 64, 64, dtype=torch.int64)
    >>> labels[:, 20:40, 20:40] = 2
    >>> image = labels[:, None].float() * 40
    >>> out_image, out_labels, _ = aug(image, labels, generator=torch.Generator().manual_seed(0))
    >>> out_image.shape, out_labels.shape, out_labels.dtype
    (torch.Size([4, 1, 64, 64]), torch.Size([4, 64, 64]), torch.int64)
    >>> sorted(out_labels.unique().tolist())  # 0: came from outside the patch
    [0, 1, 2]
    >>> again, _, _ = aug(image, labels, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(again, out_image)
    True
    """

    def __init__(self, config=None, ndim: int = 2, isotropic: bool = False):
        if config is None:
            config = AugmentConfig()
        elif isinstance(config, dict):
            config = AugmentConfig.from_dict(config)
        elif not isinstance(config, AugmentConfig):
            raise ValueError(f"config must be an AugmentConfig or a dict, got {type(config).__name__}")
        if ndim not in (2, 3) or isinstance(ndim, bool):
            raise ValueError(f"ndim must be 2 (Y, X patches) or 3 (Z, Y, X patches), got {ndim!r}")
        self.config = config
        self.ndim = int(ndim)
        self.isotropic = bool(isotropic)

    def __repr__(self):
        return f"Augmenter(ndim={self.ndim}, isotropic={self.isotropic}, config={self.config!r})"

    # ---------------------------------------------------------------------------------------- inputs

    def _check(self, torch, image, labels, extras):
        nd = self.ndim
        axes = "(N, C, Y, X)" if nd == 2 else "(N, C, Z, Y, X)"
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"image must be a torch.Tensor of shape {axes}, got {type(image).__name__}")
        if image.dim() != nd + 2:
            hint = " (add a channel axis with image[:, None])" if image.dim() == nd + 1 else ""
            raise ValueError(f"image must have shape {axes} for ndim={nd}, got shape {tuple(image.shape)}{hint}")
        if not image.is_floating_point():
            raise ValueError(f"image must be a floating-point tensor, got dtype {image.dtype} (use image.float())")
        spatial = tuple(image.shape[2:])
        lab_axes = "(N, Y, X)" if nd == 2 else "(N, Z, Y, X)"
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels must be a torch.Tensor of shape {lab_axes}, got {type(labels).__name__}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be an integer tensor (0 = unlabelled, 1 = background, 2.. = classes), "
                f"got dtype {labels.dtype}"
            )
        expected = (image.shape[0],) + spatial
        if tuple(labels.shape) != expected:
            raise ValueError(
                f"labels must have shape {lab_axes} = {expected} to match image {tuple(image.shape)}, "
                f"got shape {tuple(labels.shape)}"
            )
        if labels.device != image.device:
            raise ValueError(f"labels are on {labels.device} but image is on {image.device}")
        if extras is not None:
            ext_axes = "(N, K, Y, X)" if nd == 2 else "(N, K, Z, Y, X)"
            if not isinstance(extras, torch.Tensor):
                raise ValueError(f"extras must be a torch.Tensor of shape {ext_axes} or None, "
                                 f"got {type(extras).__name__}")
            if not extras.is_floating_point():
                raise ValueError(f"extras must be a floating-point tensor, got dtype {extras.dtype}")
            if extras.dim() != nd + 2 or extras.shape[0] != image.shape[0] or tuple(extras.shape[2:]) != spatial:
                raise ValueError(
                    f"extras must have shape {ext_axes} with N and the spatial shape of image "
                    f"{tuple(image.shape)}, got shape {tuple(extras.shape)}"
                )
            if extras.device != image.device:
                raise ValueError(f"extras are on {extras.device} but image is on {image.device}")

    @staticmethod
    def _generator(torch, generator):
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            return torch.Generator().manual_seed(seed)
        if isinstance(generator, bool):
            raise ValueError(f"generator must be a CPU torch.Generator, an int seed or None, got {generator!r}")
        if isinstance(generator, int):
            return torch.Generator().manual_seed(generator)
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a CPU torch.Generator, an int seed or None, "
                             f"got {type(generator).__name__}")
        if generator.device.type != "cpu":
            raise ValueError(f"generator must live on the CPU (parameters are drawn there so that results "
                             f"do not depend on the device), got one on {generator.device}")
        return generator

    # ------------------------------------------------------------------------------------------ call

    def __call__(self, image, labels, extras=None, generator=None):
        import torch

        self._check(torch, image, labels, extras)
        g = self._generator(torch, generator)
        seeds = torch.randint(0, 2**62, (len(_STREAMS),), generator=g).tolist()
        gens = {name: torch.Generator().manual_seed(int(s)) for name, s in zip(_STREAMS, seeds)}

        work = torch.float64 if image.dtype == torch.float64 else torch.float32
        st = State(
            torch=torch,
            img=image.to(work, copy=True),
            lab=labels.clone(),
            ext=None if extras is None else extras.to(work, copy=True),
            gens=gens,
            cfg=self.config,
            nd=self.ndim,
            iso=self.isotropic and self.ndim == 3,
        )
        if st.n > 0 and self.config.any():
            flip(st)
            rot90(st)
            resample(st)
            intensity(st)
        ext = None if extras is None else st.ext.to(extras.dtype)
        return st.img.to(image.dtype), st.lab, ext


# ------------------------------------------------------------------------------------------- preview


def preview(image, labels, config=None, n: int = 8, seed: int = 0, *, isotropic: bool = False):
    """Show ``n`` augmented versions of a patch with its labels outlined: what the network sees.

    Parameters
    ----------
    image : array of shape (Y, X) or (Z, Y, X)
        One patch (numpy, torch or any array-like); a 3D patch is augmented in 3D (section defects
        included) and its middle section is shown.
    labels : integer array of the same shape
        0 = unlabelled, 1 = background, 2.. = classes. Each labelled region is outlined in its class
        colour; regions without an outline are ignored in training (including voxels brought in from
        outside the patch).
    config : AugmentConfig or dict, optional
        Default :meth:`AugmentConfig.default`.
    n : int
        Number of augmented versions (the first panel shows the original).
    seed : int
        Seed of the random draws: the same seed shows the same versions.
    isotropic : bool
        3D only: see :class:`Augmenter`.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot: display it as a cell's last expression or ``fig.savefig(path)``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.ones((64, 64), dtype=np.int64)
    >>> labels[16:40, 20:44] = 2
    >>> fig = preview(labels * 50.0, labels, n=5)
    >>> len(fig.axes)
    6
    """
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    img = np.asarray(image)
    lab = np.asarray(labels)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be one patch of shape (Y, X) or (Z, Y, X), got shape {img.shape}")
    if lab.shape != img.shape:
        raise ValueError(f"labels must have the shape of image {img.shape}, got shape {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (0 = unlabelled, 1 = background, 2.. = classes), "
                         f"got dtype {lab.dtype}")
    if img.dtype.kind not in "iuf":
        raise ValueError(f"image must be numeric, got dtype {img.dtype}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    aug = Augmenter(config, ndim=img.ndim, isotropic=isotropic)
    t_img = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t_lab = torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64))
    batch_img = t_img[None, None].expand(n, 1, *img.shape).contiguous()
    batch_lab = t_lab[None].expand(n, *lab.shape).contiguous()
    out_img, out_lab, _ = aug(batch_img, batch_lab, generator=torch.Generator().manual_seed(int(seed)))
    sections = [(img, lab)] + [(out_img[i, 0].numpy(), out_lab[i].numpy()) for i in range(n)]
    if img.ndim == 3:
        mid = img.shape[0] // 2
        sections = [(a[mid], b[mid]) for a, b in sections]
    finite = img[np.isfinite(img)] if img.dtype.kind == "f" else img
    vmin, vmax = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1

    panels = len(sections)
    ncols = math.ceil(math.sqrt(panels))
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.6 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= panels:
            ax.remove()
            continue
        a, b = sections[i]
        ax.imshow(a, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.imshow(_outline(b), interpolation="nearest")
        ax.set_title("original" if i == 0 else f"augmented {i}", fontsize=9)
        ax.set_axis_off()
    where = f"middle section (z = {img.shape[0] // 2}) of a 3D patch" if img.ndim == 3 else "2D patch"
    fig.suptitle(f"What the network sees: {n} augmented versions of a {where}; labels outlined, "
                 f"no outline = ignored", fontsize=9)
    return fig


def _outline(lbl):
    """RGBA image of the labelled regions' edges, each in its class colour (0 = unlabelled: none)."""
    import numpy as np
    from matplotlib.colors import to_rgba

    edge = np.zeros(lbl.shape, dtype=bool)
    edge[:-1] |= lbl[:-1] != lbl[1:]
    edge[1:] |= lbl[1:] != lbl[:-1]
    edge[:, :-1] |= lbl[:, :-1] != lbl[:, 1:]
    edge[:, 1:] |= lbl[:, 1:] != lbl[:, :-1]
    edge &= lbl != 0
    rgba = np.zeros(lbl.shape + (4,), dtype=np.float32)
    for value in np.unique(lbl[edge]):
        rgba[edge & (lbl == value)] = to_rgba(LABEL_PALETTE[(int(value) - 1) % len(LABEL_PALETTE)])
    return rgba
