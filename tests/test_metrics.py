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


# --------------------------------------------------------------------------------------------------
# instance scores

from vemkit.metrics import (  # noqa: E402
    DEFAULT_IOU_THRESHOLDS,
    adapted_rand_error,
    average_precision,
    evaluate,
    match_instances,
    variation_of_information,
)


def instance_case():
    """Five true objects, five predicted, every overlap known (one row of a (1, 1, 36) volume).

    truth A (1, 8 voxels) found exactly by 11           IoU 1
    truth B (2, 8 voxels) split into 21 (5) and 22 (3)  IoU 5/8 and 3/8
    truth C (3, 6) and D (4, 2) merged into 31 (8)      IoU 6/8 and 2/8
    truth E (5, 4 voxels) missed
    pred 41 (3 voxels) lies on background               a false positive
    """
    truth = [1] * 8 + [0] + [2] * 8 + [0] + [3] * 6 + [4] * 2 + [0] + [5] * 4 + [0] * 5
    pred = [11] * 8 + [0] + [21] * 5 + [22] * 3 + [0] + [31] * 8 + [0] + [0] * 4 + [0, 41, 41, 41, 0]
    assert len(truth) == len(pred) == 36
    return np.array(pred, np.uint16).reshape(1, 1, 36), np.array(truth, np.int32).reshape(1, 1, 36)


def test_match_instances_hand_case():
    pred, truth = instance_case()
    m = match_instances(pred, truth)
    assert m["matches"][["truth", "pred"]].values.tolist() == [[1, 11], [2, 21], [3, 31]]
    assert m["matches"]["iou"].tolist() == [1.0, 5 / 8, 6 / 8]
    assert m["matches"]["intersection"].tolist() == [8, 5, 6]
    assert m["matches"]["truth_size"].tolist() == [8, 8, 6]
    assert m["matches"]["pred_size"].tolist() == [8, 5, 8]
    assert (m["tp"], m["fp"], m["fn"], m["n_truth"], m["n_pred"]) == (3, 2, 2, 5, 5)
    assert m["false_positives"].tolist() == [22, 41]
    assert m["false_negatives"].tolist() == [4, 5]
    assert m["precision"] == m["recall"] == m["f1"] == 3 / 5
    assert m["accuracy"] == 3 / 7
    assert m["mean_matched_iou"] == pytest.approx((1 + 5 / 8 + 6 / 8) / 3)
    assert m["panoptic_quality"] == pytest.approx((1 + 5 / 8 + 6 / 8) / (3 + 1 + 1))
    # an IoU of exactly 6/8 matches at threshold 0.75; 5/8 does not
    m75 = match_instances(pred, truth, iou_threshold=0.75)
    assert m75["matches"]["truth"].tolist() == [1, 3]
    assert (m75["tp"], m75["fp"], m75["fn"]) == (2, 3, 3)


def test_average_precision_hand_case():
    pred, truth = instance_case()
    r = average_precision(pred, truth)
    expected = {0.5: 3 / 7, 0.55: 3 / 7, 0.6: 3 / 7, 0.65: 2 / 8, 0.7: 2 / 8, 0.75: 2 / 8}
    expected.update({t: 1 / 9 for t in (0.8, 0.85, 0.9, 0.95)})
    assert r["ap"] == expected
    assert list(r["ap"]) == list(DEFAULT_IOU_THRESHOLDS)
    assert r["mean_ap"] == pytest.approx((3 * 3 / 7 + 3 * 2 / 8 + 4 / 9) / 10)
    assert (r["tp"], r["fp"], r["fn"], r["n_truth"], r["n_pred"]) == (3, 2, 2, 5, 5)
    assert r["precision"] == r["recall"] == r["f1"] == 3 / 5
    assert r["iou_threshold"] == 0.5
    # np.arange's float noise (0.7000000000000001) gives the same keys and values
    assert average_precision(pred, truth, thresholds=np.arange(0.5, 1.0, 0.05))["ap"] == expected
    assert average_precision(pred, truth, thresholds=0.75)["ap"] == {0.75: 2 / 8}


