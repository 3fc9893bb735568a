"""Blockwise network inference: seam-free, resumable after a kill, distributed, and strict on bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr

from vemkit.io import open_volume, write_ome_zarr
from vemkit.models import SegmentationModel, UNet, load_model
from vemkit.predict import LOG_FILE, RUN_FILE, estimate, predict_volume
from conftest import randomise_batchnorm

FIXED = {"mode": "fixed", "low": 0.0, "high": 1.0}


@pytest.fixture(scope="module")
def model2d():
    torch.manual_seed(0)
    net = randomise_batchnorm(UNet(ndim=2, out_channels=3, base_channels=4, depth=2))
    return SegmentationModel(net, ["background", "a", "b"], voxel_size=(50.0, 5.0, 5.0), normalization=FIXED)


@pytest.fixture(scope="module")
def model3d():
    torch.manual_seed(1)
    net = randomise_batchnorm(UNet(ndim=3, out_channels=2, base_channels=4, depth=2, voxel_size=(20, 5, 5)))
    return SegmentationModel(net, ["background", "fg"], voxel_size=(20.0, 5.0, 5.0), normalization=FIXED)


def _volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32)


def _whole(net, vol, ndim):
    """Whole-volume inference, the reference (x padded to the divisor at the far end)."""
    div = net.divisor
    pad = [(0, 0)] * (3 - ndim) + [(0, (-n) % d) for n, d in zip(vol.shape[3 - ndim:], div)]
    x = torch.from_numpy(np.pad(vol, pad, mode="reflect"))
    with torch.inference_mode():
        if ndim == 3:
            y = torch.softmax(net(x[None, None]), 1)[0]
        else:
            y = torch.softmax(net(x[:, None]), 1).transpose(0, 1)
    return y.numpy()[(slice(None), *(slice(0, n) for n in vol.shape))]


def test_receptive_field_bounds_the_true_one(model3d):
    net = model3d.network
    x = torch.randn(1, 1, 24, 96, 96, requires_grad=True)
    net(x)[0, 0, 12, 48, 48].backward()
    nz = (x.grad[0, 0].abs() > 0).nonzero()
    reach = [int(max(c - nz[:, i].min(), nz[:, i].max() - c)) for i, c in enumerate((12, 48, 48))]
    rf = net.receptive_field()
    assert all(r <= b for r, b in zip(reach, rf)), (reach, rf)
    assert all(r >= 0.7 * b for r, b in zip(reach, rf)), "bound far looser than the real receptive field"


@pytest.mark.parametrize("which", ["3d", "2d"])
def test_blockwise_equals_whole_volume_inside(which, model2d, model3d, tmp_path):
    model = model3d if which == "3d" else model2d
    vol = _volume((20, 88, 100) if which == "3d" else (3, 120, 100))
    block = (8, 32, 32) if which == "3d" else (2, 48, 48)
    # float32 (amp=False): the reference is float32, and the test is of the blocks, not the precision
    res = predict_volume(model, vol, tmp_path / "p.ome.zarr", device="cpu", block=block, probabilities=True,
                         prob_dtype="float32", amp=False, progress=False)
    assert res.halo == model.halo and res.blocks > 6
    got = zarr.open_array(str(tmp_path / "p.ome.zarr" / "0"))[:]
    ref = _whole(model.network, vol, model.ndim)
    hz, hy, hx = model.halo
    inner = (slice(None), slice(hz, vol.shape[0] - hz), slice(hy, -hy), slice(hx, -hx))
    np.testing.assert_allclose(got[inner], ref[inner], atol=2e-5)
    labels = open_volume(res.labels)
    assert labels.voxel_size == model.voxel_size and labels.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(labels.data)[inner[1:]], ref.argmax(0)[inner[1:]])


def test_tta_averages_flips(model2d, tmp_path):
    vol = _volume((2, 64, 64), seed=3)
    predict_volume(model2d, vol, tmp_path / "t.ome.zarr", device="cpu", block=(2, 64, 64), halo=(0, 0, 0),
                   tta=True, probabilities=True, labels=False, prob_dtype="float32", amp=False, progress=False)
    got = zarr.open_array(str(tmp_path / "t.ome.zarr" / "0"))[:]
    x = torch.from_numpy(vol)[:, None]
    with torch.inference_mode():
        acc = sum(torch.flip(torch.softmax(model2d.network(torch.flip(x, f) if f else x), 1), f) if f
                  else torch.softmax(model2d.network(x), 1) for f in [(), (2,), (3,), (2, 3)]) / 4
    np.testing.assert_allclose(got, acc.transpose(0, 1).numpy(), atol=2e-5)


def test_bfloat16_prediction_agrees_with_float32(model2d, tmp_path):
    vol = _volume((3, 96, 96), seed=5)
    probs = {}
    for amp in ("bf16", False):
        res = predict_volume(model2d, vol, tmp_path / f"{amp}.ome.zarr", device="cpu", amp=amp, probabilities=True,
                             prob_dtype="float32", progress=False)
        assert res.amp == ("bf16" if amp else "none")
        probs[amp] = zarr.open_array(str(tmp_path / f"{amp}.ome.zarr" / "0"))[:]
    diff = np.abs(probs["bf16"] - probs[False])
    assert diff.max() < 0.05 and diff.mean() < 0.005, (diff.max(), diff.mean())
    assert (probs["bf16"].argmax(0) == probs[False].argmax(0)).mean() > 0.99
    with pytest.raises(ValueError, match="not available on the CPU"):
        predict_volume(model2d, vol, tmp_path / "fp16.ome.zarr", device="cpu", amp="fp16", progress=False)


def test_outputs_read_back_with_pyramid_and_voxel_size(model2d, tmp_path):
    vol = (_volume((4, 300, 280)) * 200).astype(np.uint8)
    from vemkit._volume import Volume

    image = Volume.from_array(vol, voxel_size=(40.0, 8.0, 8.0))
    res = predict_volume(model2d, image, tmp_path / "o.ome.zarr", device="cpu", block=(2, 128, 128),
                         probabilities=True, progress=False)
    probs = open_volume(res.probabilities, channel=1)
    assert probs.shape == vol.shape and probs.voxel_size == (40.0, 8.0, 8.0)
    assert probs.metadata.get("levels", 1) >= 2
    p = zarr.open_array(str(tmp_path / "o.ome.zarr" / "0"))[:]
    assert p.dtype == np.uint8 and p.shape == (3, *vol.shape)
    assert np.abs(p.astype(int).sum(0) - 255).max() <= 2  # rounded probabilities sum to 1
    labels = np.asarray(open_volume(res.labels).data)
    np.testing.assert_array_equal(labels, p.argmax(0))
    import ome_zarr.io
    import ome_zarr.reader

    nodes = list(ome_zarr.reader.Reader(ome_zarr.io.parse_url(str(tmp_path / "o.ome.zarr")))())
    assert nodes and nodes[0].data[0].shape == (3, *vol.shape)
    record = json.loads((tmp_path / "o.ome.zarr" / RUN_FILE).read_text())
    assert record["status"] == "complete" and record["parameters"]["model"] == model2d.fingerprint()


def test_percentile_normalisation_is_one_range_for_the_volume(tmp_path):
    torch.manual_seed(0)
    net = randomise_batchnorm(UNet(ndim=2, base_channels=4, depth=1))
    model = SegmentationModel(net, ["bg", "fg"], voxel_size=(50, 5, 5))
    vol = (_volume((2, 64, 64)) * 1000 + 500).astype(np.uint16)
    res = predict_volume(model, vol, tmp_path / "n.ome.zarr", device="cpu", block=(1, 32, 32), progress=False)
    low, high = res.parameters["intensity_range"]
    assert low == pytest.approx(np.percentile(vol, 1), rel=1e-6)
    assert high == pytest.approx(np.percentile(vol, 99), rel=1e-6)
    # the same range given explicitly gives the same labels
    res2 = predict_volume(model, vol, tmp_path / "n2.ome.zarr", device="cpu", block=(1, 32, 32),
                          intensity_range=(low, high), progress=False)
    np.testing.assert_array_equal(np.asarray(open_volume(res.labels).data), np.asarray(open_volume(res2.labels).data))


def test_finished_output_is_not_recomputed_and_other_runs_are_refused(model2d, tmp_path):
    vol = _volume((2, 64, 64))
    out = tmp_path / "r.ome.zarr"
    first = predict_volume(model2d, vol, out, device="cpu", block=(1, 32, 32), progress=False)
    again = predict_volume(model2d, vol, out, device="cpu", block=(1, 32, 32), progress=False)
    assert first.blocks_skipped == 0 and again.blocks_skipped == again.blocks == 8
    with pytest.raises(ValueError, match="other parameters.*block"):
        predict_volume(model2d, vol, out, device="cpu", block=(1, 64, 64), progress=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        predict_volume(model2d, vol, out, device="cpu", block=(1, 32, 32), resume=False, progress=False)
    other = tmp_path / "other.ome.zarr"
    write_ome_zarr(np.zeros((2, 64, 64), np.uint8), other, voxel_size=(50, 5, 5), progress=False)
    with pytest.raises(FileExistsError, match="not written by vemkit.predict"):
        predict_volume(model2d, vol, other, device="cpu", block=(1, 32, 32), progress=False)
    assert open_volume(other).shape == (2, 64, 64)  # untouched
    res = predict_volume(model2d, vol, other, device="cpu", block=(1, 32, 32), overwrite=True, progress=False)
    assert res.blocks_skipped == 0


def test_model_directory_round_trip_predicts_the_same(model2d, tmp_path):
    model2d.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.fingerprint() == model2d.fingerprint()
    vol = _volume((1, 64, 64))
    a = predict_volume(model2d, vol, tmp_path / "a.ome.zarr", device="cpu", block=(1, 64, 64), progress=False)
    b = predict_volume(str(tmp_path / "m"), vol, tmp_path / "b.ome.zarr", device="cpu", block=(1, 64, 64),
                       progress=False)
    np.testing.assert_array_equal(np.asarray(open_volume(a.labels).data), np.asarray(open_volume(b.labels).data))
    with pytest.raises(FileExistsError, match="already holds a model"):
        model2d.save(tmp_path / "m")


def test_bad_input_is_refused_before_any_work(model2d, model3d, tmp_path):
    vol = _volume((2, 64, 64))
    out = tmp_path / "bad.ome.zarr"
    two_channel = SegmentationModel(UNet(ndim=2, in_channels=2, base_channels=4, depth=1), ["bg", "fg"],
                                    voxel_size=(50, 5, 5))
    with pytest.raises(ValueError, match="2 input channels"):
        predict_volume(two_channel, vol, out, device="cpu", progress=False)
    with pytest.raises(ValueError, match="single section"):
        predict_volume(model3d, vol[:1], out, device="cpu", progress=False)
    with pytest.raises(ValueError, match="smaller than the halo"):
        predict_volume(model2d, vol, out, device="cpu", block=(1, 16, 16), progress=False)
    with pytest.raises(ValueError, match="multiple of the network's divisor"):
        predict_volume(model2d, vol, out, device="cpu", block=(1, 30, 32), progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            predict_volume(model2d, vol, out, device="cuda", progress=False)
    with pytest.raises(ValueError, match="pass ndim"):
        predict_volume(torch.nn.Conv2d(1, 2, 3, padding=1), vol, out, device="cpu", progress=False)
    with pytest.raises(ValueError, match="pass halo"):
        predict_volume(torch.nn.Conv2d(1, 2, 3, padding=1), vol, out, device="cpu", ndim=2, progress=False)
    with pytest.raises(ValueError, match="cannot run on 2D input|maps input .1, 1, 8, 8. to .2, 1, 8, 8."):
        predict_volume(_Wrapped(torch.nn.Conv3d(1, 2, 3, padding=1)), vol, out, device="cpu", halo=(0, 2, 2),
                       progress=False)
    with pytest.raises(ValueError, match="no voxel size"):
        bare = SegmentationModel(UNet(ndim=2, base_channels=4, depth=1), ["bg", "fg"])
        predict_volume(bare, vol, out, device="cpu", progress=False)
    with pytest.raises(ValueError, match="prob_dtype"):
        predict_volume(model2d, vol, out, device="cpu", prob_dtype="int8", progress=False)
    assert not out.exists(), "a refused run must not leave an output behind"


class _Wrapped(torch.nn.Module):
    """A user's module that claims to be 2D but holds a 3D convolution."""

    ndim = 2
    out_channels = 2

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x)


