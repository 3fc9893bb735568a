"""Outputs are safe: nothing a user made is destroyed, resume always resumes, a TIFF is a TIFF, Ctrl-C is calm.

Every case of issue 19's "Data loss" and "Resume that cannot be resumed" sections, `--out labels.tif`,
an `--out` on a read-only or non-directory path and Ctrl-C.
"""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr

import vemkit.predict._predict as predict_module
import vemkit.predict._store as store_module
from conftest import randomise_batchnorm
from vemkit._outputs import check_output, written_by_vemkit
from vemkit.cli import main
from vemkit.instances import instances_blockwise
from vemkit.io import open_volume, write_labels, write_ome_zarr, write_tiff
from vemkit.models import SegmentationModel, UNet
from vemkit.pixel_classifier import PixelClassifier
from vemkit.predict import LOG_FILE, RUN_FILE, predict_volume

VS = (50.0, 5.0, 5.0)
FIXED = {"mode": "fixed", "low": 0.0, "high": 255.0}


@pytest.fixture(scope="module")
def model2d():
    torch.manual_seed(0)
    net = randomise_batchnorm(UNet(ndim=2, out_channels=3, base_channels=4, depth=2))
    return SegmentationModel(net, ["background", "a", "b"], voxel_size=VS, normalization=FIXED)


@pytest.fixture
def model_dir(model2d, tmp_path):
    path = tmp_path / "model"
    model2d.save(path)
    return path


def _image(shape=(2, 64, 64), seed=0):
    return np.random.default_rng(seed).integers(1, 255, shape).astype(np.uint8)


@pytest.fixture
def zarr_image(tmp_path):
    data = _image()
    return write_ome_zarr(data, tmp_path / "in.ome.zarr", voxel_size=VS, progress=False), data


@pytest.fixture
def tiff_image(tmp_path):
    data = _image(seed=1)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, data)  # not written by vemkit
    return path, data


def _same(path, data):
    np.testing.assert_array_equal(np.asarray(open_volume(path, voxel_size=VS, warn_missing_voxel_size=False)), data)


