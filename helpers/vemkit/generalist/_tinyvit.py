"""MobileSAM's TinyViT image encoder (SAM ``vit_t``), written for vemkit in the published layout.

Parameter names follow MobileSAM's checkpoints (``image_encoder.patch_embed.seq.0.c.weight``,
``image_encoder.layers.1.blocks.0.attn.attention_biases``, ``...local_conv.bn.running_var``,
``image_encoder.neck.0.weight`` ...). The architecture is TinyViT (Wu et al. 2022) as MobileSAM uses
it (Zhang et al. 2023): a convolutional patch embedding to 1/4, a stage of MBConv blocks, then three
stages of windowed attention blocks with learned relative-position biases and a depthwise "local"
convolution, patch merging between stages (stride 1 into the last stage, so the output grid is 1/16
of the input), and SAM's neck. The architecture is read from a checkpoint's tensor shapes
(:func:`tinyvit_config`); the input size is MobileSAM's 1024.

Not for: loading files or prompting (:mod:`._sam`); the prompt encoder and mask decoder are SAM's
(:mod:`._sam_net`).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinyViT", "tinyvit_config"]

_P = "image_encoder."


class Conv2dBN(nn.Sequential):
    def __init__(self, a, b, ks=1, stride=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(3, dim // 2, 3, 2, 1), nn.GELU(), Conv2dBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x):
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, dim, expand):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1, self.act1 = Conv2dBN(dim, hidden), nn.GELU()
        self.conv2, self.act2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU()
        self.conv3, self.act3 = Conv2dBN(hidden, dim), nn.GELU()

    def forward(self, x):
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(y + x)


class PatchMerging(nn.Module):
    def __init__(self, resolution, dim, out_dim, stride):
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x):
        if x.ndim == 3:
            h, w = self.resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm, self.fc1, self.fc2, self.act = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.GELU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Window attention with a learned bias per head and per (|dy|, |dx|) offset."""

    def __init__(self, dim, heads, window):
        super().__init__()
        self.heads, self.key_dim = heads, dim // heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets, idxs = {}, []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)), persistent=False)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.heads, -1)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3))
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1))


class TinyViTBlock(nn.Module):
    def __init__(self, dim, resolution, heads, window, mlp_ratio):
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x):
        h, w = self.resolution
        b, n, c = x.shape
        ws = self.window
        if h == ws and w == ws:
            y = self.attn(x)
        else:
            y = x.view(b, h, w, c)
            pb, pr = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pb or pr:
                y = F.pad(y, (0, 0, 0, pr, 0, pb))
            ph, pw = h + pb, w + pr
            nh, nw = ph // ws, pw // ws
            y = y.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            y = self.attn(y).view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            y = y[:, :h, :w].contiguous().view(b, n, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    def __init__(self, blocks, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT as MobileSAM's image encoder: (B, 3, S, S) -> (B, out_chans, S/16, S/16)."""

    def __init__(self, cfg: dict):
        super().__init__()
        dims, depths, heads, windows = cfg["embed_dims"], cfg["depths"], cfg["num_heads"], cfg["window_sizes"]
        self.img_size = cfg["img_size"]
        res = self.img_size // 4
        self.patch_embed = PatchEmbed(dims[0])
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            r = res // (2 ** (i - 1 if i == len(depths) - 1 else i))
            last = i == len(depths) - 1
            down = None if last else PatchMerging((r, r), dims[i], dims[i + 1], 1 if i + 1 == len(depths) - 1 else 2)
            if i == 0:
                blocks = [MBConv(dims[0], cfg["mbconv_expand"]) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dims[i], (r, r), heads[i], windows[i], cfg["mlp_ratio"]) for _ in range(depth)]
            self.layers.append(Stage(blocks, down))
        self.norm_head = nn.LayerNorm(dims[-1])  # unused: in the published checkpoints
        self.head = nn.Linear(dims[-1], cfg["num_classes"])
        out = cfg["out_chans"]
        from ._sam_net import LayerNorm2d

        self.neck = nn.Sequential(nn.Conv2d(dims[-1], out, 1, bias=False), LayerNorm2d(out),
                                  nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        g = self.img_size // 16
        return self.neck(x.view(x.shape[0], g, g, -1).permute(0, 3, 1, 2))


def tinyvit_config(state: dict) -> dict:
    """The TinyViT encoder's architecture read from a checkpoint's tensor shapes."""
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith(_P + "layers."))
    depths = [1 + max(int(k.split(".")[4]) for k in state if k.startswith(f"{_P}layers.{i}.blocks."))
              for i in range(n_layers)]
    dims = [int(state[_P + "patch_embed.seq.2.c.weight"].shape[0])]
    dims += [int(state[f"{_P}layers.{i}.downsample.conv1.c.weight"].shape[0]) for i in range(n_layers - 1)]
    heads, windows = [0], [0]
    for i in range(1, n_layers):
        bias = state[f"{_P}layers.{i}.blocks.0.attn.attention_biases"]
        heads.append(int(bias.shape[0]))
        windows.append(int(round(math.sqrt(bias.shape[1]))))
    return {
        "encoder": "tiny_vit", "img_size": 1024, "embed_dims": dims, "depths": depths, "num_heads": heads,
        "window_sizes": windows,
        "mlp_ratio": state[f"{_P}layers.1.blocks.0.mlp.fc1.weight"].shape[0] / dims[1],
        "mbconv_expand": state[f"{_P}layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0],
        "num_classes": int(state[_P + "head.weight"].shape[0]), "out_chans": int(state[_P + "neck.0.weight"].shape[0]),
    }