def test_bare_torch_module_runs(tmp_path):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 5, padding=2).eval()
    vol = _volume((2, 40, 40))
    from vemkit._volume import Volume

    res = predict_volume(_Wrapped(conv), Volume.from_array(vol, voxel_size=(30, 4, 4)), tmp_path / "b.ome.zarr", device="cpu", halo=(0, 2, 2),
                         block=(1, 16, 16), probabilities=True, prob_dtype="float32",
                         intensity_range=(0, 1), amp=False, progress=False)
    got = zarr.open_array(str(tmp_path / "b.ome.zarr" / "0"))[:]
    with torch.inference_mode():
        ref = torch.softmax(conv(torch.from_numpy(vol)[:, None]), 1).transpose(0, 1).numpy()
    np.testing.assert_allclose(got[:, :, 2:-2, 2:-2], ref[:, :, 2:-2, 2:-2], atol=1e-5)
    assert res.blocks == 2 * 3 * 3


def test_estimate_plans_within_the_memory_budget(model2d):
    vol = np.zeros((30, 1000, 1200), np.uint8)
    plan = estimate(model2d, vol, device="cpu", memory_limit="64MB", probe=True)
    assert plan.memory_per_batch_bytes <= 64 * 2**20
    assert all(b % d == 0 for b, d in zip(plan.block, model2d.divisor))
    assert plan.voxels_per_second > 0 and plan.expected_seconds > 0
    assert plan.overhead >= 1.0
    assert "expected time" in str(plan)
    small = estimate(model2d, vol, device="cpu", memory_limit="8MB", probe=False)
    assert np.prod(small.block) < np.prod(plan.block)
    with pytest.raises(ValueError, match="no block fits"):
        estimate(model2d, vol, device="cpu", memory_limit=1000, probe=False)


