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
    ({"memory_limit": 0}, "memory_limit must be a size > 0"),
    ({"memory_limit": float("inf")}, "memory_limit must be a number of bytes"),
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


# ------------------------------------------------------------------------------------------ training
def _toy_training_data(shape=(2, 64, 64)):
    image = _image(shape)
    ann = np.zeros(shape, np.uint8)
    ann[:, 8:24, 8:56] = 1
    ann[:, 40:56, 8:56] = 2
    return image, ann


@pytest.mark.parametrize("kw, match", [
    ({"minutes": float("nan")}, "minutes must be a finite number > 0, got nan"),
    ({"minutes": float("inf")}, "minutes must be a finite number > 0"),
    ({"minutes": -1}, "minutes must be a finite number > 0"),
    ({"iterations": 2.5}, "iterations must be an integer >= 1"),
    ({"iterations": 0}, "iterations must be an integer >= 1"),
    ({"iterations": 1, "eval_every": 0}, "eval_every must be an integer >= 1"),
    ({"iterations": 1, "checkpoint_every": float("nan")}, "checkpoint_every must be a number of seconds >= 0"),
])
def test_finetune_refuses_a_budget_that_never_ends(tmp_path, kw, match):
    from vemkit.train import finetune

    image, ann = _toy_training_data()
    with pytest.raises(ValueError, match=match):
        finetune(image, ann, base=None, out=tmp_path / "m", device="cpu", progress=False, **kw)
    assert not (tmp_path / "m").exists()


def test_cli_train_minutes_nan_exits_with_a_message(tmp_path, capsys):
    from vemkit.io import write_tiff

    image, ann = _toy_training_data()
    write_tiff(image, tmp_path / "im.tif", voxel_size=(50, 5, 5), progress=False)
    write_tiff(ann, tmp_path / "ann.tif", voxel_size=(50, 5, 5), progress=False)
    assert main(["train", "--method", "unet", "--image", str(tmp_path / "im.tif"), "--annotations",
                 str(tmp_path / "ann.tif"), "--out", str(tmp_path / "m"), "--minutes", "nan", "--base", "none",
                 "--device", "cpu", "--quiet"]) == 2
    assert "minutes must be a finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize("kw, match", [
    ({"minutes": float("nan")}, "minutes must be a finite number > 0"),
    ({"iterations": -2}, "iterations must be an integer >= 1"),
    ({"iterations": 1, "batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"iterations": 1, "patch": 4}, "patch must be an integer >= 16"),
    ({"iterations": 1, "lr": float("nan")}, "lr must be a finite number > 0"),
])
def test_adapt_and_pretrain_refuse_bad_numbers(tmp_path, kw, match):
    from vemkit.adapt import adapt
    from vemkit.pretrain import pretrain

    model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    src = (_image((2, 64, 64)) * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=match):
        adapt(model, src, (src > 128).astype(np.uint8) + 1, src, method="dann", device="cpu", progress=False,
              source_voxel_size=(50, 5, 5), target_voxel_size=(50, 5, 5), **kw)
    with pytest.raises(ValueError, match=match):
        pretrain(tmp_path / "base", sources=("phantom",), device="cpu", progress=False, **kw)
    assert not (tmp_path / "base").exists()


def test_finetune_refuses_nan_in_the_annotated_region(tmp_path):
    from vemkit.train import finetune

    image, ann = _toy_training_data()
    image[1, 30, 33] = np.nan
    with pytest.raises(ValueError, match=r"the image holds 1 NaN or infinite value\(s\) in z 0:2, y 0:64, x 0:64 .*"
                                         r"the first at \(z, y, x\) = \(1, 30, 33\)"):
        finetune(image, ann, base=None, out=tmp_path / "m", iterations=2, device="cpu", amp=False, progress=False,
                 voxel_size=(50, 5, 5))
    assert not (tmp_path / "m" / "model.pt").exists() and not (tmp_path / "m" / "config.json").exists()


def test_training_stops_when_the_loss_becomes_nan():
    from vemkit._trainloop import NonFiniteLossError, TrainLoop

    class Blows(TrainLoop):
        def forward_and_loss(self, fraction):
            out = self.modules[0](torch.ones(1, 1)).pow(2).mean()
            return (out * math.nan if self.step == 2 else out), {"loss": out}

    lin = torch.nn.Linear(1, 1)
    loop = Blows([lin], device=torch.device("cpu"), amp=False, ndim=2, lr=0.1, progress=False)
    history = loop.new_history()
    with pytest.raises(NonFiniteLossError, match="the training loss became nan at iteration 3"):
        loop.run(history, iterations=10)
    assert loop.step == 2 and len(history["loss"]) == 2
    assert all(torch.isfinite(p).all() for p in lin.parameters())  # the NaN never reached the weights


