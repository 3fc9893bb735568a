"""The Annotator's prediction preview and example strokes: a predictor (a function of the section, or a
trained classifier) attached to a widget, its overlay following the section shown and refreshed after
strokes and retraining; example strokes loaded on request as one ordinary, undoable edit.

:class:`PreviewMixin` is mixed into :class:`vemkit._annotator.Annotator`, which provides the traits
(``overlay``, ``overlay_key``, ``has_predictor``, ``has_examples``, ``busy``, ``status``), the store
(``annotations``) and the shown section (``plane``, ``index``).

Not for: painting, messages or the front end (:mod:`vemkit._annotator`), drawing (:mod:`vemkit._annotator_render`).
"""

from __future__ import annotations

import inspect
import time

import numpy as np

from ._annotator_render import PLANE_AXIS, check_index, deflate, plane_shape, prediction_rgba
from ._progress import headless


def as_predictor(predictor, volume, device="cpu"):
    """``(function of z, model or None)`` for a predictor given to the Annotator.

    A model with ``predict_section(image, z, device=...)`` (a :class:`~vemkit.pixel_classifier.PixelClassifier`)
    is called on the Annotator's volume and can be retrained; any other callable is ``predictor(z)``.
    """
    if predictor is None:
        return None, None
    if hasattr(predictor, "predict_section"):
        return (lambda z: predictor.predict_section(volume, z, device=device)), predictor
    if callable(predictor):
        return predictor, None
    raise TypeError(
        f"predictor must be callable as predictor(z) or a trained classifier with predict_section(image, z), "
        f"got {type(predictor).__name__}"
    )


class _Pending:
    """A scheduled preview and whether an edit is waiting for it (a later call must not drop that)."""

    def __init__(self, handle, edited):
        self.handle, self.edited = handle, edited

    def cancel(self):
        self.handle.cancel()


def _model_version(model):
    """Something that changes when ``model`` is trained again (its fitted state objects)."""
    if model is None:
        return None
    return tuple(id(getattr(model, name, None)) for name in ("forest", "training", "state_dict"))


