"""Sparse annotation: a store on disk, scripted strokes and masks, imports, scribbles from ground
truth, and the in-notebook :class:`Annotator` widget.

Annotation values: 0 = unlabelled (ignored everywhere), 1 = background, 2.. = classes; class ``k`` of a
semantic mask is annotated as ``k + 1``. Every edit is written to disk as it is made.

Not for: training on the annotations (:mod:`vemkit.pixel_classifier`).
"""

from ._annotations import DEFAULT_COLORS, Annotations, open_annotations
from ._scribbles import scribbles_from_masks

__all__ = ["Annotations", "Annotator", "DEFAULT_COLORS", "open_annotations", "scribbles_from_masks"]


def __getattr__(name):
    if name == "Annotator":  # the widget pulls in anywidget: import it only when used
        from ._annotator import Annotator

        return Annotator
    raise AttributeError(f"module 'vemkit.annotate' has no attribute {name!r}")
