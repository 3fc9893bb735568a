"""Unsupervised domain adaptation: carry a model to a new microscope without labelling the new data.

:func:`adapt` continues training a 2D model on its labelled source data while it also sees unlabelled
target images, by one of two methods the field uses:

- ``"ynet"``: a second decoder reconstructs the input image from the shared encoder's bottleneck, for
  source and target images alike, so the encoder must keep describing the target instead of only what
  the source labels reward (Roels et al., "Domain adaptive segmentation in volume electron microscopy
  imaging", ISBI 2019). :class:`ReconstructionDecoder`.
- ``"dann"``: a domain classifier tries to tell source from target features through a gradient-reversal
  layer, so the network learns features the classifier cannot tell apart (Ganin et al., "Domain-adversarial
  training of neural networks", JMLR 2016). :class:`GradientReversal`, :class:`DomainClassifier`.

and two that need no training (:mod:`vemkit.domain`): ``"histogram"`` (the model maps every volume's
grey values onto its training data's) and ``"adabn"`` (BatchNorm statistics re-estimated on the target).
The result is a normal model directory for :func:`vemkit.predict.predict_volume`. Targets at another
pixel size are zoomed to the model's for training; predict on a volume zoomed the same way
(:func:`vemkit.domain.resample_sections`).

Not for: fine-tuning with target labels (:func:`vemkit.train.finetune` with the source model as ``base``).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn

from . import __version__
from ._annotation_input import annotation_array
from ._basemodels import holds_model, output_directory
from ._device import resolve_device
from ._inputs import as_volume_array
from ._losses import masked_losses
from ._sections import as_model, replace_network, with_voxel_size, zoom2d
from ._checks import check_nonnegative, check_positive, check_positive_int
from ._trainloop import TrainLoop, check_budget, run_environment
from .augment import AugmentConfig, Augmenter
from .domain import adapt_batchnorm, histogram_normalization, load_sections
from .models import ConvBlock

__all__ = ["METHODS", "DomainClassifier", "GradientReversal", "ReconstructionDecoder", "adapt", "grad_reverse"]

#: What :func:`adapt` can do.
METHODS = {
    "ynet": "train on, with a decoder reconstructing source and target images from the shared encoder",
    "dann": "train on, with a domain classifier behind a gradient-reversal layer",
    "histogram": "no training: map each volume's grey-value histogram onto the source's",
    "adabn": "no training: re-estimate BatchNorm statistics on the target",
}


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, strength):
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.strength * grad, None


def grad_reverse(x, strength: float = 1.0):
    """Identity on the way forward; the gradient times ``-strength`` on the way back.

    Examples
    --------
    >>> x = torch.ones(3, requires_grad=True)
    >>> (grad_reverse(x, 0.5) * 2).sum().backward()
    >>> x.grad.tolist()
    [-1.0, -1.0, -1.0]
    """
    return _ReverseGrad.apply(x, float(strength))


class GradientReversal(nn.Module):
    """:func:`grad_reverse` as a layer; set ``strength`` while training (DANN ramps it up from 0).

    Examples
    --------
    >>> layer = GradientReversal(2.0)
    >>> x = torch.ones(2, requires_grad=True)
    >>> layer(x).sum().backward()
    >>> x.grad.tolist()
    [-2.0, -2.0]
    """

    def __init__(self, strength: float = 1.0):
        super().__init__()
        self.strength = float(strength)

    def forward(self, x):
        return grad_reverse(x, self.strength)


class ReconstructionDecoder(nn.Module):
    """Y-Net's second decoder: the image back from a U-Net's bottleneck alone.

    No skip connections: through them the image could be copied without the encoder describing it.
    It mirrors the U-Net's segmentation decoder (same levels, kernels and channels) and ends in one
    linear output channel.

    Parameters
    ----------
    unet : vemkit.models.UNet

    Examples
    --------
    >>> from vemkit.models import UNet
    >>> net = UNet(ndim=2, base_channels=4, depth=2)
    >>> dec = ReconstructionDecoder(net)
    >>> dec(net.encode(torch.zeros(1, 1, 32, 32))[-1]).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(self, unet):
        super().__init__()

        ndim, ch, pools, kernels = unet.ndim, unet.channels, unet.pools, unet.kernels
        ConvT = nn.ConvTranspose3d if ndim == 3 else nn.ConvTranspose2d
        Conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        layers = []
        for level in reversed(range(len(pools))):
            layers.append(ConvT(ch[level + 1], ch[level], pools[level], stride=pools[level]))
            layers.append(ConvBlock(ndim, ch[level], ch[level], kernels[level], False))
        layers.append(Conv(ch[0], unet.in_channels, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, bottleneck):
        return self.layers(bottleneck)


class DomainClassifier(nn.Module):
    """Tells source (0) from target (1) per region of a feature map: three strided convolutions and a
    1x1 output, so every output pixel judges a neighbourhood (no BatchNorm: its statistics would mix
    the domains the classifier is asked to separate).

    Examples
    --------
    >>> DomainClassifier(8)(torch.zeros(2, 8, 32, 32)).shape
    torch.Size([2, 1, 4, 4])
    """

    def __init__(self, in_channels: int, width: int = 64, ndim: int = 2):
        super().__init__()
        Conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        self.layers = nn.Sequential(
            Conv(in_channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            Conv(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            Conv(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            Conv(width, 1, 1),
        )

    def forward(self, x):
        return self.layers(x)


# ------------------------------------------------------------------------------------------- data
def _source_sections(model, source, annotations, voxel_size, max_sections):
    """Annotated source sections at the model's pixel size: image (normalised) and labels (-1 = none)."""
    data, vs, _ = as_volume_array(source, "source", voxel_size=voxel_size)
    ann, _, _ = annotation_array(annotations)
    if tuple(ann.shape) != tuple(data.shape):
        raise ValueError(f"source annotations have shape {tuple(ann.shape)} but the source image {tuple(data.shape)}")
    annotated = [z for z in range(ann.shape[0]) if np.asarray(ann[z]).any()]
    if not annotated:
        raise ValueError("the source annotations are empty: adaptation needs labelled source sections")
    if len(annotated) > max_sections:
        annotated = [annotated[i] for i in np.linspace(0, len(annotated) - 1, max_sections).round().astype(int)]
    x, picked, factor = load_sections(model, data if vs is None else with_voxel_size(data, vs), sections=annotated)
    labels = []
    for z in picked:
        lab = np.asarray(ann[z]).astype(np.int16) - 1
        labels.append(zoom2d(lab, factor, order=0, shape=x.shape[1:]).astype(np.int16))
    labels = np.stack(labels)
    if labels.max() >= model.n_classes:
        raise ValueError(f"source annotations hold value {int(labels.max()) + 1} but the model has {model.n_classes} "
                         f"classes ({', '.join(model.classes)}: values 1..{model.n_classes})")
    return x, labels, picked


def _patches(x, labels, n, patch, rng):
    S, H, W = x.shape
    imgs = np.empty((n, 1, patch, patch), np.float32)
    labs = np.full((n, patch, patch), -1, np.int64)
    for i in range(n):
        s = int(rng.integers(S))
        y0, x0 = int(rng.integers(0, H - patch + 1)), int(rng.integers(0, W - patch + 1))
        imgs[i, 0] = x[s, y0 : y0 + patch, x0 : x0 + patch]
        if labels is not None:
            labs[i] = labels[s, y0 : y0 + patch, x0 : x0 + patch]
    return imgs, labs


# --------------------------------------------------------------------------------------- training
def _check_numbers(method, minutes, iterations, patch, batch_size, lr, reconstruction_weight, domain_weight,
                   max_sections):
    """Every numeric keyword of :func:`adapt`, before any work (a NaN budget would never end a run)."""
    if method in ("ynet", "dann"):
        check_budget(minutes, iterations)
    check_positive_int(patch, "patch", minimum=16)
    check_positive_int(batch_size, "batch_size")
    check_positive_int(max_sections, "max_sections")
    check_positive(lr, "lr")
    check_nonnegative(reconstruction_weight, "reconstruction_weight")
    check_nonnegative(domain_weight, "domain_weight")


def adapt(model, source, source_annotations, target, *, method: str = "ynet", out=None, minutes: float | None = None,
          iterations: int | None = None, source_voxel_size=None, target_voxel_size=None, patch: int = 256,
          batch_size: int = 4, lr: float = 2e-4, reconstruction_weight: float = 5.0, domain_weight: float = 0.3,
          max_sections: int = 32, refresh_batchnorm: bool = True, device="auto", seed: int = 0,
          overwrite: bool = False, progress: bool = True, amp="auto"):
    """Adapt a 2D model to a target dataset without target labels.

    Parameters
    ----------
    model : SegmentationModel or path
        Trained on ``source`` (e.g. by :func:`vemkit.train.finetune`); not changed.
    source : path, Volume or array (Z, Y, X)
        The labelled data the model was trained on.
    source_annotations : Annotations, path or integer array
        0 = unlabelled, 1 = background, 2.. = the model's classes (as for training). Only
        ``ynet``/``dann`` use them.
    target : path, Volume or array (Z, Y, X)
        The new data; no labels.
    method : {"ynet", "dann", "histogram", "adabn"}
        See :data:`METHODS`.
    out : str or Path, optional
        Model directory to write.
    minutes, iterations : budget
        For ``ynet`` and ``dann`` (at least one).
    source_voxel_size, target_voxel_size : (z, y, x) nm, optional
        When the data does not carry them. A target at another pixel size is zoomed to the model's.
    patch, batch_size : int
        Square patches; each step sees ``batch_size`` source and ``batch_size`` target patches.
    lr : float
        AdamW learning rate (poly decay).
    reconstruction_weight : float
        Y-Net: weight of the reconstruction loss (mean squared error of the normalised image).
    domain_weight : float
        DANN: final strength of the reversed gradient (ramped up as 2 / (1 + exp(-10 p)) - 1).
    max_sections : int
        Sections loaded per domain (evenly spaced).
    refresh_batchnorm : bool
        ``ynet``/``dann``: source and target patches pass the network separately, so BatchNorm
        normalises each domain with its own statistics while training; at the end the statistics are
        re-estimated on the target (:func:`vemkit.domain.adapt_batchnorm`), which is what the adapted
        model then uses.
    device, seed, overwrite, progress
        As for :func:`vemkit.train.finetune`.
    amp : "auto", "bf16", "fp16" or False
        Mixed precision for ``ynet``/``dann``, as in :func:`vemkit.train.finetune`.

    Returns
    -------
    SegmentationModel
        ``training["adaptation"]`` records the method, data, budget and loss history.

    Raises
    ------
    ValueError
        Unknown method, a 3D model, no budget, empty source annotations, a target without voxel size
        while the model has one.

    Examples
    --------
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> rng = np.random.default_rng(0)
    >>> src = rng.integers(0, 255, (3, 64, 64)).astype(np.uint8)
    >>> ann = (src > 128).astype(np.uint8) + 1
    >>> tgt = (255 - src[:, ::2, ::2]).copy()
    >>> adapted = adapt(model, src, ann, tgt, method="dann", iterations=2, patch=32, batch_size=2, device="cpu",
    ...                 source_voxel_size=(50, 5, 5), target_voxel_size=(50, 10, 10), progress=False)
    >>> adapted.training["adaptation"]["method"], adapted.training["adaptation"]["iterations"]
    ('dann', 2)
    """
    if method not in METHODS:
        raise ValueError(f"unknown adaptation method {method!r}; choose from {', '.join(METHODS)}")
    _check_numbers(method, minutes, iterations, patch, batch_size, lr, reconstruction_weight, domain_weight,
                   max_sections)
    out = output_directory(out, overwrite, [model, source, target])
    model = as_model(model)
    target_v, tvs = _target_volume(model, target, target_voxel_size)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    if method in ("histogram", "adabn"):
        return _finish(_untrained(method, model, source, source_voxel_size, target_v, patch, dev, seed), out, overwrite)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs, ys, s_sections = _source_sections(model, source, source_annotations, source_voxel_size, max_sections)
    xt, t_sections, zoom = load_sections(model, target_v, max_sections=max_sections)
    loop = _AdaptLoop(model, method, (xs, ys), xt, rng, torch.Generator().manual_seed(seed), patch, batch_size,
                      reconstruction_weight, domain_weight, device=dev, amp=amp, lr=lr, progress=progress)
    history = loop.new_history()
    loop.run(history, minutes=minutes, iterations=iterations)
    loop.finish()
    patch = loop.patch
    training = dict(model.training)
    adapted = replace_network(model, loop.net, training)
    if refresh_batchnorm:
        adapted = adapt_batchnorm(adapted, target_v, patch=patch, device=dev, seed=seed)
    training["adaptation"] = _record(loop, history, t0, seed, source_sections=s_sections, target_sections=t_sections,
                                     target_voxel_size=list(tvs) if tvs is not None else None,
                                     target_zoom=round(zoom, 4), patch=patch, batch_size=batch_size, lr=lr,
                                     refresh_batchnorm=bool(refresh_batchnorm))
    return _finish(replace_network(model, adapted.network, training), out, overwrite)


def _record(loop, history, t0, seed, **data) -> dict:
    """``training["adaptation"]`` of a trained adaptation: method, data, budget, loss history."""
    method = loop.method
    return {
        "method": method, "what": METHODS[method], "vemkit_version": __version__, "iterations": loop.step,
        "seconds": round(time.perf_counter() - t0, 1), **data, "class_weights": loop.cw.tolist(),
        "reconstruction_weight": loop.reconstruction_weight if method == "ynet" else None,
        "domain_weight": loop.domain_weight if method == "dann" else None,
        **run_environment(loop.device, seed), "amp": loop.amp, "history": history,
    }


def _target_volume(model, target, voxel_size):
    """The target carrying its voxel size (as the model's pixel size needs), and that voxel size; checks
    that the model is 2D."""
    if model.ndim != 2:
        raise ValueError(f"vemkit adapts 2D models; this one is {model.ndim}D")
    _, tvs, _ = as_volume_array(target, "target", voxel_size=voxel_size)
    if model.voxel_size is not None and tvs is None:
        raise ValueError("the target has no voxel size: pass target_voxel_size=(z, y, x) in nm, so it can be brought "
                         f"to the model's {model.voxel_size[1]:g} nm pixels")
    return (with_voxel_size(as_volume_array(target, "target").data, tvs) if tvs is not None else target), tvs


def _untrained(method, model, source, source_voxel_size, target, patch, dev, seed):
    """The adapted model of a method without training: ``histogram`` or ``adabn``."""
    if method == "adabn":
        return adapt_batchnorm(model, target, patch=patch, device=dev, seed=seed)
    norm = histogram_normalization(source, voxel_size=source_voxel_size, normalization=model.normalization)
    training = dict(model.training)
    training["adaptation"] = {"method": "histogram", "vemkit_version": __version__, "levels": norm["levels"]}
    return replace_network(model, copy.deepcopy(model.network), training, normalization=norm)


def _source_loss(model, dev):
    """The source model's own loss (its plan's class weights and Dice weight), so that continuing on the
    source does not recalibrate it: ``(class weights tensor, Dice weight)``."""
    n_classes = model.n_classes
    plan = model.training.get("plan") or {}
    weights = plan.get("class_weights") or [1.0] * n_classes
    cw = torch.tensor(list(weights)[:n_classes] + [1.0] * (n_classes - len(weights)), dtype=torch.float32, device=dev)
    return cw, float(plan.get("dice_weight", 1.0))


class _AdaptLoop(TrainLoop):
    """One adaptation step: ``batch_size`` labelled source and as many target patches, each domain through
    the network on its own; segmentation loss on the source plus Y-Net's reconstruction or DANN's
    domain loss."""

    history_keys = ("segmentation_loss", "auxiliary_loss")
    postfix_names = {"segmentation_loss": "seg", "auxiliary_loss": "aux"}

    def __init__(self, model, method, source, target, rng, gen, patch, batch_size, reconstruction_weight,
                 domain_weight, **kw):
        net = copy.deepcopy(model.network)
        aux = ReconstructionDecoder(net) if method == "ynet" else DomainClassifier(net.channels[0])
        super().__init__([net, aux], ndim=2, desc=f"adapting ({method})", **kw)
        self.net, self.aux, self.method = net, aux, method
        self.source, self.target, self.rng, self.gen = source, target, rng, gen
        div = model.network.divisor[0]  # square patches the network takes, within both domains' sections
        self.patch = max(div, (min(patch, *source[0].shape[1:], *target.shape[1:]) // div) * div)
        self.batch_size = batch_size
        self.cw, self.dice_weight = _source_loss(model, self.device)
        self.n_classes = len(self.cw)
        self.reconstruction_weight, self.domain_weight = reconstruction_weight, domain_weight
        self.augmenter = Augmenter(AugmentConfig.default(), ndim=2)

    def _batches(self):
        """Augmented source patches with labels (-1 = none) and target patches, on the device."""
        a_img, a_lab = _patches(*self.source, self.batch_size, self.patch, self.rng)
        b_img, _ = _patches(self.target, None, self.batch_size, self.patch, self.rng)
        # the augmenter's labels: 0 = unlabelled (also what a transform brings in from outside the patch)
        xa, ya, _ = self.augmenter(torch.from_numpy(a_img), torch.from_numpy(a_lab) + 1, generator=self.gen)
        empty = torch.zeros(b_img.shape[0], *b_img.shape[2:], dtype=torch.int64)
        xb, _, _ = self.augmenter(torch.from_numpy(b_img), empty, generator=self.gen)
        return self.to_device(xa), (ya - 1).to(self.device), self.to_device(xb)

    def forward_and_loss(self, fraction):
        xa, ya, xb = self._batches()
        net, aux = self.net, self.aux
        with self.autocast():
            # one forward pass per domain: BatchNorm normalises each with its own statistics, as it will
            # at prediction time after the AdaBN refresh
            fa, fb = net.encode(xa), net.encode(xb)
            logits, last_a = net.decode(fa, return_features=True)
            if self.method == "ynet":
                recon_a, recon_b = aux(fa[-1]), aux(fb[-1])
            else:
                _, last_b = net.decode(fb, return_features=True)
                strength = self.domain_weight * (2.0 / (1.0 + math.exp(-10 * fraction)) - 1.0)
                d = aux(grad_reverse(torch.cat([last_a, last_b]), strength))
        seg, _, _ = masked_losses(logits[:, : self.n_classes], ya, self.cw, self.dice_weight)
        if self.method == "ynet":
            mse = torch.nn.functional.mse_loss
            aux_loss = 0.5 * (mse(recon_a.float(), xa) + mse(recon_b.float(), xb))
            loss = seg + self.reconstruction_weight * aux_loss
        else:
            domain = torch.cat([torch.zeros(self.batch_size), torch.ones(self.batch_size)]).to(self.device)
            domain = domain.view(-1, *([1] * (d.ndim - 1))).expand_as(d)
            aux_loss = torch.nn.functional.binary_cross_entropy_with_logits(d.float(), domain)
            loss = seg + aux_loss
        return loss, {"segmentation_loss": seg, "auxiliary_loss": aux_loss}


def _finish(model, out, overwrite):
    if out is not None:
        model.save(out, overwrite=overwrite or (out.exists() and not holds_model(out)))
    return model