def test_instance_scores_perfect_empty_and_labels_irrelevant():
    pred, truth = instance_case()
    r = average_precision(truth, truth)
    assert set(r["ap"].values()) == {1.0} and r["mean_ap"] == 1.0
    # instance ids are arbitrary: a relabelled prediction scores the same
    relabelled = np.where(truth > 0, truth * 7 + 100, 0)
    assert average_precision(relabelled, truth)["ap"] == r["ap"]
    # nothing predicted: every truth object is missed
    r0 = average_precision(np.zeros_like(truth), truth)
    assert r0["mean_ap"] == 0.0 and (r0["tp"], r0["fp"], r0["fn"]) == (0, 0, 5)
    assert r0["recall"] == 0.0 and math.isnan(r0["precision"])
    # no objects anywhere: undefined, not 0 or 1
    empty = np.zeros((2, 3, 4), np.uint8)
    r00 = average_precision(empty, empty)
    assert math.isnan(r00["mean_ap"]) and (r00["tp"], r00["fp"], r00["fn"]) == (0, 0, 0)


def test_matching_is_optimal_not_greedy():
    # B is cut in two exact halves: both halves have IoU 0.5 with B and only one may match it
    truth = np.array([[[1, 1, 1, 1, 0, 2, 2]]])
    pred = np.array([[[5, 5, 6, 6, 0, 7, 7]]])
    m = match_instances(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 0)
    # below 0.5 a greedy matcher (best IoU first) loses a pair: taking X-P first leaves Y alone,
    # while the optimal matching takes X-Q and Y-P for two true positives.
    # truth: X = 10 voxels, Y = 3; pred: P = 6 voxels of X + all of Y, Q = 4 voxels of X + 3 background
    truth = np.array([[[1] * 6 + [1] * 4 + [2] * 3 + [0] * 3]])
    pred = np.array([[[8] * 6 + [9] * 4 + [8] * 3 + [9] * 3]])
    # X-P: 6 / (10 + 9 - 6) = 6/13, X-Q: 4 / (10 + 7 - 4) = 4/13, Y-P: 3 / 9 = 1/3
    m = match_instances(pred, truth, iou_threshold=0.3)
    assert m["matches"][["truth", "pred"]].values.tolist() == [[1, 9], [2, 8]]
    assert m["tp"] == 2


def reference_matching_tp(pred, truth, threshold):
    """StarDist's matching on the dense IoU matrix (skimage's contingency table), background dropped."""
    from scipy.optimize import linear_sum_assignment
    from skimage.metrics import contingency_table as sk_table

    t_ids = np.unique(truth)
    p_ids = np.unique(pred)
    _, t_dense = np.unique(truth, return_inverse=True)
    _, p_dense = np.unique(pred, return_inverse=True)
    overlap = sk_table(t_dense.reshape(truth.shape), p_dense.reshape(pred.shape)).toarray()
    n_t = overlap.sum(axis=1, keepdims=True)
    n_p = overlap.sum(axis=0, keepdims=True)
    scores = overlap / (n_t + n_p - overlap)
    scores = scores[t_ids > 0][:, p_ids > 0]
    n = min(scores.shape)
    if n == 0 or not np.any(scores >= threshold):
        return 0
    costs = -(scores >= threshold).astype(float) - scores / (2 * n)
    rows, cols = linear_sum_assignment(costs)
    return int(np.count_nonzero(scores[rows, cols] >= threshold))


