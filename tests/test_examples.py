"""vemkit.examples: the notebooks' example data (dataset, phantom or own files), crops, truth and annotations."""

import numpy as np
import pytest

from vemkit.examples import Example, annotate_from_truth, evenly_spaced, load_domain_pair, load_example
from vemkit.io import Volume, write_ome_zarr
from vemkit.synthetic import make_phantom


def test_phantom_example_is_the_phantom_cropped_with_its_truth():
    ex = load_example("synthetic", sections=4, crop_yx=96, phantom_voxel_size=(40.0, 5.0, 5.0), seed=3,
                      extra_labels=("membranes",))
    phantom = make_phantom((4, 96, 96), voxel_size=(40.0, 5.0, 5.0), seed=3)
    assert isinstance(ex, Example) and isinstance(ex.image, Volume)
    assert ex.image.shape == ex.shape == (4, 96, 96) and ex.image.voxel_size == (40.0, 5.0, 5.0)
    np.testing.assert_array_equal(np.asarray(ex.image), phantom.image)
    assert ex.truth.dtype == np.uint8
    np.testing.assert_array_equal(ex.truth, phantom.semantic == 2)
    np.testing.assert_array_equal(ex.instances, phantom.instances["mitochondria"])
    np.testing.assert_array_equal(ex.extra["membranes"], phantom.semantic == 1)
    assert ex.citation and ex.name == "synthetic phantom (seed=3)"


def test_phantom_target_class_and_errors():
    membranes = load_example("synthetic", sections=2, crop_yx=64, target="membranes")
    assert membranes.instances is None and membranes.truth.any()
    with pytest.raises(ValueError, match="no class 'nuclei'"):
        load_example("synthetic", sections=2, crop_yx=64, target="nuclei")
    with pytest.raises(ValueError, match="sections must be a positive"):
        load_example("synthetic", sections=0, crop_yx=64)


def test_crop_keeps_the_whole_volume_lazy_until_asked():
    whole = load_example("synthetic", phantom_shape=(6, 80, 80))
    assert whole.image.shape == (6, 80, 80) and whole.truth.shape == (6, 80, 80)
    part = whole.crop(3, 40)
    assert part.image.shape == part.truth.shape == part.instances.shape == (3, 40, 40)
    np.testing.assert_array_equal(np.asarray(part.image), np.asarray(whole.image)[:3, :40, :40])
    np.testing.assert_array_equal(part.truth, whole.truth[:3, :40, :40])


def test_own_image_with_and_without_labels(tmp_path):
    phantom = make_phantom((4, 96, 96), seed=1)
    path = tmp_path / "image.ome.zarr"
    write_ome_zarr(phantom.image, path, voxel_size=(40.0, 8.0, 8.0), labels={"mitochondria": (phantom.semantic == 2)
                                                                              .astype(np.uint8)}, progress=False)
    ex = load_example("synthetic", image_path=str(path), labels_path=f"{path}:/labels/mitochondria", sections=3,
                      crop_yx=64)
    assert ex.image.shape == (3, 64, 64) and ex.image.voxel_size == (40.0, 8.0, 8.0) and ex.name == str(path)
    np.testing.assert_array_equal(ex.truth, phantom.semantic[:3, :64, :64] == 2)
    assert ex.instances is None and ex.citation == ""
    # without labels: no truth, unless the caller needs it
    assert load_example("synthetic", image_path=str(path)).truth is None
    with pytest.raises(ValueError, match="give labels_path with image_path.*scoring"):
        load_example("synthetic", image_path=str(path), require_truth="scoring needs it")
    # the voxel size given overrides the file's, as text or numbers
    assert load_example("x", image_path=str(path), voxel_size="50,4,4").image.voxel_size == (50.0, 4.0, 4.0)
    assert load_example("x", image_path=str(path), voxel_size=(30, 2, 2)).image.voxel_size == (30.0, 2.0, 2.0)


def test_annotate_from_truth_dense_and_scribbles():
    truth = np.zeros((4, 32, 32), np.uint8)
    truth[:, 8:20, 8:20] = 1
    dense = annotate_from_truth(truth, [1, 3])
    assert dense.dtype == np.uint8 and not dense[[0, 2]].any()
    np.testing.assert_array_equal(dense[1], 1 + truth[1])
    strokes = annotate_from_truth(truth, [1], kind="scribbles", seed=0)
    assert strokes.shape == truth.shape and not strokes[[0, 2, 3]].any()
    assert set(np.unique(strokes[1]).tolist()) == {0, 1, 2}  # strokes on both classes, most voxels unlabelled
    np.testing.assert_array_equal(strokes, annotate_from_truth(truth, [1], kind="scribbles", seed=0))
    with pytest.raises(ValueError, match="kind must be"):
        annotate_from_truth(truth, [0], kind="sparse")
    with pytest.raises(ValueError, match="outside"):
        annotate_from_truth(truth, [4])


def test_evenly_spaced():
    assert evenly_spaced(4, 20) == [0, 6, 13, 19]
    assert evenly_spaced(25, 250, start=125)[0] == 125 and evenly_spaced(25, 250, start=125)[-1] == 249
    assert len(evenly_spaced(25, 250, start=125)) == 25 and evenly_spaced(5, 3) == [0, 1, 2]
    with pytest.raises(ValueError):
        evenly_spaced(0, 10)


def test_domain_pair_of_phantoms():
    src, tgt = load_domain_pair("synthetic", source_sections=3, crop_yx=64, target_sections=5, seed=2)
    assert src.image.shape == (3, 64, 64) and src.image.voxel_size == (40.0, 5.0, 5.0)
    assert tgt.image.shape == (5, 32, 32) and tgt.image.voxel_size == (10.0, 10.0, 10.0)
    np.testing.assert_array_equal(src.truth, make_phantom((3, 64, 64), voxel_size=(40.0, 5.0, 5.0), seed=2).semantic == 1)
    np.testing.assert_array_equal(tgt.truth, make_phantom((5, 32, 32), voxel_size=(10.0,) * 3, seed=3).semantic == 1)
    assert tgt.image.dtype == np.uint8


def test_vnc_dataset_crop(shared_data):
    ex = load_example("drosophila_vnc_sstem", sections=3, crop_yx=128, extra_labels=("membranes", "nuclei"))
    assert ex.image.shape == ex.truth.shape == (3, 128, 128) and ex.image.voxel_size == (50.0, 4.6, 4.6)
    assert ex.truth.dtype == np.uint8 and set(np.unique(ex.truth).tolist()) <= {0, 1}
    assert set(ex.extra) == {"membranes"} and "doi" in ex.citation.lower()
    whole = load_example("isbi2012")  # membranes only: no mitochondria truth, and the image stays whole
    assert whole.truth is None and whole.image.shape[0] > 3


def test_vnc_to_flyem_pair(shared_data):
    src, tgt = load_domain_pair("drosophila_vnc_sstem", source_sections=2, crop_yx=64, target_sections=3,
                                data_dir=shared_data)
    assert src.name == "VNC ssTEM (4.6 nm)" and tgt.name == "FlyEM FIB-SEM (10 nm)"
    assert tgt.image.shape[0] == 3 and tgt.image.voxel_size == (10.0, 10.0, 10.0)
    assert tgt.truth.shape == tgt.image.shape and 0 < tgt.truth.mean() < 0.5  # boundaries: test_instances
