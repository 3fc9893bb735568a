"""vemkit.neurons: affinity targets (exact values), agglomeration (blockwise = whole volume, resume),
training, the CLI path on a real FlyEM crop, and the errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vemkit import neurons
from vemkit._affinities import affinities, affinity_offsets, boundary_map, check_offsets_within_halo
from vemkit._agglomeration import Agglomerator, mean_agglomeration, mutex_watershed_graph


# ------------------------------------------------------------------------------------------ targets
def test_offsets_follow_the_voxel_size():
    assert affinity_offsets((10, 10, 10), (30, 90)) == [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0),
                                                         (0, 0, -3), (-9, 0, 0), (0, -9, 0), (0, 0, -9)]
    # 40 nm sections: 30 nm rounds to one section (already there), 90 nm to two
    assert affinity_offsets((40, 4, 4), (30, 90)) == [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -8, 0), (0, 0, -8),
                                                      (-2, 0, 0), (0, -22, 0), (0, 0, -22)]
    with pytest.raises(ValueError, match="voxel_size"):
        affinity_offsets((0, 1, 1))


def test_affinities_exact_on_a_tiny_volume():
    lab = np.array([[[1, 1, 2],
                     [1, 0, 2]],
                    [[1, 3, 3],
                     [1, 3, 2]]])
    aff, mask = affinities(lab, [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -2)])
    assert aff.shape == mask.shape == (4, 2, 2, 3)
    # z: partner one section up; section 0 has none (masked)
    assert aff[0, 1].tolist() == [[1, 0, 0], [1, 0, 1]]
    assert mask[0, 0].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert mask[0, 1].tolist() == [[1, 1, 1], [1, 0, 1]]  # the 0 above (1, 1, 1) masks it
    # y
    assert aff[1, :, 1].tolist() == [[1, 0, 1], [1, 1, 0]]
    assert mask[1, :, 1].tolist() == [[1, 0, 1], [1, 1, 1]]
    # x, and a long-range x offset of 2
    assert aff[2, 0].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert mask[2, 0].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert aff[3, 1].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert mask[3, 1].tolist() == [[0, 0, 1], [0, 0, 1]]


def test_affinities_torch_equal_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, (2, 5, 6, 7))
    offs = affinity_offsets((20, 10, 10), (30,))
    a_np, m_np = affinities(lab, offs)
    a_t, m_t = affinities(torch.from_numpy(lab), offs)
    assert np.array_equal(a_np, a_t.numpy()) and np.array_equal(m_np, m_t.numpy())


def test_boundary_map():
    lab = np.array([[[1, 1, 2, 2, 0, 3]]])
    assert boundary_map(lab)[0, 0].tolist() == [0, 1, 1, 0, 0, 0]
    two = np.stack([np.ones((2, 2), int), 2 * np.ones((2, 2), int)])
    assert boundary_map(two).all() and not boundary_map(two, planar=True).any()


# ------------------------------------------------------------------------------------------ solvers
def test_mutex_watershed_keeps_a_mutex():
    # 0-1 strongly attractive, 1-2 attractive but 0-2 repulsive and stronger: 2 stays apart
    roots = mutex_watershed_graph(3, np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.9, 0.8, 0.85]),
                                  np.array([True, True, False]))
    assert roots[0] == roots[1] != roots[2]
    roots = mutex_watershed_graph(3, np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.9, 0.8, 0.1]),
                                  np.array([True, True, False]))
    assert roots[0] == roots[1] == roots[2]


def test_mean_agglomeration_uses_merged_means():
    # 0-1 (0.9) merge; then 2 joins {0, 1} only if the merged mean (0.6 * 10 + 0.2 * 10) / 20 = 0.4 >= t
    u, v = np.array([0, 0, 1]), np.array([1, 2, 2])
    total, count = np.array([9.0, 6.0, 2.0]), np.array([10, 10, 10])
    roots = mean_agglomeration(3, u, v, total, count, 0.5)
    assert roots[0] == roots[1] != roots[2]
    roots = mean_agglomeration(3, u, v, total, count, 0.35)
    assert len(set(roots.tolist())) == 1


def test_balanced_affinity_loss_counts_both_classes_equally():
    import torch

    from vemkit._losses import balanced_affinity_loss

    # 19 "connected" edges and 1 boundary edge, all predicted at logit 2: the two classes weigh the same
    target = torch.ones(1, 1, 20)
    target[0, 0, 7] = 0
    logits = torch.full_like(target, 2.0)
    l_pos = float(torch.nn.functional.softplus(torch.tensor(-2.0)))  # -log sigmoid(2)
    l_neg = float(torch.nn.functional.softplus(torch.tensor(2.0)))  # -log (1 - sigmoid(2))
    mask = torch.ones_like(target)
    assert float(balanced_affinity_loss(logits, target, mask)) == pytest.approx((l_pos + l_neg) / 2, rel=1e-5)
    # masked elements count for nothing: hide the boundary edge and only positives remain
    mask[0, 0, 7] = 0
    assert float(balanced_affinity_loss(logits, target, mask)) == pytest.approx(l_pos, rel=1e-5)
    # channels are balanced separately: a channel of positives only is an ordinary mean
    two = torch.cat([target, torch.ones_like(target)], 1)
    per = balanced_affinity_loss(logits.expand(1, 2, 20), two, torch.ones_like(two))
    assert float(per) == pytest.approx(((l_pos + l_neg) / 2 * 20 + l_pos * 20) / 40, rel=1e-4)


def _noisy_affinities(lab, offsets, seed=0):
    from scipy import ndimage

    aff, _ = affinities(lab, offsets)
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0, 0.6, aff.shape), (0, 1, 1, 1))
    return np.clip(aff * 0.8 + 0.1 + noise, 0, 1).astype(np.float32)


def _blobs(shape=(12, 40, 40), n=12, seed=0):
    """Dense instance labels: Voronoi cells of random points (every voxel labelled)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        seeds[tuple(rng.integers(0, s) for s in shape)] = i
    _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[tuple(idx)].astype(np.int64)


