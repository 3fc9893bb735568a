"""U-Net training: the planner, loss masking, fine-tuning, checkpoints, model directories."""

import re

import numpy as np
import pytest
import torch

from vemkit._volume import Volume
from vemkit.models import SegmentationModel, UNet, load_model
from vemkit.synthetic import make_phantom
from vemkit.train import finetune, masked_losses, plan_training


@pytest.fixture(scope="module")
def phantom():
    ph = make_phantom((8, 128, 128), voxel_size=(40.0, 8.0, 8.0), seed=3)
    ann = np.zeros(ph.semantic.shape, np.uint8)
    mito = (np.asarray(ph.semantic) == 2)
    for z in (1, 4, 6):
        ann[z] = 1 + mito[z]
    return Volume.from_array(np.asarray(ph.image), voxel_size=(40.0, 8.0, 8.0)), ann


def test_plan_chooses_2d_for_sparse_anisotropic_and_3d_for_dense_isotropic():
    ann = np.zeros((20, 128, 128), np.uint8)
    ann[[0, 10]] = 1
    ann[[0, 10], 40:60, 40:60] = 2
    plan = plan_training(np.zeros((20, 128, 128), np.uint8), ann, voxel_size=(50, 5, 5), device="cpu")
    assert plan.ndim == 2 and plan.patch == (1, 128, 128) and "10.0x" in plan.reasons["ndim"]
    dense = np.ones((40, 96, 96), np.uint8)
    dense[10:30, 30:60, 30:60] = 2
    plan3 = plan_training(np.zeros((40, 96, 96), np.uint8), dense, voxel_size=(8, 8, 8), device="cpu")
    assert plan3.ndim == 3 and not plan3.anisotropic and plan3.patch[0] > 1
    # the cross-entropy is not weighted (Dice and sampling balance the classes); the reason offers
    # inverse-square-root weights that favour the rare class; every choice can be overridden
    assert plan3.class_weights == [1.0, 1.0]
    offered = re.search(r"class_weights=\[([^\]]+)\]", plan3.reasons["class_weights"]).group(1)
    w_bg, w_fg = (float(v) for v in offered.split(","))
    assert w_fg > w_bg and w_fg + w_bg == pytest.approx(2.0, abs=0.01)
    over = plan_training(np.zeros((40, 96, 96), np.uint8), dense, voxel_size=(8, 8, 8), device="cpu",
                         ndim=2, batch_size=2)
    assert over.ndim == 2 and over.batch_size == 2 and over.reasons["batch_size"] == "set by the user"
    assert "2D U-Net" in str(over)


def test_plan_refuses_bad_annotations():
    img = np.zeros((4, 64, 64), np.uint8)
    with pytest.raises(ValueError, match="empty"):
        plan_training(img, np.zeros_like(img), voxel_size=(50, 5, 5))
    with pytest.raises(ValueError, match="single value"):
        plan_training(img, np.ones_like(img), voxel_size=(50, 5, 5))
    only_fg = np.zeros_like(img)
    only_fg[0, :10] = 2
    with pytest.raises(ValueError, match="single value"):
        plan_training(img, only_fg, voxel_size=(50, 5, 5))
    ann = np.ones_like(img)
    ann[0, :5] = 2
    with pytest.raises(ValueError, match="shape"):
        plan_training(img, ann[:2], voxel_size=(50, 5, 5))
    with pytest.raises(ValueError, match="unknown plan settings"):
        plan_training(img, ann, voxel_size=(50, 5, 5), patchsize=3)
    with pytest.raises(ValueError, match="voxel size is unknown"):
        plan_training(img, ann)


