"""Automatic SAM (``sam-auto``): the 2D mask generator (grid prompts, filtering, NMS, tiles, painting)
with an oracle segmenter that answers each point with the object under it, the volume driver
(objects linked across sections, resumable at every step) with an exact section segmenter, and
the real loaders end to end with tiny checkpoints (random weights: shapes, files and voxel sizes,
not quality).
"""

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile

torch = pytest.importorskip("torch")

import vemkit.predict._samauto as samauto  # noqa: E402
from vemkit import generalist as g  # noqa: E402
from vemkit.cli import main  # noqa: E402
from vemkit.generalist import AutoMaskGenerator, AutoMaskSettings, Embedding, PromptSegmenter  # noqa: E402
from vemkit.generalist._automask import box_nms, paint_masks, stability_scores  # noqa: E402
from vemkit.generalist._sam import tiny_sam_state  # noqa: E402
from vemkit.io import open_volume, write_tiff  # noqa: E402
from vemkit.predict import predict_volume  # noqa: E402
from vemkit.predict._samauto import link_sections, run_sections  # noqa: E402

VS = (40.0, 5.0, 5.0)


# ------------------------------------------------------------------------------------------ pieces
def test_stability_nms_and_painting_exact():
    logits = np.full((2, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0          # a crisp mask: stable
    logits[1, :2, :2] = 0.5          # a soft one: at +-0.4 the inner mask is half the outer
    logits[1, 2:, 2:] = -0.3
    assert stability_scores(logits, 1.0).tolist() == [1.0, 0.0]
    assert stability_scores(logits, 0.4).tolist() == [1.0, 0.5]
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 5], [50, 50, 60, 60]], float)
    assert box_nms(boxes, np.array([0.8, 0.9, 0.7, 0.1]), 0.7).tolist() == [1, 2, 3]  # IoU 0.9 goes, 0.5 stays
    cell = ((0, 0, 6, 6), np.ones((6, 6), bool))
    organelle = ((2, 2, 4, 4), np.ones((2, 2), bool))
    speck = ((5, 7, 6, 8), np.ones((1, 1), bool))
    lab = paint_masks([organelle, speck, cell], (6, 8), min_area=2)
    assert lab[3, 3] == 2 and lab[0, 0] == 1 and lab[5, 7] == 0  # organelle on top of the cell; speck dropped
    assert sorted(np.unique(lab).tolist()) == [0, 1, 2] and int((lab == 1).sum()) == 32


def test_link_sections_takes_mutual_best_matches_above_the_threshold():
    a = np.zeros((10, 10), np.uint32)
    b = np.zeros((10, 10), np.uint32)
    a[0:4, 0:4] = 1
    b[0:4, 1:5] = 7   # IoU 12/20 = 0.6 with 1
    a[6:10, 6:10] = 2
    b[6:10, 6:8] = 8  # IoU 0.5 with 2
    b[6:10, 8:10] = 9  # IoU 0.5 with 2 too: the tie goes to the smaller id
    assert link_sections(a, b, 0.3) == [(1, 7), (2, 8)]
    assert link_sections(a, b, 0.55) == [(1, 7)]
    assert link_sections(a, np.zeros_like(b), 0.3) == []


