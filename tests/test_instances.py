"""Tests for vemkit.instances: connected components, watersheds, size filters and the blockwise path."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit._volume import Volume
from vemkit.instances import (
    boundaries,
    connected_components,
    distance_watershed,
    instances_blockwise,
    relabel_sequential,
    seeded_watershed,
    size_filter,
)
from vemkit.synthetic import make_phantom

VOXEL = (40.0, 8.0, 8.0)  # anisotropic, like SBF-SEM


def ball(shape, voxel_size, centre_nm, radius_nm):
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g * v - c) / radius_nm) ** 2 for g, v, c in zip(grids, voxel_size, centre_nm)) <= 1


def one_to_one(a, b):
    """True when the nonzero ids of a and b correspond one to one on the same voxels."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]]).astype(np.int64), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def matched_fraction(pred, truth, threshold=0.9):
    """Fraction of truth objects matched by a predicted object with IoU > threshold."""
    fg = (pred > 0) | (truth > 0)
    pairs, inter = np.unique(np.stack([truth[fg], pred[fg]]).astype(np.int64), axis=1, return_counts=True)
    size_t = np.bincount(truth.ravel().astype(np.int64))
    size_p = np.bincount(pred.ravel().astype(np.int64))
    ok = (pairs[0] > 0) & (pairs[1] > 0)
    iou = inter[ok] / (size_t[pairs[0][ok]] + size_p[pairs[1][ok]] - inter[ok])
    matched = np.unique(pairs[0][ok][iou > threshold])
    return len(matched) / max(int((np.unique(truth) > 0).sum()), 1)


def dominant(pred, truth):
    """truth id -> the predicted id covering most of it."""
    fg = truth > 0
    pairs, cnt = np.unique(np.stack([truth[fg], pred[fg]]).astype(np.int64), axis=1, return_counts=True)
    out = {}
    for t in np.unique(pairs[0]):
        m = pairs[0] == t
        out[int(t)] = int(pairs[1][m][np.argmax(cnt[m])])
    return out


@pytest.fixture(scope="module")
def phantom():
    return make_phantom((32, 192, 192), seed=0, n_vesicles=0)


@pytest.fixture(scope="module")
def two_balls():
    """Two touching balls (r = 200 nm) on an anisotropic grid, and the exact ball of each voxel."""
    shape = (16, 100, 140)
    a = ball(shape, VOXEL, (300, 400, 330), 200)
    b = ball(shape, VOXEL, (300, 400, 700), 200) & ~a
    truth = a.astype(np.uint32) + 2 * b.astype(np.uint32)
    assert ndi.label(truth > 0)[1] == 1  # they do touch
    return truth


# ---------------------------------------------------------------------------------------- connected components


def test_connected_components_connectivity():
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner neighbours
    mask[2, 2, 2] = True
    assert connected_components(mask, 26).max() == 1
    assert connected_components(mask, 18).max() == 3
    mask2 = np.zeros((1, 3, 3), bool)
    mask2[0, 0, 0] = mask2[0, 1, 1] = True  # edge neighbours
    assert connected_components(mask2, 18).max() == 1
    assert connected_components(mask2, 6).max() == 2
    with pytest.raises(ValueError, match="connectivity"):
        connected_components(mask, 8)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_connected_components_matches_scipy(connectivity):
    rng = np.random.default_rng(connectivity)
    mask = rng.random((12, 30, 30)) < 0.25
    structure = ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    expected, n = ndi.label(mask, structure)
    labels = connected_components(mask, connectivity)
    assert labels.dtype == np.uint32
    assert int(labels.max()) == n
    assert one_to_one(labels, expected)


def test_connected_components_min_size_and_volume():
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[0:2, 0:2, 0:2] = 1  # 8 voxels
    mask[3, 8, 8] = 5  # a single voxel, nonzero integer = foreground
    vol = Volume.from_array(mask, voxel_size=(40, 10, 10))
    labels = connected_components(vol, min_size_nm3=2 * 4000)  # voxel volume 4000 nm3
    assert labels.max() == 1 and labels.sum() == 8
    assert connected_components(mask).max() == 2
    with pytest.raises(ValueError, match="voxel_size"):
        connected_components(mask, min_size_nm3=10)
    with pytest.raises(ValueError, match="mask"):
        connected_components(mask.astype(np.float32))
    with pytest.raises(ValueError, match="3D"):
        connected_components(mask[0])