# ------------------------------------------------------------------------------------------ data loss
def test_convert_onto_its_own_input_is_refused(zarr_image, capsys):
    path, data = zarr_image
    assert main(["convert", str(path), str(path), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and str(path) in err
    _same(path, data)


def test_predict_onto_its_own_image_is_refused(zarr_image, model_dir, capsys):
    path, data = zarr_image
    argv = ["predict", "--model", str(model_dir), "--image", str(path), "--out", str(path), "--overwrite",
            "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    assert "is the input" in capsys.readouterr().err
    _same(path, data)
    # nor into the model directory
    with pytest.raises(ValueError, match="lies inside the input"):
        predict_volume(str(model_dir), path, model_dir / "p.ome.zarr", device="cpu", progress=False)


def test_convert_into_the_folder_of_its_input_keeps_the_folder(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    data = _image()
    tifffile.imwrite(d / "real.tif", data)
    (d / "sibling.txt").write_text("mine")
    assert main(["convert", str(d / "real.tif"), str(d), "--voxel-size", "50,4,4", "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "contains the input" in err and "real.tif" in err
    assert (d / "sibling.txt").read_text() == "mine"
    _same(d / "real.tif", data)


def test_predict_into_the_folder_of_its_image_keeps_the_folder(tmp_path, model_dir, capsys):
    d = tmp_path / "d"
    d.mkdir()
    data = _image()
    tifffile.imwrite(d / "real.tif", data)
    (d / "sibling.txt").write_text("mine")
    argv = ["predict", "--model", str(model_dir), "--image", str(d / "real.tif"), "--voxel-size", "50,5,5",
            "--out", str(d), "--overwrite", "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    assert "contains the input" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["real.tif", "sibling.txt"]
    _same(d / "real.tif", data)


def test_a_folder_vemkit_did_not_write_is_never_replaced(tmp_path, model_dir, zarr_image, capsys):
    path, _ = zarr_image
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    argv = ["predict", "--model", str(model_dir), "--image", str(path), "--out", str(busy), "--overwrite",
            "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    assert "not written by vemkit" in capsys.readouterr().err
    assert main(["convert", str(path), str(busy), "--overwrite", "--quiet"]) == 2
    assert (busy / "notes.txt").read_text() == "mine"
    # a store vemkit wrote, with a file of the user's put into it, is not replaced either
    out = write_ome_zarr(_image(), tmp_path / "mine.ome.zarr", voxel_size=VS, progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        write_ome_zarr(_image(), out, voxel_size=VS, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["convert", "predict"])
def test_tiff_onto_itself_is_refused(tiff_image, model_dir, command, capsys):
    path, data = tiff_image
    if command == "convert":
        argv = ["convert", str(path), str(path), "--voxel-size", "50,5,5", "--overwrite", "--quiet"]
    else:
        argv = ["predict", "--model", str(model_dir), "--image", str(path), "--voxel-size", "50,5,5",
                "--out", str(path), "--overwrite", "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    assert "is the input" in capsys.readouterr().err
    _same(path, data)


def test_the_forest_and_instances_never_write_onto_their_input(tiff_image, tmp_path):
    path, data = tiff_image
    with pytest.raises(ValueError, match="is the input"):
        PixelClassifier(["background", "fg"]).predict_to(open_volume(path, voxel_size=VS), path, overwrite=True)
    mask = write_ome_zarr((data > 128).astype(np.uint8), tmp_path / "mask.ome.zarr", voxel_size=VS, progress=False)
    with pytest.raises(ValueError, match="is the input"):
        instances_blockwise(str(mask), mask, overwrite=True, progress=False)
    _same(path, data)
    assert int(np.asarray(open_volume(mask)).sum()) == int((data > 128).sum())


def test_inputs_are_found_through_links_keys_globs_and_arrays(tmp_path, monkeypatch):
    data = _image()
    store = write_ome_zarr(data, tmp_path / "img.ome.zarr", voxel_size=VS, progress=False)
    write_labels(store, "cells", (data > 100).astype(np.uint8), progress=False)
    link = tmp_path / "link.ome.zarr"
    link.symlink_to(store)
    cases = [
        (link, [str(store)], "is the input"),  # a symlink to the input
        (tmp_path / "sub" / ".." / "img.ome.zarr", [store], "is the input"),  # relative parts
        (tmp_path, [f"{store}:/labels/cells"], "contains the input"),  # a key inside a store
        (f"{store}:/labels/cells", [f"{store}:/labels/cells"], "is the input"),
        (store / "x.ome.zarr", [store], "lies inside the input"),
    ]
    slices = tmp_path / "slices"
    slices.mkdir()
    for i in range(2):
        tifffile.imwrite(slices / f"s{i}.tif", data[i])
    cases.append((slices, [str(slices / "*.tif")], "contains the input"))  # a glob
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = data
    cases.append((tmp_path / "v.h5", [f"{tmp_path / 'v.h5'}:/raw"], "is the input"))  # an HDF5 key
    with h5py.File(tmp_path / "v.h5", "r") as f:  # an open h5py dataset
        with pytest.raises(ValueError, match="is the input"):
            check_output(tmp_path / "v.h5", [f["raw"]], overwrite=True)
    import dask.array as da

    cases.append((store, [da.from_zarr(zarr.open_array(str(store / "0"), mode="r")) + 1], "contains the input"))
    monkeypatch.setenv("HOME", str(tmp_path))
    cases.append(("~/img.ome.zarr", [store], "is the input"))  # ~
    for out, inputs, how in cases:
        with pytest.raises(ValueError, match=how):
            check_output(out, inputs, overwrite=True)
    # a label image may be written into the image it labels, and a store next to its input
    assert check_output(f"{store}:/labels/new", [store], overwrite=False) == store / "labels" / "new"
    assert check_output(tmp_path / "out.ome.zarr", [store], overwrite=False).name == "out.ome.zarr"
    # write_labels refuses to replace the labels it reads
    cells = open_volume(f"{store}:/labels/cells")
    with pytest.raises(ValueError, match="is the input"):
        write_labels(store, "cells", cells, overwrite=True, progress=False)
    assert int(np.asarray(open_volume(f"{store}:/labels/cells")).sum()) == int((data > 100).sum())


def test_overwrite_replaces_only_what_vemkit_wrote(tmp_path, tiff_image):
    path, data = tiff_image
    out = tmp_path / "out.tif"
    tifffile.imwrite(out, data)
    assert not written_by_vemkit(out)
    with pytest.raises(FileExistsError, match="not written by vemkit"):
        write_tiff(data, out, voxel_size=VS, overwrite=True, progress=False)
    _same(out, data)
    out.unlink()
    write_tiff(data, out, voxel_size=VS, progress=False)
    assert written_by_vemkit(out)
    write_tiff(data[:1], out, voxel_size=VS, overwrite=True, progress=False)
    assert open_volume(out).shape == (1, 64, 64)
    # stores and label groups vemkit wrote are replaced; others' label groups are not
    store = write_ome_zarr(data, tmp_path / "s.ome.zarr", voxel_size=VS, progress=False)
    assert written_by_vemkit(store)
    write_ome_zarr(data[:1], store, voxel_size=VS, overwrite=True, progress=False)
    write_labels(store, "mine", np.ones((1, 64, 64), np.uint8), progress=False)
    write_labels(store, "mine", np.zeros((1, 64, 64), np.uint8), overwrite=True, progress=False)
    theirs = zarr.open_group(str(store), mode="r+")["labels"].create_group("theirs")
    theirs.create_array("0", shape=(1, 64, 64), dtype="uint8", fill_value=7)
    with pytest.raises(FileExistsError, match="not written by vemkit"):
        write_labels(store, "theirs", np.zeros((1, 64, 64), np.uint8), overwrite=True, progress=False)
    assert "0" in zarr.open_group(str(store / "labels" / "theirs"), mode="r")


# ---------------------------------------------------------------------------- unwritable output paths
def test_an_output_under_a_file_is_a_clear_error_before_any_work(tiff_image, model2d, monkeypatch, capsys):
    path, _ = tiff_image
    notes = path.with_name("notes.txt")
    notes.write_text("a file")
    target = notes / "out.ome.zarr"  # the parent is a file
    assert main(["convert", str(path), str(target), "--voxel-size", "50,5,5", "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(predict_module, "_prepare", no_work)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        predict_volume(model2d, _image(), target, device="cpu", progress=False)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        write_ome_zarr(_image(), target, voxel_size=VS, progress=False)


def test_an_output_on_a_read_only_path_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import vemkit._outputs as outputs

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(outputs.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ValueError, match="cannot write the output .*Permission denied"):
        write_ome_zarr(_image(), tmp_path / "ro" / "x.ome.zarr", voxel_size=VS, progress=False)
    monkeypatch.undo()
    src = write_tiff(_image(), tmp_path / "in.tif", voxel_size=VS, progress=False)
    monkeypatch.setattr(outputs.tempfile, "NamedTemporaryFile", refuse)
    assert main(["convert", str(src), str(tmp_path / "ro.ome.zarr"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and "ro.ome.zarr" in err and "Traceback" not in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="cannot write the output"):
            write_ome_zarr(_image(), ro / "x.ome.zarr", voxel_size=VS, progress=False)
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------------------ resume
def test_a_run_killed_while_building_the_pyramid_resumes(model2d, tmp_path, monkeypatch):
    image = _image((2, 320, 320), seed=3)  # one coarser level
    kwargs = dict(device="cpu", block=(1, 160, 160), probabilities=True, progress=False)
    reference = predict_volume(model2d, image, tmp_path / "ref.ome.zarr", **kwargs)
    out = tmp_path / "killed.ome.zarr"
    real = store_module.write_multiscale

    def killed_after_level_1(*args, **kw):
        real(*args, **kw)  # writes level 1
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "write_multiscale", killed_after_level_1)
    with pytest.raises(KeyboardInterrupt):
        predict_volume(model2d, image, out, **kwargs)
    monkeypatch.undo()
    assert (out / "1").is_dir() and json.loads((out / RUN_FILE).read_text())["status"] == "running"
    resumed = predict_volume(model2d, image, out, **kwargs)  # no overwrite
    assert resumed.blocks_skipped == resumed.blocks == 8
    assert json.loads((out / RUN_FILE).read_text())["status"] == "complete"
    for level in (0, 1):
        for sub in ("", "labels/segmentation/"):
            a = zarr.open_array(str(tmp_path / "ref.ome.zarr" / f"{sub}{level}"), mode="r")[:]
            b = zarr.open_array(str(out / f"{sub}{level}"), mode="r")[:]
            assert a.tobytes() == b.tobytes(), f"{sub}{level}"
    ref_attrs = zarr.open_group(str(tmp_path / "ref.ome.zarr"), mode="r").attrs.asdict()
    assert zarr.open_group(str(out), mode="r").attrs.asdict() == ref_attrs
    assert open_volume(resumed.labels).shape == open_volume(reference.labels).shape


def test_an_output_is_complete_only_when_the_log_holds_every_block(model2d, tmp_path, monkeypatch):
    image = _image((2, 64, 64))
    out = tmp_path / "p.ome.zarr"
    monkeypatch.setattr(predict_module, "run_local", lambda *args, **kwargs: 0)  # blocks that never ran
    with pytest.raises(RuntimeError, match="8 of 8 blocks"):
        predict_volume(model2d, image, out, device="cpu", block=(1, 32, 32), progress=False)
    assert json.loads((out / RUN_FILE).read_text())["status"] == "running"
    monkeypatch.undo()
    res = predict_volume(model2d, image, out, device="cpu", block=(1, 32, 32), progress=False)
    assert res.blocks_skipped == 0 and len((out / LOG_FILE).read_text().split()) == 8
    ref = predict_volume(model2d, image, tmp_path / "ref.ome.zarr", device="cpu", block=(1, 32, 32), progress=False)
    np.testing.assert_array_equal(np.asarray(open_volume(res.labels)), np.asarray(open_volume(ref.labels)))


# ------------------------------------------------------------------------------------------- TIFF out
def test_predict_to_tif_writes_a_tiff_with_the_voxel_size(model2d, model_dir, zarr_image, tmp_path, capsys):
    path, _ = zarr_image
    ref = predict_volume(model2d, path, tmp_path / "ref.ome.zarr", device="cpu", block=(1, 64, 64), progress=False)
    out = tmp_path / "labels.tif"
    argv = ["predict", "--model", str(model_dir), "--image", str(path), "--out", str(out), "--block", "1,64,64",
            "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert f"labels: {out}" in capsys.readouterr().out
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
    assert written_by_vemkit(out)
    vol = open_volume(out)
    assert vol.voxel_size == VS
    np.testing.assert_array_equal(np.asarray(vol), np.asarray(open_volume(ref.labels)))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("labels")) == ["labels.tif"]
    assert main(argv) == 2  # an existing TIFF is kept unless --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    with pytest.raises(ValueError, match="labels only"):
        predict_volume(model2d, path, tmp_path / "p.tif", probabilities=True, device="cpu", progress=False)


def test_an_interrupted_tif_prediction_resumes_from_its_partial_store(model2d, zarr_image, tmp_path, monkeypatch):
    path, _ = zarr_image
    out = tmp_path / "labels.tif"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "write_tiff", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_volume(model2d, path, out, device="cpu", block=(1, 32, 32), progress=False)
    monkeypatch.undo()
    partial = tmp_path / f"labels.tif{predict_module.PARTIAL_SUFFIX}"
    assert partial.is_dir() and not out.exists()
    res = predict_volume(model2d, path, out, device="cpu", block=(1, 32, 32), progress=False)
    assert res.blocks_skipped == res.blocks == 8 and res.output == out and res.labels == str(out)
    assert out.is_file() and not partial.exists()
    ref = predict_volume(model2d, path, tmp_path / "ref.ome.zarr", device="cpu", block=(1, 32, 32), progress=False)
    np.testing.assert_array_equal(np.asarray(open_volume(out)), np.asarray(open_volume(ref.labels)))


# ------------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_says_what_to_do_and_exits_130(model_dir, zarr_image, tmp_path, monkeypatch, capsys):
    import vemkit.cli._data as data_cli
    import vemkit.cli._inference as inference_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def run(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped vemkit.cli.main as a KeyboardInterrupt traceback")

    path, _ = zarr_image
    monkeypatch.setattr(inference_cli, "predict_volume", interrupted)
    argv = ["predict", "--model", str(model_dir), "--image", str(path), "--out", str(tmp_path / "p.ome.zarr")]
    assert run(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted - run the same command again to resume" in err and "Traceback" not in err
    assert run([*argv, "--no-resume"]) == 130
    assert "--overwrite" in capsys.readouterr().err
    monkeypatch.setattr(data_cli, "write_ome_zarr", interrupted)
    assert run(["convert", str(path), str(tmp_path / "c.ome.zarr")]) == 130
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_during_a_prediction_then_the_same_command_resumes(model_dir, tmp_path):
    image = write_ome_zarr(_image((24, 128, 128), seed=5), tmp_path / "image.ome.zarr", voxel_size=VS,
                           chunks=(8, 128, 128), progress=False)
    out = tmp_path / "p.ome.zarr"
    cmd = [sys.executable, "-m", "vemkit.cli", "predict", "--model", str(model_dir), "--image", str(image),
           "--out", str(out), "--device", "cpu", "--block", "1,64,64", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / LOG_FILE).exists() and len((out / LOG_FILE).read_text().split()) >= 8:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be interrupted; make the volume larger"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted - run the same command again to resume" in err and "Traceback" not in err
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert "already done" in done.stdout and json.loads((out / RUN_FILE).read_text())["status"] == "complete"


def test_annotations_overwrite_replaces_only_an_annotation_store(tmp_path):
    """open_annotations(overwrite=True) used to rmtree whatever lay at the path: the image folder included."""
    import numpy as np

    from vemkit.annotate import open_annotations
    from vemkit.io import open_volume, write_ome_zarr

    image = np.zeros((2, 16, 16), np.uint8)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a vemkit annotation store"):
        open_annotations(folder, image=image, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    stored = write_ome_zarr(image, tmp_path / "image.ome.zarr", voxel_size=(50, 4, 4), progress=False)
    with pytest.raises(ValueError, match="never writes where it reads"):
        open_annotations(stored, image=open_volume(stored), overwrite=True)
    assert (tmp_path / "image.ome.zarr").is_dir()
    ann = open_annotations(tmp_path / "ann.zarr", image=image, classes=["background", "mito"])
    ann.set_labels(np.full(image.shape, 2, np.uint8))
    fresh = open_annotations(tmp_path / "ann.zarr", image=image, classes=["background", "mito"], overwrite=True)
    assert not any(fresh.counts().values())


# ------------------------------------------------------------------------------------ model directories
@pytest.mark.parametrize("method", ["rf", "unet"])
def test_train_never_writes_a_model_into_the_folder_of_its_image(tmp_path, method, capsys):
    d = tmp_path / "d"
    d.mkdir()
    data = _image((1, 64, 64))
    tifffile.imwrite(d / "real.tif", data)
    labels = np.zeros(data.shape, np.uint8)
    labels[:, :8], labels[:, -8:] = 1, 2
    tifffile.imwrite(tmp_path / "ann.tif", labels)
    argv = ["train", "--method", method, "--image", str(d / "real.tif"), "--annotations", str(tmp_path / "ann.tif"),
            "--voxel-size", "50,5,5", "--out", str(d), "--overwrite", "--iterations", "1", "--device", "cpu", "--quiet"]
    assert main(argv) == 2
    assert "contains the input" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["real.tif"]
    _same(d / "real.tif", data)


def test_a_model_is_never_saved_into_a_folder_of_other_files(tmp_path, model2d):
    from vemkit.pixel_classifier import PixelClassifier

    d = tmp_path / "results"
    d.mkdir()
    (d / "config.json").write_text("my own config")  # a name a model directory uses, but not a model
    (d / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds files a model directory does not \(notes.txt\)"):
        model2d.save(d, overwrite=True)
    labels = np.zeros((1, 32, 32), np.uint8)
    labels[:, :4], labels[:, -4:] = 1, 2
    clf = PixelClassifier(["background", "a"], n_estimators=2).fit(_image((1, 32, 32)), labels, progress=False)
    with pytest.raises(FileExistsError, match="notes.txt"):
        clf.save(d, overwrite=True)
    assert (d / "config.json").read_text() == "my own config" and (d / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="is a file"):
        model2d.save(d / "notes.txt")
    saved = model2d.save(tmp_path / "model")  # a new folder, then its own model directory with overwrite
    with pytest.raises(FileExistsError, match="already holds a model"):
        model2d.save(saved)
    assert model2d.save(saved, overwrite=True) == saved


def test_export_never_writes_into_the_model_it_exports(model_dir):
    pytest.importorskip("bioimageio.spec")
    from vemkit.export import export_bioimageio

    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(ValueError, match="lies inside the input"):
        export_bioimageio(model_dir, model_dir / "package.zip")
    assert sorted(p.name for p in model_dir.iterdir()) == before
