"""Three orthogonal slices through one point, in physical proportions (:func:`orthoslices`), and the
sliced volume with its slice cache that the interactive viewer reuses (:class:`_OrthoData`).

Not for: the widget around it (:mod:`vemkit.viz._viewer`).
"""

from __future__ import annotations

import numpy as np

from .._display import as_display_array, check_contrast, compute, contrast_limits
from ._common import (
    _PLANE_COLOURS,
    _add_overlay_legend,
    _add_probability_colorbar,
    _add_scale_bar,
    _check_index,
    _check_overlay,
    _check_overlay_names,
    _heading,
    _overlay_rgba,
    _style_panel,
    _voxel_text,
    figure,
)

class _OrthoData:
    """A volume (and overlay) with the voxel size to draw with and a cache of its last slices.

    Only the three displayed planes are ever computed; the last slice of each plane is kept so that a
    viewer moving one slider recomputes one plane, not three.
    """

    def __init__(self, volume, voxel_size, overlay, overlay_kind):
        self.image, self.voxel_size, self.source = as_display_array(volume, "volume", voxel_size=voxel_size)
        self.shape = tuple(int(s) for s in self.image.shape)
        self.overlay = _check_overlay(overlay, self.shape, self.voxel_size, overlay_kind)
        self.overlay_kind = overlay_kind
        self._cache = {}

    @property
    def display_voxel_size(self):
        return self.voxel_size if self.voxel_size is not None else (1.0, 1.0, 1.0)

    def index(self, z, y, x):
        return tuple(_check_index(v, n, a) for v, n, a in zip((z, y, x), self.shape, "zyx"))

    def planes(self, z, y, x):
        """``{plane: (image_slice, overlay_slice_or_None)}`` for the planes through (z, y, x)."""
        wanted = {"xy": z, "xz": y, "yz": x}
        pending, arrays = [], []
        for plane, i in wanted.items():
            if self._cache.get(plane, (None,))[0] == i:
                continue
            key = {"xy": np.s_[i], "xz": np.s_[:, i, :], "yz": np.s_[:, :, i]}[plane]
            pending.append((plane, i))
            arrays.append(self.image[key])
            if self.overlay is not None:
                arrays.append(self.overlay[key])
        if arrays:
            computed = iter(compute(*arrays))
            for plane, i in pending:
                img = next(computed)
                ov = next(computed) if self.overlay is not None else None
                self._cache[plane] = (i, img, ov)
        return {plane: self._cache[plane][1:] for plane in wanted}

    def figure(self, z, y, x, *, contrast, overlay_alpha, cmap, title, figsize, overlay_names=None,
               colorbar=False):
        """The orthoslice figure through (z, y, x) and the contrast limits it used."""
        z, y, x = self.index(z, y, x)
        planes = self.planes(z, y, x)
        vmin, vmax = contrast_limits([p[0] for p in planes.values()], contrast)
        fig = _draw_orthoslices(self, planes, (z, y, x), vmin, vmax, overlay_alpha, cmap, title, figsize)
        _overlay_key(fig, self, overlay_names, colorbar, overlay_alpha)
        return fig, (vmin, vmax)


def _overlay_key(fig, data, names, colorbar, alpha):
    """The overlay's legend (``names``) or colour bar in the free corner right of xz and below yz."""
    if data.overlay is None or (names is None and not colorbar):
        return
    yz, xz = fig.axes[2].get_position(), fig.axes[1].get_position()
    corner = (yz.x0, xz.y0, yz.width, xz.height)
    if names is not None:
        _add_overlay_legend(fig, names, alpha, corner)
    elif data.overlay_kind == "probability":
        height = min(0.12 / fig.get_figheight(), corner[3] / 3)
        _add_probability_colorbar(fig, (corner[0], corner[1] + corner[3] / 2, corner[2], height), alpha)


