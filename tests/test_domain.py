"""Domain shift: the diagnosis and cheap remedies (vemkit.domain), and unsupervised adaptation (vemkit.adapt)."""

import json

import numpy as np
import pytest
import torch

from vemkit.adapt import DomainClassifier, GradientReversal, ReconstructionDecoder, adapt, grad_reverse
from vemkit.domain import (
    adapt_batchnorm,
    domain_gap,
    histogram_normalization,
    label_free_scores,
    load_sections,
    match_histogram,
    predict_sections,
    resample_sections,
)
from vemkit.io import Volume
from vemkit.models import SegmentationModel, UNet, load_model


def _model(depth=2, base=4, vs=(50.0, 5.0, 5.0), seed=0):
    torch.manual_seed(seed)
    return SegmentationModel(UNet(ndim=2, base_channels=base, depth=depth), ["background", "membrane"], voxel_size=vs)


@pytest.fixture(scope="module")
def phantom():
    from vemkit.synthetic import make_phantom

    ph = make_phantom((4, 96, 96), voxel_size=(40.0, 5.0, 5.0), seed=1)
    img = np.asarray(ph.image)
    sem = np.asarray(ph.semantic)
    ann = (1 + (sem == 1)).astype(np.uint8)  # 1 background, 2 membrane
    return img, ann


# ------------------------------------------------------------------------------ gradient reversal
def test_gradient_reversal_is_identity_forward_and_negates_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x)
    w = torch.randn(4, 3)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.25 * w)
    layer = GradientReversal(3.0)
    x2 = torch.randn(5, requires_grad=True)
    (layer(x2) ** 2).sum().backward()
    assert torch.allclose(x2.grad, -3.0 * 2 * x2.detach())
    # strength 0: the classifier still learns, the features get no gradient from it
    x3 = torch.randn(2, requires_grad=True)
    grad_reverse(x3, 0.0).sum().backward()
    assert torch.equal(x3.grad, torch.zeros(2))


def test_gradient_reversal_makes_features_fight_the_classifier():
    """One step: the classifier's loss goes down with its own update, the features move to raise it."""
    torch.manual_seed(0)
    feats = torch.randn(8, 4, 16, 16, requires_grad=True)
    clf = DomainClassifier(4, width=8)
    domain = torch.cat([torch.zeros(4), torch.ones(4)]).view(8, 1, 1, 1)

    def loss_of(f):
        d = clf(f)
        return torch.nn.functional.binary_cross_entropy_with_logits(d, domain.expand_as(d))

    loss = loss_of(grad_reverse(feats, 1.0))
    loss.backward()
    with torch.no_grad():
        moved = feats - 0.5 * feats.grad  # a gradient step on the features (through the reversal)
        assert loss_of(moved).item() > loss.item()


# ---------------------------------------------------------------------------- reconstruction decoder
@pytest.mark.parametrize("ndim,shape", [(2, (2, 1, 32, 32)), (3, (1, 1, 8, 32, 32))])
def test_reconstruction_decoder_maps_the_bottleneck_back_to_the_image_shape(ndim, shape):
    net = UNet(ndim=ndim, base_channels=4, depth=2, voxel_size=(40.0, 5.0, 5.0) if ndim == 3 else None)
    dec = ReconstructionDecoder(net)
    feats = net.encode(torch.zeros(shape))
    assert dec(feats[-1]).shape == shape
    # no skip connections: it sees the bottleneck only
    assert sum(p.numel() for p in dec.parameters()) > 0
    assert torch.equal(net.decode(feats), net(torch.zeros(shape)))


def test_reconstruction_decoder_learns_to_reconstruct():
    torch.manual_seed(0)
    net = UNet(ndim=2, base_channels=4, depth=2)
    dec = ReconstructionDecoder(net)
    yy, xx = np.mgrid[:16, :16]
    img = torch.from_numpy(np.stack([np.sin(xx / (3 + k)) * np.cos(yy / 5) for k in range(4)])[:, None].astype(np.float32))
    opt = torch.optim.Adam(list(net.parameters()) + list(dec.parameters()), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.mse_loss(dec(net.encode(img)[-1]), img)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])


def test_domain_classifier_judges_regions():
    assert DomainClassifier(8)(torch.zeros(2, 8, 64, 48)).shape == (2, 1, 8, 6)
    assert DomainClassifier(8, ndim=3)(torch.zeros(1, 8, 8, 16, 16)).shape == (1, 1, 1, 2, 2)


