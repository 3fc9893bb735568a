"""Random-forest pixel classification of mitochondria on real data (VNC ssTEM; ``--datasets`` adds
CDeep3M SBF-SEM): vemkit beside scikit-image's ``multiscale_basic_features`` + scikit-learn's random forest.

Three cases (``--cases``, default all):

``features``: vemkit's features beside scikit-image's, with the same random forest (below).

``one-section``: one 768 x 1024 section (the top of VNC stack1 section 0) with dense labels (the ground truth)
on its top half, scored on its bottom half. ``dense``: sections 0 and 5 of a 10 x 512 x 512 crop labelled
densely, scored on the other 8. In both, vemkit runs as a user runs it (``PixelClassifier(classes).fit``
then ``.predict`` of the whole image, defaults) and the baseline is ``multiscale_basic_features`` (the
same sigmas as vemkit's default scales) + ``RandomForestClassifier(100 trees, n_jobs=-1)`` trained on
every labelled pixel, predicting the whole image too; both in this process. Printed: time (train +
predict, wall and CPU, median over ``--repeats``), IoU of each, and the ratios baseline / vemkit.

Measured on the idle 2-core machine (``--cases one-section,dense --datasets drosophila_vnc_sstem,cdeep3m_mito
--repeats 1``; docs/benchmarks.md): baseline / vemkit wall time 7.8x and 6.7x (VNC one section, dense),
14.5x and 8.0x (CDeep3M); vemkit's IoU 0.166 / 0.279 / 0.421 / 0.628 against 0.118 / 0.247 / 0.381 / 0.614.

Scribbles are made from the ground truth of two sections (as a user would paint them), the forest is
trained on those voxels only, and the other 18 sections are predicted and scored (IoU of the
mitochondria class). Printed: IoU of each, feature time per 1024 x 1024 section (median over sections
and repeats), and the ratio skimage / vemkit, for vemkit's default set (40 channels: the ilastik set)
and for "vemkit-20", the same kinds as skimage's (Gaussian, gradient, Hessian eigenvalues; 20 channels).

Run from the project root (the data comes from the manifest; offline, point VEMKIT_DATA_DIR at a folder
holding it, e.g. ../shared/data)::

    VEMKIT_DATA_DIR=../shared/data python benchmarks/pixel_classifier.py [--trees 100] [--repeats 3]
        [--cases features,one-section,dense]
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


def baseline_run(image, labels, voxel_size, trees, seed):
    """scikit-image features + scikit-learn forest on every labelled pixel; labels of the whole image."""
    from sklearn.ensemble import RandomForestClassifier

    from vemkit.features import DEFAULT_SCALES
    from vemkit.pixel_classifier import intensity_range

    lo, hi = intensity_range(image)
    norm = (image.astype(np.float32) - lo) / (hi - lo)
    feats = [skimage_features(norm[z], min(DEFAULT_SCALES), max(DEFAULT_SCALES), len(DEFAULT_SCALES))
             for z in range(image.shape[0])]
    zs = [z for z in range(image.shape[0]) if labels[z].any()]
    X = np.concatenate([feats[z][:, labels[z] > 0].T for z in zs])
    y = np.concatenate([labels[z][labels[z] > 0] for z in zs])
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed).fit(X, y)
    return np.stack([(forest.predict(f.reshape(f.shape[0], -1).T) - 1).reshape(image.shape[1:]) for f in feats])


def vemkit_run(image, labels, voxel_size, trees, seed):
    from vemkit.pixel_classifier import PixelClassifier

    clf = PixelClassifier(["background", "mitochondria"], n_estimators=trees, seed=seed)
    clf.fit(image, labels, voxel_size=voxel_size, progress=False)
    return clf.predict(image, progress=False)


def compare(name, image, labels, score_mask, truth, voxel_size, args):
    """Time and score vemkit and the baseline on one case; print and return the figures.

    Wall time is what a user waits for; CPU time (all threads of this process) is printed beside it
    because on a shared machine the wall time measures the neighbours as much as the code."""
    from vemkit.metrics import iou

    row = {}
    for who, fn in (("vemkit", vemkit_run), ("skimage+sklearn", baseline_run)):
        wall, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            pred = fn(image, labels, voxel_size, args.trees, args.seed)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        score = iou(pred[score_mask].astype(np.uint8), truth[score_mask])[1]
        row[who] = {"seconds_median": round(float(np.median(wall)), 2), "cpu_seconds_median": round(float(np.median(cpu)), 2),
                    "iou": round(float(score), 4)}
        print(f"{name}: {who}: {row[who]}", flush=True)
    v, b = row["vemkit"], row["skimage+sklearn"]
    ratio = b["seconds_median"] / v["seconds_median"]
    cpu_ratio = b["cpu_seconds_median"] / v["cpu_seconds_median"]
    print(f"{name}: vemkit {v['seconds_median']:.1f} s (CPU {v['cpu_seconds_median']:.1f} s) IoU {v['iou']:.3f} | "
          f"skimage+sklearn {b['seconds_median']:.1f} s (CPU {b['cpu_seconds_median']:.1f} s) IoU {b['iou']:.3f} | "
          f"ratio skimage+sklearn / vemkit: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x (medians of {args.repeats}); "
          f"IoU difference {v['iou'] - b['iou']:+.3f}", flush=True)
    row["time_ratio_baseline_over_vemkit"] = round(ratio, 2)
    row["cpu_time_ratio_baseline_over_vemkit"] = round(cpu_ratio, 2)
    return row


def one_section_case(ds, args):
    image = np.asarray(ds.image.data[:1, :768])  # 768 x 1024, the size of the section in issue 19
    truth = np.asarray(ds.labels["mitochondria"].data[:1, :768]).astype(np.uint8)
    half = image.shape[1] // 2
    labels = np.zeros(image.shape, np.uint8)
    labels[:, :half] = truth[:, :half] + 1  # dense: every pixel of the top half
    score = np.zeros(image.shape, bool)
    score[:, half:] = True
    return compare(f"{ds.name}: one section {image.shape[1]}x{image.shape[2]}, top half dense", image, labels, score,
                   truth, ds.voxel_size, args)


def dense_case(ds, args):
    image = np.asarray(ds.image.data[:10, :512, :512])
    truth = np.asarray(ds.labels["mitochondria"].data[:10, :512, :512]).astype(np.uint8)
    labels = np.zeros(image.shape, np.uint8)
    labels[[0, 5]] = truth[[0, 5]] + 1
    score = np.ones(image.shape, bool)
    score[[0, 5]] = False
    return compare(f"{ds.name}: dense labels on 2 of 10 sections 512x512", image, labels, score, truth, ds.voxel_size,
                   args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-sections", default="0,10")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", default="features,one-section,dense")
    parser.add_argument("--datasets", default="drosophila_vnc_sstem",
                        help="comma-separated datasets with mitochondria labels for the one-section and dense cases "
                             "(e.g. drosophila_vnc_sstem,cdeep3m_mito; features: always VNC)")
    args = parser.parse_args()
    cases = args.cases.split(",")

    from vemkit.datasets import load_dataset

    results = {}
    for name in args.datasets.split(","):
        ds = load_dataset(name, progress=False)
        if "one-section" in cases:
            results[f"{name}/one-section"] = one_section_case(ds, args)
        if "dense" in cases:
            results[f"{name}/dense"] = dense_case(ds, args)
    if "features" in cases:
        ds = load_dataset("drosophila_vnc_sstem", progress=False)
        results["features"] = feature_case(ds, args)
    print(json.dumps(results))


def feature_case(ds, args):
    from sklearn.ensemble import RandomForestClassifier

    from vemkit.annotate import scribbles_from_masks
    from vemkit.features import FeatureConfig, compute_features
    from vemkit.metrics import iou
    from vemkit.pixel_classifier import intensity_range

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
    return results


if __name__ == "__main__":
    main()