class PreviewMixin:
    """Prediction overlay, attached predictor, retraining and example strokes of the Annotator."""

    # set in Annotator.__init__ through _init_preview
    _predict = None
    _model = None

    def _init_preview(self, predictor, volume, example_strokes, device="cpu"):
        """State of this mixin (called by ``Annotator.__init__`` before the widget is built)."""
        self._volume = volume if hasattr(volume, "shape") else self._image  # a path: the array opened from it
        self._device = device
        self._predictor_source = predictor
        self._predict, self._model = as_predictor(predictor, volume, device)
        self._version = _model_version(self._model)
        self._predicted: set[str] = set()  # overlay keys the predictor made (stale after retraining)
        self._retrain_after_strokes = False
        self._examples = self._check_examples(example_strokes)

    # ------------------------------------------------------------------------- the predictor
    @property
    def predictor(self):
        """What makes the preview: ``predictor(z)``, a trained classifier, or None. Setting it calls
        :meth:`set_predictor`."""
        return self._predictor_source

    @predictor.setter
    def predictor(self, value):
        self.set_predictor(value)

    def set_predictor(self, predictor, *, retrain_after_strokes: bool = False, device="cpu"):
        """Attach a predictor to this widget: the preview follows the section shown from now on.

        Parameters
        ----------
        predictor : callable or classifier or None
            ``predictor(z)`` returning the prediction of xy section ``z`` (see :class:`Annotator`), or a
            trained model with ``predict_section(image, z)``, e.g. a
            :class:`~vemkit.pixel_classifier.PixelClassifier` after ``fit``: then :meth:`retrain`
            trains it again on the painted strokes. None detaches it.
        retrain_after_strokes : bool
            With a model: retrain it on the store after each pause in painting (``preview_delay``)
            before predicting, as ilastik's live update does. Off by default: a retraining takes about a
            second per annotated section on 2 CPU cores.
        device : str
            Passed to the model's ``predict_section`` and ``fit``.

        The widget's status line says whether a preview of the shown section was made (a classifier
        attached before it was trained says so there, it does not raise).
        """
        self._predictor_source = predictor
        self._device = device
        self._predict, self._model = as_predictor(predictor, self._volume, device)
        self._retrain_after_strokes = bool(retrain_after_strokes) and self._model is not None
        self._forget_predictions()
        self.has_predictor = self._predict is not None
        if self._predict is None:
            self.status = "predictor detached"
            return
        self._preview_now()

    def retrain(self, **fit_kwargs):
        """Train the attached model again on the store (every stroke so far), then refresh the preview.

        Parameters
        ----------
        **fit_kwargs
            Passed to the model's ``fit(image, annotations, ...)`` (``device`` defaults to the one given
            to :meth:`set_predictor`).
        """
        if self._model is None or not hasattr(self._model, "fit"):
            raise ValueError("retrain needs a model attached with set_predictor(classifier) (one with fit); "
                             f"the predictor attached is {type(self._predictor_source).__name__}")
        defaults = {"device": self._device}
        if "progress" in inspect.signature(self._model.fit).parameters:
            defaults["progress"] = False  # the status line says when it is done
        t0 = time.perf_counter()
        self.busy = True
        try:
            self._model.fit(self._volume, self.annotations, **{**defaults, **fit_kwargs})
        finally:
            self.busy = False
        self._forget_predictions()
        seconds = time.perf_counter() - t0
        self._preview_now()
        self.status = f"retrained in {seconds:.1f} s; " + self.status

    def _forget_predictions(self):
        """Drop the overlays the predictor made (a new or retrained model made them stale)."""
        for key in self._predicted:
            self._overlays.pop(key, None)
        self._predicted.clear()
        self._version = _model_version(self._model)
        if self._key() not in self._overlays:
            with self.hold_sync():
                self.overlay, self.overlay_key = b"", ""

    def _check_model_version(self):
        """Forget stale previews when the model was trained again outside the widget (``clf.fit``)."""
        if self._model is not None and _model_version(self._model) != self._version:
            self._forget_predictions()

    def _preview_now(self):
        try:
            self.refresh_preview()
        except Exception as err:  # e.g. a classifier attached before it was trained
            self.status = f"⚠ predictor failed: {type(err).__name__}: {err}"

    # -------------------------------------------------------------------------------- overlay
    def set_overlay(self, z, array, *, plane="xy"):
        """Show a prediction over section ``z`` (``plane`` index for xz/yz).

        Parameters
        ----------
        z : int
            The section the prediction belongs to.
        array : ndarray of shape (C, Y, X) or (Y, X)
            Class probabilities (background first; C = 1 or a float (Y, X) map is a foreground
            probability) or a semantic label map (integers, 0 = background, k = ``classes[k]``).
            ``None`` removes the overlay of that section.
        """
        if plane not in PLANE_AXIS:
            raise ValueError(f"plane must be 'xy', 'xz' or 'yz', got {plane!r}")
        axis = PLANE_AXIS[plane]
        index = check_index(z, self.shape[axis], "zyx"[axis])
        key = f"{plane}:{index}"
        if array is None:
            self._overlays.pop(key, None)
        else:
            self._overlays[key] = prediction_rgba(array, plane_shape(plane, self.annotations.shape),
                                                   self.annotations.colors)  # fmt: skip
        if key == self._key():
            rgba = self._overlays.get(key)
            with self.hold_sync():
                self.overlay = deflate(rgba) if rgba is not None else b""
                self.overlay_key = key if rgba is not None else ""

    def refresh_preview(self) -> bool:
        """Call the predictor on the shown xy section now and show its result; False without one."""
        self._cancel_preview()
        if self._predict is None:
            self.status = ("no predictor: attach one with set_predictor(classifier or function of z), "
                           "or push a prediction with set_overlay(z, array)")
            return False
        if self.plane != "xy":
            self.status = "the preview is computed for xy sections only"
            return False
        self._check_model_version()
        z = self.index
        self.busy = True
        try:
            result = self._predict(z)
        finally:
            self.busy = False
        self.set_overlay(z, np.asarray(result))
        self._predicted.add(f"xy:{z}")
        self.status = f"preview of z {z} updated"
        return True

    def _run_preview(self, edited=False):
        self._preview_handle = None
        try:
            if edited and self._retrain_after_strokes:
                self.retrain()
            else:
                self.refresh_preview()
        except Exception as err:  # a failing predictor must not break painting
            self.status = f"⚠ predictor failed: {type(err).__name__}: {err}"

    def _schedule_preview(self, edited=False):
        """Run the predictor after ``preview_delay`` s without strokes (at once outside an event loop);
        after an edit (``edited``) retrain first when ``retrain_after_strokes`` is on."""
        if self._predict is None or not self.live_preview:
            return
        edited = edited or getattr(self._preview_handle, "edited", False)
        self._cancel_preview()
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.preview_delay == 0:
            self._run_preview(edited)
        else:
            self._preview_handle = _Pending(loop.call_later(self.preview_delay, self._run_preview, edited), edited)

    def _cancel_preview(self):
        if self._preview_handle is not None:
            self._preview_handle.cancel()
            self._preview_handle = None

    # ---------------------------------------------------------------------------- example strokes
    def _check_examples(self, example_strokes):
        if example_strokes is None:
            return None
        arr = np.asarray(example_strokes)
        if arr.shape != tuple(self.annotations.shape):
            raise ValueError(f"example_strokes have shape {arr.shape} but the annotations have shape "
                             f"{tuple(self.annotations.shape)}")
        n_values = self.annotations.n_values
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < 0 or arr.max() > n_values)):
            raise ValueError(f"example_strokes must be annotation values 0..{self.annotations.n_values} "
                             "(0 unlabelled, 1 background, 2.. classes), e.g. from scribbles_from_masks")
        if not arr.any():
            raise ValueError("example_strokes hold no stroke (all 0)")
        return arr

    def _examples_wanted(self, paint_examples):
        """Whether ``paint_examples`` asks to paint the example strokes now (see :class:`Annotator`)."""
        if paint_examples not in (True, False, "headless"):
            raise ValueError(f"paint_examples must be True, False or 'headless', got {paint_examples!r}")
        if not paint_examples or self._examples is None:
            if paint_examples and self._examples is None:
                raise ValueError("paint_examples needs example_strokes=")
            return False
        return paint_examples is True or (headless() and not any(self.annotations.counts().values()))

    def load_example_strokes(self) -> int:
        """Paint the example strokes (``example_strokes=`` of the Annotator) into the store.

        They are written as one ordinary edit: where nothing is painted yet (your own strokes stay),
        saved at once, and undone by one Undo. The "Load example strokes" button does the same.

        Returns
        -------
        int
            Voxels written (0 when they were all painted already).
        """
        if self._examples is None:
            raise ValueError("this Annotator has no example strokes: pass example_strokes= when making it")
        nonzero = np.nonzero(self._examples)
        start = [int(c.min()) for c in nonzero]
        stop = [int(c.max()) + 1 for c in nonzero]
        box = tuple(slice(a, b) for a, b in zip(start, stop))
        changed = self.annotations.set_labels(self._examples[box], offset=start, keep_existing=True)
        self._labels_section = self.annotations.section(self.index, self.plane).copy()
        self._send_labels()
        sections = sorted({int(z) for z in np.unique(nonzero[0])})
        self.status = (f"example strokes: {changed} voxels on sections {sections} (saved; Undo removes them)"
                       if changed else "the example strokes are painted already")
        if changed:
            self._schedule_preview(edited=True)
        return changed