# ------------------------------------------------------------------------------------ cheap remedies
def test_resample_sections_changes_pixels_not_content():
    yy, xx = np.mgrid[:40, :60]
    ramp = np.stack([(xx * 4).astype(np.uint8)] * 3)
    vol = resample_sections(ramp, (50, 5, 5), voxel_size=(50, 10, 10))
    assert vol.shape == (3, 80, 120) and vol.voxel_size == (50.0, 5.0, 5.0) and vol.dtype == np.uint8
    out = np.asarray(vol.data)
    assert np.abs(out[1, 40, 20:100].astype(int) - (np.arange(20, 100) * 2 + 0.5 - 0.5).astype(int)).max() <= 3
    labels = np.zeros((2, 30, 30), np.uint8)
    labels[:, 10:20, 10:20] = 7
    lab = np.asarray(resample_sections(labels, (50, 4, 4), voxel_size=(50, 8, 8), order=0).data)
    assert set(np.unique(lab)) == {0, 7} and (lab == 7).sum() == 2 * 20 * 20
    with pytest.raises(ValueError, match="no voxel size"):
        resample_sections(labels, (50, 4, 4))


def test_match_histogram_takes_the_reference_distribution():
    rng = np.random.default_rng(0)
    ref = rng.normal(120, 20, (4, 64, 64)).clip(0, 255).astype(np.uint8)
    img = (255 - rng.gamma(2.0, 15.0, (4, 64, 64))).clip(0, 255).astype(np.uint8)
    out = np.asarray(match_histogram(img, ref).data)
    for q in (5, 25, 50, 75, 95):
        assert abs(np.percentile(out, q) - np.percentile(ref, q)) < 2.5, q
    # monotone: the order of grey values is kept
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= -1e-4)


def test_histogram_normalization_in_the_model_equals_matching_the_image(tmp_path, phantom):
    """A model carrying a histogram normalisation predicts on a target exactly what the original model
    predicts on the target histogram-matched to the source: blockwise, through predict_volume."""
    from vemkit.predict import predict_volume

    img, _ = phantom
    target = (255 - img).astype(np.uint8)  # inverted contrast
    model = _model()
    norm = histogram_normalization(img)
    matched_model = SegmentationModel(model.network, model.classes, voxel_size=model.voxel_size, normalization=norm)
    matched_model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.normalization == json.loads(json.dumps(norm))
    a = predict_volume(loaded, Volume.from_array(target, voxel_size=(40, 5, 5)), tmp_path / "a.ome.zarr",
                       device="cpu", probabilities=True, prob_dtype="float32", progress=False)
    # by hand: the target's percentiles onto the reference, then the original network
    from vemkit._intensity import input_mapping

    _, _, (xp, fp) = input_mapping(norm, target)
    manual = np.interp(target.astype(np.float64), xp, fp).astype(np.float32)
    fixed = SegmentationModel(model.network, model.classes, voxel_size=model.voxel_size,
                              normalization={"mode": "fixed", "low": 0.0, "high": 1.0})
    b = predict_volume(fixed, Volume.from_array(manual, voxel_size=(40, 5, 5)), tmp_path / "b.ome.zarr",
                       device="cpu", probabilities=True, prob_dtype="float32", progress=False)
    from vemkit.io import open_volume

    pa, pb = (np.asarray(open_volume(r.probabilities, channel=1).data) for r in (a, b))
    assert pa.shape == pb.shape and np.abs(pa - pb).max() < 1e-4


def test_adapt_batchnorm_estimates_the_targets_statistics():
    model = _model()
    rng = np.random.default_rng(0)
    target = rng.normal(30, 5, (4, 64, 64)).clip(0, 255).astype(np.uint8)
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    adapted = adapt_batchnorm(model, target, voxel_size=(50, 5, 5), n_patches=8, patch=64, batch_size=4)
    # the original is untouched
    assert all(torch.equal(before[k], v) for k, v in model.network.state_dict().items())
    # the first BatchNorm now holds the mean of the first convolution's output over the target patches
    x, _, _ = load_sections(model, target, voxel_size=(50, 5, 5), max_sections=4)
    conv = adapted.network.encoder[0].conv1[0]
    with torch.no_grad():
        out = conv(torch.from_numpy(x[:, None]))
    bn = adapted.network.encoder[0].conv1[1]
    assert torch.allclose(bn.running_mean, out.mean((0, 2, 3)), atol=0.02 * float(out.abs().mean()))
    assert not torch.allclose(bn.running_mean, before["encoder.0.conv1.1.running_mean"])
    assert adapted.training["adaptation"]["method"] == "adabn"


