"""Separable Gaussian filtering as matrix products, and closed-form eigenvalues, in torch (float32).

The numerical core of :mod:`vemkit.features`: sampled Gaussian kernels and their exact first and second
derivatives (:func:`derivative_kernels`), 1D correlations written as batched GEMMs over strided views
(:func:`conv_rows` along rows, :func:`conv_t` along the contiguous axis through a banded tile matrix,
transposing as it goes), and the eigenvalues of symmetric 2x2 and 3x3 matrices field by field
(:func:`eig2`, :func:`eig3`). Not for: choosing scales or features, or scheduling the work
(:mod:`vemkit._feature_engine`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DOG_RATIO",
    "MIN_KERNEL_SIGMA",
    "OUTER_RATIO",
    "TILE",
    "WINDOW",
    "banded_matrix",
    "conv_rows",
    "conv_t",
    "derivative_kernels",
    "eig2",
    "eig3",
    "gaussian_kernel",
    "kernel_radius",
    "round_up",
]

WINDOW = 3.5  # kernel radius in sigmas (ilastik's window_size)
DOG_RATIO = 0.66  # DoG = G(sigma) - G(0.66 sigma)
OUTER_RATIO = 0.5  # structure tensor outer scale = 0.5 * inner scale
MIN_KERNEL_SIGMA = 0.1  # below this a sampled Gaussian is a delta; derivatives become central differences
TILE = 16  # outputs per banded-matrix tile


# -------------------------------------------------------------------------------------------- kernels


def kernel_radius(sigma: float) -> int:
    return max(1, int(math.ceil(WINDOW * sigma + 0.5)))


def derivative_kernels(sigma: float, radius: int, factor: float = 1.0) -> dict:
    """Correlation kernels of length ``2 * radius + 1``: ``g`` (sums to 1), ``d1`` (exact slope on a
    ramp), ``d2`` (zero sum, exact curvature on a parabola), scaled by ``factor ** order``."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    s = max(float(sigma), MIN_KERNEL_SIGMA)
    g = np.exp(-0.5 * (t / s) ** 2)
    m0, m2, m4 = g.sum(), (t**2 * g).sum(), (t**4 * g).sum()
    a = 2.0 * m0 / (m0 * m4 - m2 * m2)  # d2 = (a t^2 + b) g: sum = 0 and sum t^2 d2 = 2
    b = -a * m2 / m0
    return {"g": g / m0, "d1": t * g / m2 * factor, "d2": (a * t * t + b) * g * factor**2}


def gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / max(float(sigma), MIN_KERNEL_SIGMA)) ** 2)
    return g / g.sum()


# ------------------------------------------------------------------------------------ GEMM convolution


def conv_rows(torch, x, bank, out):
    """Correlate the first axis of ``x`` (L, C) (row stride any, columns contiguous) with each kernel
    of ``bank`` (M, k), writing ``out`` (L - k + 1, M, C): one batched GEMM over a strided view."""
    k = bank.shape[1]
    L, C = x.shape
    s = x.stride(0)
    torch.matmul(bank, x.as_strided((L - k + 1, k, C), (s, s, 1)), out=out)


def banded_matrix(torch, kernel, device):
    """Banded matrix (B, B + k - 1) whose rows are the kernel shifted by one: one output tile."""
    k = len(kernel)
    t = np.zeros((TILE, TILE + k - 1), np.float32)
    for b in range(TILE):
        t[b, b : b + k] = kernel
    return torch.from_numpy(t).to(device)


def conv_t(torch, src, band, n_out, out):
    """Correlate the contiguous axis of ``src`` (R, C) (any row stride) with a kernel and transpose:
    ``out`` (n_out, R) gets ``out[c, r] = sum_j kernel[j] * src[r, c + j]``, ``n_out`` a multiple of the
    tile size. One batched GEMM: banded tile matrix (B, B + k - 1) times a strided, transposed view."""
    R = src.shape[0]
    K = band.shape[1]
    v = src.as_strided((n_out // TILE, K, R), (TILE, 1, src.stride(0)))
    torch.matmul(band, v, out=out.view(n_out // TILE, TILE, R))
    return out


# ------------------------------------------------------------------------------------------ eigenvalues


def eig2(torch, a, b2, c, outs, pool, trace_out=None):
    """Eigenvalues (descending) of [[a, b], [b, c]] into ``outs``, given ``b2 = 2 b`` (the factor is
    folded into a kernel): ``(tr +- hypot(a - c, 2 b)) / 2`` in five passes. ``trace_out`` gets a + c."""
    tr = torch.add(a, c, out=trace_out if trace_out is not None else pool("tr", *a.shape))
    d = torch.sub(a, c, out=pool("dif", *a.shape))
    torch.addcmul(d.mul_(d), b2, b2, out=d).sqrt_()  # hypot(d, b2); torch.hypot is not vectorised
    torch.lerp(tr, d, 0.5, out=outs[0])
    torch.sub(tr, outs[0], out=outs[1])


def eig3(torch, a, b, c, d, e, f, outs):
    """Eigenvalues (descending) of [[a, d, e], [d, b, f], [e, f, c]] into ``outs``, by the
    trigonometric closed form (Smith 1961); repeated eigenvalues (p = 0) are safe. Computed in float64
    where the device has it: near-equal eigenvalues make the arccos ill-conditioned in float32."""
    if a.device.type != "mps":
        a, b, c, d, e, f = (t.double() for t in (a, b, c, d, e, f))
    q = (a + b + c) / 3.0
    aq, bq, cq = a - q, b - q, c - q
    p = torch.sqrt((aq * aq + bq * bq + cq * cq + 2.0 * (d * d + e * e + f * f)) / 6.0)
    det = aq * (bq * cq - f * f) - d * (d * cq - f * e) + e * (d * f - bq * e)
    r = det / (2.0 * (p * p * p).clamp_min(1e-30))
    phi = torch.acos(r.clamp_(-1.0, 1.0)) / 3.0
    ev0 = q + 2.0 * p * torch.cos(phi)
    ev2 = q + 2.0 * p * torch.cos(phi + (2.0 * math.pi / 3.0))
    outs[0].copy_(ev0)
    torch.clamp(3.0 * q - ev0 - ev2, min=ev2, max=ev0, out=outs[1])  # rounding must not break the order
    outs[2].copy_(ev2)


def round_up(n: int) -> int:
    """``n`` rounded up to a multiple of the tile size."""
    return -(-n // TILE) * TILE
