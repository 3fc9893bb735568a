"""The random-forest pixel classifier: training on sparse strokes, blockwise prediction, model
directories, the command line, and quality on the real VNC data."""

import json

import numpy as np
import pytest

from vemkit.annotate import open_annotations, scribbles_from_masks
from vemkit.cli import main
from vemkit.io import open_volume, write_tiff
from vemkit.metrics import iou
from vemkit.pixel_classifier import PixelClassifier, load_pixel_classifier
from vemkit.synthetic import make_phantom

CLASSES = ["background", "mitochondria"]


@pytest.fixture(scope="module")
def phantom():
    ph = make_phantom(shape=(6, 160, 160), seed=4)
    truth = (ph.semantic == 2).astype(np.uint8)
    ann = scribbles_from_masks(truth, sections=[0, 3], seed=0)
    return ph, truth, ann


@pytest.fixture(scope="module")
def trained(phantom):
    ph, _, ann = phantom
    return PixelClassifier(CLASSES, n_estimators=30).fit(ph.image, ann, voxel_size=ph.voxel_size, progress=False)


def test_learns_from_sparse_strokes(phantom, trained):
    ph, truth, ann = phantom
    assert (ann > 0).mean() < 0.1
    assert trained.training["annotated_sections"] == [0, 3]
    pred = trained.predict(ph.image)
    test = [1, 2, 4, 5]
    score = iou(pred[test], truth[test])[1]
    assert score > 0.5, score  # a phantom is easy; the real-data test holds the real bar


def test_blockwise_equals_one_block(phantom, trained):
    ph = phantom[0]
    whole = trained.predict_proba_block(ph.image)
    lazy = trained.lazy_probabilities(ph.image, block=(1, 64, 48)).compute()
    # uint8 quantisation of the same probabilities; no seams at the block borders
    np.testing.assert_allclose(lazy / 255.0, whole, atol=0.5 / 255 + 1e-6)


def test_preview_is_close_to_full_prediction(phantom, trained):
    ph = phantom[0]
    full = trained.predict_proba_block(ph.image[2])[:, 0]
    preview = trained.predict_section(ph.image, 2, stride=2)
    assert preview.shape == full.shape
    agree = (preview.argmax(0) == full.argmax(0)).mean()
    assert agree > 0.9


def test_model_directory_roundtrip(phantom, trained, tmp_path):
    ph = phantom[0]
    d = trained.save(tmp_path / "model")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["classes"] == CLASSES and cfg["kind"] == "vemkit.pixel_classifier"
    assert cfg["voxel_size"] == list(ph.voxel_size) and len(cfg["halo"]) == 3
    again = load_pixel_classifier(d)
    np.testing.assert_array_equal(again.predict(ph.image), trained.predict(ph.image))
    with pytest.raises(FileExistsError, match="not empty"):
        trained.save(d)


def test_training_errors(phantom):
    ph, truth, ann = phantom
    with pytest.raises(ValueError, match="annotations are empty"):
        PixelClassifier(CLASSES).fit(ph.image, np.zeros_like(ann), progress=False)
    only_fg = np.where(ann == 2, 2, 0).astype(np.uint8)
    with pytest.raises(ValueError, match="no background is annotated"):
        PixelClassifier(CLASSES).fit(ph.image, only_fg, progress=False)
    only_bg = np.where(ann == 1, 1, 0).astype(np.uint8)
    with pytest.raises(ValueError, match="only background is annotated"):
        PixelClassifier(CLASSES).fit(ph.image, only_bg, progress=False)
    with pytest.raises(ValueError, match="annotations have shape"):
        PixelClassifier(CLASSES).fit(ph.image, ann[:2], progress=False)
    with pytest.raises(ValueError, match="allow 0..2"):
        PixelClassifier(CLASSES).fit(ph.image, ann * 2, progress=False)
    with pytest.raises(ValueError, match="expected integer or floating-point"):
        PixelClassifier(CLASSES).fit(ph.image.astype(np.complex64), ann, progress=False)
    with pytest.raises(ValueError, match="not trained yet"):
        PixelClassifier(CLASSES).predict(ph.image)


def test_cli_train_and_predict(phantom, tmp_path, capsys):
    ph, truth, ann = phantom
    img = write_tiff(ph.image, tmp_path / "img.tif", voxel_size=ph.voxel_size, progress=False)
    store = open_annotations(tmp_path / "ann.zarr", shape=ph.image.shape, classes=CLASSES)
    store.set_labels(ann)
    model = tmp_path / "model"
    assert main(["train", "--method", "rf", "--image", str(img), "--annotations", str(tmp_path / "ann.zarr"),
                 "--out", str(model), "--trees", "20", "--quiet"]) == 0
    assert "trained a random forest" in capsys.readouterr().out
    out = tmp_path / "pred.ome.zarr"
    assert main(["predict", "--model", str(model), "--image", str(img), "--out", str(out), "--quiet"]) == 0
    labels = open_volume(out)
    assert labels.shape == ph.image.shape and labels.voxel_size == pytest.approx(ph.voxel_size)
    assert iou(np.asarray(labels)[[1, 2, 4, 5]], truth[[1, 2, 4, 5]])[1] > 0.5
    probs = tmp_path / "probs.ome.zarr"
    assert main(["predict", "--model", str(model), "--image", str(img), "--out", str(probs), "--probabilities", "--quiet"]) == 0
    p1 = np.asarray(open_volume(probs, channel=1))
    assert p1.dtype == np.uint8 and p1.max() > 200
    tif = tmp_path / "pred.tif"
    assert main(["predict", "--model", str(model), "--image", str(img), "--out", str(tif), "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(open_volume(tif)), np.asarray(labels))
    # a label TIFF works as annotations too; existing outputs are kept
    write_tiff(ann, tmp_path / "ann.tif", progress=False)
    assert main(["train", "--image", str(img), "--annotations", str(tmp_path / "ann.tif"), "--classes",
                 "background,mitochondria", "--out", str(tmp_path / "m2"), "--trees", "5", "--quiet"]) == 0
    assert main(["predict", "--model", str(model), "--image", str(img), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_vnc_mitochondria_from_two_annotated_sections(shared_data):
    """Real data: scribbles on sections 0 and 10, IoU measured on sections 1-9 of a 512 x 512 crop."""
    from vemkit.datasets import load_dataset

    ds = load_dataset("drosophila_vnc_sstem", progress=False)
    image = np.asarray(ds.image.data[:10, :512, :512])
    truth = np.asarray(ds.labels["mitochondria"].data[:10, :512, :512])
    ann = scribbles_from_masks(truth, sections=[0, 5], seed=0)
    clf = PixelClassifier(CLASSES, n_estimators=50).fit(image, ann, voxel_size=ds.voxel_size, progress=False)
    pred = clf.predict(image)
    test = [z for z in range(10) if z not in (0, 5)]
    score = iou(pred[test], truth[test])[1]
    # the best possible global threshold (chosen with the ground truth) on the same sections
    from vemkit.segment_classic import normalize

    norm = normalize(image, per_section=True)
    best_threshold = max(iou(norm[test] <= t, truth[test])[1] for t in np.linspace(0.05, 0.6, 23))
    # measured: forest 0.164, best threshold 0.076. A forest on local features beats any threshold
    # clearly, yet stays far from useful: the lesson of notebook 02 (dark confusers need context)
    assert score > 0.14 and score > 1.5 * best_threshold, (score, best_threshold)
