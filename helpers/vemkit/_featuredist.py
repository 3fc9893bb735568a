"""How far apart two domains' encoder features lie: pooled per-patch features, the maximum mean
discrepancy and the proxy A-distance (:func:`vemkit.domain.domain_gap`).

Not for: grey-value statistics (:func:`vemkit.domain.intensity_stats`).
"""

from __future__ import annotations

import numpy as np

from ._sections import random_patches

__all__ = ["mmd2", "pooled_features", "proxy_a_distance"]


def pooled_features(net, x, patch, n, rng, device):
    """Per patch: the mean and standard deviation of every encoder level's channels (concatenated)."""
    import torch

    patches = random_patches(x, n, patch, net.divisor, rng)
    feats = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, n, 8):
            levels = net.encode(torch.from_numpy(patches[i : i + 8, None]).to(device))
            feats.append(torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in levels], 1).cpu().numpy())
    return np.concatenate(feats)


def mmd2(a, b):
    """Unbiased squared maximum mean discrepancy, Gaussian kernel with the median-distance bandwidth."""
    from scipy.spatial.distance import cdist

    z = np.concatenate([a, b])
    d2 = cdist(z, z, "sqeuclidean")
    bandwidth = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / max(bandwidth, 1e-12))
    n, m = len(a), len(b)
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


def proxy_a_distance(a, b, seed):
    """2 (1 - 2 err) of a linear classifier telling source from target features (5-fold CV):
    0 = indistinguishable, 2 = perfectly separable (Ben-David et al. 2007)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    acc = float(np.mean(cross_val_score(clf, X, y, cv=5)))
    return max(0.0, 2 * (1 - 2 * (1 - acc)))