def test_a_plan_runs_as_it_is(model2d, tmp_path):
    """estimate -> predict_volume(plan=plan) runs the plan's block, halo, batch and device: the same
    labels as passing them by hand."""
    vol = (_volume((3, 200, 180), seed=7) * 255).astype(np.uint8)
    plan = estimate(model2d, vol, device="cpu", memory_limit="2MB", probe=False)
    assert plan.n_blocks > 3, "the budget should force several blocks"
    by_plan = predict_volume(model2d, vol, tmp_path / "plan.ome.zarr", plan=plan, progress=False)
    by_hand = predict_volume(model2d, vol, tmp_path / "hand.ome.zarr", device="cpu", block=plan.block,
                             batch_size=plan.batch_size, progress=False)
    assert (by_plan.block, by_plan.halo, by_plan.batch_size, by_plan.device) == \
        (plan.block, plan.halo, plan.batch_size, plan.device)
    assert by_plan.blocks == plan.n_blocks == by_hand.blocks
    np.testing.assert_array_equal(np.asarray(open_volume(by_plan.labels).data),
                                  np.asarray(open_volume(by_hand.labels).data))
    # keywords that agree with the plan are accepted
    again = predict_volume(model2d, vol, tmp_path / "same.ome.zarr", plan=plan, device="cpu", block=plan.block,
                           halo=plan.halo, batch_size=plan.batch_size, progress=False)
    assert again.block == plan.block


