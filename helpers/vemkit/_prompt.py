"""Prompt mode for the Annotator: click or drag on a section, see a SAM mask, accept it as annotations.

:class:`PromptAnnotator` is the :class:`~vemkit._annotator.Annotator` with a prompt tool (``S``):
a click adds a point of the object (Ctrl/Cmd-click: a point that is not the object), a drag draws a
box; the segmenter's mask shows at once. Accept (``Enter``) writes it into the current class of the
annotation store as an ordinary, undoable edit (``Ctrl+Z``); reject (``Esc``) drops it; propagate
carries the accepted mask to the neighbouring sections (the mask's box and its innermost point as
the prompt on each next section, stopping where the object ends). Each section's image embedding is
computed once (a progress bar in the kernel, the state in the widget), kept on disk beside the
annotations (``<store>.prompt/<model>/<plane>_<index>.npz``) and computed ahead for the next section.

The segmenter is anything with ``embed(section) -> embedding`` and
``predict(embedding, points=[(row, col)], labels=[1 or 0], box=(r0, c0, r1, c1)) -> (mask, score)``
(and, for the disk cache, ``embedding.save(path)`` and ``segmenter.load_embedding(path)``):
:class:`vemkit.generalist.PromptSegmenter` (SAM, micro-sam) is one.
Not for: painting (the Annotator), loading models (:mod:`vemkit.generalist`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import traitlets as t

from ._annotator import Annotator
from ._annotator_render import PLANE_AXIS, deflate, plane_shape
from ._display import as_display_array
from ._progress import progress_bar

__all__ = ["PromptAnnotator"]

_STATIC = Path(__file__).with_name("static")
_EXPORT = "export default { render };"


def _compose_esm() -> str:
    """annotator.js with the prompt layer (static/prompt.js) wrapped around its render."""
    base = (_STATIC / "annotator.js").read_text(encoding="utf-8")
    if _EXPORT not in base:
        raise RuntimeError(f"static/annotator.js no longer ends with {_EXPORT!r}: the prompt layer cannot wrap it")
    return base.replace(_EXPORT, "") + "\n" + (_STATIC / "prompt.js").read_text(encoding="utf-8")


class PromptAnnotator(Annotator):
    """The Annotator with SAM prompts (see the module docstring); the same store, classes and undo.

    Parameters
    ----------
    volume, annotations, classes
        As for :class:`~vemkit._annotator.Annotator`.
    segmenter
        ``embed`` / ``predict`` as above (e.g. ``vemkit.generalist.load_sam("microsam_vit_t_em_organelles")``).
    embedding_cache : path, "auto" or None
        Where section embeddings are kept ("auto": beside the annotation store; None: memory only).
    prefetch : bool
        Compute the next section's embedding in the background while the user works.
    **kwargs
        Passed to the Annotator (``z``, ``predictor``, ``height`` ...).
    """

    _esm = _compose_esm()

    prompt_active = t.Bool(False).tag(sync=True)
    prompt_mask = t.Bytes(b"").tag(sync=True)
    prompt_key = t.Unicode("").tag(sync=True)
    prompt_points = t.List().tag(sync=True)
    prompt_box = t.List().tag(sync=True)
    prompt_info = t.Unicode("").tag(sync=True)

    def __init__(self, volume, annotations, classes=None, *, segmenter, embedding_cache="auto", prefetch=True,
                 **kwargs):
        if not (callable(getattr(segmenter, "embed", None)) and callable(getattr(segmenter, "predict", None))):
            raise TypeError("segmenter must have embed(section) and predict(embedding, points, labels, box)")
        super().__init__(volume, annotations, classes, **kwargs)
        self.segmenter = segmenter
        self._volume = as_display_array(volume, "volume")[0]
        name = str(getattr(segmenter, "name", type(segmenter).__name__)).replace("/", "_")
        if embedding_cache == "auto":
            embedding_cache = Path(str(self.annotations.path) + ".prompt") / name
        self.embedding_cache = Path(embedding_cache) if embedding_cache is not None else None
        self.prefetch = bool(prefetch)
        self._embeddings: dict = {}
        self._futures: dict = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vemkit-embed")
        self._proposal = None  # (plane, index, mask)
        self._accepted = None  # (plane, index, mask) of the last accepted mask
        self.prompt_calls: list = []  # every prompt the segmenter answered: (plane, index, points, labels, box)
        self.observe(self._on_prompt_position, names=["index", "plane", "prompt_active"])

    # ------------------------------------------------------------------------------ embeddings
    def _section(self, plane, index) -> np.ndarray:
        sl = [slice(None)] * 3
        sl[PLANE_AXIS[plane]] = int(index)
        return np.asarray(self._volume[tuple(sl)])

    def _cache_file(self, plane, index):
        return None if self.embedding_cache is None else self.embedding_cache / f"{plane}_{int(index)}.npz"

    def _compute(self, plane, index):
        path = self._cache_file(plane, index)
        loader = getattr(self.segmenter, "load_embedding", None)
        if path is not None and path.is_file() and loader is not None:
            return loader(path)
        with progress_bar(total=1, desc=f"embedding {plane} {index}", unit="section") as bar:
            emb = self.segmenter.embed(self._section(plane, index))
            bar.update(1)
        if path is not None and hasattr(emb, "save") and loader is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            emb.save(path)
        return emb

    def _submit(self, plane, index):
        key = (plane, int(index))
        with self._lock:
            if key in self._embeddings or key in self._futures:
                return self._futures.get(key)
            future = self._pool.submit(self._compute, plane, int(index))
            self._futures[key] = future
        future.add_done_callback(lambda f, k=key: self._done(k, f))
        return future

    def _done(self, key, future):
        with self._lock:
            self._futures.pop(key, None)
            if future.exception() is None:
                self._embeddings[key] = future.result()

    def embedding(self, plane, index):
        """The embedding of a section (computed once; waits if it is being computed)."""
        key = (plane, int(index))
        with self._lock:
            if key in self._embeddings:
                return self._embeddings[key]
        future = self._submit(plane, index)
        if future is None:  # finished between the two looks
            return self._embeddings[key]
        t0 = time.perf_counter()
        self.prompt_info = f"computing the embedding of {plane} {index} …"
        emb = future.result()
        self.prompt_info = f"embedding of {plane} {index} ready ({time.perf_counter() - t0:.1f} s)"
        with self._lock:
            self._embeddings[key] = emb
        return emb

    def precompute_embeddings(self, indices=None, plane="xy"):
        """Compute (or load) the embeddings of many sections with a progress bar; default all of ``plane``."""
        n = self._volume.shape[PLANE_AXIS[plane]]
        for i in progress_bar(range(n) if indices is None else indices, desc="section embeddings", unit="section"):
            self.embedding(plane, i)

    def _on_prompt_position(self, change):
        if change["name"] in ("index", "plane"):
            self._clear_proposal(points=True)
        if not self.prompt_active:
            return
        self._submit(self.plane, self.index)
        n = self._volume.shape[PLANE_AXIS[self.plane]]
        if self.prefetch and self.index + 1 < n:
            self._submit(self.plane, self.index + 1)

    # -------------------------------------------------------------------------------- messages
    def handle_message(self, content, buffers=None):
        """The Annotator's messages, plus ``prompt`` (points / box on a section), ``prompt_accept``,
        ``prompt_reject`` and ``prompt_propagate`` (``direction`` +1 / -1). Errors are reported in
        the widget, never raised."""
        kind = content.get("type", "") if isinstance(content, dict) else ""
        if not str(kind).startswith("prompt"):
            return super().handle_message(content, buffers)
        try:
            result = self._prompt_dispatch(content)
        except Exception as err:  # a message handler must not raise: shown in the widget
            message = f"{type(err).__name__}: {err}"
            self.status = f"⚠ {message}"
            self.send({"type": "error", "id": content.get("id"), "message": message})
            return {"ok": False, "error": message}
        return {"ok": True, **result}

    def _prompt_dispatch(self, content):
        kind = content["type"]
        if kind == "prompt":
            points = [(float(r), float(c)) for r, c, *_ in content.get("points") or []]
            labels = [int(p[2]) if len(p) > 2 else 1 for p in content.get("points") or []]
            box = content.get("box")
            return self.prompt(points, labels, box=box, plane=content.get("plane"), index=content.get("index"))
        if kind == "prompt_accept":
            return {"accepted": self.accept()}
        if kind == "prompt_reject":
            self.reject()
            return {}
        if kind == "prompt_propagate":
            return {"propagated": self.propagate(int(content.get("direction", 1)), int(content.get("sections", 5)))}
        raise ValueError(f"unknown message type {kind!r}")

    # ------------------------------------------------------------------------------ python API
    def prompt(self, points=(), labels=None, *, box=None, plane=None, index=None) -> dict:
        """Ask the segmenter for a mask on a section (default: the one shown); show it as the proposal."""
        plane = plane or self.plane
        if plane not in PLANE_AXIS:
            raise ValueError(f"plane must be 'xy', 'xz' or 'yz', got {plane!r}")
        index = self.index if index is None else int(index)
        h, w = plane_shape(plane, self.annotations.shape)
        labels = [1] * len(points) if labels is None else list(labels)
        for r, c in points:
            if not (0 <= r < h and 0 <= c < w):
                raise ValueError(f"point ({r:.1f}, {c:.1f}) lies outside the {plane} section of {h} x {w} pixels")
        if box is not None:
            box = [float(v) for v in box]
        emb = self.embedding(plane, index)
        t0 = time.perf_counter()
        mask, score = self.segmenter.predict(emb, points=list(points) or None, labels=labels or None, box=box)
        seconds = time.perf_counter() - t0
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for a section of {h} x {w}")
        self.prompt_calls.append((plane, index, list(points), labels, box))
        self._proposal = (plane, index, mask)
        with self.hold_sync():
            self.prompt_mask = deflate(mask.astype(np.uint8))
            self.prompt_key = f"{plane}:{index}"
            self.prompt_points = [[float(r), float(c), int(lab)] for (r, c), lab in zip(points, labels)]
            self.prompt_box = list(box) if box is not None else []
            self.prompt_info = f"mask: {int(mask.sum())} px, score {float(score):.2f}, {seconds * 1000:.0f} ms · Enter accept · Esc reject"
        return {"pixels": int(mask.sum()), "score": float(score), "seconds": seconds}

    def accept(self) -> int:
        """Write the proposed mask into the current class (one undoable edit); returns the voxels changed."""
        if self._proposal is None:
            raise ValueError("nothing to accept: click on the object first")
        plane, index, mask = self._proposal
        changed = self._write(plane, index, mask, int(self.label))
        self._accepted = self._proposal
        self._clear_proposal(points=True)
        self.refresh()
        self.status = f"{self.annotations.classes[int(self.label) - 1]}: {changed} pixels from the prompt at {plane} {index} (saved)"
        return changed

    def reject(self) -> None:
        """Drop the proposed mask and the prompt points."""
        self._clear_proposal(points=True)
        self.prompt_info = "rejected"

    def _clear_proposal(self, points=False):
        self._proposal = None
        with self.hold_sync():
            self.prompt_mask = b""
            self.prompt_key = ""
            if points:
                self.prompt_points = []
                self.prompt_box = []

    def _write(self, plane, index, mask, value) -> int:
        mask3 = np.expand_dims(mask, PLANE_AXIS[plane])
        offset = [0, 0, 0]
        offset[PLANE_AXIS[plane]] = int(index)
        return self.annotations.add_mask(mask3, value, offset=tuple(offset))

    def propagate(self, direction: int = 1, sections: int = 5, min_overlap: float = 0.3) -> int:
        """Carry the last accepted mask to the next ``sections`` sections (``direction`` +1 or -1).

        On each next section the prompt is the previous mask's box (grown by 10 %) and its innermost
        pixel; propagation stops at an empty mask or one that overlaps the previous by less than
        ``min_overlap`` (of the smaller). Each section is written as its own undoable edit.
        Returns the number of sections written.
        """
        from scipy import ndimage

        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {direction}")
        if self._accepted is None:
            raise ValueError("nothing to propagate: accept a mask first")
        plane, index, prev = self._accepted
        n = self._volume.shape[PLANE_AXIS[plane]]
        written = 0
        for step in range(1, int(sections) + 1):
            i = index + direction * step
            if not 0 <= i < n or not prev.any():
                break
            rows, cols = np.nonzero(prev)
            dr, dc = 0.1 * (rows.max() - rows.min() + 1), 0.1 * (cols.max() - cols.min() + 1)
            box = [rows.min() - dr, cols.min() - dc, rows.max() + dr, cols.max() + dc]
            h, w = prev.shape
            box = [max(box[0], 0), max(box[1], 0), min(box[2], h - 1), min(box[3], w - 1)]
            inner = np.unravel_index(np.argmax(ndimage.distance_transform_edt(prev)), prev.shape)
            mask, _ = self.segmenter.predict(self.embedding(plane, i), points=[tuple(float(v) for v in inner)],
                                             labels=[1], box=box)
            mask = np.asarray(mask, dtype=bool)
            overlap = (mask & prev).sum() / max(1, min(mask.sum(), prev.sum()))
            if not mask.any() or overlap < min_overlap:
                break
            self._write(plane, i, mask, int(self.label))
            self._accepted = (plane, i, mask)
            prev = mask
            written += 1
        self.refresh()
        self.status = f"propagated to {written} section(s) {'up' if direction > 0 else 'down'} (saved; Ctrl+Z undoes one)"
        return written

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()
