"""Pictures for neuron segmentation (public through :mod:`vemkit.neurons`): affinities, split and
merge errors on a section, and the split/merge trade-off of a threshold sweep.

Not for: computing anything a figure does not need (:mod:`vemkit._affinities`,
:mod:`vemkit._agglomeration`, :mod:`vemkit.metrics`).
"""

from __future__ import annotations

import numpy as np

from ._affinities import affinities
from ._colours import LABEL_PALETTE

__all__ = ["error_voxels", "plot_affinities", "plot_errors", "plot_sweep"]


def _label_rgb(labels):
    """Instance ids as colours (0 black), the palette cycled by id."""
    from matplotlib.colors import to_rgb

    pal = np.array([to_rgb(c) for c in LABEL_PALETTE])
    rgb = pal[(np.asarray(labels, np.int64) % len(pal))]
    rgb[np.asarray(labels) == 0] = 0
    return rgb


def error_voxels(seg, truth):
    """Where a segmentation splits and merges, voxel by voxel: ``(split, merge)`` boolean arrays.

    ``split``: voxels of a true object outside the segment that holds most of it (the object was cut).
    ``merge``: voxels of a segment outside the true object that fills most of it (objects were fused).
    Truth id 0 is ignored.

    Examples
    --------
    >>> truth = np.array([[[1, 1, 1, 2, 2, 2]]])
    >>> split, merge = error_voxels(np.array([[[1, 1, 3, 3, 3, 3]]]), truth)
    >>> split[0, 0].astype(int).tolist(), merge[0, 0].astype(int).tolist()
    ([0, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0])
    """
    seg, truth = np.asarray(seg), np.asarray(truth)
    valid = truth != 0
    s, t = seg[valid].astype(np.int64), truth[valid].astype(np.int64)
    pairs, counts = np.unique(np.stack([t, s]), axis=1, return_counts=True)

    def main_partner(keys, partners):
        order = np.lexsort((-counts, keys))
        first = np.ones(order.size, bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        return dict(zip(keys[order][first].tolist(), partners[order][first].tolist()))

    main_seg = main_partner(pairs[0], pairs[1])
    main_truth = main_partner(pairs[1], pairs[0])
    split = np.zeros(seg.shape, bool)
    merge = np.zeros(seg.shape, bool)
    split[valid] = s != np.vectorize(main_seg.get, otypes=[np.int64])(t)
    merge[valid] = t != np.vectorize(main_truth.get, otypes=[np.int64])(s)
    return split, merge


def plot_affinities(image, labels, offsets, z: int, *, channels=None, title=None):
    """One section: the image, the labels, and the affinities (white 1, black 0, red masked) of some
    offsets (default: the y nearest neighbour and the longest y offset)."""
    from .viz import figure

    offsets = [tuple(o) for o in offsets]
    if channels is None:
        ys = [i for i, o in enumerate(offsets) if o[0] == 0 and o[2] == 0]
        channels = [ys[0], ys[-1]] if len(ys) > 1 else ys
    aff, mask = affinities(np.asarray(labels), offsets)
    fig = figure((3.2 * (2 + len(channels)), 3.4))
    panels = [(np.asarray(image)[z], "image", "gray"), (_label_rgb(np.asarray(labels)[z]), "instance labels", None)]
    for c in channels:
        rgb = np.repeat(aff[c, z][..., None], 3, axis=2)
        rgb[mask[c, z] == 0] = (0.85, 0.1, 0.1)
        panels.append((rgb, f"affinity {offsets[c]}", None))
    for k, (arr, name, cmap) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(arr, cmap=cmap, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_errors(image, seg, truth, z: int, *, title=None):
    """One section: truth, segmentation, and the image with split (blue) and merge (orange) voxels."""
    from .viz import figure

    split, merge = error_voxels(seg, truth)
    img = np.asarray(image)[z].astype(float)
    lo, hi = np.percentile(img, [1, 99])
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    over = np.repeat(grey[..., None], 3, axis=2)
    over[split[z]] = 0.4 * over[split[z]] + 0.6 * np.array([0.1, 0.4, 1.0])
    over[merge[z]] = 0.4 * over[merge[z]] + 0.6 * np.array([1.0, 0.55, 0.0])
    fig = figure((10, 3.6))
    for k, (arr, name) in enumerate([(_label_rgb(np.asarray(truth)[z]), "ground truth"),
                                     (_label_rgb(np.asarray(seg)[z]), "segmentation"),
                                     (over, "split (blue) / merge (orange)")]):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(f"{name}, z={z}", fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sweep(rows, *, label="threshold", reference=None):
    """VOI merge against VOI split over a threshold sweep (one point per threshold), and ARAND."""
    from .viz import figure

    fig = figure((9, 3.6))
    ax = fig.add_subplot(1, 2, 1)
    splits = [r["voi_split"] for r in rows]
    merges = [r["voi_merge"] for r in rows]
    ax.plot(splits, merges, "o-", color="C0")
    for r, x, y in zip(rows, splits, merges):
        ax.annotate(f"{r['threshold']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if reference:
        for name, r in reference.items():
            ax.plot([r["voi_split"]], [r["voi_merge"]], "s", label=name)
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("VOI split (bits): false splits")
    ax.set_ylabel("VOI merge (bits): false merges")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot([r["threshold"] for r in rows], [r["arand"] for r in rows], "o-", color="C1")
    ax2.set_xlabel(label)
    ax2.set_ylabel("adapted Rand error")
    fig.tight_layout()
    return fig
