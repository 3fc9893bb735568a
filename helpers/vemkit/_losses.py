"""Losses of vemkit's U-Net training: masked cross-entropy plus Dice, and the extra instance targets.

Every loss ignores unlabelled voxels (label -1 here, 0 in the annotations). Shared by
:func:`vemkit.train.finetune`, :func:`vemkit.pretrain.pretrain` and :func:`vemkit.adapt.adapt`
(``masked_losses`` is public as :func:`vemkit.train.masked_losses`). Not for: the training loop
(:mod:`vemkit._trainloop`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EXTRA_TARGETS", "balanced_affinity_loss", "extra_target_losses", "masked_losses"]

EXTRA_TARGETS = ("boundary", "distance")


def masked_losses(logits, labels, class_weights=None, dice_weight: float = 1.0):
    """Weighted cross-entropy plus soft Dice, both over labelled voxels only.

    Parameters
    ----------
    logits : tensor (N, C, ...)
    labels : int64 tensor (N, ...)
        Class index, or -1 for unlabelled voxels, which no term sees.
    class_weights : tensor (C,), optional
    dice_weight : float

    Returns
    -------
    total, ce, dice : tensors
        ``total = ce + dice_weight * dice``; Dice is 1 - mean soft Dice over foreground classes that
        occur in the labelled voxels of the batch (0 when none does).

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[[10.0, -10.0], [-10.0, 10.0]]])  # (N=1, C=2, X=2)
    >>> total, ce, dice = masked_losses(logits, torch.tensor([[0, -1]]))
    >>> float(ce) < 1e-6, float(dice)
    (True, 0.0)
    """
    import torch
    import torch.nn.functional as F

    labels = labels.long()
    valid = labels >= 0
    if not bool(valid.any()):
        zero = logits.sum() * 0.0
        return zero, zero, zero
    ce = F.cross_entropy(logits.float(), labels.clamp_min(0), weight=class_weights, reduction="none")
    w = valid.float()
    if class_weights is not None:
        w = w * class_weights[labels.clamp_min(0)]
    ce = (ce * valid).sum() / w.sum().clamp_min(1e-8)
    probs = torch.softmax(logits.float(), dim=1)
    C = logits.shape[1]
    dims = [0] + list(range(2, logits.ndim))
    onehot = F.one_hot(labels.clamp_min(0), C).movedim(-1, 1).float() * valid.unsqueeze(1)
    p = probs * valid.unsqueeze(1)
    inter = (p * onehot).sum(dims)
    denom = p.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims)[1:] > 0
    if bool(present.any()):
        dice_per = (2 * inter[1:] + 1e-5) / (denom[1:] + 1e-5)
        dice = 1 - dice_per[present].mean()
    else:
        dice = probs.sum() * 0.0
    return ce + dice_weight * dice, ce, dice


def extra_target_losses(extra_logits, labels, names):
    """Boundary (voxels of a foreground class next to another value) and a normalised in-plane
    distance to the nearest non-foreground voxel, both as sigmoid targets; unlabelled voxels ignored."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    lab = labels.detach().cpu().numpy()
    valid = torch.from_numpy(lab >= 0).to(extra_logits.device)
    fg = lab >= 1
    losses = []
    for k, name in enumerate(names):
        if name == "boundary":
            target = np.zeros(lab.shape, np.float32)
            for i in range(lab.shape[0]):
                grown = ndimage.grey_dilation(lab[i], size=3)
                shrunk = ndimage.grey_erosion(np.where(lab[i] < 0, 10**4, lab[i]), size=3)
                target[i] = (fg[i] & ((grown != lab[i]) | (shrunk != lab[i]))).astype(np.float32)
        elif name == "distance":
            target = np.zeros(lab.shape, np.float32)
            for i in range(lab.shape[0]):
                sampling = None
                d = ndimage.distance_transform_edt(fg[i], sampling=sampling)
                target[i] = np.tanh(d / 8.0)
        else:
            raise ValueError(f"unknown extra target {name!r}; choose from {EXTRA_TARGETS}")
        t = torch.from_numpy(target).to(extra_logits.device)
        loss = F.binary_cross_entropy_with_logits(extra_logits[:, k].float(), t, reduction="none")
        losses.append((loss * valid).sum() / valid.sum().clamp_min(1))
    return sum(losses)


def balanced_affinity_loss(logits, target, mask, max_weight: float = 50.0):
    """Binary cross-entropy on affinity channels, each channel's two classes weighted to count equally.

    Edges between two neurites are a few per cent of the nearest-neighbour edges; an unweighted loss
    lets a network stay near "connected" everywhere (boundary edges at 0.6-0.8 after thousands of
    steps on FlyEM), so no threshold separates neurites. Per channel, over the batch and within
    ``mask``, positives and negatives get weights ``n / (2 n_pos)`` and ``n / (2 n_neg)`` (capped at
    ``max_weight``; a channel whose masked elements are all one class keeps weight 1), the class
    rebalancing of Lee et al. 2017 ("Superhuman accuracy on the SNEMI3D connectomics challenge"):
    0.5 becomes the point of equal error, the threshold agglomeration uses.

    Parameters
    ----------
    logits, target, mask : torch.Tensor (B, C, ...)
        ``target`` in {0, 1}; ``mask`` 1 where the affinity is defined.

    Returns
    -------
    torch.Tensor
        The weighted mean over the masked elements.

    Examples
    --------
    >>> import torch
    >>> t = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]]); m = torch.ones_like(t)
    >>> round(float(balanced_affinity_loss(torch.zeros_like(t), t, m)), 4)  # log 2 whatever the balance
    0.6931
    """
    import torch

    dims = [0] + list(range(2, logits.dim()))
    mask = mask.float()
    pos = (target * mask).sum(dim=dims, keepdim=True)
    n = mask.sum(dim=dims, keepdim=True)
    neg = n - pos
    both = (pos > 0) & (neg > 0)  # a channel holding one class only keeps plain weights
    w_pos = torch.where(both, (n / (2 * pos.clamp_min(1.0))).clamp(max=max_weight), torch.ones_like(n))
    w_neg = torch.where(both, (n / (2 * neg.clamp_min(1.0))).clamp(max=max_weight), torch.ones_like(n))
    weight = torch.where(target > 0.5, w_pos, w_neg) * mask
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (bce * weight).sum() / weight.sum().clamp_min(1.0)
