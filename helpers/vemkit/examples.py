"""Example data for the notebooks and the tour: a dataset, a phantom or the user's own image, cropped, with its ground truth.

Every notebook starts the same way: take a public dataset, the synthetic phantom, or the user's own
image (with or without a ground-truth mask), crop it to a few sections, and keep the truth of one
class beside it. :func:`load_example` does that choice once, with one set of rules, and returns an
:class:`Example`. :func:`load_domain_pair` gives notebook 06's two microscopes;
:func:`annotate_from_truth` turns the truth of chosen sections into annotations (dense, or strokes
as a person paints them) and :func:`evenly_spaced` chooses sections spread through a range.

Not for: reading files (:mod:`vemkit.io`), fetching datasets (:mod:`vemkit.datasets`) or making
phantoms (:mod:`vemkit.synthetic`); this module only chooses between them and crops the result.
The truth is held in memory: examples are small.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace

import numpy as np

from . import instances
from .annotate import scribbles_from_masks
from ._voxel import parse_voxel_size
from .datasets import ENV_VAR, load_dataset
from .io import Volume, open_volume
from .synthetic import make_phantom

__all__ = ["Example", "load_example", "load_domain_pair", "annotate_from_truth", "evenly_spaced", "PHANTOM"]

#: The dataset name that asks for the synthetic phantom instead of a download.
PHANTOM = "synthetic"

# semantic value of each class in the phantom (vemkit.synthetic.CLASSES), under its usual names
_PHANTOM_CLASSES = {"membranes": 1, "membrane": 1, "mitochondria": 2, "vesicles": 3, "vesicle": 3}
_ANNOTATION_KINDS = ("dense", "scribbles")


@dataclass(frozen=True)
class Example:
    """An example volume with the ground truth of one class.

    Attributes
    ----------
    image : Volume
        The EM image (z, y, x) with its voxel size; in memory when cropped, lazy otherwise.
    truth : ndarray of uint8 or None
        1 where the target class is, 0 elsewhere, same shape as ``image``; None without ground truth.
    citation : str
        Whom to cite for the data (empty for the user's own files).
    name : str
        What the data is, for titles and ``metrics.json``.
    instances : ndarray of uint32 or None
        Exact instance ids of the target class where the source knows them (the phantom), else None.
    extra : dict of str to ndarray of uint8
        Masks of the other classes asked for with ``extra_labels`` (those the source has).
    """

    image: Volume
    truth: np.ndarray | None
    citation: str
    name: str
    instances: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        """Shape of the image (z, y, x)."""
        return self.image.shape

    def crop(self, sections: int | None = None, crop_yx: int | None = None) -> Example:
        """The first ``sections`` sections and the top-left ``crop_yx`` x ``crop_yx`` pixels, in memory.

        Examples
        --------
        >>> ex = load_example("synthetic", phantom_shape=(4, 48, 48)).crop(2, 32)
        >>> ex.image.shape, ex.truth.shape
        ((2, 32, 32), (2, 32, 32))
        """
        region = _region(sections, crop_yx)
        return replace(
            self,
            image=_crop_volume(self.image, region),
            truth=None if self.truth is None else np.asarray(self.truth[region]),
            instances=None if self.instances is None else np.asarray(self.instances[region]),
            extra={k: np.asarray(v[region]) for k, v in self.extra.items()},
        )


def load_example(
    dataset: str,
    *,
    volume: str | None = None,
    image_path: str = "",
    labels_path: str = "",
    voxel_size=None,
    sections: int | None = None,
    crop_yx: int | None = None,
    target: str = "mitochondria",
    extra_labels=(),
    phantom_shape=None,
    phantom_voxel_size=(40.0, 8.0, 8.0),
    require_truth: str = "",
    seed: int = 0,
    data_dir=None,
) -> Example:
    """The image and ground truth a notebook works on: a dataset, the phantom, or the user's files.

    The image is ``image_path`` when given, else the dataset's (``dataset="synthetic"``: a phantom
    made for the purpose, no download). The truth is ``labels_path`` when given (nonzero = the
    class); else none for ``image_path``; else the dataset's ``target`` labels. A dataset that
    labels neurons but not membranes gives their in-plane boundaries as ``"membranes"``.

    Parameters
    ----------
    dataset : str
        A dataset of ``data_manifest.json`` (e.g. ``"drosophila_vnc_sstem"``) or ``"synthetic"``.
    volume : str, optional
        Which volume of the dataset (default: its default volume).
    image_path, labels_path : str
        The user's own image and ground-truth mask (any file :func:`vemkit.io.open_volume` opens).
    voxel_size : str or tuple of 3 float, optional
        ``"Z,Y,X"`` or ``(z, y, x)`` in nm; overrides the image's.
    sections, crop_yx : int, optional
        Keep the first ``sections`` sections and the top-left ``crop_yx`` pixels in y and x; a
        cropped image is read into memory. None keeps the whole axis (and the image lazy).
    target : str
        The class whose truth is kept: a label name of the dataset, or one of the phantom's
        (``"membranes"``, ``"mitochondria"``, ``"vesicles"``).
    extra_labels : sequence of str
        Other classes whose masks go into :attr:`Example.extra` (when the source has them).
    phantom_shape : tuple of 3 int, optional
        Shape of the phantom; default ``(sections or 24, crop_yx or 256, crop_yx or 256)``.
    phantom_voxel_size : tuple of 3 float
        Voxel size of the phantom in nm.
    require_truth : str
        Why the caller needs ground truth; when given, an example without it raises ValueError.
    seed : int
        Seed of the phantom.
    data_dir : str or Path, optional
        Dataset cache for this call (default: ``VEMKIT_DATA_DIR`` or the user cache).

    Returns
    -------
    Example

    Raises
    ------
    ValueError
        On a non-positive crop, an unknown phantom class, or missing truth with ``require_truth``.

    Examples
    --------
    >>> ex = load_example("synthetic", sections=4, crop_yx=64, phantom_voxel_size=(40, 5, 5))
    >>> ex.image.shape, ex.image.voxel_size, ex.truth.dtype.name, ex.name
    ((4, 64, 64), (40.0, 5.0, 5.0), 'uint8', 'synthetic phantom (seed=0)')
    >>> load_example("synthetic", image_path="mine.tif", require_truth="scoring needs it")
    Traceback (most recent call last):
    ...
    ValueError: mine.tif has no ground truth of 'mitochondria' (give labels_path with image_path): scoring needs it
    """
    region = _region(sections, crop_yx)
    if image_path and require_truth and not labels_path:
        raise ValueError(f"{image_path} has no ground truth of {target!r} (give labels_path with image_path): "
                         f"{require_truth}")
    vs = parse_voxel_size(voxel_size, "voxel_size") if isinstance(voxel_size, str) and voxel_size else voxel_size
    if image_path:
        example = Example(open_volume(image_path, voxel_size=vs or None), None, "", str(image_path))
    elif dataset == PHANTOM:
        shape = phantom_shape or (sections or 24, crop_yx or 256, crop_yx or 256)
        example = _phantom_example(shape, phantom_voxel_size, seed, target, extra_labels)
    else:
        with _data_dir(data_dir):
            example = _dataset_example(dataset, volume, target, extra_labels, region)
    if vs and not image_path:
        example = replace(example, image=example.image.with_voxel_size(vs))
    if labels_path:
        mask = open_volume(labels_path, warn_missing_voxel_size=False).data[region]
        example = replace(example, truth=(np.asarray(mask) > 0).astype(np.uint8), instances=None)
    if region != (slice(None),) * 3:
        example = example.crop(sections, crop_yx)
    if require_truth and example.truth is None:
        raise ValueError(f"{example.name} has no ground truth of {target!r}: {require_truth}")
    return example


def load_domain_pair(
    source: str, *, source_sections: int, crop_yx: int, target_sections: int, seed: int = 0, data_dir=None
) -> tuple[Example, Example]:
    """Two microscopes with membrane truth: a labelled source and a target to adapt to (notebook 06).

    ``source="synthetic"``: a phantom at 5 nm, and as target another phantom at 10 nm with another
    grey-value curve (gamma 2.5) and more noise. Otherwise the source dataset (its membranes) and the
    FlyEM medulla FIB-SEM volume (10 nm; the in-plane boundaries of its neurons as membranes).

    Parameters
    ----------
    source : str
        ``"synthetic"`` or a dataset with membrane labels (``"drosophila_vnc_sstem"``).
    source_sections, crop_yx : int
        Sections and in-plane crop of the source.
    target_sections : int
        Sections of the target (the first ones; the phantom target is ``crop_yx // 2`` wide).
    seed : int
        Seed of the phantoms (the target's is ``seed + 1``).
    data_dir : str or Path, optional
        Dataset cache.

    Returns
    -------
    (Example, Example)
        Source and target, in memory, ``truth`` = membranes.

    Examples
    --------
    >>> src, tgt = load_domain_pair("synthetic", source_sections=3, crop_yx=64, target_sections=4)
    >>> src.image.shape, tgt.image.shape, tgt.image.voxel_size
    ((3, 64, 64), (4, 32, 32), (10.0, 10.0, 10.0))
    >>> src.name, tgt.name
    ('phantom (5 nm)', 'phantom (10 nm, gamma 2.5, noisier)')
    """
    need = "the target's truth scores the adaptation"
    src = load_example(source, sections=source_sections, crop_yx=crop_yx, target="membranes",
                       phantom_voxel_size=(40.0, 5.0, 5.0), seed=seed, data_dir=data_dir, require_truth=need)
    if source == PHANTOM:
        tgt = make_phantom((target_sections, crop_yx // 2, crop_yx // 2), voxel_size=(10.0, 10.0, 10.0),
                           seed=seed + 1, noise=0.2)
        image = (255 * (np.asarray(tgt.image) / 255.0) ** 2.5).astype(np.uint8)  # another grey-value curve
        target = Example(Volume.from_array(image, voxel_size=(10.0, 10.0, 10.0), source="phantom, other microscope"),
                         (tgt.semantic == 1).astype(np.uint8), src.citation, "phantom (10 nm, gamma 2.5, noisier)")
        return replace(src, name="phantom (5 nm)"), target
    target = load_example("flyem_medulla_fibsem", sections=target_sections, target="membranes",
                          data_dir=data_dir, require_truth=need)
    vnc = source == "drosophila_vnc_sstem"
    src_name = "VNC ssTEM (4.6 nm)" if vnc else f"{source} ({src.image.voxel_size[1]:g} nm)"
    return replace(src, name=src_name), replace(target, name="FlyEM FIB-SEM (10 nm)")


def annotate_from_truth(truth, sections, *, kind: str = "dense", seed: int = 0) -> np.ndarray:
    """Annotations made from ground truth on chosen sections; every other voxel stays unlabelled.

    Parameters
    ----------
    truth : array of shape (Z, Y, X), integer or bool
        Semantic ground truth: 0 = background, 1.. = classes.
    sections : sequence of int
        The sections (z) to annotate.
    kind : {"dense", "scribbles"}
        ``"dense"`` labels every voxel of those sections; ``"scribbles"`` draws strokes as a person
        paints them (:func:`vemkit.annotate.scribbles_from_masks`).
    seed : int
        Seed of the strokes.

    Returns
    -------
    ndarray of uint8, shape of ``truth``
        0 = unlabelled, 1 = background, k + 1 = class k (the values of :mod:`vemkit.annotate`).

    Raises
    ------
    ValueError
        On an unknown ``kind``, a truth that is not 3D, or a section outside the volume.

    Examples
    --------
    >>> truth = load_example("synthetic", sections=4, crop_yx=96).truth
    >>> ann = annotate_from_truth(truth, [0, 2])
    >>> sorted(np.unique(ann).tolist()), [bool(ann[z].all()) for z in range(4)]
    ([0, 1, 2], [True, False, True, False])
    >>> strokes = annotate_from_truth(truth, [0], kind="scribbles")
    >>> bool(0 < (strokes[0] > 0).mean() < 1), int(strokes[1:].max())
    (True, 0)
    """
    if kind not in _ANNOTATION_KINDS:
        raise ValueError(f"kind must be one of {_ANNOTATION_KINDS}, got {kind!r}")
    truth = np.asarray(truth)
    if truth.ndim != 3:
        raise ValueError(f"truth must be 3D (z, y, x), got shape {truth.shape}")
    sections = [int(z) for z in sections]
    outside = [z for z in sections if not 0 <= z < truth.shape[0]]
    if outside:
        raise ValueError(f"sections {outside} lie outside the {truth.shape[0]} sections of the truth")
    if kind == "scribbles":
        return scribbles_from_masks(truth.astype(np.uint8), sections=sections, seed=seed)
    annotations = np.zeros(truth.shape, np.uint8)
    for z in sections:
        annotations[z] = 1 + truth[z]
    return annotations


def evenly_spaced(n: int, stop: int, *, start: int = 0) -> list[int]:
    """Up to ``n`` sections spread evenly over ``range(start, stop)``, the first and last included.

    Examples
    --------
    >>> evenly_spaced(4, 20), evenly_spaced(1, 20), evenly_spaced(3, 10, start=5), evenly_spaced(9, 3)
    ([0, 6, 13, 19], [0], [5, 7, 9], [0, 1, 2])
    """
    if n < 1 or stop <= start:
        raise ValueError(f"need n >= 1 and a non-empty range, got n={n}, range({start}, {stop})")
    picks = np.linspace(start, stop - 1, min(n, stop - start)).round().astype(int)
    return np.unique(picks).tolist()


def _region(sections, crop_yx) -> tuple:
    for name, value in (("sections", sections), ("crop_yx", crop_yx)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be a positive number of pixels or None, got {value!r}")
    yx = slice(None) if crop_yx is None else slice(0, int(crop_yx))
    return (slice(None) if sections is None else slice(0, int(sections)), yx, yx)


def _crop_volume(image: Volume, region) -> Volume:
    data = image.data[region].persist()  # a crop is small: keep it in memory
    return Volume(data=data, voxel_size=image.voxel_size, source=image.source, metadata=dict(image.metadata))


def _phantom_example(shape, voxel_size, seed, target, extra_labels) -> Example:
    unknown = [c for c in (target, *extra_labels) if c not in _PHANTOM_CLASSES]
    if unknown:
        raise ValueError(f"the phantom has no class {unknown[0]!r}; it has {sorted(_PHANTOM_CLASSES)}")
    phantom = make_phantom(shape=tuple(shape), voxel_size=voxel_size, seed=seed)
    masks = {c: (phantom.semantic == _PHANTOM_CLASSES[c]).astype(np.uint8) for c in (target, *extra_labels)}
    ids = {2: "mitochondria", 3: "vesicles"}.get(_PHANTOM_CLASSES[target])
    return Example(
        image=phantom.to_volume(),
        truth=masks[target],
        citation="synthetic phantom (vemkit.synthetic), no download",
        name=f"synthetic phantom (seed={seed})",
        instances=None if ids is None else phantom.instances[ids],
        extra={c: masks[c] for c in extra_labels},
    )


def _dataset_example(name, volume, target, extra_labels, region) -> Example:
    ds = load_dataset(name, volume or None)

    def mask(cls):
        if cls in ds.labels:
            return (np.asarray(ds.labels[cls].data[region]) > 0).astype(np.uint8)
        if cls == "membranes" and "neurons" in ds.labels:  # membranes lie between neurons
            return instances.boundaries(np.asarray(ds.labels["neurons"].data[region]), planar=True).astype(np.uint8)
        return None

    # the truth is read for the crop only (load_example then crops the image alike)
    truth, extra = mask(target), {c: m for c in extra_labels if (m := mask(c)) is not None}
    return Example(ds.image, truth, ds.citation, f"{ds.name}/{ds.volume}", extra=extra)


@contextlib.contextmanager
def _data_dir(path):
    """Point the dataset cache at ``path`` for the duration of the block (nothing when None)."""
    if not path:
        yield
        return
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = old
