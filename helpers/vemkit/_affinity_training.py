"""Train a 3D U-Net to predict affinities (and a boundary map) from dense instance labels.

The planner (:func:`vemkit.train.plan_training`) chooses the network (3D, anisotropic where z is
coarse), patch, batch and normalisation from the image and a boundary annotation made from the
labels; :class:`AffinityLoop` is the shared :class:`vemkit._trainloop.TrainLoop` with a different
``forward_and_loss``: random patches, the EM augmentations that matter for neurites (elastic
deformation, section misalignment and missing / low-contrast sections, the default
:class:`vemkit.augment.AugmentConfig`), then the targets made *after* augmentation (so a misaligned
section has the affinities of its shifted labels), and a masked binary cross-entropy on the affinities
(each channel's two classes rebalanced: :func:`vemkit._losses.balanced_affinity_loss`) plus
cross-entropy + Dice on the boundary map.

Not for: the agglomeration (:mod:`vemkit._agglomeration`), classes of organelles (:mod:`vemkit.train`).
"""

from __future__ import annotations

import numpy as np

from ._affinities import affinities, affinity_offsets, boundary_map, check_instance_labels
from ._basemodels import holds_model, output_directory
from ._device import resolve_device
from ._inputs import as_volume_array, paired_voxel_size
from ._intensity import input_mapping
from ._losses import balanced_affinity_loss, masked_losses
from ._trainloop import TrainLoop, run_environment
from ._trainplan import plan_training

__all__ = ["AFFINITY_CLASSES", "AffinityLoop", "affinity_channel_names", "train_affinities"]

#: The class channels of an affinity model (before the affinity channels): a boundary map.
AFFINITY_CLASSES = ["inside", "boundary"]


def affinity_channel_names(offsets):
    """``["aff_-1_0_0", ...]``: the extra-target names of an affinity model's channels."""
    return ["aff_" + "_".join(str(int(v)) for v in o) for o in offsets]


def _boundary_annotation(labels):
    """Annotation values for the planner and the boundary loss: 0 unlabelled, 1 inside, 2 boundary."""
    return np.where(labels > 0, 1 + boundary_map(labels), 0).astype(np.uint8)