def _ortho_geometry(shape, voxel_size, figsize):
    """Figure size and axes rectangles (figure fractions) so every panel has physical proportions.

    xy sits top left, yz to its right (z running left to right, sharing y), xz below it (z running
    down, sharing x), as in ImageJ's orthogonal views.
    """
    Z, Y, X = shape
    vz, vy, vx = voxel_size
    w_xy, h_xy, d_z = X * vx, Y * vy, Z * vz
    left, right, top, bottom, gap = 0.7, 0.3, 0.85, 0.55, 0.12
    fixed_w, fixed_h = left + right + gap, top + bottom + gap
    phys_w, phys_h = w_xy + d_z, h_xy + d_z
    if figsize is None:
        scale = min((8.0 - fixed_w) / phys_w, (9.0 - fixed_h) / phys_h)
        fig_w = max(fixed_w + scale * phys_w, 4.5)
        fig_h = fixed_h + scale * phys_h
    else:
        fig_w, fig_h = (float(f) for f in figsize)
        scale = min((fig_w - fixed_w) / phys_w, (fig_h - fixed_h) / phys_h)
        if scale <= 0:
            raise ValueError(f"figsize {figsize} is too small for three panels with labels")
    x0 = left + (fig_w - fixed_w - scale * phys_w) / 2
    y0 = bottom + (fig_h - fixed_h - scale * phys_h) / 2
    inch = {
        "xy": (x0, y0 + scale * d_z + gap, scale * w_xy, scale * h_xy),
        "xz": (x0, y0, scale * w_xy, scale * d_z),
        "yz": (x0 + scale * w_xy + gap, y0 + scale * d_z + gap, scale * d_z, scale * h_xy),
    }
    rects = {k: (a / fig_w, b / fig_h, c / fig_w, d / fig_h) for k, (a, b, c, d) in inch.items()}
    return (fig_w, fig_h), rects


def _draw_orthoslices(data, planes, zyx, vmin, vmax, overlay_alpha, cmap, title, figsize):
    z, y, x = zyx
    Z, Y, X = data.shape
    vz, vy, vx = data.display_voxel_size
    size, rects = _ortho_geometry(data.shape, data.display_voxel_size, figsize)
    fig = figure(size)
    # (image as drawn, aspect = height / width of one pixel, crosshair lines: (orientation, pos, plane))
    views = {
        "xy": (planes["xy"], lambda a: a, vy / vx, [("h", y, "xz"), ("v", x, "yz")]),
        "xz": (planes["xz"], lambda a: a, vz / vx, [("h", z, "xy"), ("v", x, "yz")]),
        "yz": (planes["yz"], lambda a: a.T, vy / vz, [("v", z, "xy"), ("h", y, "xz")]),
    }
    axes = {}
    for plane, ((img, ov), orient, aspect, lines) in views.items():
        ax = fig.add_axes(rects[plane], label=plane)
        axes[plane] = ax
        ax.imshow(orient(img), cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="antialiased")
        if ov is not None:
            ax.imshow(
                _overlay_rgba(orient(ov), data.overlay_kind, overlay_alpha),
                aspect=aspect,
                interpolation="nearest",
            )
        for kind, pos, other in lines:
            line = ax.axhline if kind == "h" else ax.axvline
            line(pos, color=_PLANE_COLOURS[other], lw=0.9, alpha=0.85)
        _style_panel(ax, plane, rects[plane][2] * size[0], rects[plane][3] * size[1])
    ax = axes["xy"]
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(f"x   (yz plane at x = {x})", fontsize=8, color=_PLANE_COLOURS["yz"])
    ax.set_ylabel("y", fontsize=8)
    ax = axes["yz"]
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("z", fontsize=8)
    ax.tick_params(labelleft=False)
    ax = axes["xz"]
    ax.set_xlabel(f"x   (xz plane at y = {y})", fontsize=8, color=_PLANE_COLOURS["xz"])
    ax.set_ylabel(f"z = {z}", fontsize=8, color=_PLANE_COLOURS["xy"])
    if data.voxel_size is not None:
        _add_scale_bar(axes["xy"], X, Y, vx)
    heading = _heading(title, data.source)
    sub = (
        f"z={z}, y={y}, x={x} in {Z} × {Y} × {X} voxels   ·   {_voxel_text(data.voxel_size)}   ·   "
        f"display {vmin:.4g} to {vmax:.4g}"
    )
    text = f"{heading}\n{sub}" if heading else sub
    fig.suptitle(text, fontsize=9, y=1 - 0.08 / size[1], va="top")
    return fig


