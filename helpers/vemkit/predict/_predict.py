"""The two entry points, :func:`estimate` (plan) and :func:`predict_volume` (run), and what joins the parts.

A run is prepared once and checked before any work (:class:`_Job`: network, input, blocks, precision,
intensity mapping), then its output is opened or resumed (:mod:`._store`) and the blocks still to do
are run (:mod:`._execute`). Not for: the geometry (:mod:`._planning`) or the network's forward
(:mod:`._network`, :mod:`._runner`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .._blockwise import block_starts
from .._checks import check_grey_dtype, check_nonempty, check_number, check_positive_int, triple
from .._device import resolve_device
from .._inputs import as_volume_array
from .._intensity import input_mapping
from .._outputs import RUN_FILE, check_output, check_replaceable, expand, written_by_vemkit
from .._precision import resolve_amp
from .._progress import progress_bar
from .._voxel import check_voxel_size
from ..io import open_volume, write_tiff
from ._execute import run_distributed, run_local
from ._network import Network, probe_network, resolve_network
from ._planning import InferencePlan, check_layout, check_plan_volume, plan_blocks, settings_from_plan
from ._rescale import check_rescale, choose_rescale, rescaled_network
from ._runner import Runner, Settings, time_batch
from ._samauto import is_section_model, run_section_model
from ._store import RunLog, create_output, finish_run, open_run

__all__ = ["PredictionResult", "estimate", "predict_volume"]

_PROB_DTYPES = ("uint8", "float16", "float32")
_TIFF_SUFFIXES = (".tif", ".tiff")
#: Added to a TIFF output's name for the OME-Zarr predicted into first (the part that resumes).
PARTIAL_SUFFIX = ".partial.ome.zarr"


@dataclass
class PredictionResult:
    """What :func:`predict_volume` did.

    Attributes
    ----------
    output : Path
        The OME-Zarr written.
    labels, probabilities : str or None
        Paths :func:`vemkit.io.open_volume` opens for each result.
    blocks, blocks_skipped : int
        Blocks in the volume, and blocks already done by an earlier (interrupted) run.
    seconds : float
        Wall time of this call.
    voxels_per_second : float
        Output voxels computed in this call per second, reading and writing included.
    device, amp : str
    """

    output: Path
    labels: str | None
    probabilities: str | None
    blocks: int
    blocks_skipped: int
    seconds: float
    voxels_per_second: float
    device: str
    amp: str
    block: tuple
    halo: tuple
    batch_size: int
    parameters: dict = field(default_factory=dict, repr=False)


# ------------------------------------------------------------------------------------------ estimate
def estimate(model, image, *, device="auto", block=None, halo=None, batch_size=None, tta: bool = False,
             amp="auto", memory_limit=None, probe: bool = True, probabilities: bool = False) -> InferencePlan:
    """Plan a prediction before running it: block and batch that fit, and the expected time.

    Parameters
    ----------
    model : model directory, SegmentationModel or torch.nn.Module
    image : path, Volume or array (Z, Y, X)
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
    block, halo : tuple of 3 int, optional
        Fix either instead of letting the plan choose (halo default: the model's).
    batch_size : int, optional
    memory_limit : str or int, optional
        Working memory for one batch (default: 60 % of free GPU memory, or 1 GiB on CPU).
    probe : bool
        Time one batch on the device to predict throughput and total time.

    Returns
    -------
    InferencePlan
        ``print(plan)`` shows it; ``predict_volume(model, image, output, plan=plan)`` runs it (its
        device, block, halo and batch size).

    Examples
    --------
    >>> import numpy as np
    >>> from vemkit.models import SegmentationModel, UNet
    >>> net = UNet(ndim=2, base_channels=4, depth=2)
    >>> plan = estimate(SegmentationModel(net, ["bg", "fg"]), np.zeros((4, 100, 100), np.uint8),
    ...                 device="cpu", probe=False)
    >>> plan.block, plan.halo
    ((4, 100, 100), (0, 24, 24))
    """
    batch_size = _check_numbers(batch_size=batch_size, tta=tta, memory_limit=memory_limit)
    dev = resolve_device(device)
    net = resolve_network(model, halo=triple(halo, "halo"))
    data, _, source = as_volume_array(image, "image")
    shape = tuple(int(s) for s in data.shape)
    check_nonempty(shape, "image", source)
    halo_t = tuple(net.halo)
    n_out = net.n_classes + len(net.extra_targets) if probabilities else 1
    bp = plan_blocks(net, shape, dev, halo_t, triple(block, "block", minimum=1), batch_size, memory_limit, n_out)
    check_layout(net, shape, bp.block, halo_t)
    vps = expected = None
    if probe:
        settings = Settings(block=bp.block, halo=halo_t, batch_size=bp.batch_size, device=str(dev),
                            amp=resolve_amp(amp, dev), tta=tta, prob_dtype="uint8", write_probabilities=probabilities,
                            write_labels=True, low=0.0, scale=1.0, prob_path=None, labels_path=None)
        seconds = time_batch(Runner(net, settings, data), bp.batch_size)
        vps = bp.batch_size * float(np.prod(bp.block)) / seconds
        expected = bp.n_blocks * float(np.prod(bp.block)) / vps
    return InferencePlan(device=str(dev), block=bp.block, halo=halo_t, batch_size=bp.batch_size, n_blocks=bp.n_blocks,
                         volume_shape=shape, overhead=bp.overhead, memory_budget_bytes=bp.budget,
                         memory_per_batch_bytes=bp.memory, voxels_per_second=vps, expected_seconds=expected)


# ------------------------------------------------------------------------------------------- predict
@dataclass
class _Options:
    """The keywords of :func:`predict_volume` (what the run is asked for)."""

    block: object = None
    halo: object = None
    batch_size: int | None = None
    device: object = "auto"
    tta: bool = False
    probabilities: bool = False
    labels: bool = True
    prob_dtype: str = "uint8"
    amp: object = "auto"
    intensity_range: object = None
    resume: bool = True
    overwrite: bool = False
    pyramid: bool = True
    version: str = "0.4"
    memory_limit: object = None
    compile: bool = False
    prefetch: int = 2
    progress: bool = True
    ndim: int | None = None
    n_classes: int | None = None
    model_options: dict | None = None
    rescale: object = 1.0


@dataclass
class _Job:
    """A prediction prepared and checked before any work."""

    net: Network
    data: object
    shape: tuple
    source: str | None
    voxel_size: tuple
    device: object  # torch.device, or None on a dask cluster (the workers choose)
    block: tuple
    halo: tuple
    batch_size: int
    amp: str
    low: float
    high: float
    lut: tuple | None
    rescale: float = 1.0
    rescale_scores: dict | None = None

    @property
    def n_prob(self) -> int:
        return self.net.n_classes + len(self.net.extra_targets)


def _check_numbers(*, batch_size=None, tta=False, memory_limit=None, prefetch=1, intensity_range=None):
    """Every numeric keyword of :func:`estimate` / :func:`predict_volume` checked before any work;
    returns ``batch_size`` as an int (or None)."""
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    if not isinstance(tta, (bool, np.bool_)):
        raise ValueError(f"tta must be True or False, got {tta!r}")
    check_positive_int(prefetch, "prefetch", minimum=0)
    if memory_limit is not None:
        try:
            limit = _parse_memory(memory_limit)
        except (TypeError, ValueError):
            raise ValueError(f"memory_limit must be a number of bytes or a size such as '4GB', got "
                             f"{memory_limit!r}") from None
        if limit <= 0:
            raise ValueError(f"memory_limit must be a size > 0, got {memory_limit!r}")
    if intensity_range is not None:
        try:
            low, high = intensity_range
        except (TypeError, ValueError):
            raise ValueError(f"intensity_range must be (low, high), got {intensity_range!r}") from None
        check_number(low, "intensity_range low")
        check_number(high, "intensity_range high")
    return batch_size


def _parse_memory(value) -> float:
    import dask

    if isinstance(value, (bool, np.bool_)):
        raise ValueError("a bool is no size")
    number = float(dask.utils.parse_bytes(value) if isinstance(value, str) else value)
    check_number(number, "memory_limit")
    return number


def _check_output_options(o: _Options) -> None:
    if o.prob_dtype not in _PROB_DTYPES:
        raise ValueError(f"prob_dtype must be one of {_PROB_DTYPES}, got {o.prob_dtype!r}")
    if not (o.probabilities or o.labels):
        raise ValueError("nothing to write: set probabilities=True and/or labels=True")
    if o.version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {o.version!r}")


def _open_input(net: Network, image):
    """``(data, voxel size, source)`` of the image, checked to be grey values the network can take."""
    data, voxel_size, source = as_volume_array(image, "image")
    check_nonempty(data.shape, "image", source)
    check_grey_dtype(data, "image")
    if net.in_channels != 1:
        raise ValueError(f"the model takes {net.in_channels} input channels but EM volumes have 1")
    return data, voxel_size, source


def _intensity(net: Network, data, intensity_range):
    """``(low, high, lut)``: grey values mapped to 0 and 1, fixed for the whole volume."""
    lut = None
    if intensity_range is None:
        nan_text = ("the grey values sampled from the image to fix its intensity range hold NaN or infinite "
                    "values: fill or mask them first")
        try:
            low, scale, lut = input_mapping(net.normalization, data)
        except ValueError as err:  # its range check sees (nan, nan)
            if "nan" not in str(err):
                raise
            raise ValueError(nan_text) from err
        high = low + 1.0 / scale
        if not (np.isfinite([low, high]).all() and (lut is None or np.isfinite(lut[0]).all())):
            raise ValueError(nan_text)
    else:
        low, high = (float(v) for v in intensity_range)
    if not high > low:
        raise ValueError(f"intensity range must have high > low, got ({low}, {high})")
    return low, high, lut


def _prepare(model, image, o: _Options, *, plan, client) -> _Job:
    """Everything checked before any work: device, network, input, blocks, precision, voxel size."""
    import torch

    dev = resolve_device(o.device) if client is None else None
    net = resolve_network(model, halo=triple(o.halo, "halo"), ndim=o.ndim, n_classes=o.n_classes)
    data, voxel_size, source = _open_input(net, image)
    shape = tuple(int(s) for s in data.shape)
    check_plan_volume(plan, shape)
    net, factor, scores, intensity = _rescale(net, data, o, dev, plan)
    halo = tuple(net.halo)
    plan_device = dev if dev is not None else torch.device("cpu")
    bp = plan_blocks(net, shape, plan_device, halo, triple(o.block, "block", minimum=1), o.batch_size,
                     o.memory_limit, net.n_classes + len(net.extra_targets) if o.probabilities else 1)
    check_layout(net, shape, bp.block, halo)
    amp = resolve_amp(o.amp, dev) if dev is not None else ("auto" if o.amp == "auto" else str(o.amp))
    probe_network(net)
    voxel_size = voxel_size or net.voxel_size
    if voxel_size is None:
        raise ValueError("the image has no voxel size and neither has the model: pass a Volume that knows "
                         "it (open_volume(..., voxel_size=(z, y, x)))")
    low, high, lut = intensity or _intensity(net, data, o.intensity_range)
    return _Job(net=net, data=data, shape=shape, source=source, voxel_size=check_voxel_size(voxel_size), device=dev,
                block=bp.block, halo=halo, batch_size=bp.batch_size, amp=amp, low=low, high=high, lut=lut,
                rescale=factor, rescale_scores=scores)


def _rescale(net: Network, data, o: _Options, dev, plan):
    """``(network, factor, auto scores or None, intensity or None)``: the network run at ``o.rescale``
    (``"auto"``: :func:`._rescale.choose_rescale` on a sample, which needs the intensity range first)."""
    factor = check_rescale(o.rescale)
    if factor != 1.0 and plan is not None:
        raise ValueError("rescale with plan=...: estimate() plans the network at the image's own pixel size; "
                         "pass block= and batch_size= instead of plan")
    if factor != 1.0 and any(t.startswith("aff_") for t in net.extra_targets):
        raise ValueError("rescale does not apply to an affinity model: its offsets are in image voxels")
    scores = intensity = None
    if factor == "auto":
        intensity = _intensity(net, data, o.intensity_range)
        low, high, lut = intensity
        factor, scores = choose_rescale(net, data, low, 1.0 / (high - low), lut,
                                        device=dev if dev is not None else "cpu", progress=o.progress)
    return rescaled_network(net, factor, halo_given=o.halo is not None), factor, scores, intensity


def _parameters(job: _Job, o: _Options) -> dict:
    """What makes two runs the same run (an output is resumed only with the same parameters)."""
    params = {
        "model": job.net.fingerprint,
        "image": {"shape": list(job.shape), "dtype": str(job.data.dtype), "source": job.source},
        "voxel_size": list(job.voxel_size),
        "block": list(job.block),
        "halo": list(job.halo),
        "tta": bool(o.tta),
        "rescale": job.rescale,
        "amp": job.amp,
        "probabilities": bool(o.probabilities),
        "labels": bool(o.labels),
        "prob_dtype": o.prob_dtype if o.probabilities else None,
        "intensity_range": [job.low, job.high],
        "version": o.version,
    }
    if job.lut is not None:
        params["histogram_lut"] = [job.lut[0].tolist(), job.lut[1].tolist()]
    return params


def _compute(job: _Job, o: _Options, record: dict, root: Path, starts, done, client) -> tuple:
    """Run the blocks not in ``done``; returns (blocks run, output voxels computed)."""

    todo = [i for i in range(len(starts)) if i not in done]
    groups = [todo[i : i + job.batch_size] for i in range(0, len(todo), job.batch_size)]
    settings = Settings(block=job.block, halo=job.halo, batch_size=job.batch_size,
                        device=str(job.device) if job.device is not None else str(o.device), amp=job.amp,
                        tta=bool(o.tta), prob_dtype=o.prob_dtype, write_probabilities=bool(o.probabilities),
                        write_labels=bool(o.labels), low=job.low, scale=1.0 / (job.high - job.low), lut=job.lut,
                        prob_path=record.get("prob_path"), labels_path=record.get("labels_path"),
                        compile=bool(o.compile))
    block_voxels = [int(np.prod([min(b, n - a) for a, b, n in zip(st, job.block, job.shape)])) for st in starts]
    initial = sum(block_voxels[i] for i in done if i >= 0)
    bar = progress_bar(total=int(np.prod(job.shape)), initial=initial, unit="vox", unit_scale=True,
                       disable=not o.progress, desc=f"predict {len(todo)}/{len(starts)} blocks")
    log = RunLog(root)
    try:
        if client is not None:
            computed = run_distributed(client, job.net, settings, job.data, starts, groups, log, bar, block_voxels)
        else:
            computed = run_local(job.net, settings, job.data, starts, groups, log, bar, block_voxels, o.prefetch)
    finally:
        bar.close()
    return len(todo), computed


def _result(root: Path, job: _Job, o: _Options, n_blocks, skipped, t_start, computed, device, params):
    seconds = time.perf_counter() - t_start
    lab = None
    if o.labels:
        lab = f"{root}:/labels/segmentation" if o.probabilities else str(root)
    return PredictionResult(
        output=root, labels=lab, probabilities=str(root) if o.probabilities else None, blocks=n_blocks,
        blocks_skipped=skipped, seconds=seconds, voxels_per_second=computed / seconds if seconds > 0 else 0.0,
        device=str(device), amp=job.amp, block=job.block, halo=job.halo, batch_size=job.batch_size, parameters=params,
    )


def _run_section_model(model, image, root: Path, o: _Options, *, plan, client) -> PredictionResult:
    """``sam-auto`` and ``cellpose``: section by section (:mod:`._samauto`); block-level options do not apply."""
    given = [name for name, value in (("block", o.block), ("halo", o.halo), ("batch_size", o.batch_size),
                                      ("plan", plan), ("client", client), ("memory_limit", o.memory_limit),
                                      ("intensity_range", o.intensity_range)) if value is not None]
    given += [name for name, value in (("tta", o.tta), ("probabilities", o.probabilities), ("compile", o.compile),
                                       ("rescale", o.rescale != 1.0)) if value]
    if given or not o.labels:
        what = ", ".join(given) or "labels=False"
        raise ValueError(f"{model.split(':')[0]} segments whole sections into objects (labels only); {what} does not "
                         "apply to it: leave it out (set the model with --model-options, model_options={...} in Python)")
    return run_section_model(model, image, root, o.model_options, device=o.device, resume=o.resume,
                             overwrite=o.overwrite, pyramid=o.pyramid, version=o.version, progress=o.progress)


def _run(model, image, root: Path, o: _Options, *, plan, client) -> PredictionResult:
    """:func:`predict_volume`'s work: prepare and check, open (or resume) the output, run the blocks
    still to do, finish the output."""
    if is_section_model(model):
        return _run_section_model(model, image, root, o, plan=plan, client=client)
    t_start = time.perf_counter()
    _check_output_options(o)
    o.batch_size = _check_numbers(batch_size=o.batch_size, tta=o.tta, memory_limit=o.memory_limit,
                                  prefetch=o.prefetch, intensity_range=o.intensity_range)
    # before any work: never where it reads (image, model directory), a writable folder
    root = check_output(root, [image, *([model] if isinstance(model, (str, os.PathLike)) else [])],
                        overwrite=o.overwrite, exists_ok=True)
    if plan is not None:
        o.block, o.halo, o.batch_size, o.device = settings_from_plan(
            plan, block=o.block, halo=o.halo, batch_size=o.batch_size, device=o.device, memory_limit=o.memory_limit)
    job = _prepare(model, image, o, plan=plan, client=client)
    params = _parameters(job, o)
    starts = block_starts(job.shape, job.block)
    plan_device = job.device if job.device is not None else "cpu"

    def create():
        return create_output(root, job.shape, job.block, job.n_prob, o.prob_dtype, o.probabilities, o.labels,
                             job.net.n_classes, o.version)

    info = {"classes": job.net.classes, "extra_targets": job.net.extra_targets, "batch_size": job.batch_size}
    if job.rescale_scores:  # why 'auto' chose its factor: the score of each factor tried (None: nothing found)
        info["rescale_auto_scores"] = {f"{k:g}": (round(v, 5) if np.isfinite(v) else None)
                                       for k, v in job.rescale_scores.items()}
    done, record = open_run(root, params, overwrite=o.overwrite, resume=o.resume, create=create, info=info)
    if -1 in done:  # a finished output: nothing to do
        return _result(root, job, o, len(starts), len(starts), t_start, 0, plan_device, params)
    n_run, computed = _compute(job, o, record, root, starts, done, client)
    finish_run(root, record, job.voxel_size, o.version, o.probabilities, o.labels, o.pyramid, o.progress,
               job.net.classes + job.net.extra_targets, n_blocks=len(starts))
    return _result(root, job, o, len(starts), len(starts) - n_run, t_start, computed,
                   plan_device if client is None else "dask", params)


def _delete_marked(folder: Path) -> None:
    """Delete a folder vemkit wrote, what marks it as vemkit's last (its zarr metadata and run record),
    so that a kill never leaves unmarked leftovers."""
    if not folder.is_dir() or not (written_by_vemkit(folder) or not any(folder.iterdir())):
        return
    last = {".zgroup", ".zattrs", "zarr.json", RUN_FILE}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name in last):
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    folder.rmdir()


def _discard(work: Path) -> None:
    """Delete the intermediate OME-Zarr of a TIFF output: first moved aside, so that a kill never
    leaves a half-deleted store that looks resumable."""
    trash = work.with_name(work.name + ".deleting")
    if work.exists() and not trash.exists():
        os.replace(work, trash)
    _delete_marked(trash)


def _run_tiff(model, image, tif: Path, o: _Options, *, plan, client) -> PredictionResult:
    """Predict into an OME-Zarr next to the TIFF (``PARTIAL_SUFFIX``: the part a rerun resumes), write
    its labels as a TIFF with the voxel size, then delete the OME-Zarr."""
    if o.probabilities or not o.labels:
        raise ValueError("a TIFF output holds labels only; write probabilities to an .ome.zarr output")
    tif = expand(tif)
    work = tif.with_name(tif.name + PARTIAL_SUFFIX)
    inputs = [image, *([model] if isinstance(model, (str, os.PathLike)) else [])]
    tif = check_output(tif, inputs, overwrite=o.overwrite, exists_ok=work.exists())
    if work.exists() and tif.exists():  # an interrupted run of this output wrote it, or an older one
        check_replaceable(tif)
    _delete_marked(work.with_name(work.name + ".deleting"))  # left by a run killed while cleaning up
    res = _run(model, image, work, replace(o, pyramid=False), plan=plan, client=client)
    write_tiff(open_volume(res.labels, warn_missing_voxel_size=False), tif, overwrite=True, progress=o.progress)
    _discard(work)
    return replace(res, output=tif, labels=str(tif), probabilities=None)


def predict_volume(model, image, output, *, block=None, halo=None, batch_size: int | None = None, device="auto",
                   tta: bool = False, probabilities: bool = False, labels: bool = True, prob_dtype: str = "uint8",
                   amp="auto", intensity_range=None, client=None, resume: bool = True, overwrite: bool = False,
                   pyramid: bool = True, version: str = "0.4", memory_limit=None, compile: bool = False,
                   prefetch: int = 2, progress: bool = True, ndim: int | None = None, n_classes: int | None = None,
                   plan: InferencePlan | None = None, model_options: dict | None = None,
                   rescale=1.0) -> PredictionResult:
    """Predict a whole volume with a network, block by block, into OME-Zarr.

    Parameters
    ----------
    model : str, Path, SegmentationModel or torch.nn.Module
        A model directory (:func:`vemkit.models.load_model`), a generalist model (``"mitonet"``,
        ``"bioimageio:<id>"``, ``"sam-auto[:<SAM>]"``, ``"cellpose[:<model>]"``: instances, :mod:`._samauto`), a
        loaded model, or any module mapping
        (N, 1, [Z,] Y, X) float input to (N, classes, ...) logits (then pass ``halo`` and, if it has
        no ``out_channels`` attribute, ``n_classes`` is taken from the module's first output).
    image : str, Path, Volume or array of shape (Z, Y, X)
        Opened lazily; never loaded whole.
    output : str or Path
        The OME-Zarr to write. Labels only: the labels are the image. With ``probabilities``: the
        probabilities (c, z, y, x) are the image and the labels its label group ``segmentation``.
        ``.tif``/``.tiff``: the labels as a TIFF with the voxel size, via ``<output>.partial.ome.zarr``
        (what a rerun resumes; deleted once the TIFF is written). Never the image or model, nor in them.
    block : tuple of 3 int, optional
        Result block (z, y, x) per network call, a multiple of the network's divisor (default: the
        largest that fits the memory budget with the least halo overhead, see :func:`estimate`).
        It is also the chunk shape of the output.
    halo : tuple of 3 int, optional
        Context read around each block and cropped from the result (default: the model's).
    batch_size : int, optional
        Blocks per network call (default: 1 on CPU, as many as fit on a GPU, at most 16).
    device : str
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``; a missing device is an error.
    tta, rescale : bool, float or "auto"
        Average over all flips (4 in 2D, 8 in 3D); run the network on the image resized by ``rescale`` in
        y/x (:mod:`._rescale`; "auto": chosen on a sample; the factor used: ``parameters["rescale"]``).
    probabilities, labels, prob_dtype : bool, bool, {"uint8", "float16", "float32"}
        Which results to write; uint8 stores probability x 255, rounded.
    amp : {"auto", "bf16", "fp16", False}
        Mixed precision. "auto": CUDA bf16 where supported, else fp16; a CPU with AMX bf16, else
        float32 (:func:`vemkit._precision.resolve_amp`). False: float32 everywhere.
    intensity_range : (low, high), optional
        Grey values mapped to 0 and 1 (default: from the model's normalisation; for percentile
        normalisation, estimated once from a sample of the volume, so no block has its own statistics).
    client : dask.distributed.Client, optional
        Spread the blocks over this cluster's workers. Workers must see the image and the output path
        (a shared file system); each worker uses one GPU where there are GPUs.
    resume, overwrite : bool
        Finish an interrupted run (same model and parameters); replace an output vemkit wrote (never a
        folder holding other files).
    pyramid, version : bool, {"0.4", "0.5"}
        Add coarser levels for viewing once all blocks are done; the OME-Zarr version of the output.
    memory_limit : str or int, optional
        Working memory for one batch when choosing the block.
    compile, prefetch : bool, int
        ``torch.compile`` the network first (GPU; pays off on large volumes); batches read ahead.
    progress : bool
        Progress bar with voxels per second and time left.
    ndim, n_classes : int, optional
        For a bare module without ``ndim``/``out_channels``: 2 (by section) or 3, and its classes.
    plan : InferencePlan, optional
        From :func:`estimate` for this image: its device, block, halo and batch size are used (a
        keyword that says otherwise, or an image of another shape, is refused).
    model_options : dict, optional
        For ``sam-auto`` / ``cellpose``: AutoMaskSettings fields / ``diameter``, ``link_iou``,
        ``segmenter`` (loaded) and ``manifest_path`` (:func:`._samauto.run_section_model`).

    Returns
    -------
    PredictionResult

    Raises
    ------
    ValueError
        Before any work, for a network that cannot take the image, a block smaller than its halo, a
        block or halo that does not fit the network's divisor, a missing device, a keyword that
        contradicts ``plan``, or an output made by another run.
    FileExistsError
        If ``output`` holds something else and ``overwrite`` is False (or vemkit did not write it).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from vemkit.models import SegmentationModel, UNet
    >>> model = SegmentationModel(UNet(ndim=2, base_channels=4, depth=2), ["bg", "fg"], voxel_size=(50, 5, 5))
    >>> out = os.path.join(tempfile.mkdtemp(), "pred.ome.zarr")
    >>> res = predict_volume(model, np.random.rand(3, 64, 64).astype(np.float32), out, device="cpu",
    ...                      block=(1, 64, 64), progress=False)
    >>> res.blocks, res.labels == out
    (3, True)
    """
    options = _Options(block=block, halo=halo, batch_size=batch_size, device=device, tta=tta, labels=labels,
                       probabilities=probabilities, prob_dtype=prob_dtype, amp=amp, intensity_range=intensity_range,
                       resume=resume, overwrite=overwrite, pyramid=pyramid, version=version, compile=compile,
                       memory_limit=memory_limit, prefetch=prefetch, progress=progress, ndim=ndim, n_classes=n_classes,
                       model_options=model_options, rescale=rescale)
    if str(output).lower().endswith(_TIFF_SUFFIXES):
        return _run_tiff(model, image, Path(output), options, plan=plan, client=client)
    return _run(model, image, Path(output), options, plan=plan, client=client)