class AffinityLoop(TrainLoop):
    """One step: random patches, augmented, targets made from the augmented labels, the two losses."""

    history_keys = ("loss", "affinity_loss", "boundary_loss")
    postfix_names = {"affinity_loss": "aff", "boundary_loss": "bnd"}

    def __init__(self, net, plan, image, labels, offsets, gen, rng, **kw):
        import torch

        from .augment import AugmentConfig, Augmenter

        super().__init__([net], ndim=3, lr=plan.lr, weight_decay=plan.weight_decay, desc="affinities", **kw)
        self.augmenter = Augmenter(AugmentConfig.default(), ndim=3, isotropic=not plan.anisotropic)
        self.net, self.plan, self.image, self.labels = net, plan, image, labels
        self.offsets, self.gen, self.rng = [tuple(o) for o in offsets], gen, rng
        div = tuple(getattr(net, "divisor", (1, 1, 1)))
        self.patch = tuple(min(p, n) // d * d for p, n, d in zip(plan.patch, image.shape, div))
        reach = np.abs(np.asarray(offsets)).max(axis=0)
        if min(self.patch) < 1 or any(r >= p for r, p in zip(reach, self.patch)):
            raise ValueError(f"the training patch {self.patch} (the plan's {tuple(plan.patch)} within the image "
                             f"{tuple(image.shape)}, a multiple of the network's divisor {div}) must be longer than "
                             f"the longest affinity offset {tuple(int(r) for r in reach)} along every axis: give a "
                             "larger image or patch, or shorter offsets")
        self.torch = torch

    def _batch(self):
        xs, ys = [], []
        for _ in range(self.plan.batch_size):
            start = [int(self.rng.integers(0, n - p + 1)) for n, p in zip(self.image.shape, self.patch)]
            region = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
            xs.append(self.image[region])
            ys.append(self.labels[region])
        return np.stack(xs)[:, None], np.stack(ys)

    def forward_and_loss(self, fraction):
        torch = self.torch
        x_np, y_np = self._batch()
        x = torch.from_numpy(x_np).to(self.device)
        y = torch.from_numpy(y_np.astype(np.int64)).to(self.device)
        x, y, _ = self.augmenter(x, y, generator=self.gen)  # 0 stays unlabelled, also where a shift uncovers
        aff, mask = affinities(y, self.offsets)
        bnd = torch.from_numpy(_boundary_annotation(y.cpu().numpy()).astype(np.int64) - 1).to(self.device)
        with self.autocast():
            logits = self.net(self.to_device(x))
        n_cls = len(AFFINITY_CLASSES)
        b_loss, _, _ = masked_losses(logits[:, :n_cls], bnd, None, self.plan.dice_weight)
        a_loss = balanced_affinity_loss(logits[:, n_cls:], aff, mask)
        loss = a_loss + 0.5 * b_loss
        return loss, {"loss": loss, "affinity_loss": a_loss, "boundary_loss": b_loss}


def _prepare(image, labels, voxel_size, offsets, plan, device, overrides):
    """Image (normalised float32), labels, voxel size, offsets and plan, every check before any work."""
    data, image_vs, source = as_volume_array(image, "image")
    lab, lab_vs, _ = as_volume_array(labels, "labels")
    vs = paired_voxel_size(data, image_vs, lab, lab_vs, other_name="labels", voxel_size=voxel_size,
                           needed_for="the offsets depend on it")
    lab = np.asarray(lab)
    check_instance_labels(lab)
    offsets = [tuple(int(v) for v in o) for o in (offsets or affinity_offsets(vs))]
    ann = _boundary_annotation(lab)
    if plan is None:
        overrides = dict(overrides)
        overrides.setdefault("ndim", 3)  # affinities along z need 3D context, even on anisotropic stacks
        plan = plan_training(data, ann, voxel_size=vs, device=str(device), **overrides)
        plan.reasons["ndim"] = "affinity targets: z offsets need a 3D network"
    if plan.ndim != 3:
        raise ValueError("an affinity model needs a 3D plan (ndim=3)")
    low, scale, _ = input_mapping(plan.normalization, data)
    img = (np.asarray(data, dtype=np.float32) - low) * scale
    return img, lab, vs, offsets, plan, source, (low, low + 1.0 / scale)


def train_affinities(image, labels, *, out=None, voxel_size=None, offsets=None, plan=None, minutes=None,
                     iterations=None, device="auto", seed=0, amp="auto", overwrite=False, progress=True,
                     **plan_overrides):
    """Train a 3D U-Net on dense instance labels to predict affinities and a boundary map.

    Returns a :class:`vemkit.models.SegmentationModel` whose config records
    ``target = {"kind": "affinities", "offsets": ...}``; see :func:`vemkit.neurons.train_affinities`.
    """
    import torch

    from . import __version__
    from .models import UNET_SIZES, SegmentationModel, UNet

    if minutes is None and iterations is None:
        raise ValueError("give a budget: minutes=... and/or iterations=...")
    out = output_directory(out, overwrite, [image, labels])
    dev = resolve_device(device)
    img, lab, vs, offsets, plan, source, intensity = _prepare(image, labels, voxel_size, offsets, plan, dev,
                                                              plan_overrides)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    base_channels, depth = UNET_SIZES[plan.model_size]
    net = UNet(ndim=3, out_channels=len(AFFINITY_CLASSES) + len(offsets), base_channels=base_channels,
               depth=depth, voxel_size=vs if plan.anisotropic else None, residual=plan.residual)
    gen = torch.Generator().manual_seed(seed)
    loop = AffinityLoop(net, plan, img, lab, offsets, gen, rng, device=dev, amp=amp, progress=progress)
    history = loop.new_history()
    loop.run(history, minutes=minutes, iterations=iterations)
    loop.finish()
    record = {"vemkit_version": __version__, "method": "unet", "target": "affinities", "plan": plan.to_dict(),
              "offsets": [list(o) for o in offsets], "iterations": loop.step, "seconds": round(loop.seconds(), 1),
              **run_environment(loop.device, seed), "amp": loop.amp, "intensity_range": list(intensity),
              "image": source, "instances": int(np.unique(lab).size - (lab == 0).any()), "history": history}
    model = SegmentationModel(net, AFFINITY_CLASSES, voxel_size=vs, normalization=dict(plan.normalization),
                              extra_targets=affinity_channel_names(offsets), training=record,
                              target={"kind": "affinities", "offsets": [list(o) for o in offsets]})
    if out is not None:
        model.save(out, overwrite=True if (out.exists() and not holds_model(out)) else overwrite)
        plan.save(out / "plan.json")
    return model