def orthoslices(
    volume,
    *,
    voxel_size=None,
    z=None,
    y=None,
    x=None,
    overlay=None,
    overlay_kind="labels",
    overlay_alpha=0.4,
    contrast=None,
    cmap="gray",
    title=None,
    figsize=None,
    overlay_names=None,
    colorbar=False,
):
    """Three orthogonal slices through one point, drawn with their physical proportions.

    The xy section at ``z`` sits top left, the yz plane at ``x`` to its right (z running left to
    right) and the xz plane at ``y`` below it (z running down). Each panel's frame has a colour and
    the same colour marks where that plane cuts the other two panels. Only the three slices are
    computed, never the whole volume.

    Parameters
    ----------
    volume : Volume or array of shape (Z, Y, X)
        A :class:`~vemkit.Volume`, a numpy or dask array, or another array-like (zarr, h5py).
        A 2D (Y, X) array is one section.
    voxel_size : sequence of 3 float, optional
        Voxel size ``(z, y, x)`` in nm; overrides the volume's own. When neither is known the volume
        is drawn isotropic, without a scale bar, and the title says "voxel size unknown" (nothing is
        stored on the volume).
    z, y, x : int, optional
        Where the planes cut (negative counts from the end); default the middle.
    overlay : Volume or array of shape (Z, Y, X), optional
        Labels or probabilities drawn over the image; must have the volume's shape.
    overlay_kind : {"labels", "probability"}
        ``"labels"``: integer ids, 0 transparent, each id its own colour (the same in every panel).
        ``"probability"``: values in [0, 1] (float) or 0-255 (uint8), coloured with opacity rising
        with the probability.
    overlay_alpha : float
        Opacity of the overlay (of probability 1).
    contrast : None, "auto" or (float, float)
        Display range shared by the panels: ``None`` spans min to max of the three slices,
        ``"auto"`` their 1st to 99th percentile, a pair is used as given.
    cmap : str
        Matplotlib colormap of the image.
    title : str, optional
        First line of the title (default: the volume's source). A second line always gives the
        position, voxel size and display range.
    figsize : (float, float), optional
        Figure size in inches; by default about 8 inches wide, sized to the volume's proportions.
    overlay_names : dict of {int: str}, optional
        Names of label ids, shown as a colour legend beside the panels (e.g. :func:`error_map`'s
        :data:`ERROR_NAMES`: ``{1: "false positive", 2: "hit", 3: "missed"}``).
    colorbar : bool
        Draw a colour bar of a probability overlay (``overlay_kind="probability"``).

    Returns
    -------
    matplotlib.figure.Figure
        A figure with three axes labelled ``"xy"``, ``"xz"`` and ``"yz"``.

    Raises
    ------
    ValueError
        If the volume is not 3D/2D, an index is outside it, or ``overlay`` has another shape or
        voxel size, or holds values that do not fit ``overlay_kind``.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).integers(0, 255, (20, 64, 64), dtype=np.uint8)
    >>> fig = orthoslices(vol, voxel_size=(50, 4, 4), z=10, overlay=vol > 200)
    >>> [ax.get_label() for ax in fig.axes]
    ['xy', 'xz', 'yz']
    >>> fig.axes[1].get_aspect()  # one xz pixel is 50 nm high and 4 nm wide
    12.5
    >>> fig.savefig("ortho.png")  # doctest: +SKIP
    """
    contrast = check_contrast(contrast)
    overlay_names = _check_overlay_names(overlay_names, overlay_kind)
    data = _OrthoData(volume, voxel_size, overlay, overlay_kind)
    fig, _ = data.figure(z, y, x, contrast=contrast, overlay_alpha=overlay_alpha, cmap=cmap, title=title,
                         figsize=figsize, overlay_names=overlay_names, colorbar=bool(colorbar))
    return fig


