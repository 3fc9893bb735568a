"""Pretraining with partial labels, the shipped mitochondria base model, and its zero-shot prediction."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vemkit import pretrain as pt  # noqa: E402
from vemkit.augment import AugmentConfig, Augmenter  # noqa: E402
from vemkit.pretrain import (  # noqa: E402
    CLASSES,
    RECIPES,
    class_index,
    grouped_logits,
    marginal_cross_entropy,
    supervised_classes,
)
from vemkit.train import base_model_path, list_base_models  # noqa: E402

SHIPPED = "em2d-mito"
#: zero-shot IoU of the shipped model on the test crop below, measured when it was shipped, minus a margin
MEASURED_CROP_IOU = 0.677  # measured 2026-12-04 on the 2-core CPU (bf16), test_cli_predict_by_name_finds_mitochondria


def _logits():
    # one voxel, softmax p = (1/4, 1/4, 1/2) over background, membrane, mitochondria
    return torch.tensor([[[0.0], [0.0], [math.log(2.0)]]], requires_grad=True)


# -------------------------------------------------------------------------------- partial-label loss


def test_marginal_cross_entropy_exact_values_and_gradients():
    z = _logits()
    loss = marginal_cross_entropy(z, torch.tensor([[0]]), torch.from_numpy(pt._MITO))  # "not mitochondria"
    assert float(loss.detach()) == pytest.approx(math.log(2.0), abs=1e-6)  # -log(1/4 + 1/4)
    loss.backward()
    # d/dz = p - q, q = p restricted to the allowed set {background, membrane} and renormalised
    assert z.grad.flatten().tolist() == pytest.approx([-0.25, -0.25, 0.5], abs=1e-6)
    z = _logits()
    loss = marginal_cross_entropy(z, torch.tensor([[0]]), torch.from_numpy(pt._PARTIAL))  # "not membrane"
    assert float(loss.detach()) == pytest.approx(-math.log(0.75), abs=1e-6)
    loss.backward()
    assert z.grad.flatten().tolist() == pytest.approx([0.25 - 1 / 3, 0.25, 0.5 - 2 / 3], abs=1e-6)
    z = _logits()
    loss = marginal_cross_entropy(z, torch.tensor([[2]]), torch.from_numpy(pt._FULL))  # plain cross-entropy
    assert float(loss.detach()) == pytest.approx(math.log(2.0), abs=1e-6)


def test_unlabelled_voxels_give_no_gradient():
    z = _logits()
    marginal_cross_entropy(z, torch.tensor([[-1]]), torch.from_numpy(pt._FULL)).backward()
    assert z.grad is None or not z.grad.any()


def _pretrain_loss(logits, labels, sets):
    """The pretraining loss of one batch (marginal cross-entropy + Dice on the grouped logits)."""
    from vemkit._losses import masked_losses

    return marginal_cross_entropy(logits, labels, torch.from_numpy(sets)) + masked_losses(
        grouped_logits(logits, sets), labels)[2]


@pytest.mark.parametrize("sets, a, b, trained", [
    (pt._MITO, 0, 1, False),     # mitochondria-only labels: background vs membrane is not trained
    (pt._PARTIAL, 0, 2, False),  # membrane-only labels: background vs mitochondria is not trained
    (pt._FULL, 0, 1, True),      # full labels train every split
])
def test_a_class_absent_from_the_labels_gets_no_gradient(sets, a, b, trained):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    labels = torch.randint(-1, sets.shape[0], (2, 8, 8), generator=g)
    _pretrain_loss(logits, labels, sets).backward()
    # moving probability between classes a and b while keeping their sum: v_a = p_b, v_b = -p_a (per voxel)
    p = torch.softmax(logits.detach(), 1)
    v = torch.zeros_like(p)
    v[:, a], v[:, b] = p[:, b], -p[:, a]
    along = float((logits.grad * v).sum(1).abs().sum())  # per voxel, then summed
    if trained:
        assert abs(along) > 1e-4
    else:
        assert abs(along) < 1e-6


def test_grouped_logits_and_supervised_classes():
    z = torch.tensor([[[1.0], [2.0], [3.0]]])
    g = grouped_logits(z, pt._MITO)
    assert g[0, :, 0].tolist() == pytest.approx([math.log(math.e + math.e**2), 3.0])
    assert torch.equal(grouped_logits(z, pt._FULL), z)
    assert supervised_classes(pt._MITO) == ["mitochondria"]
    assert supervised_classes(pt._PARTIAL, np.zeros((1, 4, 4))) == []  # no membrane voxel at all


def test_a_source_without_a_class_says_so(recwarn):
    src = pt._Source("cdeep3m_mito", np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), np.int16), pt._MITO, {})
    supervision = pt._say_what_trains([src])
    assert supervision == {"cdeep3m_mito": ["mitochondria"]}
    text = " ".join(str(w.message) for w in recwarn)
    assert "'cdeep3m_mito' has no labels for background, membrane" in text
    assert "no pretraining source labels 'membrane'" in text


def test_a_tiny_pretraining_records_what_each_source_trained(tmp_path):
    model = pt.pretrain(tmp_path / "m", sources=("phantom",), iterations=2, minutes=None, model_size="tiny",
                        patch=64, batch_size=2, device="cpu", amp=False, progress=False, augment="pretraining")
    rec = json.loads((tmp_path / "m" / "training.json").read_text())
    assert rec["supervision"] == {"phantom": CLASSES} and rec["augment"]["scale_range"] == [0.6, 1.6]
    assert "--augment pretraining" in rec["command"] and model.classes == CLASSES
    again = pt.pretrain(tmp_path / "c", sources=("phantom",), iterations=1, minutes=None, patch=64, batch_size=1,
                        device="cpu", amp=False, progress=False, init=tmp_path / "m")
    assert again.training["init"]["seen"] == ["phantom"] and "--init m" in again.training["command"]
    assert "Continued from the base model `m`" in (tmp_path / "c" / "MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match="unknown pretraining source"):
        pt.pretrain(tmp_path / "n", sources=("nope",), iterations=1, minutes=None)


def test_pretraining_augmentation_inverts_contrast_when_asked():
    aug = Augmenter(AugmentConfig(**{**{n: 0.0 for n in AugmentConfig.probabilities()}, "invert": 1.0}), ndim=2)
    image = torch.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    out, labels, _ = aug(image, torch.ones(1, 4, 4, dtype=torch.int64), generator=0)
    assert torch.allclose(out, 1 - image) and bool((labels == 1).all())
    assert AugmentConfig.default().invert == 0.0  # fine-tuning's defaults are unchanged


# ------------------------------------------------------------------------------------ class errors


def test_a_model_asked_for_a_class_it_lacks_lists_its_classes():
    from vemkit.models import load_model

    model = load_model(base_model_path(SHIPPED))
    assert class_index(model, "mitochondria") == 2
    with pytest.raises(ValueError, match="no class 'synapse'; its classes are: background, membrane, mitochondria"):
        class_index(model, "synapse")


# ---------------------------------------------------------------------------------- recipes and CLI


def test_cli_recipe_fills_the_pretraining_and_options_override_it():
    from vemkit.cli import build_parser
    from vemkit.cli._training import pretrain_arguments

    args = build_parser().parse_args(["pretrain", "--out", "x", "--recipe", "mito2d", "--leave-out", "cdeep3m_mito",
                                      "--minutes", "3"])
    kw = pretrain_arguments(args)
    assert "cdeep3m_mito" not in kw["sources"] and "drosophila_vnc_sstem" in kw["sources"]
    assert kw["minutes"] == 3.0 and kw["augment"] == "pretraining" and kw["recipe"] == "mito2d"
    assert kw["init"] == "em2d-small"  # never saw VNC or CDeep3M: leave-one-out stays honest
    args = build_parser().parse_args(["pretrain", "--out", "x", "--recipe", "mito2d", "--init", "none"])
    assert pretrain_arguments(args)["init"] is None
    assert set(RECIPES["mito2d"]["sources"]) == set(pt.SOURCES)


# ------------------------------------------------------------------------------------- shipped model


def test_shipped_mito_model_folder_matches_its_card():
    import hashlib

    assert SHIPPED in list_base_models()
    folder = base_model_path(SHIPPED)
    cfg = json.loads((folder / "config.json").read_text())
    rec = json.loads((folder / "training.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    weights = folder / "weights.safetensors"
    assert "mitochondria" in cfg["classes"] and cfg["architecture"]["ndim"] == 2
    assert hashlib.sha256(weights.read_bytes()).hexdigest() in card
    assert sum(f.stat().st_size for f in folder.iterdir()) < 20 * 2**20
    assert rec["recipe"] == "mito2d" and rec["command"] in card and "cdeep3m_mito" in rec["sources"]
    assert rec["device"] in card and "Zero-shot" in card
    from vemkit.models import load_model

    assert load_model(folder).classes == cfg["classes"]


@pytest.mark.realdata
def test_cli_predict_by_name_finds_mitochondria(shared_data, tmp_path):
    """``vemkit predict --model em2d-mito`` on a crop of CDeep3M's validation volume (never trained on)."""
    import tifffile

    from vemkit.cli import main
    from vemkit.datasets import load_dataset
    from vemkit.io import open_volume

    d = load_dataset("cdeep3m_mito", "validation", progress=False)
    crop = (slice(0, 2), slice(0, 384), slice(0, 384))
    image = np.asarray(d.image.data[crop])
    truth = np.asarray(d.labels["mitochondria"].data[crop]) > 0
    tifffile.imwrite(tmp_path / "crop.tif", image)
    out = tmp_path / "pred.ome.zarr"
    assert main(["predict", "--model", SHIPPED, "--image", str(tmp_path / "crop.tif"), "--voxel-size", "40,5.9,5.9",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    labels = np.asarray(open_volume(str(out)).data)
    mask = labels == 2
    iou = (mask & truth).sum() / max((mask | truth).sum(), 1)
    assert iou > MEASURED_CROP_IOU - 0.1, iou


def test_cli_predict_resolves_a_shipped_name(tmp_path, capsys):
    """No data needed: the name of a shipped base model works as --model, an unknown name is the usual error."""
    import tifffile

    from vemkit.cli import main
    from vemkit.io import open_volume

    image = (np.random.default_rng(0).random((1, 64, 64)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "x.tif", image)
    out = tmp_path / "p.ome.zarr"
    assert main(["predict", "--model", SHIPPED, "--image", str(tmp_path / "x.tif"), "--voxel-size", "40,5,5",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert open_volume(str(out)).shape == (1, 64, 64)
    assert main(["predict", "--model", "no-such-model", "--image", str(tmp_path / "x.tif"), "--out",
                 str(tmp_path / "q.ome.zarr"), "--quiet"]) != 0
    assert "no-such-model" in capsys.readouterr().err
