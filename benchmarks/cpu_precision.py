"""bfloat16 against float32 on this CPU: training steps and whole-volume prediction, side by side.

vemkit's ``amp="auto"`` runs bfloat16 on a CPU with bfloat16 matrix units (Intel AMX) and float32
elsewhere. This script measures what that choice buys here, alternating the two precisions so that the
machine's noise hits both alike, and prints medians and ratios:

- training: seconds per step of ``finetune``'s inner loop (forward, masked cross-entropy + Dice,
  backward, AdamW) for the shipped 2D base model (batch 4 of 256 x 256, channels-last) and for the
  small anisotropic 3D U-Net (batch 2 of 32 x 128 x 128);
- prediction: ``predict_volume`` of ``em2d-small`` over the VNC ssTEM stack (20 x 1024 x 1024), million
  voxels per second, and the share of voxels whose labels agree between the two precisions.

Usage::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/cpu_precision.py [--repeats 3] [--skip-predict]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _train_step_seconds(net, shape, n_classes, amp, repeats, warmup=2):
    import torch

    from vemkit._precision import training_precision
    from vemkit.train import masked_losses

    dev = torch.device("cpu")
    _, dtype, fmt, _ = training_precision(amp, dev, len(shape) - 2)
    net = net.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).contiguous(memory_format=fmt)
    y = torch.randint(0, n_classes, (shape[0], *shape[2:]), generator=gen)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = net(x)
        loss = masked_losses(logits, y)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (medians are printed)")
    p.add_argument("--skip-predict", action="store_true", help="training steps only (no dataset needed)")
    args = p.parse_args(argv)
    import torch

    from vemkit._device import cpu_has_bf16_matrix_units
    from vemkit.models import UNet, load_model
    from vemkit.train import base_model_path

    print(f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; bfloat16 matrix units (AMX): {cpu_has_bf16_matrix_units()}")
    cases = [("2D em2d-small, batch 4 x 256^2", lambda: load_model(base_model_path("em2d-small")).network, (4, 1, 256, 256), 3),
             ("3D small anisotropic, batch 2 x 32x128^2",
              lambda: UNet(ndim=3, out_channels=3, base_channels=16, depth=4, voxel_size=(40, 5, 5)), (2, 1, 32, 128, 128), 3)]
    for name, make, shape, n_classes in cases:
        torch.manual_seed(0)
        net = make()
        state = {k: v.clone() for k, v in net.state_dict().items()}
        times = {"bf16": [], "float32": []}
        for _ in range(args.repeats):
            for amp, key in (("bf16", "bf16"), (False, "float32")):
                net.load_state_dict(state)
                times[key] += _train_step_seconds(net, shape, n_classes, amp, repeats=3)
        b, f = np.median(times["bf16"]), np.median(times["float32"])
        print(f"training {name}: bf16 {b:.3f} s/step, float32 {f:.3f} s/step, float32/bf16 = {f / b:.2f}x "
              f"(medians of {len(times['bf16'])} steps each)")
    if args.skip_predict:
        return
    from vemkit._volume import Volume
    from vemkit.datasets import load_dataset
    from vemkit.io import open_volume
    from vemkit.predict import predict_volume

    d = load_dataset("drosophila_vnc_sstem", progress=False)
    vol = Volume.from_array(np.asarray(d.image.data), voxel_size=d.image.voxel_size)
    model = load_model(base_model_path("em2d-small"))
    speed, labels = {"bf16": [], "float32": []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for amp, key in (("bf16", "bf16"), (False, "float32")):
                res = predict_volume(model, vol, Path(tmp) / f"{key}{rep}.ome.zarr", device="cpu", amp=amp, progress=False)
                speed[key].append(res.voxels_per_second / 1e6)
                labels[key] = np.asarray(open_volume(res.labels).data)
    b, f = np.median(speed["bf16"]), np.median(speed["float32"])
    agree = float((labels["bf16"] == labels["float32"]).mean())
    print(f"prediction em2d-small, VNC {vol.shape}: bf16 {b:.2f} M voxels/s {[round(v, 2) for v in speed['bf16']]}, "
          f"float32 {f:.2f} {[round(v, 2) for v in speed['float32']]}, bf16/float32 = {b / f:.2f}x; "
          f"labels agree on {agree:.2%} of voxels")


if __name__ == "__main__":
    main()