def test_a_plan_refuses_keywords_that_contradict_it(model2d, tmp_path):
    vol = _volume((2, 64, 64))
    plan = estimate(model2d, vol, device="cpu", probe=False)
    out = tmp_path / "refused.ome.zarr"
    with pytest.raises(ValueError, match=r"block=\(1, 32, 32\) contradicts the plan"):
        predict_volume(model2d, vol, out, plan=plan, block=(1, 32, 32), progress=False)
    with pytest.raises(ValueError, match="halo=.* contradicts the plan"):
        predict_volume(model2d, vol, out, plan=plan, halo=(0, 8, 8), progress=False)
    with pytest.raises(ValueError, match="batch_size=3 contradicts the plan"):
        predict_volume(model2d, vol, out, plan=plan, batch_size=3, progress=False)
    with pytest.raises(ValueError, match="memory_limit=.* contradicts the plan"):
        predict_volume(model2d, vol, out, plan=plan, memory_limit="1MB", progress=False)
    with pytest.raises(ValueError, match="device='cuda' contradicts the plan"):
        predict_volume(model2d, vol, out, plan=plan, device="cuda", progress=False)
    with pytest.raises(ValueError, match="plan was made for a volume of shape"):
        predict_volume(model2d, _volume((3, 64, 64)), out, plan=plan, progress=False)
    with pytest.raises(TypeError, match="InferencePlan"):
        predict_volume(model2d, vol, out, plan={"block": (1, 64, 64)}, progress=False)
    assert not out.exists(), "a refused run must not leave an output behind"


