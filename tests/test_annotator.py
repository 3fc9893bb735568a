"""The Annotator widget's Python side: front-end messages simulated the way anywidget delivers them
(``widget._handle_custom_msg(content, buffers)``), checked against the zarr store re-opened from disk."""

import base64
import io
import subprocess
import sys
import threading
import zlib

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from vemkit._volume import Volume
from vemkit.annotate import Annotator, open_annotations

CLASSES = ["background", "mitochondria", "vesicle"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _volume(shape=(4, 48, 64), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


class Recorder:
    """Stands in for the front end: keeps the custom messages the widget sends."""

    def __init__(self, widget):
        self.messages = []
        widget.send = lambda content, buffers=None: self.messages.append(content)

    def errors(self):
        return [m for m in self.messages if m.get("type") == "error"]


def _stroke(points, label=2, radius=2.0, index=1, plane="xy", erase=False, sid="view-1"):
    return {"type": "stroke", "id": sid, "points": [list(p) for p in points], "radius": radius,
            "label": label, "erase": erase, "plane": plane, "index": index}  # fmt: skip


def _labels(widget):
    rows, cols = widget.section_shape
    return np.frombuffer(zlib.decompress(widget.labels), np.uint8).reshape(rows, cols)


def _image(widget):
    rows, cols = widget.section_shape
    dtype = np.uint8 if widget.image_dtype == "uint8" else np.dtype("<u2")
    return np.frombuffer(widget.image, dtype).reshape(rows, cols)


@pytest.fixture
def widget(tmp_path):
    return Annotator(_volume(), tmp_path / "ann.zarr", classes=CLASSES, z=1, brush=3)


# ------------------------------------------------------------------------------------- strokes


def test_stroke_message_is_on_disk_at_once(widget, tmp_path):
    front = Recorder(widget)
    widget._handle_custom_msg(_stroke([(10, 10), (10, 40)], label=2, radius=2), [])
    disk = open_annotations(tmp_path / "ann.zarr")  # a fresh handle on the store
    sec = disk.section(1)
    assert sec[10, 10] == sec[10, 25] == sec[10, 40] == 2
    assert sec[13, 25] == 0 and sec[10, 43] == 0
    assert not disk.section(0).any() and not disk.section(2).any()
    # the front end receives the stored layer of its section and the stroke it includes
    np.testing.assert_array_equal(_labels(widget), sec)
    assert widget.labels_key == "xy:1" and widget.last_stroke == "view-1"
    assert not front.errors() and "saved" in widget.status


def test_second_stroke_other_class_and_fractional_points(widget, tmp_path):
    widget._handle_custom_msg(_stroke([(5.4, 5.6)], label=3, radius=1.5, sid="v-1"), [])
    widget._handle_custom_msg(_stroke([(30, 50), (40, 50)], label=1, radius=1, sid="v-2"), [])
    sec = open_annotations(tmp_path / "ann.zarr").section(1)
    assert sec[5, 6] == 3 and sec[35, 50] == 1
    assert set(np.unique(sec)) == {0, 1, 3}
    assert widget.last_stroke == "v-2"
    np.testing.assert_array_equal(_labels(widget), sec)


def test_erase_message(widget, tmp_path):
    widget._handle_custom_msg(_stroke([(20, 20), (20, 40)], label=2, radius=3), [])
    widget._handle_custom_msg(_stroke([(20, 30)], radius=2, erase=True, label=0, sid="v-2"), [])
    sec = open_annotations(tmp_path / "ann.zarr").section(1)
    assert sec[20, 30] == 0 and sec[20, 22] == 2 and sec[20, 38] == 2
    np.testing.assert_array_equal(_labels(widget), sec)


def test_stroke_on_another_section_than_shown(widget, tmp_path):
    """A stroke names its own section: one painted just before a section change lands where it was drawn."""
    widget.index = 3
    widget._handle_custom_msg(_stroke([(8, 8)], index=1, radius=2), [])
    disk = open_annotations(tmp_path / "ann.zarr")
    assert disk.section(1)[8, 8] == 2 and not disk.section(3).any()
    assert widget.labels_key == "xy:3" and not _labels(widget).any()


def test_xz_plane_stroke(tmp_path):
    vol = Volume.from_array(_volume((6, 32, 40)), voxel_size=(8, 8, 8))
    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES)
    assert w.planes == ["xy", "xz", "yz"]  # isotropic: all three offered
    w.plane = "xz"  # as the plane selector does
    assert w.image_key == f"xz:{w.index}" and w.section_shape == [6, 40]
    w._handle_custom_msg(_stroke([(0, 10), (5, 10)], label=3, radius=0.5, index=w.index, plane="xz"), [])
    store = open_annotations(tmp_path / "ann.zarr")
    assert [int(store.array[z, w.index, 10]) for z in range(6)] == [3] * 6
    np.testing.assert_array_equal(_labels(w), store.section(w.index, "xz"))
    w.plane = "xy"
    assert w.image_key == "xy:3"


def test_anisotropic_volume_offers_xy_only(tmp_path):
    vol = Volume.from_array(_volume(), voxel_size=(50, 4, 4))
    assert Annotator(vol, tmp_path / "a.zarr").planes == ["xy"]
    assert Annotator(_volume(), tmp_path / "b.zarr").planes == ["xy"]  # unknown voxel size
    with pytest.raises(ValueError, match="planes"):
        Annotator(_volume(), tmp_path / "c.zarr", planes=["xy", "zz"])
    with pytest.raises(ValueError, match="planes"):
        Annotator(_volume(), tmp_path / "c.zarr", planes=["xz"])
    w = Annotator(_volume(), tmp_path / "c.zarr", planes=["xy", "yz"])  # asked for on anisotropic data
    w.show("yz", 5)
    assert w.image_key == "yz:5" and w.section_shape == [4, 48] and w.z == 2
    with pytest.raises(ValueError, match="one of"):
        w.show("xz")


# ------------------------------------------------------------------------------- undo, errors


def test_undo_message_and_python_undo(widget, tmp_path):
    widget._handle_custom_msg(_stroke([(10, 10)], radius=3), [])
    widget._handle_custom_msg(_stroke([(10, 10)], label=3, radius=1, sid="v-2"), [])
    widget._handle_custom_msg({"type": "undo"}, [])
    sec = open_annotations(tmp_path / "ann.zarr").section(1)
    assert sec[10, 10] == 2  # the second stroke is gone, the first stays
    np.testing.assert_array_equal(_labels(widget), sec)
    assert widget.undo() is True
    assert not open_annotations(tmp_path / "ann.zarr").to_numpy().any()
    assert not _labels(widget).any()
    assert widget.undo() is False and widget.status == "nothing to undo"


@pytest.mark.parametrize("label", [4, 0, -1, 255, "3", True, None])
def test_class_beyond_declared_is_reported_and_nothing_written(widget, tmp_path, label):
    front = Recorder(widget)
    before = widget.labels
    widget._handle_custom_msg(_stroke([(10, 10)], label=label, sid="v-9"), [])
    assert not open_annotations(tmp_path / "ann.zarr").to_numpy().any()
    (err,) = front.errors()
    assert err["id"] == "v-9" and widget.status.startswith("⚠")
    if label in (4, 0, -1, 255):
        assert "beyond the declared classes" in err["message"] and "3 = vesicle" in err["message"]
    assert widget.labels == before
    assert widget.last_stroke == "v-9"  # the front end drops the stroke it drew


def test_paint_raises_on_bad_class(widget):
    with pytest.raises(ValueError, match="beyond the declared classes"):
        widget.paint([(1, 1)], 9)
    with pytest.raises(ValueError, match="unknown class"):
        widget.paint([(1, 1)], "nucleus")


@pytest.mark.parametrize(
    "content",
    [
        {"type": "teleport"},
        {},
        _stroke([(1, 1)], index=99),
        _stroke([(1, 1)], plane="xq"),
        _stroke([(1, 1)], radius=-1),
        {**_stroke([(1, 1)]), "points": [[1, "a"]]},
        {**_stroke([(1, 1)]), "points": [[1, float("nan")]]},
        {**_stroke([(1, 1)]), "index": "1"},
    ],
)
def test_malformed_messages_are_reported_not_raised(widget, tmp_path, content):
    front = Recorder(widget)
    result = widget.handle_message(content)
    assert result["ok"] is False
    assert len(front.errors()) == 1 and widget.status.startswith("⚠")
    assert not open_annotations(tmp_path / "ann.zarr").to_numpy().any()


# --------------------------------------------------------------------------- sections, laziness


def test_section_change_sends_that_section_only(tmp_path):
    reads = []
    lock = threading.Lock()

    def record(block, block_info=None):
        with lock:
            reads.append(block_info[None]["chunk-location"][0])
        return block

    base = da.from_array(_volume((6, 32, 32)), chunks=(1, 32, 32))
    lazy = base.map_blocks(record, dtype=np.uint8)
    w = Annotator(lazy, tmp_path / "ann.zarr", z=2)
    assert sorted(set(reads)) == [2]
    np.testing.assert_array_equal(_image(w), np.asarray(base[2]))
    reads.clear()
    w.index = 4  # as the z slider does
    assert sorted(set(reads)) == [4] and w.image_key == "xy:4" and w.z == 4
    np.testing.assert_array_equal(_image(w), np.asarray(base[4]))
    w.index = 99  # out of range from the front end: clamped
    assert w.index == 5 and w.image_key == "xy:5"
    w.z = 0
    assert w.index == 0 and w.image_key == "xy:0"
    with pytest.raises(ValueError, match="outside the volume"):
        w.z = 6


def test_float_volume_is_quantised_with_its_range(tmp_path):
    vol = np.linspace(-2.0, 6.0, 2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16)
    vol[0, 0, 0] = np.nan
    w = Annotator(vol, tmp_path / "ann.zarr", z=1, contrast=None)
    assert w.image_dtype == "uint16"
    lo, hi = w.image_range
    restored = lo + _image(w).astype(np.float64) * (hi - lo) / 65535
    np.testing.assert_allclose(restored, vol[1], atol=(hi - lo) / 65535)
    assert w.contrast == pytest.approx([float(vol[1].min()), float(vol[1].max())])
    w.index = 0  # a NaN in the section is shown as the minimum, not an error
    assert w.image_key == "xy:0" and w.value_range[0] <= float(np.nanmin(vol[0]))


def test_initial_contrast_and_choices(tmp_path):
    vol = _volume()
    w = Annotator(vol, tmp_path / "ann.zarr", contrast=(10, 200), label="vesicle", classes=CLASSES)
    assert w.contrast == [10.0, 200.0] and w.value_range == [0.0, 255.0]
    assert w.label == 3 and w.classes == CLASSES and len(w.colors) == 3
    assert w.z == vol.shape[0] // 2
    auto = Annotator(vol, tmp_path / "ann.zarr")
    assert auto.contrast == pytest.approx(list(np.percentile(vol[2], [1, 99])))


def test_bad_construction(tmp_path):
    vol = _volume()
    with pytest.raises(ValueError, match="3D"):
        Annotator(np.zeros((2, 2, 2, 2)), tmp_path / "a.zarr")
    store = open_annotations(tmp_path / "s.zarr", shape=(2, 8, 8), classes=CLASSES)
    with pytest.raises(ValueError, match="shape"):
        Annotator(vol, store)
    with pytest.raises(ValueError, match="differ"):
        Annotator(np.zeros((2, 8, 8), np.uint8), store, classes=["background", "other"])
    with pytest.raises(TypeError, match="Annotations store or a path"):
        Annotator(vol, 42)
    with pytest.raises(ValueError, match="outside the volume"):
        Annotator(vol, tmp_path / "b.zarr", z=10)
    with pytest.raises(TypeError, match="predictor"):
        Annotator(vol, tmp_path / "c.zarr", predictor="model.pt")


# ------------------------------------------------------------------------------- the overlay


def test_predictor_after_strokes_and_on_button(tmp_path):
    calls = []
    vol = _volume((3, 16, 20))

    def predictor(z):
        calls.append(z)
        p = (vol[z] > 128).astype(np.float32)
        return np.stack([1 - p, p, np.zeros_like(p)])

    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES, predictor=predictor, z=0)
    assert calls == [0] and w.overlay_key == "xy:0" and w.has_predictor
    rgba = np.frombuffer(zlib.decompress(w.overlay), np.uint8).reshape(16, 20, 4)
    fg = vol[0] > 128
    assert (rgba[fg, :3] == w.colors[1]).all() and (rgba[~fg, :3] == w.colors[0]).all()
    assert (rgba[..., 3] == 255).all()
    w._handle_custom_msg(_stroke([(2, 2)], index=0), [])  # outside an event loop: at once
    assert calls == [0, 0]
    w._handle_custom_msg({"type": "predict"}, [])
    assert calls == [0, 0, 0]
    w.index = 2  # new section: predicted
    assert calls[-1] == 2 and w.overlay_key == "xy:2"
    w.index = 0  # seen before: its overlay is reused
    assert calls[-1] == 2 and w.overlay_key == "xy:0"


