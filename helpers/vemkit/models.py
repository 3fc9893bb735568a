"""U-Nets for EM segmentation and the model directory that carries one with everything it needs.

- :class:`UNet`: 2D, anisotropic 3D (no z pooling while z is coarser than xy, in-plane kernels at
  those levels) or isotropic 3D, plain or with a residual encoder, in a few sizes
  (:data:`UNET_SIZES`). BatchNorm, not instance or group norm: at inference its statistics are fixed,
  so a block's result does not depend on the block, and blockwise prediction is seam-free.
- :func:`plan_levels`: the kernel sizes and pooling factors of each level from the voxel size.
- :class:`SegmentationModel`: a network plus its classes, voxel size, intensity normalisation, halo
  and training record; saved as a model directory (``config.json``, ``weights.safetensors``,
  ``training.json``) and loaded back with :func:`load_model`.

Not for: training (:mod:`vemkit.train`) or running over volumes (:mod:`vemkit.predict`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from ._device import resolve_device
from ._modeldir import UNET_KIND, NotAModelDirectory, read_config
from ._outputs import check_model_directory

__all__ = [
    "MODEL_KIND",
    "ConvBlock",
    "UNET_SIZES",
    "SegmentationModel",
    "UNet",
    "load_model",
    "plan_levels",
]

MODEL_KIND = UNET_KIND

#: Default in-plane cap of the halo of a 3D network, in voxels (:meth:`SegmentationModel.default_halo`).
HALO_CAP = 32
#: The same for a 2D network: context is cheap in 2D, and on a VNC section the shipped 2D base changed
#: 0.32 % of its labels at block seams with a 32-voxel halo, 0.035 % with 64 (0 with its full 107).
HALO_CAP_2D = 64

#: Named sizes: (base channels, number of poolings).
UNET_SIZES = {"tiny": (8, 3), "small": (16, 4), "base": (32, 4)}


def plan_levels(voxel_size, depth: int, ndim: int = 3, isotropic: bool = False):
    """Kernel sizes and pooling factors per level, nnU-Net style.

    In 3D, a level whose z spacing is more than twice its in-plane spacing uses in-plane kernels
    ``(1, 3, 3)`` and pools only y and x; once pooling has brought the in-plane spacing close to z,
    the level uses ``(3, 3, 3)`` kernels and pools all three axes.

    Parameters
    ----------
    voxel_size : tuple of 3 float or None
        (z, y, x) in nm; None means isotropic.
    depth : int
        Number of poolings (levels - 1).
    ndim : {2, 3}
    isotropic : bool
        Ignore the voxel size and pool every axis at every level.

    Returns
    -------
    kernels : list of tuple
        ``depth + 1`` kernel sizes, finest level first.
    pools : list of tuple
        ``depth`` pooling factors.

    Examples
    --------
    >>> kernels, pools = plan_levels((50.0, 5.0, 5.0), depth=4)
    >>> pools
    [(1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2)]
    >>> kernels[0], kernels[-1]
    ((1, 3, 3), (3, 3, 3))
    >>> plan_levels(None, depth=2, ndim=2)
    ([(3, 3), (3, 3), (3, 3)], [(2, 2), (2, 2)])
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if ndim == 2:
        return [(3, 3)] * (depth + 1), [(2, 2)] * depth
    if voxel_size is None or isotropic:
        return [(3, 3, 3)] * (depth + 1), [(2, 2, 2)] * depth
    vz, vy, vx = (float(v) for v in voxel_size)
    vxy = min(vy, vx)
    kernels, pools = [], []
    for level in range(depth + 1):
        coarse_z = vz > 2 * vxy
        kernels.append((1, 3, 3) if coarse_z else (3, 3, 3))
        if level < depth:
            fz = 1 if vz > 1.5 * vxy else 2
            pools.append((fz, 2, 2))
            vz, vxy = vz * fz, vxy * 2
    return kernels, pools


