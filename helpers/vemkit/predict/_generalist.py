"""Generalist models as networks for blockwise inference: MitoNet and bioimage.io models.

:func:`vemkit.generalist.is_generalist` recognises a model given by name (a MitoNet entry of the
data manifest, e.g. ``"mitonet_mini_v1"`` or ``"mitonet"``; ``"bioimageio:<id, DOI, URL or folder>"``)
and :func:`generalist_fields` gives the fields of a :class:`~._network.Network` whose module maps the
runner's input (grey values mapped to [0, 1]) to one logit per class, so :func:`predict_volume`
writes probabilities and labels with its usual blocks, halo, resume and OME-Zarr output:

- MitoNet: classes background / mitochondria (the semantic head; the logit is MitoNet's own, so
  the label is ``sigmoid > 0.5``, its ``confidence_thr``). Instances then come from
  :func:`vemkit.instances.instances_blockwise` (or per section from
  :func:`vemkit.generalist.segment_section`, MitoNet's panoptic post-processing).
- bioimage.io: the model's output channels as classes (a single sigmoid channel becomes
  background / foreground); its probabilities are turned into logits (log p) for the runner.

Not for: SAM (prompted; automatic SAM is not offered here), choosing blocks (:mod:`._planning`).
"""

from __future__ import annotations

from .._modeldir import NotAModelDirectory
from ..generalist import GENERALIST_ALIASES, is_generalist, load_bioimageio, load_mitonet, pinned_sha256

__all__ = ["is_generalist", "generalist_fields"]

_PREFIX = "bioimageio:"


def _script_copy(module):
    """A TorchScript module copied through its serialised form (``copy.deepcopy`` of a loaded
    ScriptModule leaves parameters that torch then treats as non-leaf tensors)."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated", category=DeprecationWarning)
        torch.jit.save(module, buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu")


def _mitonet_module(mitonet):
    import torch

    class MitoNetSemantic(torch.nn.Module):
        """[0, 1] grey -> (background 0, MitoNet's mitochondrion logit): softmax = MitoNet's sigmoid."""

        def __init__(self, module, mean, std):
            super().__init__()
            self.net, self.mean, self.std = module, float(mean), float(std)
            self.in_channels, self.ndim = 1, 2

        def __deepcopy__(self, memo):  # the runner copies the module before moving it
            return type(self)(_script_copy(self.net), self.mean, self.std).train(self.training)

        def forward(self, x):
            with torch.jit.optimized_execution(False):  # no per-shape re-optimisation (seconds per call on CPU)
                sem = self.net(((x - self.mean) / self.std).contiguous())["sem_logits"]  # (channels-last is slow)
            return torch.cat([torch.zeros_like(sem), sem], dim=1)

    return MitoNetSemantic(mitonet.module, mitonet.mean, mitonet.std).eval()


def _bioimageio_module(bio):
    import torch

    class BioimageioLogits(torch.nn.Module):
        def __init__(self, module, inner, single):
            super().__init__()
            self.net, self.inner, self.single = module, list(inner), single

        def __deepcopy__(self, memo):  # the runner copies the module before moving it
            return type(self)(_script_copy(self.net), self.inner, self.single).train(self.training)

        def forward(self, x):
            for op, kw in self.inner:
                if op == "scale_linear":
                    x = x * kw["gain"] + kw["offset"]
                elif op == "zero_mean_unit_variance":  # per block, as bioimage.io consumers do per tile
                    x = (x - x.mean()) / (x.std() + kw["eps"])
                elif op == "clip":
                    x = x.clamp(kw["min"], kw["max"])
            with torch.jit.optimized_execution(False):  # no per-shape re-optimisation (seconds per call on CPU)
                p = self.net(x.contiguous()).clamp(1e-6, 1.0)  # channels-last input is slow in TorchScript
            if self.single:
                p = torch.cat([(1.0 - p).clamp_min(1e-6), p], dim=1)
            return torch.log(p)

    return BioimageioLogits(bio.module, bio.inner, bio.out_channels == 1).eval()


def generalist_fields(model, *, halo=None, manifest_path=None) -> dict:
    """The fields of the :class:`~._network.Network` of a generalist model name (see :func:`is_generalist`)."""
    if model.startswith(_PREFIX):
        bio = load_bioimageio(model)
        n = max(2, bio.out_channels)
        return dict(
            module=_bioimageio_module(bio), ndim=bio.ndim, in_channels=bio.in_channels, n_classes=n,
            extra_targets=[], divisor=tuple(bio.divisor), halo=tuple(halo) if halo is not None else tuple(bio.halo),
            normalization=dict(bio.normalization), voxel_size=None, fingerprint=bio.sha256,
            classes=["background", *(f"class_{i}" for i in range(1, n))],
        )
    name = GENERALIST_ALIASES.get(model, model)
    try:
        net = load_mitonet(name, device="cpu", manifest_path=manifest_path, progress=True)
    except KeyError as err:
        raise NotAModelDirectory(str(err)) from None
    m = net.multiple
    return dict(
        module=_mitonet_module(net), ndim=2, in_channels=1, n_classes=2, extra_targets=[], divisor=(1, m, m),
        halo=tuple(halo) if halo is not None else (0, 2 * m, 2 * m),
        normalization={"mode": "fixed", "low": 0.0, "high": 255.0}, voxel_size=None,
        fingerprint=pinned_sha256(name, manifest_path) or name, classes=["background", "mitochondria"],
    )
