"""Look at volumes: orthogonal slices, section grids, intensity histograms and an interactive viewer.

Every view computes only what it shows (three slices, ``n`` sections, a bounded random sample), so it
is safe on lazy volumes of any size, and draws physical aspect ratios from the voxel size
``(z, y, x)`` in nm: a 50 x 4 x 4 nm volume looks stretched in z exactly as much as it is. The
interactive viewer (:func:`show`) also carries a static PNG of its current view, so a notebook run
without a widget front end (papermill, nbconvert HTML, CI, GitHub's renderer) still shows a figure.

:func:`objects_3d` draws the surfaces of chosen objects of an instance label volume in 3D, as a static
matplotlib figure.

Not for: painting annotations (see :mod:`vemkit.annotate`), volume rendering, or choosing a
matplotlib backend. Figures are built with :class:`matplotlib.figure.Figure`, never through ``pyplot``, so they
are not registered with a backend, never display twice and are freed when dropped; display one in a
notebook by making it the last expression of a cell, or write it with ``fig.savefig(path)``.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from ._colours import LABEL_PALETTE
from ._geometry import PAD, object_field, object_mesh

from ._voxel import check_voxel_size

__all__ = ["orthoslices", "section_grid", "histogram", "channel_grid", "objects_3d", "show", "OrthoViewer", "figure"]

#: Colour of each cutting plane: its panel's frame and its crosshair line in the other panels.
_PLANE_COLOURS = {"xy": "#ff6b6b", "xz": "#5fe07a", "yz": "#5eb0ff"}

_OVERLAY_KINDS = ("labels", "probability")
_PROBABILITY_CMAP = "plasma"


# ---------------------------------------------------------------------------------------------------
# inputs


def _as_array(obj, name):
    """Return ``(array, voxel_size, source)`` for a Volume, a numpy or dask array or an array-like.

    numpy arrays stay numpy; dask arrays stay lazy; other array-likes (zarr, h5py) are wrapped lazily
    in dask. A 2D array becomes a single section.
    """
    from ._volume import Volume, as_dask

    if isinstance(obj, Volume):
        arr, voxel_size, source = obj.data, obj.voxel_size, obj.source
    else:
        voxel_size, source = None, "<array>"
        if isinstance(obj, np.ndarray) or _is_dask(obj):
            arr = obj
        elif all(hasattr(obj, a) for a in ("shape", "dtype", "ndim", "__getitem__")):
            arr = as_dask(obj)
        else:
            arr = np.asarray(obj)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a 3D (z, y, x) volume or a 2D (y, x) section, got shape {tuple(arr.shape)}"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr, voxel_size, source


def _is_dask(arr) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(arr, da.Array)


def _compute(*arrays):
    """Compute a few slices of numpy or dask arrays in one pass (shared chunks read once)."""
    if any(_is_dask(a) for a in arrays):
        import dask

        arrays = dask.compute(*arrays)
    return [np.asarray(a) for a in arrays]


def _resolve_voxel_size(own, given):
    """The voxel size to draw with: the argument wins over the volume's own; ``None`` if neither."""
    if given is not None:
        return check_voxel_size(given)
    return own


def _check_index(value, size, axis):
    if value is None:
        return size // 2
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{axis} must be an integer index, got {value!r}")
    index = int(value) + (size if value < 0 else 0)
    if not 0 <= index < size:
        raise ValueError(f"{axis}={value} is outside the volume, which has {size} planes along {axis}")
    return index


def _check_overlay(overlay, shape, voxel_size, overlay_kind):
    if overlay_kind not in _OVERLAY_KINDS:
        raise ValueError(f"overlay_kind must be 'labels' or 'probability', got {overlay_kind!r}")
    if overlay is None:
        return None
    arr, ov_vs, _ = _as_array(overlay, "overlay")
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(
            f"overlay has shape {tuple(arr.shape)} but the volume has shape {tuple(shape)}; "
            "an overlay must match the volume voxel for voxel (z, y, x)"
        )
    if ov_vs is not None and voxel_size is not None and not np.allclose(ov_vs, voxel_size, rtol=1e-3):
        raise ValueError(
            f"overlay has voxel size {ov_vs} nm but the volume has {voxel_size} nm; "
            "resample one of them first"
        )
    return arr