def random_instances(rng, shape=(4, 24, 24), n=40):
    """Blocky random instance labels and a perturbed prediction (shifted, some merged, some dropped)."""
    coarse = rng.integers(0, n, (shape[0], shape[1] // 4, shape[2] // 4))
    truth = np.kron(coarse, np.ones((1, 4, 4), int)).astype(np.uint32)
    pred = np.roll(truth, rng.integers(1, 3), axis=2).astype(np.int64)
    pred = np.where(rng.random(n)[pred] < 0.15, 0, pred)  # some objects missed
    pred = np.where(pred % 7 == 3, pred + 1, pred)  # some pairs merged
    noise = rng.random(shape) < 0.05
    pred[noise] = rng.integers(0, n + 5, int(noise.sum()))
    return pred, truth


def test_matching_agrees_with_dense_reference():
    rng = np.random.default_rng(4)
    for _ in range(6):
        pred, truth = random_instances(rng)
        for threshold in (0.1, 0.3, 0.5, 0.7, 0.9):
            m = match_instances(pred, truth, iou_threshold=threshold)
            assert m["tp"] == reference_matching_tp(pred, truth, threshold)
            assert m["fp"] == len(np.unique(pred[pred > 0])) - m["tp"]
            assert m["fn"] == len(np.unique(truth[truth > 0])) - m["tp"]
            # one-to-one and every pair above the threshold
            assert m["matches"]["truth"].is_unique and m["matches"]["pred"].is_unique
            assert (m["matches"]["iou"] >= threshold).all()


def test_instance_ignore_mask_and_value():
    pred, truth = instance_case()
    # ignoring the false positive 41 and the missed E removes both from the counts
    ignore = np.zeros(truth.shape, bool)
    ignore[..., 27:] = True
    m = match_instances(pred, truth, ignore=ignore)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 1)
    # ignoring a truth value: voxels of truth 5 (E) are not counted, E is no object any more
    m = match_instances(pred, truth, ignore=5)
    assert (m["tp"], m["fp"], m["fn"], m["n_truth"]) == (3, 2, 1, 4)
    # ignored voxels shrink objects and so change IoU: B's cut-off part 22 ignored -> 21 covers 5/5
    ignore = (pred == 22)
    m = match_instances(pred, truth, ignore=ignore)
    assert m["matches"].set_index("truth").loc[2, "iou"] == 1.0


def test_vi_hand_cases():
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, :2] = 1
    truth[:, 2:] = 2
    assert variation_of_information(truth, truth) == (0.0, 0.0)
    relabelled = np.where(truth == 1, 9, 4)
    assert variation_of_information(relabelled, truth) == (0.0, 0.0)
    # every object cut into two equal halves: one bit of split, no merge
    halves = truth * 2 + (np.arange(4) >= 2)[None, None, :]
    assert variation_of_information(halves, truth) == (1.0, 0.0)
    assert variation_of_information(truth, halves) == (0.0, 1.0)
    # everything merged into one object: H(truth) = 1 bit of merge
    assert variation_of_information(np.ones_like(truth), truth) == (0.0, 1.0)
    empty = np.zeros((1, 2, 2), np.uint8)
    assert all(math.isnan(v) for v in variation_of_information(empty, empty, ignore=0))


def test_adapted_rand_error_hand_case_and_skimage_naming():
    # scikit-image issue #6485: one predicted object over three true ones (a pure merge)
    truth = np.array([[[1, 2], [3, 2]]])
    merged = np.ones_like(truth)
    are, split_score, merge_score = adapted_rand_error(merged, truth)
    assert (are, split_score, merge_score) == (1 - 2 / 7, 1.0, 1 / 6)  # P=2, A=2, B=12
    # a pure split lowers the first score only
    are, split_score, merge_score = adapted_rand_error(np.array([[[1, 1, 2, 2]]]), np.array([[[1] * 4]]))
    assert (are, split_score, merge_score) == (0.5, 1 / 3, 1.0)
    assert adapted_rand_error(truth, truth) == (0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        adapted_rand_error(truth, truth, alpha=1.5)


def test_vi_and_are_match_skimage_exactly():
    from skimage.metrics import adapted_rand_error as sk_are
    from skimage.metrics import variation_of_information as sk_vi

    rng = np.random.default_rng(5)
    for i in range(5):
        if i < 3:
            pred, truth = random_instances(rng)
        else:  # fully random labels, including many singletons
            truth = rng.integers(0, 50, (3, 10, 12)).astype(np.uint16)
            pred = rng.integers(0, 30, truth.shape)
        mask = rng.random(truth.shape) < 0.2
        sentinel = int(truth.max()) + 1
        masked = np.where(mask, sentinel, truth)

        def same(ours, theirs):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)

        # note the argument order: vemkit (pred, truth), skimage (truth, pred)
        same(variation_of_information(pred, truth), sk_vi(truth, pred))
        vi = variation_of_information
        same(vi(pred, truth, ignore=mask), sk_vi(masked, pred, ignore_labels=[sentinel]))
        same(vi(pred, truth, ignore_background=True), sk_vi(truth, pred, ignore_labels=[0]))
        same(variation_of_information(pred, truth, ignore=2), sk_vi(truth, pred, ignore_labels=[2]))
        same(adapted_rand_error(pred, truth), sk_are(truth, pred))
        same(adapted_rand_error(pred, truth, ignore=mask), sk_are(masked, pred, ignore_labels=[0, sentinel]))
        same(adapted_rand_error(pred, truth, ignore_background=False), sk_are(truth, pred, ignore_labels=[]))
        same(adapted_rand_error(pred, truth, alpha=0.2), sk_are(truth, pred, alpha=0.2))


