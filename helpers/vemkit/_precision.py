"""Numerical precision (automatic mixed precision, memory format) for inference and training.

The one place that decides between float32, bfloat16 and float16 for a device: prediction
(:mod:`vemkit.predict`) and every training loop ask :func:`resolve_amp`. Not for: choosing the
device itself (:func:`vemkit._device.resolve_device`).
"""

from __future__ import annotations

from ._device import cpu_has_bf16_matrix_units

__all__ = ["resolve_amp", "training_precision", "AMP_CHOICES"]

#: What ``amp=`` accepts (the command line's ``--amp``): ``"auto"`` picks per device.
AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def resolve_amp(amp, device) -> str:
    """The autocast precision to run on ``device``: ``"bf16"``, ``"fp16"`` or ``"none"`` (float32).

    ``"auto"`` (or ``True``) gives bfloat16 on a CUDA device that supports it (else float16), bfloat16
    on a CPU with bfloat16 matrix units (AMX; emulated bf16 is slower than float32 elsewhere), and
    float32 on other devices. ``False``, ``None``, ``"none"`` and ``"off"`` give float32.

    Parameters
    ----------
    amp : str or bool or None
    device : torch.device

    Raises
    ------
    ValueError
        For a precision the device cannot run (``"fp16"`` on a CPU, any explicit one on MPS) or an
        unknown value.

    Examples
    --------
    >>> import torch
    >>> resolve_amp(False, torch.device("cpu"))
    'none'
    >>> resolve_amp("bf16", torch.device("cpu"))
    'bf16'
    """
    import torch

    if amp in (False, None, "none", "off"):
        return "none"
    if device.type == "cpu":
        if amp in ("auto", True):
            return "bf16" if cpu_has_bf16_matrix_units() else "none"
        if amp == "bf16":
            return "bf16"
        raise ValueError(f"amp={amp!r} is not available on the CPU; use 'auto', 'bf16' or False")
    if device.type != "cuda":
        if amp in ("auto", True):
            return "none"
        raise ValueError(f"amp={amp!r} needs a CUDA device (or 'bf16' on a CPU); this run is on {device}")
    if amp in ("auto", True):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or False, got {amp!r}")
    return amp


def training_precision(amp, device, ndim: int):
    """How a training loop runs on ``device``: ``(amp name, autocast dtype or None, memory format,
    GradScaler or None)``.

    Channels-last on the CPU, where oneDNN's convolutions (and AMX bfloat16) skip a reorder of every
    activation, the standard layout elsewhere; the autocast dtype follows :func:`resolve_amp`; float16
    gets a loss scaler.

    Examples
    --------
    >>> import torch
    >>> training_precision(False, torch.device("cpu"), 2)[:3]
    ('none', None, torch.channels_last)
    """
    import torch

    name = resolve_amp(amp, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    if device.type == "cpu":
        fmt = torch.channels_last_3d if ndim == 3 else torch.channels_last
    else:
        fmt = torch.contiguous_format
    scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None
    return name, dtype, fmt, scaler