class ConvBlock(nn.Module):
    """Two conv-BatchNorm-LeakyReLU layers; with ``residual`` the input is added back (1x1 projection
    when the channel count changes)."""

    def __init__(self, ndim, cin, cout, kernel, residual):
        super().__init__()
        Conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        Norm = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
        pad = tuple(k // 2 for k in kernel)
        self.conv1 = nn.Sequential(Conv(cin, cout, kernel, padding=pad, bias=False), Norm(cout))
        self.conv2 = nn.Sequential(Conv(cout, cout, kernel, padding=pad, bias=False), Norm(cout))
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.residual = residual
        self.skip = None
        if residual and cin != cout:
            self.skip = nn.Sequential(Conv(cin, cout, 1, bias=False), Norm(cout))

    def forward(self, x):
        y = self.act(self.conv1(x))
        y = self.conv2(y)
        if self.residual:
            y = y + (x if self.skip is None else self.skip(x))
        return self.act(y)


class UNet(nn.Module):
    """A U-Net for 2D sections or 3D (anisotropic or isotropic) volumes.

    Parameters
    ----------
    ndim : {2, 3}
    in_channels : int
    out_channels : int
        Logits per voxel: semantic classes (background first), then any extra targets.
    base_channels : int
        Channels of the first level; doubled at each level, at most ``max_channels``.
    depth : int
        Number of poolings.
    kernels, pools : list of tuple, optional
        Per-level kernel sizes and pooling factors (default: :func:`plan_levels` from ``voxel_size``).
    voxel_size : tuple of 3 float, optional
        Used only to plan the levels when ``kernels``/``pools`` are not given.
    residual : bool
        Residual encoder blocks.
    max_channels : int

    Notes
    -----
    Every input side must be a multiple of :attr:`divisor`; :mod:`vemkit.predict` pads blocks so.

    Examples
    --------
    >>> net = UNet(ndim=2, out_channels=3, base_channels=4, depth=2)
    >>> net.divisor
    (4, 4)
    >>> net(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 3, 32, 32])
    """

    def __init__(self, ndim: int = 3, in_channels: int = 1, out_channels: int = 2, base_channels: int = 16,
                 depth: int = 4, kernels=None, pools=None, voxel_size=None, residual: bool = False,
                 max_channels: int = 320):
        super().__init__()
        if kernels is None or pools is None:
            kernels, pools = plan_levels(voxel_size, depth, ndim)
        kernels = [tuple(int(k) for k in kk) for kk in kernels]
        pools = [tuple(int(p) for p in pp) for pp in pools]
        if len(kernels) != len(pools) + 1:
            raise ValueError(f"need one kernel size per level ({len(pools) + 1}), got {len(kernels)}")
        if any(len(k) != ndim for k in kernels) or any(len(p) != ndim for p in pools):
            raise ValueError(f"kernel sizes and pooling factors must have {ndim} entries each")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_channels", base_channels)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.ndim = int(ndim)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.base_channels, self.residual, self.max_channels = int(base_channels), bool(residual), int(max_channels)
        self.kernels, self.pools = kernels, pools
        depth = len(pools)
        channels = [min(self.base_channels * 2**i, self.max_channels) for i in range(depth + 1)]
        self.channels = channels
        Conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        ConvT = nn.ConvTranspose3d if ndim == 3 else nn.ConvTranspose2d
        Pool = nn.MaxPool3d if ndim == 3 else nn.MaxPool2d
        self.encoder = nn.ModuleList()
        cin = self.in_channels
        for level in range(depth + 1):
            self.encoder.append(ConvBlock(ndim, cin, channels[level], kernels[level], self.residual))
            cin = channels[level]
        self.down = nn.ModuleList(Pool(p, p) for p in pools)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            self.up.append(ConvT(channels[level + 1], channels[level], pools[level], stride=pools[level]))
            self.decoder.append(ConvBlock(ndim, 2 * channels[level], channels[level], kernels[level], False))
        self.head = Conv(channels[0], self.out_channels, 1)

    @property
    def divisor(self):
        """Every input side must be a multiple of this (product of the pooling factors per axis)."""
        out = np.ones(self.ndim, dtype=int)
        for p in self.pools:
            out *= np.asarray(p)
        return tuple(int(v) for v in out)

    def receptive_field(self):
        """Half-width (radius) of the receptive field per axis, in input voxels.

        An output voxel depends on no input voxel farther than this; a halo this wide makes blockwise
        prediction equal to whole-volume prediction (tested). Upper bound from the layer geometry.
        """
        width = np.zeros(self.ndim)  # receptive field width - 1, in input voxels
        jump = np.ones(self.ndim)
        for level, k in enumerate(self.kernels):
            width += 2 * (np.asarray(k) - 1) * jump  # two convolutions
            if level < len(self.pools):
                p = np.asarray(self.pools[level])
                width += (p - 1) * jump  # pooling window
                jump *= p
        for level in reversed(range(len(self.pools))):
            p = np.asarray(self.pools[level])
            jump /= p
            width += (p - 1) * jump  # transposed convolution
            width += 2 * (np.asarray(self.kernels[level]) - 1) * jump
        radius = np.ceil(width / 2)
        return tuple(int(np.ceil(r)) for r in radius)

    def config(self) -> dict:
        """Constructor arguments as plain JSON values (what :meth:`from_config` takes)."""
        return {
            "name": "UNet",
            "ndim": self.ndim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "base_channels": self.base_channels,
            "kernels": [list(k) for k in self.kernels],
            "pools": [list(p) for p in self.pools],
            "residual": self.residual,
            "max_channels": self.max_channels,
        }

    @classmethod
    def from_config(cls, config: dict) -> "UNet":
        """Build from :meth:`config`'s dictionary."""
        cfg = dict(config)
        name = cfg.pop("name", "UNet")
        if name != "UNet":
            raise ValueError(f"unknown architecture {name!r}; this version of vemkit builds 'UNet'")
        return cls(**cfg)

    def encode(self, x):
        """The encoder's output at every level, finest first (the last is the bottleneck)."""
        features = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            features.append(x)
            if level < len(self.down):
                x = self.down[level](x)
        return features

    def decode(self, features, *, return_features: bool = False):
        """Logits from :meth:`encode`'s features; with ``return_features`` also the last decoder
        feature map (what the 1x1 head sees), for adaptation methods that align it across domains."""
        skips = list(features[:-1])
        x = features[-1]
        for up, block in zip(self.up, self.decoder):
            x = up(x)
            x = block(torch.cat([x, skips.pop()], dim=1))
        logits = self.head(x)
        return (logits, x) if return_features else logits

    def forward(self, x):
        return self.decode(self.encode(x))


def _default_normalization():
    return {"mode": "percentile", "lower": 1.0, "upper": 99.0}


@dataclass
class SegmentationModel:
    """A network with what it takes to run it on a new volume.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (N, C, [Z,] Y, X) float input to (N, n_classes + extras, ...) logits.
    classes : list of str
        Semantic class names, background first (annotation value k + 1 is class k).
    voxel_size : tuple of 3 float, optional
        The voxel size (nm) it was trained at.
    normalization : dict
        How grey values become network input: ``{"mode": "percentile", "lower": 1, "upper": 99}``
        maps the volume's percentiles (estimated once per volume from a sample) to 0 and 1;
        ``{"mode": "fixed", "low": a, "high": b}`` maps a and b to 0 and 1;
        ``{"mode": "histogram", "levels": [...], "reference": [...]}`` maps the volume's grey-value
        percentiles at ``levels`` onto ``reference`` (histogram matching to the training data,
        :func:`vemkit.domain.match_histogram`).
    halo : tuple of int, optional
        Context per side for blockwise prediction, (z, y, x) (default:
        :meth:`default_halo`, the receptive-field radius capped at :data:`HALO_CAP_2D` or :data:`HALO_CAP` voxels).
    extra_targets : list of str
        Names of output channels after the classes (e.g. ``["boundary", "distance"]``).
    training : dict
        The training record (data hashes, plan, losses, time).
    target : dict, optional
        What the extra outputs mean when they are more than extra maps, e.g.
        ``{"kind": "affinities", "offsets": [[-1, 0, 0], ...]}`` for a neuron model
        (:mod:`vemkit.neurons`): :mod:`vemkit.cli` predicts such a model into instance labels.

    Examples
    --------
    >>> net = UNet(ndim=2, out_channels=2, base_channels=4, depth=2)
    >>> model = SegmentationModel(net, classes=["background", "mito"], voxel_size=(50.0, 5.0, 5.0))
    >>> model.ndim, model.n_classes, model.halo
    (2, 2, (0, 24, 24))
    """

    network: nn.Module
    classes: list
    voxel_size: tuple | None = None
    normalization: dict = field(default_factory=_default_normalization)
    halo: tuple | None = None
    extra_targets: list = field(default_factory=list)
    training: dict = field(default_factory=dict)
    target: dict | None = None

    def __post_init__(self):
        if len(self.classes) < 2:
            raise ValueError(f"a segmentation model needs at least 2 classes (background first), got {self.classes}")
        self.classes = [str(c) for c in self.classes]
        self.extra_targets = [str(t) for t in self.extra_targets]
        if self.voxel_size is not None:
            self.voxel_size = tuple(float(v) for v in self.voxel_size)
        out = getattr(self.network, "out_channels", None)
        if out is not None and out != self.n_classes + len(self.extra_targets):
            raise ValueError(f"the network has {out} output channels but {self.n_classes} classes and "
                             f"{len(self.extra_targets)} extra targets were given")
        mode = self.normalization.get("mode")
        if mode not in ("percentile", "fixed", "histogram"):
            raise ValueError(f"normalization mode must be 'percentile', 'fixed' or 'histogram', got {mode!r}")
        if mode == "histogram" and len(self.normalization.get("levels", ())) != len(self.normalization.get("reference", (1,))):
            raise ValueError("a 'histogram' normalization needs 'levels' (percent) and 'reference' values of equal length")
        if self.halo is None:
            self.halo = self.default_halo()
        self.halo = tuple(int(h) for h in self.halo)
        if len(self.halo) != 3:
            raise ValueError(f"halo must be (z, y, x), got {self.halo}")

    @property
    def ndim(self) -> int:
        return int(getattr(self.network, "ndim", 3))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(getattr(self.network, "in_channels", 1))

    @property
    def divisor(self):
        """(z, y, x) multiple every block side must have (z is 1 for 2D networks)."""
        d = tuple(getattr(self.network, "divisor", (1,) * self.ndim))
        return (1, *d) if self.ndim == 2 else d

    def default_halo(self, cap: int | None = None):
        """Context per side for blockwise prediction, (z, y, x): the receptive-field radius, at most
        ``cap`` voxels in-plane (default :data:`HALO_CAP_2D` for 2D networks, :data:`HALO_CAP` for 3D)
        and the same physical distance in z, rounded up to the divisor.

        A halo covering the whole receptive field makes blockwise output identical to whole-volume
        output; deep U-Nets see 100+ voxels away, and so much context costs more than it changes
        (far voxels weigh little), so the default caps it (see the README's seam figures).
        """
        if cap is None:
            cap = HALO_CAP_2D if self.ndim == 2 else HALO_CAP
        rf = self.network.receptive_field() if hasattr(self.network, "receptive_field") else (0,) * self.ndim
        rf = (0, *rf) if self.ndim == 2 else tuple(rf)
        vz, vy, vx = self.voxel_size or (1.0, 1.0, 1.0)
        caps = (max(1, int(np.ceil(cap * min(vy, vx) / vz))), cap, cap)
        return tuple(int(-(-min(r, c) // d) * d) for r, c, d in zip(rf, caps, self.divisor))

    def config(self) -> dict:
        """The JSON config of the model directory."""
        if not hasattr(self.network, "config"):
            raise TypeError("only networks with a config() method (vemkit.models.UNet) can be saved as a model directory")
        return {
            "kind": MODEL_KIND,
            "vemkit_version": __version__,
            "architecture": self.network.config(),
            "classes": list(self.classes),
            "extra_targets": list(self.extra_targets),
            "voxel_size": list(self.voxel_size) if self.voxel_size else None,
            "normalization": dict(self.normalization),
            "halo": list(self.halo),
            "divisor": list(self.divisor),
            "output": "logits: classes (softmax; labels = argmax, 0 = background), then extra targets",
            **({"target": dict(self.target)} if self.target else {}),
        }

    def fingerprint(self) -> str:
        """SHA-256 of the config and weights: two models with the same fingerprint predict the same."""
        h = hashlib.sha256(json.dumps({k: v for k, v in self.config().items() if k != "vemkit_version"},
                                      sort_keys=True).encode())
        for name, tensor in sorted(self.network.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save(self, model_dir, *, overwrite: bool = False, half: bool = False) -> Path:
        """Write the model directory: ``config.json``, ``weights.safetensors``, ``training.json``.

        Parameters
        ----------
        model_dir : str or Path
        overwrite : bool
            Replace the files of an existing, non-empty directory.
        half : bool
            Store float weights as float16 (half the size; for shipped base models).
        """
        from safetensors.torch import save_file

        model_dir = check_model_directory(model_dir, overwrite=overwrite)  # never a folder of other files
        model_dir.mkdir(parents=True, exist_ok=True)
        state = {}
        for name, tensor in self.network.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            if half and t.is_floating_point() and "running" not in name:
                t = t.half()
            state[name] = t
        save_file(state, str(model_dir / "weights.safetensors"))
        (model_dir / "config.json").write_text(json.dumps(self.config(), indent=1))
        (model_dir / "training.json").write_text(json.dumps(self.training, indent=1, default=str))
        return model_dir


def load_model(model_dir, device="cpu") -> SegmentationModel:
    """Load a model directory written by :meth:`SegmentationModel.save`.

    Parameters
    ----------
    model_dir : str or Path
    device : str or torch.device
        Where the weights go (``"auto"`` allowed).

    Raises
    ------
    ValueError
        If the directory is not a vemkit U-Net model directory.
    """
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    try:
        cfg = read_config(model_dir, kind=UNET_KIND)
    except NotAModelDirectory:
        raise NotAModelDirectory(f"{str(model_dir)!r} is not a model directory: it has no config.json") from None
    except ValueError as err:
        raise ValueError(f"not a vemkit U-Net ({UNET_KIND!r}): {err}") from None
    weights = model_dir / "weights.safetensors"
    if not weights.is_file():
        raise ValueError(f"{str(model_dir)!r} has no weights.safetensors")
    network = UNet.from_config(cfg["architecture"])
    state = load_file(str(weights))
    reference = network.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    network.load_state_dict(state)
    network.to(resolve_device(device)).eval()
    training_path = model_dir / "training.json"
    training = json.loads(training_path.read_text()) if training_path.is_file() else {}
    return SegmentationModel(
        network,
        classes=cfg["classes"],
        voxel_size=tuple(cfg["voxel_size"]) if cfg.get("voxel_size") else None,
        normalization=cfg.get("normalization") or _default_normalization(),
        halo=tuple(cfg["halo"]) if cfg.get("halo") else None,
        extra_targets=cfg.get("extra_targets", []),
        training=training,
        target=cfg.get("target"),
    )
