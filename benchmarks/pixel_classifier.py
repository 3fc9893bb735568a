"""Random-forest pixel classification of mitochondria on the real VNC ssTEM data: vemkit's features
beside scikit-image's ``multiscale_basic_features``, with the same random forest.

Scribbles are made from the ground truth of two sections (as a user would paint them), the forest is
trained on those voxels only, and the other 18 sections are predicted and scored (IoU of the
mitochondria class). Printed: IoU of each, feature time per 1024 x 1024 section (median over sections
and repeats), and the ratio skimage / vemkit, for vemkit's default set (40 channels: the ilastik set)
and for "vemkit-20", the same kinds as skimage's (Gaussian, gradient, Hessian eigenvalues; 20 channels).

Run from the project root (the data comes from the manifest; offline, point VEMKIT_DATA_DIR at a folder
holding it, e.g. ../shared/data)::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/pixel_classifier.py [--trees 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def skimage_features(section, sigma_min, sigma_max, num_sigma):
    from skimage.feature import multiscale_basic_features

    f = multiscale_basic_features(
        section, intensity=True, edges=True, texture=True, sigma_min=sigma_min, sigma_max=sigma_max,
        num_sigma=num_sigma, channel_axis=None,
    )
    return np.moveaxis(f, -1, 0).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-sections", default="0,10")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the feature computation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sklearn.ensemble import RandomForestClassifier

    from vemkit.annotate import scribbles_from_masks
    from vemkit.datasets import load_dataset
    from vemkit.features import FeatureConfig, compute_features
    from vemkit.metrics import iou
    from vemkit.pixel_classifier import intensity_range

    ds = load_dataset("drosophila_vnc_sstem", progress=False)
    image = np.asarray(ds.image)
    truth = np.asarray(ds.labels["mitochondria"])
    train = [int(z) for z in args.train_sections.split(",")]
    test = [z for z in range(image.shape[0]) if z not in train]
    ann = scribbles_from_masks(truth, sections=train, seed=args.seed)
    lo, hi = intensity_range(image)
    norm = (image.astype(np.float32) - lo) / (hi - lo)
    config = FeatureConfig(mode="2d")
    matched = FeatureConfig(mode="2d", features=("gaussian", "ggm", "hoge"))  # the kinds skimage computes
    scales = config.scales

    def vemkit_feats(z):
        return compute_features(norm[z], config, voxel_size=ds.voxel_size)[:, 0]

    def vemkit_matched_feats(z):
        return compute_features(norm[z], matched, voxel_size=ds.voxel_size)[:, 0]

    def skimage_feats(z):
        return skimage_features(norm[z], min(scales), max(scales), len(scales))

    results = {}
    for name, fn in (("vemkit", vemkit_feats), ("vemkit-20", vemkit_matched_feats), ("skimage", skimage_feats)):
        fn(0)  # warm-up (torch thread pool, caches)
        times, feats = [], {}
        for rep in range(args.repeats):
            for z in range(image.shape[0]):
                t0 = time.perf_counter()
                f = fn(z)
                times.append(time.perf_counter() - t0)
                if rep == 0:
                    feats[z] = f
        X = np.concatenate([feats[z][:, ann[z] > 0].T for z in train])
        y = np.concatenate([ann[z][ann[z] > 0] for z in train])
        forest = RandomForestClassifier(n_estimators=args.trees, n_jobs=-1, random_state=args.seed).fit(X, y)
        t0 = time.perf_counter()
        pred = np.stack([
            (forest.predict(feats[z].reshape(feats[z].shape[0], -1).T) == 2).reshape(image.shape[1:]) for z in test
        ])
        predict_s = time.perf_counter() - t0
        score = iou(pred.astype(np.uint8), truth[test])[1]
        results[name] = {
            "iou_test_sections": round(float(score), 4),
            "n_features": int(X.shape[1]),
            "feature_s_per_section_median": round(float(np.median(times)), 4),
            "forest_predict_s_per_section": round(predict_s / len(test), 3),
            "training_voxels": int(len(y)),
        }
        print(f"{name:8s} IoU {score:.3f}  features {results[name]['n_features']:3d}  "
              f"feature time / section {np.median(times):.3f} s (median of {len(times)})")
    s = results["skimage"]
    for name in ("vemkit", "vemkit-20"):
        v = results[name]
        print(f"{name}: IoU - skimage's {v['iou_test_sections'] - s['iou_test_sections']:+.3f}; feature speed-up "
              f"skimage/{name}: {s['feature_s_per_section_median'] / v['feature_s_per_section_median']:.2f}x "
              f"({v['n_features']} vs {s['n_features']} features)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
