"""Tests of vemkit.synthetic: the EM phantom and its ground truth."""

import numpy as np
import pytest
from scipy import ndimage

from vemkit.synthetic import CLASSES, Phantom, make_phantom

SMALL = (8, 96, 96)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=0)


def _adjacent_pairs(labels):
    """Pairs of different nonzero labels that touch face to face (6-connectivity)."""
    pairs = set()
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)[1:].ravel()
        b = np.moveaxis(labels, axis, 0)[:-1].ravel()
        touch = (a != b) & (a > 0) & (b > 0)
        pairs.update(zip(np.minimum(a, b)[touch].tolist(), np.maximum(a, b)[touch].tolist()))
    return pairs


def test_default_phantom_layout(phantom):
    assert isinstance(phantom, Phantom)
    assert phantom.image.shape == (24, 256, 256) and phantom.image.dtype == np.uint8
    assert phantom.semantic.shape == (24, 256, 256) and phantom.semantic.dtype == np.uint8
    assert set(phantom.instances) == {"cells", "mitochondria", "vesicles"}
    for arr in phantom.instances.values():
        assert arr.shape == (24, 256, 256) and arr.dtype == np.uint32
    assert phantom.voxel_size == (40.0, 8.0, 8.0)
    assert phantom.classes == CLASSES == {1: "membrane", 2: "mitochondria", 3: "vesicle"}
    assert phantom.seed == 0
    assert set(np.unique(phantom.semantic)) == {0, 1, 2, 3}
    assert "seed=0" in repr(phantom)


def test_same_seed_same_arrays_other_seed_differs(phantom):
    again = make_phantom(seed=0)
    np.testing.assert_array_equal(again.image, phantom.image)
    np.testing.assert_array_equal(again.semantic, phantom.semantic)
    for key in phantom.instances:
        np.testing.assert_array_equal(again.instances[key], phantom.instances[key])
    a, b = make_phantom(SMALL, seed=1), make_phantom(SMALL, seed=2)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.instances["cells"], b.instances["cells"])


def test_imaging_parameters_leave_ground_truth_alone(phantom):
    quiet = make_phantom(seed=0, noise=0.0, drift=0.0, shading=0.0)
    np.testing.assert_array_equal(quiet.semantic, phantom.semantic)
    for key in phantom.instances:
        np.testing.assert_array_equal(quiet.instances[key], phantom.instances[key])
    assert not np.array_equal(quiet.image, phantom.image)

    # without noise, mitochondria stand out more clearly from the cytoplasm (whose grain texture stays)
    def contrast_to_noise(p):
        img = p.image.astype(float)
        cyto = img[p.semantic == 0]
        return (cyto.mean() - img[p.semantic == 2].mean()) / cyto.std()

    assert contrast_to_noise(quiet) > 1.5 * contrast_to_noise(phantom)


def test_class_fractions_are_plausible(phantom):
    fraction = {k: float((phantom.semantic == k).mean()) for k in range(4)}
    assert 0.05 <= fraction[1] <= 0.30
    assert 0.02 <= fraction[2] <= 0.15
    assert 0.0005 <= fraction[3] <= 0.03
    assert fraction[0] >= 0.5


def test_membranes_and_mitochondria_are_darker_than_cytoplasm(phantom):
    img = phantom.image.astype(float)
    mean = {k: img[phantom.semantic == k].mean() for k in range(4)}
    assert mean[1] < mean[0] - 30
    assert mean[2] < mean[0] - 50
    assert mean[2] < mean[1]
    # vesicles: dark rims around a lighter lumen, darker than cytoplasm on the whole at this resolution
    assert mean[3] < mean[0]
    # the rescale uses the range without clipping much
    assert phantom.image.min() == 0 and phantom.image.max() == 255
    assert (phantom.image == 0).mean() < 0.001 and (phantom.image == 255).mean() < 0.001
    assert 100 < mean[0] < 200


def test_instances_agree_with_semantic(phantom):
    sem, inst = phantom.semantic, phantom.instances
    np.testing.assert_array_equal(inst["mitochondria"] > 0, sem == 2)
    np.testing.assert_array_equal(inst["vesicles"] > 0, sem == 3)
    assert inst["cells"].min() >= 1
    for key, count in (("cells", "n_cells"), ("mitochondria", "n_mitochondria"), ("vesicles", "n_vesicles")):
        ids = np.unique(inst[key])
        ids = ids[ids > 0]
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # consecutive ids
        assert phantom.info[count] == len(ids)
    assert phantom.info["n_mitochondria"] >= 5 and phantom.info["n_vesicles"] >= 20
    mito = inst["mitochondria"]
    objects = ndimage.find_objects(mito)
    for i, sl in enumerate(objects, start=1):
        mask = mito[sl] == i
        # each mitochondrion is one connected piece inside one cell, never on a membrane
        assert ndimage.label(mask)[1] == 1
        assert len(np.unique(inst["cells"][sl][mask])) == 1
    for i, sl in enumerate(ndimage.find_objects(inst["vesicles"]), start=1):
        mask = inst["vesicles"][sl] == i
        assert len(np.unique(inst["cells"][sl][mask])) == 1