@pytest.mark.parametrize("method", ["mws", "mean"])
def test_blockwise_equals_whole_volume_and_recovers_cells(method):
    lab = _blobs()
    offs = affinity_offsets((10, 10, 10))  # up to 9 voxels: longer than some blocks below
    affs = _noisy_affinities(lab, offs)
    whole = neurons.agglomerate(affs, offs, method=method, block=lab.shape)
    for block in [(5, 16, 16), (12, 7, 40), (3, 40, 9), (2, 5, 5)]:
        assert np.array_equal(whole, neurons.agglomerate(affs, offs, method=method, block=block)), block
    s = neurons.score(whole, lab)
    assert s["voi"] < 0.3 and s["arand"] < 0.1, s
    assert whole.dtype == np.uint64 and whole.min() == 1


def test_agglomeration_resumes_from_its_work_folder(tmp_path):
    lab = _blobs(seed=1)
    offs = affinity_offsets((10, 10, 10), (30,))
    affs = _noisy_affinities(lab, offs, seed=1)
    expected = neurons.agglomerate(affs, offs, block=(6, 20, 20))
    ag = Agglomerator(affs, offs, block=(6, 20, 20), work=tmp_path / "w")
    ag.open()
    ag._each("seeds", ag._seed_block)
    calls = []
    ag2 = Agglomerator(affs, offs, block=(6, 20, 20), work=tmp_path / "w")
    original = ag2._seed_block
    ag2._seed_block = lambda key, region: (calls.append(key), original(key, region))
    out = np.asarray(ag2.run())
    assert calls == []  # every seed block was logged as done by the first run
    assert np.array_equal(out, expected)
    assert json.loads((tmp_path / "w" / "segments.done").read_text()) == list(range(8))


def test_a_work_folder_of_an_older_fragment_rule_is_not_resumed(tmp_path):
    lab = _blobs(seed=3)
    offs = affinity_offsets((10, 10, 10), (30,))
    affs = _noisy_affinities(lab, offs, seed=3)
    neurons.agglomerate(affs, offs, block=(6, 20, 20), work=tmp_path / "w")
    params = json.loads((tmp_path / "w" / "params.json").read_text())
    params.pop("growth")  # as written before fragments grew in two stages
    (tmp_path / "w" / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="other settings"):
        neurons.agglomerate(affs, offs, block=(6, 20, 20), work=tmp_path / "w")


