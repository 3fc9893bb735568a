"""The block runner: read a block with its halo, push a batch through the network, crop, write.

One :class:`Runner` per process (the local run, or each dask worker) holds the prepared network
(BatchNorm folded, channels-last, on its device) and the output arrays; :class:`Settings` is
everything it needs, small enough to pickle to workers. Not for: choosing blocks (:mod:`._planning`),
scheduling them (:mod:`._execute`) or creating the output (:mod:`._store`).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass

import numpy as np

from .._blockwise import read_with_halo
from .._checks import check_finite_block
from .._device import resolve_device
from .._intensity import apply_mapping
from ._network import Network, fuse_conv_bn, kept_unet, unet_forward_kept

__all__ = ["Settings", "SyncSource", "Runner", "release_freed_memory", "time_batch"]


class SyncSource:
    """Slicing a dask array computes it in the calling thread (readers run in our own threads or on
    dask workers, where nested scheduling must not happen)."""

    def __init__(self, data):
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = data.dtype

    def __getitem__(self, item):
        part = self.data[item]
        if hasattr(part, "compute"):
            return part.compute(scheduler="synchronous")
        return np.asarray(part)


@dataclass
class Settings:
    """Everything a process needs to run blocks (pickled to dask workers)."""

    block: tuple
    halo: tuple
    batch_size: int
    device: str
    amp: str
    tta: bool
    prob_dtype: str
    write_probabilities: bool
    write_labels: bool
    low: float
    scale: float
    prob_path: str | None
    labels_path: str | None
    compile: bool = False
    threads: int | None = None
    lut: tuple | None = None  # (xp, fp): grey values through np.interp first (histogram normalisation)


class Runner:
    """Runs groups of blocks in one process: read (with halo) -> network -> crop -> write."""

    def __init__(self, net: Network, settings: Settings, source):
        import torch

        self.net, self.s = net, settings
        self.device = resolve_device(settings.device)
        self.source = source if isinstance(source, SyncSource) else SyncSource(source)
        module = fuse_conv_bn(net.module).to(self.device)
        # channels-last: cuDNN's tensor-core kernels and oneDNN's CPU kernels both prefer it (no reorder
        # of every activation before and after each convolution)
        self.memory_format = None
        if self.device.type in ("cuda", "cpu"):
            self.memory_format = torch.channels_last_3d if net.ndim == 3 else torch.channels_last
            module = module.to(memory_format=self.memory_format)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        # a vemkit U-Net runs its decoder only where the block's result is kept (not in the halo)
        self.kept = None if settings.compile else kept_unet(module)
        if settings.compile:
            module = torch.compile(module)
        self.module = module
        self._arrays = None

    # -- I/O
    def arrays(self):
        import zarr

        if self._arrays is None:
            self._arrays = (
                zarr.open_array(self.s.prob_path, mode="r+") if self.s.prob_path else None,
                zarr.open_array(self.s.labels_path, mode="r+") if self.s.labels_path else None,
            )
        return self._arrays

    def read(self, start):
        """The raw block at ``start`` with its halo (mirrored at the volume's borders)."""
        region = tuple(slice(a, a + b) for a, b in zip(start, self.s.block))
        # raw grey values (uint8 is 4x smaller than float32 while waiting in the prefetch queue and on
        # its way to the GPU); :meth:`infer` normalises them on the device
        data = np.ascontiguousarray(read_with_halo(self.source, region, self.s.halo))
        # NaN or infinity would spread through the network's convolutions into wrong labels all around
        check_finite_block(data, "the image", region, self.s.halo, self.source.shape)
        if self.s.lut is not None:  # histogram normalisation: a monotone look-up, then low = 0, scale = 1
            data = apply_mapping(data, 0.0, 1.0, self.s.lut)
        if not data.dtype.isnative:  # torch takes native byte order only
            data = data.astype(data.dtype.newbyteorder("="))
        return data

    def write(self, start, probs, labels):
        """Write one block's results, cropped where the block leaves the volume."""
        prob_arr, lab_arr = self.arrays()
        shape = self.source.shape
        stop = tuple(min(a + b, n) for a, b, n in zip(start, self.s.block, shape))
        crop = tuple(slice(0, b - a) for a, b in zip(start, stop))
        region = tuple(slice(a, b) for a, b in zip(start, stop))
        if prob_arr is not None:
            prob_arr[(slice(None), *region)] = probs[(slice(None), *crop)]
        if lab_arr is not None:
            lab_arr[region] = labels[crop]

    # -- compute
    def _network_input(self, batch):
        """(B, Z, Y, X) raw blocks -> normalised float32 network input on the device, and the spatial
        dimensions of that input."""
        import torch

        s = self.s
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        # (v - low) * scale in float32, as numpy would, on the device
        x = x.to(torch.float32, copy=x.dtype == torch.float32).sub_(float(np.float32(s.low))).mul_(float(np.float32(s.scale)))
        if self.net.ndim == 3:
            x, dims = x[:, None], (2, 3, 4)
        else:  # sections of each block become the batch
            x, dims = x.reshape(x.shape[0] * x.shape[1], 1, *x.shape[2:]), (2, 3)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        return x, dims

    def _logits(self, x, keep):
        """Float32 logits of the kept region of ``x`` (with mixed precision where ``amp`` says)."""
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.s.amp)
        with torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            if self.kept is not None:
                y = unet_forward_kept(self.kept, x, keep, self.memory_format)
            else:
                y = self.module(x)
                y = y[(slice(None), slice(None), *(slice(a, b) for a, b in keep))]
        return y.float()

    def _softmax(self, y):
        """Class probabilities of logits ``y``: softmax over the classes, a sigmoid for extra targets."""
        import torch

        n_classes = self.net.n_classes
        # channels-last probabilities: the argmax over classes then reads contiguous memory
        # (10x faster on CPU than over a channel-first tensor)
        p = torch.empty_like(y, memory_format=self.memory_format or torch.contiguous_format)
        p[:, :n_classes] = torch.softmax(y[:, :n_classes], dim=1)
        if y.shape[1] > n_classes:
            p[:, n_classes:] = torch.sigmoid(y[:, n_classes:])
        return p

    def _probabilities(self, x, dims):
        """Probabilities of the blocks inside their halo, averaged over the flips with ``tta``."""
        import torch

        flips = [()]
        if self.s.tta:
            flips = [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]
        # the block inside its halo, per spatial axis of the network's input
        kept_axes = list(zip(self.s.halo, self.s.block))[3 - len(dims):]
        keep = tuple((h, h + b) for h, b in kept_axes)
        total = None
        for flip in flips:
            xin = torch.flip(x, flip) if flip else x
            sizes = xin.shape[2:]
            k = tuple((n - b, n - a) if d + 2 in flip else (a, b) for d, ((a, b), n) in enumerate(zip(keep, sizes)))
            y = self._logits(xin, k)
            if flip:
                y = torch.flip(y, flip)
            p = self._softmax(y)
            del y
            total = p if total is None else total.add_(p)
        if len(flips) > 1:
            total /= len(flips)
        return total

    def _outputs(self, total, B):
        """(probs (B, C, z, y, x) in ``prob_dtype``, labels (B, z, y, x)) as numpy, each None when not written."""
        import torch

        s, net = self.s, self.net
        labels = None
        if s.write_labels:
            ltype = torch.uint8 if net.n_classes <= 256 else torch.int16
            labels = total[:, : net.n_classes].argmax(dim=1).to(ltype)
            if net.ndim == 2:  # (B * z, y, x) -> (B, z, y, x)
                labels = labels.reshape(B, -1, *labels.shape[1:])
            labels = labels.cpu().numpy()
        if net.ndim == 2:  # (B * z, C, y, x) -> (B, C, z, y, x)
            total = total.reshape(B, -1, *total.shape[1:]).transpose(1, 2)
        probs = None
        if s.write_probabilities:
            if s.prob_dtype == "uint8":
                probs = (total * 255).round_().to(torch.uint8)
            else:
                probs = total.to(getattr(torch, s.prob_dtype))
            probs = probs.cpu().numpy()
        return probs, labels

    def infer(self, batch):
        """(B, Z, Y, X) raw blocks with halo (from :meth:`read`) -> cropped (probs (B, C, z, y, x),
        labels (B, z, y, x))."""
        import torch

        with torch.inference_mode():
            x, dims = self._network_input(batch)
            total = self._probabilities(x, dims)
            del x
            return self._outputs(total, batch.shape[0])

    def run_group(self, starts):
        """Read, infer and write one group of blocks (used by dask workers)."""
        batch = np.stack([self.read(st) for st in starts])
        probs, labels = self.infer(batch)
        for i, st in enumerate(starts):
            self.write(st, None if probs is None else probs[i], None if labels is None else labels[i])


def time_batch(runner: Runner, batch_size: int) -> float:
    """Seconds of one batch of ``batch_size`` copies of the first block, after a warm-up batch
    (allocator, cuDNN autotuning)."""
    import torch

    batch = np.stack([runner.read((0, 0, 0))] * batch_size)
    runner.infer(batch)
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    t0 = time.perf_counter()
    runner.infer(batch)
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    return time.perf_counter() - t0


def release_freed_memory():
    """Hand memory freed by the last batch back to the system (glibc keeps freed heap memory for
    reuse, and after the first large free it serves allocations of up to 32 MB from the heap; between
    batches that is a few hundred MB of RSS that the next batch's activations come on top of). What
    dask.distributed's workers do to trim unmanaged memory; a no-op where there is no glibc."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None
