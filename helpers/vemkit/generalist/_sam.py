"""Segment Anything (SAM, micro-sam's EM organelle models) from the published state-dict layout.

:func:`load_sam` reads a checkpoint in SAM's published layout (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``; micro-sam's files may wrap it in ``model_state`` with a
``sam.`` prefix) with ``torch.load(weights_only=True)`` (no code runs), infers the architecture from
the tensor shapes (so a tiny test checkpoint and vit_b load through the same code) and builds it
with vemkit's own network code in the published module layout (:mod:`._sam_net`).
:class:`PromptSegmenter` embeds a section once and turns point and box prompts into masks with
SAM's pre- and post-processing (long side resized to the encoder's input, pixel mean and std,
padding; mask logits upsampled back and thresholded at 0).

vit_t (MobileSAM's TinyViT encoder, micro-sam's vit_t models) builds with :mod:`._tinyvit`.

Not for: automatic whole-volume segmentation (:mod:`vemkit.predict`), the Annotator's prompt mode (:mod:`vemkit._prompt`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .._device import resolve_device
from ._registry import manifest_weights

__all__ = ["load_sam", "sam_config", "PromptSegmenter", "Embedding", "to_rgb8"]

def _state_dict(path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model_state" in state:  # micro-sam / torch-em training checkpoints
        state = state["model_state"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a SAM state dict (found {type(state).__name__})")
    return {(k[4:] if k.startswith("sam.") else k): v for k, v in state.items()}


def sam_config(state: dict) -> dict:
    """The architecture of a SAM checkpoint (ViT or MobileSAM's TinyViT encoder), read from its tensor
    shapes. Raises ValueError for a file that is not SAM in the published layout."""
    try:
        if "image_encoder.patch_embed.seq.0.c.weight" in state:  # MobileSAM / micro-sam vit_t
            from ._tinyvit import tinyvit_config  # torch, imported on first use

            cfg = tinyvit_config(state)
            cfg["prompt_dim"] = cfg["out_chans"]
        else:
            cfg = _vit_config(state)
        return {**cfg, **_decoder_config(state)}
    except (KeyError, ValueError) as err:
        raise ValueError(f"not a SAM state dict in the published layout: no tensor {err}") from None


def _vit_config(state: dict) -> dict:
    proj = state["image_encoder.patch_embed.proj.weight"]
    embed, patch = int(proj.shape[0]), int(proj.shape[-1])
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
    grid = int(state["image_encoder.pos_embed"].shape[1])
    head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
    rel = [int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)]
    return {
        "encoder": "vit", "img_size": grid * patch, "patch_size": patch, "embed_dim": embed, "depth": depth,
        "num_heads": embed // head_dim, "global_attn_indexes": [i for i, r in enumerate(rel) if r == 2 * grid - 1],
        "window_size": next(((r + 1) // 2 for r in rel if r != 2 * grid - 1), 14),
        "mlp_ratio": state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed,
        "prompt_dim": int(state["image_encoder.neck.0.weight"].shape[0]),
    }


def _decoder_config(state: dict) -> dict:
    layers = [k for k in state if k.startswith("mask_decoder.transformer.layers.")]
    if not layers:
        raise KeyError("mask_decoder.transformer.layers.*")
    return {
        "decoder_depth": 1 + max(int(k.split(".")[3]) for k in layers),
        "decoder_mlp_dim": int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
        "decoder_heads": 8, "multimask_outputs": int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        "iou_hidden": int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
    }


def _build(cfg: dict):
    from ._sam_net import build_sam  # torch, imported on first use

    return build_sam(cfg)


def load_sam(model="microsam_vit_b_em_organelles", *, device="auto", manifest_path=None, progress=True):
    """A :class:`PromptSegmenter` for a SAM model of the manifest or a checkpoint file.

    Parameters
    ----------
    model : str or path
        A model name of the manifest (``sam_vit_b``, ``microsam_vit_b_em_organelles`` ...; fetched and
        verified on first use) or the path of a checkpoint in SAM's published state-dict layout.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    """
    if isinstance(model, (str, os.PathLike)) and os.path.isfile(model):
        path, name = model, os.path.basename(str(model))
    else:
        path, name, entry = manifest_weights(model, "sam", "SAM", progress=progress, manifest_path=manifest_path)
    state = _state_dict(path)
    net = _build(sam_config(state))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not SAM's published layout (missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})")
    dev = resolve_device(device)
    return PromptSegmenter(net.to(dev).eval(), name=name, device=dev)


def to_rgb8(section) -> np.ndarray:
    """A grey section as SAM's input: 8-bit (min-max scaled unless already uint8), 3 equal channels."""
    a = np.asarray(section)
    if a.ndim != 2:
        raise ValueError(f"a section must be 2D (y, x), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return np.repeat(a[..., None], 3, axis=2)


@dataclass
class Embedding:
    """A section's image embedding: what every prompt on it reuses."""

    features: np.ndarray  # (1, C, h, w) float32
    original_size: tuple
    input_size: tuple

    def save(self, path) -> None:
        np.savez(path, features=self.features, original_size=self.original_size, input_size=self.input_size)

    @classmethod
    def load(cls, path) -> "Embedding":
        with np.load(path) as z:
            return cls(z["features"], tuple(int(v) for v in z["original_size"]), tuple(int(v) for v in z["input_size"]))


class PromptSegmenter:
    """A SAM network that embeds a section once and answers point and box prompts with masks."""

    def __init__(self, sam, *, name="sam", device=None):
        self.sam = sam
        self.name = name
        self.device = device if device is not None else next(sam.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.sam.img_size)

    @staticmethod
    def load_embedding(path) -> Embedding:
        """An embedding saved with :meth:`Embedding.save` (the Annotator's disk cache)."""
        return Embedding.load(path)

    def _resized(self, h, w) -> tuple:
        scale = self.image_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def embed(self, section) -> Embedding:
        """The embedding of one 2D section (grey, any dtype): resized so its long side is the
        encoder's input size, normalised with SAM's pixel mean and std, padded, encoded."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        rgb = to_rgb8(section)
        h, w = rgb.shape[:2]
        nh, nw = self._resized(h, w)
        resized = np.array(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        x = (x - self.sam.pixel_mean) / self.sam.pixel_std
        x = F.pad(x, (0, self.image_size - nw, 0, self.image_size - nh))
        with torch.inference_mode():
            feats = self.sam.image_encoder(x).float().cpu().numpy()
        return Embedding(feats, (h, w), (nh, nw))

    def predict(self, embedding: Embedding, points=None, labels=None, box=None, multimask=True):
        """The best mask for the prompts: ``(mask (H, W) bool, predicted IoU)``.

        ``points`` are ``(y, x)`` pixel positions in the section, ``labels`` 1 (object) or 0 (not the
        object); ``box`` is ``(y0, x0, y1, x1)``. A prompt outside the section is a ValueError.
        """
        import torch

        h, w = embedding.original_size
        nh, nw = embedding.input_size
        sy, sx = nh / h, nw / w
        dev = self.device
        pts = box_t = None
        if points is not None and len(points):
            yx = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            lab = np.ones(len(yx), int) if labels is None else np.asarray(labels, int).reshape(-1)
            if len(lab) != len(yx) or not set(lab.tolist()) <= {0, 1}:
                raise ValueError("labels must give 1 (object) or 0 (background) for each point")
            _inside(yx, h, w, "point")
            xy = np.stack([yx[:, 1] * sx, yx[:, 0] * sy], axis=1)
            pts = (torch.as_tensor(xy, dtype=torch.float32, device=dev)[None],
                   torch.as_tensor(lab, dtype=torch.float32, device=dev)[None])
        if box is not None:
            b = np.asarray(box, dtype=np.float64).reshape(4)
            _inside(b.reshape(2, 2), h + 1, w + 1, "box corner")
            xyxy = [min(b[1], b[3]) * sx, min(b[0], b[2]) * sy, max(b[1], b[3]) * sx, max(b[0], b[2]) * sy]
            box_t = torch.as_tensor(xyxy, dtype=torch.float32, device=dev)[None]
        if pts is None and box_t is None:
            raise ValueError("give at least one point or a box")
        with torch.inference_mode():
            sparse, dense = self.sam.prompt_encoder(pts, box_t)
            feats = torch.as_tensor(embedding.features, device=dev)
            low, iou = self.sam.mask_decoder(feats, self.sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                             multimask=bool(multimask))
            best = int(iou[0].argmax())
            mask = self._upsample(low[:, best : best + 1], (nh, nw), (h, w))
        return mask, float(iou[0, best])

    def _upsample(self, low, input_size, original_size) -> np.ndarray:
        import torch.nn.functional as F

        m = F.interpolate(low, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        m = m[..., : input_size[0], : input_size[1]]
        m = F.interpolate(m, original_size, mode="bilinear", align_corners=False)
        return (m[0, 0] > 0).cpu().numpy()


def _inside(pts: np.ndarray, h, w, what) -> None:
    bad = (pts[:, 0] < 0) | (pts[:, 0] >= h) | (pts[:, 1] < 0) | (pts[:, 1] >= w) | ~np.isfinite(pts).all(1)
    if bad.any():
        raise ValueError(f"{what} {pts[bad][0].tolist()} (y, x) lies outside the section of {h} x {w} pixels")


def tiny_sam_state(embed_dim=16, depth=2, img_size=64, patch_size=8, prompt_dim=32, seed=0) -> dict:
    """A random SAM in the published state-dict layout with tiny widths (tests, benchmarks, demos)."""
    import torch

    torch.manual_seed(seed)
    grid = img_size // patch_size
    cfg = {"encoder": "vit", "img_size": img_size, "patch_size": patch_size, "embed_dim": embed_dim, "depth": depth,
           "num_heads": max(1, embed_dim // 8), "global_attn_indexes": [depth - 1], "window_size": max(2, grid // 2),
           "mlp_ratio": 4.0, "prompt_dim": prompt_dim, "decoder_depth": 2, "decoder_mlp_dim": 2 * prompt_dim,
           "decoder_heads": 8, "multimask_outputs": 3, "iou_hidden": prompt_dim}
    net = _build(cfg)
    return {k: v.clone() for k, v in net.state_dict().items()}


def sam_state_for(arch: str, seed=0) -> dict:
    """A random SAM of a published size (``vit_b``) in the published layout (benchmarks)."""
    import torch

    torch.manual_seed(seed)
    if arch == "vit_t":
        return _build({**_TINYVIT, **_SAM_DECODER}).state_dict()
    if arch != "vit_b":
        raise ValueError(f"arch must be 'vit_t' or 'vit_b', got {arch!r}")
    cfg = {"encoder": "vit", "img_size": 1024, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
           "global_attn_indexes": [2, 5, 8, 11], "window_size": 14, "mlp_ratio": 4.0, "prompt_dim": 256,
           "decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_heads": 8, "multimask_outputs": 3, "iou_hidden": 256}
    return _build(cfg).state_dict()



#: MobileSAM's vit_t encoder (its build_sam_vit_t) and SAM's mask decoder, as published.
_TINYVIT = {"encoder": "tiny_vit", "img_size": 1024, "embed_dims": [64, 128, 160, 320], "depths": [2, 2, 6, 2],
            "num_heads": [2, 4, 5, 10], "window_sizes": [7, 7, 14, 7], "mlp_ratio": 4.0, "mbconv_expand": 4.0,
            "num_classes": 1000, "out_chans": 256, "prompt_dim": 256}
_SAM_DECODER = {"decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_heads": 8, "multimask_outputs": 3, "iou_hidden": 256}


def tiny_tinyvit_state(seed=0) -> dict:
    """A random MobileSAM (vit_t) in the published layout with tiny widths (tests)."""
    import torch

    torch.manual_seed(seed)
    cfg = {"encoder": "tiny_vit", "img_size": 1024, "embed_dims": [8, 16, 16, 24], "depths": [1, 1, 1, 1],
           "num_heads": [1, 2, 2, 3], "window_sizes": [7, 7, 14, 7], "mlp_ratio": 2.0, "mbconv_expand": 2.0,
           "num_classes": 10, "out_chans": 32, "prompt_dim": 32,
           "decoder_depth": 2, "decoder_mlp_dim": 64, "decoder_heads": 8, "multimask_outputs": 3, "iou_hidden": 32}
    return {k: v.clone() for k, v in _build(cfg).state_dict().items()}
