"""Tests for vemkit.metrics: exact values on hand-made cases, ignore masks, dask == numpy."""

import math

import dask.array as da
import numpy as np
import pytest

from vemkit._volume import Volume
from vemkit.metrics import (
    class_scores,
    confusion_matrix,
    contingency_table,
    dice,
    iou,
    mean_dice,
    mean_iou,
)

# A 2 x 3 x 4 case small enough to count by hand.
TRUTH = np.array(
    [
        [[0, 0, 1, 1], [0, 2, 2, 1], [0, 0, 0, 0]],
        [[1, 1, 1, 0], [2, 2, 2, 0], [0, 0, 0, 0]],
    ]
)
PRED = np.array(
    [
        [[0, 1, 1, 1], [0, 2, 1, 1], [0, 0, 0, 2]],
        [[1, 1, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0]],
    ]
)
# Counted by hand: row = truth, column = prediction.
#   truth 0 (13 voxels): 10 -> 0, 1 -> 1 (0,0,1), 2 -> 2 ((0,2,3), (1,1,3))
#   truth 1 (6 voxels): 1 -> 0 (1,0,2), 5 -> 1
#   truth 2 (5 voxels): 1 -> 1 (0,1,2), 4 -> 2
HAND_CM = np.array([[10, 1, 2], [1, 5, 0], [0, 1, 4]])


def reference_confusion(pred, truth, n, keep=None):
    """Count voxel by voxel, the slow and obvious way."""
    cm = np.zeros((n, n), dtype=np.int64)
    keep = np.ones(truth.shape, bool) if keep is None else keep
    for t, p, k in zip(truth.ravel(), pred.ravel(), keep.ravel()):
        if k:
            cm[int(t), int(p)] += 1
    return cm


def reference_iou(pred, truth, k, keep=None):
    keep = np.ones(truth.shape, bool) if keep is None else keep
    inter = np.sum((pred == k) & (truth == k) & keep)
    union = np.sum(((pred == k) | (truth == k)) & keep)
    return inter / union if union else math.nan


def test_confusion_matrix_hand_case():
    cm = confusion_matrix(PRED, TRUTH)
    np.testing.assert_array_equal(cm, HAND_CM)
    assert cm.dtype == np.int64
    assert cm.sum() == TRUTH.size
    np.testing.assert_array_equal(confusion_matrix(PRED, TRUTH, n_classes=5)[:3, :3], HAND_CM)
    assert confusion_matrix(PRED, TRUTH, n_classes=5)[3:].sum() == 0


def test_iou_dice_hand_case():
    # class 1: tp 5, fp 1 + 1 = 2, fn 1 -> 5/8 ; class 2: tp 4, fp 2, fn 1 -> 4/7
    assert iou(PRED, TRUTH) == {1: 5 / 8, 2: 4 / 7}
    assert dice(PRED, TRUTH) == {1: 10 / 13, 2: 8 / 11}
    assert iou(PRED, TRUTH, labels=[0]) == {0: 10 / 14}  # tp 10, fn 3, fp 1
    assert mean_iou(PRED, TRUTH) == pytest.approx((5 / 8 + 4 / 7) / 2)
    assert mean_dice(PRED, TRUTH) == pytest.approx((10 / 13 + 8 / 11) / 2)
    scores = class_scores(PRED, TRUTH)
    assert scores[1] == {
        "iou": 5 / 8,
        "dice": 10 / 13,
        "precision": 5 / 7,
        "recall": 5 / 6,
        "n_truth": 6,
        "n_pred": 7,
    }


def test_bool_masks_are_class_one():
    truth = TRUTH == 1
    pred = PRED == 1
    assert iou(pred, truth) == {1: 5 / 8}
    assert iou(pred.astype(np.uint8), truth) == {1: 5 / 8}
    cm = confusion_matrix(pred, truth)
    assert cm.shape == (2, 2)
    assert cm[1, 1] == 5