def test_failing_predictor_does_not_break_painting(tmp_path):
    def predictor(z):
        raise RuntimeError("model not trained yet")

    w = Annotator(_volume(), tmp_path / "ann.zarr", predictor=predictor, z=0)
    assert "model not trained yet" in w.status
    assert w.paint([(3, 3)], 2, radius=1) > 0
    assert open_annotations(tmp_path / "ann.zarr").section(0)[3, 3] == 2


def test_set_overlay_kinds(widget):
    rows, cols = widget.section_shape
    labels = np.zeros((rows, cols), np.int64)
    labels[:10] = 2
    widget.set_overlay(1, labels)
    assert widget.overlay_key == "xy:1"
    rgba = np.frombuffer(zlib.decompress(widget.overlay), np.uint8).reshape(rows, cols, 4)
    assert (rgba[0, 0, :3] == widget.colors[2]).all() and (rgba[20, 0, :3] == widget.colors[0]).all()
    widget.set_overlay(2, np.full((rows, cols), 0.5, np.float32))  # another section: kept for later
    assert widget.overlay_key == "xy:1"
    widget.index = 2
    rgba = np.frombuffer(zlib.decompress(widget.overlay), np.uint8).reshape(rows, cols, 4)
    assert widget.overlay_key == "xy:2" and (rgba[..., 3] == 128).all()
    widget.set_overlay(2, None)
    assert widget.overlay == b"" and widget.overlay_key == ""
    with pytest.raises(ValueError, match="section"):
        widget.set_overlay(1, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="channels"):
        widget.set_overlay(1, np.zeros((5, rows, cols), np.float32))
    with pytest.raises(ValueError, match="label map holds values"):
        widget.set_overlay(1, np.full((rows, cols), 7))
    assert "no predictor" in (widget.refresh_preview() or widget.status)


