"""How the painting widget (:mod:`vemkit._annotator`) turns sections into what it shows: the bytes of
a section and of its labels for the front end, the prediction overlay's colours, and the RGB snapshot
and PNG shown where there is no widget front end.

Not for: the widget's state and messages (:mod:`vemkit._annotator`), or the store
(:mod:`vemkit._annotations`).
"""

from __future__ import annotations

import io
import zlib

import numpy as np

__all__ = [
    "PLANE_AXIS",
    "check_index",
    "composite",
    "deflate",
    "encode_image",
    "plane_shape",
    "png_bytes",
    "prediction_rgba",
]

PLANE_AXIS = {"xy": 0, "xz": 1, "yz": 2}  # the axis each plane holds fixed
PNG_MAX_SIDE = 1024


def check_index(value, size, axis):
    """An integer section index along ``axis`` (negative counts from the end), checked against ``size``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{axis} must be an integer index, got {value!r}")
    index = int(value) + (size if value < 0 else 0)
    if not 0 <= index < size:
        raise ValueError(f"{axis}={value} is outside the volume, which has {size} sections along {axis}")
    return index


def plane_shape(plane, shape):
    """Shape (rows, cols) of a section of ``plane`` in a volume of ``shape``."""
    axis = PLANE_AXIS[plane]
    return tuple(s for i, s in enumerate(shape) if i != axis)


def deflate(array) -> bytes:
    """zlib-compressed raw bytes of ``array``, as the front end inflates them."""
    return zlib.compress(np.ascontiguousarray(array).tobytes(), 1)


def encode_image(section):
    """Bytes the front end shows: uint8 as is, anything else quantised to uint16 over its own range."""
    section = np.asarray(section)
    if section.dtype == np.uint8:
        return np.ascontiguousarray(section).tobytes(), "uint8", [0.0, 255.0]
    values = section.astype(np.float64)
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    if section.dtype.kind in "iu" and hi - lo <= 65535:
        q = np.where(finite, values - lo, 0)
        hi = lo + 65535.0
    else:
        hi = hi if hi > lo else lo + 1.0
        q = np.where(finite, np.round((values - lo) * (65535.0 / (hi - lo))), 0)
    return np.ascontiguousarray(q.astype("<u2")).tobytes(), "uint16", [lo, hi]


def prediction_rgba(array, shape, colors):
    """RGBA (uint8) of a prediction: class colours, opacity = confidence for probabilities."""
    array = np.asarray(array)
    colors = np.asarray(colors, np.uint8)
    if array.ndim == 3 and array.shape[0] == 1:  # one channel: a foreground probability
        array = array[0].astype(np.float32)
    if array.ndim == 2:
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"prediction has shape {array.shape}; the section is {tuple(shape)} (Y, X)")
        out = np.zeros((*array.shape, 4), np.uint8)
        if array.dtype.kind == "f":  # foreground probability -> colour of the first class, alpha = p
            p = np.clip(np.nan_to_num(array, nan=0.0), 0, 1)
            out[..., :3] = colors[min(1, len(colors) - 1)]
            out[..., 3] = np.round(p * 255)
            return out
        if array.dtype == bool or array.dtype.kind in "iu":
            labels = array.astype(np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= len(colors)):
                raise ValueError(
                    f"label map holds values {int(labels.min())}..{int(labels.max())}; "
                    f"expected 0..{len(colors) - 1} (0 = background, k = class k)"
                )
            out[..., :3] = colors[labels]
            out[..., 3] = 255
            return out
        raise ValueError(f"prediction dtype {array.dtype} is neither probabilities (float) nor labels (int)")
    if array.ndim == 3:
        if tuple(array.shape[1:]) != tuple(shape):
            raise ValueError(f"prediction has shape {array.shape}; expected (C, {shape[0]}, {shape[1]})")
        if array.shape[0] > len(colors):
            raise ValueError(f"prediction has {array.shape[0]} channels but the store has {len(colors)} classes")
        p = np.nan_to_num(array.astype(np.float32), nan=0.0)
        best = np.argmax(p, axis=0)
        top = np.take_along_axis(p, best[None], axis=0)[0]
        c = p.shape[0]
        conf = np.clip((top - 1.0 / c) / (1 - 1.0 / c), 0, 1) if c > 1 else np.clip(top, 0, 1)
        out = np.zeros((*shape, 4), np.uint8)
        out[..., :3] = colors[best]
        out[..., 3] = np.round(conf * 255)
        return out
    raise ValueError(f"prediction must be (C, Y, X) probabilities or a (Y, X) map, got shape {array.shape}")


def composite(section, contrast, labels, colors, label_opacity, overlay, overlay_opacity):
    """RGB image (uint8, (rows, cols, 3)) of a section over ``contrast`` = (low, high), with its labels
    (values 1.. in ``colors``) and an RGBA prediction overlay (or None) blended in."""
    lo, hi = contrast
    gray = np.nan_to_num((section.astype(np.float32) - lo) / max(hi - lo, 1e-12), nan=0.0)
    rgb = np.repeat((np.clip(gray, 0, 1) * 255)[..., None], 3, axis=2)
    if labels is not None and labels.any():
        table = np.zeros((256, 3), np.float32)
        table[1 : len(colors) + 1] = np.asarray(colors, np.float32)
        alpha = (labels > 0)[..., None] * float(label_opacity)
        rgb = rgb * (1 - alpha) + table[labels] * alpha
    if overlay is not None:
        alpha = overlay[..., 3:4].astype(np.float32) / 255 * float(overlay_opacity)
        rgb = rgb * (1 - alpha) + overlay[..., :3] * alpha
    return np.round(rgb).astype(np.uint8)


def png_bytes(rgb) -> bytes:
    """PNG of an RGB image; images larger than 1024 pixels are subsampled."""
    from PIL import Image

    step = max(1, int(np.ceil(max(rgb.shape[:2]) / PNG_MAX_SIDE)))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[::step, ::step])).save(buf, format="png")
    return buf.getvalue()
