"""Intensity histogram of a volume from a bounded random sample (:func:`histogram`), and the sampler
(:func:`_sample_values`) that the viewer's display slider also uses.

Not for: choosing a display range from shown slices (:func:`vemkit._display.contrast_limits`).
"""

from __future__ import annotations

import math

import numpy as np

from .._display import as_display_array, compute, is_dask
from ._common import figure

def _sample_values(image, sample, seed=0):
    """At most ``sample`` voxel values: all of a small volume, else random single-section patches.

    Patches are up to 128 x 128 voxels; on a dask array each lies inside one chunk, so every patch
    reads exactly one chunk. Returns the values and the number of patches read (0: whole volume).
    """
    shape = tuple(int(s) for s in image.shape)
    total = math.prod(shape)
    rng = np.random.default_rng(seed)
    if total <= sample:
        return compute(image)[0].ravel(), 0
    if is_dask(image):
        starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in image.chunks]
        sizes = [np.asarray(c) for c in image.chunks]
    else:
        starts, sizes = [[0], [0], [0]], [np.array([n]) for n in shape]
    keys, got = [], 0
    while got < sample:
        b = [int(rng.integers(len(s))) for s in sizes]
        (z0, y0, x0), (nz, ny, nx) = [s[i] for s, i in zip(starts, b)], [s[i] for s, i in zip(sizes, b)]
        py, px = min(int(ny), 128), min(int(nx), 128)
        k = int(z0 + rng.integers(nz))
        j = int(y0 + rng.integers(ny - py + 1))
        i = int(x0 + rng.integers(nx - px + 1))
        keys.append((k, slice(j, j + py), slice(i, i + px)))
        got += py * px
    values = np.concatenate([p.ravel() for p in compute(*[image[key] for key in keys])])
    if values.size > sample:
        values = rng.choice(values, size=sample, replace=False)
    return values, len(keys)


def histogram(
    volume,
    *,
    bins=256,
    sample=1_000_000,
    percentiles=(1, 50, 99),
    log=False,
    seed=0,
    ax=None,
    title=None,
):
    """Intensity histogram of a volume from a bounded random sample, with percentile markers.

    A volume with at most ``sample`` voxels is read whole; a larger one is sampled with random
    single-section patches of up to 128 x 128 voxels spread over the whole volume (about
    ``sample / 16384`` patches, whatever the volume's size; on a lazy volume each patch lies within
    one chunk, so that is also the number of chunks read).

    Parameters
    ----------
    volume : Volume or array of shape (Z, Y, X)
        The volume (see :func:`orthoslices`).
    bins : int
        Number of bins; integer data with fewer distinct possible values gets one bin per value.
    sample : int
        Largest number of voxels to read.
    percentiles : sequence of float
        Percentiles marked with a line and their value (e.g. the 1-99 range that
        ``contrast="auto"`` uses).
    log : bool
        Logarithmic count axis.
    seed : int
        Seed of the random sample (the same seed gives the same histogram).
    ax : matplotlib.axes.Axes, optional
        Draw into this axes instead of a new figure.
    title : str, optional
        Axes title (default: what was sampled).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the histogram (``ax.figure`` when ``ax`` was given).

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).normal(120, 20, (40, 256, 256)).astype(np.float32)
    >>> fig = histogram(vol, sample=100_000)
    >>> fig.axes[0].get_title()
    'intensity · 100,000 of 2,621,440 voxels in 7 random patches'
    """
    if int(sample) < 1:
        raise ValueError(f"sample must be a positive number of voxels, got {sample}")
    image, _, source = as_display_array(volume, "volume")
    values, patches = _sample_values(image, int(sample), seed)
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        raise ValueError("volume has no finite values in the sample; nothing to draw")
    lo, hi = float(values.min()), float(values.max())
    if values.dtype.kind in "iub" and hi - lo + 1 <= bins:
        edges = np.arange(lo, hi + 2) - 0.5
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, int(bins) + 1)
    counts, edges = np.histogram(values, bins=edges)
    if ax is None:
        fig = figure((6.4, 3.4))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ax.stairs(counts, edges, fill=True, color="#4a6fa5", alpha=0.85)
    if log:
        ax.set_yscale("log")
    marks = np.percentile(values, list(percentiles)) if len(percentiles) else []
    top = counts.max() if counts.size else 1
    for q, v in zip(percentiles, marks):
        ax.axvline(v, color="#d62728", lw=0.9, ls="--", gid=f"p{q:g}")
        ax.annotate(f"p{q:g} = {v:.4g}", (v, top), xytext=(2, -2), textcoords="offset points",
                    rotation=90, va="top", ha="left", fontsize=7, color="#d62728",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})  # fmt: skip
    total = math.prod(int(s) for s in image.shape)
    if patches == 0:
        default = f"intensity · all {total:,} voxels"
    else:
        default = f"intensity · {values.size:,} of {total:,} voxels in {patches} random patch{'es' if patches > 1 else ''}"
    ax.set_title(title if title is not None else default, fontsize=9)
    ax.set_xlabel("intensity" + ("" if source in (None, "<array>") else f" ({source})"), fontsize=8)
    ax.set_ylabel("voxels", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.margins(x=0.01)
    if fig.get_layout_engine() is None and len(fig.axes) == 1:
        fig.set_layout_engine("constrained")
    return fig