# ---------------------------------------------------------------------------------------- watersheds


def test_distance_watershed_splits_touching_balls(two_balls):
    before = two_balls.copy()
    labels = distance_watershed(two_balls > 0, VOXEL)
    np.testing.assert_array_equal(two_balls, before)
    assert labels.dtype == np.uint32 and labels.max() == 2
    assert matched_fraction(labels, two_balls, 0.9) == 1.0
    # a larger spacing than the two centres keeps them as one
    assert distance_watershed(two_balls > 0, VOXEL, min_distance_nm=500, h=None).max() == 1


def test_distance_watershed_voxel_size_matters(two_balls):
    """Treating 40 nm sections as 8 nm ones distorts the distances: the split moves off the neck."""
    right = distance_watershed(two_balls > 0, VOXEL)
    wrong = distance_watershed(two_balls > 0, (8.0, 8.0, 8.0), min_distance_nm=100)
    assert matched_fraction(right, two_balls) >= matched_fraction(wrong, two_balls)
    with pytest.raises(ValueError, match="voxel_size"):
        distance_watershed(two_balls > 0)


def test_distance_watershed_splits_phantom_touching_pairs(phantom):
    truth = phantom.instances["mitochondria"]
    pairs = phantom.info["touching_mitochondria"]
    assert pairs
    merged = connected_components(truth > 0)
    labels = distance_watershed(truth > 0, phantom.voxel_size, min_size_nm3=1e5)
    best = dominant(labels, truth)
    split = np.mean([best[a] != best[b] for a, b in pairs])
    merged_best = dominant(merged, truth)
    assert np.mean([merged_best[a] != merged_best[b] for a, b in pairs]) == 0  # cc cannot split them
    assert split >= 0.75
    assert matched_fraction(labels, truth, 0.5) >= 0.8


def test_seeded_watershed_with_boundaries_and_distances(phantom):
    truth = phantom.instances["mitochondria"]
    fg = (truth > 0).astype(np.float32)
    # what a network would predict: boundaries where an object meets background or another object
    boundary = np.zeros(truth.shape, bool)
    for axis in range(3):
        for step in (1, -1):
            shifted = np.roll(truth, step, axis=axis)
            boundary |= (truth > 0) & (shifted != truth)
    labels = seeded_watershed(fg, boundary.astype(np.float32), voxel_size=phantom.voxel_size)
    assert matched_fraction(labels, truth, 0.8) >= 0.9
    # a normalised distance map per object (1 in the centre) as the seed source
    from vemkit._geometry import distance_transform as _distance_transform

    dist = np.zeros(truth.shape, np.float32)
    for i, box in enumerate(ndi.find_objects(truth), start=1):
        if box is None:
            continue
        own = truth[box] == i
        d = _distance_transform(own, phantom.voxel_size)
        dist[box][own] = (d / d.max())[own]
    labels2 = seeded_watershed(fg, distance=dist, seed_threshold=0.6, voxel_size=phantom.voxel_size)
    assert matched_fraction(labels2, truth, 0.8) >= 0.9
    # uint8 maps are scaled; shapes must agree
    labels3 = seeded_watershed((fg * 255).astype(np.uint8), (boundary * 255).astype(np.uint8))
    assert one_to_one(labels3, labels)
    with pytest.raises(ValueError, match="boundary_prob"):
        seeded_watershed(fg, boundary[:, :10])
    with pytest.raises(ValueError, match="foreground_prob"):
        seeded_watershed(np.full((2, 4, 4), np.nan, np.float32), np.zeros((2, 4, 4), np.float32))


def test_seeded_watershed_keeps_unseeded_blobs():
    fg = np.zeros((1, 6, 12), np.float32)
    fg[0, 1:5, 1:5] = 1.0
    fg[0, 1:5, 8:11] = 1.0
    boundary = np.zeros_like(fg)
    boundary[0, :, 8:11] = 0.9  # the second blob is all boundary: no seed in it
    labels = seeded_watershed(fg, boundary)
    assert labels.max() == 2 and (labels > 0).sum() == (fg > 0.5).sum()