# ------------------------------------------------------------------------------------ slice folders
def _slices(folder, numbers):
    import tifffile

    folder.mkdir()
    for i in numbers:
        tifffile.imwrite(folder / f"slice_{i:03d}.tif", np.full((8, 8), i, np.uint8))
    return folder


def test_a_slice_folder_with_a_gap_is_refused_naming_the_missing_number(tmp_path):
    from vemkit.io import open_volume

    folder = _slices(tmp_path / "stack", [i for i in range(20) if i != 7])
    with pytest.raises(ValueError, match=r"1 number\(s\) missing: 7 \(e.g. 'slice_007.tif'\).*open the glob"):
        open_volume(folder, voxel_size=(50, 5, 5))
    with pytest.warns(UserWarning, match="missing: 7"):  # a glob is the user's own choice of files
        vol = open_volume(str(folder / "*.tif"), voxel_size=(50, 5, 5))
    assert vol.shape == (19, 8, 8)
    complete = _slices(tmp_path / "every_tenth", range(0, 50, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_volume(complete, voxel_size=(50, 5, 5)).shape == (5, 8, 8)


def test_cli_info_on_a_slice_folder_with_a_gap(tmp_path, capsys):
    folder = _slices(tmp_path / "stack", [0, 1, 2, 4, 5, 8])
    assert main(["info", str(folder)]) == 2
    assert "missing: 3, 6, 7" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- instances
def test_instances_warns_when_the_class_is_not_in_the_mask(tmp_path):
    from vemkit.instances import instances_blockwise

    mask = np.zeros((4, 32, 32), np.uint8)
    mask[1:3, 4:12, 4:12] = 1
    with pytest.warns(UserWarning, match="class_id=7 is not in the volume, so there are no objects; its values are 0, 1"):
        labels = instances_blockwise(mask, class_id=7, block=(4, 16, 16), progress=False)
    assert labels.max() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert instances_blockwise(mask, class_id=1, block=(4, 16, 16), progress=False).max() == 1


def test_cli_instances_class_id_absent(tmp_path, capsys):
    from vemkit.io import write_ome_zarr

    mask = np.zeros((4, 32, 32), np.uint8)
    mask[1:3, 4:12, 4:12] = 1
    src = write_ome_zarr(mask, tmp_path / "mask.ome.zarr", voxel_size=(50, 5, 5), kind="labels", progress=False)
    with pytest.warns(UserWarning, match="its values are 0, 1"):
        assert main(["instances", "--labels", str(src), "--out", str(tmp_path / "i.ome.zarr"), "--class-id", "7",
                     "--quiet"]) == 0


@pytest.mark.parametrize("kw, match", [
    ({"block": (1, 1, 1)}, r"block \(1, 1, 1\) splits the volume \(16, 256, 256\) into 1048576 blocks"),
    ({"block": (1, 8, 8)}, "into 16384 blocks"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"class_id": 1.5}, "class_id must be an integer"),
    ({"n_workers": 0}, "n_workers must be an integer >= 1"),
])
def test_instances_refuses_what_would_hang_or_mislead(kw, match):
    from vemkit.instances import instances_blockwise

    with pytest.raises(ValueError, match=match):
        instances_blockwise(np.zeros((16, 256, 256), np.uint8), progress=False, **{"block": (16, 64, 64), **kw})


# ------------------------------------------------------------------------------------------ evaluate
def _instance_pair(n=104):
    """Instance labels of ``n`` small cubes, truth and a prediction shifted by one voxel."""
    truth = np.zeros((4, 64, 64), np.uint32)
    for k in range(n):
        y, x = divmod(k, 13)
        truth[1:3, 1 + 4 * y : 4 + 4 * y, 1 + 4 * x : 4 + 4 * x] = k + 1
    return np.roll(truth, 1, axis=2), truth


def test_evaluate_asks_for_kind_on_instance_labels():
    from vemkit.metrics import evaluate

    pred, truth = _instance_pair()
    with pytest.raises(ValueError, match="truth holds 104 distinct labels: it looks like instance labels.*"
                                         "kind='instances'"):
        evaluate(pred, truth)
    assert evaluate(pred, truth, kind="instances")["n_truth"] == 104
    assert evaluate(pred, truth, kind="semantic")["kind"] == "semantic"  # asked for: done
    few = evaluate(np.array([[[0, 1, 2, 2]]]), np.array([[[0, 1, 2, 1]]]))  # a few classes: semantic, as before
    assert few["kind"] == "semantic" and few["accuracy"] == 0.75


def test_cli_evaluate_instance_labels_without_kind(tmp_path, capsys):
    from vemkit.io import write_ome_zarr

    pred, truth = _instance_pair()
    p = write_ome_zarr(pred, tmp_path / "p.ome.zarr", voxel_size=(50, 5, 5), kind="labels", progress=False)
    t = write_ome_zarr(truth, tmp_path / "t.ome.zarr", voxel_size=(50, 5, 5), kind="labels", progress=False)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--pred", str(p), "--truth", str(t), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "104 distinct labels" in err and "--kind instances" in err and not out.exists()
    assert main(["evaluate", "--pred", str(p), "--truth", str(t), "--out", str(out), "--kind", "instances"]) == 0
    assert "instances evaluation" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ datasets
def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _one_file_manifest(tmp_path, url, content):
    import json

    manifest = {"datasets": {"toy": {
        "title": "toy", "modality": "test", "licence": "none", "citation": "none",
        "checksums_established": "computed by the test", "voxel_size_nm": [40.0, 5.0, 5.0],
        "voxel_size_source": "test",
        "files": [{"path": "stack.bin", "url": url, "sha256": _sha(content), "size": len(content)}],
        "volumes": {},
    }}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_a_tampered_cached_file_is_called_a_checksum_mismatch(tmp_path, monkeypatch):
    """Offline (nothing listens on the discard port), a cached file that was changed is named, with
    both hashes, instead of blaming the network."""
    from vemkit.datasets import fetch

    content = b"the real bytes" * 100
    mpath = _one_file_manifest(tmp_path, "http://127.0.0.1:9/stack.bin", content)
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "toy" / "stack.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    assert fetch("toy", manifest_path=mpath, progress=False) == target.parent  # intact: no network needed
    target.write_bytes(b"tampered")
    with pytest.raises(ValueError, match=rf"checksum mismatch: the cached file {target} has SHA-256 "
                                         rf"{_sha(b'tampered')}, but the manifest expects {_sha(content)}"):
        fetch("toy", manifest_path=mpath, progress=False)
    assert target.read_bytes() == b"tampered"  # as pooch does: the old file stays until a good copy replaces it


def test_a_bad_download_is_called_a_checksum_mismatch(tmp_path, monkeypatch, http_server):
    from vemkit.datasets import fetch

    folder, base = http_server
    (folder / "served.bin").write_bytes(b"other bytes")
    mpath = _one_file_manifest(tmp_path, f"{base}/served.bin", b"the real bytes")
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=rf"checksum mismatch: stack.bin does not match its SHA-256 in the manifest: "
                                         rf"expected {_sha(b'the real bytes')}, found {_sha(b'other bytes')}"):
        fetch("toy", manifest_path=mpath, progress=False)
    assert not (tmp_path / "cache" / "toy" / "stack.bin").exists()


def test_random_forest_refuses_negative_annotations_like_the_unet(tmp_path):
    from vemkit.pixel_classifier import PixelClassifier
    from vemkit.train import plan_training

    image, ann = _toy_training_data()
    ann = ann.astype(np.int16)
    ann[1, 30, 30] = -1
    with pytest.raises(ValueError, match="annotations hold negative value -1 in section 1"):
        PixelClassifier(["background", "fg"], n_estimators=5).fit(image, ann, voxel_size=(50, 5, 5), progress=False)
    with pytest.raises(ValueError, match="negative value"):
        plan_training(image, ann, voxel_size=(50, 5, 5), device="cpu")


@pytest.mark.parametrize("name, kw, match", [
    ("load_sections", {"max_sections": 0}, "max_sections must be an integer >= 1"),
    ("predict_sections", {"batch": -1}, "batch must be an integer >= 1"),
    ("adapt_batchnorm", {"n_patches": float("nan")}, "n_patches must be an integer >= 1"),
    ("label_free_scores", {"max_sections": 1.5}, "max_sections must be an integer >= 1"),
])
def test_domain_refuses_bad_numbers(model2d, name, kw, match):
    from vemkit import domain
    from vemkit.io import Volume

    image = Volume.from_array(_image(), voxel_size=(50, 5, 5))
    with pytest.raises(ValueError, match=match):
        getattr(domain, name)(model2d, image, **kw)
    with pytest.raises(ValueError, match="patch must be an integer >= 16"):
        domain.domain_gap(model2d, image, image, patch=2)
    with pytest.raises(ValueError, match="order must be an integer spline order 0..5"):
        domain.resample_sections(image, (50, 10, 10), order=9)


def test_seeded_watershed_refuses_a_nan_threshold():
    from vemkit.instances import seeded_watershed

    with pytest.raises(ValueError, match="threshold must be a finite number, got nan"):
        seeded_watershed(np.zeros((2, 8, 8), np.float32), threshold=float("nan"))