def test_gpu_plan_keeps_tensors_indexable_and_batches_many():
    """On a GPU the plan stays under 2**31 elements per tensor (cuDNN's 3D convolutions failed with an
    illegal memory access beyond it on an H100), keeps a batch near one GPU's worth of voxels, and
    leaves enough batches to overlap reading and writing with compute."""
    from types import SimpleNamespace

    from vemkit.predict._network import resolve_network
    from vemkit.predict._planning import GPU_BATCH_VOXELS, MAX_TENSOR_ELEMENTS, max_tensor_elements, plan_blocks

    gpu = SimpleNamespace(type="cuda")
    for base, shape in ((8, (960, 2048, 2048)), (16, (256, 1024, 1024))):
        net = resolve_network(SegmentationModel(UNet(ndim=3, base_channels=base, depth=4, voxel_size=(8, 8, 8)),
                                                 ["bg", "fg"], voxel_size=(8, 8, 8)))
        block, batch, _budget, mem, _overhead, n_blocks = plan_blocks(net, shape, gpu, tuple(net.halo), None, None,
                                                                      "45GB", 1)
        padded = np.prod([b + 2 * h for b, h in zip(block, net.halo)])
        assert padded * batch <= GPU_BATCH_VOXELS and mem <= 45e9
        assert batch * max_tensor_elements(net, block, net.halo) <= MAX_TENSOR_ELEMENTS
        assert n_blocks / batch >= 4
        # a block the user asks for that would overflow is refused, not crashed on
        with pytest.raises(ValueError, match=r"2\*\*31"):
            plan_blocks(net, shape, gpu, tuple(net.halo), (256, 1024, 1024), None, "45GB", 1)


def _save_inputs(tmp_path, model2d):
    model_dir = tmp_path / "model"
    model2d.save(model_dir)
    image = tmp_path / "image.ome.zarr"
    vol = (_volume((48, 128, 128), seed=5) * 255).astype(np.uint8)
    write_ome_zarr(vol, image, voxel_size=(50, 5, 5), chunks=(8, 128, 128), progress=False)
    return model_dir, image


def _cli(*args):
    return [sys.executable, "-m", "vemkit.cli", "predict", *map(str, args)]


