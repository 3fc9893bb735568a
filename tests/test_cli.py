"""The vemkit command line: info, fetch, convert, and how it reports bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vemkit.cli import main
from vemkit.io import open_volume, write_tiff


@pytest.fixture
def tif(tmp_path):
    data = (np.arange(5 * 64 * 80) % 251).astype(np.uint8).reshape(5, 64, 80)
    return write_tiff(data, tmp_path / "stack.tif", voxel_size=(50, 4, 4), progress=False), data


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "vemkit.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("info", "fetch", "convert"):
        assert cmd in out.stdout


def test_info_json(tif, capsys):
    path, data = tif
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape_zyx"] == [5, 64, 80]
    assert info["voxel_size_nm_zyx"] == [50.0, 4.0, 4.0]
    assert info["format"] == "imagej-tiff" and info["size_bytes"] == data.nbytes
    assert info["anisotropy_z_over_xy"] == 12.5


def test_info_reports_unknown_voxel_size(tmp_path, capsys):
    import tifffile

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.zeros((2, 8, 8), np.uint8))
    assert main(["info", str(p)]) == 0
    assert "UNKNOWN" in capsys.readouterr().out


def test_convert_roundtrip_and_no_overwrite(tif, tmp_path, capsys):
    path, data = tif
    out = tmp_path / "out.ome.zarr"
    assert main(["convert", str(path), str(out), "--chunks", "2,32,32", "--levels", "2", "--quiet"]) == 0
    vol = open_volume(out)
    assert vol.voxel_size == (50.0, 4.0, 4.0) and vol.data.chunksize == (2, 32, 32)
    np.testing.assert_array_equal(np.asarray(vol), data)
    assert open_volume(out, level=1).shape == (5, 32, 40)
    # an existing output is kept unless --overwrite
    assert main(["convert", str(path), str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(path), str(out), "--voxel-size", "40,5,5", "--overwrite", "--quiet", "--ome-version", "0.5"]) == 0
    assert open_volume(out).voxel_size == (40.0, 5.0, 5.0)
    assert open_volume(out).metadata["format"] == "ome-zarr 0.5"


def test_convert_needs_a_voxel_size(tmp_path, capsys):
    import tifffile

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.zeros((2, 8, 8), np.uint8))
    assert main(["convert", str(p), str(tmp_path / "o.ome.zarr")]) == 2
    assert "--voxel-size" in capsys.readouterr().err
    assert not (tmp_path / "o.ome.zarr").exists()


def test_bad_arguments_exit_with_message(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.tif")]) == 2
    assert "no file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "a", "b", "--voxel-size", "1,2"])
    assert "three values" in capsys.readouterr().err
    assert main(["fetch", "no_such_dataset"]) == 2
    assert "known datasets" in capsys.readouterr().err


def test_fetch_list(capsys):
    assert main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "drosophila_vnc_sstem" in out and "isbi2012" in out


@pytest.mark.realdata
def test_fetch_verifies_shared_data(shared_data, capsys):
    assert main(["fetch", "isbi2012", "--quiet"]) == 0
    assert "90 files verified" in capsys.readouterr().out


def test_environment_yml_matches_pyproject():
    import re
    import tomllib

    from conftest import ROOT

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = (ROOT / "environment.yml").read_text()
    pip_lines = {m.group(1).strip() for m in re.finditer(r"^\s+- ([A-Za-z0-9_.\-]+[<>=!~].*)$", env, re.M)}
    assert set(deps) <= pip_lines, set(deps) - pip_lines


def test_instances_measure_evaluate(tmp_path, capsys):
    """vemkit instances -> measure -> evaluate on the phantom's mitochondria."""
    import pandas as pd

    from vemkit.io import write_ome_zarr
    from vemkit.synthetic import make_phantom

    ph = make_phantom(shape=(8, 128, 128), seed=2)
    mask = write_ome_zarr((ph.semantic == 2).astype(np.uint8), tmp_path / "mask.ome.zarr",
                          voxel_size=ph.voxel_size, kind="labels", progress=False)
    truth = write_ome_zarr(ph.instances["mitochondria"].astype(np.uint32), tmp_path / "truth.ome.zarr",
                           voxel_size=ph.voxel_size, kind="labels", progress=False)
    inst = tmp_path / "inst.ome.zarr"
    assert main(["instances", "--labels", str(mask), "--out", str(inst), "--method", "watershed",
                 "--block", "8,64,64", "--quiet"]) == 0
    assert "instances (watershed)" in capsys.readouterr().out
    table = tmp_path / "mito.csv"
    assert main(["measure", "--labels", str(inst), "--image", str(mask), "--out", str(table), "--quiet"]) == 0
    df = pd.read_csv(table)
    n = int(np.asarray(open_volume(inst)).max())
    assert len(df) == n and (df["volume_nm3"] > 0).all()
    vz, vy, vx = ph.voxel_size
    assert df["volume_nm3"].sum() == pytest.approx((ph.semantic == 2).sum() * vz * vy * vx, rel=1e-6)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--pred", str(inst), "--truth", str(truth), "--kind", "instances", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert 0 <= m["adapted_rand_error"] < 0.3 and m["tp"] > 0
    assert main(["evaluate", "--pred", str(inst), "--truth", str(truth), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_train_unet_then_predict_then_export(tmp_path, capsys):
    """README's U-Net path: vemkit train --method unet, vemkit predict, vemkit export."""
    from vemkit.models import load_model
    from vemkit.synthetic import make_phantom

    ph = make_phantom((4, 96, 96), voxel_size=(40.0, 5.0, 5.0), seed=2)
    image = tmp_path / "image.tif"
    write_tiff(np.asarray(ph.image), image, voxel_size=(40, 5, 5), progress=False)
    ann = np.zeros((4, 96, 96), np.uint8)
    ann[[0, 2]] = 1 + (np.asarray(ph.semantic)[[0, 2]] == 1)  # membranes: present in every section
    ann_path = tmp_path / "ann.tif"
    write_tiff(ann, ann_path, voxel_size=(40, 5, 5), progress=False)
    model_dir = tmp_path / "model"
    assert main(["train", "--method", "unet", "--image", str(image), "--annotations", str(ann_path),
                 "--classes", "background,membrane", "--out", str(model_dir), "--iterations", "2",
                 "--base", "em2d-small", "--amp", "off", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trained a 2D U-Net (from em2d-small) for 2 iterations" in out
    model = load_model(model_dir)
    assert model.classes == ["background", "membrane"] and model.training["base"] == "em2d-small"
    assert model.training["amp"] == "none"  # --amp off: float32
    assert main(["train", "--method", "unet", "--image", str(image), "--annotations", str(ann_path),
                 "--out", str(model_dir), "--iterations", "1", "--quiet"]) == 2  # never overwritten unasked
    assert "already holds a model" in capsys.readouterr().err
    pred = tmp_path / "pred.ome.zarr"
    assert main(["predict", "--model", str(model_dir), "--image", str(image), "--out", str(pred), "--device", "cpu",
                 "--probabilities", "--amp", "bf16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "labels:" in out
    labels = open_volume(f"{pred}:/labels/segmentation")
    assert labels.shape == (4, 96, 96) and labels.voxel_size == (40.0, 5.0, 5.0)
    # a second call resumes: nothing left to do
    assert main(["predict", "--model", str(model_dir), "--image", str(image), "--out", str(pred), "--device", "cpu",
                 "--probabilities", "--amp", "bf16", "--quiet"]) == 0
    assert "(1 already done)" in capsys.readouterr().out
    pytest.importorskip("bioimageio.spec")
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "model.zip")]) == 0
    assert (tmp_path / "model.zip").exists()


def test_device_defaults_to_auto_everywhere():
    from vemkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    with_device = {name: p for name, p in sub.choices.items() if any(a.dest == "device" for a in p._actions)}
    assert {"train", "pretrain", "adapt", "predict", "tour"} <= set(with_device)
    for name, p in with_device.items():
        assert p.get_default("device") == "auto", name


def test_bugs_keep_their_traceback(monkeypatch):
    """Bad input is 'error: ...' and exit 2; a KeyError from a bug is not hidden as one."""
    from vemkit.cli import _data

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(_data, "list_datasets", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["fetch", "--list"])
