"""Training targets for dense neuron segmentation, made from instance labels: affinities and boundaries.

An *affinity* along an offset ``o`` (negative steps, ``(-1, 0, 0)`` = the voxel one section up) is 1
where a voxel and its partner ``v + o`` carry the same nonzero instance id and 0 where they differ. It
is undefined (masked) where either voxel is unlabelled (id 0) or where the partner lies outside the
array: a patch or block never invents the content beyond its border. Nearest-neighbour offsets
tell a network where membranes are; long-range offsets (several voxels, the same physical distance in
z as in-plane) let the mutex watershed keep apart what a thin gap would otherwise merge.

Also here: the checks every neuron tool runs before any work (:func:`check_instance_labels`,
:func:`check_offsets_within_halo`). Works on numpy arrays and on torch tensors alike (training builds
targets after augmentation, on the training device).

Not for: predicting affinities (:mod:`vemkit.predict`), turning them into segments
(:mod:`vemkit._agglomeration`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["affinities", "affinity_offsets", "boundary_map", "check_instance_labels",
           "check_offsets_within_halo", "offsets_halo"]


def affinity_offsets(voxel_size=(1.0, 1.0, 1.0), long_range_nm=(30.0, 90.0), *, min_in_plane_nm=None):
    """Nearest-neighbour plus long-range offsets, the same physical distance along every axis.

    Parameters
    ----------
    voxel_size : (z, y, x) in nm
    long_range_nm : sequence of float
        Physical reaches of the long-range offsets; along each axis the step is
        ``max(1, round(reach / voxel))`` (so at 40 x 10 x 10 nm a 90 nm reach is 2 sections but 9 pixels).
        Reaches that add nothing beyond the offsets already made are dropped.

    Returns
    -------
    list of (dz, dy, dx) tuples
        Negative steps, nearest neighbours first.

    Examples
    --------
    >>> affinity_offsets((10, 10, 10), (30,))
    [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0), (0, 0, -3)]
    >>> affinity_offsets((40, 10, 10), (30, 90))[3:]
    [(0, -3, 0), (0, 0, -3), (-2, 0, 0), (0, -9, 0), (0, 0, -9)]
    """
    vs = [float(v) for v in voxel_size]
    if len(vs) != 3 or min(vs) <= 0:
        raise ValueError(f"voxel_size must be 3 positive numbers (z, y, x) in nm, got {voxel_size}")
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    for reach in long_range_nm:
        if reach <= 0:
            raise ValueError(f"long-range reaches must be > 0 nm, got {reach}")
        for axis in range(3):
            step = max(1, int(round(reach / vs[axis])))
            o = [0, 0, 0]
            o[axis] = -step
            if tuple(o) not in offsets:
                offsets.append(tuple(o))
    return offsets


def offsets_halo(offsets):
    """The context (z, y, x) a block needs so that every offset's partner of an inner voxel is read."""
    o = np.abs(np.asarray(offsets, dtype=np.int64)).reshape(-1, 3)
    return tuple(int(v) for v in o.max(axis=0))


def check_offsets_within_halo(offsets, halo):
    """Raise ValueError when an offset reaches beyond the block halo (its partner would be unread)."""
    need = offsets_halo(offsets)
    halo = tuple(int(h) for h in halo)
    if any(n > h for n, h in zip(need, halo)):
        raise ValueError(f"affinity offsets reach {need} voxels (z, y, x) but the block halo is only {halo}: "
                         "give a halo at least as large as the longest offset, or shorter offsets")


def _pair_slices(shape, offset):
    """Slices (source, partner) such that ``partner = source + offset`` stays inside ``shape``."""
    src, dst = [], []
    for n, o in zip(shape[-3:], offset):
        if o <= 0:
            src.append(slice(-o, n))
            dst.append(slice(0, n + o))
        else:
            src.append(slice(0, n - o))
            dst.append(slice(o, n))
    lead = (slice(None),) * (len(shape) - 3)
    return lead + tuple(src), lead + tuple(dst)


