"""Dense neuron segmentation: affinities from instance labels, a U-Net that predicts them, and the
agglomeration of predicted affinities into neurons, block by block.

The standard recipe of connectomics (Turaga et al. 2010; Lee et al. 2017; Funke et al. 2019; Wolf et
al. 2018), measured on FlyEM FIB-SEM in ``benchmarks/neurons.py`` and taught in notebook 08:

- :func:`affinity_offsets`, :func:`affinities`, :func:`boundary_map`: the training targets.
  Nearest-neighbour and long-range offsets (the same physical reach along z as in-plane); an affinity
  is masked where either voxel is unlabelled (0) or its partner lies outside the patch.
- :func:`train_affinities`: a 3D (or anisotropic 3D) U-Net chosen by :func:`vemkit.train.plan_training`,
  trained through the shared loop with elastic, misalignment and missing-section augmentations. The
  model directory records ``target = {"kind": "affinities", "offsets": ...}``, so ``vemkit predict``
  turns it into instance labels.
- :func:`agglomerate`: affinities to segments, ``"mws"`` (mutex watershed) or ``"mean"``
  (watershed fragments + mean-affinity agglomeration at a threshold); blockwise with the same result
  for any block size; :func:`threshold_sweep` scores a range of thresholds against ground truth.
- :func:`segment_neurons`: model + image -> instance labels (OME-Zarr, uint64), resumable.
- :func:`score` (VOI split / merge, ARAND), :func:`error_voxels`, :func:`plot_affinities`,
  :func:`plot_errors`, :func:`plot_sweep`: what went wrong, and where.

Not for: organelles, or any segmentation whose objects are separated by background (use
:mod:`vemkit.instances`); proofreading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._affinities import (affinities, affinity_offsets, boundary_map, check_instance_labels,  # noqa: F401
                          check_offsets_within_halo, offsets_halo)
from ._affinity_training import AFFINITY_CLASSES, train_affinities as _train
from ._agglomeration import METHODS, Agglomerator
from ._inputs import as_volume_array
from ._neuron_views import error_voxels, plot_affinities, plot_errors, plot_sweep
from ._omezarr import remove_tree
from .io import write_ome_zarr
from .metrics import adapted_rand_error, variation_of_information
from .models import SegmentationModel, load_model
from .predict import predict_volume

__all__ = ["AFFINITY_CLASSES", "METHODS", "affinities", "affinity_offsets", "agglomerate", "boundary_map",
           "check_instance_labels", "error_voxels", "is_affinity_model", "plot_affinities", "plot_errors", "plot_sweep",
           "score", "segment_neurons", "threshold_sweep", "train_affinities"]

#: Default thresholds: "mean" merges while the mean affinity is at least this; "mws" has no threshold
#: (its ``bias`` shifts the repulsive weights: > 0 splits more).
DEFAULT_THRESHOLD = 0.5


def train_affinities(image, labels, *, out=None, voxel_size=None, offsets=None, plan=None, minutes=None,
                     iterations=None, device="auto", seed=0, amp="auto", overwrite=False, progress=True,
                     **plan_overrides) -> SegmentationModel:
    """Train a 3D U-Net to predict affinities and a boundary map from dense instance labels.

    Parameters
    ----------
    image : path, Volume or array (Z, Y, X)
    labels : path, Volume or integer array (Z, Y, X)
        One id per neuron, 0 = unlabelled (ignored by every loss). Checked before any work
        (:func:`check_instance_labels`): at least two ids, and not a semantic class map.
    out : str or Path, optional
        Model directory to write.
    voxel_size : (z, y, x) nm, optional
        Default: the image's or the labels'.
    offsets : list of (dz, dy, dx), optional
        Default :func:`affinity_offsets` of the voxel size (nearest neighbours, 30 nm and 90 nm).
    plan : TrainingPlan, optional
        Default: :func:`vemkit.train.plan_training` on the boundary map, forced 3D.
    minutes, iterations : budget
    **plan_overrides
        Plan fields, e.g. ``patch=(32, 96, 96), batch_size=1, model_size="tiny"``.

    Returns
    -------
    SegmentationModel
        Classes ``["inside", "boundary"]`` then one sigmoid channel per offset; ``target`` says so.
    """
    return _train(image, labels, out=out, voxel_size=voxel_size, offsets=offsets, plan=plan, minutes=minutes,
                  iterations=iterations, device=device, seed=seed, amp=amp, overwrite=overwrite, progress=progress,
                  **plan_overrides)


def is_affinity_model(model) -> bool:
    """Whether a model (directory or loaded) predicts affinities (its config's ``target``)."""
    if not isinstance(model, SegmentationModel):
        try:
            model = load_model(model)
        except ValueError:
            return False
    return bool(model.target) and model.target.get("kind") == "affinities"


def agglomerate(affs, offsets, *, method: str = "mws", threshold: float = DEFAULT_THRESHOLD, bias: float = 0.0,
                block=(64, 128, 128), halo=None, seed_threshold: float = 0.9, grow_steps: int = 4,
                work=None, resume: bool = True, progress: bool = False):
    """Segments from affinities ``(C, Z, Y, X)`` (float in [0, 1] or uint8 x 255), block by block.

    Parameters
    ----------
    affs : array-like (numpy, zarr, dask)
        One channel per offset (partner = voxel + offset).
    offsets : list of (dz, dy, dx)
        Must hold the three nearest neighbours; all steps <= 0.
    method : {"mws", "mean"}
        Mutex watershed on the fragment graph, or mean-affinity agglomeration up to ``threshold``.
    threshold : float
        ``"mean"``: merge while the mean nearest-neighbour affinity between two segments is at least
        this (lower: fewer splits, more merges).
    bias : float
        ``"mws"``: added to every repulsive weight (1 - long-range affinity); > 0 splits more.
    block, halo : (z, y, x)
        Block per step; context (default: the longest offset, at least ``2 * grow_steps``; smaller than
        an offset is an error).
    seed_threshold, grow_steps
        Fragments: seeds where the mean incident nearest-neighbour affinity is at least
        ``seed_threshold``, grown ``grow_steps`` voxels across affinities >= 0.5, then ``grow_steps``
        more across any (each step a free voxel joins its neighbour across the highest affinity).
    work : str or Path, optional
        Folder for the stages and their logs: a run killed half way resumes there. None: in memory.

    Returns
    -------
    numpy.ndarray (uint64)
        Segment ids 1.. numbered in raster order of first appearance (the same array for any ``block``).

    Examples
    --------
    >>> lab = np.zeros((4, 8, 8), int); lab[:, :, :4] = 1; lab[:, :, 4:] = 2
    >>> aff, _ = affinities(lab, affinity_offsets((10, 10, 10), (30,)))
    >>> seg = agglomerate(aff, affinity_offsets((10, 10, 10), (30,)), block=(2, 4, 4))
    >>> np.unique(seg).tolist(), bool((seg[:, :, :4] == 1).all())
    ([1, 2], True)
    """
    ag = Agglomerator(affs, offsets, method=method, threshold=threshold, bias=bias, seed_threshold=seed_threshold,
                      grow_steps=grow_steps, block=block, halo=halo, work=work, progress=progress)
    return np.asarray(ag.run(resume=resume)).astype(np.uint64)


def score(seg, truth, ignore=None) -> dict:
    """VOI split and merge (bits), their sum and the adapted Rand error of ``seg`` against ``truth``
    (truth id 0 ignored)."""
    split, merge = variation_of_information(seg, truth, ignore, ignore_background=True)
    are = adapted_rand_error(seg, truth, ignore)[0]
    return {"voi_split": float(split), "voi_merge": float(merge), "voi": float(split + merge), "arand": float(are),
            "segments": int(np.unique(seg).size)}


def threshold_sweep(affs, offsets, truth, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), *, method="mean",
                    **kwargs) -> list:
    """Score the segmentation at each threshold (``"mean"``) or bias (``"mws"``) against ``truth``.

    Fragments and their graph are made once; each threshold re-solves the graph only. Returns one
    dict per threshold: ``threshold`` plus the keys of :func:`score`.
    """
    truth = np.asarray(truth)
    ag = Agglomerator(affs, offsets, method=method, block=kwargs.pop("block", truth.shape), **kwargs)
    ag.run()
    rows = []
    for t in thresholds:
        seg = ag.solve(method, threshold=t if method == "mean" else DEFAULT_THRESHOLD, bias=t if method == "mws" else 0.0)
        rows.append({"threshold": float(t), **score(seg, truth)})
    return rows