def test_absent_class_is_nan_and_left_out_of_mean():
    truth = np.array([0, 0, 3, 3])
    pred = np.array([0, 3, 3, 3])
    scores = iou(pred, truth)
    assert list(scores) == [1, 2, 3]
    assert math.isnan(scores[1]) and math.isnan(scores[2])
    assert scores[3] == 2 / 3
    assert mean_iou(pred, truth) == 2 / 3
    assert math.isnan(iou(pred, truth, labels=[7])[7])
    # nothing present at all: both empty boolean masks
    empty = np.zeros((2, 2), bool)
    assert list(iou(empty, empty)) == [1]
    assert math.isnan(iou(empty, empty)[1])
    assert math.isnan(mean_iou(empty, empty))  # and no "mean of empty slice" warning
    assert math.isnan(dice(empty, empty)[1])


def test_perfect_and_disjoint():
    assert iou(TRUTH, TRUTH) == {1: 1.0, 2: 1.0}
    assert dice(TRUTH == 1, TRUTH == 2) == {1: 0.0}


def test_ignore_mask():
    ignore = np.zeros(TRUTH.shape, bool)
    ignore[0, 0, 1] = True  # a false positive of class 1
    ignore[1, 0, 2] = True  # a false negative of class 1
    assert iou(PRED, TRUTH, ignore=ignore)[1] == 5 / 6
    cm = confusion_matrix(PRED, TRUTH, ignore=ignore)
    assert cm.sum() == TRUTH.size - 2
    np.testing.assert_array_equal(cm, reference_confusion(PRED, TRUTH, 3, keep=~ignore))


def test_ignore_value_of_truth():
    # sparse-annotation style: 0 = unlabelled is ignored, whatever the prediction says there
    truth = TRUTH.copy()
    pred = PRED.copy()
    keep = truth != 0
    assert iou(pred, truth, ignore=0) == {
        1: reference_iou(pred, truth, 1, keep),
        2: reference_iou(pred, truth, 2, keep),
    }
    cm = confusion_matrix(pred, truth, ignore=0)
    assert cm[0].sum() == 0
    assert cm.sum() == keep.sum()
    # an ignore value such as 255 is not reported as a class
    truth255 = np.where(truth == 0, 255, truth).astype(np.uint8)
    assert list(iou(pred, truth255, ignore=255)) == [1, 2]


def test_random_cases_agree_with_reference():
    rng = np.random.default_rng(1)
    for _ in range(5):
        truth = rng.integers(0, 4, (3, 7, 9))
        pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 4, truth.shape))
        keep = rng.random(truth.shape) < 0.8
        np.testing.assert_array_equal(
            confusion_matrix(pred, truth, n_classes=4, ignore=~keep),
            reference_confusion(pred, truth, 4, keep),
        )
        for k, v in iou(pred, truth, ignore=~keep).items():
            assert v == pytest.approx(reference_iou(pred, truth, k, keep))
        for k, v in dice(pred, truth, ignore=~keep).items():
            ref = reference_iou(pred, truth, k, keep)
            assert v == pytest.approx(2 * ref / (1 + ref))


def test_contingency_table_matches_skimage_for_many_labels():
    # instance-like labels take the sparse (np.unique) path; skimage's table is the reference
    from skimage.metrics import contingency_table as sk_table

    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3000, (4, 20, 20)).astype(np.uint32)
    pred = rng.integers(0, 2000, (4, 20, 20)).astype(np.int64)
    ours = contingency_table(pred, truth, ignore=0)
    ref = sk_table(truth, pred, ignore_labels=[0]).tocoo()
    got = {(int(t), int(p)): int(c) for t, p, c in zip(ours.truth, ours.pred, ours.counts)}
    want = {(int(t), int(p)): int(c) for t, p, c in zip(ref.row, ref.col, ref.data) if c}
    assert got == want
    assert ours.total == int(np.sum(truth != 0))
    # sorted by truth, then prediction
    order = np.lexsort((ours.pred, ours.truth))
    np.testing.assert_array_equal(order, np.arange(len(order)))