# ---------------------------------------------------------------------------------------- diagnosis
def test_domain_gap_tells_a_shifted_target_from_the_same_data(phantom):
    img, _ = phantom
    model = _model(base=8)
    same = domain_gap(model, img, img.copy(), source_voxel_size=(40, 5, 5), target_voxel_size=(40, 5, 5),
                      n_patches=40, patch=32)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    other = domain_gap(model, img, noisy, source_voxel_size=(40, 5, 5), target_voxel_size=(40, 5, 5),
                       n_patches=40, patch=32)
    assert same.zoom == 1.0 and same.intensity_distance < 0.01
    assert same.proxy_a_distance < 0.8 < 1.2 < other.proxy_a_distance  # a noisier microscope: other features
    assert other.feature_mmd2 > 5 * max(same.feature_mmd2, 1e-3)
    assert any(a.startswith("features") for a in other.advice)
    gamma = (255 * (img / 255.0) ** 3).astype(np.uint8)  # another grey-value distribution
    skewed = domain_gap(model, img, gamma, source_voxel_size=(40, 5, 5), target_voxel_size=(40, 5, 5),
                        n_patches=20, patch=32)
    assert skewed.intensity_distance > 0.1 and any(a.startswith("histogram") for a in skewed.advice)
    coarse = domain_gap(model, img, img[:, ::2, ::2].copy(), source_voxel_size=(40, 5, 5),
                        target_voxel_size=(40, 10, 10), n_patches=20, patch=32)
    assert coarse.zoom == 2.0 and coarse.advice[0].startswith("resample")
    assert "proxy A-distance" in str(coarse)
    fig = other.plot()
    assert len(fig.axes) == 3
    json.dumps(other.to_dict(), default=float)