class _Channels:
    """The affinity channels of a probability array (c, z, y, x): channels ``start..``, read lazily."""

    def __init__(self, array, start):
        self.array, self.start = array, start
        self.shape = (array.shape[0] - start, *array.shape[1:])

    def __getitem__(self, index):
        return self.array[(index[0] + self.start,) + tuple(index[1:])]


def segment_neurons(model, image, out, *, method: str = "mws", threshold: float = DEFAULT_THRESHOLD,
                    bias: float = 0.0, agglomeration_block=(64, 128, 128), device="auto", resume: bool = True,
                    overwrite: bool = False, keep_affinities: bool = False, progress: bool = True, **predict_kw) -> Path:
    """Predict affinities with an affinity model and agglomerate them into instance labels (OME-Zarr, uint64).

    Both steps are blockwise and resumable: the affinities (``OUT.work/affinities.ome.zarr``) and the
    agglomeration stages (``OUT.work/agglomeration``) keep logs of finished blocks; run again with the
    same arguments to finish an interrupted run. The work folder is removed at the end unless
    ``keep_affinities``. ``predict_kw`` go to :func:`vemkit.predict.predict_volume` (``block``,
    ``halo``, ``batch_size``, ``tta``, ``amp``...); ``agglomeration_block`` is the agglomeration's block.

    Returns
    -------
    Path of the label OME-Zarr.
    """
    import dask.array as da
    import zarr

    model = model if isinstance(model, SegmentationModel) else load_model(model)
    if not is_affinity_model(model):
        raise ValueError("this model does not predict affinities (its config has no target "
                         "{'kind': 'affinities'}); train one with vemkit.neurons.train_affinities")
    offsets = [tuple(o) for o in model.target["offsets"]]
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True")
    work = Path(str(out) + ".work")
    Agglomerator(np.zeros((len(offsets), 1, 1, 1), np.uint8), offsets, method=method, threshold=threshold)  # checks
    res = predict_volume(model, image, work / "affinities.ome.zarr", probabilities=True, labels=False,
                         device=device, resume=resume, overwrite=not resume, pyramid=False, progress=progress,
                         **predict_kw)
    probs = zarr.open_group(str(res.probabilities), mode="r")["0"]
    affs = _Channels(probs, len(AFFINITY_CLASSES))
    seg = Agglomerator(affs, offsets, method=method, threshold=threshold, bias=bias, block=agglomeration_block,
                       work=work / "agglomeration", progress=progress).run(resume=resume)
    vs = as_volume_array(image, "image").voxel_size or model.voxel_size or (1.0, 1.0, 1.0)
    write_ome_zarr(da.from_zarr(seg).astype(np.uint64), out, voxel_size=vs, kind="labels", overwrite=overwrite,
                   progress=progress)
    if not keep_affinities:
        remove_tree(work)
    return out
