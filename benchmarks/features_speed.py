"""vemkit.features vs scikit-image's multiscale_basic_features on one 1024 x 1024 EM section (CPU).

Reproduce (from the repository root)::

    python benchmarks/features_speed.py                 # torch's default thread count
    python benchmarks/features_speed.py --threads 1     # one core each

Compared, all at scales from 0.7 to 5 pixels:

- vemkit, the default config: the ilastik set (Gaussian, LoG, gradient magnitude, DoG, structure-tensor
  and Hessian eigenvalues) at 0.7, 1.0, 1.6, 3.5, 5.0 = 40 channels;
- vemkit, the feature kinds scikit-image computes (Gaussian, gradient magnitude, Hessian eigenvalues)
  at the same 5 scales = 20 channels;
- scikit-image intensity + edges + texture with ``num_sigma=5`` (same 5-scale range, 20 channels) and
  with its default ``num_sigma`` (3 scales, 12 channels).

The methods run round-robin (one call of each per round, after a warm-up round) so that a change in
machine load hits all of them alike; medians of the rounds are printed, wall and CPU time (all threads).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECTION = ROOT.parent / "shared" / "data" / "drosophila_vnc_sstem" / "stack1" / "raw" / "00.tif"


def load_section():
    """A real 1024 x 1024 ssTEM section, or a synthetic one (said so) when the data is absent."""
    if SECTION.exists():
        import tifffile

        img = tifffile.imread(SECTION)
        if img.ndim == 3:
            img = img[0]
        return img[:1024, :1024], f"{SECTION.name} from {SECTION.parent} ({img.dtype})"
    rng = np.random.default_rng(0)
    return (rng.random((1024, 1024)) * 255).astype(np.uint8), "SYNTHETIC random section (real data not found)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    args = parser.parse_args(argv)

    import torch
    from skimage.feature import multiscale_basic_features

    from vemkit.features import FeatureConfig, compute_features

    if args.threads:
        torch.set_num_threads(args.threads)
    img, source = load_section()
    print(f"section: {source}, shape {img.shape}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")

    def skimage(**extra):
        return lambda: np.moveaxis(multiscale_basic_features(
            img, intensity=True, edges=True, texture=True, sigma_min=0.7, sigma_max=5.0,
            channel_axis=None, **extra), -1, 0)

    full = FeatureConfig()
    same_kind = FeatureConfig(features=("gaussian", "ggm", "hoge"))
    methods = {
        "vemkit default (2d, all 6 kinds, 5 scales)": lambda: compute_features(img, full, device="cpu"),
        "vemkit gaussian+ggm+hoge (5 scales)": lambda: compute_features(img, same_kind, device="cpu"),
        "skimage num_sigma=5 (5 scales)": skimage(num_sigma=5),
        "skimage default num_sigma (3 scales)": skimage(),
    }
    n_feat = {name: fn().shape[0] for name, fn in methods.items()}  # warm-up round
    walls = {name: [] for name in methods}
    cpus = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - w)
            cpus[name].append(time.process_time() - c)
    wall = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    for name in methods:
        print(f"{name:45s} {n_feat[name]:3d} features  {wall[name]:.3f} s wall  {cpu[name]:.3f} s CPU")
    names = list(methods)
    for vk, sk in [(names[0], names[2]), (names[0], names[3]), (names[1], names[2])]:
        print(f"skimage/vemkit: {sk} / {vk}: {wall[sk] / wall[vk]:.2f}x wall, {cpu[sk] / cpu[vk]:.2f}x CPU "
              f"({n_feat[vk]} vs {n_feat[sk]} features)")


if __name__ == "__main__":
    main()
