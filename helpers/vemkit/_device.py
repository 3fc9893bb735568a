"""Device choice in one place: ``"auto"`` picks CUDA, then MPS, then CPU; a missing device is an error.

Not for: moving data (callers do ``tensor.to(device)``).
"""

from __future__ import annotations

__all__ = ["cpu_has_bf16_matrix_units", "resolve_device"]


def resolve_device(device="auto"):
    """Return a :class:`torch.device` for ``device``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Raises
    ------
    ValueError
        If an explicitly requested device is not available here: vemkit never falls back silently.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine; "
                             "use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} was requested but Apple MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda[:N]' or 'mps'")
    return dev


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX tiles).

    Only there does CPU mixed precision pay: on the 2-core AMX Xeon vemkit is developed on
    (``benchmarks/cpu_precision.py``), a training step of the small 2D U-Net (batch 4 of 256 x 256) took
    0.21 s in bfloat16 against 0.47 s in float32, one of the anisotropic 3D U-Net 1.06 s against 3.10 s,
    and prediction ran 2.6x faster; without AMX, bfloat16 on a CPU is emulated and slower than float32.

    Returns
    -------
    bool

    Examples
    --------
    >>> isinstance(cpu_has_bf16_matrix_units(), bool)
    True
    """
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x; absent: assume no AMX
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means no usable AMX
        return False