def test_unlabelled_voxels_never_reach_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    labels = torch.randint(0, 3, (2, 16, 16))
    labels[:, :8] = -1
    total, ce, dice = masked_losses(logits, labels, torch.tensor([0.5, 1.0, 2.0]))
    total.backward()
    assert torch.all(logits.grad[:, :, :8] == 0) and torch.any(logits.grad[:, :, 8:] != 0)
    other = logits.detach().clone()
    other[:, :, :8] = torch.randn(2, 3, 8, 16) * 10  # change only ignored voxels
    t2, _, _ = masked_losses(other, labels, torch.tensor([0.5, 1.0, 2.0]))
    assert float(t2) == pytest.approx(float(total.detach()), rel=1e-6)
    # hand-computed: two voxels, perfect logits for one class each -> CE 0, Dice 0
    perfect = torch.tensor([[[20.0, -20.0], [-20.0, 20.0]]])
    total, ce, dice = masked_losses(perfect, torch.tensor([[0, 1]]))
    assert float(ce) < 1e-6 and float(dice) < 1e-4
    all_ignored = masked_losses(perfect, torch.tensor([[-1, -1]]))[0]
    assert float(all_ignored) == 0.0


def test_finetune_is_repeatable_and_saves_a_model_directory(phantom, tmp_path):
    image, ann = phantom
    kw = dict(classes=["background", "mito"], base=None, iterations=3, device="cpu", seed=5, progress=False)
    plan = plan_training(image, ann, device="cpu", model_size="tiny", patch=(1, 64, 64), batch_size=2)
    a = finetune(image, ann, plan=plan, out=tmp_path / "a", **kw)
    b = finetune(image, ann, plan=plan, **kw)
    for (k, va), (_, vb) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert torch.equal(va, vb), k
    loaded = load_model(tmp_path / "a")
    assert loaded.fingerprint() == a.fingerprint()
    assert loaded.classes == ["background", "mito"] and loaded.voxel_size == (40.0, 8.0, 8.0)
    assert (tmp_path / "a" / "plan.json").exists() and not (tmp_path / "a" / "checkpoint.pt").exists()
    assert a.training["iterations"] == 3 and len(a.training["history"]["loss"]) == 3
    assert a.training["plan"]["ndim"] == 2
    with pytest.raises(FileExistsError, match="already holds a model"):
        finetune(image, ann, plan=plan, out=tmp_path / "a", **kw)


def test_interrupted_training_resumes_from_its_checkpoint(phantom, tmp_path, monkeypatch):
    image, ann = phantom
    plan = plan_training(image, ann, device="cpu", model_size="tiny", patch=(1, 64, 64), batch_size=2)
    kw = dict(classes=["background", "mito"], base=None, device="cpu", seed=1, progress=False, plan=plan)
    reference = finetune(image, ann, iterations=4, **kw)

    import vemkit.train as train_module

    original = train_module._save_checkpoint

    def save_then_crash(path, net, opt, step, *args):
        original(path, net, opt, step, *args)
        if step == 2:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(image, ann, iterations=4, out=tmp_path / "m", checkpoint_every=0, **kw)
    monkeypatch.undo()
    assert (tmp_path / "m" / "checkpoint.pt").exists()
    resumed = finetune(image, ann, iterations=4, out=tmp_path / "m", **kw)
    assert resumed.training["resumed_from"] == 2 and resumed.training["iterations"] == 4
    for (k, va), (_, vb) in zip(reference.network.state_dict().items(), resumed.network.state_dict().items()):
        torch.testing.assert_close(va, vb, msg=k)


