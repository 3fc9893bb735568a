"""Geometry and memory planning of blockwise inference: which block and batch fit a device, what they cost.

Pure arithmetic on a :class:`~._network.Network` record (its channels, kernels and pooling, never
its weights): the working memory of one block (:func:`block_bytes`), its multiply-adds
(:func:`block_cost`), the block with the least halo overhead that fits a memory budget
(:func:`choose_block`), the batch (:func:`plan_blocks`), the layout rules (:func:`check_layout`), and
how a ready :class:`InferencePlan` fixes a run's settings (:func:`settings_from_plan`). Not for:
timing a probe or running blocks (:mod:`._runner`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._blockwise import padded
from .._checks import check_positive_int, triple
from .._device import resolve_device
from ._network import Network, decoder_regions, kept_unet, level_sizes

__all__ = ["InferencePlan", "BlockPlan", "plan_blocks", "choose_block", "check_layout", "settings_from_plan",
           "check_plan_volume", "block_bytes", "block_cost", "max_tensor_elements", "MAX_TENSOR_ELEMENTS",
           "GPU_BATCH_VOXELS", "MiB"]

MiB = 2**20
#: Largest tensor (elements, batch included) a batch may create: CUDA kernels that index with 32-bit
#: integers fail with "illegal memory access" beyond 2**31 elements (seen with cuDNN's 3D convolutions
#: on an H100), so no block or batch is planned past it.
MAX_TENSOR_ELEMENTS = 2**31 - 1
#: On a GPU, padded voxels per batch: one such batch already fills the device; larger ones add halo
#: savings of a few percent but leave too few batches to overlap reading and writing with compute.
GPU_BATCH_VOXELS = 2**25


@dataclass
class InferencePlan:
    """Block, batch and expected time for one volume on one device (from :func:`estimate`).

    Pass it to :func:`predict_volume` as ``plan=``: the run then uses its device, block, halo and
    batch size (and is refused for a volume of another shape).
    """

    device: str
    block: tuple
    halo: tuple
    batch_size: int
    n_blocks: int
    volume_shape: tuple
    overhead: float
    memory_budget_bytes: int
    memory_per_batch_bytes: int
    voxels_per_second: float | None
    expected_seconds: float | None

    def __str__(self):
        lines = [
            f"device            {self.device}",
            f"volume            {' x '.join(map(str, self.volume_shape))} voxels (z, y, x)",
            f"block             {' x '.join(map(str, self.block))} + halo {' x '.join(map(str, self.halo))} per side",
            f"blocks            {self.n_blocks} in batches of {self.batch_size}",
            f"compute overhead  {self.overhead:.2f}x (network work per voxel written, relative to no halo)",
            f"memory            {self.memory_per_batch_bytes / MiB:.0f} MiB per batch of "
            f"{self.memory_budget_bytes / MiB:.0f} MiB allowed",
        ]
        if self.voxels_per_second:
            lines.append(f"throughput        {self.voxels_per_second / 1e6:.2f} million voxels/s (timed probe)")
            lines.append(f"expected time     {_fmt_seconds(self.expected_seconds)}")
        return "\n".join(lines)


def _fmt_seconds(s):
    if s is None:
        return "unknown"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


# ------------------------------------------------------------------------------- a plan as settings
def _device_of(name):
    """``torch.device(name)`` without asking whether the machine has it."""
    import torch

    try:
        return torch.device(str(name))
    except RuntimeError:
        return resolve_device(name)  # its error says which names it accepts


def _same_device(a, b) -> bool:
    a, b = _device_of(a), _device_of(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _parse_bytes(value) -> int:
    import dask

    return int(dask.utils.parse_bytes(value) if isinstance(value, str) else value)


def settings_from_plan(plan: InferencePlan, *, block, halo, batch_size, device, memory_limit):
    """``(block, halo, batch_size, device)`` of ``plan``, after checking that the keywords given beside
    it (``None``, or ``"auto"`` for the device, when not given) agree with it.

    Examples
    --------
    >>> plan = InferencePlan("cpu", (1, 64, 64), (0, 8, 8), 1, 4, (4, 64, 64), 1.5, 2**30, 2**20, None, None)
    >>> settings_from_plan(plan, block=None, halo=(0, 8, 8), batch_size=None, device="auto", memory_limit=None)
    ((1, 64, 64), (0, 8, 8), 1, 'cpu')
    >>> settings_from_plan(plan, block=(1, 32, 32), halo=None, batch_size=None, device="auto", memory_limit=None)
    Traceback (most recent call last):
    ...
    ValueError: block=(1, 32, 32) contradicts the plan, which has block (1, 64, 64): pass plan= or block=, not both (or make another plan with estimate(..., block=...))
    """
    if not isinstance(plan, InferencePlan):
        raise TypeError(f"plan must be an InferencePlan (from vemkit.predict.estimate), got {type(plan).__name__}")
    given = {
        "block": (triple(block, "block", minimum=1), tuple(plan.block)),
        "halo": (triple(halo, "halo"), tuple(plan.halo)),
        "batch_size": (None if batch_size is None else check_positive_int(batch_size, "batch_size"), plan.batch_size),
        "memory_limit": (None if memory_limit is None else _parse_bytes(memory_limit), plan.memory_budget_bytes),
    }
    for name, (value, planned) in given.items():
        if value is not None and value != planned:
            raise ValueError(f"{name}={value!r} contradicts the plan, which has {name} {planned!r}: pass plan= or "
                             f"{name}=, not both (or make another plan with estimate(..., {name}=...))")
    if device != "auto" and str(device) != plan.device and not _same_device(device, plan.device):
        raise ValueError(f"device={str(device)!r} contradicts the plan, made for {plan.device!r}: pass plan= or "
                         "device=, not both (or make another plan with estimate(..., device=...))")
    return tuple(plan.block), tuple(plan.halo), int(plan.batch_size), plan.device


def check_plan_volume(plan: InferencePlan | None, shape) -> None:
    """Refuse a plan made for a volume of another shape."""
    if plan is not None and tuple(plan.volume_shape) != tuple(shape):
        raise ValueError(f"the plan was made for a volume of shape {tuple(plan.volume_shape)}, but the image has "
                         f"shape {tuple(shape)}: make a plan for it with estimate(model, image)")


# ------------------------------------------------------------------------------- memory and cost
def _round_up(v, d):
    return int(-(-int(v) // int(d)) * int(d))


def _vol(region):
    return float(np.prod([b - a for a, b in region]))


def _padded_voxels(block, halo) -> float:
    """Voxels of a block read with its halo."""
    return float(np.prod(padded(block, halo)))


def _bytes_per_voxel(net: Network, prob_channels: int) -> float:
    """Peak working memory of one forward pass per input voxel (float32), an upper estimate, for
    networks that run whole (not :func:`~._network.unet_forward_kept`).

    For a U-Net the peak is at the finest decoder level: the skip, the upsampled tensor, their
    concatenation and two convolution outputs (6 x the first level's channels), plus every coarser
    skip still held and the outputs.
    """
    module = net.module
    channels = getattr(module, "channels", None)
    pools = getattr(module, "pools", None)
    if not channels:
        return 4.0 * 64  # unknown architecture: assume 64 float channels alive per voxel
    total = 6 * channels[0] + net.in_channels
    reduction = 1
    for c, p in zip(channels[1:], pools or []):
        reduction *= int(np.prod(p))
        total += 2 * c / reduction
    return 4.0 * (total + 2 * prob_channels)


def _kept_geometry(net: Network, block, halo):
    """For a vemkit U-Net: (the U-Net, sections per call, level sizes, need_out, need_in) of one block,
    see :func:`~._network.decoder_regions`; None for other networks."""
    unet = kept_unet(net.module)
    if unet is None:
        return None
    axes = list(zip(block, halo))[3 - net.ndim:]
    mult = int(block[0]) if net.ndim == 2 else 1  # a 2D network takes the block's sections as a batch
    spatial = [b + 2 * h for b, h in axes]
    if any(s % d for s, d in zip(spatial, unet.divisor)):
        return None
    sizes = level_sizes(unet, spatial)
    need_out, need_in = decoder_regions(unet, sizes, [(h, h + b) for b, h in axes])
    return unet, mult, sizes, need_out, need_in


def block_bytes(net: Network, block, halo, prob_channels: int) -> float:
    """Peak working memory (bytes, float32) of one block through the network, an upper estimate.

    With :func:`~._network.unet_forward_kept` the peak is usually the encoder's first level on the
    whole block with its halo (input + two convolution outputs); the decoder holds its concatenation
    and two convolution outputs only over the kept region and a small margin.
    """
    geo = _kept_geometry(net, block, halo)
    if geo is None:
        return _bytes_per_voxel(net, prob_channels) * _padded_voxels(block, halo)
    unet, mult, sizes, need_out, need_in = geo
    c = list(unet.channels)
    depth = len(unet.pools)
    P = [float(np.prod(sz)) for sz in sizes]
    held = net.in_channels * P[0]  # the input, held by the caller
    peak, skips = 0.0, 0.0
    for k in range(depth + 1):
        prev = c[k - 1] * P[k] if k else 0.0
        peak = max(peak, held + skips + prev + 2 * c[k] * P[k])
        if k < depth:
            skips += c[k] * _vol(need_in[k])
            peak = max(peak, held + skips + c[k] * P[k] * (1 + 1 / float(np.prod(unet.pools[k]))))
    for k in reversed(range(depth)):
        below = c[k + 1] * (P[k + 1] if k + 1 == depth else _vol(need_in[k + 1]))
        up_out = c[k] * _vol(need_out[k + 1]) * float(np.prod(unet.pools[k]))
        skips -= c[k] * _vol(need_in[k])
        b_in = _vol(need_in[k])
        peak = max(peak, held + skips + below + up_out + 3 * c[k] * b_in, held + skips + 3 * c[k] * b_in)
    peak = max(peak, held + (c[0] + 3 * prob_channels) * _vol(need_out[0]))
    return 4.0 * mult * peak


def block_cost(net: Network, block, halo) -> float:
    """Multiply-adds of one block through the network (for comparing blocks; a U-Net's levels
    weighted by their channels, other networks by the voxels they see)."""
    n_padded = _padded_voxels(block, halo)
    unet = getattr(net.module, "channels", None) and net.module
    if unet is None or not hasattr(unet, "kernels"):
        return n_padded
    geo = _kept_geometry(net, block, halo)
    c, ks, pools = list(unet.channels), unet.kernels, unet.pools
    depth = len(pools)
    if geo is not None:
        _, mult, sizes, need_out, need_in = geo
        P = [mult * float(np.prod(sz)) for sz in sizes]
        dec_vox = [mult * _vol(r) for r in need_in]
        up_vox = [mult * _vol(need_out[k + 1]) * float(np.prod(pools[k])) for k in range(depth)]
        head_vox = mult * _vol(need_out[0])
    else:
        P = [n_padded / float(np.prod(np.prod(pools[:k], axis=0))) if k else n_padded for k in range(depth + 1)]
        dec_vox, up_vox, head_vox = P[:depth], P[:depth], n_padded
    cost = 0.0
    cin = unet.in_channels
    for k in range(depth + 1):
        kk = float(np.prod(ks[k]))
        cost += P[k] * kk * (cin * c[k] + c[k] * c[k])
        cin = c[k]
    for k in range(depth):
        kk = float(np.prod(ks[k]))
        cost += dec_vox[k] * kk * 3 * c[k] * c[k] + up_vox[k] * c[k + 1] * c[k]
    return cost + head_vox * c[0] * unet.out_channels


def _overhead(net: Network, shape, block, halo) -> float:
    """Network work per voxel written relative to no halo, counting the part of edge blocks outside
    the volume."""
    unit = block_cost(net, net.divisor, (0, 0, 0)) / float(np.prod(net.divisor))  # per voxel, no halo
    n = [math.ceil(s / b) for s, b in zip(shape, block)]
    return float(np.prod(n)) * block_cost(net, block, halo) / (unit * float(np.prod(shape)))


def _memory_budget(device, memory_limit):
    import torch

    if memory_limit is not None:
        return _parse_bytes(memory_limit)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    return 1024 * MiB


def max_tensor_elements(net: Network, block, halo) -> float:
    """Elements of the largest activation of one block (the first level's concatenation of skip and
    upsampled features, or the widest full-resolution output), an upper estimate."""
    channels = getattr(net.module, "channels", None)
    widest = 2 * channels[0] if channels else 64
    return _padded_voxels(block, halo) * max(widest, net.in_channels, net.n_classes + len(net.extra_targets))


# ------------------------------------------------------------------------------------ block, batch
def _candidate_blocks(net: Network, shape):
    """Blocks to consider, smallest sides first: y and x from 64 to 2048, z as deep as the volume allows."""
    divisor = net.divisor
    Z, Y, X = shape
    sides = [64, 96, 128, 160, 192, 224, 256, 320, 384, 512, 768, 1024, 1536, 2048]
    if net.ndim == 2:
        depths = [1, 2, 4, 8, 16, 32]
    else:
        depths = sorted({_round_up(d, divisor[0]) for d in (8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)})
    for side in sides:
        by = min(_round_up(side, divisor[1]), _round_up(Y, divisor[1]))
        bx = min(_round_up(side, divisor[2]), _round_up(X, divisor[2]))
        for depth in depths:
            yield (min(depth, _round_up(Z, divisor[0])), by, bx)


def choose_block(net: Network, shape, halo, budget, prob_channels, device_type):
    """Largest affordable block with the least compute per voxel written; z as deep as the volume
    allows. On a GPU a block is at most :data:`GPU_BATCH_VOXELS` padded voxels, so that reading and
    writing overlap with compute. Returns (block, bytes, compute overhead)."""
    best = None
    for block in _candidate_blocks(net, shape):
        mem = block_bytes(net, block, halo, prob_channels)
        if mem > budget or max_tensor_elements(net, block, halo) > MAX_TENSOR_ELEMENTS:
            continue
        if device_type == "cuda" and _padded_voxels(block, halo) > GPU_BATCH_VOXELS and best is not None:
            continue
        overhead = _overhead(net, shape, block, halo)
        key = (round(overhead, 2), -float(np.prod(block)))
        if best is None or key < best[0]:
            best = (key, block, mem, overhead)
    if best is None:
        raise ValueError(
            f"no block fits the memory budget of {budget / MiB:.0f} MiB with halo {halo}: pass a smaller "
            "halo or a larger memory_limit"
        )
    return best[1], best[2], best[3]


class BlockPlan(NamedTuple):
    """What :func:`plan_blocks` decides."""

    block: tuple
    batch_size: int
    budget: int
    memory: int
    overhead: float
    n_blocks: int


def _gpu_batch_size(net: Network, block, halo, budget, mem_block, n_blocks) -> int:
    return int(max(1, min(16, budget // max(mem_block, 1), GPU_BATCH_VOXELS // _padded_voxels(block, halo),
                          MAX_TENSOR_ELEMENTS // max_tensor_elements(net, block, halo),
                          # at least 4 batches when the volume has the blocks for it
                          math.ceil(n_blocks / 4))))


def plan_blocks(net: Network, shape, device, halo, block, batch_size, memory_limit, prob_channels) -> BlockPlan:
    """Block (``None``: chosen by :func:`choose_block`) and batch (``None``: 1 on a CPU, as many as fit
    on a GPU, at most 16) for ``shape`` on ``device``, with their memory and compute overhead."""
    budget = _memory_budget(device, memory_limit)
    if block is None:
        block, mem_block, _ = choose_block(net, shape, halo, budget, prob_channels, device.type)
    else:
        mem_block = block_bytes(net, block, halo, prob_channels)
        elements = max_tensor_elements(net, block, halo)
        if elements > MAX_TENSOR_ELEMENTS:
            raise ValueError(
                f"block {tuple(block)} with halo {tuple(halo)} makes tensors of about {elements:.3g} elements, "
                "more than the 2**31 that GPU kernels index safely: pass a smaller block"
            )
    n_blocks = int(np.prod([math.ceil(s / b) for s, b in zip(shape, block)]))
    if batch_size is None:
        # on CPU a bigger block beats a bigger batch
        batch_size = _gpu_batch_size(net, block, halo, budget, mem_block, n_blocks) if device.type == "cuda" else 1
    return BlockPlan(tuple(block), int(batch_size), budget, int(mem_block * batch_size),
                     _overhead(net, shape, block, halo), n_blocks)


def check_layout(net: Network, shape, block, halo):
    """Blocks and halos must be multiples of the network's divisor so that pooling windows line up
    with those of whole-volume inference; a block must not be smaller than its halo."""
    if len(shape) != 3:
        raise ValueError(f"the image must be a 3D (z, y, x) volume, got shape {shape}")
    if net.ndim == 3 and shape[0] < 2:
        raise ValueError(f"the model is a 3D network but the image has a single section (shape {shape}); "
                         "use a 2D model for single sections")
    if net.ndim == 2 and halo[0] != 0:
        raise ValueError(f"a 2D network predicts section by section: the z halo must be 0, got {halo[0]}")
    for name, value in (("block", block), ("halo", halo)):
        bad = [f"{a}={v} (multiple of {d})" for a, v, d in zip("zyx", value, net.divisor) if v % d]
        if bad:
            raise ValueError(f"{name} {value} must be a multiple of the network's divisor {net.divisor} per "
                             f"axis: {', '.join(bad)}")
    if min(block) < 1:
        raise ValueError(f"block sides must be positive, got {block}")
    small = [a for a, b, h in zip("zyx", block, halo) if b < h]
    if small:
        raise ValueError(f"block {block} is smaller than the halo {halo} along {', '.join(small)}: each block "
                         "would compute more context than result; use a larger block")