# ---------------------------------------------------------------------------------------- size filter, relabel


def test_size_filter_and_relabel():
    labels = np.zeros((2, 10, 10), np.uint16)
    labels[0, :2, :2] = 4  # 4 voxels
    labels[1, 5:, 5:] = 9  # 25 voxels
    labels[0, 9, 9] = 2  # 1 voxel
    vs = (10, 10, 10)
    out = size_filter(labels, min_size_nm3=2000, voxel_size=vs)
    assert out.dtype == labels.dtype
    assert set(np.unique(out)) == {0, 4, 9}
    out = size_filter(labels, max_size_nm3=4000, voxel_size=vs)
    assert set(np.unique(out)) == {0, 2, 4}
    out = size_filter(Volume.from_array(labels, voxel_size=vs), min_size_nm3=2000, relabel=True)
    assert set(np.unique(out)) == {0, 1, 2} and out.dtype == np.uint32
    with pytest.raises(ValueError, match="voxel_size"):
        size_filter(labels, min_size_nm3=10)
    with pytest.raises(ValueError, match="labels"):
        size_filter(labels.astype(float), min_size_nm3=10, voxel_size=vs)
    relabelled, mapping = relabel_sequential(labels, return_mapping=True)
    assert mapping == {4: 1, 2: 2, 9: 3}
    assert relabelled[1, 9, 9] == 3


# ---------------------------------------------------------------------------------------- blockwise


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_blockwise_cc_equals_whole_volume_random(connectivity):
    """Random masks connect across block faces, edges and corners: every case must be stitched."""
    rng = np.random.default_rng(connectivity)
    mask = rng.random((11, 23, 29)) < 0.3
    whole = connected_components(mask, connectivity)
    blocks = instances_blockwise(mask, block=(3, 7, 5), connectivity=connectivity, progress=False)
    assert blocks.dtype == np.uint32
    assert blocks.max() == whole.max()
    assert one_to_one(blocks, whole)


def test_blockwise_cc_phantom_min_size_and_sources(phantom):
    import dask.array as da

    semantic = phantom.semantic
    vs = phantom.voxel_size
    whole = connected_components(semantic == 2, min_size_nm3=2e6, voxel_size=vs)
    lazy = Volume.from_array(da.from_array(semantic, chunks=(16, 64, 64)), voxel_size=vs)
    blocks = instances_blockwise(lazy, class_id=2, block=(10, 50, 64), min_size_nm3=2e6, progress=False)
    assert whole.max() > 3 and one_to_one(blocks, whole)
    prob = (semantic == 2).astype(np.float32) * 0.8
    from_prob = instances_blockwise(prob, threshold=0.5, block=(16, 96, 96), progress=False)
    assert one_to_one(from_prob, connected_components(semantic == 2))
    with pytest.raises(ValueError, match="threshold"):
        instances_blockwise(prob, progress=False)
    with pytest.raises(ValueError, match="method"):
        instances_blockwise(prob, method="magic", progress=False)


def test_blockwise_reads_only_blocks():
    """Memory stays bounded: the source is read one block (plus halo) at a time."""

    class Recorder:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.largest = array, array.shape, array.dtype, 0

        def __getitem__(self, key):
            out = self.array[key]
            self.largest = max(self.largest, out.size)
            return out

    mask = np.zeros((16, 64, 64), bool)
    mask[2:14, 10:50, 10:50] = ball((12, 40, 40), (10, 10, 10), (60, 200, 200), 150)
    source = Recorder(mask)
    instances_blockwise(source, block=(8, 32, 32), progress=False)
    assert source.largest == 8 * 32 * 32
    source = Recorder(mask)
    instances_blockwise(source, method="watershed", voxel_size=(10, 10, 10), block=(8, 32, 32),
                        halo=(2, 4, 4), progress=False)
    assert source.largest <= 12 * 40 * 40