def test_threshold_sweep_trades_splits_for_merges():
    lab = _blobs(seed=2)
    offs = affinity_offsets((10, 10, 10), (30,))
    rows = neurons.threshold_sweep(_noisy_affinities(lab, offs, seed=2), offs, lab, (0.05, 0.5, 0.95))
    merges = [r["voi_merge"] for r in rows]
    splits = [r["voi_split"] for r in rows]
    assert merges[0] > merges[-1] and splits[0] < splits[-1]


# ------------------------------------------------------------------------------------------ bad input
def test_one_id_is_refused_before_training(tmp_path):
    img = np.zeros((16, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="at least two touching objects"):
        neurons.train_affinities(img, np.ones_like(img, np.int32), voxel_size=(10, 10, 10), iterations=1,
                                 out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_semantic_labels_are_refused():
    rng = np.random.default_rng(0)
    sem = np.ones((16, 64, 64), np.int32)
    for _ in range(40):  # many separate mitochondria, all class 2
        z, y, x = rng.integers(2, 14), rng.integers(3, 61), rng.integers(3, 61)
        sem[z - 1:z + 2, y - 2:y + 2, x - 2:x + 2] = 2
    with pytest.raises(ValueError, match="semantic, not instance"):
        neurons.check_instance_labels(sem)
    assert neurons.check_instance_labels(_blobs()).size == 12


def test_offsets_beyond_the_halo_are_refused():
    with pytest.raises(ValueError, match="block halo"):
        check_offsets_within_halo([(-1, 0, 0), (0, -9, 0)], (4, 4, 4))
    affs = np.zeros((4, 4, 16, 16), np.uint8)
    with pytest.raises(ValueError, match="block halo"):
        neurons.agglomerate(affs, [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -9)], halo=(4, 4, 4))
    with pytest.raises(ValueError, match="nearest neighbours"):
        neurons.agglomerate(affs, [(-2, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -9)])


def test_offsets_longer_than_the_patch_are_refused():
    lab = _blobs((16, 32, 32))
    with pytest.raises(ValueError, match="longest affinity offset"):
        neurons.train_affinities(np.zeros(lab.shape, np.uint8), lab, voxel_size=(10, 10, 10), iterations=1,
                                 offsets=[(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -40)], model_size="tiny",
                                 patch=(16, 32, 32), batch_size=1, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.realdata
def test_cli_train_predict_evaluate_on_flyem(shared_data, tmp_path):
    from vemkit.cli import main
    from vemkit.datasets import load_dataset
    from vemkit.io import open_volume, write_ome_zarr
    from vemkit.models import load_model

    d = load_dataset("flyem_medulla_fibsem", progress=False)
    img = np.asarray(d.image.data[:16, :48, :48])
    lab = np.asarray(d.labels["neurons"][:16, :48, :48]).astype(np.uint32)
    write_ome_zarr(img, tmp_path / "raw.ome.zarr", voxel_size=(10, 10, 10), progress=False)
    write_ome_zarr(lab, tmp_path / "gt.ome.zarr", voxel_size=(10, 10, 10), kind="labels", progress=False)
    model = tmp_path / "model"
    assert main(["train", "--method", "unet", "--target", "affinities", "--image", str(tmp_path / "raw.ome.zarr"),
                 "--labels", str(tmp_path / "gt.ome.zarr"), "--out", str(model), "--iterations", "1",
                 "--device", "cpu", "--quiet"]) == 0
    m = load_model(model)
    assert m.target["kind"] == "affinities" and len(m.target["offsets"]) == len(m.extra_targets) == 9
    seg = tmp_path / "seg.ome.zarr"
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "raw.ome.zarr"), "--out", str(seg),
                 "--agglomeration", "mean", "--halo", "16,16,16", "--device", "cpu", "--quiet"]) == 0
    vol = open_volume(seg)
    assert vol.data.dtype == np.uint64 and vol.shape == lab.shape
    assert not (tmp_path / "seg.ome.zarr.work").exists()
    out = tmp_path / "m.json"
    assert main(["evaluate", "--pred", str(seg), "--truth", str(tmp_path / "gt.ome.zarr"), "--kind", "instances",
                 "--out", str(out)]) == 0
    assert {"vi_split", "vi_merge", "adapted_rand_error"} <= set(json.loads(out.read_text()))
