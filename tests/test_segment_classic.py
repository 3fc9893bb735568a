"""Tests for vemkit.segment_classic on synthetic volumes built here (dark ellipsoids, bright background)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit._volume import Volume
from vemkit.metrics import iou
from vemkit.segment_classic import (
    classic_pipeline,
    clean,
    normalize,
    structuring_element,
    threshold,
    watershed_split,
)

VOXEL = (40.0, 10.0, 10.0)  # anisotropic, like SBF-SEM: 4x coarser in z


def ellipsoid(shape, voxel_size, centre_nm, radii_nm):
    """Boolean ellipsoid in physical units on an anisotropic grid."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist2 = sum(((g * v - c) / r) ** 2 for g, v, c, r in zip(grids, voxel_size, centre_nm, radii_nm))
    return dist2 <= 1


@pytest.fixture(scope="module")
def phantom():
    """Three separate dark ellipsoids on a bright noisy background, and their exact masks."""
    shape = (16, 64, 64)
    objects = [
        ellipsoid(shape, VOXEL, (300, 160, 160), (200, 120, 90)),
        ellipsoid(shape, VOXEL, (320, 420, 200), (180, 90, 140)),
        ellipsoid(shape, VOXEL, (300, 300, 480), (220, 110, 110)),
    ]
    truth = np.zeros(shape, bool)
    for obj in objects:
        truth |= obj
    rng = np.random.default_rng(0)
    image = np.where(truth, 80.0, 180.0) + rng.normal(0, 20, shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, truth, objects


# ---------------------------------------------------------------------------------------------- normalize


def test_normalize_range_and_dtype(phantom):
    image, _, _ = phantom
    before = image.copy()
    out = normalize(image)
    assert out.dtype == np.float32
    assert out.shape == image.shape
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_array_equal(image, before)  # input untouched
    lo, hi = np.percentile(image, [1, 99])
    np.testing.assert_allclose(out, np.clip((image - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_normalize_per_section_removes_contrast_drift():
    rng = np.random.default_rng(1)
    base = rng.normal(100, 10, (1, 32, 32))
    stack = np.concatenate([base * gain + shift for gain, shift in [(1, 0), (0.5, 40), (2, -50)]])
    out = normalize(stack, per_section=True)
    for section in out:
        assert section.min() == 0.0 and section.max() == 1.0
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)
    # a whole-stack normalisation keeps the drift
    assert not np.allclose(normalize(stack)[0], normalize(stack)[2], atol=0.05)


def test_normalize_constant_and_errors():
    out = normalize(np.full((2, 3, 3), 7, np.uint16))
    assert out.dtype == np.float32 and not out.any()
    with pytest.raises(ValueError, match="lower < upper"):
        normalize(np.zeros((1, 2, 2)), lower=50, upper=50)
    with pytest.raises(ValueError, match="NaN"):
        normalize(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"3D \(z, y, x\).*image\[None\]"):
        normalize(np.zeros((4, 4)))


# ---------------------------------------------------------------------------------------------- threshold


@pytest.mark.parametrize("method", ["otsu", "li"])
def test_automatic_threshold_finds_dark_ellipsoids(phantom, method):
    image, truth, _ = phantom
    mask, t = threshold(image, method=method, return_threshold=True)
    assert mask.dtype == bool
    assert 80 < t < 180
    assert iou(mask, truth)[1] > 0.9


def test_otsu_on_normalized_image_and_volume_input(phantom):
    image, truth, _ = phantom
    vol = Volume.from_array(image, voxel_size=VOXEL, chunks=(8, 32, 32))
    mask = threshold(normalize(vol))
    assert iou(mask, truth)[1] > 0.9


def test_global_and_bright_objects(phantom):
    image, truth, _ = phantom
    np.testing.assert_array_equal(threshold(image, value=130), image <= 130)
    np.testing.assert_array_equal(threshold(image, 130, method="global"), image <= 130)
    inverted = 255 - image
    bright = threshold(inverted, dark_objects=False)
    assert iou(bright, truth)[1] > 0.9


def test_local_threshold_is_anisotropy_aware(phantom):
    image, truth, _ = phantom
    from skimage.filters import threshold_local

    mask, t = threshold(
        image, method="local", voxel_size=VOXEL, block_size_nm=1000, offset=40, return_threshold=True
    )
    assert t.shape == image.shape and t.dtype == np.float32
    # a 1000 nm window is 25 sections of 40 nm but 101 pixels of 10 nm
    expected = threshold_local(image.astype(np.float32), (25, 101, 101), offset=40)
    np.testing.assert_allclose(t, expected, rtol=1e-5)
    np.testing.assert_array_equal(mask, image <= t)
    assert iou(mask, truth)[1] > 0.85
    vol = Volume.from_array(image, voxel_size=VOXEL)
    np.testing.assert_array_equal(threshold(vol, method="local", block_size_nm=1000, offset=40), mask)
    # bright objects: the offset goes the other way
    bright = threshold(
        255 - image, method="local", voxel_size=VOXEL, block_size_nm=1000, offset=40, dark_objects=False
    )
    assert iou(bright, truth)[1] > 0.85
    with pytest.raises(ValueError, match="voxel_size"):
        threshold(image, method="local")


def test_threshold_errors(phantom):
    image, _, _ = phantom
    with pytest.raises(ValueError, match="method must be one of"):
        threshold(image, method="triangle")
    with pytest.raises(ValueError, match="needs a threshold value"):
        threshold(image, method="global")
    with pytest.raises(ValueError, match="fixed threshold"):
        threshold(image, value=3, method="otsu")
    with pytest.raises(ValueError, match="single grey value"):
        threshold(np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="3D"):
        threshold(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="grey-value"):
        threshold(np.zeros((2, 2, 2), bool))


# ---------------------------------------------------------------------------------------------- morphology


def test_structuring_element_per_axis_extent():
    se = structuring_element(40, (40, 10, 5))
    assert se.shape == (3, 9, 17)  # half-extents 1, 4, 8 voxels
    assert se[1, 4, :].all() and se[1, :, 8].all() and se[:, 4, 8].all()  # full length along each axis
    assert se[1, 4, 8]
    assert not se[0, 0, 0]  # an ellipsoid, not a box
    np.testing.assert_array_equal(se, se[::-1, ::-1, ::-1])  # symmetric
    # z much coarser than the radius: a 2D disk acting per section
    flat = structuring_element(20, (50, 5, 5))
    assert flat.shape == (1, 9, 9)
    # isotropic case is a ball
    ball = structuring_element(3, (1, 1, 1))
    assert ball.shape == (7, 7, 7)
    offsets = range(-3, 4)
    inside = [(z, y, x) for z in offsets for y in offsets for x in offsets if z * z + y * y + x * x <= 9]
    assert ball.sum() == len(inside)
    assert structuring_element(0, VOXEL).shape == (1, 1, 1)
    with pytest.raises(ValueError, match="voxel_size"):
        structuring_element(10, (0, 1, 1))
    with pytest.raises(ValueError, match="radius_nm"):
        structuring_element(-1, (1, 1, 1))


def test_clean_opening_breaks_thin_bridges_in_physical_units():
    vs = (40.0, 10.0, 10.0)
    mask = np.zeros((5, 40, 60), bool)
    mask[:, 10:30, 5:25] = True
    mask[:, 10:30, 35:55] = True
    mask[:, 19:21, 25:35] = True  # a 20 nm wide bridge
    assert ndi.label(mask)[1] == 1
    before = mask.copy()
    out = clean(mask, vs, opening_radius_nm=30, fill_holes=False)
    np.testing.assert_array_equal(mask, before)  # input untouched
    assert ndi.label(out)[1] == 2
    assert not out[:, 19:21, 27:33].any()
    # blocks touching the volume border in z are not eroded from outside
    assert out[0, 15:25, 10:20].all() and out[-1, 15:25, 10:20].all()
    assert (out <= mask).all()


def test_clean_min_size_in_nm3_and_voxels():
    vs = (40.0, 10.0, 10.0)  # 4000 nm3 per voxel
    mask = np.zeros((4, 20, 20), bool)
    mask[0:2, 0:3, 0:3] = True  # 18 voxels = 72000 nm3
    mask[1:4, 10:15, 10:15] = True  # 75 voxels
    out = clean(mask, vs, min_size_nm3=80_000)
    assert not out[0:2, 0:3, 0:3].any() and out[1:4, 10:15, 10:15].all()
    out = clean(mask, vs, min_size_nm3=72_000)  # exactly the size: kept
    assert out[0:2, 0:3, 0:3].all()
    out = clean(mask, min_size=19)
    assert out.sum() == 75
    with pytest.raises(ValueError, match="not both"):
        clean(mask, vs, min_size=3, min_size_nm3=10)
    with pytest.raises(ValueError, match="voxel_size"):
        clean(mask, min_size_nm3=10)
    with pytest.raises(ValueError, match="voxel_size"):
        clean(mask, opening_radius_nm=10)


def test_clean_fills_holes_in_3d_or_per_section():
    mask = np.zeros((5, 12, 12), bool)
    mask[:, 2:10, 2:10] = True
    mask[:, 5:7, 5:7] = False  # a tunnel through every section: open in 3D at top and bottom
    mask[2, 3, 3] = False  # a cavity enclosed in 3D
    out3d = clean(mask, fill_holes=True)
    assert out3d[2, 3, 3] and not out3d[:, 5:7, 5:7].any()
    per_section = clean(mask, fill_holes="section")
    assert per_section[:, 2:10, 2:10].all()
    # "auto" fills per section when z is much coarser, in 3D when voxels are near isotropic
    np.testing.assert_array_equal(clean(mask, (50, 5, 5)), per_section)
    np.testing.assert_array_equal(clean(mask, (6, 5, 5)), out3d)
    np.testing.assert_array_equal(clean(mask.astype(np.uint8)), out3d)  # nonzero = object
    with pytest.raises(ValueError, match="fill_holes"):
        clean(mask, fill_holes="2d")


# ---------------------------------------------------------------------------------------------- watershed


def test_watershed_splits_touching_balls():
    vs = (20.0, 10.0, 10.0)
    shape = (24, 40, 60)
    a = ellipsoid(shape, vs, (240, 200, 170), (120, 120, 120))
    b = ellipsoid(shape, vs, (240, 200, 390), (100, 100, 100))  # centres 220 nm apart, radii 120 + 100
    mask = a | b
    assert ndi.label(mask)[1] == 1  # connected components see one object
    labels = watershed_split(mask, vs, min_distance_nm=80)
    assert labels.dtype == np.uint32
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, mask)
    # each instance is essentially one ball
    for ball in (a, b):
        ids, counts = np.unique(labels[ball], return_counts=True)
        assert counts.max() / counts.sum() > 0.95
    assert labels[12, 20, 17] != labels[12, 20, 39]


def test_watershed_labels_every_object_even_close_small_ones():
    vs = (40.0, 10.0, 10.0)
    shape = (8, 30, 60)
    big = ellipsoid(shape, vs, (160, 150, 150), (120, 120, 120))
    small = ellipsoid(shape, vs, (160, 150, 330), (40, 40, 40))  # 40 nm gap, min_distance 300 nm
    mask = big | small
    assert ndi.label(mask)[1] == 2
    labels = watershed_split(mask, vs, min_distance_nm=300)
    np.testing.assert_array_equal(labels > 0, mask)
    assert labels.max() == 2
    assert len(np.unique(labels[small])) == 1 and len(np.unique(labels[big])) == 1


def test_watershed_keeps_one_ball_whole_and_uses_voxel_size():
    vs = (40.0, 10.0, 10.0)
    shape = (12, 40, 40)
    ball = ellipsoid(shape, vs, (240, 200, 200), (150, 150, 150))
    labels = watershed_split(ball, vs, min_distance_nm=100)
    assert labels.max() == 1
    np.testing.assert_array_equal(watershed_split(np.zeros(shape, bool), vs), np.zeros(shape, np.uint32))
    vol = Volume.from_array(ball, voxel_size=vs)
    np.testing.assert_array_equal(watershed_split(vol, min_distance_nm=100), labels)
    with pytest.raises(ValueError, match="voxel_size"):
        watershed_split(ball)
    with pytest.raises(ValueError, match="voxel_size"):
        watershed_split(ball, (40, -1, 10))
    with pytest.raises(ValueError, match="three values"):
        watershed_split(ball, (10, 10))


# ---------------------------------------------------------------------------------------------- pipeline


def test_classic_pipeline_on_phantom(phantom):
    image, truth, objects = phantom
    result = classic_pipeline(image, VOXEL, min_size_nm3=2e6, min_distance_nm=150)
    assert set(result) == {"mask", "raw_mask", "instances", "threshold"}
    assert result["mask"].dtype == bool and result["instances"].dtype == np.uint32
    assert 0 < result["threshold"] < 1
    assert iou(result["mask"], truth)[1] > 0.9
    assert iou(result["mask"], truth)[1] >= iou(result["raw_mask"], truth)[1]  # cleaning helps
    assert result["instances"].max() == len(objects)
    vol = Volume.from_array(image, voxel_size=VOXEL)
    np.testing.assert_array_equal(
        classic_pipeline(vol, min_size_nm3=2e6)["instances"],
        classic_pipeline(image, VOXEL, min_size_nm3=2e6)["instances"],
    )


def test_classic_pipeline_errors(phantom):
    image, _, _ = phantom
    with pytest.raises(ValueError, match="voxel_size"):
        classic_pipeline(image)
    with pytest.raises(ValueError, match="voxel_size"):
        classic_pipeline(image, (40, 10, np.nan))
    with pytest.raises(ValueError, match="3D"):
        classic_pipeline(image[0], VOXEL)
    with pytest.raises(ValueError, match="method"):
        classic_pipeline(image, VOXEL, method="kmeans")