def test_blockwise_watershed_close_to_whole_volume(phantom):
    from skimage.metrics import adapted_rand_error

    mask = phantom.semantic == 2
    vs = phantom.voxel_size
    whole = distance_watershed(mask, vs)
    blocks = instances_blockwise(mask, method="watershed", voxel_size=vs, block=(16, 96, 96), progress=False)
    assert abs(int(blocks.max()) - int(whole.max())) <= max(2, int(0.05 * whole.max()))
    assert matched_fraction(blocks, whole, 0.9) >= 0.9
    assert adapted_rand_error(whole, blocks)[0] < 0.05


def test_blockwise_object_larger_than_blocks():
    """Blocks lying wholly inside one object (no background to measure distances from) stay one object."""
    mask = np.zeros((12, 80, 80), bool)
    mask[1:11, 5:75, 5:75] = True
    for method in ("cc", "watershed"):
        labels = instances_blockwise(mask, method=method, voxel_size=(40, 8, 8), block=(4, 16, 16),
                                     halo=(1, 3, 3), progress=False)
        assert labels.max() == 1 and np.array_equal(labels > 0, mask)


def test_blockwise_two_balls_split_across_blocks(two_balls):
    blocks = instances_blockwise(two_balls > 0, method="watershed", voxel_size=VOXEL, block=(8, 50, 50),
                                 progress=False)
    assert blocks.max() == 2
    assert matched_fraction(blocks, two_balls, 0.9) == 1.0


def test_blockwise_writes_ome_zarr(tmp_path, phantom):
    from vemkit.io import open_volume, write_ome_zarr

    mask = phantom.semantic == 2
    vs = phantom.voxel_size
    out = tmp_path / "mito.ome.zarr"
    written = instances_blockwise(mask, out, voxel_size=vs, block=(16, 96, 96), progress=False)
    vol = open_volume(written)
    assert vol.voxel_size == vs and vol.dtype == np.uint32
    assert one_to_one(np.asarray(vol), connected_components(mask))
    with pytest.raises(FileExistsError):
        instances_blockwise(mask, out, voxel_size=vs, progress=False)
    with pytest.raises(ValueError, match="voxel_size"):
        instances_blockwise(mask, tmp_path / "other.ome.zarr", progress=False)
    # as a label image of an existing OME-Zarr image
    image_path = write_ome_zarr(phantom.image, tmp_path / "image.ome.zarr", voxel_size=vs, progress=False)
    target = f"{image_path}:/labels/mitochondria"
    written = instances_blockwise(Volume.from_array(mask, voxel_size=vs), target, block=(16, 96, 96),
                                  progress=False)
    labels = open_volume(written)
    assert one_to_one(np.asarray(labels), connected_components(mask))
    with pytest.raises(FileExistsError):
        instances_blockwise(mask, target, voxel_size=vs, progress=False)


# ---------------------------------------------------------------------------------------------- boundaries


def _boundaries_by_hand(ids, axes):
    """What notebook 06 computes by hand: both voxels of every pair of neighbours with different ids."""
    b = np.zeros(ids.shape, bool)
    for ax in axes:
        d = np.diff(ids.astype(np.int64), axis=ax) != 0
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        b[tuple(lo)] |= d
        b[tuple(hi)] |= d
    return b


def test_boundaries_match_the_by_hand_membranes():
    ids = make_phantom((6, 48, 48), seed=4).instances["cells"]
    planar = boundaries(ids)
    assert planar.dtype == bool and planar.shape == ids.shape
    np.testing.assert_array_equal(planar, _boundaries_by_hand(ids, (1, 2)))
    full = boundaries(Volume.from_array(ids, voxel_size=(40, 8, 8)), planar=False)
    np.testing.assert_array_equal(full, _boundaries_by_hand(ids, (0, 1, 2)))
    assert (full >= planar).all() and full.sum() > planar.sum()
    # unsigned ids: a smaller id next to a larger one is a boundary too (no wrap-around)
    two = np.array([[[2, 1, 1]]], np.uint8)
    np.testing.assert_array_equal(boundaries(two), [[[True, True, False]]])
    assert not boundaries(np.ones((2, 3, 3), np.uint16)).any()
    with pytest.raises(ValueError, match="labels"):
        boundaries(ids.astype(np.float32))
    with pytest.raises(ValueError, match="3D"):
        boundaries(ids[0])
