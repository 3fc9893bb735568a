"""The output of a prediction: the OME-Zarr it writes, the run record and the log of finished blocks.

:func:`open_run` decides between a fresh output, resuming an interrupted one (the same model and
parameters) and refusing (someone else's files); :class:`RunLog` records each block once its data is
written; :func:`finish_run` builds the pyramid and the OME metadata once every block is done, and
only then marks the run complete. Every step after the blocks can be redone: a run killed while
building the pyramid rebuilds it when resumed. Not for: computing blocks (:mod:`._runner`), checking
output paths against the inputs (:mod:`vemkit._outputs`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from .._omezarr import set_ome_attrs, write_multiscale
from .._outputs import LOG_FILE, RUN_FILE, mark_output, remove_output

__all__ = ["RUN_FILE", "LOG_FILE", "RunLog", "open_run", "create_output", "write_record", "finish_run"]

# RUN_FILE: the run record in the output (parameters, status "running" / "complete", array paths);
# LOG_FILE: the finished blocks, one index per line (both names live in vemkit._outputs, which knows
# them as vemkit's own files).


class RunLog:
    """The record of finished blocks next to the output: one block index per line, appended only
    after the block's data is written, so a killed run never counts a block it did not finish."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOG_FILE
        self._lock = threading.Lock()

    def done(self) -> set:
        if not self.path.exists():
            return set()
        out = set()
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if line.isdigit():  # a line cut short by a kill is ignored
                out.add(int(line))
        return out

    def add(self, indices):
        with self._lock, open(self.path, "a") as f:
            f.write("".join(f"{int(i)}\n" for i in indices))
            f.flush()


def _prepare_output(root: Path, params: dict, *, overwrite: bool, resume: bool):
    """Decide between a fresh output, resuming, or refusing. Returns the set of finished blocks
    (with -1 when the run was complete), or None for a fresh start."""
    if not root.exists():
        return None
    if overwrite:
        remove_output(root)  # only an output vemkit wrote, holding nothing else
        return None
    run_path = root / RUN_FILE
    if not run_path.is_file():
        raise FileExistsError(
            f"output {str(root)!r} already exists and was not written by vemkit.predict; vemkit never "
            "replaces your files unless asked: pass overwrite=True (--overwrite) or choose another path"
        )
    previous = json.loads(run_path.read_text())
    if not resume:
        raise FileExistsError(f"output {str(root)!r} exists (a previous prediction); pass resume=True to finish "
                              "it or overwrite=True to replace it")
    old = previous.get("parameters", {})
    diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
    if diff:
        detail = "; ".join(f"{k}: before {old.get(k)!r}, now {params.get(k)!r}" for k in diff[:4])
        raise ValueError(
            f"output {str(root)!r} was made by another model or with other parameters ({detail}); it is resumed "
            "only by the same run: pass overwrite=True to replace it or choose another output"
        )
    return RunLog(root).done() | ({-1} if previous.get("status") == "complete" else set())


def create_output(root: Path, shape, block, n_prob, prob_dtype, write_probs, write_labels, n_classes, version):
    """Create the empty full-resolution arrays (chunks = blocks); returns (probabilities path, labels
    path), each None when not written."""
    import zarr

    zarr_format = 2 if version == "0.4" else 3
    group = zarr.open_group(str(root), mode="w-", zarr_format=zarr_format)
    mark_output(group, "prediction")

    def create(g, name, shp, chunks, dtype, dims):
        kwargs = dict(name=name, shape=shp, chunks=chunks, dtype=dtype, fill_value=0, overwrite=False)
        if zarr_format == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = dims
        g.create_array(**kwargs)
        return str(root / Path(g.path) / name) if g.path else str(root / name)

    ldtype = "uint8" if n_classes <= 256 else "int16"
    prob_path = labels_path = None
    if write_probs:
        prob_path = create(group, "0", (n_prob, *shape), (1, *block), prob_dtype, ["c", "z", "y", "x"])
        if write_labels:
            seg = group.require_group("labels").require_group("segmentation")
            labels_path = create(seg, "0", shape, block, ldtype, ["z", "y", "x"])
    else:
        labels_path = create(group, "0", shape, block, ldtype, ["z", "y", "x"])
    return prob_path, labels_path


def open_run(root: Path, params: dict, *, overwrite: bool, resume: bool, create, info: dict):
    """``(finished blocks, run record)`` of the output at ``root``: a fresh one is made with
    ``create()`` -> ``(prob_path, labels_path)`` and its record (``params``, then ``info``) written;
    an interrupted one (same parameters) is resumed; a finished one has -1 among its finished blocks.

    Raises
    ------
    FileExistsError
        For an output vemkit did not write, or an earlier one without ``resume``.
    ValueError
        For an earlier output of another model or other parameters.
    """
    done = _prepare_output(root, params, overwrite=overwrite, resume=resume)
    if done is None:
        prob_path, labels_path = create()
        record = {"parameters": params, "status": "running", **info, "prob_path": prob_path,
                  "labels_path": labels_path}
        write_record(root, record)
        return set(), record
    return done, json.loads((root / RUN_FILE).read_text())


def write_record(root: Path, record: dict) -> None:
    """Write the run record next to the output."""
    (root / RUN_FILE).write_text(json.dumps(record, indent=1))


def finish_run(root: Path, record: dict, voxel_size, version, write_probs, write_labels, pyramid, progress, classes,
               n_blocks: int):
    """Build the coarser levels from the finished full-resolution arrays, write the OME metadata and
    mark the run complete, once the log holds all ``n_blocks`` blocks.

    Idempotent: coarser levels left by an interrupted call are rebuilt, the metadata rewritten.

    Raises
    ------
    RuntimeError
        When the log lacks blocks (the output stays incomplete, so the next run computes them).
    """
    import dask.array as da
    import zarr

    missing = sorted(set(range(n_blocks)) - RunLog(root).done())
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {n_blocks} blocks of {str(root)!r} are not in its log (first: {missing[:5]}); "
            "the output is not complete: run the same prediction again to compute them"
        )
    group = zarr.open_group(str(root), mode="r+")
    levels = None if pyramid else 1

    def finish(g, name, kind):
        for level in range(1, 33):  # coarser levels left by an interrupted run are rebuilt
            if str(level) in g:
                del g[str(level)]
        data = da.from_zarr(g["0"])
        ms, _ = write_multiscale(g, data, voxel_size, name=name, version=version, chunks=g["0"].chunks[-3:],
                                 levels=levels, kind=kind, memory_bytes=256 * 2**20, progress=progress,
                                 base_written=True)
        return ms

    if write_probs:
        ms = finish(group, "probabilities", "image")
        set_ome_attrs(group, version, {"multiscales": [ms]})
        group.attrs["vemkit"] = {"channels": list(classes)}
        if write_labels:
            labels_group = group["labels"]
            seg = labels_group["segmentation"]
            ms_l = finish(seg, "segmentation", "labels")
            image_label = {"source": {"image": "../../"}}
            if version == "0.4":
                image_label["version"] = "0.4"
            set_ome_attrs(seg, version, {"multiscales": [ms_l], "image-label": image_label})
            set_ome_attrs(labels_group, version, {"labels": ["segmentation"]})
    else:
        ms = finish(group, "labels", "labels")
        set_ome_attrs(group, version, {"multiscales": [ms]})
    record["status"] = "complete"
    write_record(root, record)
