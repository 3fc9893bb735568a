"""The in-notebook painting widget: brush strokes on one section of a volume, written to disk at once.

:class:`Annotator` is an `anywidget <https://anywidget.dev>`_ (JupyterLab, Notebook 7, VS Code, Colab).
The front end (``static/annotator.js``) shows one section on a canvas with zoom, pan, contrast, a class
picker, brush, eraser and undo; each finished stroke goes to Python as one custom message, is written
into the :class:`~vemkit.annotate.Annotations` zarr store before the next message is read, and the
stored label layer of the section comes back, so the canvas shows what is on disk. Only the visible
section is ever read from the volume. Without a widget front end (papermill, nbconvert, CI) the same
output shows a PNG of the current section with its annotations.

Not for: the store itself (:mod:`vemkit._annotations`), training on the annotations
(:mod:`vemkit.pixel_classifier`), or 3D rendering.
"""

from __future__ import annotations

import base64
from pathlib import Path

import anywidget
import numpy as np
import traitlets as t

from ._annotations import Annotations, open_annotations
from ._annotator_preview import PreviewMixin
from ._annotator_render import (
    PLANE_AXIS,
    check_index,
    composite,
    deflate,
    encode_image,
    plane_shape,
    png_bytes,
)
from ._display import as_display_array, check_contrast, compute, contrast_limits

__all__ = ["Annotator"]

_STATIC = Path(__file__).parent / "static"