# --------------------------------------------------------------------- static output, restart


def test_mimebundle_has_widget_and_png(widget):
    widget.paint([(10, 10), (10, 30)], "mitochondria", radius=3)
    data, _ = widget._repr_mimebundle_()
    assert WIDGET_MIME in data and "Annotator" in data["text/plain"]
    png = base64.b64decode(data["image/png"])
    assert png.startswith(PNG_MAGIC)
    rgb = widget.snapshot()
    assert rgb.shape == (48, 64, 3)
    r, g, b = (int(v) for v in rgb[10, 20])
    assert r > g and r > b  # the mitochondria stroke is drawn in its (red) colour
    assert Image.open(io.BytesIO(png)).size == (64, 48)


def test_large_section_png_is_subsampled(tmp_path):
    w = Annotator(np.zeros((1, 2100, 900), np.uint8), tmp_path / "ann.zarr")
    assert Image.open(io.BytesIO(w.to_png())).size == (300, 700)
    w.save(tmp_path / "view.png")
    assert (tmp_path / "view.png").read_bytes().startswith(PNG_MAGIC)


def test_kernel_restart_keeps_strokes(tmp_path):
    """Paint, drop widget and store, re-open from the path in a fresh process: the strokes are shown."""
    vol = _volume()
    np.save(tmp_path / "vol.npy", vol)
    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES, z=2)
    w._handle_custom_msg(_stroke([(12, 12), (12, 30)], label=2, radius=2, index=2), [])
    w._handle_custom_msg(_stroke([(30, 40)], label=3, radius=3, index=2, sid="v-2"), [])
    expected = _labels(w).copy()
    del w
    code = f"""
import zlib, numpy as np
from vemkit.annotate import Annotator
w = Annotator(np.load(r"{tmp_path / 'vol.npy'}"), r"{tmp_path / 'ann.zarr'}", z=2)
rows, cols = w.section_shape
labels = np.frombuffer(zlib.decompress(w.labels), np.uint8).reshape(rows, cols)
np.save(r"{tmp_path / 'shown.npy'}", labels)
print(w.classes, w.labels_key)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'vesicle'" in out and "xy:2" in out
    shown = np.load(tmp_path / "shown.npy")
    np.testing.assert_array_equal(shown, expected)
    assert shown[12, 20] == 2 and shown[30, 40] == 3


# ------------------------------------------------------------------ attached classifier, examples


class ToyClassifier:
    """A model with the PixelClassifier interface: fit on the store, predict_section of a volume."""

    def __init__(self):
        self.fits, self.calls, self.threshold, self.forest = 0, [], None, None

    def fit(self, image, annotations, *, device="cpu", progress=True):
        self.fits += 1
        labels = annotations.to_numpy() if hasattr(annotations, "to_numpy") else np.asarray(annotations)
        image = np.asarray(image)
        fg, bg = image[labels == 2], image[labels == 1]
        self.threshold = (fg.mean() + bg.mean()) / 2 if fg.size and bg.size else 128.0
        self.forest = object()  # a new fitted state, as PixelClassifier.fit makes
        return self

    def predict_section(self, image, z, device="cpu"):
        if self.forest is None:
            raise RuntimeError("fit the classifier first")
        self.calls.append(z)
        p = (np.asarray(image)[z] > self.threshold).astype(np.float32)
        return np.stack([1 - p, p, np.zeros_like(p)])


def _overlay(w):
    rows, cols = w.section_shape
    return np.frombuffer(zlib.decompress(w.overlay), np.uint8).reshape(rows, cols, 4)


def test_attached_classifier_preview_follows_the_section(tmp_path):
    vol = _volume((4, 16, 20))
    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES, z=0)
    assert not w.has_predictor and w.overlay_key == ""
    clf = ToyClassifier()
    w.set_predictor(clf)  # not trained yet: said, not raised
    assert "fit the classifier first" in w.status and w.has_predictor
    clf.fit(vol, np.zeros(vol.shape, np.uint8))
    w.predictor = clf  # the same as set_predictor(clf)
    assert clf.calls == [0] and w.overlay_key == "xy:0"
    for z in (3, 1):  # painting elsewhere: the preview goes along
        w.z = z
        assert clf.calls[-1] == z and w.overlay_key == f"xy:{z}"
        fg = vol[z] > clf.threshold
        assert (_overlay(w)[fg, :3] == w.colors[1]).all()
    w.predictor = None
    assert not w.has_predictor and w.overlay_key == "" and w.status == "predictor detached"


def test_retrain_refreshes_the_preview_and_forgets_stale_sections(tmp_path):
    vol = _volume((4, 16, 20))
    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES, z=0)
    clf = ToyClassifier().fit(vol, np.zeros(vol.shape, np.uint8))
    w.set_predictor(clf)
    w.z = 2
    w.paint([(1, 1), (1, 18)], "mitochondria", radius=1)  # after a stroke: a new preview, no retraining
    assert clf.fits == 1 and clf.calls == [0, 2, 2]
    before = _overlay(w).copy()
    w.paint([(14, 1), (14, 18)], "background", radius=1)
    w.retrain()
    assert clf.fits == 2
    assert clf.calls[-1] == 2 and "retrained in" in w.status
    assert clf.threshold != 128.0 and not np.array_equal(_overlay(w), before)
    w.z = 0  # its preview came from the old model: made again
    assert clf.calls[-1] == 0
    # trained again in a notebook cell, outside the widget: the next section change notices
    clf.fit(vol, np.zeros(vol.shape, np.uint8))
    w.z = 2
    assert clf.calls[-1] == 2
    w.z = 0
    assert clf.calls[-1] == 0
    with pytest.raises(ValueError, match="set_predictor"):
        Annotator(vol, tmp_path / "b.zarr", predictor=lambda z: vol[z] > 128).retrain()


def test_retrain_after_strokes(tmp_path):
    vol = _volume((3, 16, 20))
    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES, z=1)
    clf = ToyClassifier().fit(vol, np.zeros(vol.shape, np.uint8))
    w.set_predictor(clf, retrain_after_strokes=True)
    w.paint([(2, 2)], 2, radius=1)
    assert clf.fits == 2 and clf.calls[-1] == 1
    w.z = 2  # a section change predicts, it does not retrain
    assert clf.fits == 2 and clf.calls[-1] == 2


def test_real_pixel_classifier_attached(tmp_path):
    from vemkit.pixel_classifier import PixelClassifier

    vol = _volume((3, 32, 32)).astype(np.float32)
    vol[:, 8:24, 8:24] += 200
    w = Annotator(vol, tmp_path / "ann.zarr", classes=["background", "mitochondria"], z=0)
    w.paint([(16, 10), (16, 22)], "mitochondria", radius=2)
    w.paint([(2, 2), (2, 30)], "background", radius=2)
    clf = PixelClassifier(classes=["background", "mitochondria"], seed=0)
    clf.fit(vol, w.annotations, progress=False)
    w.set_predictor(clf)
    w.z = 2
    assert w.overlay_key == "xy:2"
    w.retrain()
    assert w.overlay_key == "xy:2" and "retrained" in w.status


def test_example_strokes_only_on_request_and_undoable(tmp_path):
    vol = _volume((4, 16, 20))
    examples = np.zeros(vol.shape, np.uint8)
    examples[1, 2:4, 2:10] = 2
    examples[3, 10:12, 5:15] = 1
    w = Annotator(vol, tmp_path / "ann.zarr", classes=CLASSES, z=1, example_strokes=examples)
    assert w.has_examples
    store = open_annotations(tmp_path / "ann.zarr")
    assert not store.to_numpy().any()  # nothing pre-painted
    w.paint([(3, 5)], "vesicle", radius=0.5)  # the learner's own stroke stays
    own = open_annotations(tmp_path / "ann.zarr").to_numpy()
    assert own[1, 3, 5] == 3
    result = w.handle_message({"type": "examples"})
    assert result["ok"] and result["changed"] == int(((examples > 0) & (own == 0)).sum())
    on_disk = open_annotations(tmp_path / "ann.zarr").to_numpy()
    assert on_disk[1, 3, 5] == 3 and on_disk[1, 2, 2] == 2 and (on_disk[3] == examples[3]).all()
    assert _labels(w)[2, 2] == 2  # the shown section is sent to the front end
    assert "sections [1, 3]" in w.status
    assert w.load_example_strokes() == 0  # painted already
    assert w.undo()  # one edit: one undo
    on_disk = open_annotations(tmp_path / "ann.zarr").to_numpy()
    np.testing.assert_array_equal(on_disk, own)
    assert not Annotator(vol, tmp_path / "b.zarr").has_examples
    with pytest.raises(ValueError, match="no example strokes"):
        Annotator(vol, tmp_path / "c.zarr").load_example_strokes()
    with pytest.raises(ValueError, match="shape"):
        Annotator(vol, tmp_path / "d.zarr", example_strokes=examples[:2])
    with pytest.raises(ValueError, match="annotation values"):
        Annotator(vol, tmp_path / "e.zarr", classes=CLASSES, example_strokes=examples * 3)


def test_paint_examples_only_when_nobody_watches(tmp_path, monkeypatch):
    import types

    from vemkit import _progress

    vol = _volume((3, 16, 20))
    examples = np.zeros(vol.shape, np.uint8)
    examples[0, 2:4, 2:10] = 2
    # a person in JupyterLab (the front end sends allow_stdin=True): an empty canvas and the button
    monkeypatch.setattr(_progress, "_kernel", lambda: types.SimpleNamespace(_allow_stdin=True))
    w = Annotator(vol, tmp_path / "a.zarr", example_strokes=examples, paint_examples="headless")
    assert not w.annotations.to_numpy().any() and w.has_examples
    # papermill / the tour (nbclient: allow_stdin=False): painted, so training has strokes
    monkeypatch.setattr(_progress, "_kernel", lambda: types.SimpleNamespace(_allow_stdin=False))
    w = Annotator(vol, tmp_path / "b.zarr", example_strokes=examples, paint_examples="headless")
    assert (w.annotations.to_numpy() == examples).all()
    # ... but never over a store that already holds someone's annotations
    own = Annotator(vol, tmp_path / "c.zarr")
    own.paint([(10, 10)], 2, radius=1, z=2)
    w = Annotator(vol, own.annotations, example_strokes=examples, paint_examples="headless")
    assert not w.annotations.section(0).any()
    assert (Annotator(vol, tmp_path / "d.zarr", example_strokes=examples, paint_examples=True)
            .annotations.to_numpy() == examples).all()  # fmt: skip
    with pytest.raises(ValueError, match="paint_examples"):
        Annotator(vol, tmp_path / "e.zarr", example_strokes=examples, paint_examples="yes")
    with pytest.raises(ValueError, match="needs example_strokes"):
        Annotator(vol, tmp_path / "f.zarr", paint_examples=True)
