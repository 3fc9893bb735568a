"""Grids of panels: evenly spaced xy sections of a volume (:func:`section_grid`) and the 2D maps of
one section, e.g. feature channels (:func:`channel_grid`).

Not for: orthogonal planes (:mod:`vemkit.viz._ortho`).
"""

from __future__ import annotations

import math

import numpy as np

from .._display import as_display_array, check_contrast, compute, contrast_limits
from ._common import (
    _add_overlay_legend,
    _add_scale_bar,
    _check_overlay,
    _check_overlay_names,
    _format_length,
    _heading,
    _overlay_rgba,
    _voxel_text,
    figure,
)


def section_grid(
    volume,
    n=6,
    *,
    voxel_size=None,
    overlay=None,
    overlay_kind="labels",
    overlay_alpha=0.4,
    contrast="auto",
    cmap="gray",
    ncols=None,
    title=None,
    figsize=None,
    overlay_names=None,
):
    """``n`` evenly spaced xy sections side by side, to spot drift, blank or missing sections.

    All panels share one display range, so a drift in staining shows as a change in brightness;
    each panel gives its section's mean intensity and a blank (constant) section is flagged in red.
    Only the ``n`` sections are computed.

    Parameters
    ----------
    volume : Volume or array of shape (Z, Y, X)
        The volume (see :func:`orthoslices`).
    n : int
        How many sections, from the first to the last (fewer when the volume has fewer).
    voxel_size : sequence of 3 float, optional
        Voxel size ``(z, y, x)`` in nm, overriding the volume's own; sets the pixel aspect, the
        scale bar and the depth given for each section.
    overlay, overlay_kind, overlay_alpha
        As in :func:`orthoslices`.
    contrast : None, "auto" or (float, float)
        Shared display range: min-max (``None``), 1-99 percentiles (``"auto"``) of the shown
        sections, or as given.
    cmap : str
        Matplotlib colormap.
    ncols : int, optional
        Panels per row (default: 3 up to 9 sections, then 4).
    title : str, optional
        Title above the grid (default: the source and voxel size).
    figsize : (float, float), optional
        Figure size in inches.
    overlay_names : dict of {int: str}, optional
        Names of label ids, shown as a colour legend right of the grid (see :func:`orthoslices`).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per section, labelled ``"z=<index>"``.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).normal(100, 10, (30, 32, 48))
    >>> fig = section_grid(vol, n=4, voxel_size=(30, 5, 5))
    >>> [ax.get_label() for ax in fig.axes]
    ['z=0', 'z=10', 'z=19', 'z=29']
    """
    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    contrast = check_contrast(contrast)
    overlay_names = _check_overlay_names(overlay_names, overlay_kind)
    image, vs, source = as_display_array(volume, "volume", voxel_size=voxel_size)
    shape = tuple(int(s) for s in image.shape)
    ov = _check_overlay(overlay, shape, vs, overlay_kind)
    Z, Y, X = shape
    vz, vy, vx = vs if vs is not None else (1.0, 1.0, 1.0)
    zs = np.unique(np.round(np.linspace(0, Z - 1, int(n))).astype(int)).tolist()
    arrays = [image[k] for k in zs] + ([ov[k] for k in zs] if ov is not None else [])
    computed = compute(*arrays)
    sections, ov_sections = computed[: len(zs)], computed[len(zs) :] or [None] * len(zs)
    vmin, vmax = contrast_limits(sections, contrast)

    count = len(zs)
    ncols = int(ncols) if ncols else (min(count, 3) if count <= 9 else 4)
    fig, grid = _grid_figure(count, ncols, (Y * vy) / (X * vx), figsize)
    for i, (k, sec, osec) in enumerate(zip(zs, sections, ov_sections)):
        ax = fig.add_subplot(grid[i // ncols, i % ncols], label=f"z={k}")
        ax.imshow(sec, cmap=cmap, vmin=vmin, vmax=vmax, aspect=vy / vx, interpolation="antialiased")
        if osec is not None:
            ax.imshow(_overlay_rgba(osec, overlay_kind, overlay_alpha), aspect=vy / vx, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        depth = f" ({_format_length(k * vz)})" if vs is not None else ""
        _title_section(ax, sec, f"z {k}{depth}")
        if vs is not None and i == 0:
            _add_scale_bar(ax, X, Y, vx)
    heading = _heading(title, source)
    sub = f"{count} of {Z} sections · {_voxel_text(vs)} · display {vmin:.4g} to {vmax:.4g}"
    fig.suptitle(f"{heading}\n{sub}" if heading else sub, fontsize=9, y=1 - 0.08 / fig.get_figheight(), va="top")
    if overlay_names is not None and ov is not None:
        _add_overlay_legend(fig, overlay_names, overlay_alpha, (1.0, 0.5), loc="center left")
    return fig


def _grid_figure(count, ncols, ratio, figsize):
    """A figure and gridspec for ``count`` panels of height/width ``ratio``, ``ncols`` per row."""
    nrows = math.ceil(count / ncols)
    side, wgap, head, foot, hgap = 0.15, 0.1, 0.75, 0.1, 0.3  # inches
    if figsize is None:
        panel_w = min(2.8, 11.0 / ncols, 3.2 / ratio)
        figsize = (2 * side + ncols * panel_w + (ncols - 1) * wgap,
                   head + foot + nrows * panel_w * ratio + (nrows - 1) * hgap)  # fmt: skip
    fig_w, fig_h = (float(f) for f in figsize)
    panel_w = min((fig_w - 2 * side - (ncols - 1) * wgap) / ncols, (fig_h - head - foot - (nrows - 1) * hgap) / nrows / ratio)
    if panel_w <= 0:
        raise ValueError(f"figsize {figsize} is too small for {count} sections")
    fig = figure((fig_w, fig_h))
    grid = fig.add_gridspec(nrows, ncols, left=side / fig_w, right=1 - side / fig_w, bottom=foot / fig_h,
                            top=1 - head / fig_h, wspace=wgap / panel_w, hspace=hgap / (panel_w * ratio))  # fmt: skip
    return fig, grid


def _title_section(ax, section, where):
    """Title a section's panel with its mean intensity, or a red BLANK when it is constant."""
    finite = section[np.isfinite(section)] if section.dtype.kind == "f" else section
    blank = finite.size == 0 or finite.min() == finite.max()
    note = "BLANK" if blank else f"mean {float(finite.mean()):.4g}"
    ax.set_title(f"{where} · {note}", fontsize=8, color="#d62728" if blank else "black", pad=3)


def channel_grid(maps, names=None, *, ncols: int = 4, cmap="gray", title: str | None = None,
                 panel_size: float = 2.4, contrast="auto", colorbar=False):
    """A grid of 2D maps of one section, e.g. the feature channels a pixel classifier sees.

    Parameters
    ----------
    maps : array of shape (C, Y, X)
        The maps; each panel gets its own display range.
    names : list of str, optional
        Panel titles (default ``"channel i"``).
    ncols : int
        Panels per row.
    cmap : str or list of str
        Colormap of every panel, or one per panel (e.g. ``["gray", "magma"]`` for a section and its
        probability).
    contrast : "auto", None, (float, float), or a list of these (one per panel)
        "auto": 1st-99th percentile of each map; None: min to max; a pair: as given (e.g. ``(0, 1)``
        for a probability).
    colorbar : bool or list of bool
        A colour bar beside every panel, or beside the panels where True.

    Returns
    -------
    matplotlib.figure.Figure
        The panels first in ``fig.axes``, then their colour bars (labelled ``"colorbar"``).

    Examples
    --------
    >>> import numpy as np
    >>> fig = channel_grid(np.random.rand(3, 16, 16), ["a", "b", "c"])
    >>> len(fig.axes)
    3
    >>> fig = channel_grid(np.random.rand(2, 16, 16), ["section", "P(mito)"], cmap=["gray", "magma"],
    ...                    contrast=[None, (0, 1)], colorbar=[False, True])
    >>> [ax.get_label() for ax in fig.axes]
    ['section', 'P(mito)', 'colorbar']
    """
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"maps must be (C, Y, X), got shape {maps.shape}")
    n = maps.shape[0]
    names = list(names) if names is not None else [f"channel {i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} names for {n} maps")
    cmaps = _per_panel(cmap, n, "cmap")
    pair = isinstance(contrast, (list, tuple)) and len(contrast) == 2 and all(
        isinstance(v, (int, float, np.number)) for v in contrast)  # fmt: skip
    contrasts = [tuple(contrast)] * n if pair else _per_panel(contrast, n, "contrast")
    colorbars = _per_panel(colorbar, n, "colorbar")
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    aspect = maps.shape[1] / max(maps.shape[2], 1)
    width = panel_size * ncols + (0.5 if any(colorbars) else 0.0)
    fig = figure((width, panel_size * aspect * nrows + (0.4 if title else 0.1)))
    bars = []
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1, label=str(names[i]))
        lo, hi = _map_limits(maps[i].astype(np.float32), contrasts[i])
        im = ax.imshow(maps[i], cmap=cmaps[i], vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(names[i], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if colorbars[i]:
            bars.append((ax, im))
    fig.tight_layout()
    for ax, im in bars:  # after the layout, so that the panels keep their size
        pos = ax.get_position()
        cax = fig.add_axes((pos.x1 + 0.01, pos.y0, 0.12 / fig.get_figwidth(), pos.height), label="colorbar")
        fig.colorbar(im, cax=cax).ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _per_panel(value, n, name):
    """``value`` for each of ``n`` panels: one value for all, or a list of ``n``."""
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} maps")
        return value
    return [value] * n


def _map_limits(m, contrast):
    """Display range of one map: "auto" percentiles, None min-max, or a given pair."""
    if isinstance(contrast, str):
        if contrast != "auto":
            raise ValueError(f"contrast must be 'auto', None or (low, high), got {contrast!r}")
        lo, hi = np.percentile(m, [1, 99])
    elif contrast is None:
        lo, hi = float(m.min()), float(m.max())
    else:
        lo, hi = (float(v) for v in contrast)
    return float(lo), float(hi if hi > lo else lo + 1)