def test_membranes_separate_every_pair_of_cells(phantom):
    cells, membrane = phantom.instances["cells"], phantom.semantic == 1
    for axis in range(3):
        c, m = np.moveaxis(cells, axis, 0), np.moveaxis(membrane, axis, 0)
        leak = (c[1:] != c[:-1]) & ~m[1:] & ~m[:-1]
        assert not leak.any()


def test_some_mitochondria_touch(phantom):
    mito = phantom.instances["mitochondria"]
    touching = _adjacent_pairs(mito)
    assert len(touching) >= 1
    assert sorted(touching) == phantom.info["touching_mitochondria"]
    assert phantom.info["mitochondria_pairs"]
    for a, b in phantom.info["mitochondria_pairs"]:
        assert (min(a, b), max(a, b)) in touching
        # dilation adjacency, as an instance-splitting test would check it
        assert (ndimage.binary_dilation(mito == a) & (mito == b)).any()


def _physical_shapes(p):
    """Extents (nm) of each mitochondrion that does not touch the volume border:
    (diameter from the smallest inertia axis, number of sections, number of rows)."""
    out = []
    mito = p.instances["mitochondria"]
    vs = np.asarray(p.voxel_size)
    for i, sl in enumerate(ndimage.find_objects(mito), start=1):
        if any(s.start == 0 or s.stop == n for s, n in zip(sl, mito.shape)):
            continue
        coords = np.argwhere(mito[sl] == i) * vs
        if len(coords) < 50:
            continue
        smallest = np.linalg.eigvalsh(np.cov(coords.T))[0]
        out.append((4 * np.sqrt(smallest), sl[0].stop - sl[0].start, sl[1].stop - sl[1].start))
    return np.array(out)


def test_shapes_are_built_in_physical_units():
    aniso = _physical_shapes(make_phantom((40, 200, 200), (40, 8, 8), seed=4, n_vesicles=0))
    iso = _physical_shapes(make_phantom((100, 100, 100), (16, 16, 16), seed=4, n_vesicles=0))
    assert len(aniso) >= 2 and len(iso) >= 2
    # a solid cylinder of diameter D has 4 * sqrt(smallest variance) = D: 150-400 nm for both voxel sizes
    for shapes in (aniso, iso):
        assert 120 < np.median(shapes[:, 0]) < 450
    # with 40 nm sections and 8 nm pixels, mitochondria span far fewer sections than rows
    assert np.median(aniso[:, 1]) < 0.5 * np.median(aniso[:, 2])
    assert 0.5 < np.median(iso[:, 1]) / np.median(iso[:, 2]) < 2


def test_counts_follow_the_physical_volume():
    thin = make_phantom((6, 128, 128), seed=3)
    thick = make_phantom((24, 128, 128), seed=3)
    assert thick.info["parameters"]["n_mitochondria"] >= 3 * thin.info["parameters"]["n_mitochondria"]
    assert thick.info["parameters"]["n_vesicles"] > 3 * thin.info["parameters"]["n_vesicles"]
    assert thick.info["n_cells"] > thin.info["n_cells"]


def test_explicit_counts():
    p = make_phantom((16, 128, 128), seed=4, n_cells=3, n_mitochondria=2, n_vesicles=0)
    assert p.info["parameters"]["n_cells"] == 3
    assert p.info["n_cells"] >= 3  # cells seeded around the volume reach into it too
    assert p.info["n_mitochondria"] == 2
    assert p.info["n_vesicles"] == 0 and not (p.semantic == 3).any()
    none = make_phantom(SMALL, seed=4, n_mitochondria=0, n_vesicles=0)
    assert set(np.unique(none.semantic)) <= {0, 1}


def test_missing_and_misaligned_sections(phantom):
    p = make_phantom(seed=0, missing_sections=[3, 20], misaligned_sections={10: (4, -6)})
    assert p.missing_sections == (3, 20) and p.misaligned_sections == {10: (4, -6)}
    for z in (3, 20):
        assert (p.image[z] == 0).all()  # flat
    # the misaligned section is the original one moved by (+4, -6) pixels
    np.testing.assert_array_equal(p.image[10][4:, :-6], phantom.image[10][:-4, 6:])
    assert not np.array_equal(p.image[10], phantom.image[10])
    untouched = [z for z in range(24) if z not in (3, 10, 20)]
    np.testing.assert_array_equal(p.image[untouched], phantom.image[untouched])
    # the ground truth is neither shifted nor blanked
    np.testing.assert_array_equal(p.semantic, phantom.semantic)
    np.testing.assert_array_equal(p.instances["mitochondria"], phantom.instances["mitochondria"])