def test_base_model_head_keeps_the_weights_of_classes_it_already_knows(phantom, tmp_path):
    from vemkit.train import _build_network

    image, ann = phantom
    torch.manual_seed(0)
    base = SegmentationModel(UNet(ndim=2, out_channels=3, base_channels=4, depth=2),
                             ["background", "membrane", "mitochondria"], voxel_size=(40, 8, 8))
    base.save(tmp_path / "base")
    w, b = base.network.head.weight.detach().clone(), base.network.head.bias.detach().clone()
    plan = plan_training(image, ann, device="cpu", patch=(1, 64, 64), batch_size=2)
    net, note = _build_network(plan, ["background", "Mito", "boundary_distance"], (40, 8, 8), tmp_path / "base")
    assert net.head.weight.shape[0] == 3 and net.out_channels == 3
    torch.testing.assert_close(net.head.weight[0], w[0], rtol=0, atol=1e-3)  # float16 on disk
    torch.testing.assert_close(net.head.weight[1], w[2], rtol=0, atol=1e-3)  # "Mito" is the base's mitochondria
    torch.testing.assert_close(net.head.bias[1], b[2], rtol=0, atol=1e-3)
    assert not torch.allclose(net.head.weight[2], w[1], atol=1e-3)  # an output the base never had starts afresh
    assert "mitochondria" in note and "Mito <- mitochondria" in note
    same, note_same = _build_network(plan, ["Background", "membranes", "mito"], (40, 8, 8), tmp_path / "base")
    assert note_same is None and same.out_channels == 3  # the same outputs under aliases: the head is kept
    other, note_other = _build_network(plan, ["bg", "synapse"], (40, 8, 8), tmp_path / "base")
    assert "background <- " not in note_other and "bg <- background" in note_other
    fresh, note_fresh = _build_network(plan, ["cells", "synapse"], (40, 8, 8), tmp_path / "base")
    assert "starts afresh" in note_fresh
    # an extra target (instance boundaries) is not the class "membrane", whatever the aliases say
    plan.extra_targets = ["boundary"]
    extra, note_extra = _build_network(plan, ["background", "mito", "boundary"], (40, 8, 8), tmp_path / "base")
    assert "mito <- mitochondria" in note_extra and "boundary <- " not in note_extra
    assert not torch.allclose(extra.head.weight[2], w[1], atol=1e-3)


def test_base_model_head_is_replaced_and_dimensionality_checked(phantom, tmp_path, capsys):
    image, ann = phantom
    base = SegmentationModel(UNet(ndim=2, out_channels=3, base_channels=4, depth=2),
                             ["background", "membrane", "mitochondria"], voxel_size=(40, 8, 8))
    base.save(tmp_path / "base")
    plan = plan_training(image, ann, device="cpu", patch=(1, 64, 64), batch_size=2)
    model = finetune(image, ann, classes=["background", "mito"], base=tmp_path / "base", plan=plan, iterations=1,
                     device="cpu", progress=True)
    assert "head" in capsys.readouterr().out and model.network.out_channels == 2
    enc = base.network.encoder[0].conv1[0].weight
    assert not torch.equal(model.network.encoder[0].conv1[0].weight, enc)  # trained one step from it
    base3d = SegmentationModel(UNet(ndim=3, out_channels=2, base_channels=4, depth=1), ["bg", "fg"], voxel_size=(8, 8, 8))
    base3d.save(tmp_path / "base3d")
    with pytest.raises(ValueError, match="is 3D but the plan is 2D"):
        finetune(image, ann, base=tmp_path / "base3d", plan=plan, iterations=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="budget"):
        finetune(image, ann, base=None, plan=plan, device="cpu", progress=False)


def test_extra_targets_add_output_channels(phantom):
    image, ann = phantom
    plan = plan_training(image, ann, device="cpu", model_size="tiny", patch=(1, 64, 64), batch_size=2)
    model = finetune(image, ann, base=None, plan=plan, iterations=2, device="cpu", progress=False,
                     extra_targets=("boundary", "distance"))
    assert model.extra_targets == ["boundary", "distance"] and model.network.out_channels == 4


def test_cpu_mixed_precision_follows_the_hardware_and_still_learns(phantom, tmp_path):
    from vemkit._device import cpu_has_bf16_matrix_units
    from vemkit._precision import resolve_amp as _resolve_amp

    cpu = torch.device("cpu")
    assert _resolve_amp("auto", cpu) == ("bf16" if cpu_has_bf16_matrix_units() else "none")
    assert _resolve_amp("bf16", cpu) == "bf16" and _resolve_amp(False, cpu) == "none"
    with pytest.raises(ValueError, match="not available on the CPU"):
        _resolve_amp("fp16", cpu)
    image, ann = phantom
    plan = plan_training(image, ann, device="cpu", model_size="tiny", patch=(1, 64, 64), batch_size=4)
    kw = dict(classes=["background", "mito"], base=None, plan=plan, iterations=40, device="cpu", seed=2,
              progress=False)
    half = finetune(image, ann, amp="bf16", out=tmp_path / "bf16", **kw)
    full = finetune(image, ann, amp=False, **kw)
    assert half.training["amp"] == "bf16" and full.training["amp"] == "none"
    # trained channels-last, stored in the standard layout: the directory loads back to the same network
    assert all(t.is_contiguous() for t in half.network.state_dict().values())
    assert load_model(tmp_path / "bf16").fingerprint() == half.fingerprint()
    lh, lf = half.training["history"]["loss"], full.training["history"]["loss"]
    assert abs(lh[0] - lf[0]) < 0.02, "the first bfloat16 step computes the float32 loss to bf16 precision"
    for losses in (lh, lf):  # both learn: the last ten steps well below the first ten
        assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses


