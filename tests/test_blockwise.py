"""Blockwise application with a halo equals the whole-volume computation."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from vemkit._blockwise import map_with_halo, read_with_halo


def test_halo_blocks_equal_whole_volume():
    a = np.random.default_rng(0).random((7, 50, 61)).astype(np.float32)

    def fn(block):
        return gaussian_filter(block, 1.5, mode="mirror", truncate=4.0)

    lazy = map_with_halo(fn, a, halo=(6, 6, 6), chunks=(3, 16, 20), dtype=np.float32)
    np.testing.assert_array_equal(lazy.compute(), fn(a))


def test_too_small_halo_shows_seams():
    a = np.random.default_rng(1).random((4, 40, 40)).astype(np.float32)

    def fn(block):
        return gaussian_filter(block, 2.0, mode="mirror", truncate=4.0)

    seams = map_with_halo(fn, a, halo=(1, 1, 1), chunks=(2, 20, 20), dtype=np.float32).compute()
    assert np.abs(seams - fn(a)).max() > 1e-3


def test_channels_and_tiny_axes():
    a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    lazy = map_with_halo(lambda b: np.stack([b, 2 * b]), a, halo=(3, 3, 3), chunks=(1, 2, 4), dtype=np.float32, n_channels=2)
    out = lazy.compute()
    assert out.shape == (2, 2, 5, 6)
    np.testing.assert_array_equal(out[1], 2 * a)
    padded = read_with_halo(a, (slice(0, 1), slice(0, 5), slice(0, 6)), (3, 0, 0))
    assert padded.shape == (7, 5, 6)


@pytest.mark.parametrize("n,h", [(1, 2), (2, 5), (3, 7)])
def test_mirror_pad_any_width(n, h):
    row = np.arange(n)[None, None, :]
    padded = read_with_halo(row, (slice(0, 1), slice(0, 1), slice(0, n)), (0, 0, h))
    assert padded.shape == (1, 1, n + 2 * h)
    assert set(padded.ravel().tolist()) <= set(range(n))
