"""Sections of a volume as a 2D network's input: zoomed to the model's pixel size, cut into random
square patches, run through the network; and the model copy that carries a new network.

Shared by :mod:`vemkit.domain` (the diagnosis and the remedies without training) and
:mod:`vemkit.adapt` (training-based adaptation). Not for: whole volumes (:mod:`vemkit.predict`,
:func:`vemkit.domain.resample_sections`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_model", "pick_sections", "random_patches", "replace_network", "run_2d", "softmax", "with_voxel_size",
           "zoom2d", "zoom_factor"]


def as_model(model):
    """A SegmentationModel as it is, or one loaded from a model directory."""
    from .models import SegmentationModel, load_model

    if isinstance(model, SegmentationModel):
        return model
    return load_model(model)


def zoom_factor(voxel_size, to_voxel_size):
    """In-plane zoom that brings ``voxel_size`` to ``to_voxel_size`` (1.0 when either is unknown)."""
    if voxel_size is None or to_voxel_size is None:
        return 1.0
    return float(min(voxel_size[1:]) / min(to_voxel_size[1:]))


def zoom2d(section, factor, order=1, shape=None):
    """One section zoomed in-plane by ``factor`` (or to ``shape``)."""
    from skimage.transform import resize

    if shape is None:
        shape = tuple(max(1, int(round(n * factor))) for n in section.shape)
    if tuple(shape) == tuple(section.shape):
        return np.asarray(section)
    return resize(section, shape, order=order, preserve_range=True, anti_aliasing=order > 0 and factor < 1,
                  mode="reflect")


def pick_sections(n_total, sections, max_sections):
    if sections is not None:
        picked = [int(z) for z in sections]
        bad = [z for z in picked if not 0 <= z < n_total]
        if bad:
            raise ValueError(f"sections {bad} are outside the volume's 0..{n_total - 1}")
        return picked
    return np.unique(np.linspace(0, n_total - 1, min(max_sections, n_total)).round().astype(int)).tolist()


def run_2d(net, x, batch: int = 4, device="cpu", return_features=False):
    """Logits of a 2D U-Net on (S, Y, X) float32 sections, padded to the divisor and cropped back."""
    import torch

    div = getattr(net, "divisor", (1, 1))
    S, H, W = x.shape
    pad = ((0, 0), (0, (-H) % div[0]), (0, (-W) % div[1]))
    xp = np.pad(x, pad, mode="reflect") if any(p[1] for p in pad) else x
    outs = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, S, batch):
            t = torch.from_numpy(np.ascontiguousarray(xp[i : i + batch, None])).to(device)
            y = net(t)[..., :H, :W].float().cpu().numpy()
            outs.append(y)
    return np.concatenate(outs)


def softmax(logits, axis=1):
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def replace_network(model, net, training, normalization=None):
    from .models import SegmentationModel

    return SegmentationModel(net, list(model.classes), voxel_size=model.voxel_size,
                             normalization=dict(normalization or model.normalization), halo=model.halo,
                             extra_targets=list(model.extra_targets), training=training)


def random_patches(x, n, patch, divisor, rng):
    """``n`` random square patches (side ``patch`` rounded down to the divisor, at most the section)."""
    S, H, W = x.shape
    p = min(patch, H, W)
    p = max(divisor[0], (p // divisor[0]) * divisor[0])
    if p > min(H, W):
        raise ValueError(f"sections of {H} x {W} are smaller than the network's minimum input {divisor[0]}")
    out = np.empty((n, p, p), np.float32)
    for i in range(n):
        s = int(rng.integers(S))
        y0, x0 = int(rng.integers(0, H - p + 1)), int(rng.integers(0, W - p + 1))
        out[i] = x[s, y0 : y0 + p, x0 : x0 + p]
    return out


def with_voxel_size(data, voxel_size):
    """A Volume of ``data`` (numpy or dask, not copied) carrying ``voxel_size``."""
    from ._volume import Volume

    if hasattr(data, "dask"):
        return Volume(data=data, voxel_size=voxel_size)
    return Volume.from_array(data, voxel_size=voxel_size)
