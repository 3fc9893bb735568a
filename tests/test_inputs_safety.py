"""Issue 19: bad inputs and parameters fail early with a message that says what and where, never an exit 0
with a wrong result and never a hang (predict, training, slice folders, instances, evaluate, datasets)."""

import math
import warnings

import numpy as np
import pytest
import torch

from vemkit.cli import main
from vemkit.models import SegmentationModel, UNet
from vemkit.predict import estimate, predict_volume

FIXED = {"mode": "fixed", "low": 0.0, "high": 1.0}


@pytest.fixture(scope="module")
def model2d():
    torch.manual_seed(0)
    net = UNet(ndim=2, out_channels=2, base_channels=4, depth=2)
    return SegmentationModel(net, ["background", "fg"], voxel_size=(50.0, 5.0, 5.0), normalization=FIXED)


@pytest.fixture(scope="module")
def model_dir(model2d, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model"
    model2d.save(path)
    return path


def _image(shape=(2, 64, 64)):
    return np.random.default_rng(0).random(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("batch_size", [-3, 0, 1.5, "2", True])
def test_predict_refuses_a_bad_batch_size(model2d, tmp_path, batch_size):
    out = tmp_path / "p.ome.zarr"
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        predict_volume(model2d, _image(), out, device="cpu", block=(1, 64, 64), batch_size=batch_size, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        estimate(model2d, _image(), device="cpu", batch_size=batch_size, probe=False)


@pytest.mark.parametrize("kw, match", [
    ({"tta": "yes"}, "tta must be True or False"),
    ({"prefetch": -1}, "prefetch must be an integer >= 0"),
    ({"memory_limit": "-5GB"}, "memory_limit"),
    ({"memory_limit": 10}, "memory_limit must be at least 1 MiB"),
    ({"intensity_range": (0, float("nan"))}, "intensity_range high must be a finite number"),
    ({"block": (1, 0, 64)}, "block must be three integers >= 1"),
])
def test_predict_refuses_bad_numbers(model2d, tmp_path, kw, match):
    kw = {"block": (1, 64, 64), **kw}
    with pytest.raises(ValueError, match=match):
        predict_volume(model2d, _image(), tmp_path / "p.ome.zarr", device="cpu", progress=False, **kw)


def test_cli_predict_batch_size_says_why(model_dir, tmp_path, capsys):
    from vemkit.io import write_tiff

    image = tmp_path / "im.tif"
    write_tiff(_image(), image, voxel_size=(50, 5, 5), progress=False)
    for bad in ("-3", "0"):
        assert main(["predict", "--model", str(model_dir), "--image", str(image), "--out",
                     str(tmp_path / "p.ome.zarr"), "--device", "cpu", "--batch-size", bad, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "batch_size must be an integer >= 1" in err and "range()" not in err
    assert not (tmp_path / "p.ome.zarr").exists()


def test_predict_refuses_nan_naming_the_block(model2d, tmp_path):
    image = _image((3, 64, 128))
    image[2, 10, 70] = np.nan
    image[2, 11, 71] = np.inf
    # the first block that reads them (its context reaches x 40:88) names how many and where
    with pytest.raises(ValueError, match=r"the image holds 2 NaN or infinite value\(s\) in z 2:3, y 0:64, x 0:88 "
                                         r"\(read for the block z 2:3, y 0:64, x 0:64\), the first at "
                                         r"\(z, y, x\) = \(2, 10, 70\); fill or mask them first"):
        predict_volume(model2d, image, tmp_path / "p.ome.zarr", device="cpu", block=(1, 64, 64), progress=False)


def test_predict_refuses_nan_in_the_intensity_sample(tmp_path):
    torch.manual_seed(0)
    model = SegmentationModel(UNet(ndim=2, out_channels=2, base_channels=4, depth=2), ["bg", "fg"],
                              voxel_size=(50.0, 5.0, 5.0))  # percentile normalisation: a sample of the image
    image = _image()
    image[0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_volume(model, image, tmp_path / "p.ome.zarr", device="cpu", block=(1, 64, 64), progress=False)


@pytest.mark.parametrize("kind", ["zarr", "h5"])
def test_predict_on_an_empty_volume_names_it(model2d, tmp_path, kind):
    if kind == "zarr":
        import zarr

        path = str(tmp_path / "empty.zarr")
        zarr.create_array(store=path, shape=(0, 64, 64), chunks=(1, 64, 64), dtype="uint8")
    else:
        import h5py

        with h5py.File(tmp_path / "empty.h5", "w") as f:
            f.create_dataset("raw", shape=(0, 64, 64), dtype="uint8")
        path = f"{tmp_path / 'empty.h5'}:/raw"
    from vemkit.io import open_volume

    vol = open_volume(path, voxel_size=(50, 5, 5))
    with pytest.raises(ValueError, match=r"image .*empty.* has shape \(0, 64, 64\): it holds no voxels"):
        predict_volume(model2d, vol, tmp_path / "p.ome.zarr", device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"has shape \(0, 64, 64\): it holds no voxels"):
        estimate(model2d, vol, device="cpu", probe=False)
