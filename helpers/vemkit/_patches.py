"""Training patches for :func:`vemkit.train.finetune`: the annotated region in memory and a sampler
of random patches centred on annotated (mostly foreground) voxels.

Not for: augmenting patches (:mod:`vemkit.augment`) or sampling for pretraining / adaptation (their
sources are whole sections: :mod:`vemkit.pretrain`, :mod:`vemkit.adapt`).
"""

from __future__ import annotations

import numpy as np

from ._blockwise import read_with_halo

__all__ = ["PatchSampler", "load_region"]


class PatchSampler:
    """Random training patches from an in-memory region, centred on annotated voxels (foreground
    classes with probability ``fg_fraction``)."""

    def __init__(self, image, labels, patch, ndim, fg_fraction, rng, sections=None):
        self.image, self.labels = image, labels  # float32 (Z, Y, X), int16 (Z, Y, X) with -1 = ignore
        self.patch, self.ndim, self.fg, self.rng = tuple(patch), ndim, fg_fraction, rng
        mask = labels >= 0
        if sections is not None:
            keep = np.zeros(labels.shape[0], bool)
            keep[list(sections)] = True
            mask &= keep[:, None, None]
        coords = np.argwhere(mask)
        if coords.size == 0:
            raise ValueError("no annotated voxels left for training (all held out for validation?)")
        values = labels[tuple(coords.T)]
        limit = 2_000_000
        self.any = coords[rng.choice(len(coords), limit, replace=False)] if len(coords) > limit else coords
        fgc = coords[values >= 1]
        self.fg_coords = fgc[rng.choice(len(fgc), limit, replace=False)] if len(fgc) > limit else fgc

    def _crop(self, centre):
        pz, py, px = self.patch
        start = [int(c) - p // 2 for c, p in zip(centre, (pz, py, px))]
        # jitter so the annotated voxel is not always in the middle
        start[1] += int(self.rng.integers(-py // 4, py // 4 + 1))
        start[2] += int(self.rng.integers(-px // 4, px // 4 + 1))
        region = tuple(slice(s, s + p) for s, p in zip(start, (pz, py, px)))
        img = read_with_halo(self.image, region, (0, 0, 0)) if _inside(region, self.image.shape) else \
            _padded(self.image, region, 0.0)
        lab = _padded(self.labels, region, -1)
        return img, lab

    def sample(self, batch):
        imgs, labs = [], []
        for _ in range(batch):
            pool = self.fg_coords if (len(self.fg_coords) and self.rng.random() < self.fg) else self.any
            centre = pool[self.rng.integers(len(pool))]
            img, lab = self._crop(centre)
            imgs.append(img)
            labs.append(lab)
        img = np.stack(imgs)[:, None]
        lab = np.stack(labs)
        if self.ndim == 2:
            img, lab = img[:, :, 0], lab[:, 0]
        return img, lab


def _inside(region, shape):
    return all(0 <= s.start and s.stop <= n for s, n in zip(region, shape))


def _padded(array, region, fill):
    """``array[region]`` with ``fill`` where the region leaves the array."""
    out = np.full([s.stop - s.start for s in region], fill, dtype=array.dtype)
    src, dst = [], []
    for s, n in zip(region, array.shape):
        lo, hi = max(s.start, 0), min(s.stop, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s.start, hi - s.start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def load_region(data, ann, plan, low, high, n_classes):
    """The annotated bounding box (plus half a patch of context) in memory: float32 image normalised
    to the volume's range, int16 labels (annotation - 1; -1 = unlabelled)."""
    box = plan.fingerprint["bounding_box"]
    half = [p // 2 for p in plan.patch]
    if plan.ndim == 2:
        half[0] = 0
    z0, z1 = max(0, box[0] - half[0]), min(data.shape[0], box[1] + half[0])
    y0, y1 = max(0, box[2] - half[1]), min(data.shape[1], box[3] + half[1])
    x0, x1 = max(0, box[4] - half[2]), min(data.shape[2], box[5] + half[2])
    region = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    nbytes = (z1 - z0) * (y1 - y0) * (x1 - x0) * 6
    if nbytes > 8 * 2**30:
        raise ValueError(f"the annotated region {region} needs {nbytes / 2**30:.1f} GiB in memory; annotate a "
                         "more compact region or train on a crop")
    part = data[region]
    img = np.asarray(part.compute() if hasattr(part, "compute") else part, dtype=np.float32)
    img = (img - low) / (high - low)
    lab = np.asarray(ann[region]).astype(np.int16) - 1
    if lab.max() >= n_classes:
        raise ValueError(f"annotations hold value {int(lab.max()) + 1} but only {n_classes} classes were declared "
                         f"(values 1..{n_classes})")
    return img, lab, (z0, y0, x0)

