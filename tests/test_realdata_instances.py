"""Instance metrics and blockwise instances on the real shared labels (FlyEM neurons, VNC mitochondria)."""

import numpy as np
import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def flyem_bodies():
    from conftest import shared_data_dir

    if shared_data_dir() is None:
        pytest.skip("real EM data not found: expected ../shared/data beside the project")
    import os

    os.environ["VEMKIT_DATA_DIR"] = str(shared_data_dir())
    from vemkit.datasets import load_dataset

    ds = load_dataset("flyem_medulla_fibsem", progress=False)
    return np.asarray(ds.labels["neurons"].data[:100, :160, :160])


def _split(labels, axis_cut):
    out = labels.copy()
    half = out[:, :, :axis_cut]
    half[half > 0] += int(labels.max())
    return out


def _merge(labels, pairs):
    out = labels.copy()
    for a, b in pairs:
        out[out == b] = a
    return out


def test_metrics_equal_skimage_on_flyem_neurons(flyem_bodies):
    from skimage.metrics import adapted_rand_error as sk_are
    from skimage.metrics import variation_of_information as sk_vi

    from vemkit.metrics import adapted_rand_error, variation_of_information

    truth = flyem_bodies
    ids = [i for i in np.unique(truth) if i]
    split = _split(truth, 80)
    merged = _merge(truth, list(zip(ids[0::2][:20], ids[1::2][:20])))
    for pred in (split, merged):
        split_vi, merge_vi = variation_of_information(pred, truth)
        ref_split, ref_merge = sk_vi(truth, pred)  # skimage takes the truth first
        assert split_vi == pytest.approx(ref_split, abs=1e-9)
        assert merge_vi == pytest.approx(ref_merge, abs=1e-9)
        assert adapted_rand_error(pred, truth) == pytest.approx(sk_are(truth, pred), abs=1e-9)
    # the split copy is over-segmented, the merged copy under-segmented, and the metric says which
    s_split, s_merge = variation_of_information(split, truth)
    m_split, m_merge = variation_of_information(merged, truth)
    assert s_split > 0.5 and s_merge < 1e-9
    assert m_merge > 0.02 and m_split < 1e-9  # measured 0.056 bits for 20 merged pairs


def test_blockwise_cc_equals_whole_on_flyem_boundaries(flyem_bodies, tmp_path):
    """Connected components of the neuron interiors (boundaries removed): blockwise == whole volume."""
    from vemkit.instances import connected_components, instances_blockwise
    from vemkit.metrics import contingency_table

    bodies = flyem_bodies
    boundary = np.zeros(bodies.shape, bool)
    for ax in range(3):
        sl = [slice(None)] * 3
        sl[ax] = slice(1, None)
        sl2 = [slice(None)] * 3
        sl2[ax] = slice(None, -1)
        diff = bodies[tuple(sl)] != bodies[tuple(sl2)]
        boundary[tuple(sl)] |= diff
    interior = (~boundary & (bodies > 0)).astype(np.uint8)
    whole = connected_components(interior, connectivity=6)
    blocks = instances_blockwise(interior, method="cc", block=(32, 64, 64), connectivity=6,
                                 voxel_size=(10.0, 10.0, 10.0), progress=False)
    assert int(blocks.max()) == int(whole.max()) > 100
    table = contingency_table(blocks, whole)
    fg = (table.truth > 0) & (table.pred > 0)
    # one-to-one: every whole-volume id meets exactly one blockwise id and vice versa
    assert len(np.unique(table.truth[fg])) == len(np.unique(table.pred[fg])) == int(fg.sum())