@pytest.mark.slow
def test_killed_run_resumes_to_the_identical_result(model2d, tmp_path):
    model_dir, image = _save_inputs(tmp_path, model2d)
    common = ["--model", model_dir, "--image", image, "--device", "cpu", "--block", "1,64,64", "--probabilities",
              "--quiet"]
    reference = tmp_path / "reference.ome.zarr"
    subprocess.run(_cli(*common, "--out", reference), check=True, capture_output=True, timeout=300)
    out = tmp_path / "killed.ome.zarr"
    proc = subprocess.Popen(_cli(*common, "--out", out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / LOG_FILE
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().split()) >= 20:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make the test volume larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(set(log.read_text().split()))
    total = 48 * 4
    assert 20 <= n_done < total
    assert json.loads((out / RUN_FILE).read_text())["status"] == "running"
    resumed = subprocess.run(_cli(*common, "--out", out), check=True, capture_output=True, text=True, timeout=300)
    assert f"predicted {total - n_done} of {total} blocks ({n_done} already done)" in resumed.stdout
    for path in ("0", "labels/segmentation/0"):
        a = zarr.open_array(str(reference / path))[:]
        b = zarr.open_array(str(out / path))[:]
        np.testing.assert_array_equal(a, b, err_msg=path)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_result(model2d, tmp_path):
    distributed = pytest.importorskip("distributed")
    model_dir, image = _save_inputs(tmp_path, model2d)
    local = predict_volume(str(model_dir), image, tmp_path / "local.ome.zarr", device="cpu", block=(8, 64, 64),
                           probabilities=True, prob_dtype="float32", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = predict_volume(str(model_dir), image, tmp_path / "dask.ome.zarr", device="cpu", block=(8, 64, 64),
                             probabilities=True, prob_dtype="float32", client=client, progress=False)
        workers_used = {ts for ts in client.run(lambda: os.getpid()).values()}
    assert len(workers_used) == 2 and res.blocks == local.blocks == 6 * 2 * 2
    a = zarr.open_array(str(tmp_path / "local.ome.zarr" / "0"))[:]
    b = zarr.open_array(str(tmp_path / "dask.ome.zarr" / "0"))[:]
    np.testing.assert_allclose(a, b, atol=1e-5)
    la = np.asarray(open_volume(local.labels).data)
    lb = np.asarray(open_volume(res.labels).data)
    assert (la == lb).mean() > 0.9999


@pytest.mark.parametrize("kind", ["3d-anisotropic", "3d-isotropic-residual", "2d"])
def test_decoder_only_where_kept_equals_the_whole_network(kind):
    """predict runs a vemkit U-Net's decoder only inside the block (the halo is context): the kept region
    must equal the whole network's output there, near the tensor's edges too."""
    from vemkit.predict._network import kept_unet, unet_forward_kept

    torch.manual_seed(3)
    if kind == "2d":
        net, shape, keep = UNet(ndim=2, base_channels=4, depth=3), (3, 1, 64, 80), ((16, 48), (0, 72))
    elif kind == "3d-anisotropic":
        net, shape, keep = UNet(ndim=3, base_channels=4, depth=3, voxel_size=(40, 5, 5)), (1, 1, 16, 48, 64), ((4, 12), (8, 40), (0, 32))
    else:
        net, shape, keep = UNet(ndim=3, base_channels=4, depth=2, voxel_size=(8, 8, 8), residual=True), (2, 1, 32, 32, 48), ((8, 24), (8, 24), (16, 48))
    net = randomise_batchnorm(net)
    assert kept_unet(net) is net
    x = torch.randn(shape)
    with torch.inference_mode():
        ref = net(x)[(slice(None), slice(None), *(slice(a, b) for a, b in keep))]
        got = unet_forward_kept(net, x, keep)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)

    class Custom(UNet):
        def forward(self, x):
            return super().forward(x) * 2

    assert kept_unet(Custom(ndim=2, base_channels=4, depth=2)) is None  # only the forward it reproduces
