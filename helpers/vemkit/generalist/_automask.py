"""Automatic SAM: every object of a section from a grid of point prompts (what ``sam-auto`` runs).

:class:`AutoMaskGenerator` prompts a :class:`~._sam.PromptSegmenter` with a regular grid of single
points over each tile of a section, keeps the masks SAM itself trusts (predicted IoU and stability:
the mask barely changes when its logit threshold moves by ``stability_offset``), removes duplicates
by box non-maximum suppression within and across tiles, and paints what is left into one label image
(large masks first, so an organelle inside a cell stays its own object). The recipe is the one the
Segment Anything paper describes for its automatic mask generation (Kirillov et al. 2023, section
"automatic mask generation"; thresholds 0.88 / 0.95 / 0.7 are the published defaults); the code is
vemkit's own. Differences, chosen for CPU time: scores, stability and boxes are computed on the
decoder's low-resolution logits (256 x 256 for a 1024-pixel tile) and only the masks that survive
are upsampled to full resolution; sections are cut into tiles of SAM's input size (default 1024
pixels, 128 overlap) instead of SAM's multi-scale crops, so small organelles keep their pixels.

Not for: whole volumes (:func:`vemkit.predict.predict_volume` with ``model="sam-auto"``, which runs
this section by section and links the objects across sections), prompts from a user (:meth:`PromptSegmenter.predict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._checks import check_number, check_positive_int

__all__ = ["AutoMaskSettings", "AutoMaskGenerator", "box_nms", "stability_scores", "paint_masks"]


@dataclass(frozen=True)
class AutoMaskSettings:
    """How :class:`AutoMaskGenerator` finds the objects of a section.

    Attributes
    ----------
    points_per_side : int
        The prompt grid per tile (``n x n`` single positive points).
    points_per_batch : int or None
        Prompts decoded together (default: 16 on a CPU, where larger batches were slower per prompt
        (109 against 181 ms with vit_t at 16 and 64), 64 elsewhere).
    pred_iou_thresh : float
        Keep a mask only when SAM's own predicted IoU exceeds this (0 keeps all).
    stability_thresh : float
        Keep a mask only when its stability score is at least this (0 keeps all).
    stability_offset : float
        The logit offset of the stability score.
    nms_iou : float
        Of two masks whose boxes overlap by more than this IoU, the lower-scored goes.
    min_area : int
        Masks (and what is left of them once painted) smaller than this many pixels are dropped.
    tile : int
        Tile side in pixels (SAM's input size is 1024; a section larger than this is tiled).
    overlap : int
        Overlap of neighbouring tiles in pixels (a mask cut by a tile's inner edge is dropped there
        and found whole by the neighbour).

    Examples
    --------
    >>> AutoMaskSettings(points_per_side=16).checked().points_per_side
    16
    >>> AutoMaskSettings(tile=100, overlap=100).checked()
    Traceback (most recent call last):
    ...
    ValueError: overlap must be smaller than tile (got overlap 100, tile 100)
    """

    points_per_side: int = 32
    points_per_batch: int | None = None
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    stability_offset: float = 1.0
    nms_iou: float = 0.7
    min_area: int = 25
    tile: int = 1024
    overlap: int = 128

    def checked(self) -> "AutoMaskSettings":
        """These settings, validated (a clear ValueError naming the bad one)."""
        check_positive_int(self.points_per_side, "points_per_side")
        if self.points_per_batch is not None:
            check_positive_int(self.points_per_batch, "points_per_batch")
        for name in ("pred_iou_thresh", "stability_thresh", "nms_iou"):
            v = check_number(getattr(self, name), name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        if check_number(self.stability_offset, "stability_offset") < 0:
            raise ValueError(f"stability_offset must be >= 0, got {self.stability_offset}")
        check_positive_int(self.min_area, "min_area", minimum=0)
        check_positive_int(self.tile, "tile", minimum=16)
        check_positive_int(self.overlap, "overlap", minimum=0)
        if self.overlap >= self.tile:
            raise ValueError(f"overlap must be smaller than tile (got overlap {self.overlap}, tile {self.tile})")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def stability_scores(logits: np.ndarray, offset: float) -> np.ndarray:
    """Per mask (first axis), the IoU of the mask thresholded at ``+offset`` with the one at ``-offset``
    (the first lies inside the second, so it is a ratio of areas); 0 for a mask empty at ``-offset``.

    Examples
    --------
    >>> logits = np.array([[[3.0, 3.0], [-3.0, -3.0]], [[0.5, 3.0], [-0.5, -3.0]]])
    >>> stability_scores(logits, 1.0).tolist()
    [1.0, 0.3333333333333333]
    """
    flat = logits.reshape(len(logits), -1)
    inner = (flat > offset).sum(1)
    outer = (flat > -offset).sum(1)
    return np.where(outer > 0, inner / np.maximum(outer, 1), 0.0)


def _boxes(masks: np.ndarray) -> np.ndarray:
    """(y0, x0, y1, x1) half-open boxes of boolean masks (N, H, W); an empty mask gives zeros."""
    rows, cols = masks.any(2), masks.any(1)
    out = np.zeros((len(masks), 4), np.float64)
    for i in range(len(masks)):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if len(ys):
            out[i] = ys[0], xs[0], ys[-1] + 1, xs[-1] + 1
    return out


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression (highest score first; ties by
    index), in that order.

    Examples
    --------
    >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    >>> box_nms(b, np.array([0.9, 0.95, 0.5]), 0.7).tolist()
    [1, 2]
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), i))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    suppressed = np.zeros(len(boxes), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        y0 = np.maximum(boxes[i, 0], boxes[:, 0])
        x0 = np.maximum(boxes[i, 1], boxes[:, 1])
        y1 = np.minimum(boxes[i, 2], boxes[:, 2])
        x1 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
        union = area[i] + area - inter
        suppressed |= np.where(union > 0, inter / np.where(union > 0, union, 1), 0) > iou
    return np.array(keep, dtype=np.int64)


@dataclass
class _Mask:
    box: tuple          # (y0, x0, y1, x1) in section pixels, half-open
    mask: np.ndarray    # bool, the box's crop
    score: float
    stability: float

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def paint_masks(masks, shape, min_area: int = 0) -> np.ndarray:
    """One label image (uint32, 0 = none) from masks given as ``(box, cropped bool mask)``: the largest
    first, so that a smaller mask inside a larger one stays visible; then objects left with fewer than
    ``min_area`` pixels are removed and the ids made consecutive, in painting order.

    Examples
    --------
    >>> big = ((0, 0, 4, 4), np.ones((4, 4), bool))
    >>> small = ((1, 1, 3, 3), np.ones((2, 2), bool))
    >>> paint_masks([small, big], (4, 5)).tolist()[1]
    [1, 2, 2, 1, 0]
    """
    labels = np.zeros(shape, np.uint32)
    order = sorted(range(len(masks)), key=lambda i: -int(np.asarray(masks[i][1]).sum()))
    for k, i in enumerate(order, start=1):
        (y0, x0, y1, x1), m = masks[i]
        view = labels[y0:y1, x0:x1]
        view[np.asarray(m, bool)] = k
    counts = np.bincount(labels.ravel(), minlength=len(masks) + 1)
    keep = counts >= max(int(min_area), 1)
    keep[0] = False
    lut = np.zeros(len(counts), np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]


def _tile_starts(size: int, tile: int, overlap: int) -> list:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


class AutoMaskGenerator:
    """Every object SAM finds in a section, without prompts from a user.

    Parameters
    ----------
    segmenter : PromptSegmenter
        From :func:`vemkit.generalist.load_sam` (micro-sam's EM organelle models find organelles;
        the original SAM finds everything).
    settings : AutoMaskSettings, optional

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> import torch
    >>> from vemkit.generalist import load_sam
    >>> from vemkit.generalist._sam import tiny_sam_state  # random weights: shapes only
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.pt"); torch.save(tiny_sam_state(), path)
    >>> gen = AutoMaskGenerator(load_sam(path, device="cpu"),
    ...                         AutoMaskSettings(points_per_side=4, pred_iou_thresh=0, stability_thresh=0))
    >>> gen.segment(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)).shape
    (40, 50)
    """

    def __init__(self, segmenter, settings: AutoMaskSettings | None = None):
        self.segmenter = segmenter
        self.settings = (settings or AutoMaskSettings()).checked()

    def segment(self, section) -> np.ndarray:
        """The label image (uint32, 0 = no object) of one 2D section (grey values; 8-bit is used as
        is, anything else min-max scaled per tile: map a volume to 8 bits first for equal contrast)."""
        section = np.asarray(section)
        if section.ndim != 2:
            raise ValueError(f"a section must be 2D (y, x), got shape {section.shape}")
        masks = self.masks(section)
        return paint_masks([(m.box, m.mask) for m in masks], section.shape, self.settings.min_area)

    def masks(self, section) -> list:
        """The kept masks of a section (box, cropped mask, score, stability), after NMS across tiles."""
        s = self.settings
        h, w = section.shape
        found = []
        ys, xs = _tile_starts(h, s.tile, s.overlap), _tile_starts(w, s.tile, s.overlap)
        for y0 in ys:
            for x0 in xs:
                tile = section[y0 : y0 + s.tile, x0 : x0 + s.tile]
                inner = (y0 > 0, x0 > 0, y0 + tile.shape[0] < h, x0 + tile.shape[1] < w)
                found += self._tile_masks(tile, (y0, x0), inner)
        if len(ys) * len(xs) > 1 and found:
            keep = box_nms(np.array([m.box for m in found], float), np.array([m.score for m in found]), s.nms_iou)
            found = [found[i] for i in keep]
        return found

    def _tile_masks(self, tile, origin, inner_edges) -> list:
        import torch

        s, seg = self.settings, self.segmenter
        emb = seg.embed(tile)
        h, w = emb.original_size
        nh, nw = emb.input_size
        grid = (np.arange(s.points_per_side) + 0.5) / s.points_per_side
        yx = np.stack(np.meshgrid(grid * h, grid * w, indexing="ij"), -1).reshape(-1, 2)
        xy = np.stack([yx[:, 1] * nw / w, yx[:, 0] * nh / h], 1)
        feats = torch.as_tensor(emb.features, device=seg.device)
        pe = seg.sam.prompt_encoder.get_dense_pe()
        kept, crops, scores, stab = [], [], [], []
        batch = s.points_per_batch or (16 if torch.device(seg.device).type == "cpu" else 64)
        with torch.inference_mode():
            for a in range(0, len(xy), batch):
                pts = torch.as_tensor(xy[a : a + batch], dtype=torch.float32, device=seg.device)[:, None]
                lab = torch.ones(pts.shape[:2], dtype=torch.float32, device=seg.device)
                sparse, dense = seg.sam.prompt_encoder((pts, lab), None)
                low, iou = seg.sam.mask_decoder(feats, pe, sparse, dense, multimask=True)
                size = low.shape[-1]  # the low-resolution grid covers the padded input square
                ly, lx = -(-nh * size // seg.image_size), -(-nw * size // seg.image_size)
                low, iou = low.flatten(0, 1).float(), iou.flatten().float().cpu().numpy()
                crop = low[:, :ly, :lx].cpu().numpy()
                st = stability_scores(crop, s.stability_offset)
                ok = (iou > s.pred_iou_thresh) & (st >= s.stability_thresh) & (crop > 0).reshape(len(crop), -1).any(1)
                idx = np.flatnonzero(ok)  # only these are kept: a batch of 64 prompts gives 192 masks
                kept.append(low[torch.as_tensor(idx, dtype=torch.long, device=low.device)].cpu())
                crops.append(crop[idx])
                scores.append(iou[idx])
                stab.append(st[idx])
        crops, scores, stab = np.concatenate(crops), np.concatenate(scores), np.concatenate(stab)
        if not len(crops):
            return []
        kept = torch.cat(kept)
        ly, lx = crops.shape[1:]
        boxes = _boxes(crops > 0) * np.array([h / ly, w / lx, h / ly, w / lx])
        out = []
        for i in box_nms(boxes, scores, s.nms_iou):
            full = seg._upsample(kept[i][None, None], (nh, nw), (h, w))  # as a prompted mask: SAM's resizing
            if full.sum() < max(s.min_area, 1):
                continue
            rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
            y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            # a mask cut by an edge shared with another tile is that tile's to find whole
            if (inner_edges[0] and y0 == 0) or (inner_edges[1] and x0 == 0) or \
                    (inner_edges[2] and y1 == h) or (inner_edges[3] and x1 == w):
                continue
            oy, ox = origin
            out.append(_Mask((int(oy + y0), int(ox + x0), int(oy + y1), int(ox + x1)), full[y0:y1, x0:x1],
                             float(scores[i]), float(stab[i])))
        return out
