"""MitoNet (empanada): a TorchScript panoptic network for mitochondria, and its post-processing.

:func:`load_mitonet` loads a MitoNet TorchScript file (only with a pinned SHA-256: TorchScript runs
code) and wraps it as :class:`MitoNet`, which maps a normalised section to the published outputs
``sem_logits`` (1 channel: mitochondrion), ``ctr_hmp`` (object-centre heatmap) and ``offsets``
(2 channels: (y, x) offset to the centre). :func:`panoptic_instances` turns them into instance
labels as Panoptic-DeepLab does (centres by non-maximum suppression on the heatmap, each foreground
pixel given to the centre its offset points nearest to); :func:`segment_section` runs both.
Normalisation constants and post-processing settings come from the manifest entry (empanada's
``MitoNet_v1.yaml``).

Not for: running it blockwise over a volume (:mod:`vemkit.predict`), 3D consensus across the
three orthogonal planes (:func:`orthoplane_consensus` is the simple vote, not empanada's merger).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .._device import resolve_device
from ._registry import UnpinnedCodeError, file_sha256, manifest_weights

__all__ = ["MitoNet", "load_mitonet", "panoptic_instances", "segment_section", "orthoplane_consensus",
           "MITONET_OUTPUTS"]

MITONET_OUTPUTS = ("sem_logits", "ctr_hmp", "offsets")


class MitoNet:
    """A loaded MitoNet: the TorchScript module with its input convention and post-processing."""

    def __init__(self, module, entry: dict, name: str, device):
        self.module = module
        self.entry = entry
        self.name = name
        self.device = device
        inp = entry.get("input", {})
        self.mean = float(inp.get("mean", 0.57571))
        self.std = float(inp.get("std", 0.12765))
        self.multiple = int(inp.get("size_multiple", 16))
        self.post = dict(inp.get("postprocess", {}))

    def normalise(self, x):
        """``x`` in [0, 1] (a uint8 section / 255) to the network's input."""
        return (x - self.mean) / self.std

    def forward_section(self, section) -> dict:
        """The raw outputs (numpy, (C, H, W) each) for one 2D section, padded to the size multiple."""
        import torch

        a = np.asarray(section)
        if a.ndim != 2:
            raise ValueError(f"MitoNet takes 2D sections (y, x), got shape {a.shape}")
        x = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else _minmax(a)
        h, w = x.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        x = np.pad(x, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")
        t = torch.from_numpy(self.normalise(x))[None, None].to(self.device)
        with torch.inference_mode():
            out = self.module(t)
        missing = [k for k in MITONET_OUTPUTS if k not in out]
        if missing:
            raise ValueError(f"{self.name}: the network's output lacks {missing} (has {sorted(out)}); not MitoNet's signature")
        return {k: out[k][0, :, :h, :w].float().cpu().numpy() for k in MITONET_OUTPUTS}


def _minmax(a):
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


def load_mitonet(model="mitonet_mini_v1", *, device="auto", manifest_path=None, progress=True, sha256=None) -> MitoNet:
    """Load a MitoNet TorchScript model of the manifest (verified, pinned) or a local file.

    A local file is loaded only with ``sha256`` given and matching: TorchScript runs code.
    """
    import torch

    if isinstance(model, (str, os.PathLike)) and os.path.isfile(model):
        if not sha256:
            raise UnpinnedCodeError(f"{model}: TorchScript runs code when loaded; pass sha256=... (checked) to load it")
        found = file_sha256(model)
        if found != str(sha256).lower():
            raise ValueError(f"{model}: SHA-256 mismatch (expected {sha256}, found {found})")
        path, name, entry = model, os.path.basename(str(model)), {"input": {}}
    else:
        path, name, entry = manifest_weights(model, "mitonet", "MitoNet", progress=progress, manifest_path=manifest_path)
    dev = resolve_device(device)
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; MitoNet is published as TorchScript
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location=dev).eval()
    return MitoNet(module, entry, name, dev)