def test_instance_scores_dask_equals_numpy():
    rng = np.random.default_rng(6)
    pred, truth = random_instances(rng, shape=(6, 32, 32), n=60)
    ignore = rng.random(truth.shape) < 0.1
    dp = da.from_array(pred, chunks=(2, 10, 13))
    dt = da.from_array(truth, chunks=(3, 16, 9))
    dm = da.from_array(ignore, chunks=(6, 8, 8))
    m_np = match_instances(pred, truth, ignore=ignore)
    m_da = match_instances(dp, dt, ignore=dm)
    assert m_np["matches"].equals(m_da["matches"])
    assert {k: v for k, v in m_np.items() if k not in ("matches", "false_positives", "false_negatives")} == {
        k: v for k, v in m_da.items() if k not in ("matches", "false_positives", "false_negatives")
    }
    assert average_precision(dp, dt, ignore=dm) == average_precision(pred, truth, ignore=ignore)
    assert variation_of_information(dp, dt, ignore=dm) == variation_of_information(pred, truth, ignore=ignore)
    assert adapted_rand_error(dp, dt, ignore=dm) == adapted_rand_error(pred, truth, ignore=ignore)
    vt = Volume.from_array(truth, voxel_size=(40, 8, 8), chunks=(2, 16, 16))
    vp = Volume.from_array(pred, voxel_size=(40, 8, 8), chunks=(3, 8, 32))
    assert evaluate(vp, vt, kind="instances") == evaluate(pred, truth, kind="instances")


def test_evaluate_instances_and_semantic_are_json_ready():
    import json

    pred, truth = instance_case()
    m = evaluate(pred, truth, kind="instances")
    json.dumps(m, allow_nan=False)
    ap = average_precision(pred, truth)
    assert m["ap"] == {f"{t:g}": v for t, v in ap["ap"].items()}
    assert list(m["ap"])[:2] == ["0.5", "0.55"]
    assert m["mean_ap"] == ap["mean_ap"]
    assert (m["tp"], m["fp"], m["fn"], m["n_truth"], m["n_pred"]) == (3, 2, 2, 5, 5)
    assert (m["vi_split"], m["vi_merge"]) == variation_of_information(pred, truth)
    assert m["vi"] == m["vi_split"] + m["vi_merge"]
    assert (m["adapted_rand_error"], m["rand_split_score"], m["rand_merge_score"]) == adapted_rand_error(
        pred, truth
    )
    assert m["n_voxels"] == truth.size and m["kind"] == "instances"

    s = evaluate(PRED, TRUTH)
    json.dumps(s, allow_nan=False)
    assert s["kind"] == "semantic"
    assert s["classes"] == {str(k): v for k, v in class_scores(PRED, TRUTH).items()}
    assert s["confusion_matrix"] == HAND_CM.tolist()
    assert s["accuracy"] == (10 + 5 + 4) / TRUTH.size
    assert s["mean_iou"] == mean_iou(PRED, TRUTH)
    # a class absent from both inputs: nan becomes None
    s = evaluate(np.array([[[0, 2]]]), np.array([[[0, 2]]]))
    assert s["classes"]["1"]["iou"] is None and s["mean_iou"] == 1.0
    json.dumps(s, allow_nan=False)


def test_instance_bad_inputs():
    pred, truth = instance_case()
    with pytest.raises(ValueError, match="boolean mask"):
        match_instances(pred > 0, truth)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        average_precision(pred, truth, thresholds=[0.5, 0])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        match_instances(pred, truth, iou_threshold=1.5)
    with pytest.raises(ValueError, match="kind"):
        evaluate(pred, truth, kind="panoptic")
    with pytest.raises(ValueError, match="pred and truth must have the same shape"):
        variation_of_information(pred[..., :3], truth)
    with pytest.raises(ValueError, match="must be an integer"):
        adapted_rand_error(pred.astype(float), truth)
