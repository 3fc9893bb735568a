"""Notebook 07 (generalist models) under papermill with tiny stand-in models in the published formats:
the SAM clicks, automatic SAM, zero-shot MitoNet, a bioimage.io package and the comparison table all run end to end.
(The real models cannot be downloaded here; their figures are not measured by this test.)"""

import json

import pytest

from conftest import ROOT

PARAMS = {"DATASET": "synthetic", "MAX_SECTIONS": 3, "CROP_YX": 128, "TEST_SECTIONS": "0,2", "MAX_OBJECTS": 3,
          "MAX_CLICKS": 2, "TINY_MODELS": True, "DEVICE": "cpu", "QUICK": True}


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook07_runs_with_tiny_models(tmp_path):
    import papermill as pm

    out_dir = tmp_path / "out"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "07_generalist_models.ipynb"), str(tmp_path / "07.ipynb"),
        parameters={**PARAMS, "OUTPUT_DIR": str(out_dir)}, kernel_name="python3", progress_bar=False,
        cwd=str(tmp_path),
    )
    m = json.loads((out_dir / "metrics.json").read_text())
    assert m["notebook"] == "07_generalist_models" and m["tiny_models"] is True
    sam = m["results"]["sam_clicks"]
    assert sam["objects"] >= 1 and 1 <= sam["clicks_per_object"] <= 2 and 0 <= sam["mean_iou"] <= 1
    assert 0 <= m["results"]["mitonet"]["iou"] <= 1 and 0 <= m["results"]["bioimageio"]["iou"] <= 1
    assert (out_dir / "mitonet.ome.zarr").is_dir() and (out_dir / "bioimageio.ome.zarr").is_dir()
    auto = m["results"]["sam_auto"]  # automatic SAM over the volume (tiny random SAM: counts only)
    assert (out_dir / "sam_auto.ome.zarr").is_dir() and auto["points_per_side"] == 8 and auto["objects_3d"] >= 0
    assert 0 <= auto["mitochondria_found"] <= auto["mitochondria_in_test_sections"]
    assert auto["mitochondria_in_test_sections"] >= 1
    assert m["results"]["unet"]["iou"] is None  # no notebook-03 model given
