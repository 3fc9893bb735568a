"""The annotation store on disk, scripted edits, imports, and scribbles made from ground truth."""

import subprocess
import sys

import numpy as np
import pytest

from vemkit.annotate import open_annotations, scribbles_from_masks

CLASSES = ["background", "mitochondria", "vesicle"]


@pytest.fixture
def store(tmp_path):
    return open_annotations(tmp_path / "ann.zarr", shape=(4, 64, 80), classes=CLASSES, voxel_size=(50, 4, 4))


def test_stroke_lands_where_painted_and_persists(store, tmp_path):
    n = store.add_stroke([(10, 10), (10, 40)], "mitochondria", radius=2, index=1)
    assert n > 0
    sec = store.section(1)
    assert sec[10, 10] == 2 and sec[10, 25] == 2 and sec[10, 40] == 2
    assert sec[13, 25] == 0 and sec[10, 43] == 0  # radius 2: three rows off is untouched
    assert store.section(0).max() == 0
    # reopened from disk by a fresh process: nothing lost
    code = (
        "from vemkit.annotate import open_annotations;"
        f"a = open_annotations(r'{tmp_path / 'ann.zarr'}');"
        "print(a.counts()['mitochondria'], a.annotated_sections(), a.classes)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == str(n)
    assert "[1]" in out and "vesicle" in out


def test_erase_undo_and_planes(store):
    store.add_stroke([(20, 20)], 1, radius=3, index=0)
    before = store.to_numpy().copy()
    store.erase_stroke([(20, 20)], radius=1, index=0)
    assert store.section(0)[20, 20] == 0 and store.section(0)[20, 23] == 1
    assert store.undo()
    np.testing.assert_array_equal(store.to_numpy(), before)
    # an xz stroke at y = 30 spans sections
    store.add_stroke([(0, 5), (3, 5)], "vesicle", radius=0.5, index=30, plane="xz")
    assert [int(store.array[z, 30, 5]) for z in range(4)] == [3, 3, 3, 3]
    assert store.counts()["vesicle"] == 4


def test_masks_labels_and_coordinates(store):
    mask = np.zeros((64, 80), bool)
    mask[5:8, 5:9] = True
    store.add_mask(mask, "vesicle", z=2)
    coords, values = store.labelled_voxels()
    assert len(coords) == 12 and set(values.tolist()) == {3}
    assert set(map(tuple, coords[:, :2].tolist())) == {(2, y) for y in range(5, 8)}
    block = np.zeros((1, 4, 4), np.uint8)
    block[0, 0, 0] = 1
    store.set_labels(block, offset=(3, 0, 0))
    assert store.array[3, 0, 0] == 1


def test_bad_input_is_explained(store, tmp_path):
    with pytest.raises(ValueError, match="beyond the declared classes"):
        store.add_stroke([(1, 1)], 7, index=0)
    with pytest.raises(ValueError, match="unknown class 'nucleus'"):
        store.add_stroke([(1, 1)], "nucleus", index=0)
    with pytest.raises(ValueError, match="index 9 is outside"):
        store.add_stroke([(1, 1)], 1, index=9)
    with pytest.raises(ValueError, match="belong to another image"):
        open_annotations(tmp_path / "ann.zarr", shape=(4, 64, 81))
    with pytest.raises(ValueError, match="never renamed or reordered"):
        open_annotations(tmp_path / "ann.zarr", classes=["background", "nucleus"])
    with pytest.raises(ValueError, match="give image= or shape="):
        open_annotations(tmp_path / "new.zarr")
    with pytest.raises(ValueError, match="labels hold values 9..9"):
        store.set_labels(np.full((1, 2, 2), 9, np.uint8))


def test_existing_store_is_opened_not_replaced(store, tmp_path):
    store.add_stroke([(5, 5)], 2, radius=1, index=0)
    again = open_annotations(tmp_path / "ann.zarr", shape=(4, 64, 80), classes=CLASSES)
    assert again.counts()["mitochondria"] > 0
    # classes may be added at the end
    more = open_annotations(tmp_path / "ann.zarr", classes=[*CLASSES, "nucleus"])
    assert more.classes[-1] == "nucleus" and more.counts()["mitochondria"] > 0
    fresh = open_annotations(tmp_path / "ann.zarr", shape=(4, 64, 80), classes=CLASSES, overwrite=True)
    assert fresh.counts()["mitochondria"] == 0


def test_import_label_tiff_and_ilastik_export(store, tmp_path):
    import h5py
    import tifffile

    labels = np.zeros((4, 64, 80), np.uint8)
    labels[0, :3, :3] = 1
    labels[1, 10:12, 10:12] = 2
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    store.import_labels(tmp_path / "labels.tif")
    assert store.counts() == {"background": 9, "mitochondria": 4, "vesicle": 0}
    # ilastik's label export: (z, y, x, 1) with 0 = unlabelled, its own label numbers mapped explicitly
    exported = np.zeros((4, 64, 80, 1), np.uint8)
    exported[2, 0:2, 0:2, 0] = 5
    with h5py.File(tmp_path / "ilastik.h5", "w") as f:
        f["exported_data"] = exported
    store.import_labels(tmp_path / "ilastik.h5", mapping={5: "vesicle"})
    assert store.counts()["vesicle"] == 4
    with pytest.raises(ValueError, match="imported labels have shape"):
        store.import_labels(np.zeros((2, 2, 2), np.uint8))


def test_scribbles_are_sparse_and_inside_the_truth():
    from vemkit.synthetic import make_phantom

    ph = make_phantom(shape=(6, 192, 192), seed=3)
    truth = (ph.semantic == 2).astype(np.uint8)
    ann = scribbles_from_masks(truth, sections=[1, 4], seed=0)
    assert ann.shape == truth.shape and ann.dtype == np.uint8
    assert set(np.unique(ann).tolist()) == {0, 1, 2}
    assert np.all(truth[ann == 2] == 1) and np.all(truth[ann == 1] == 0)
    assert np.all(ann[[0, 2, 3, 5]] == 0)  # only the chosen sections
    labelled = (ann[[1, 4]] > 0).mean()
    assert 0.002 < labelled < 0.15  # sparse, like a person's strokes
    # most objects in those sections get a stroke
    from scipy.ndimage import label

    objects, n = label(truth[1])
    hit = {int(i) for i in np.unique(objects[ann[1] == 2]) if i}
    big = {i for i in range(1, n + 1) if (objects == i).sum() >= 30}
    assert len(hit & big) >= 0.8 * len(big)
    again = scribbles_from_masks(truth, sections=[1, 4], seed=0)
    np.testing.assert_array_equal(ann, again)
    with pytest.raises(ValueError, match="section 9 is outside"):
        scribbles_from_masks(truth, sections=[9])
    with pytest.raises(ValueError, match="integer class labels"):
        scribbles_from_masks(truth.astype(float))


def test_torn_chunk_is_a_clear_error_that_names_it_and_the_rest_stays_readable(tmp_path):
    from vemkit._annotations import DamagedChunkError

    labels = np.random.default_rng(0).integers(0, 3, (3, 300, 300)).astype(np.uint8)
    ann = open_annotations(tmp_path / "ann.zarr", shape=labels.shape, classes=["background", "mito"])
    ann.set_labels(labels)
    torn = tmp_path / "ann.zarr" / "c" / "1" / "0" / "1"  # section 1, rows 0-255, columns 256-299
    assert torn.is_file()
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) // 2])  # a write cut short
    with pytest.raises(DamagedChunkError, match=r"1 chunk\(s\) cannot be read .*c/1/0/1") as err:
        ann.to_numpy()
    assert err.value.chunks == [torn]
    for call in (ann.counts, lambda: ann.section(1), ann.annotated_sections, ann.labelled_voxels):
        with pytest.raises(DamagedChunkError, match="c/1/0/1"):
            call()
    # everything that does not touch the torn chunk reads as before
    np.testing.assert_array_equal(ann.section(0), labels[0])
    np.testing.assert_array_equal(ann.section(2), labels[2])
    np.testing.assert_array_equal(ann.read((slice(1, 2), slice(0, 300), slice(0, 256)))[0], labels[1, :, :256])
    torn.unlink()  # the remedy the message offers: the chunk reads as unlabelled
    expected = labels.copy()
    expected[1, :256, 256:] = 0
    np.testing.assert_array_equal(ann.to_numpy(), expected)
