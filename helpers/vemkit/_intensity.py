"""Grey values to network input, in one place for training, prediction and domain adaptation.

A model's ``normalization`` says how: ``percentile`` (the volume's own 1-99 percentiles become 0 and
1), ``fixed`` (two given grey values become 0 and 1) or ``histogram`` (the volume's grey-value
quantiles are mapped onto the quantiles the model saw in training, :func:`vemkit.domain.match_histogram`).
Every mode is estimated once per volume from a bounded sample, so a block's input never depends on
the block.

Not for: choosing a normalisation (:mod:`vemkit.train`) or measuring domain gaps (:mod:`vemkit.domain`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_values", "percentiles", "input_mapping", "apply_mapping", "increasing", "HISTOGRAM_LEVELS"]

#: Percentile levels a ``histogram`` normalisation stores (dense in the tails, where contrast lives).
HISTOGRAM_LEVELS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90,
                    92.5, 95, 97, 98, 99, 99.5]


def sample_values(data, max_sections: int = 8, max_side: int = 1024) -> np.ndarray:
    """Grey values of a bounded sample of a (Z, Y, X) volume: a few evenly spaced sections,
    centre-cropped, so the cost is the same for a 20 MB crop and a 2 TB volume.

    Examples
    --------
    >>> sample_values(np.zeros((100, 4, 4), np.uint8)).size  # 8 sections of 4 x 4
    128
    """
    shape = data.shape
    zs = np.unique(np.linspace(0, shape[0] - 1, min(max_sections, shape[0])).round().astype(int))
    y0 = max(0, (shape[1] - max_side) // 2)
    x0 = max(0, (shape[2] - max_side) // 2)
    samples = [np.asarray(data[int(z), y0 : y0 + max_side, x0 : x0 + max_side]).ravel() for z in zs]
    return np.concatenate(samples).astype(np.float64)


def percentiles(data, levels) -> np.ndarray:
    """Grey-value percentiles of a volume from :func:`sample_values`.

    Examples
    --------
    >>> percentiles(np.arange(1000, dtype=np.uint16).reshape(10, 10, 10), [0, 100]).tolist()
    [0.0, 999.0]
    """
    return np.percentile(sample_values(data), list(levels))


def input_mapping(normalization: dict, data):
    """How this volume's grey values become network input under ``normalization``.

    Returns
    -------
    low, scale : float
        Input = (value - low) * scale, after the look-up below if there is one.
    lut : (xp, fp) or None
        For ``histogram`` mode: input = ``np.interp(value, xp, fp)`` (then low = 0, scale = 1).

    Examples
    --------
    >>> vol = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    >>> input_mapping({"mode": "fixed", "low": 0, "high": 200}, vol)
    (0.0, 0.005, None)
    >>> low, scale, (xp, fp) = input_mapping({"mode": "histogram", "levels": [0, 100], "reference": [0.0, 1.0]}, vol)
    >>> xp.tolist(), fp.tolist()
    ([0.0, 999.0], [0.0, 1.0])
    """
    mode = normalization.get("mode")
    if mode == "fixed":
        low, high = float(normalization["low"]), float(normalization["high"])
    elif mode == "percentile":
        low, high = (float(v) for v in percentiles(data, [normalization.get("lower", 1.0),
                                                          normalization.get("upper", 99.0)]))
        if high <= low:
            high = low + 1.0
    elif mode == "histogram":
        xp = increasing(percentiles(data, normalization["levels"]))
        return 0.0, 1.0, (xp, np.asarray(normalization["reference"], np.float64))
    else:
        raise ValueError(f"normalization mode must be 'percentile', 'fixed' or 'histogram', got {mode!r}")
    if not high > low:
        raise ValueError(f"intensity range must have high > low, got ({low}, {high})")
    return low, 1.0 / (high - low), None


def increasing(values) -> np.ndarray:
    """``values`` made strictly increasing (for ``np.interp``): a flat stretch of a quantised
    histogram's percentiles is spread by a tiny step.

    Examples
    --------
    >>> increasing([0, 5, 5, 9]).tolist()
    [0.0, 5.0, 5.000009, 9.0]
    """
    out = np.asarray(values, np.float64).copy()
    step = 1e-6 * max(1.0, float(np.abs(out).max())) if out.size else 0.0
    for i in range(1, out.size):
        if out[i] <= out[i - 1]:
            out[i] = out[i - 1] + step
    return out


def apply_mapping(values, low: float, scale: float, lut=None) -> np.ndarray:
    """Float32 network input from raw grey values (see :func:`input_mapping`).

    Examples
    --------
    >>> apply_mapping(np.array([0, 100, 200]), 0.0, 0.005).tolist()
    [0.0, 0.5, 1.0]
    """
    if lut is not None:
        return np.interp(np.asarray(values, np.float64), lut[0], lut[1]).astype(np.float32)
    return ((np.asarray(values, np.float32) - np.float32(low)) * np.float32(scale)).astype(np.float32)
