"""``sam-auto``: automatic SAM over a whole volume, section by section, objects linked across sections.

:func:`predict_volume` hands ``model="sam-auto"`` (or ``"sam-auto:<SAM model name or checkpoint
file>"``) to :func:`run_sections`: each section is segmented on its own by
:class:`vemkit.generalist.AutoMaskGenerator` into objects whose ids are unique in the volume
(section ``z`` uses ids from ``(z + 1) * ID_STRIDE``), written into the output's OME-Zarr and logged,
so a killed run resumes at the first section it had not finished (the same run log as every
prediction, :mod:`._store`). Then an object of one section and one of the next are linked when
each is the other's best match and their overlap IoU is at least ``link_iou``; the linked groups
become 3D objects with consecutive ids (1, 2, ... in order of first appearance), saved in
``vemkit_links.npz`` before any section is relabelled, and the relabelling is idempotent (a new
id is below ``ID_STRIDE``, a first-pass id above), so a kill at any step resumes to the same
result. Output: uint32 instance labels (uint64 for volumes of 4095+ sections) with the input's
voxel size, a pyramid, then ``vemkit measure`` as for every other model.

Grey values: 8-bit volumes are used as they are (SAM's input); other volumes are mapped to 8 bits
with one range for the whole volume (0.5 and 99.5 percentiles of a sample), so every section and
tile sees the same contrast.

Not for: semantic models (:mod:`._predict` and :mod:`._generalist`), the 2D algorithm
(:mod:`vemkit.generalist._automask`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .._checks import check_finite_block, check_grey_dtype, check_nonempty, check_number
from .._inputs import as_volume_array
from .._intensity import input_mapping
from .._outputs import check_output
from .._progress import progress_bar
from ._store import RunLog, finish_run, open_run

__all__ = ["SAM_AUTO", "CELLPOSE", "DEFAULT_SAM_AUTO_MODEL", "ID_STRIDE", "LINKS_FILE", "is_sam_auto", "is_cellpose",
           "is_section_model", "sam_auto_model", "link_sections", "run_sections", "run_section_model"]

SAM_AUTO = "sam-auto"
#: Cellpose-SAM through the optional ``cellpose`` package (:mod:`vemkit.generalist._cellpose`).
CELLPOSE = "cellpose"
DEFAULT_CELLPOSE_MODEL = "cellpose_sam"
#: The SAM model ``sam-auto`` uses unless one is named: micro-sam's EM organelle model on TinyViT
#: (fast enough for a CPU; name a vit_b model, e.g. ``sam-auto:microsam_vit_b_em_organelles``, on a GPU).
DEFAULT_SAM_AUTO_MODEL = "microsam_vit_t_em_organelles"
#: Section ``z``'s objects get ids ``(z + 1) * ID_STRIDE + k`` before they are linked.
ID_STRIDE = 1 << 20
#: The links of a run (first-pass id -> final id), in its output store.
LINKS_FILE = "vemkit_links.npz"


def is_sam_auto(model) -> bool:
    """Whether ``model`` asks for automatic SAM (``"sam-auto"`` or ``"sam-auto:<model>"``).

    Examples
    --------
    >>> is_sam_auto("sam-auto"), is_sam_auto("sam-auto:sam_vit_b"), is_sam_auto("mitonet")
    (True, True, False)
    """
    return isinstance(model, str) and (model == SAM_AUTO or model.startswith(SAM_AUTO + ":"))


def is_cellpose(model) -> bool:
    """Whether ``model`` asks for Cellpose (``"cellpose"`` or ``"cellpose:<model>"``)."""
    return isinstance(model, str) and (model == CELLPOSE or model.startswith(CELLPOSE + ":"))


def is_section_model(model) -> bool:
    """Whether ``model`` is run section by section into linked instances (``sam-auto``, ``cellpose``).

    Examples
    --------
    >>> is_section_model("cellpose:cellpose_sam"), is_section_model("sam-auto"), is_section_model("model_dir")
    (True, True, False)
    """
    return is_sam_auto(model) or is_cellpose(model)


def _named(model: str, prefix: str, default: str) -> str:
    name = model[len(prefix) + 1:] if model.startswith(prefix + ":") else ""
    return name or default


def sam_auto_model(model: str) -> str:
    """The SAM model of a ``sam-auto`` name: what follows ``sam-auto:``, else :data:`DEFAULT_SAM_AUTO_MODEL`.

    Examples
    --------
    >>> sam_auto_model("sam-auto"), sam_auto_model("sam-auto:sam_vit_b")
    ('microsam_vit_t_em_organelles', 'sam_vit_b')
    """
    return _named(model, SAM_AUTO, DEFAULT_SAM_AUTO_MODEL)


def link_sections(a: np.ndarray, b: np.ndarray, min_iou: float) -> list:
    """Pairs ``(id in a, id in b)`` of objects in two neighbouring sections that are each other's best
    match (largest IoU) with IoU >= ``min_iou``; 0 is no object.

    Examples
    --------
    >>> a = np.array([[1, 1, 0, 2, 2]])
    >>> b = np.array([[5, 5, 5, 0, 6]])
    >>> link_sections(a, b, 0.3)
    [(1, 5), (2, 6)]
    >>> link_sections(a, b, 0.6)
    [(1, 5)]
    """
    a, b = np.asarray(a).ravel().astype(np.uint64), np.asarray(b).ravel().astype(np.uint64)
    ids_a, area_a = np.unique(a[a > 0], return_counts=True)
    ids_b, area_b = np.unique(b[b > 0], return_counts=True)
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    pairs, inter = np.unique(np.stack([a[both], b[both]], 1), axis=0, return_counts=True)
    ea = area_a[np.searchsorted(ids_a, pairs[:, 0])]
    eb = area_b[np.searchsorted(ids_b, pairs[:, 1])]
    iou = inter / (ea + eb - inter)
    best_a, best_b = {}, {}
    for (i, j), v in zip(pairs.tolist(), iou.tolist()):
        if v > best_a.get(i, (-1.0, 0))[0] or (v == best_a[i][0] and j < best_a[i][1]):
            best_a[i] = (v, j)
        if v > best_b.get(j, (-1.0, 0))[0] or (v == best_b[j][0] and i < best_b[j][1]):
            best_b[j] = (v, i)
    return sorted((i, j) for i, (v, j) in best_a.items() if v >= min_iou and best_b[j][1] == i)


def _to_uint8(section, low, high):
    if low is None:
        return np.asarray(section)
    s = (np.asarray(section, np.float32) - low) * (255.0 / (high - low))
    return np.clip(s, 0, 255).astype(np.uint8)


def _compact_links(root: Path, arr, progress: bool, link_iou: float):
    """First-pass ids -> final ids (1.. in order of first appearance), from the links between
    neighbouring sections; saved to ``LINKS_FILE`` once (a resumed run reads it back)."""
    path = root / LINKS_FILE
    if path.is_file():
        with np.load(path) as z:
            return z["first"], z["final"]
    parent = {}

    def find(x):
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    ids = set()
    prev = None
    for z in progress_bar(range(arr.shape[0]), desc="sam-auto: linking sections", unit="section",
                          disable=not progress):
        cur = np.asarray(arr[z])
        ids.update(np.unique(cur[cur > 0]).tolist())
        if prev is not None:
            for i, j in link_sections(prev, cur, link_iou):
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
        prev = cur
    first = np.array(sorted(ids), np.uint64)
    roots = np.array([find(int(i)) for i in first], np.uint64)
    order = np.unique(roots)  # sorted: first appearance (section, then id within it)
    final = (np.searchsorted(order, roots) + 1).astype(np.uint64)
    if len(order) >= ID_STRIDE:
        raise ValueError(f"sam-auto found {len(order)} objects in 3D, more than {ID_STRIDE - 1} it can number")
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, first=first, final=final)
    os.replace(tmp, path)
    return first, final


def _relabel(arr, first, final, progress: bool):
    """Every section's first-pass ids replaced by the final ones (ids already below ``ID_STRIDE`` are
    final: a second pass changes nothing)."""
    for z in progress_bar(range(arr.shape[0]), desc="sam-auto: numbering objects", unit="section",
                          disable=not progress):
        sec = np.asarray(arr[z])
        todo = sec >= ID_STRIDE
        if todo.any():
            idx = np.searchsorted(first, sec[todo])
            sec = sec.copy()
            sec[todo] = final[idx]
            arr[z] = sec


def run_sections(segment, image, output, params: dict, *, link_iou: float = 0.3, resume: bool = True,
                 overwrite: bool = False, pyramid: bool = True, version: str = "0.4", progress: bool = True,
                 inputs=(), device: str = "cpu"):
    """Segment ``image`` section by section with ``segment`` (an 8-bit 2D section -> labels, 0 = none),
    link the objects across sections, and write 3D instance labels to the OME-Zarr ``output``.

    Parameters
    ----------
    segment : callable
        ``segment(section uint8 (Y, X)) -> int labels (Y, X)``.
    image : path, Volume or array (Z, Y, X)
    output : path
    params : dict
        What makes this run this run (model, settings): a rerun with other ``params`` is refused.
    link_iou : float
        Objects of neighbouring sections with at least this IoU (and each other's best match) are one.
    resume, overwrite, pyramid, version, progress
        As for :func:`predict_volume`.
    inputs : sequence
        Files the run reads besides the image (never written over).

    Returns
    -------
    PredictionResult
    """
    from ._predict import PredictionResult

    t0 = time.perf_counter()
    link_iou = check_number(link_iou, "link_iou")
    if not 0.0 < link_iou <= 1.0:
        raise ValueError(f"link_iou must lie in (0, 1], got {link_iou}")
    root = check_output(output, [image, *inputs], overwrite=overwrite, exists_ok=True)
    data, voxel_size, source = as_volume_array(image, "image")
    check_nonempty(data.shape, "image", source)
    check_grey_dtype(data, "image")
    if voxel_size is None:
        raise ValueError("the image has no voxel size, which the output must carry: pass a Volume that knows it "
                         "(open_volume(..., voxel_size=(z, y, x)))")
    shape = tuple(int(s) for s in data.shape)
    low = high = None
    if np.dtype(data.dtype) != np.uint8:
        low, scale, _ = input_mapping({"mode": "percentile", "lower": 0.5, "upper": 99.5}, data)
        high = low + 1.0 / scale
    params = {**params, "kind": SAM_AUTO, "shape": list(shape), "link_iou": link_iou,
              "intensity_range": None if low is None else [float(low), float(high)]}
    dtype = "uint32" if (shape[0] + 1) * ID_STRIDE < 2**32 else "uint64"
    chunks = (1, min(shape[1], 1024), min(shape[2], 1024))

    def create():
        import zarr

        from .._outputs import mark_output

        group = zarr.open_group(str(root), mode="w-", zarr_format=2 if version == "0.4" else 3)
        mark_output(group, "prediction")
        kw = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if version == "0.4" else \
            {"dimension_names": ["z", "y", "x"]}
        group.create_array(name="0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **kw)
        return None, str(root / "0")

    done, record = open_run(root, params, overwrite=overwrite, resume=resume, create=create,
                            info={"classes": ["objects"], "extra_targets": [], "batch_size": 1})
    result = dict(output=root, labels=str(root), probabilities=None, blocks=shape[0], device=str(device), amp="off",
                  block=(1, *shape[1:]), halo=(0, 0, 0), batch_size=1, parameters=params)
    if -1 in done:
        return PredictionResult(**result, blocks_skipped=shape[0], seconds=time.perf_counter() - t0,
                                voxels_per_second=0.0)
    import zarr

    arr = zarr.open_array(str(root / "0"), mode="r+")
    log = RunLog(root)
    todo = [z for z in range(shape[0]) if z not in done]
    for z in progress_bar(todo, desc="sam-auto: sections", unit="section", disable=not progress):
        section = np.asarray(data[z])
        if np.issubdtype(section.dtype, np.floating):
            check_finite_block(section[None], "image", ((z, z + 1), (0, shape[1]), (0, shape[2])))
        labels = np.asarray(segment(_to_uint8(section, low, high)))
        if labels.shape != shape[1:]:
            raise ValueError(f"the section segmenter returned shape {labels.shape} for a section of {shape[1:]}")
        if labels.max(initial=0) >= ID_STRIDE:
            raise ValueError(f"section {z} has {int(labels.max())} objects, more than {ID_STRIDE - 1}")
        out = np.where(labels > 0, labels.astype(np.uint64) + (z + 1) * ID_STRIDE, 0).astype(dtype)
        arr[z] = out
        log.add([z])
    missing = sorted(set(range(shape[0])) - RunLog(root).done())
    if missing:  # finish_run says so too; checked first so that no links are made from a partial volume
        raise RuntimeError(f"sections {missing[:5]} of {str(root)!r} are not finished: run the same command again")
    first, final = _compact_links(root, arr, progress, link_iou)
    _relabel(arr, first, final, progress)
    finish_run(root, record, voxel_size, version, False, True, pyramid, progress, ["objects"], n_blocks=shape[0])
    seconds = time.perf_counter() - t0
    return PredictionResult(**result, blocks_skipped=shape[0] - len(todo), seconds=seconds,
                            voxels_per_second=len(todo) * shape[1] * shape[2] / seconds if seconds > 0 else 0.0)


def run_sam_auto(model: str, image, output, *, settings=None, link_iou: float = 0.3, device="auto",
                 resume: bool = True, overwrite: bool = False, pyramid: bool = True, version: str = "0.4",
                 progress: bool = True, manifest_path=None, segmenter=None):
    """Automatic SAM over a volume (see the module docstring); ``model`` is ``"sam-auto[:<model>]"``.

    ``settings``: an :class:`~vemkit.generalist.AutoMaskSettings` or a dict of its fields;
    ``link_iou``: objects of neighbouring sections with at least this IoU, each the other's best
    match, are one object (default 0.3);
    ``segmenter``: a :class:`~vemkit.generalist.PromptSegmenter` already loaded (then ``model`` names
    it for the run record only); ``manifest_path``: where the model's manifest entry is read.
    """
    from ..generalist import AutoMaskGenerator, AutoMaskSettings, file_sha256, load_sam, pinned_sha256

    name = sam_auto_model(model) if segmenter is None or model != SAM_AUTO else segmenter.name
    if isinstance(settings, dict):
        unknown = sorted(set(settings) - set(AutoMaskSettings.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown sam-auto setting(s) {unknown}; choose from "
                             f"{sorted(AutoMaskSettings.__dataclass_fields__)}, link_iou, segmenter, manifest_path")
    settings = (settings if isinstance(settings, AutoMaskSettings) else AutoMaskSettings(**(settings or {}))).checked()
    is_file = os.path.isfile(name)
    check_output(output, [image, *([name] if is_file else [])], overwrite=overwrite, exists_ok=True)  # before loading
    if segmenter is None:
        segmenter = load_sam(name, device=device, manifest_path=manifest_path, progress=progress)
    sha = file_sha256(name) if is_file else (pinned_sha256(name, manifest_path) or name)
    generator = AutoMaskGenerator(segmenter, settings)
    params = {"model": os.path.basename(name) if is_file else name, "model_sha256": sha, "settings": settings.to_dict()}
    return run_sections(generator.segment, image, output, params, link_iou=link_iou, resume=resume,
                        overwrite=overwrite, pyramid=pyramid, version=version, progress=progress,
                        inputs=[name] if is_file else [], device=str(segmenter.device))


def run_cellpose(model: str, image, output, *, diameter=None, link_iou: float = 0.3, device="auto",
                 resume: bool = True, overwrite: bool = False, pyramid: bool = True, version: str = "0.4",
                 progress: bool = True, manifest_path=None, segmenter=None):
    """Cellpose over a volume, section by section, instances linked across sections; ``model`` is
    ``"cellpose[:<manifest name or weights file>]"`` (default ``cellpose_sam``). Needs the optional
    ``cellpose`` package; ``segmenter``: a :class:`~vemkit.generalist.CellposeSegmenter` already loaded."""
    from ..generalist import file_sha256, load_cellpose, pinned_sha256

    name = _named(model, CELLPOSE, DEFAULT_CELLPOSE_MODEL) if segmenter is None or model != CELLPOSE \
        else segmenter.name
    if diameter is not None and not float(diameter) > 0:
        raise ValueError(f"diameter must be a number of pixels > 0, got {diameter}")
    is_file = os.path.isfile(name)
    check_output(output, [image, *([name] if is_file else [])], overwrite=overwrite, exists_ok=True)  # before loading
    if segmenter is None:
        segmenter = load_cellpose(name, device=device, diameter=diameter, manifest_path=manifest_path,
                                  progress=progress)
    sha = file_sha256(name) if is_file else (pinned_sha256(name, manifest_path) or name)
    params = {"model": os.path.basename(name) if is_file else name, "model_sha256": sha, "family": CELLPOSE,
              "diameter": None if diameter is None else float(diameter)}
    return run_sections(segmenter.segment, image, output, params, link_iou=link_iou, resume=resume,
                        overwrite=overwrite, pyramid=pyramid, version=version, progress=progress,
                        inputs=[name] if is_file else [], device=str(device))


def run_section_model(model: str, image, output, options: dict | None = None, **kw):
    """``sam-auto`` or ``cellpose`` with ``options`` (the model's settings, ``link_iou``, ``segmenter``,
    ``manifest_path``) and the run's keywords ``kw`` (device, resume, overwrite, pyramid, version, progress)."""
    opts = dict(options or {})
    extra = {k: opts.pop(k) for k in ("link_iou", "segmenter", "manifest_path") if k in opts}
    if is_cellpose(model):
        unknown = sorted(set(opts) - {"diameter"})
        if unknown:
            raise ValueError(f"unknown cellpose setting(s) {unknown}; choose from diameter, link_iou, segmenter, "
                             "manifest_path")
        return run_cellpose(model, image, output, **opts, **extra, **kw)
    return run_sam_auto(model, image, output, settings=opts, **extra, **kw)