def test_random_misalignment_is_recorded():
    ref = make_phantom(SMALL, seed=6)
    p = make_phantom(SMALL, seed=6, misaligned_sections=[2])
    ((dy, dx),) = p.misaligned_sections.values()
    assert 3 <= abs(dy) <= 8 and 3 <= abs(dx) <= 8
    np.testing.assert_array_equal(
        np.roll(ref.image[2], (dy, dx), axis=(0, 1))[8:-8, 8:-8], p.image[2][8:-8, 8:-8]
    )


@pytest.mark.parametrize("dtype", ["uint16", np.float32])
def test_other_dtypes(dtype):
    p = make_phantom(SMALL, seed=7, dtype=dtype)
    assert p.image.dtype == np.dtype(dtype)
    if p.image.dtype == np.float32:
        assert p.image.min() >= 0 and p.image.max() <= 1 and p.image.max() - p.image.min() > 0.99
    else:
        assert p.image.max() == 65535 and p.image.min() == 0
    ref = make_phantom(SMALL, seed=7)
    np.testing.assert_array_equal(p.semantic, ref.semantic)


def test_drift_and_shading_change_brightness():
    flat = make_phantom(SMALL, seed=8, noise=0.0, drift=0.0, shading=0.0, dtype="float32")
    drifting = make_phantom(SMALL, seed=8, noise=0.0, drift=0.5, shading=0.0, dtype="float32")
    cyto = flat.semantic == 0

    def section_means(p):
        return np.array([p.image[z][cyto[z]].mean() for z in range(p.shape[0])])

    flat_means, drift_means = section_means(flat), section_means(drifting)
    assert np.ptp(drift_means) / drift_means.mean() > 3 * np.ptp(flat_means) / flat_means.mean()


def test_blur_is_given_in_nm():
    sharp = make_phantom(SMALL, seed=9, noise=0.0, blur_nm=0, dtype="float32")
    blurred = make_phantom(SMALL, seed=9, noise=0.0, blur_nm=(0, 24, 24), dtype="float32")

    def edges(p):
        return np.abs(np.diff(p.image, axis=2)).mean()

    assert edges(blurred) < 0.6 * edges(sharp)
    # no blur along z was asked for: sections stay as different from each other as without blur
    assert np.abs(np.diff(blurred.image, axis=0)).mean() > 0.5 * np.abs(np.diff(sharp.image, axis=0)).mean()


def test_to_volume():
    p = make_phantom(SMALL, seed=11)
    vol = p.to_volume()
    assert vol.shape == SMALL and vol.voxel_size == (40.0, 8.0, 8.0)
    assert vol.source == "synthetic phantom (seed=11)"
    np.testing.assert_array_equal(np.asarray(vol), p.image)
    sem = p.to_volume("semantic")
    np.testing.assert_array_equal(np.asarray(sem), p.semantic)
    with pytest.raises(ValueError, match="layer"):
        p.to_volume("nope")


def test_single_section_and_tiny_volumes():
    one = make_phantom((1, 64, 64), seed=0)
    assert one.image.shape == (1, 64, 64) and one.semantic.shape == (1, 64, 64)
    tiny = make_phantom((2, 3, 4), seed=0)
    assert tiny.image.shape == (2, 3, 4)


def test_seed_none_is_recorded_and_reproducible():
    p = make_phantom((2, 32, 32), seed=None)
    assert isinstance(p.seed, int)
    np.testing.assert_array_equal(make_phantom((2, 32, 32), seed=p.seed).image, p.image)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"shape": (256, 256)}, "shape"),
        ({"shape": (4, 0, 8)}, "shape"),
        ({"shape": (4, 8.5, 8)}, "shape"),
        ({"shape": "abc"}, "shape"),
        ({"voxel_size": (8, 8)}, "voxel_size"),
        ({"voxel_size": (40, -8, 8)}, "voxel_size"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"n_cells": 0}, "n_cells"),
        ({"n_mitochondria": -1}, "n_mitochondria"),
        ({"n_vesicles": 2.5}, "n_vesicles"),
        ({"noise": -0.1}, "noise"),
        ({"noise": "loud"}, "noise"),
        ({"blur_nm": (10, 10)}, "blur_nm"),
        ({"blur_nm": -1}, "blur_nm"),
        ({"drift": 1.0}, "drift"),
        ({"shading": -0.5}, "shading"),
        ({"missing_sections": [4]}, "missing_sections"),
        ({"missing_sections": [-1]}, "missing_sections"),
        ({"misaligned_sections": [9]}, "misaligned_sections"),
        ({"misaligned_sections": {1: (2.5, 1)}}, "misaligned_sections"),
        ({"dtype": "int8"}, "dtype"),
        ({"dtype": "not a dtype"}, "dtype"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, name):
    args = {"shape": (4, 16, 16), **kwargs}
    with pytest.raises(ValueError, match=name):
        make_phantom(**args)
