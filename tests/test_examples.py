"""vemkit.examples: the notebooks' example data (dataset, phantom or own files), crops, truth and annotations,
and their small shared steps (QUICK sections, headless runs, the previous notebook's outputs, the summary table)."""

import json

import numpy as np
import pytest

from vemkit import examples
from vemkit.examples import (HEADLESS_ENV, Example, annotate_from_truth, evenly_spaced, load_domain_pair, load_example,
                             parse_sections, previous_output, running_headless, summary_table)
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


def test_parse_sections_keeps_as_many_sections_on_a_smaller_crop():
    assert parse_sections("0,10", 20) == [0, 10] and parse_sections("0, 3", 6) == [0, 3]
    assert parse_sections("0,10", 6) == [0, 5] and parse_sections("2,10,15", 6) == [0, 2, 5]
    assert parse_sections("", 6) == [] and parse_sections("0,1,2,3", 2) == [0, 1]
    with pytest.raises(ValueError, match="0 or more"):
        parse_sections("-1", 6)


def test_running_headless(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert running_headless()
    monkeypatch.setenv(HEADLESS_ENV, "0")
    assert not running_headless()
    monkeypatch.delenv(HEADLESS_ENV)
    assert running_headless()  # a plain Python process (this test): nobody at a notebook

    class Kernel:  # an IPython kernel: decided by whether its cells can ask for input
        def __init__(self, allow_stdin):
            self.kernel = type("K", (), {"_allow_stdin": allow_stdin})()

    # nbclient (papermill, nbconvert, the tour) sends cells with allow_stdin=False; a front end with True
    for allow_stdin, headless in [(False, True), (True, False)]:
        monkeypatch.setattr("IPython.get_ipython", lambda a=allow_stdin: Kernel(a))
        assert running_headless() is headless, allow_stdin


def test_previous_output(tmp_path, capsys):
    here = tmp_path / "05_quantify"
    assert previous_output(here, "04_gpu_inference", otherwise="the truth stands in") is None
    assert "run 04_gpu_inference.ipynb first" in capsys.readouterr().out
    prev = tmp_path / "04_gpu_inference"
    prev.mkdir()
    labels = prev / "prediction.ome.zarr"
    figures = {"labels": f"{labels}:/labels/segmentation", "crop_zyx": [6, 256, 256], "class_index_for_05": 2}
    (prev / "metrics.json").write_text(json.dumps(figures))
    assert previous_output(here, "04_gpu_inference", needs=["labels"]) is None  # the zarr is gone
    assert "lack labels" in capsys.readouterr().out
    labels.mkdir()
    assert previous_output(here, "04_gpu_inference", needs=["labels"], shape=(20, 1024, 1024)) is None
    assert "cover 6 x 256 x 256 voxels, this run 20 x 1024 x 1024" in capsys.readouterr().out
    assert previous_output(here, "04_gpu_inference", needs=["labels"], shape=(6, 256, 256)) == figures
    assert "using the outputs of notebook 04_gpu_inference" in capsys.readouterr().out


def test_summary_table_is_short():
    figures = {"notebook": "05", "n_instances": 87, "instance_scores": {"mean_ap": 0.46612, "ap": {"0.5": 0.8}},
               "seconds": 36.04, "voxels_per_second": 2131232.5, "curve": [{"sections": [0], "iou": 0.5}]}
    table = summary_table(figures, ["n_instances", "instance_scores.mean_ap", "instance_scores.ap", "seconds",
                                    "voxels_per_second", "curve", "missing"], path="out/metrics.json")
    assert table["value"].to_dict() == {"n_instances": "87", "instance_scores.mean_ap": "0.466",
                                        "instance_scores.ap · 0.5": "0.8", "seconds": "36.0",
                                        "voxels_per_second": "2,131,232"}
    assert table.columns.name == "all key figures: out/metrics.json"
