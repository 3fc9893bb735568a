"""Sparse annotations as a training input: an annotation store, its path or an integer array becomes
``(array (Z, Y, X), class names or None, voxel size or None)``.

Shared by :func:`vemkit.train.finetune`, :func:`vemkit.train.plan_training` and
:func:`vemkit.adapt.adapt`. Not for: painting or storing annotations (:mod:`vemkit._annotations`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._annotations import Annotations, open_annotations

__all__ = ["annotation_array"]


def annotation_array(annotations):
    """``(array, classes, voxel_size)`` of annotations (0 = unlabelled, 1 = background, 2.. = classes).

    A 2D array is one section (it comes back as (1, Y, X)).

    Raises
    ------
    ValueError
        When the array is not (Z, Y, X) or not integer.

    Examples
    --------
    >>> array, classes, vs = annotation_array(np.ones((4, 4), np.uint8))
    >>> array.shape, classes, vs
    ((1, 4, 4), None, None)
    """
    if isinstance(annotations, (str, Path)):
        annotations = open_annotations(annotations)
    classes = annotations.classes if isinstance(annotations, Annotations) else None
    array = annotations.array if isinstance(annotations, Annotations) else annotations
    if getattr(array, "ndim", 0) == 2:
        array = np.asarray(array)[None]
    if getattr(array, "ndim", 0) != 3:
        raise ValueError(f"annotations must be (z, y, x), got shape {getattr(array, 'shape', None)}")
    if not np.issubdtype(np.dtype(array.dtype), np.integer):
        raise ValueError(f"annotations have dtype {array.dtype}; expected integers (0 = unlabelled, 1 = background, 2.. = classes)")
    return array, classes, getattr(annotations, "voxel_size", None)