def test_label_free_scores_and_predict_sections_shapes(phantom):
    img, _ = phantom
    model = _model()
    s = label_free_scores(model, img, voxel_size=(40, 5, 5))
    assert 0.5 <= s["confidence"] <= 1.0 and 0.0 <= s["flip_agreement"] <= 1.0 and s["sections"] == [0, 1, 2, 3]
    p, picked = predict_sections(model, img[:, ::2, ::2], voxel_size=(40, 10, 10), sections=[1, 3])
    assert p.shape == (2, 2, 48, 48) and picked == [1, 3] and np.allclose(p.sum(0), 1, atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        predict_sections(model, img, voxel_size=(40, 5, 5), sections=[9])


def test_domain_functions_take_a_model_directory(tmp_path, phantom):
    img, _ = phantom
    model = _model()
    model.save(tmp_path / "m")
    p_obj, _ = predict_sections(model, img, voxel_size=(40, 5, 5), sections=[0])
    p_dir, _ = predict_sections(tmp_path / "m", img, voxel_size=(40, 5, 5), sections=[0])
    assert np.allclose(p_obj, p_dir, atol=1e-5)
    assert label_free_scores(str(tmp_path / "m"), img, voxel_size=(40, 5, 5)) == label_free_scores(
        model, img, voxel_size=(40, 5, 5))
    gap = domain_gap(tmp_path / "m", img, img, source_voxel_size=(40, 5, 5), target_voxel_size=(40, 5, 5),
                     n_patches=10, patch=32)
    assert gap.zoom == 1.0
    with pytest.raises((FileNotFoundError, ValueError)):
        domain_gap(tmp_path / "missing", img, img, source_voxel_size=(40, 5, 5), target_voxel_size=(40, 5, 5))


# ---------------------------------------------------------------------------------------- adaptation
@pytest.mark.parametrize("method", ["ynet", "dann"])
def test_adapt_trains_and_saves_a_model_directory(tmp_path, phantom, method):
    img, ann = phantom
    model = _model()
    fingerprint = model.fingerprint()
    target = (255 - img[:, ::2, ::2]).astype(np.uint8)
    adapted = adapt(model, Volume.from_array(img, voxel_size=(40, 5, 5)), ann, Volume.from_array(target, voxel_size=(40, 10, 10)),
                    method=method, iterations=3, patch=64, batch_size=2, device="cpu", out=tmp_path / "m",
                    progress=False)
    assert model.fingerprint() == fingerprint  # the source model is not changed
    rec = adapted.training["adaptation"]
    assert rec["method"] == method and rec["iterations"] == 3 and rec["target_zoom"] == 2.0
    assert len(rec["history"]["auxiliary_loss"]) == 3 and all(np.isfinite(rec["history"]["segmentation_loss"]))
    loaded = load_model(tmp_path / "m")
    assert loaded.fingerprint() == adapted.fingerprint() != fingerprint
    with pytest.raises(FileExistsError):
        adapt(model, img, ann, target, method=method, iterations=1, out=tmp_path / "m", target_voxel_size=(40, 10, 10),
              progress=False)


def test_adapt_refuses_bad_input(phantom):
    img, ann = phantom
    model = _model()
    with pytest.raises(ValueError, match="unknown adaptation method"):
        adapt(model, img, ann, img, method="cyclegan")
    with pytest.raises(ValueError, match="no voxel size"):
        adapt(model, img, ann, img, method="ynet", iterations=1)
    with pytest.raises(ValueError, match="budget"):
        adapt(model, img, ann, img, method="ynet", target_voxel_size=(40, 5, 5))
    with pytest.raises(ValueError, match="empty"):
        adapt(model, img, np.zeros_like(ann), img, method="dann", iterations=1, target_voxel_size=(40, 5, 5))
    with pytest.raises(ValueError, match="values 1..2"):
        adapt(model, img, ann + 2, img, method="dann", iterations=1, target_voxel_size=(40, 5, 5))
    model3d = SegmentationModel(UNet(ndim=3, base_channels=4, depth=1), ["bg", "fg"], voxel_size=(5, 5, 5))
    with pytest.raises(ValueError, match="2D"):
        adapt(model3d, img, ann, img, method="ynet", iterations=1)


def test_adapt_histogram_and_adabn_need_no_labels(phantom):
    img, _ = phantom
    model = _model()
    target = Volume.from_array((img // 2 + 60).astype(np.uint8), voxel_size=(40, 5, 5))
    h = adapt(model, img, None, target, method="histogram")
    assert h.normalization["mode"] == "histogram" and len(h.normalization["reference"]) == len(h.normalization["levels"])
    assert all(torch.equal(a, b) for a, b in zip(h.network.state_dict().values(), model.network.state_dict().values()))
    b = adapt(model, img, None, target, method="adabn", device="cpu")
    assert b.training["adaptation"]["method"] == "adabn" and b.fingerprint() != model.fingerprint()


def test_cli_adapt(tmp_path, phantom):
    import tifffile

    from vemkit.cli import main

    img, ann = phantom
    model = _model()
    model.save(tmp_path / "source_model")
    tifffile.imwrite(tmp_path / "src.tif", img, photometric="minisblack")
    tifffile.imwrite(tmp_path / "ann.tif", ann, photometric="minisblack")
    tifffile.imwrite(tmp_path / "tgt.tif", (255 - img[:, ::2, ::2]).astype(np.uint8), photometric="minisblack")
    common = ["adapt", "--model", str(tmp_path / "source_model"), "--source", str(tmp_path / "src.tif"),
              "--source-voxel-size", "40,5,5", "--target", str(tmp_path / "tgt.tif"), "--target-voxel-size", "40,10,10",
              "--device", "cpu", "--quiet"]
    assert main(common + ["--method", "dann", "--out", str(tmp_path / "dann")]) == 2  # needs the source labels
    assert main(common + ["--method", "ynet", "--iterations", "2", "--source-annotations", str(tmp_path / "ann.tif"),
                          "--classes", "background,membrane", "--out", str(tmp_path / "ynet")]) == 0
    assert load_model(tmp_path / "ynet").training["adaptation"]["iterations"] == 2
    assert main(common + ["--method", "histogram", "--out", str(tmp_path / "hist")]) == 0
    assert load_model(tmp_path / "hist").normalization["mode"] == "histogram"
    assert main(common + ["--method", "histogram", "--out", str(tmp_path / "hist")]) == 2  # never overwritten