def test_dask_equals_numpy():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, (10, 33, 35)).astype(np.uint8)
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, 3, truth.shape)).astype(np.uint16)
    ignore = rng.random(truth.shape) < 0.1
    expected_cm = confusion_matrix(pred, truth, ignore=ignore)
    expected = iou(pred, truth, ignore=ignore)

    dt = da.from_array(truth, chunks=(3, 10, 12))  # uneven, many blocks (> one merge fan-in)
    dp = da.from_array(pred, chunks=(5, 17, 7))  # other chunks: rechunked onto truth's
    dm = da.from_array(ignore, chunks=(4, 4, 35))
    np.testing.assert_array_equal(confusion_matrix(dp, dt, ignore=dm), expected_cm)
    assert iou(dp, dt, ignore=dm) == expected
    assert dice(dp, dt, ignore=ignore) == dice(pred, truth, ignore=ignore)  # dask + numpy mixed
    assert iou(pred, dt, ignore=ignore) == expected
    assert iou(dp, dt, ignore=1) == iou(pred, truth, ignore=1)
    vt = Volume.from_array(truth, voxel_size=(40, 8, 8), chunks=(4, 16, 16))
    vp = Volume.from_array(pred, voxel_size=(40, 8, 8), chunks=(4, 16, 16))
    assert iou(vp, vt, ignore=ignore) == expected
    np.testing.assert_array_equal(confusion_matrix(vp, truth, ignore=ignore), expected_cm)


def test_dask_is_counted_block_by_block():
    # a lazy volume whose blocks are made on demand: the counts come without building the array
    truth = da.ones((8, 64, 64), chunks=(2, 32, 32), dtype=np.uint8)
    pred = da.zeros_like(truth)
    cm = confusion_matrix(pred, truth)
    np.testing.assert_array_equal(cm, [[0, 0], [8 * 64 * 64, 0]])
    assert iou(pred, truth) == {1: 0.0}


def test_shape_mismatch_names_both_inputs():
    with pytest.raises(ValueError, match=r"pred .*\(2, 3\).*truth .*\(3, 2\)"):
        iou(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match=r"pred .*\(2, 3\).*truth .*\(3, 2\)"):
        confusion_matrix(da.zeros((2, 3), dtype=int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="ignore mask"):
        iou(TRUTH, TRUTH, ignore=np.zeros((2, 2), bool))


def test_bad_inputs():
    with pytest.raises(ValueError, match="pred must be an integer or boolean"):
        iou(PRED.astype(np.float32), TRUTH)
    with pytest.raises(ValueError, match="truth has negative labels"):
        iou(PRED, -TRUTH)
    with pytest.raises(ValueError, match="truth has negative labels"):
        iou(da.from_array(PRED), da.from_array(-TRUTH))
    with pytest.raises(ValueError, match="n_classes=2"):
        confusion_matrix(PRED, TRUTH, n_classes=2)
    with pytest.raises(ValueError, match="n_classes must be a positive integer"):
        confusion_matrix(PRED, TRUTH, n_classes=0)
    with pytest.raises(ValueError, match="must be boolean"):
        iou(PRED, TRUTH, ignore=np.zeros(TRUTH.shape, np.uint8))
    with pytest.raises(TypeError, match="ignore"):
        iou(PRED, TRUTH, ignore=True)
    with pytest.raises(ValueError, match="labels must be non-negative"):
        iou(PRED, TRUTH, labels=[-1])
    a = Volume.from_array(TRUTH, voxel_size=(40, 8, 8))
    b = Volume.from_array(TRUTH, voxel_size=(40, 4, 4))
    with pytest.raises(ValueError, match="different voxel sizes"):
        iou(a, b)


def test_inputs_are_not_modified():
    truth, pred = TRUTH.copy(), PRED.copy()
    ignore = np.zeros(TRUTH.shape, bool)
    iou(pred, truth, ignore=ignore)
    np.testing.assert_array_equal(truth, TRUTH)
    np.testing.assert_array_equal(pred, PRED)
    assert not ignore.any()
