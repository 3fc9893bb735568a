"""Cellpose-SAM as an optional extra: vemkit verifies the weights, hands them to the ``cellpose``
package and links its per-section instances across sections. The real package and the 1.2 GB
weights are not installed where vemkit is tested: a stand-in module with cellpose's API
(``models.CellposeModel(gpu=, pretrained_model=, device=)`` and ``.eval(image, diameter=)`` ->
``(masks, flows, styles)``) records what vemkit passes and answers with connected components.
"""

import sys
import types

import numpy as np
import pytest
import scipy.ndimage as ndi

from test_sam_auto import VS, _rods, _same_partition
from vemkit import generalist as g
from vemkit.cli import main
from vemkit.io import open_volume, write_tiff
from vemkit.predict import predict_volume


@pytest.fixture
def fake_cellpose(monkeypatch):
    calls = {"init": [], "eval": []}

    class CellposeModel:
        def __init__(self, gpu=False, pretrained_model=None, device=None):
            calls["init"].append({"gpu": gpu, "pretrained_model": pretrained_model, "device": str(device)})

        def eval(self, image, diameter=None, **kw):
            calls["eval"].append({"shape": np.shape(image), "dtype": str(np.asarray(image).dtype), "diameter": diameter})
            return ndi.label(np.asarray(image) < 128)[0], None, None

    package = types.ModuleType("cellpose")
    package.models = types.SimpleNamespace(CellposeModel=CellposeModel)
    monkeypatch.setitem(sys.modules, "cellpose", package)
    monkeypatch.setitem(sys.modules, "cellpose.models", package.models)
    return calls


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "cpsam_tiny"
    path.write_bytes(b"stand-in weights")
    return path


def test_without_the_package_a_clear_error_says_how_to_install_it(monkeypatch, tmp_path, weights, capsys):
    monkeypatch.setitem(sys.modules, "cellpose", None)  # import cellpose -> ImportError
    with pytest.raises(g.OptionalDependencyError, match=r"pip install 'cellpose>=4'"):
        g.load_cellpose(weights)
    img = write_tiff(_rods((2, 60, 70))[0], tmp_path / "img.tif", voxel_size=VS, progress=False)
    assert main(["predict", "--model", f"cellpose:{weights}", "--image", str(img), "--out",
                 str(tmp_path / "o.ome.zarr"), "--device", "cpu", "--quiet"]) == 2
    assert "pip install 'cellpose>=4'" in capsys.readouterr().err
    assert not (tmp_path / "o.ome.zarr").exists()


def test_the_manifest_model_is_refused_until_its_hash_is_pinned(fake_cellpose, tmp_path, monkeypatch):
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path / "cache"))
    entry = g.model_entry("cellpose_sam")
    assert entry["family"] == "cellpose" and entry["sha256"] is None and "CC-BY-NC" in entry["licence"]
    with pytest.raises(g.UnpinnedCodeError, match="vemkit models pin cellpose_sam"):
        g.load_cellpose("cellpose_sam")
    assert fake_cellpose["init"] == []  # nothing handed to cellpose, nothing downloaded
    path = g.model_file("cellpose_sam")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"the weights, checked by the user")
    g.pin_model("cellpose_sam", g.file_sha256(path))
    seg = g.load_cellpose("cellpose_sam", device="cpu", diameter=40)
    assert fake_cellpose["init"] == [{"gpu": False, "pretrained_model": str(path), "device": "cpu"}]
    assert seg.name == "cellpose_sam" and seg.diameter == 40


def test_cellpose_over_a_volume_links_its_instances_across_sections(fake_cellpose, tmp_path, weights):
    image, truth = _rods()
    img = write_tiff(image.astype(np.uint16) * 3, tmp_path / "img.tif", voxel_size=VS, progress=False)
    res = predict_volume(f"cellpose:{weights}", img, tmp_path / "cells.ome.zarr", device="cpu", progress=False,
                         model_options={"diameter": 25})
    vol = open_volume(res.labels, warn_missing_voxel_size=False)
    assert vol.voxel_size == VS and _same_partition(np.asarray(vol.data), truth)
    assert res.parameters["family"] == "cellpose" and res.parameters["diameter"] == 25.0
    assert {c["diameter"] for c in fake_cellpose["eval"]} == {25.0}
    assert {c["dtype"] for c in fake_cellpose["eval"]} == {"uint8"}  # one 8-bit mapping for the whole volume
    with pytest.raises(ValueError, match="unknown cellpose setting"):
        predict_volume(f"cellpose:{weights}", img, tmp_path / "x.ome.zarr", model_options={"points_per_side": 8})
    with pytest.raises(ValueError, match="diameter must be"):
        predict_volume(f"cellpose:{weights}", img, tmp_path / "y.ome.zarr", model_options={"diameter": -1})