def _centres(heatmap: np.ndarray, threshold: float, kernel: int, top_k: int | None = None) -> np.ndarray:
    from scipy import ndimage

    peak = (heatmap == ndimage.maximum_filter(heatmap, size=kernel, mode="constant", cval=-np.inf)) & (heatmap > threshold)
    ys, xs = np.nonzero(peak)
    order = np.argsort(-heatmap[ys, xs], kind="stable")
    if top_k:
        order = order[:top_k]
    return np.stack([ys[order], xs[order]], axis=1)


def panoptic_instances(sem_logits, ctr_hmp, offsets, *, confidence_thr=0.5, center_threshold=0.1,
                       nms_kernel=7, top_k=None) -> np.ndarray:
    """Instance labels (0 = background) of one section from MitoNet's outputs.

    Foreground is ``sigmoid(sem_logits) > confidence_thr``; centres are the local maxima of the
    heatmap above ``center_threshold`` (``nms_kernel`` wide); each foreground pixel joins the centre
    nearest to where its offset points. Foreground with no centre at all becomes one object per
    connected component (so nothing predicted is dropped).
    """
    from scipy import ndimage

    sem = np.asarray(sem_logits)
    sem = sem[0] if sem.ndim == 3 else sem
    heat = np.asarray(ctr_hmp)
    heat = heat[0] if heat.ndim == 3 else heat
    off = np.asarray(offsets)
    fg = 1.0 / (1.0 + np.exp(-sem.astype(np.float64))) > confidence_thr
    labels = np.zeros(sem.shape, np.uint32)
    if not fg.any():
        return labels
    centres = _centres(heat, center_threshold, nms_kernel, top_k)
    if len(centres) == 0:
        return ndimage.label(fg)[0].astype(np.uint32)
    ys, xs = np.nonzero(fg)
    target = np.stack([ys + off[0, ys, xs], xs + off[1, ys, xs]], axis=1)
    # nearest centre, in pieces to bound memory
    nearest = np.empty(len(ys), np.int64)
    for s in range(0, len(ys), 65536):
        d = ((target[s:s + 65536, None, :] - centres[None, :, :]) ** 2).sum(-1)
        nearest[s:s + 65536] = d.argmin(1)
    labels[ys, xs] = nearest + 1
    # renumber densely, in order of appearance
    ids = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.uint32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]


def segment_section(net: MitoNet, section, **post) -> np.ndarray:
    """Instance labels of one 2D section with MitoNet and its panoptic post-processing."""
    out = net.forward_section(section)
    settings = {k: net.post[k] for k in ("confidence_thr", "center_threshold", "nms_kernel") if k in net.post}
    settings.update(post)
    return panoptic_instances(out["sem_logits"], out["ctr_hmp"], out["offsets"], **settings)


def orthoplane_consensus(prob_zyx, prob_yzx=None, prob_xyz=None, *, threshold=0.5, min_votes=2) -> np.ndarray:
    """Foreground by majority vote of per-plane mitochondrion probabilities (each given as (z, y, x)).

    Run the 2D network on xy, zx and zy sections, bring each result back to (z, y, x) and vote; a
    voxel is foreground when at least ``min_votes`` planes say so. This is the consensus step of
    empanada's orthoplane inference for the semantic mask (instances then come from
    :func:`vemkit.instances.instances_blockwise`), not its instance-matching merger.
    """
    planes = [p for p in (prob_zyx, prob_yzx, prob_xyz) if p is not None]
    shapes = {np.shape(p) for p in planes}
    if len(shapes) != 1:
        raise ValueError(f"the per-plane probabilities must all be (z, y, x) of one shape, got {sorted(shapes)}")
    if not 1 <= min_votes <= len(planes):
        raise ValueError(f"min_votes must be between 1 and {len(planes)}, got {min_votes}")
    votes = sum((np.asarray(p) > threshold).astype(np.uint8) for p in planes)
    return votes >= min_votes
