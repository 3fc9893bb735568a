"""Tiny models in the published formats, for tests, benchmarks and offline demos.

The real weights cannot be downloaded everywhere (not on the machines that test vemkit), but the
loading code must still run. :func:`write_tiny_model` writes a small model of a manifest entry's
format into the cache where :func:`~vemkit.generalist.fetch_model` looks for it, and a manifest
(a copy of the package's with that entry's SHA-256 set to the tiny file's) that points at it; every
loader then takes the same path as for the real file. :func:`write_tiny_bioimageio` writes a
bioimage.io package (vemkit's own exporter, TorchScript weights).

Weights: SAM is random (small widths, same keys and module layout as vit_b, or as MobileSAM's vit_t); the MitoNet stand-in
is a hand-set TorchScript module with MitoNet's signature whose outputs follow dark blobs (so a
pipeline's result can be checked). Nothing here stands for the real models' quality.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

from ..datasets import manifest
from ._registry import file_sha256, model_entry, model_file, pin_model

__all__ = ["write_tiny_model", "write_tiny_bioimageio", "TINY_NOTE"]

TINY_NOTE = "TINY TEST CHECKPOINT (random or hand-set weights in the published format): not the real model"


def _tiny_mitonet_module():
    import torch

    class TinyMitoNet(torch.nn.Module):
        """MitoNet's signature: (N, 1, H, W) normalised -> dict of sem_logits, ctr_hmp, offsets."""

        def __init__(self):
            super().__init__()
            self.smooth = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False)
            with torch.no_grad():
                self.smooth.weight.fill_(1.0 / 25)
            self.offset_head = torch.nn.Conv2d(1, 2, 1)
            with torch.no_grad():
                self.offset_head.weight.zero_()
                self.offset_head.bias.zero_()

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            s = self.smooth(x)
            sem = -4.0 * (s + 1.0)  # dark (normalised below about -1) -> mitochondrion
            heat = torch.sigmoid(sem) * torch.sigmoid(-4.0 * self.smooth(self.smooth(x)) - 4.0)
            return {"sem_logits": sem, "ctr_hmp": heat, "offsets": self.offset_head(x)}

    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; the published MitoNet is TorchScript
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated", category=DeprecationWarning)
        return torch.jit.script(TinyMitoNet().eval())


def _write_file(entry: dict, path: Path, seed: int) -> None:
    import torch

    family = entry.get("family")
    if family == "sam":
        from ._sam import tiny_sam_state, tiny_tinyvit_state

        torch.save(tiny_tinyvit_state(seed) if entry.get("arch") == "vit_t" else tiny_sam_state(seed=seed), path)
    elif family == "mitonet":
        _tiny_mitonet_module().save(str(path))
    else:
        raise ValueError(f"no tiny checkpoint for family {family!r}")


def write_tiny_model(name: str, manifest_out, *, seed: int = 0, manifest_path=None) -> Path:
    """Write a tiny checkpoint of model ``name`` into the cache and a manifest that pins it.

    Parameters
    ----------
    name : str
        A model of the manifest (``sam_vit_b``, ``mitonet_mini_v1`` ...).
    manifest_out : path
        The manifest to write (a copy of ``manifest_path``'s, default the package's, or of
        ``manifest_out`` itself when it exists, so several tiny models can share one); pass it as
        ``manifest_path`` to the loaders. A model without a published SHA-256 (MitoNet) is also
        pinned in the cache (:func:`~vemkit.generalist.pin_model`), so it loads by name with the
        package's manifest too (``predict_volume(model="mitonet_mini_v1")``).

    Returns
    -------
    Path
        The tiny file, at :func:`~vemkit.generalist.model_file` of ``name``.
    """
    manifest_out = Path(manifest_out)
    base = json.loads(manifest_out.read_text()) if manifest_out.is_file() else copy.deepcopy(manifest(manifest_path))
    # (manifest() is the package's copy unless manifest_path is given)
    entry = dict(model_entry(name, manifest_path))
    path = model_file(name, manifest_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_file(entry, path, seed)
    if not entry.get("sha256"):  # no published hash: pinned by the user's own route (pins.json in the cache)
        pin_model(name, file_sha256(path), manifest_path)
    entry.update(sha256=file_sha256(path), size=path.stat().st_size, title=f"{entry.get('title', name)} [{TINY_NOTE}]",
                 tiny=True)
    base.setdefault("models", {})[name] = entry
    manifest_out.write_text(json.dumps(base, indent=1))
    return path


def write_tiny_bioimageio(out, *, classes=("background", "mitochondria"), voxel_size=(50.0, 5.0, 5.0), seed=0) -> Path:
    """A bioimage.io package folder of a tiny random 2D vemkit U-Net with TorchScript weights."""
    import torch

    from ..export import export_bioimageio
    from ..models import SegmentationModel, UNet

    torch.manual_seed(seed)
    net = UNet(ndim=2, out_channels=len(classes), base_channels=4, depth=2)
    model = SegmentationModel(net, list(classes), voxel_size=voxel_size,
                              training={"image": "none: random weights", "iterations": 0})
    return Path(export_bioimageio(model, Path(out), authors=[{"name": "vemkit tests"}],
                                  description=f"{TINY_NOTE}: a 2D U-Net with random weights"))
