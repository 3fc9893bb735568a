"""The interactive orthogonal-slice viewer for notebooks (:func:`show`, :class:`OrthoViewer`): sliders
over the :func:`~vemkit.viz.orthoslices` figure, with a static PNG for front ends without widgets.

Not for: painting annotations (:mod:`vemkit._annotator`).
"""

from __future__ import annotations

import base64

import numpy as np

from .._display import check_contrast
from ._common import _check_index, _png_bytes
from ._histogram import _sample_values
from ._ortho import _OrthoData


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

        contrast = check_contrast(contrast)
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
