"""What every view of :mod:`vemkit.viz` shares: index and overlay checks, overlay colours, the scale
bar, panel styling and the pyplot-free figure.

Not for: reading inputs or choosing a display range (:mod:`vemkit._display`), or drawing a whole view.
"""

from __future__ import annotations

import io
import math

import numpy as np

from .._colours import LABEL_PALETTE
from .._display import as_display_array

#: Colour of each cutting plane: its panel's frame and its crosshair line in the other panels.
_PLANE_COLOURS = {"xy": "#ff6b6b", "xz": "#5fe07a", "yz": "#5eb0ff"}

_OVERLAY_KINDS = ("labels", "probability")
_PROBABILITY_CMAP = "plasma"


def _check_index(value, size, axis):
    """A plane index along ``axis`` (negative counts from the end); ``None`` is the middle."""
    if value is None:
        return size // 2
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{axis} must be an integer index, got {value!r}")
    index = int(value) + (size if value < 0 else 0)
    if not 0 <= index < size:
        raise ValueError(f"{axis}={value} is outside the volume, which has {size} planes along {axis}")
    return index


def _check_overlay(overlay, shape, voxel_size, overlay_kind):
    """The overlay as a lazy array of the volume's shape (None without one), its kind checked."""
    if overlay_kind not in _OVERLAY_KINDS:
        raise ValueError(f"overlay_kind must be 'labels' or 'probability', got {overlay_kind!r}")
    if overlay is None:
        return None
    arr, ov_vs, _ = as_display_array(overlay, "overlay")
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


def _heading(title, source):
    """First title line: the title given, else the volume's source (nothing for a bare array)."""
    if title is not None:
        return title
    return source if source not in (None, "<array>") else ""


# ---------------------------------------------------------------------------------------------------
# overlay colours


def _label_colours(ids):
    """RGB in [0, 1] for integer label ids: fixed, distinct and the same in every panel and call."""
    from matplotlib.colors import hsv_to_rgb, to_rgb

    ids = np.asarray(ids, dtype=np.int64)
    out = np.empty((ids.size, 3))
    for i, k in enumerate(ids.tolist()):
        if 1 <= k <= len(LABEL_PALETTE):
            out[i] = to_rgb(LABEL_PALETTE[k - 1])
        else:
            # an integer hash, not a golden-ratio hue walk: that walk gives ids a Fibonacci number apart
            # (13, 21, 34 ...) nearly the same hue, and such ids are often neighbours
            bits = _mix(k)
            h = (bits & 0xFFFF) / 65536.0
            s = 0.55 + 0.45 * ((bits >> 16) & 0xFF) / 255.0
            v = 0.7 + 0.3 * ((bits >> 24) & 0xFF) / 255.0
            out[i] = hsv_to_rgb((h, s, v))
    return out


def _mix(k):
    """splitmix64's finaliser: 64 well-mixed bits of an integer, the same on every machine."""
    z = (int(k) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


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


def _check_overlay_names(names, overlay_kind):
    """``{label id: name}`` of an overlay legend (None without one), checked."""
    if names is None:
        return None
    if overlay_kind != "labels":
        raise ValueError("overlay_names names label ids: it needs overlay_kind='labels' (a probability "
                         "overlay gets a colour bar: colorbar=True)")
    if not isinstance(names, dict) or not names:
        raise ValueError(f"overlay_names must be a non-empty dict {{label id: name}}, got {names!r}")
    bad = [k for k in names if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
    if bad:
        raise ValueError(f"overlay_names keys must be label ids (integers from 1), got {bad}")
    return {int(k): str(v) for k, v in sorted(names.items())}


def _add_overlay_legend(fig, names, alpha, anchor, loc="center"):
    """A legend of overlay colours (as drawn, at opacity ``alpha`` over grey) and their names."""
    from matplotlib.patches import Patch

    colours = _label_colours(list(names))
    handles = [Patch(facecolor=(*c, max(alpha, 0.6)), edgecolor=c, label=f"{name}") for c, name in
               zip(colours, names.values())]  # fmt: skip
    legend = fig.legend(handles=handles, loc=loc, bbox_to_anchor=anchor, fontsize=8, frameon=False,
                        handlelength=1.4, borderaxespad=0.2, title="overlay", title_fontsize=8)
    legend.set_gid("overlay_legend")
    return legend


def _add_probability_colorbar(fig, rect, alpha, label="probability"):
    """A colour bar of the probability overlay (colour as drawn at probability p: opacity alpha * p)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(rect, label="colorbar")
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[_PROBABILITY_CMAP]), cax=cax,
                       orientation="horizontal")  # fmt: skip
    bar.set_label(f"{label} (opacity rises with it, up to {alpha:g})", fontsize=7)
    cax.tick_params(labelsize=7)
    return bar


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