def affinities(labels, offsets):
    """Affinities and their mask from instance labels (numpy array or torch tensor, ``(..., Z, Y, X)``).

    Returns
    -------
    aff, mask : arrays of shape ``(..., len(offsets), Z, Y, X)``
        ``aff`` 1 where voxel and partner share a nonzero id, else 0 (float32); ``mask`` 1 where the
        affinity is defined: both ids nonzero and the partner inside the array.

    Examples
    --------
    >>> lab = np.array([[[1, 1, 2, 0]]])
    >>> aff, mask = affinities(lab, [(0, 0, -1)])
    >>> aff[0, 0, 0].tolist(), mask[0, 0, 0].tolist()
    ([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0])
    """
    is_torch = not isinstance(labels, np.ndarray) and hasattr(labels, "new_zeros")
    shape = tuple(labels.shape)
    if len(shape) < 3:
        raise ValueError(f"labels must be (..., Z, Y, X), got shape {shape}")
    out_shape = shape[:-3] + (len(offsets),) + shape[-3:]
    if is_torch:
        import torch

        aff = torch.zeros(out_shape, dtype=torch.float32, device=labels.device)
        mask = torch.zeros(out_shape, dtype=torch.float32, device=labels.device)
    else:
        labels = np.asarray(labels)
        aff = np.zeros(out_shape, np.float32)
        mask = np.zeros(out_shape, np.float32)
    for c, offset in enumerate(offsets):
        s, d = _pair_slices(shape, offset)
        a, b = labels[s], labels[d]
        known = (a != 0) & (b != 0)
        index = (Ellipsis, c) + s[-3:]
        aff[index] = ((a == b) & known) * 1.0
        mask[index] = known * 1.0
    return aff, mask


def boundary_map(labels, *, planar: bool = False):
    """1 where a labelled voxel touches a different id along a nearest-neighbour axis (either side), else 0.

    Unlabelled voxels (0) are 0 and never make a boundary. ``planar``: in-plane neighbours only.

    Examples
    --------
    >>> boundary_map(np.array([[[1, 1, 2, 2, 0]]]))[0, 0].tolist()
    [0, 1, 1, 0, 0]
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint8)
    axes = [(0, -1, 0), (0, 0, -1)] if planar else [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    for offset in axes:
        s, d = _pair_slices(labels.shape, offset)
        a, b = labels[s], labels[d]
        cut = (a != b) & (a != 0) & (b != 0)
        out[s] |= cut
        out[d] |= cut
    return out


def check_instance_labels(labels, *, name: str = "labels", max_voxels: int = 50_000_000):
    """Refuse labels a neuron segmentation cannot learn from; return the ids found.

    Raises ValueError, before any work, when the labels are not integers, hold fewer than two nonzero
    ids (nothing separates one object from another), or look semantic rather than instance: a few ids
    (at most 8) each split into many disconnected pieces (:func:`scipy.ndimage.label`, 26-connected:
    an id with 20+ pieces larger than 10 voxels), which is what a class map (membrane / cytoplasm /
    mitochondria) looks like; a dense neuron labelling has many ids, each one connected object.
    Labels over ``max_voxels`` are judged on a central slab of sections.
    """
    from scipy import ndimage

    arr = np.asarray(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer instance ids, got {arr.dtype}")
    if arr.size > max_voxels:  # judge a central slab of sections: the checks are about kind, not extent
        n = max(1, max_voxels // max(1, int(np.prod(arr.shape[1:]))))
        z0 = (arr.shape[0] - n) // 2
        arr = arr[z0:z0 + n]
    ids = np.unique(arr)
    ids = ids[ids != 0]
    if ids.size < 2:
        raise ValueError(f"{name} hold {ids.size} nonzero id{'s' if ids.size != 1 else ''} ({ids.tolist()}): "
                         "affinities need at least two touching objects to learn where one ends; "
                         "give dense instance labels (one id per neuron)")
    if ids.size <= 8:
        structure = np.ones((3,) * arr.ndim, bool)
        for i in ids:
            comp, n = ndimage.label(arr == i, structure=structure)
            if n >= 20 and int((np.bincount(comp.ravel())[1:] > 10).sum()) >= 20:
                raise ValueError(f"{name} look semantic, not instance: only {ids.size} ids and id {int(i)} is "
                                 f"{n} disconnected pieces; give one id per object (e.g. "
                                 "vemkit.instances.connected_components of a class mask, or proofread neuron ids)")
    return ids