class Annotator(PreviewMixin, anywidget.AnyWidget):
    """Paint sparse annotations on a volume in a notebook; every stroke is on disk before the next.

    Parameters
    ----------
    volume : Volume or array of shape (Z, Y, X)
        The image (numpy, dask or any lazy array; a 2D array is one section). Only the section on
        screen is read.
    annotations : Annotations or str or Path
        The store to paint into, or its path: then it is opened (created if new) with
        ``open_annotations(path, image=volume, classes=classes)``.
    classes : list of str, optional
        Class names, background first, for a store that is created here (default
        ``["background", "foreground"]``). For an open :class:`Annotations`, must equal its classes.
    predictor : callable or classifier, optional
        ``predictor(z)`` returns the prediction of xy section ``z``: class probabilities of shape
        ``(C, Y, X)`` (background first; C = 1 is a foreground probability) or a semantic label map of
        shape ``(Y, X)`` (0 = background, k = ``classes[k]``); or a trained model with
        ``predict_section(image, z)`` (a :class:`~vemkit.pixel_classifier.PixelClassifier`). It is
        called after strokes (debounced by ``preview_delay`` seconds), on a new section when
        ``live_preview`` is on, and by the "Refresh preview" button; its result is shown as a coloured
        overlay. Attach one later with :meth:`set_predictor`; :meth:`retrain` trains a model again.
    example_strokes : array of shape (Z, Y, X), optional
        Annotation values (0 unlabelled, 1 background, 2.. classes, e.g. from
        :func:`~vemkit.annotate.scribbles_from_masks`) offered by a "Load example strokes" button
        (:meth:`load_example_strokes`); nothing is painted until it is pressed (see ``paint_examples``).
    paint_examples : bool or "headless"
        Paint the example strokes at once: ``True`` always, ``"headless"`` only when nobody watches the
        run live (papermill, nbconvert, ``vemkit tour``, a script) and the store holds no annotation
        yet, so that a notebook run headless still has strokes to train on while a person starts
        with an empty canvas. Default ``False``: only the button.
    z : int, optional
        First xy section shown (default: the middle one).
    brush : int
        Brush radius in image pixels.
    label : int or str, optional
        Class selected at the start (value or name; default the first class after background).
    contrast : "auto", None or (float, float)
        Initial display range: 1-99 percentiles of the first section, its min/max, or given values.
    planes : "auto" or sequence of {"xy", "xz", "yz"}
        Planes offered by the plane selector; "auto" offers xz and yz only for volumes with a known,
        near-isotropic voxel size (pixels are drawn square).
    height : int
        Height of the canvas in CSS pixels (it takes the output's full width).
    label_opacity, overlay_opacity : float
        Initial opacities of the painted labels and of the prediction overlay.
    live_preview : bool
        Call ``predictor`` after strokes and on section changes (else only on the button).
    preview_delay : float
        Seconds without strokes before the predictor is called (strokes are never delayed).

    Attributes
    ----------
    annotations : Annotations
        The store painted into.
    plane : str
        Plane shown (``"xy"``, ``"xz"`` or ``"yz"``).
    index : int
        Position of the shown section along the axis the plane holds fixed.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).integers(0, 255, (4, 64, 64), dtype=np.uint8)
    >>> ann = Annotator(vol, os.path.join(tempfile.mkdtemp(), "ann.zarr"),
    ...                 classes=["background", "mitochondria"], z=1)
    >>> ann.paint([(10, 10), (10, 40)], "mitochondria", radius=2)
    163
    >>> int(ann.annotations.section(1)[10, 20])
    2
    >>> ann.undo()
    True
    >>> sorted(ann._repr_mimebundle_()[0])  # doctest: +NORMALIZE_WHITESPACE
    ['application/vnd.jupyter.widget-view+json', 'image/png', 'text/plain']
    """

    _esm = _STATIC / "annotator.js"
    _css = _STATIC / "annotator.css"

    # volume and section shown
    shape = t.List(t.Int(), default_value=[1, 1, 1]).tag(sync=True)
    planes = t.List(t.Unicode(), default_value=["xy"]).tag(sync=True)
    plane = t.Unicode("xy").tag(sync=True)
    index = t.Int(0).tag(sync=True)
    # the section's pixels: raw little-endian uint8 or uint16 (quantised over image_range), row-major
    image = t.Bytes(b"").tag(sync=True)
    image_dtype = t.Unicode("uint8").tag(sync=True)
    image_range = t.List(t.Float(), default_value=[0.0, 255.0]).tag(sync=True)
    image_key = t.Unicode("").tag(sync=True)
    section_shape = t.List(t.Int(), default_value=[1, 1]).tag(sync=True)
    value_range = t.List(t.Float(), default_value=[0.0, 255.0]).tag(sync=True)
    contrast = t.List(t.Float(), default_value=[0.0, 255.0]).tag(sync=True)
    # the stored labels of the section (zlib-compressed uint8) and the last stroke they include
    labels = t.Bytes(b"").tag(sync=True)
    labels_key = t.Unicode("").tag(sync=True)
    last_stroke = t.Unicode("").tag(sync=True)
    label_opacity = t.Float(0.55).tag(sync=True)
    # the prediction overlay (zlib-compressed RGBA) and the section it belongs to
    overlay = t.Bytes(b"").tag(sync=True)
    overlay_key = t.Unicode("").tag(sync=True)
    overlay_opacity = t.Float(0.5).tag(sync=True)
    has_predictor = t.Bool(False).tag(sync=True)
    has_examples = t.Bool(False).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    # painting
    classes = t.List(t.Unicode()).tag(sync=True)
    colors = t.List(t.List(t.Int())).tag(sync=True)
    label = t.Int(2).tag(sync=True)
    tool = t.Unicode("brush").tag(sync=True)
    brush = t.Int(4).tag(sync=True)
    height = t.Int(520).tag(sync=True)
    status = t.Unicode("").tag(sync=True)

    def __init__(
        self,
        volume,
        annotations,
        classes=None,
        *,
        predictor=None,
        z=None,
        brush: int = 4,
        label=None,
        contrast="auto",
        planes="auto",
        height: int = 520,
        label_opacity: float = 0.55,
        overlay_opacity: float = 0.5,
        live_preview: bool = True,
        preview_delay: float = 0.6,
        example_strokes=None,
        paint_examples=False,
    ):
        image, voxel_size, _ = as_display_array(volume, "volume")
        self._image = image
        self._voxel_size = voxel_size
        vol_shape = tuple(int(s) for s in image.shape)
        if isinstance(annotations, Annotations):
            if classes is not None and [str(c) for c in classes] != annotations.classes:
                raise ValueError(
                    f"classes {list(classes)} differ from the store's {annotations.classes}; open the store "
                    "with the classes you want (classes can only be added at the end)"
                )
            store = annotations
        elif isinstance(annotations, (str, Path)):
            store = open_annotations(annotations, image=volume if voxel_size is not None else image,
                                     classes=classes)  # fmt: skip
        else:
            raise TypeError(f"annotations must be an Annotations store or a path, got {type(annotations).__name__}")
        if store.shape != vol_shape:
            raise ValueError(f"the annotations have shape {store.shape} but the volume has shape {vol_shape}")
        if preview_delay < 0:
            raise ValueError(f"preview_delay must be >= 0 seconds, got {preview_delay}")
        self.annotations = store
        self._init_preview(predictor, volume, example_strokes)
        self.live_preview = bool(live_preview)
        self.preview_delay = float(preview_delay)
        self._contrast_mode = check_contrast(contrast)
        self._positions = {p: s // 2 for p, s in zip(("xy", "xz", "yz"), vol_shape)}
        if z is not None:
            self._positions["xy"] = check_index(z, vol_shape[0], "z")
        self._overlays: dict[str, np.ndarray] = {}
        self._labels_section = None
        self._section_cache = None
        self._preview_handle = None
        offered = self._resolve_planes(planes, voxel_size)
        label_value = store.value_of(label) if label is not None else min(2, store.n_values)
        if label_value < 1:
            raise ValueError("label must name a class (value 1 or more); erase with the eraser tool")
        if int(brush) < 1:
            raise ValueError(f"brush radius must be at least 1 pixel, got {brush}")
        state = self._section_state("xy", self._positions["xy"], initial=True)
        super().__init__(
            shape=list(vol_shape),
            planes=offered,
            classes=list(store.classes),
            colors=[list(int(v) for v in c) for c in store.colors],
            label=label_value,
            brush=int(brush),
            height=int(height),
            label_opacity=float(label_opacity),
            overlay_opacity=float(overlay_opacity),
            has_predictor=predictor is not None,
            has_examples=self._examples is not None,
            **state,
        )
        self.on_msg(self._on_custom_msg)
        self.observe(self._on_position, names=["index", "plane"])
        if self._examples_wanted(paint_examples):
            self.load_example_strokes()
        if predictor is not None and self.live_preview:
            self._run_preview()

    # ------------------------------------------------------------------------------------ state
    @staticmethod
    def _resolve_planes(planes, voxel_size):
        if isinstance(planes, str) and planes == "auto":
            if voxel_size is not None and max(voxel_size) <= 1.5 * min(voxel_size):
                return ["xy", "xz", "yz"]
            return ["xy"]
        planes = [str(p) for p in ([planes] if isinstance(planes, str) else planes)]
        bad = [p for p in planes if p not in PLANE_AXIS]
        if bad or "xy" not in planes:
            raise ValueError(f"planes must be 'auto' or a list of 'xy' (required), 'xz', 'yz'; got {planes}")
        return planes

    @property
    def z(self) -> int:
        """Index of the xy section (settable; shows the xy plane)."""
        return self._positions["xy"]

    @z.setter
    def z(self, value):
        self.show("xy", value)

    def show(self, plane: str = "xy", index=None):
        """Show section ``index`` of ``plane`` (``"xy"``: index is z; ``"xz"``: y; ``"yz"``: x)."""
        if plane not in self.planes:
            raise ValueError(f"plane must be one of {self.planes} (see planes= of Annotator), got {plane!r}")
        axis = PLANE_AXIS[plane]
        index = self._positions[plane] if index is None else check_index(index, self.shape[axis], "zyx"[axis])
        self._positions[plane] = index
        if plane == self.plane and index == self.index:
            return
        with self.hold_trait_notifications():
            self.plane, self.index = plane, index

    def _on_position(self, change):
        if self.plane not in self.planes:
            self.plane = "xy" if "xy" in self.planes else self.planes[0]
            return
        plane = self.plane
        if change["name"] == "plane" and self.index != self._positions[plane]:
            self.index = self._positions[plane]  # each plane keeps its own position
            return
        index = min(max(int(self.index), 0), self.shape[PLANE_AXIS[plane]] - 1)
        if index != self.index:
            self.index = index
            return
        self._positions[plane] = index
        if self.image_key != f"{plane}:{index}":
            self._set_section(plane, index)

    def _key(self, plane=None, index=None):
        return f"{plane or self.plane}:{self.index if index is None else index}"

    def _read_section(self, plane, index):
        sl = [slice(None)] * 3
        sl[PLANE_AXIS[plane]] = int(index)
        return compute(self._image[tuple(sl)])[0]

    def _section_state(self, plane, index, initial=False):
        """Trait values that show section ``index`` of ``plane`` (image, stored labels, overlay)."""
        section = self._read_section(plane, index)
        self._section_cache = (plane, index, section)
        encoded, dtype, rng = encode_image(section)
        finite = section[np.isfinite(section)] if section.dtype.kind == "f" else section
        smin, smax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        state = {
            "plane": plane,
            "index": int(index),
            "image": encoded,
            "image_dtype": dtype,
            "image_range": rng,
            "image_key": f"{plane}:{index}",
            "section_shape": [int(s) for s in section.shape],
        }
        if initial:
            if np.dtype(section.dtype) == np.uint8:
                vr = [0.0, 255.0]
            else:
                vr = [smin, smax if smax > smin else smin + 1.0]
            lo, hi = contrast_limits([section], self._contrast_mode)
            state["value_range"] = [min(vr[0], lo), max(vr[1], hi)]
            state["contrast"] = [lo, hi]
        else:
            vr = list(self.value_range)
            if smin < vr[0] or smax > vr[1]:
                state["value_range"] = [min(vr[0], smin), max(vr[1], smax)]
        self._labels_section = self.annotations.section(index, plane).copy()
        state["labels"] = deflate(self._labels_section)
        state["labels_key"] = f"{plane}:{index}"
        rgba = self._overlays.get(f"{plane}:{index}")
        state["overlay"] = deflate(rgba) if rgba is not None else b""
        state["overlay_key"] = f"{plane}:{index}" if rgba is not None else ""
        return state

    def _set_section(self, plane, index):
        state = self._section_state(plane, index)
        with self.hold_sync():
            for name, value in state.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
        self._check_model_version()
        if self.predictor is not None and self.live_preview and f"{plane}:{index}" not in self._overlays:
            self._schedule_preview()

    def refresh(self):
        """Re-read the shown section and its stored labels (after the store or volume changed elsewhere)."""
        self._set_section(self.plane, self.index)

    def _send_labels(self, last_stroke=None):
        with self.hold_sync():
            self.labels = deflate(self._labels_section)
            self.labels_key = self._key()
            if last_stroke is not None:
                self.last_stroke = str(last_stroke)

    # --------------------------------------------------------------------------------- messages
    def _on_custom_msg(self, widget, content, buffers):
        self.handle_message(content, buffers)

    def handle_message(self, content, buffers=None):
        """Handle one message from the front end, as anywidget delivers it.

        ``{"type": "stroke", "id", "points": [[row, col], ...], "radius", "label", "erase", "plane",
        "index"}`` paints (or erases) and writes to the store at once; ``{"type": "undo"}``;
        ``{"type": "predict"}`` refreshes the prediction overlay; ``{"type": "examples"}`` loads the
        example strokes; ``{"type": "refresh"}``. Errors are
        reported to the front end (``status`` and an ``{"type": "error"}`` message), never raised.

        Returns
        -------
        dict
            ``{"ok": True, ...}`` with what was done, or ``{"ok": False, "error": message}``.
        """
        content = content if isinstance(content, dict) else {}
        try:
            result = self._dispatch(content)
        except Exception as err:  # reported in the widget: a message handler must not raise
            message = f"{type(err).__name__}: {err}"
            self.status = f"⚠ {message}"
            if content.get("type") == "stroke" and content.get("id") is not None:
                self.last_stroke = str(content["id"])  # the front end drops the stroke it could not store
            self.send({"type": "error", "id": content.get("id"), "message": message})
            return {"ok": False, "error": message}
        return {"ok": True, **result}

    def _dispatch(self, content):
        kind = content.get("type")
        if kind == "stroke":
            return self._stroke(content)
        if kind == "undo":
            return {"undone": self.undo()}
        if kind == "predict":
            return {"predicted": self.refresh_preview()}
        if kind == "refresh":
            self.refresh()
            return {}
        if kind == "examples":
            return {"changed": self.load_example_strokes()}
        raise ValueError(f"unknown message type {kind!r}")

    def _stroke(self, content):
        plane = content.get("plane", self.plane)
        if plane not in PLANE_AXIS:
            raise ValueError(f"stroke plane must be 'xy', 'xz' or 'yz', got {plane!r}")
        index = content.get("index", self.index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"stroke index must be an integer, got {index!r}")
        erase = bool(content.get("erase", False))
        if erase:
            value = 0
        else:
            label = content.get("label")
            if isinstance(label, str):
                value = self.annotations.value_of(label)
            elif isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise ValueError(f"stroke label must be a class value, got {label!r}")
            else:
                value = int(label)
            if not 1 <= value <= self.annotations.n_values:
                raise ValueError(
                    f"label {label!r} is beyond the declared classes: "
                    + ", ".join(f"{i + 1} = {c}" for i, c in enumerate(self.annotations.classes))
                    + " (use erase to unlabel); nothing was written"
                )
        try:
            radius = float(content.get("radius", self.brush))
            points = np.asarray(content.get("points", []), dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as err:
            raise ValueError(f"stroke points must be a list of [row, col] pairs and radius a number: {err}") from None
        changed = self.annotations.add_stroke(points, value, radius=radius, index=int(index), plane=plane)
        section_shape = plane_shape(plane, self.annotations.shape)
        if plane == self.plane and int(index) == self.index:
            if changed and points.size:
                r0 = max(int(np.floor(points[:, 0].min() - radius)) - 1, 0)
                r1 = min(int(np.ceil(points[:, 0].max() + radius)) + 2, section_shape[0])
                c0 = max(int(np.floor(points[:, 1].min() - radius)) - 1, 0)
                c1 = min(int(np.ceil(points[:, 1].max() + radius)) + 2, section_shape[1])
                self._labels_section[r0:r1, c0:c1] = self._read_labels(plane, index, (r0, r1), (c0, c1))
        elif changed:
            self._labels_section = self.annotations.section(self.index, self.plane).copy()
        self._send_labels(last_stroke=content.get("id", ""))
        name = "erased" if erase else self.annotations.classes[value - 1]
        self.status = f"{name}: {changed} pixels at {plane} {index} (saved)"
        if changed:
            self._schedule_preview(edited=True)
        return {"changed": changed}

    def _read_labels(self, plane, index, rows, cols):
        sl = [slice(*rows), slice(*cols)]
        sl.insert(PLANE_AXIS[plane], slice(int(index), int(index) + 1))
        return np.asarray(self.annotations.array[tuple(sl)]).squeeze(axis=PLANE_AXIS[plane])

    # ----------------------------------------------------------------------------- python API
    def paint(self, points, label, radius=None, *, z=None, plane=None, erase=False):
        """Paint a stroke through the same path as a stroke drawn in the widget (written to disk at once).

        Parameters
        ----------
        points : sequence of (row, col)
            Pixel coordinates in the section ((y, x) for xy).
        label : int or str
            Class value (1 = background, 2.. = classes) or name.
        radius : float, optional
            Brush radius in pixels (default: the widget's brush).
        z : int, optional
            xy section (default: the one shown); ``plane`` and ``index`` of another plane via ``plane``.
        plane : str, optional
            Plane of the points (default: the one shown, or "xy" when ``z`` is given).
        erase : bool
            Unlabel instead of painting.

        Returns
        -------
        int
            Number of voxels changed.
        """
        if z is not None:
            plane, index = "xy", check_index(z, self.shape[0], "z")
        else:
            plane = plane or self.plane
            index = self.index if plane == self.plane else self._positions[plane]
        msg = {
            "type": "stroke",
            "id": "python",
            "points": np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist(),
            "radius": float(self.brush if radius is None else radius),
            "label": label,
            "erase": bool(erase),
            "plane": plane,
            "index": int(index),
        }
        return self._dispatch(msg)["changed"]

    def erase(self, points, radius=None, *, z=None, plane=None):
        """Unlabel along a stroke; see :meth:`paint`."""
        return self.paint(points, 0, radius, z=z, plane=plane, erase=True)

    def undo(self) -> bool:
        """Revert the last edit of the store (:meth:`Annotations.undo`) and show the result."""
        undone = self.annotations.undo()
        self._labels_section = self.annotations.section(self.index, self.plane).copy()
        self._send_labels()
        self.status = "undone" if undone else "nothing to undo"
        if undone:
            self._schedule_preview(edited=True)
        return undone

    # ---------------------------------------------------------------------------- static output
    def snapshot(self) -> np.ndarray:
        """RGB image (uint8, shape (rows, cols, 3)) of the shown section with its labels and overlay."""
        plane, index = self.plane, self.index
        cache = self._section_cache
        section = cache[2] if cache and cache[:2] == (plane, index) else self._read_section(plane, index)
        return composite(section, self.contrast, self._labels_section, self.colors, self.label_opacity,
                         self._overlays.get(self._key()), self.overlay_opacity)  # fmt: skip

    def to_png(self) -> bytes:
        """PNG bytes of :meth:`snapshot` (sections larger than 1024 pixels are subsampled)."""
        return png_bytes(self.snapshot())

    def save(self, path):
        """Write :meth:`to_png` to ``path``."""
        Path(path).write_bytes(self.to_png())

    def _repr_mimebundle_(self, **kwargs):
        """The widget for widget front ends, plus a PNG of the section for everything else."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle or {}, {})
        data = dict(data)
        data["image/png"] = base64.b64encode(self.to_png()).decode("ascii")
        data["text/plain"] = repr(self)
        return data, metadata

    def __repr__(self):
        counts = ", ".join(f"{k}={v}" for k, v in zip(self.classes, np.bincount(
            self._labels_section.ravel(), minlength=len(self.classes) + 1)[1:].tolist()))  # fmt: skip
        return (
            f"Annotator(shape={tuple(self.shape)}, {self.plane} {self.index}, store={str(self.annotations.path)!r}, "
            f"labelled here: {counts})"
        )
