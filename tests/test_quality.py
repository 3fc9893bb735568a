"""Tests for vemkit.quality: planted errors are found, clean volumes are not flagged, dask == numpy."""

import math

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi

from vemkit._volume import Volume
from vemkit.quality import block_seams, orthogonal_disagreement, single_section_objects, z_breaks


def tubes(shape=(10, 40, 40)):
    """Four square rods running through every section (ids 1-4), 4 x 4 voxels each."""
    labels = np.zeros(shape, np.uint32)
    for k, (y, x) in enumerate([(2, 2), (2, 20), (20, 2), (20, 20)], start=1):
        labels[:, y : y + 4, x : x + 4] = k
    return labels


def blobs(seed, shape=(16, 96, 96)):
    """Smooth random blobs, labelled: a seam-free instance segmentation."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), (1, 3, 3))
    return ndi.label(field > 0.05)[0].astype(np.uint32)


def block_ids(shape, block_shape):
    grids = np.meshgrid(*[np.arange(s) // b for s, b in zip(shape, block_shape)], indexing="ij")
    n = [-(-s // b) for s, b in zip(shape, block_shape)]
    return (grids[0] * n[1] + grids[1]) * n[2] + grids[2]


# --------------------------------------------------------------------------------------------------
# single-section objects


def test_planted_single_section_object_is_found():
    labels = tubes()
    labels[6, 30:33, 30:33] = 9  # a 3 x 3 speck on section 6
    labels[3:5, 12:14, 30:32] = 7  # a 2-section object
    r = single_section_objects(labels)
    assert r["n_objects"] == 6
    assert r["n_flagged"] == 1
    assert r["objects"].to_dict("records") == [
        {"label": 9, "n_sections": 1, "z_first": 6, "z_last": 6, "n_voxels": 9}
    ]
    assert r["fraction_flagged"] == 1 / 6
    assert r["voxel_fraction_flagged"] == 9 / (4 * 16 * 10 + 9 + 8)
    r3 = single_section_objects(labels, min_sections=3)
    assert r3["objects"]["label"].tolist() == [7, 9]
    assert r3["objects"]["n_sections"].tolist() == [2, 1]


def test_single_section_clean_empty_and_bool():
    r = single_section_objects(tubes())
    assert r["n_flagged"] == 0 and len(r["objects"]) == 0 and r["n_objects"] == 4
    empty = single_section_objects(np.zeros((3, 5, 5), np.uint8))
    assert empty["n_objects"] == 0 and math.isnan(empty["fraction_flagged"])
    mask = np.zeros((3, 5, 5), bool)
    mask[1, 2, 2] = True
    assert single_section_objects(mask)["objects"]["label"].tolist() == [1]


def test_single_section_dask_and_volume_equal_numpy():
    labels = tubes()
    labels[6, 30:33, 30:33] = 9
    labels[0, 35, 35] = 11
    expected = single_section_objects(labels)
    for lazy in (da.from_array(labels, chunks=(3, 16, 25)), Volume.from_array(labels, voxel_size=(50, 8, 8))):
        got = single_section_objects(lazy)
        assert got["objects"].equals(expected["objects"])
        assert {k: v for k, v in got.items() if k != "objects"} == {
            k: v for k, v in expected.items() if k != "objects"
        }


# --------------------------------------------------------------------------------------------------
# z breaks


def test_planted_z_breaks_are_found():
    labels = tubes()
    labels[4, 2:6, 20:24] = 0  # object 2 vanishes on section 4 and reappears
    labels[7:, 20:24, 2:6] = 0  # object 3: 16 voxels up to section 6 ...
    labels[7:, 21, 3] = 3  # ... then 1 voxel: a jump of 15/16 at section 7
    labels[7:, 20:22, 20:22] = 0  # object 4: 16 -> 12 voxels at section 7, a jump of 1/4: fine
    labels[5, 35, 35] = 8  # single-section object: not z_breaks' business
    r = z_breaks(labels)
    table = r["objects"].set_index("label")
    assert sorted(table.index) == [1, 2, 3, 4]
    assert table.loc[3, "max_jump"] == 15 / 16 and table.loc[3, "jump_z"] == 7
    assert table.loc[4, "max_jump"] == 4 / 16 and not table.loc[4, "flagged"]
    assert table.loc[2, "n_gaps"] == 1 and table.loc[2, "max_jump"] == 0.0
    assert table.loc[1, "max_jump"] == 0.0 and not table.loc[1, "flagged"]
    assert table.loc[[1, 2, 3, 4], "flagged"].tolist() == [False, True, True, False]
    assert (r["n_objects"], r["n_flagged"], r["n_with_gaps"], r["n_with_jumps"]) == (4, 2, 1, 1)
    assert r["objects"]["label"].iloc[0] == 3  # the largest jump first
    # a lower threshold also flags object 4
    assert z_breaks(labels, threshold=0.2)["n_flagged"] == 3
    # dask == numpy
    lazy = z_breaks(da.from_array(labels, chunks=(4, 13, 40)))
    assert lazy["objects"].equals(r["objects"])


def test_z_breaks_gap_only_and_clean():
    labels = np.zeros((5, 4, 4), np.uint8)
    labels[0, :2, :2] = 1
    labels[2, :2, :2] = 1
    labels[4, :2, :2] = 1  # present on every other section: two gaps, no consecutive pair
    r = z_breaks(labels)
    row = r["objects"].iloc[0]
    assert row["n_gaps"] == 2 and math.isnan(row["max_jump"]) and row["flagged"]
    assert r["objects"]["jump_z"].isna().all()
    clean = z_breaks(tubes())
    assert clean["n_flagged"] == 0 and clean["n_objects"] == 4
    assert z_breaks(np.zeros((2, 3, 3), np.uint8))["n_objects"] == 0


# --------------------------------------------------------------------------------------------------
# block seams


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_label_seam_is_detected_and_clean_volume_is_not(seed):
    labels = blobs(seed)
    block = (8, 32, 32)
    clean = block_seams(labels, block)
    assert clean["verdict"] == "no seams"
    assert 0.8 < clean["seam_score"] < 1.25
    # blockwise instance segmentation without stitching: every block numbers its objects anew
    seamed = np.where(labels > 0, labels + block_ids(labels.shape, block).astype(np.uint32) * 100_000, 0)
    r = block_seams(seamed, block)
    assert r["verdict"] == "seams" and r["kind"] == "labels"
    assert r["seam_score"] > 2 and r["z_score"] > 10
    assert r["border_fraction"] > 2 * r["expected_border_fraction"]
    assert list(r["per_axis"]["axis"]) == ["z", "y", "x"]
    # checked against another block grid, the same seam-free volume stays clean
    assert block_seams(labels, (5, 17, 23))["verdict"] == "no seams"


def test_planted_probability_seam_is_detected():
    rng = np.random.default_rng(3)
    prob = ndi.gaussian_filter(rng.random((16, 96, 96)), (1, 3, 3)).astype(np.float32)
    assert block_seams(prob, (8, 32, 32))["verdict"] == "no seams"
    offsets = 0.02 * rng.normal(size=(2, 3, 3))  # per-block normalisation drift
    stepped = prob + offsets.repeat(8, 0).repeat(32, 1).repeat(32, 2)
    r = block_seams(stepped, (8, 32, 32))
    assert r["verdict"] == "seams" and r["kind"] == "probabilities" and r["seam_score"] > 2
    # a (C, Z, Y, X) probability map: the seam shows through the channel axis
    r4 = block_seams(np.stack([stepped, 1 - stepped]), (8, 32, 32))
    assert r4["verdict"] == "seams"
    assert r4["seam_score"] == pytest.approx(r["seam_score"])
    # dask == numpy (up to summation order)
    rl = block_seams(da.from_array(stepped, chunks=(5, 40, 33)), (8, 32, 32))
    assert rl["verdict"] == "seams"
    assert rl["seam_score"] == pytest.approx(r["seam_score"], rel=1e-9)


def test_block_seams_dask_volume_and_edge_cases():
    labels = blobs(4, shape=(8, 48, 48))
    offset = block_ids(labels.shape, (4, 16, 16)).astype(np.uint32) * 100_000
    seamed = np.where(labels > 0, labels + offset, 0)
    expected = block_seams(seamed, (4, 16, 16))
    for lazy in (da.from_array(seamed, chunks=(3, 20, 48)), Volume.from_array(seamed, voxel_size=(40, 8, 8))):
        got = block_seams(lazy, (4, 16, 16))
        assert got["per_axis"].equals(expected["per_axis"])
        assert got["seam_score"] == expected["seam_score"] and got["verdict"] == expected["verdict"]
    # one block covering the volume: nothing to compare
    assert block_seams(labels, (8, 48, 48))["verdict"] == "undetermined"
    assert block_seams(labels, 64)["verdict"] == "undetermined"
    # a constant volume has no change at all
    assert block_seams(np.ones((4, 8, 8), np.uint8), 4)["verdict"] == "undetermined"
    # blocks of constant value: all change is on borders
    r = block_seams(block_ids((4, 8, 8), (4, 4, 4)), 4)
    assert r["verdict"] == "seams" and r["seam_score"] == math.inf and r["border_fraction"] == 1.0
    with pytest.raises(ValueError, match="block_shape"):
        block_seams(labels, (4, 16))
    with pytest.raises(ValueError, match="block_shape"):
        block_seams(labels, (4, 0, 16))
    with pytest.raises(ValueError, match=r"2D|3D"):
        block_seams(labels[0], (4, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        block_seams(np.full((4, 8, 8), np.nan), 4)


# --------------------------------------------------------------------------------------------------
# orthogonal disagreement


def test_identical_orthogonal_predictions_disagree_nowhere():
    labels = (blobs(5, shape=(8, 32, 32)) % 3).astype(np.uint8)  # three semantic classes
    r = orthogonal_disagreement(labels, labels.copy(), labels.copy())
    assert r["disagreement"] == 0.0 and r["mean_iou"] == 1.0
    assert r["pairs"]["pair"].tolist() == ["xy-xz", "xy-yz", "xz-yz"]
    assert r["pairs"]["disagreement"].tolist() == [0.0, 0.0, 0.0]
    assert r["n_voxels"] == labels.size
    r2 = orthogonal_disagreement(labels, labels)
    assert r2["disagreement"] == 0.0 and r2["pairs"]["pair"].tolist() == ["xy-xz"]


def test_orthogonal_disagreement_counts():
    xy = np.zeros((2, 4, 4), bool)
    xy[:, :2] = True  # 16 foreground voxels
    xz = xy.copy()
    xz[0, 0, :2] = False  # 2 voxels lost
    yz = xy.copy()
    yz[1, 3, 3] = True  # 1 voxel gained
    r = orthogonal_disagreement(xy, xz, yz)
    pairs = r["pairs"].set_index("pair")
    assert pairs.loc["xy-xz", "disagreement"] == 2 / 32
    assert pairs.loc["xy-xz", "mean_iou"] == 14 / 16
    assert pairs.loc["xy-yz", "disagreement"] == 1 / 32
    assert pairs.loc["xz-yz", "disagreement"] == 3 / 32
    assert r["disagreement"] == 3 / 32  # voxels where not all three agree
    # dask == numpy
    lazy = orthogonal_disagreement(da.from_array(xy, chunks=(1, 2, 4)), xz, Volume.from_array(yz))
    assert lazy["disagreement"] == r["disagreement"]
    assert lazy["pairs"].equals(r["pairs"])


def test_orthogonal_disagreement_probabilities():
    rng = np.random.default_rng(6)
    p = rng.random((3, 8, 8)).astype(np.float32)
    r = orthogonal_disagreement(p, p.copy())
    assert r["disagreement"] == 0.0 and r["pairs"]["mean_abs_difference"].tolist() == [0.0]
    q = np.clip(p + 0.1, 0, 1)
    r = orthogonal_disagreement(p, q)
    assert r["disagreement"] == np.mean((p >= 0.5) != (q >= 0.5))
    assert r["pairs"]["mean_abs_difference"].iloc[0] == pytest.approx(np.mean(np.abs(q - p)), rel=1e-6)
    # (C, Z, Y, X) class probabilities are compared through their argmax
    probs = np.stack([p, 1 - p])
    assert orthogonal_disagreement(probs, probs[::-1].copy())["disagreement"] == np.mean(p != 1 - p)
    lazy = orthogonal_disagreement(da.from_array(p, chunks=2), da.from_array(q, chunks=3))
    assert lazy["disagreement"] == r["disagreement"]


def test_orthogonal_disagreement_bad_inputs():
    a = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"same shape.*pred_xy \(2, 4, 4\).*pred_xz \(2, 4, 5\)"):
        orthogonal_disagreement(a, np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="not a mix"):
        orthogonal_disagreement(a, a.astype(np.float32))
    with pytest.raises(ValueError, match="pred_yz"):
        orthogonal_disagreement(a, a, a.astype(np.complex64))


def test_quality_inputs_are_checked():
    with pytest.raises(ValueError, match="integer or boolean label"):
        single_section_objects(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="3D"):
        z_breaks(np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="min_sections"):
        single_section_objects(np.zeros((2, 3, 3), np.uint8), min_sections=0)
    with pytest.raises(ValueError, match="threshold"):
        z_breaks(np.zeros((2, 3, 3), np.uint8), threshold=0)