# --------------------------------------------------------------------- the 2D generator, oracle SAM
class _OracleSam:
    """SAM's interfaces as AutoMaskGenerator uses them; each point prompt answers with the object of
    the tile's truth under it (at the decoder's 4x-coarser resolution), predicted IoU 0.95."""

    img_size = 64

    def __init__(self, truth):
        self.truth = truth
        self.prompt_encoder = self
        self.mask_decoder = self._decode

    def get_dense_pe(self):
        return None

    def __call__(self, points, boxes):
        return points, None

    def _decode(self, feats, pe, sparse, dense, multimask=True):
        lab = feats[0, 0].numpy()
        coords = sparse[0][:, 0].numpy()
        low = np.full((len(coords), 3, 16, 16), -8.0, np.float32)
        for i, (x, y) in enumerate(coords):
            v = lab[min(int(y // 4), 15), min(int(x // 4), 15)]
            if v:
                low[i, :, lab == v] = 8.0
        return torch.as_tensor(low), torch.full((len(coords), 3), 0.95)


class _Oracle(PromptSegmenter):
    def __init__(self, truth):
        super().__init__(_OracleSam(truth), name="oracle", device="cpu")
        self.origin = {}

    def embed(self, tile):  # the tile's truth, resized as SAM resizes, at the decoder's resolution
        (y0, x0), (h, w) = self.where(tile), tile.shape
        nh, nw = self._resized(h, w)
        crop = self.sam.truth[y0 : y0 + h, x0 : x0 + w]
        lab = np.zeros((64, 64), np.float32)
        lab[:nh, :nw] = crop[((np.arange(nh) + 0.5) * h / nh).astype(int)][:, ((np.arange(nw) + 0.5) * w / nw).astype(int)]
        return Embedding(torch.as_tensor(lab[2::4, 2::4])[None, None], (h, w), (nh, nw))

    def where(self, tile):
        base = self.section.__array_interface__["data"][0]
        offset = tile.__array_interface__["data"][0] - base
        return divmod(offset // tile.itemsize, self.section.shape[1])

    def segment(self, gen, section):
        self.section = section
        return gen.segment(section)


def _discs(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.uint32)
    for k, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return lab


@pytest.mark.parametrize("tile", [64, 128])
def test_every_object_is_found_once_with_and_without_tiles(tile):
    truth = _discs((100, 120), [(12, 12), (30, 60), (50, 35), (80, 90), (70, 20), (40, 100)], 9)
    section = np.where(truth > 0, 60, 200).astype(np.uint8)
    oracle = _Oracle(truth)  # tile 128: one tile, resized to SAM's 64-pixel input; 64: six tiles
    settings = AutoMaskSettings(points_per_side=16, points_per_batch=50, min_area=10, tile=tile, overlap=32)
    gen = AutoMaskGenerator(oracle, settings)
    lab = oracle.segment(gen, section)
    assert lab.dtype == np.uint32 and lab.shape == truth.shape
    found = [k for k in np.unique(lab) if k]
    assert len(found) == 6  # each disc once: cut copies at inner tile edges dropped, duplicates removed
    for k in found:
        t = np.bincount(truth[lab == k]).argmax()
        inter = ((lab == k) & (truth == t)).sum()
        # one tile: the section is shrunk 1.9x to SAM's input and the decoder (and the oracle's answer) is
        # 4x coarser still: 7.5 section pixels per decoder pixel against discs of radius 9
        assert t > 0 and inter / ((lab == k) | (truth == t)).sum() > (0.8 if tile == 64 else 0.5)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="pred_iou_thresh must lie in"):
        AutoMaskSettings(pred_iou_thresh=1.5).checked()
    with pytest.raises(ValueError, match="points_per_side"):
        AutoMaskSettings(points_per_side=0).checked()
    with pytest.raises(ValueError, match="overlap must be smaller than tile"):
        AutoMaskSettings(tile=64, overlap=64).checked()


# ------------------------------------------------------------------------ the volume, exact segmenter
def _rods(shape=(8, 60, 70)):
    """Non-touching objects, each spanning several sections, drifting a little from section to section."""
    truth = np.zeros(shape, np.uint32)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for k, (z0, z1, cy, cx, r) in enumerate([(0, 8, 15, 15, 7), (1, 5, 40, 20, 6), (3, 8, 20, 50, 8),
                                             (0, 3, 45, 55, 5), (5, 8, 45, 55, 5)], start=1):
        for z in range(z0, min(z1, shape[0])):
            truth[z][(yy - cy - (z - z0)) ** 2 + (xx - cx) ** 2 <= r * r] = k
    image = np.where(truth > 0, 50, 190).astype(np.uint8)
    return image, truth


def _components(section):
    return ndi.label(section < 128)[0]


def _same_partition(a, b):
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_objects_are_linked_across_sections_into_3d_instances(tmp_path):
    image, truth = _rods()
    res = run_sections(_components, write_tiff(image, tmp_path / "img.tif", voxel_size=VS, progress=False),
                       tmp_path / "out.ome.zarr", {"model": "components"}, progress=False)
    vol = open_volume(res.labels, warn_missing_voxel_size=False)
    got = np.asarray(vol.data)
    assert vol.voxel_size == VS and got.dtype == np.uint32 and res.blocks == 8
    assert _same_partition(got, truth)  # objects 4 and 5 share x-y but a gap in z: two objects
    assert sorted(np.unique(got).tolist()) == list(range(6))  # consecutive ids
    assert got[0, 15, 15] == 1  # numbered in order of first appearance
    assert not any(samauto.ID_STRIDE <= v for v in np.unique(got))


def test_a_run_killed_at_any_step_resumes_to_the_same_result(tmp_path, monkeypatch):
    image, _ = _rods()
    img = write_tiff(image, tmp_path / "img.tif", voxel_size=VS, progress=False)
    whole = run_sections(_components, img, tmp_path / "whole.ome.zarr", {"model": "c"}, progress=False)
    expected = np.asarray(open_volume(whole.labels, warn_missing_voxel_size=False).data)

    calls = []

    def dies_at_section_5(section):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return _components(section)

    out = tmp_path / "out.ome.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_sections(dies_at_section_5, img, out, {"model": "c"}, progress=False)
    real_relabel = samauto._relabel

    def dies_while_numbering(arr, first, final, progress):  # after renumbering the first section
        sec = np.asarray(arr[0])
        todo = sec >= samauto.ID_STRIDE
        sec[todo] = final[np.searchsorted(first, sec[todo])]
        arr[0] = sec
        raise KeyboardInterrupt

    monkeypatch.setattr(samauto, "_relabel", dies_while_numbering)
    with pytest.raises(KeyboardInterrupt):
        run_sections(_components, img, out, {"model": "c"}, progress=False)
    assert (out / samauto.LINKS_FILE).is_file()
    monkeypatch.setattr(samauto, "_relabel", real_relabel)
    res = run_sections(_components, img, out, {"model": "c"}, progress=False)
    assert res.blocks_skipped == 8  # no section segmented twice
    np.testing.assert_array_equal(np.asarray(open_volume(res.labels, warn_missing_voxel_size=False).data), expected)
    with pytest.raises(ValueError, match="other parameters"):
        run_sections(_components, img, out, {"model": "c"}, link_iou=0.9, progress=False)
    again = run_sections(_components, img, out, {"model": "c"}, overwrite=True, progress=False)
    np.testing.assert_array_equal(np.asarray(open_volume(again.labels, warn_missing_voxel_size=False).data), expected)


# ------------------------------------------------------------------------ real loaders, tiny weights
@pytest.fixture
def tiny_sam(tmp_path):
    path = tmp_path / "tiny_sam.pt"
    torch.save(tiny_sam_state(seed=1), path)
    return path


QUICK = "points_per_side=4,pred_iou_thresh=0,stability_thresh=0,min_area=4"


def test_cli_sam_auto_with_a_checkpoint_file_then_measure(tmp_path, tiny_sam, capsys):
    image, _ = _rods((3, 60, 70))
    img = write_tiff(image, tmp_path / "img.tif", voxel_size=VS, progress=False)
    out = tmp_path / "objects.ome.zarr"
    argv = ["predict", "--model", f"sam-auto:{tiny_sam}", "--image", str(img), "--out", str(out),
            "--model-options", QUICK, "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert f"labels: {out}" in capsys.readouterr().out
    vol = open_volume(str(out), warn_missing_voxel_size=False)
    labels = np.asarray(vol.data)
    assert vol.voxel_size == VS and labels.shape == image.shape and labels.dtype == np.uint32 and labels.max() >= 1
    assert main(["measure", "--labels", str(out), "--out", str(tmp_path / "t.csv"), "--quiet"]) == 0
    rows = (tmp_path / "t.csv").read_text().strip().splitlines()
    assert len(rows) == len(np.unique(labels[labels > 0])) + 1
    tif = tmp_path / "objects.tif"  # the TIFF path of predict works the same
    assert main([*argv[:6], str(tif), *argv[7:]]) == 0
    np.testing.assert_array_equal(tifffile.imread(tif), labels)


def test_sam_auto_by_registry_name_through_the_tinyvit_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path / "cache"))
    man = tmp_path / "manifest.json"
    g.write_tiny_model("microsam_vit_t_em_organelles", man)
    image, _ = _rods((2, 40, 48))
    img = write_tiff(image.astype(np.uint16) * 100, tmp_path / "img.tif", voxel_size=VS, progress=False)
    res = predict_volume("sam-auto", img, tmp_path / "o.ome.zarr", device="cpu", progress=False,
                         model_options={"manifest_path": man, "points_per_side": 3, "pred_iou_thresh": 0,
                                   "stability_thresh": 0})
    assert res.parameters["model"] == "microsam_vit_t_em_organelles"
    assert res.parameters["intensity_range"] is not None  # 16-bit: one 8-bit mapping for the volume
    assert open_volume(res.labels, warn_missing_voxel_size=False).voxel_size == VS


def test_bad_requests_are_refused_before_any_work(tmp_path, tiny_sam, capsys):
    image, _ = _rods((2, 40, 48))
    img = write_tiff(image, tmp_path / "img.tif", voxel_size=VS, progress=False)
    base = ["predict", "--model", f"sam-auto:{tiny_sam}", "--image", str(img), "--device", "cpu", "--quiet"]
    cases = [
        (["--out", str(tmp_path / "a.ome.zarr"), "--probabilities"], "does not apply"),
        (["--out", str(tmp_path / "b.ome.zarr"), "--block", "1,32,32"], "does not apply"),
        (["--out", str(tmp_path / "c.ome.zarr"), "--model-options", "points=3"], "unknown sam-auto setting"),
        (["--out", str(tmp_path / "d.ome.zarr"), "--model-options", "link_iou=0"], "link_iou must lie in"),
        (["--out", str(tmp_path / "e.ome.zarr"), "--model-options", "tile"], "KEY=VALUE"),
        (["--out", str(img), "--overwrite"], "never writes where it reads"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not any(p.name.endswith(".ome.zarr") for p in tmp_path.iterdir())
    np.testing.assert_array_equal(tifffile.imread(img), image)
    with pytest.raises(ValueError, match="no voxel size"):
        predict_volume(f"sam-auto:{tiny_sam}", image, tmp_path / "f.ome.zarr", progress=False)
    assert main(["predict", "--model", str(tiny_sam.parent), "--image", str(img), "--out",
                 str(tmp_path / "g.ome.zarr"), "--model-options", "tile=64", "--quiet"]) == 2
    assert "use it with --model sam-auto" in capsys.readouterr().err
