"""Example data for the notebooks and the tour: a dataset, a phantom or the user's own image, cropped, with its ground truth.

Every notebook starts the same way: take a public dataset, the synthetic phantom, or the user's own
image (with or without a ground-truth mask), crop it to a few sections, and keep the truth of one
class beside it. :func:`load_example` does that choice once, with one set of rules, and returns an
:class:`Example`. :func:`load_domain_pair` gives notebook 06's two microscopes;
:func:`annotate_from_truth` turns the truth of chosen sections into annotations (dense, or strokes
as a person paints them) and :func:`evenly_spaced` chooses sections spread through a range.

The notebooks' small shared steps live here too: :func:`parse_sections` reads a ``"0,10"`` parameter
for the crop at hand (a ``QUICK`` crop keeps as many sections), :func:`running_headless` tells a run
without a person at the front end (papermill, the tour, CI) from a live session, so only a headless
run gets example strokes, :func:`previous_output` finds what the previous notebook wrote beside this
one, and :func:`summary_table` shows a few key figures instead of a whole ``metrics.json``.

Not for: reading files (:mod:`vemkit.io`), fetching datasets (:mod:`vemkit.datasets`) or making
phantoms (:mod:`vemkit.synthetic`); this module only chooses between them and crops the result.
The truth is held in memory: examples are small.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import instances
from .annotate import scribbles_from_masks
from ._progress import HEADLESS_ENV, headless
from ._voxel import parse_voxel_size
from .datasets import ENV_VAR, load_dataset
from .io import Volume, open_volume
from .synthetic import make_phantom

__all__ = ["Example", "load_example", "load_domain_pair", "annotate_from_truth", "evenly_spaced", "PHANTOM",
           "HEADLESS_ENV", "parse_sections", "running_headless", "previous_output", "summary_table"]

#: The dataset name that asks for the synthetic phantom instead of a download.
PHANTOM = "synthetic"

# semantic value of each class in the phantom (vemkit.synthetic.CLASSES), under its usual names
_PHANTOM_CLASSES = {"membranes": 1, "membrane": 1, "mitochondria": 2, "vesicles": 3, "vesicle": 3}
_ANNOTATION_KINDS = ("dense", "scribbles")
# what runs a notebook without a person: the kernel's parent process names one of these


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


def parse_sections(text: str, n_sections: int) -> list[int]:
    """The sections a parameter such as ``"0,10"`` names, fitted to a volume of ``n_sections``.

    When some named sections lie beyond the volume (a list meant for the full stack, run on a
    ``QUICK`` crop of a few sections), as many sections spread evenly through the volume stand in
    for the whole list, so the notebook annotates as many sections as asked. An empty text is ``[]``.

    Examples
    --------
    >>> parse_sections("0,10", 20), parse_sections("0,10", 6), parse_sections(" ", 6), parse_sections("3", 6)
    ([0, 10], [0, 5], [], [3])
    """
    picked = [int(z) for z in str(text).split(",") if z.strip()]
    if any(z < 0 for z in picked):
        raise ValueError(f"sections must be 0 or more, got {text!r}")
    if all(z < n_sections for z in picked):
        return picked
    return evenly_spaced(len(picked), n_sections)


def running_headless() -> bool:
    """Whether no person sits at a notebook front end: papermill, nbconvert, ``vemkit tour``, a test, a script.

    Notebook 02 paints example strokes from the ground truth only then; in a live session (JupyterLab,
    Jupyter Notebook, VS Code, Colab) the learner paints. ``$VEMKIT_HEADLESS`` (``1`` or ``0``; the tour
    sets it) settles it; otherwise a kernel whose cells come from nbclient (papermill, nbconvert, the
    tour: they cannot answer input requests) or Python outside a kernel is headless. The same test
    decides how progress shows (one line per step when headless) and when the Annotator paints examples.

    Examples
    --------
    >>> os.environ[HEADLESS_ENV] = "0"; running_headless()
    False
    >>> os.environ[HEADLESS_ENV] = "1"; running_headless()
    True
    >>> del os.environ[HEADLESS_ENV]
    """
    return headless()


def previous_output(output_dir, notebook: str, *, needs=(), shape=None, otherwise: str = "") -> dict | None:
    """The key figures (``metrics.json``) of an earlier notebook that wrote beside this one, or None.

    A notebook run alone looks for the previous notebook's outputs in the default layout: its
    ``OUTPUT_DIR``'s parent holds one folder per notebook (``outputs/03_transfer_learning``,
    ``outputs/04_gpu_inference`` ...). One sentence says what was found, or what to run first.

    Parameters
    ----------
    output_dir : str or Path
        This notebook's ``OUTPUT_DIR``.
    notebook : str
        The earlier notebook, e.g. ``"03_transfer_learning"``.
    needs : sequence of str
        Keys of its ``metrics.json`` naming files that must still exist (a ``path:/inner/key`` names
        ``path``).
    shape : tuple of int, optional
        The crop (z, y, x) this notebook works on; outputs made on another crop (``crop_zyx``) are not used.
    otherwise : str
        What this notebook does without them, for the sentence.

    Returns
    -------
    dict or None
        The earlier ``metrics.json``, or None when it is missing, incomplete or made on another crop.

    Examples
    --------
    >>> import tempfile
    >>> top = Path(tempfile.mkdtemp())
    >>> previous_output(top / "04_gpu_inference", "03_transfer_learning", otherwise="the base model runs")
    no outputs of notebook 03_transfer_learning in ...: run 03_transfer_learning.ipynb first to use them; until then the base model runs.
    >>> (top / "03_transfer_learning" / "model_unet").mkdir(parents=True)
    >>> _ = (top / "03_transfer_learning" / "metrics.json").write_text(json.dumps(
    ...     {"model_dir": str(top / "03_transfer_learning" / "model_unet")}))
    >>> previous_output(top / "04_gpu_inference", "03_transfer_learning", needs=["model_dir"])["model_dir"]
    using the outputs of notebook 03_transfer_learning in ...
    '.../03_transfer_learning/model_unet'
    """
    folder = Path(output_dir).parent / notebook
    then = f"; until then {otherwise}" if otherwise else ""
    try:
        figures = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        print(f"no outputs of notebook {notebook} in {folder}: run {notebook}.ipynb first to use them{then}.")
        return None
    missing = [k for k in needs if not figures.get(k) or not Path(str(figures[k]).split(":/")[0]).exists()]
    if missing:
        print(f"notebook {notebook}'s outputs in {folder} lack {', '.join(missing)}: run {notebook}.ipynb again "
              f"to the end{then}.")
        return None
    if shape is not None and figures.get("crop_zyx") not in (None, [int(n) for n in shape]):
        crop = " x ".join(str(n) for n in figures["crop_zyx"])
        print(f"notebook {notebook}'s outputs in {folder} cover {crop} voxels, this run "
              f"{' x '.join(str(int(n)) for n in shape)}: run it again with the same MAX_SECTIONS, CROP_YX and "
              f"QUICK to use them{then}.")
        return None
    print(f"using the outputs of notebook {notebook} in {folder}")
    return figures


def summary_table(figures: dict, keys, *, path=None):
    """A short table of chosen key figures (nested ones flattened), instead of a whole ``metrics.json``.

    Parameters
    ----------
    figures : dict
        The key figures, as written to ``metrics.json``.
    keys : sequence of str
        Which to show, in order; ``"gap.zoom"`` reaches into a nested dict, and a dict value gives one
        row per entry (``iou · Otsu``). Missing or None values are left out.
    path : str or Path, optional
        Where the whole record lies, named above the table.

    Returns
    -------
    pandas.DataFrame
        One column, ``value``; numbers rounded to 3 decimals (large ones to whole numbers), lists joined.

    Examples
    --------
    >>> t = summary_table({"iou": {"Otsu": 0.11111, "Li": 0.2}, "shape_zyx": [20, 1024, 1024], "seconds": 31.42,
    ...                    "n": None, "gap": {"zoom": 2.0}}, ["iou", "shape_zyx", "seconds", "n", "gap.zoom"])
    >>> t["value"].to_dict()
    {'iou · Otsu': '0.111', 'iou · Li': '0.2', 'shape_zyx': '20 x 1024 x 1024', 'seconds': '31.4', 'gap.zoom': '2'}
    """
    import pandas as pd

    rows = {}
    for key in keys:
        value = figures
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        for name, v in _flatten_figure(key, value):
            rows[name] = _format_figure(key, v)
    table = pd.DataFrame({"value": pd.Series(rows, dtype=object)})
    if path is not None:
        table.columns.name = f"all key figures: {path}"
    return table


def _flatten_figure(name, value):
    if value is None:
        return []
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten_figure(f"{name} · {k}", v)]
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return []  # a list of records (a learning curve) does not fit one row
    return [(name, value)]


def _format_figure(key, v) -> str:
    if isinstance(v, bool) or isinstance(v, str):
        return str(v)
    if isinstance(v, int | np.integer):
        return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        if key in ("seconds",) or key.endswith("_seconds") or abs(v) >= 100:
            return f"{v:,.1f}" if abs(v) < 10_000 else f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 0.001 and v else f"{round(v, 3):g}"
    if isinstance(v, list | tuple):
        if all(isinstance(x, int | np.integer) for x in v) and len(v) == 3 and "zyx" in key:
            return " x ".join(str(int(x)) for x in v)
        return ", ".join(_format_figure(key, x) for x in v)
    return str(v)


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
