"""Predicting at another pixel size: the network sees the image resized by a factor, its result is
resized back to the image's grid.

A network knows objects at the sizes (in pixels) it was trained on. Mitochondria that are three times
wider in pixels than any it saw (a finer microscope, a larger animal's cells) are missed; resizing the
image by ``rescale`` before the network and the logits back after it fixes that without touching the
weights, like Cellpose's object diameter. :func:`rescaled_network` wraps a :class:`~._network.Network`
so that blockwise prediction, resume and dask clusters run it unchanged; :func:`choose_rescale` picks
the factor when asked for ``"auto"``. Not for: blocks (:mod:`._planning`) or running them
(:mod:`._runner`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import torch

from .._checks import check_number
from .._progress import progress_bar
from ._network import Network

__all__ = ["AUTO_FACTORS", "Rescaled", "check_rescale", "choose_rescale", "rescaled_network"]

#: The factors ``rescale="auto"`` tries (> 1 magnifies the image before the network).
AUTO_FACTORS = (0.5, 0.7, 1.0, 1.4, 2.0)
#: Sides of the sample ``"auto"`` scores (up to 4 sections, the centre of each).
_SAMPLE_SECTIONS, _SAMPLE_SIDE = 4, 512


def check_rescale(rescale):
    """``rescale`` as a float in [0.1, 10] or the string ``"auto"``; anything else is a clear error.

    Examples
    --------
    >>> check_rescale(0.5), check_rescale("auto"), check_rescale("1.4")
    (0.5, 'auto', 1.4)
    """
    if isinstance(rescale, str):
        if rescale.strip().lower() == "auto":
            return "auto"
        try:
            rescale = float(rescale)
        except ValueError:
            raise ValueError(f"rescale must be a number (e.g. 0.5: halve the image before the network) or "
                             f"'auto', got {rescale!r}") from None
    value = check_number(rescale, "rescale")
    if not 0.1 <= value <= 10:
        raise ValueError(f"rescale must be between 0.1 and 10 (the image's size factor before the network), "
                         f"got {rescale!r}")
    return float(value)


class Rescaled(torch.nn.Module):
    """``net`` run on its input resized by ``factor`` in y and x, the logits resized back.

    The resized input is padded (edge values) to a multiple of the network's divisor and the padding
    cropped from the result, so any block size works. Shrinking is antialiased; a 3D input is
    resized section by section (z untouched).

    Parameters
    ----------
    net : torch.nn.Module
        Maps (N, C, [Z,] Y, X) to logits of the same spatial shape.
    factor : float
        > 1 magnifies the image before the network (objects look larger to it).
    divisor : tuple of int
        The network's divisor per spatial axis of its input (2 or 3 values).

    Examples
    --------
    >>> import torch
    >>> from vemkit.models import UNet
    >>> net = UNet(ndim=2, out_channels=2, base_channels=4, depth=2)
    >>> Rescaled(net, 0.5, (4, 4))(torch.zeros(1, 1, 30, 42)).shape
    torch.Size([1, 2, 30, 42])
    """

    def __init__(self, net, factor: float, divisor):
        super().__init__()
        self.net, self.factor, self.divisor = net, float(factor), tuple(int(d) for d in divisor)
        self.ndim = int(getattr(net, "ndim", len(self.divisor)))
        self.in_channels = getattr(net, "in_channels", 1)
        self.out_channels = getattr(net, "out_channels", None)
        inner = getattr(net, "channels", None)
        # the network sees factor**2 as many pixels as the block has: what memory planning reads
        self.channels = [c * self.factor ** 2 for c in inner] if inner else None
        self.pools = getattr(net, "pools", None)

    @staticmethod
    def _resize(x, size):
        import torch.nn.functional as F

        if tuple(x.shape[-2:]) == tuple(size):
            return x
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        # in float32: antialiased resizing has no bfloat16 kernel (the network's autocast still applies)
        return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=shrink)

    def forward(self, x):
        import torch.nn.functional as F

        three_d = x.dim() == 5
        if three_d:  # (N, C, Z, Y, X): resize each section
            n, c, z = x.shape[:3]
            x = x.permute(0, 2, 1, 3, 4).reshape(n * z, c, *x.shape[3:])
        Y, X = x.shape[-2:]
        h, w = max(1, round(Y * self.factor)), max(1, round(X * self.factor))
        small = self._resize(x, (h, w))
        dy, dx = self.divisor[-2:]
        ph, pw = -h % dy, -w % dx
        if ph or pw:
            small = F.pad(small, (0, pw, 0, ph), mode="replicate")
        if three_d:
            small = small.reshape(n, z, c, *small.shape[-2:]).permute(0, 2, 1, 3, 4)
        y = self.net(small)
        if three_d:
            k = y.shape[1]
            y = y.permute(0, 2, 1, 3, 4).reshape(n * z, k, *y.shape[-2:])
        y = self._resize(y[..., :h, :w], (Y, X))
        if three_d:
            y = y.reshape(n, z, k, Y, X).permute(0, 2, 1, 3, 4)
        return y


def rescaled_network(net: Network, factor: float, *, halo_given: bool = False) -> Network:
    """``net`` run at ``factor`` times the image's pixel count per y/x axis (:class:`Rescaled`).

    The halo (context per block) grows by ``1 / factor`` in y and x unless ``halo_given`` (the user
    chose it, in image pixels); the divisor becomes 1 in y and x (the wrapper pads); the fingerprint
    records the factor, so an output made at another factor is never resumed into.
    """
    factor = float(factor)
    if factor == 1.0:
        return net
    div = net.divisor[-net.ndim:]
    halo = tuple(net.halo) if halo_given else (net.halo[0], *(int(math.ceil(h / factor)) for h in net.halo[1:]))
    rf = net.receptive_field
    if rf is not None:
        rf = (rf[0], *(int(math.ceil(r / factor)) for r in rf[1:]))
    fingerprint = hashlib.sha256(f"{net.fingerprint} rescale {factor!r}".encode()).hexdigest()
    return replace(net, module=Rescaled(net.module, factor, div), divisor=(net.divisor[0], 1, 1), halo=halo,
                   receptive_field=rf, fingerprint=fingerprint)


def _sample(data, net: Network):
    """Up to 4 evenly spaced sections (a 3D network: one slab of z-divisor multiples), the centre
    ``_SAMPLE_SIDE`` pixels of each, as raw grey values."""
    Z, Y, X = (int(s) for s in data.shape)
    hy, hx = min(Y, _SAMPLE_SIDE), min(X, _SAMPLE_SIDE)
    ys, xs = slice((Y - hy) // 2, (Y - hy) // 2 + hy), slice((X - hx) // 2, (X - hx) // 2 + hx)
    if net.ndim == 3:
        dz = int(net.divisor[0])
        nz = max(dz, min(Z, 16) // dz * dz)
        z0 = max(0, (Z - nz) // 2)
        slab = np.asarray(data[z0 : z0 + nz, ys, xs])
        if slab.shape[0] < nz:  # fewer sections than the divisor: mirror
            slab = np.pad(slab, ((0, nz - slab.shape[0]), (0, 0), (0, 0)), mode="symmetric")
        return [slab]
    zs = np.unique(np.linspace(0, Z - 1, min(Z, _SAMPLE_SECTIONS)).round().astype(int))
    return [np.asarray(data[int(z), ys, xs])[None] for z in zs]


def choose_rescale(net: Network, data, low: float, scale: float, lut=None, *, device="cpu",
                   factors=AUTO_FACTORS, progress: bool = True):
    """The factor at which the network is surest of what it finds: for each of ``factors``, the mean
    top-class probability over the sample pixels it does not call background (class 0); the highest
    wins (ties and a sample with nothing found: 1).

    Parameters
    ----------
    net : Network
    data : array-like (Z, Y, X)
        Raw grey values; normalised as the prediction will (``(v - low) * scale`` after ``lut``).
    low, scale : float
    lut : (xp, fp), optional
    device : str or torch.device
    factors : sequence of float
    progress : bool

    Returns
    -------
    factor : float
    scores : dict
        Factor -> score (NaN where nothing but background was found).
    """
    from .._intensity import apply_mapping

    dev = torch.device(device)
    module = net.module.to(dev).eval()
    div = net.divisor[-net.ndim:]
    samples = []
    for s in _sample(data, net):
        t = torch.from_numpy(np.ascontiguousarray(apply_mapping(s, low, scale, lut)))
        samples.append(t[None, None] if net.ndim == 3 else t[:, None])  # (1, 1, z, y, x) or (z, 1, y, x)
    scores = {}
    bar = progress_bar(total=len(factors), disable=not progress, desc="rescale auto", unit="factor")
    with torch.inference_mode():
        for f in factors:
            wrapped = Rescaled(module, f, div)  # at 1: only pads to the divisor
            conf, count = 0.0, 0
            for x in samples:
                p = torch.softmax(wrapped(x.to(dev))[:, : net.n_classes].float(), dim=1)
                top, cls = p.max(dim=1)
                found = cls > 0
                conf += float(top[found].sum())
                count += int(found.sum())
            scores[float(f)] = conf / count if count else float("nan")
            bar.update(1)
    bar.close()
    finite = {f: v for f, v in scores.items() if np.isfinite(v)}
    if not finite:
        return 1.0, scores
    best = max(finite.values())
    # ties (within float noise) go to the factor nearest 1
    chosen = min((f for f, v in finite.items() if v >= best - 1e-6), key=lambda f: abs(math.log(f)))
    return float(chosen), scores

