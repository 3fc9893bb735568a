"""The Annotator's prompt mode without a browser: a click's mask goes through the segmenter into the
annotation store as an ordinary, undoable edit; embeddings are computed once, cached on disk and
computed ahead; propagation follows an object through sections. (tests/test_browser_prompt.py drives
the same path from a real browser.)"""

import numpy as np
import pytest

pytest.importorskip("anywidget")

from vemkit._prompt import PromptAnnotator  # noqa: E402
from vemkit.annotate import open_annotations  # noqa: E402


class DiskSegmenter:
    """Records each call; the mask is the disk of radius 5 around the first object point (or the box)."""

    name = "disk"

    def __init__(self):
        self.embedded, self.calls = [], []

    def embed(self, section):
        self.embedded.append(section.copy())
        return {"shape": section.shape, "mean": float(section.mean())}

    def predict(self, embedding, points=None, labels=None, box=None):
        self.calls.append((embedding["mean"], points, labels, box))
        h, w = embedding["shape"]
        yy, xx = np.mgrid[0:h, 0:w]
        if points:
            r, c = next(p for p, lab in zip(points, labels) if lab == 1)
            return (yy - r) ** 2 + (xx - c) ** 2 <= 25, 0.9
        r0, c0, r1, c1 = box
        return (yy >= r0) & (yy <= r1) & (xx >= c0) & (xx <= c1), 0.5


@pytest.fixture
def widget(tmp_path):
    vol = np.stack([np.full((40, 50), 10 * (z + 1), np.uint8) for z in range(4)])
    seg = DiskSegmenter()
    ann = PromptAnnotator(vol, tmp_path / "ann.zarr", classes=["background", "mito"], segmenter=seg, z=1,
                          live_preview=False, embedding_cache=None)
    yield ann, seg, tmp_path
    ann.close()


def test_click_mask_accept_undo(widget):
    ann, seg, tmp_path = widget
    out = ann.handle_message({"type": "prompt", "points": [[20, 30, 1], [5, 5, 0]], "plane": "xy", "index": 2})
    assert out["ok"] and out["pixels"] == 81
    assert seg.calls[-1][0] == 30.0  # the embedding of section 2, not of the one shown (1)
    assert seg.calls[-1][1] == [(20.0, 30.0), (5.0, 5.0)] and seg.calls[-1][2] == [1, 0]
    assert ann.prompt_key == "xy:2" and ann.prompt_mask
    assert ann.handle_message({"type": "prompt_accept"})["accepted"] == 81
    store = open_annotations(tmp_path / "ann.zarr")
    assert store.section(2)[20, 30] == 2 and int((store.section(2) == 2).sum()) == 81 and not ann.prompt_mask
    assert ann.handle_message({"type": "undo"})["undone"]
    assert not open_annotations(tmp_path / "ann.zarr").section(2).any()


def test_reject_writes_nothing_and_bad_prompts_are_reported(widget):
    ann, seg, tmp_path = widget
    ann.prompt([(10, 10)])
    ann.handle_message({"type": "prompt_reject"})
    assert not ann.prompt_mask and not open_annotations(tmp_path / "ann.zarr").to_numpy().any()
    out = ann.handle_message({"type": "prompt", "points": [[45, 3, 1]]})
    assert not out["ok"] and "outside" in out["error"] and "⚠" in ann.status
    assert not ann.handle_message({"type": "prompt_accept"})["ok"]  # nothing proposed: an error, not a crash


def test_embeddings_once_and_ahead(widget):
    ann, seg, _ = widget
    ann.prompt_active = True  # computes section 1 and, ahead, section 2
    ann.embedding("xy", 2)
    for _ in range(3):
        ann.prompt([(10, 10)], index=1)
    assert [float(s.mean()) for s in seg.embedded] == [20.0, 30.0]


def test_embedding_cache_on_disk_beside_the_store(tmp_path):
    from vemkit.generalist import load_sam, write_tiny_model

    write_tiny_model("sam_vit_b", tmp_path / "m.json")
    sam = load_sam("sam_vit_b", manifest_path=tmp_path / "m.json", device="cpu")
    vol = np.random.default_rng(0).integers(0, 255, (2, 32, 40), dtype=np.uint8)
    ann = PromptAnnotator(vol, tmp_path / "ann.zarr", classes=["background", "mito"], segmenter=sam, live_preview=False)
    mask_first = ann.prompt([(16, 20)], index=0)
    cached = tmp_path / "ann.zarr.prompt" / "sam_vit_b" / "xy_0.npz"
    assert cached.is_file()
    ann.close()
    again = PromptAnnotator(vol, tmp_path / "ann.zarr", classes=["background", "mito"], segmenter=sam, live_preview=False)
    assert again.prompt([(16, 20)], index=0)["pixels"] == mask_first["pixels"]
    again.close()


def test_propagate_follows_the_object_and_stops(widget):
    ann, seg, tmp_path = widget
    ann.prompt([(20, 25)], index=1)
    ann.accept()
    assert ann.handle_message({"type": "prompt_propagate", "direction": 1})["propagated"] == 2  # sections 2 and 3
    store = open_annotations(tmp_path / "ann.zarr")
    assert all(store.section(z)[20, 25] == 2 for z in (1, 2, 3)) and not store.section(0).any()
    assert ann.undo() and not open_annotations(tmp_path / "ann.zarr").section(3).any()
