"""U-Net architectures and the model directory."""

import json

import numpy as np
import pytest
import torch

from vemkit.models import UNET_SIZES, SegmentationModel, UNet, load_model, plan_levels


@pytest.mark.parametrize("ndim,voxel_size,residual", [(2, None, False), (2, None, True), (3, (50, 5, 5), False),
                                                      (3, (8, 8, 8), True)])
def test_unet_shapes_and_divisor(ndim, voxel_size, residual):
    net = UNet(ndim=ndim, out_channels=3, base_channels=4, depth=3, voxel_size=voxel_size, residual=residual).eval()
    spatial = (16, 32, 32) if ndim == 3 else (32, 40)
    spatial = tuple(-(-s // d) * d for s, d in zip(spatial, net.divisor))
    with torch.inference_mode():
        out = net(torch.zeros(2, 1, *spatial))
    assert out.shape == (2, 3, *spatial)
    if voxel_size == (50, 5, 5):  # no z pooling while z is coarser than xy
        assert net.divisor == (1, 8, 8) and net.kernels[0] == (1, 3, 3)
    rebuilt = UNet.from_config(net.config())
    assert rebuilt.config() == net.config()


def test_plan_levels_anisotropy():
    kernels, pools = plan_levels((40, 4, 4), depth=5)
    assert pools[:3] == [(1, 2, 2)] * 3 and pools[3] == (2, 2, 2)  # xy reaches 32 nm: z joins
    kernels, pools = plan_levels((10, 10, 10), depth=2)
    assert pools == [(2, 2, 2), (2, 2, 2)]
    with pytest.raises(ValueError, match="ndim"):
        plan_levels(None, 2, ndim=4)


def test_receptive_field_is_an_upper_bound_in_2d():
    net = UNet(ndim=2, base_channels=2, depth=3).eval()
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    net(x)[0, 0, 80, 80].backward()
    nz = (x.grad[0, 0].abs() > 0).nonzero()
    reach = max(80 - int(nz[:, 0].min()), int(nz[:, 0].max()) - 80)
    assert reach <= net.receptive_field()[0] <= 1.3 * reach


def test_model_directory_round_trip_and_half_precision(tmp_path):
    torch.manual_seed(0)
    model = SegmentationModel(UNet(ndim=2, out_channels=2, base_channels=8, depth=2), ["background", "mito"],
                              voxel_size=(50, 5, 5), training={"note": "test"})
    model.save(tmp_path / "full")
    model.save(tmp_path / "half", half=True)
    full = (tmp_path / "full" / "weights.safetensors").stat().st_size
    half = (tmp_path / "half" / "weights.safetensors").stat().st_size
    assert half < 0.6 * full
    loaded = load_model(tmp_path / "full")
    assert loaded.fingerprint() == model.fingerprint() and loaded.training == {"note": "test"}
    assert loaded.halo == model.halo and loaded.normalization == model.normalization
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        ref = model.network.eval()(x)
        np.testing.assert_allclose(load_model(tmp_path / "half").network(x).numpy(), ref.numpy(), atol=2e-2)
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["kind"] == "vemkit.unet" and cfg["classes"] == ["background", "mito"] and cfg["halo"] == [0, 24, 24]


def test_model_directory_errors(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "vemkit.pixel_classifier"}))
    with pytest.raises(ValueError, match="not a vemkit U-Net"):
        load_model(tmp_path)
    net = UNet(ndim=2, out_channels=3, base_channels=4, depth=1)
    with pytest.raises(ValueError, match="3 output channels but 2 classes"):
        SegmentationModel(net, ["bg", "fg"])
    with pytest.raises(ValueError, match="at least 2 classes"):
        SegmentationModel(UNet(ndim=2, out_channels=1, base_channels=4, depth=1), ["bg"])
    with pytest.raises(ValueError, match="normalization mode"):
        SegmentationModel(UNet(ndim=2, base_channels=4, depth=1), ["bg", "fg"], normalization={"mode": "zscore"})


def test_sizes_are_small_enough_to_ship():
    for name, (base, depth) in UNET_SIZES.items():
        n = sum(p.numel() for p in UNet(ndim=2, base_channels=base, depth=depth).parameters())
        assert n * 2 < 20e6, name  # float16 bytes: even the largest fits the 20 MB budget
