"""A prediction against the ground truth as a picture: which voxels were found, wrongly added or missed
(:func:`error_map`, with its legend names :data:`ERROR_NAMES`).

Not for: scores (see :mod:`vemkit.metrics`).
"""

from __future__ import annotations

import numpy as np

from .._display import as_display_array, compute

#: Names of :func:`error_map`'s values, for ``overlay_names=`` of :func:`orthoslices` and
#: :func:`section_grid`. The values are chosen so that the overlay colours read at once: red where the
#: prediction added something that is not there, green where it was right, yellow where it missed.
ERROR_NAMES = {1: "false positive", 2: "hit", 3: "missed"}


def error_map(prediction, truth):
    """Where a binary prediction agrees with the ground truth: 1 false positive, 2 hit, 3 missed, 0 neither.

    Parameters
    ----------
    prediction, truth : array of shape (Z, Y, X) or (Y, X)
        Masks (nonzero = object), of the same shape; Volumes and lazy arrays are loaded.

    Returns
    -------
    ndarray of uint8
        Draw it with ``viz.orthoslices(image, overlay=errors, overlay_names=viz.ERROR_NAMES)``: the
        legend names each colour.

    Examples
    --------
    >>> import numpy as np
    >>> error_map(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]]))
    array([[2, 1, 3, 0]], dtype=uint8)
    """
    pred = _as_mask(prediction, "prediction")
    ref = _as_mask(truth, "truth")
    if pred.shape != ref.shape:
        raise ValueError(f"prediction has shape {pred.shape} but truth has shape {ref.shape}")
    out = np.zeros(pred.shape, np.uint8)
    out[pred & ~ref] = 1
    out[pred & ref] = 2
    out[~pred & ref] = 3
    return out


def _as_mask(value, name):
    """A boolean numpy mask of its own shape (a 2D section stays 2D)."""
    arr, _, _ = as_display_array(value, name)
    mask = np.asarray(compute(arr)[0]) != 0
    return mask[0] if getattr(value, "ndim", 3) == 2 else mask