@pytest.mark.parametrize("amp", ["bf16", False])
def test_pretrain_writes_a_base_model_finetune_can_start_from(tmp_path, amp):
    from vemkit.pretrain import pretrain

    out = tmp_path / "base"
    model = pretrain(out, sources=("phantom",), iterations=3, model_size="tiny", patch=64, batch_size=2,
                     device="cpu", amp=amp, progress=False)
    assert model.training["iterations"] == 3 and model.training["amp"] == ("bf16" if amp else "none")
    assert len(model.training["history"]["loss"]) == 3 and all(np.isfinite(model.training["history"]["loss"]))
    assert (out / "MODEL_CARD.md").exists()
    loaded = load_model(out)
    assert loaded.classes == model.classes and loaded.network.ndim == 2
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():  # stored as float16: the same network to half precision
        torch.testing.assert_close(loaded.network(x), model.network.eval()(x), atol=0.05, rtol=0.05)
    with pytest.raises(FileExistsError, match="not empty"):
        pretrain(out, sources=("phantom",), iterations=1, device="cpu", progress=False)


@pytest.mark.realdata
@pytest.mark.slow
def test_finetune_on_real_membranes_improves_validation_iou(shared_data):
    from vemkit.datasets import load_dataset

    d = load_dataset("isbi2012", progress=False)
    mem = np.asarray(d.labels["membranes"].data[:6])
    img = Volume.from_array(np.asarray(d.image.data[:6]), voxel_size=d.image.voxel_size)
    ann = (mem + 1).astype(np.uint8)  # dense: 1 = background, 2 = membrane
    plan = plan_training(img, ann, device="cpu", model_size="tiny", patch=(1, 128, 128), batch_size=4)
    assert plan.validation_sections, "six annotated sections: some are held out"
    model = finetune(img, ann, classes=["background", "membrane"], base=None, plan=plan, iterations=40,
                     eval_every=40, device="cpu", progress=False)
    ious = model.training["history"]["val_iou"]
    assert len(ious) == 2
    assert ious[-1] > ious[0] + 0.1 and ious[-1] > 0.45, ious


def test_shipped_base_models_have_cards_matching_weights_and_fit_the_size_limit():
    import hashlib
    import re

    from vemkit.models import load_model
    from vemkit.train import BASE_MODELS_DIR, _auto_base, base_model_path, list_base_models

    names = list_base_models()
    assert {"em2d-small", "em2d-small-vnc"} <= set(names)
    total = 0
    for name in names:
        path = base_model_path(name)
        card = (path / "MODEL_CARD.md").read_text()
        weights = (path / "weights.safetensors").read_bytes()
        total += sum(f.stat().st_size for f in path.iterdir())
        assert re.search(r"SHA-256 ([0-9a-f]{64})", card).group(1) == hashlib.sha256(weights).hexdigest()
        assert "## Validation" in card and "## Training data" in card
        model = load_model(path)
        assert model.classes == ["background", "membrane", "mitochondria"] and model.ndim == 2
    assert total <= 20e6, f"{BASE_MODELS_DIR} holds {total / 1e6:.1f} MB (at most 20 MB)"
    # "auto" takes the general base, never the VNC variant (which saw the VNC test sections)
    assert _auto_base(2, None, None, None, "cpu") == "em2d-small"