def _check_contrast(contrast):
    if contrast is None or (isinstance(contrast, str) and contrast == "auto"):
        return contrast
    if isinstance(contrast, str):
        raise ValueError(f"contrast must be None, 'auto' or (low, high), got {contrast!r}")
    try:
        lo, hi = (float(c) for c in contrast)
    except (TypeError, ValueError):
        raise ValueError(f"contrast must be None, 'auto' or (low, high), got {contrast!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"contrast must be (low, high) with low <= high, got {contrast!r}")
    return lo, hi


def _contrast_limits(images, contrast):
    """Shared display range for ``images``: given, min/max (None) or 1-99 percentiles ("auto")."""
    if contrast is not None and not isinstance(contrast, str):
        lo, hi = contrast
    else:
        values = np.concatenate([np.asarray(im, dtype=np.float64).ravel() for im in images])
        if values.size > 4_000_000:  # percentiles of a regular subsample are plenty for a display range
            values = values[:: values.size // 2_000_000]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return 0.0, 1.0
        if contrast is None:
            lo, hi = float(values.min()), float(values.max())
        else:
            lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------------
# overlay colours


def _label_colours(ids):
    """RGB in [0, 1] for integer label ids: fixed, distinct and the same in every panel and call."""
    from matplotlib.colors import hsv_to_rgb, to_rgb

    ids = np.asarray(ids, dtype=np.int64)
    out = np.empty((ids.size, 3))
    golden = 0.6180339887498949
    for i, k in enumerate(ids.tolist()):
        if 1 <= k <= len(LABEL_PALETTE):
            out[i] = to_rgb(LABEL_PALETTE[k - 1])
        else:
            h = (k * golden) % 1.0
            s = 0.55 + 0.45 * ((k * 0.7548776662466927) % 1.0)
            v = 0.75 + 0.25 * ((k * 0.5698402909980532) % 1.0)
            out[i] = hsv_to_rgb((h, s, v))
    return out


def _labels_rgba(labels, alpha):
    """RGBA uint8 image of a label slice; 0 (and NaN) is transparent."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        labels = np.nan_to_num(labels, nan=0.0)
        if np.any(labels != np.round(labels)):
            raise ValueError(
                "overlay has fractional values but overlay_kind='labels' expects integer labels; "
                "pass overlay_kind='probability' for a probability map"
            )
        labels = labels.astype(np.int64)
    ids, inverse = np.unique(labels, return_inverse=True)
    table = np.zeros((ids.size, 4), np.uint8)
    table[:, :3] = np.round(_label_colours(ids) * 255)
    table[:, 3] = round(255 * alpha)
    table[ids == 0, 3] = 0
    return table[inverse.reshape(labels.shape)]


def _probability_rgba(prob, alpha):
    """RGBA uint8 image of a probability slice: colour from the colormap, opacity alpha * p."""
    from matplotlib import colormaps

    p = _as_probability(prob)
    rgba = colormaps[_PROBABILITY_CMAP](p)
    rgba[..., 3] = alpha * p
    return np.round(rgba * 255).astype(np.uint8)


def _as_probability(prob):
    prob = np.asarray(prob)
    if prob.dtype == np.uint8:
        return prob.astype(np.float32) / 255.0
    p = np.nan_to_num(prob.astype(np.float32), nan=0.0)
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise ValueError(
            "overlay_kind='probability' expects values in [0, 1] (or uint8 0-255); the displayed "
            f"slices of overlay hold values in [{p.min():g}, {p.max():g}]"
        )
    return np.clip(p, 0.0, 1.0)


def _overlay_rgba(slice_, kind, alpha):
    return _labels_rgba(slice_, alpha) if kind == "labels" else _probability_rgba(slice_, alpha)


# ---------------------------------------------------------------------------------------------------
# drawing helpers


def _nice_length(target_nm):
    """The largest 1, 2 or 5 x 10^k nm not longer than ``target_nm``."""
    exponent = math.floor(math.log10(target_nm))
    best = 10.0**exponent
    for m in (2, 5, 10):
        if m * 10.0**exponent <= target_nm:
            best = m * 10.0**exponent
    return best


def _format_length(nm):
    if nm >= 1e6:
        return f"{nm / 1e6:g} mm"
    if nm >= 1e3:
        return f"{nm / 1e3:g} µm"
    return f"{nm:g} nm"


def _add_scale_bar(ax, width_px, height_px, pixel_nm):
    """A white scale bar (about a fifth of the panel width) in the lower right corner of ``ax``."""
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length_nm = _nice_length(0.2 * width_px * pixel_nm)
    bar = AnchoredSizeBar(
        ax.transData,
        length_nm / pixel_nm,
        _format_length(length_nm),
        loc="lower right",
        pad=0.3,
        sep=3,
        borderpad=0.4,
        color="white",
        frameon=True,
        size_vertical=max(height_px / 100.0, 0.5),
        fontproperties=FontProperties(size=8),
    )
    bar.patch.set_facecolor("black")
    bar.patch.set_edgecolor("none")
    bar.patch.set_alpha(0.55)
    bar.set_gid("scale_bar")
    ax.add_artist(bar)
    return bar


def _style_panel(ax, plane, width_in, height_in, tick_size=7):
    from matplotlib.ticker import MaxNLocator

    for spine in ax.spines.values():
        spine.set_edgecolor(_PLANE_COLOURS[plane])
        spine.set_linewidth(2)
    ax.tick_params(labelsize=tick_size, length=2, pad=1)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=int(np.clip(width_in * 1.4, 1, 6)), integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=int(np.clip(height_in * 2.5, 1, 6)), integer=True))


def _voxel_text(voxel_size):
    if voxel_size is None:
        return "voxel size unknown (drawn isotropic, no scale bar)"
    return "voxel " + " × ".join(f"{v:g}" for v in voxel_size) + " nm (z, y, x)"


def figure(figsize=(6.4, 4.8), **kwargs):
    """A matplotlib figure that shows itself in a notebook, without pyplot.

    Use it for any figure of your own beside vemkit's: it needs no ``plt.show()`` and keeps no global
    pyplot state (nothing leaks between cells or into papermill runs).

    Parameters
    ----------
    figsize : tuple of 2 float
        Width and height in inches.
    **kwargs
        Passed to :class:`matplotlib.figure.Figure` (e.g. ``layout="constrained"``).

    Returns
    -------
    matplotlib.figure.Figure
        Shown as a PNG when it is a cell's last expression; ``fig.savefig(...)`` as usual.

    Examples
    --------
    >>> fig = figure((4, 3))
    >>> ax = fig.add_subplot()
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> fig._repr_png_()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    class _DisplayFigure(Figure):
        """A pyplot-free figure that still shows as a PNG when it is a cell's last expression
        (Jupyter registers its figure formatter only once pyplot is imported)."""

        def _repr_png_(self):
            buf = io.BytesIO()
            self.savefig(buf, format="png", facecolor="white", bbox_inches="tight")
            return buf.getvalue()

    return _DisplayFigure(figsize=figsize, **kwargs)


def _png_bytes(fig, dpi=None):
    """Render ``fig`` to PNG bytes and release it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    fig.clear()
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# orthogonal slices


class _OrthoData:
    """A volume (and overlay) with the voxel size to draw with and a cache of its last slices.

    Only the three displayed planes are ever computed; the last slice of each plane is kept so that a
    viewer moving one slider recomputes one plane, not three.
    """

    def __init__(self, volume, voxel_size, overlay, overlay_kind):
        self.image, own_vs, self.source = _as_array(volume, "volume")
        self.shape = tuple(int(s) for s in self.image.shape)
        self.voxel_size = _resolve_voxel_size(own_vs, voxel_size)
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
            computed = iter(_compute(*arrays))
            for plane, i in pending:
                img = next(computed)
                ov = next(computed) if self.overlay is not None else None
                self._cache[plane] = (i, img, ov)
        return {plane: self._cache[plane][1:] for plane in wanted}

    def figure(self, z, y, x, *, contrast, overlay_alpha, cmap, title, figsize):
        """The orthoslice figure through (z, y, x) and the contrast limits it used."""
        z, y, x = self.index(z, y, x)
        planes = self.planes(z, y, x)
        vmin, vmax = _contrast_limits([p[0] for p in planes.values()], contrast)
        fig = _draw_orthoslices(self, planes, (z, y, x), vmin, vmax, overlay_alpha, cmap, title, figsize)
        return fig, (vmin, vmax)


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
    heading = title if title is not None else (data.source if data.source != "<array>" else "")
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
    contrast = _check_contrast(contrast)
    data = _OrthoData(volume, voxel_size, overlay, overlay_kind)
    fig, _ = data.figure(
        z, y, x, contrast=contrast, overlay_alpha=overlay_alpha, cmap=cmap, title=title, figsize=figsize
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# section grid


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
    contrast = _check_contrast(contrast)
    image, own_vs, source = _as_array(volume, "volume")
    shape = tuple(int(s) for s in image.shape)
    vs = _resolve_voxel_size(own_vs, voxel_size)
    ov = _check_overlay(overlay, shape, vs, overlay_kind)
    Z, Y, X = shape
    vz, vy, vx = vs if vs is not None else (1.0, 1.0, 1.0)
    zs = np.unique(np.round(np.linspace(0, Z - 1, int(n))).astype(int)).tolist()
    arrays = [image[k] for k in zs] + ([ov[k] for k in zs] if ov is not None else [])
    computed = _compute(*arrays)
    sections, ov_sections = computed[: len(zs)], computed[len(zs) :] or [None] * len(zs)
    vmin, vmax = _contrast_limits(sections, contrast)

    count = len(zs)
    ncols = int(ncols) if ncols else (min(count, 3) if count <= 9 else 4)
    nrows = math.ceil(count / ncols)
    ratio = (Y * vy) / (X * vx)  # panel height / width
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
    for i, (k, sec, osec) in enumerate(zip(zs, sections, ov_sections)):
        ax = fig.add_subplot(grid[i // ncols, i % ncols], label=f"z={k}")
        ax.imshow(sec, cmap=cmap, vmin=vmin, vmax=vmax, aspect=vy / vx, interpolation="antialiased")
        if osec is not None:
            ax.imshow(_overlay_rgba(osec, overlay_kind, overlay_alpha), aspect=vy / vx, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        finite = sec[np.isfinite(sec)] if sec.dtype.kind == "f" else sec
        blank = finite.size == 0 or finite.min() == finite.max()
        depth = f" ({_format_length(k * vz)})" if vs is not None else ""
        note = "BLANK" if blank else f"mean {float(finite.mean()):.4g}"
        ax.set_title(f"z {k}{depth} · {note}", fontsize=8, color="#d62728" if blank else "black", pad=3)
        if vs is not None and i == 0:
            _add_scale_bar(ax, X, Y, vx)
    heading = title if title is not None else (source if source != "<array>" else "")
    sub = f"{count} of {Z} sections · {_voxel_text(vs)} · display {vmin:.4g} to {vmax:.4g}"
    fig.suptitle(f"{heading}\n{sub}" if heading else sub, fontsize=9, y=1 - 0.08 / fig_h, va="top")
    return fig


# ---------------------------------------------------------------------------------------------------
# histogram


def channel_grid(maps, names=None, *, ncols: int = 4, cmap: str = "gray", title: str | None = None,
                 panel_size: float = 2.4, contrast="auto"):
    """A grid of 2D maps of one section, e.g. the feature channels a pixel classifier sees.

    Parameters
    ----------
    maps : array of shape (C, Y, X)
        The maps; each panel gets its own display range.
    names : list of str, optional
        Panel titles (default ``"channel i"``).
    ncols : int
        Panels per row.
    contrast : "auto" or None
        "auto": 1st-99th percentile of each map; None: min to max.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = channel_grid(np.random.rand(3, 16, 16), ["a", "b", "c"])
    >>> len(fig.axes)
    3
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
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    aspect = maps.shape[1] / max(maps.shape[2], 1)
    fig = figure((panel_size * ncols, panel_size * aspect * nrows + (0.4 if title else 0.1)))
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        m = maps[i].astype(np.float32)
        if contrast == "auto":
            lo, hi = np.percentile(m, [1, 99])
        else:
            lo, hi = float(m.min()), float(m.max())
        ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        ax.set_title(names[i], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _sample_values(image, sample, seed=0):
    """At most ``sample`` voxel values: all of a small volume, else random single-section patches.

    Patches are up to 128 x 128 voxels; on a dask array each lies inside one chunk, so every patch
    reads exactly one chunk. Returns the values and the number of patches read (0: whole volume).
    """
    shape = tuple(int(s) for s in image.shape)
    total = math.prod(shape)
    rng = np.random.default_rng(seed)
    if total <= sample:
        return _compute(image)[0].ravel(), 0
    if _is_dask(image):
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
    values = np.concatenate([p.ravel() for p in _compute(*[image[key] for key in keys])])
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
    image, _, source = _as_array(volume, "volume")
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
    ax.set_xlabel("intensity" + ("" if source == "<array>" else f" ({source})"), fontsize=8)
    ax.set_ylabel("voxels", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.margins(x=0.01)
    if fig.get_layout_engine() is None and len(fig.axes) == 1:
        fig.set_layout_engine("constrained")
    return fig


# ---------------------------------------------------------------------------------------------------
# 3D view of objects


def _object_boxes(labels, ids):
    """Bounding box (tuple of slices) of each id in an in-memory label volume; None where absent."""
    wanted = np.isin(labels, ids)
    coords = np.nonzero(wanted)
    values = labels[coords]
    boxes = {}
    for i in ids:
        hit = values == i
        if not hit.any():
            boxes[i] = None
            continue
        boxes[i] = tuple(slice(int(c[hit].min()), int(c[hit].max()) + 1) for c in coords)
    return boxes


def objects_3d(
    labels,
    ids=None,
    *,
    voxel_size=None,
    max_objects: int = 12,
    alpha: float = 1.0,
    title=None,
    figsize=(6.4, 5.6),
    elev: float = 25.0,
    azim: float = -60.0,
    show_ids: bool = True,
    max_faces: int = 100_000,
):
    """3D view of chosen objects of an instance label volume: their surfaces, as a static figure.

    Each object is drawn as the mesh whose area :func:`vemkit.measure.regionprops_table` reports
    (marching cubes of a smoothed field through its outline, sections interpolated by shape), in
    physical proportions, shaded, in the colour its id has in :func:`orthoslices` overlays. The
    figure is a plain matplotlib figure (mplot3d), so it shows without any widget front end
    (papermill, nbconvert, CI) and saves with ``fig.savefig``.

    Parameters
    ----------
    labels : Volume or array of shape (Z, Y, X), integer
        Instance labels (0 = background). Loaded into memory: pass a crop of a large volume.
    ids : int or sequence of int, optional
        The objects to draw (default: the ``max_objects`` largest).
    voxel_size : sequence of 3 float, optional
        Voxel size ``(z, y, x)`` in nm; overrides the volume's own. Without either, voxels are drawn
        as cubes and the axes count voxels.
    max_objects : int
        How many of the largest objects to draw when ``ids`` is not given.
    alpha : float
        Opacity of the surfaces.
    title : str, optional
        Title (default: how many objects and the voxel size).
    figsize : (float, float)
        Figure size in inches.
    elev, azim : float
        Viewing angles in degrees (see :meth:`mpl_toolkits.mplot3d.axes3d.Axes3D.view_init`).
    show_ids : bool
        A legend of the ids and their colours.
    max_faces : int
        Triangles drawn at most, all objects together: larger meshes are computed on a coarser grid
        (``step_size`` of marching cubes), which keeps drawing fast.

    Returns
    -------
    matplotlib.figure.Figure
        One 3D axes with one surface per object (``fig.axes[0].collections``).

    Raises
    ------
    ValueError
        Labels that are not 3D integers, an id that is not in the labels, or no object at all.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((8, 40, 40), np.uint8)
    >>> labels[2:6, 5:15, 5:30] = 1
    >>> labels[1:7, 20:35, 20:30] = 4
    >>> fig = objects_3d(labels, [1, 4], voxel_size=(40, 8, 8))
    >>> len(fig.axes[0].collections)
    2
    >>> fig.savefig("objects.png")  # doctest: +SKIP
    """

    arr, own_vs, _ = _as_array(labels, "labels")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integer instance labels (0 = background), got dtype {arr.dtype}")
    vs = _resolve_voxel_size(own_vs, voxel_size)
    draw_vs = tuple(float(v) for v in vs) if vs is not None else (1.0, 1.0, 1.0)
    unit = "nm" if vs is not None else "voxels"
    arr = _compute(arr)[0]
    if ids is None:
        if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < 1:
            raise ValueError(f"max_objects must be a positive integer, got {max_objects!r}")
        found, counts = np.unique(arr[arr > 0], return_counts=True)
        if not len(found):
            raise ValueError("labels hold no object (every voxel is 0): nothing to draw")
        ids = found[np.argsort(-counts, kind="stable")][: int(max_objects)]
    ids = [int(i) for i in np.atleast_1d(np.asarray(ids))]
    if not ids:
        raise ValueError("ids is empty: give at least one object id")
    boxes = _object_boxes(arr, ids)
    missing = [i for i in ids if boxes[i] is None or i == 0]
    if missing:
        raise ValueError(f"ids {missing} are not objects of the labels (0 is background)")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")

    meshes = []
    budget = max(1000, int(max_faces) // len(ids))
    for i in ids:
        box = boxes[i]
        field = object_field(arr[box] == i, draw_vs)
        verts, faces = object_mesh(field, draw_vs)
        if len(faces) > budget:  # a coarser grid: faces shrink with the square of the step
            step = int(math.ceil(math.sqrt(len(faces) / budget)))
            verts, faces = object_mesh(field, draw_vs, step_size=min(step, max(2, min(field.shape) - 1)))
        origin = np.array([(s.start - p) * v for s, p, v in zip(box, PAD, draw_vs)])
        meshes.append((i, verts + origin, faces))

    fig = figure(figsize)
    ax = fig.add_subplot(projection="3d")
    colours = _label_colours(ids)
    for (i, verts, faces), colour in zip(meshes, colours):
        z, y, x = verts[:, 0], verts[:, 1], verts[:, 2]
        ax.plot_trisurf(x, y, z, triangles=faces, color=colour, shade=True, linewidth=0, antialiased=False,
                        alpha=alpha)
    every = np.concatenate([v for _, v, _ in meshes])
    lo, hi = every.min(axis=0), every.max(axis=0)
    ranges = np.maximum(hi - lo, 1e-9)
    ax.set_xlim(lo[2], hi[2])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[0], hi[0])
    ax.set_box_aspect((ranges[2], ranges[1], ranges[0]))  # physical proportions
    ax.set_xlabel(f"x ({unit})", fontsize=8)
    ax.set_ylabel(f"y ({unit})", fontsize=8)
    ax.set_zlabel(f"z ({unit})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.view_init(elev=elev, azim=azim)
    if show_ids:
        from matplotlib.patches import Patch

        handles = [Patch(color=c, label=str(i)) for i, c in zip(ids, colours)]
        ax.legend(handles=handles, title="id", fontsize=7, title_fontsize=7, loc="upper left",
                  ncols=max(1, math.ceil(len(ids) / 12)), frameon=False)
    head = title if title is not None else f"{len(ids)} object{'s' if len(ids) != 1 else ''}"
    ax.set_title(f"{head}\n{_voxel_text(vs)}", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------
# interactive viewer


class OrthoViewer:
    """Interactive orthogonal-slice viewer that also renders as a static PNG.

    Made by :func:`show`. In a notebook with a widget front end it is a box of sliders (z, y, x,
    display range, overlay opacity) over the orthoslice figure (:func:`orthoslices`). Where there
    is no widget front end (papermill, nbconvert HTML, CI, a GitHub preview) the same output shows a
    PNG of the view as it was when displayed, because :meth:`_repr_mimebundle_` offers both.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The widget tree (sliders and an :class:`ipywidgets.Image`).
    z_slider, y_slider, x_slider : ipywidgets.IntSlider
        Plane positions.
    contrast_slider : ipywidgets.FloatRangeSlider
        Display range.
    alpha_slider : ipywidgets.FloatSlider or None
        Overlay opacity (``None`` without an overlay).
    image : ipywidgets.Image
        The rendered PNG of the current view.
    """

    def __init__(
        self,
        volume,
        *,
        voxel_size=None,
        overlay=None,
        overlay_kind="labels",
        overlay_alpha=0.4,
        contrast="auto",
        cmap="gray",
        title=None,
        figsize=None,
        z=None,
        y=None,
        x=None,
        dpi=100,
    ):
        import ipywidgets as widgets

        contrast = _check_contrast(contrast)
        self._data = _OrthoData(volume, voxel_size, overlay, overlay_kind)
        self._style = {"cmap": cmap, "title": title, "figsize": figsize}
        self._dpi = dpi
        z, y, x = self._data.index(z, y, x)
        fig, (vmin, vmax) = self._data.figure(
            z, y, x, contrast=contrast, overlay_alpha=overlay_alpha, **self._style
        )
        self._png = _png_bytes(fig, dpi)
        lo, hi = self._slider_range(vmin, vmax)
        integer = np.dtype(self._data.image.dtype).kind in "iub"
        Z, Y, X = self._data.shape
        slider_layout = widgets.Layout(width="32%")
        common = {"continuous_update": False, "layout": slider_layout}
        self.z_slider = widgets.IntSlider(value=z, min=0, max=Z - 1, description="z", **common)
        self.y_slider = widgets.IntSlider(value=y, min=0, max=Y - 1, description="y", **common)
        self.x_slider = widgets.IntSlider(value=x, min=0, max=X - 1, description="x", **common)
        self.contrast_slider = widgets.FloatRangeSlider(
            value=(vmin, vmax),
            min=lo,
            max=hi,
            step=1.0 if integer else (hi - lo) / 500,
            description="display",
            readout_format=".0f" if integer else ".3g",
            continuous_update=False,
            layout=widgets.Layout(width="48%"),
        )
        controls = [self.contrast_slider]
        self.alpha_slider = None
        if self._data.overlay is not None:
            self.alpha_slider = widgets.FloatSlider(
                value=overlay_alpha, min=0.0, max=1.0, step=0.05, description="overlay",
                continuous_update=False, layout=widgets.Layout(width="32%"),
            )  # fmt: skip
            controls.append(self.alpha_slider)
        self.image = widgets.Image(value=self._png, format="png")
        self.widget = widgets.VBox(
            [widgets.HBox([self.z_slider, self.y_slider, self.x_slider]), widgets.HBox(controls), self.image]
        )
        for s in (self.z_slider, self.y_slider, self.x_slider, self.contrast_slider, self.alpha_slider):
            if s is not None:
                s.observe(self._on_change, names="value")

    def _slider_range(self, vmin, vmax):
        """Range of the display slider: the dtype's for 8-bit data, else a bounded sample's."""
        dtype = np.dtype(self._data.image.dtype)
        if dtype.kind in "iub" and dtype.itemsize == 1:
            info = np.iinfo(dtype)
            lo, hi = float(info.min), float(info.max)
        else:
            values, _ = _sample_values(self._data.image, 200_000)
            values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            lo, hi = (float(values.min()), float(values.max())) if values.size else (vmin, vmax)
        lo, hi = min(lo, vmin), max(hi, vmax)
        return lo, (hi if hi > lo else lo + 1.0)

    # state ----------------------------------------------------------------------------------------
    @property
    def z(self):
        """Index of the xy section shown (settable)."""
        return self.z_slider.value

    @z.setter
    def z(self, value):
        self.z_slider.value = _check_index(value, self._data.shape[0], "z")

    @property
    def y(self):
        """Index of the xz plane shown (settable)."""
        return self.y_slider.value

    @y.setter
    def y(self, value):
        self.y_slider.value = _check_index(value, self._data.shape[1], "y")

    @property
    def x(self):
        """Index of the yz plane shown (settable)."""
        return self.x_slider.value

    @x.setter
    def x(self, value):
        self.x_slider.value = _check_index(value, self._data.shape[2], "x")

    @property
    def png(self):
        """PNG bytes of the current view."""
        return self._png

    def _on_change(self, change=None):
        self._png = _png_bytes(self.figure(), self._dpi)
        self.image.value = self._png

    # output ---------------------------------------------------------------------------------------
    def figure(self):
        """A new :class:`matplotlib.figure.Figure` of the current view."""
        alpha = self.alpha_slider.value if self.alpha_slider is not None else 0.0
        fig, _ = self._data.figure(
            self.z, self.y, self.x, contrast=tuple(self.contrast_slider.value), overlay_alpha=alpha,
            **self._style,
        )  # fmt: skip
        return fig

    def save(self, path, dpi=None):
        """Write the current view as a static figure (format from the extension: png, pdf, svg ...).

        Parameters
        ----------
        path : str or path-like
            Output file.
        dpi : float, optional
            Resolution (default: the viewer's).
        """
        fig = self.figure()
        fig.savefig(path, dpi=dpi or self._dpi, facecolor="white")
        fig.clear()

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        """Widget view for widget front ends, plus a PNG and text for everything else."""
        data = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs) or {})
        data["image/png"] = base64.b64encode(self._png).decode("ascii")
        data["text/plain"] = repr(self)
        return data

    def __repr__(self):
        vs = self._data.voxel_size
        vs = "unknown" if vs is None else "x".join(f"{v:g}" for v in vs) + " nm"
        return (
            f"OrthoViewer(shape={self._data.shape}, voxel_size={vs}, "
            f"z={self.z}, y={self.y}, x={self.x})"
        )


def show(
    volume,
    *,
    overlay=None,
    voxel_size=None,
    overlay_kind="labels",
    overlay_alpha=0.4,
    contrast="auto",
    cmap="gray",
    title=None,
    figsize=None,
    z=None,
    y=None,
    x=None,
    dpi=100,
):
    """Interactive orthogonal-slice viewer for a notebook, with a static fallback.

    Sliders move the xy section (z) and the xz/yz planes (y, x), set the display range and the
    overlay's opacity; each change recomputes only the plane that moved. Make the viewer the last
    expression of a cell: a front end with widget support shows the widget, any other (papermill,
    nbconvert HTML, CI) shows a PNG of the view, so executed notebooks keep their figures.

    Parameters
    ----------
    volume : Volume or array of shape (Z, Y, X)
        The volume (see :func:`orthoslices`); kept lazy, only displayed slices are read.
    overlay : Volume or array of shape (Z, Y, X), optional
        Labels or probabilities of the same shape.
    voxel_size : sequence of 3 float, optional
        Voxel size ``(z, y, x)`` in nm, overriding the volume's own (display only).
    overlay_kind, overlay_alpha, cmap, title, figsize, z, y, x
        As in :func:`orthoslices`.
    contrast : None, "auto" or (float, float)
        Initial display range (default: 1-99 percentiles of the first view).
    dpi : float
        Resolution of the rendered PNG (100 gives about 800 pixels across).

    Returns
    -------
    OrthoViewer
        Displays itself; ``viewer.z = 10`` moves it, ``viewer.save("view.png")`` writes the current
        view, ``viewer.widget`` is the ipywidgets box.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).integers(0, 255, (16, 48, 48), dtype=np.uint8)
    >>> viewer = show(vol, voxel_size=(40, 8, 8), overlay=(vol > 128).astype(np.uint8))
    >>> viewer.z = 3
    >>> sorted(viewer._repr_mimebundle_())  # doctest: +NORMALIZE_WHITESPACE
    ['application/vnd.jupyter.widget-view+json', 'image/png', 'text/plain']
    >>> viewer.save("view.png")  # doctest: +SKIP
    """
    return OrthoViewer(
        volume,
        voxel_size=voxel_size,
        overlay=overlay,
        overlay_kind=overlay_kind,
        overlay_alpha=overlay_alpha,
        contrast=contrast,
        cmap=cmap,
        title=title,
        figsize=figsize,
        z=z,
        y=y,
        x=x,
        dpi=dpi,
    )
