"""The main job: run notebooks 01 to 05 in order, each on the previous one's outputs, and report.

:func:`tour` executes the teaching notebooks with papermill, passing each one's outputs to the next
through its parameters (01's OME-Zarr and ground truth to all, 02's annotations to 03, 03's model to
04, 04's labels to 05), and writes the executed notebooks, every file they make, ``tour.json`` (the
machine-readable record), ``tour.log`` (everything the notebooks' kernels and papermill printed) and
``report.html``: one self-contained page with the key figures, metrics,
the morphometrics table, time per step, package versions, device and the SHA-256 of every data file
used — a provenance record of the run.

The data: by default the Drosophila VNC ssTEM stack from the manifest, downloaded and verified on
first use (``VEMKIT_DATA_DIR`` points at a cache that already holds it). When it can be had neither
from the cache nor from the network, the tour says so and runs on the synthetic phantom; a dataset
named explicitly is never replaced.

Not for: the steps themselves (they live in the notebooks and the modules they call).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import _provenance, datasets
from ._errors import UnknownNameError
from ._report import headline, write_report
from .examples import HEADLESS_ENV
from .train import base_model_path

__all__ = ["DEFAULT_DATASET", "NOTEBOOKS", "TourError", "TourResult", "find_notebooks", "resolve_dataset",
           "tour", "tour_parameters"]

#: The dataset the tour runs on when none is named.
DEFAULT_DATASET = "drosophila_vnc_sstem"
#: The notebooks the tour runs, in order.
NOTEBOOKS = ("01_load_and_explore", "02_annotate", "03_transfer_learning", "04_gpu_inference", "05_quantify")
TITLES = {
    "01_load_and_explore": "01 · load and explore",
    "02_annotate": "02 · annotate",
    "03_transfer_learning": "03 · transfer learning",
    "04_gpu_inference": "04 · GPU inference",
    "05_quantify": "05 · quantify",
}
# Every notebook works on the same crop (01 converts the whole volume; the others take its first
# MAX_SECTIONS x CROP_YX x CROP_YX voxels): the notebooks' defaults, or what their QUICK switch makes of them.
_OWN = ("tour.json", "report.html", "tour.log", "notebooks", *NOTEBOOKS)  # what a tour writes into its folder
_KERNEL = "vemkit-tour"


class TourError(RuntimeError):
    """A notebook of the tour failed; the message names it, its executed copy and the partial report."""


@dataclass
class TourResult:
    """What :func:`tour` made.

    Attributes
    ----------
    out : Path
        The tour's folder.
    report : Path
        ``report.html`` in it.
    record : dict
        Everything the report shows (also in ``tour.json``): steps, metrics, times, versions, device,
        dataset and its files' SHA-256.
    """

    out: Path
    report: Path
    record: dict = field(repr=False)

    @property
    def dataset(self) -> str:
        """The dataset the notebooks ran on (``"synthetic"`` after a fallback)."""
        return self.record["dataset"]["name"]

    @property
    def steps(self) -> list:
        return self.record["steps"]


def find_notebooks(folder=None) -> Path:
    """The folder holding the tour's notebooks.

    Looks in ``folder`` when given, else in the source checkout beside the package (``notebooks/`` of
    the repository, for editable installs), else where a wheel installs them
    (``<prefix>/share/vemkit/notebooks``).

    Raises
    ------
    FileNotFoundError
        None of these holds all five notebooks; the message lists where it looked.

    Examples
    --------
    >>> sorted(p.stem for p in find_notebooks().glob("0[1-5]_*.ipynb")) == list(NOTEBOOKS)
    True
    """
    import sysconfig

    here = Path(__file__).resolve().parent
    if folder is not None:
        candidates = [Path(folder)]
    else:
        candidates = [here.parent.parent / "notebooks"]
        for scheme in {sysconfig.get_default_scheme(), f"{os.name}_user"}:
            with contextlib.suppress(KeyError):
                candidates.append(Path(sysconfig.get_path("data", scheme)) / "share" / "vemkit" / "notebooks")
        candidates.append(Path(sys.prefix) / "share" / "vemkit" / "notebooks")
    for c in candidates:
        if all((c / f"{stem}.ipynb").is_file() for stem in NOTEBOOKS):
            return c
    raise FileNotFoundError(
        "the tour's notebooks (" + ", ".join(f"{s}.ipynb" for s in NOTEBOOKS) + ") are not in "
        + " or ".join(str(c) for c in candidates)
        + "; pass the repository's notebooks/ folder (vemkit tour --notebooks DIR)"
    )


def _tour_datasets() -> list[str]:
    names = []
    for name in datasets.list_datasets():
        entry = datasets.get_entry(name)
        spec = (entry.get("volumes") or {}).get(entry.get("default_volume") or "", {})
        if "mitochondria" in spec.get("labels", {}) and entry.get("voxel_size_nm"):
            names.append(name)
    return names + ["synthetic"]


def _check_dataset_name(name):
    if name == "synthetic":
        return
    try:
        datasets.get_entry(name)
    except KeyError:
        raise UnknownNameError(f"no dataset named {name!r}; the tour runs on: {', '.join(_tour_datasets())}") from None
    if name not in _tour_datasets():
        raise ValueError(f"dataset {name!r} has no mitochondria labels with a known voxel size, which every notebook "
                         f"of the tour scores against; the tour runs on: {', '.join(_tour_datasets())}")


def _verify_cached(name: str, files: list[dict]) -> Path:
    """Check a dataset's files in the cache without any download (``offline=True``)."""
    folder = datasets.cache_dir(name)
    absent = [f["path"] for f in files if not (folder / f["path"]).is_file()]
    if absent:
        raise ConnectionError(f"offline, and the cache {folder} lacks {len(absent)} of its {len(files)} files, "
                              f"e.g. {absent[0]}; ${datasets.ENV_VAR} names the cache")
    for f in files:
        if _provenance.sha256_file(folder / f["path"]) != f["sha256"]:
            raise ValueError(f"dataset {name!r}: {folder / f['path']} does not match its SHA-256 in the manifest; "
                             "delete it and fetch the dataset again")
    return folder


def resolve_dataset(dataset: str | None = None, *, offline: bool = False, progress: bool = True) -> dict:
    """Decide which data the tour runs on, fetching and verifying it.

    Parameters
    ----------
    dataset : str, optional
        A manifest dataset with mitochondria labels, or ``"synthetic"``. ``None`` (the default) means
        :data:`DEFAULT_DATASET`, replaced by the synthetic phantom when it is neither in the cache nor
        downloadable; a dataset named here is never replaced.
    offline : bool
        Never download: use the dataset only if the cache already holds every file.
    progress : bool
        Show a progress bar while fetching.

    Returns
    -------
    dict
        ``name`` (what the notebooks run on), ``requested``, ``fallback`` (why the phantom replaced
        the default, else ``None``), and for a real dataset its manifest facts and every file used
        with its SHA-256 (verified byte for byte), plus ``files_sha256``, the SHA-256 of that list.

    Raises
    ------
    KeyError
        Unknown dataset name (the message lists the tour's datasets).
    ValueError
        A dataset the tour cannot use (no mitochondria labels), or a cached file that does not match
        its SHA-256.
    ConnectionError
        A dataset named explicitly is not in the cache and cannot be downloaded.

    Examples
    --------
    >>> resolve_dataset("synthetic")["fallback"] is None
    True
    >>> resolve_dataset("no_such_data")
    Traceback (most recent call last):
    ...
    vemkit._errors.UnknownNameError: no dataset named 'no_such_data'; the tour runs on: ...
    """
    requested = dataset
    name = DEFAULT_DATASET if dataset is None else dataset
    _check_dataset_name(name)
    if name == "synthetic":
        return {"name": "synthetic", "requested": requested, "fallback": None, "files": []}
    entry = datasets.get_entry(name)
    volume = entry.get("default_volume") or next(iter(entry["volumes"]))
    needed = set(datasets.files_for(entry, entry["volumes"][volume]))
    files = [f for f in entry["files"] if f["path"] in needed]
    try:
        folder = _verify_cached(name, files) if offline else datasets.fetch(name, files=sorted(needed),
                                                                              progress=progress)
    except ConnectionError as err:
        if requested is not None:
            raise ConnectionError(f"dataset {name!r} is not available: {err}. Connect to the internet, set ${datasets.ENV_VAR} "
                                  "to a folder that holds it, or run the tour with --dataset synthetic") from err
        reason = (f"{name} could not be had ({err}). The tour runs on the synthetic phantom instead; for the real "
                  f"data, connect to the internet or set ${datasets.ENV_VAR} to a folder holding {name}/")
        print(f"NOTE: {reason}", file=sys.stderr, flush=True)
        return {"name": "synthetic", "requested": requested, "fallback": reason, "files": []}
    listing = "".join(f"{f['sha256']}  {f['path']}\n" for f in sorted(files, key=lambda f: f["path"]))
    return {
        "name": name, "requested": requested, "fallback": None, "volume": volume, "title": entry.get("title"),
        "modality": entry.get("modality"), "voxel_size_nm": entry.get("voxel_size_nm"),
        "licence": entry.get("licence"), "citation": entry.get("citation"), "source": entry.get("source"),
        "folder": str(Path(folder).resolve()), "cache": str(datasets.cache_dir().resolve()), "verified": "every file's SHA-256 checked against the manifest before the run",
        "files": [{"path": f["path"], "sha256": f["sha256"], "size": f.get("size")} for f in files],
        "files_sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }


def tour_parameters(stem: str, *, dataset: str, out: Path, device: str = "auto", quick: bool = False,
                    data_dir=None, previous: dict | None = None) -> dict:
    """The papermill parameters of one notebook of the tour.

    Parameters
    ----------
    stem : str
        One of :data:`NOTEBOOKS`.
    dataset : str
        What the notebooks run on.
    out : Path
        The tour's folder; each notebook writes to ``out / stem``.
    device : str
        Passed to the notebooks that train or predict.
    quick : bool
        The minutes-long version: ``QUICK=True`` for every notebook (its own small crop and budgets).
    data_dir : str or Path, optional
        The dataset cache, passed on as an absolute path (the notebooks run in ``out``).
    previous : dict
        ``metrics.json`` of the notebooks already run, by stem: where the chain's inputs come from.

    Examples
    --------
    >>> p = tour_parameters("04_gpu_inference", dataset="synthetic", out=Path("/tmp/t"), quick=True, previous={
    ...     "01_load_and_explore": {"ome_zarr": "/tmp/t/01/image.ome.zarr"},
    ...     "03_transfer_learning": {"model_dir": "/tmp/t/03/model_unet"}})
    >>> p["MODEL_DIR"], p["LABELS_PATH"], p["QUICK"]
    ('/tmp/t/03/model_unet', '/tmp/t/01/image.ome.zarr:/labels/mitochondria', True)
    """
    if stem not in NOTEBOOKS:
        raise UnknownNameError(f"{stem!r} is not a notebook of the tour: {', '.join(NOTEBOOKS)}")
    previous = previous or {}
    params = {"DATASET": dataset, "QUICK": bool(quick), "OUTPUT_DIR": str(Path(out) / stem)}
    if data_dir is not None and dataset != "synthetic":
        params["DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    if stem != NOTEBOOKS[0]:
        image = previous["01_load_and_explore"]["ome_zarr"]
        params["IMAGE_PATH"] = image
        if stem != "05_quantify":  # 05 takes the truth (instances, membranes) from the dataset itself
            params["LABELS_PATH"] = f"{image}:/labels/mitochondria"
    if stem in ("02_annotate", "03_transfer_learning", "04_gpu_inference"):
        params["DEVICE"] = device
    if stem == "03_transfer_learning":
        params["ANNOTATIONS_PATH"] = previous["02_annotate"]["annotations"]
    elif stem == "04_gpu_inference":
        params["MODEL_DIR"] = previous["03_transfer_learning"]["model_dir"]
        params["CLASS_NAME"] = "mitochondria"
    elif stem == "05_quantify":
        params["MASK_PATH"] = previous["04_gpu_inference"]["labels"]
        params["MASK_CLASS"] = previous["04_gpu_inference"]["class_index_for_05"]
    return params


def _prepare_out(out, overwrite: bool) -> Path:
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{str(out)!r} is not empty; choose a new --out folder, or pass --overwrite to "
                                  "replace an earlier tour there")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN)
        if foreign:
            raise FileExistsError(f"{str(out)!r} holds files the tour did not make ({', '.join(foreign[:5])}); "
                                  "--overwrite only replaces an earlier tour's folder")
        for name in _OWN:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to the output folder {str(out)!r} ({err.strerror or err}); "
                              "choose another with --out") from err
    return out


@contextlib.contextmanager
def _kernel_of_this_python():
    """A kernelspec that runs this very interpreter, so the notebooks use the vemkit that runs the tour."""
    with tempfile.TemporaryDirectory(prefix="vemkit-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / _KERNEL
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"vemkit tour ({sys.executable})", "language": "python",
        }))  # fmt: skip
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield _KERNEL
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def _restore_kernelspec(executed: Path, source: Path):
    """Give the executed notebook its source's kernelspec back (the tour's temporary one is gone)."""
    import nbformat

    if not executed.exists():
        return
    nb = nbformat.read(executed, as_version=4)
    src = nbformat.read(source, as_version=4)
    if "kernelspec" in src.metadata:
        nb.metadata["kernelspec"] = src.metadata["kernelspec"]
        nbformat.write(nb, executed)


def _models(previous: dict) -> list[dict]:
    """The models the run used, with the SHA-256 of their files."""
    m03 = previous.get("03_transfer_learning") or {}
    models = []
    if m03.get("base_model"):
        base = m03["base_model"]
        with contextlib.suppress(ValueError):
            folder = Path(base) if Path(base).is_dir() else base_model_path(base)
            models.append({"role": "base model fine-tuned in 03", "name": base,
                           "files": _provenance.folder_files(folder)})
    if m03.get("model_dir"):
        models.append({"role": "fine-tuned in 03, run by 04", "name": m03["model_dir"],
                       "files": _provenance.folder_files(m03["model_dir"])})
    return models


def _write_record(record: dict, out: Path) -> Path:
    (out / "tour.json").write_text(json.dumps(record, indent=1, default=str))
    return write_report(record, out / "report.html")


def tour(out="outputs/tour", dataset: str | None = None, *, device: str = "auto", quick: bool = False,
         offline: bool = False, overwrite: bool = False, notebooks=None, progress: bool = True,
         command: str | None = None) -> TourResult:
    """Run notebooks 01 to 05 in order, each on the previous one's outputs, and write the report.

    Parameters
    ----------
    out : str or Path
        Folder for everything the tour writes: ``report.html``, ``tour.json``, the executed notebooks
        in ``notebooks/`` and each notebook's outputs in a folder named after it. It must be new or
        empty (or an earlier tour's folder, with ``overwrite=True``).
    dataset : str, optional
        ``"drosophila_vnc_sstem"`` (the default when ``None``), another manifest dataset with
        mitochondria labels, or ``"synthetic"``. See :func:`resolve_dataset` for the offline fallback.
    device : str
        ``"auto"`` (CUDA, MPS, else CPU), ``"cpu"``, ``"cuda"`` ...; a requested device that is missing
        is an error.
    quick : bool
        A few minutes on a laptop CPU: every notebook with ``QUICK=True`` (6 sections of 256 x 256,
        short training budgets). The full tour uses the notebooks' defaults (20 sections of 1024 x 1024,
        minutes of training).
    offline : bool
        Never download data (use the cache, else the phantom).
    overwrite : bool
        Replace an earlier tour in ``out``.
    notebooks : str or Path, optional
        Folder of the notebooks (default: :func:`find_notebooks`).
    progress : bool
        Print one line per notebook (its time and what it found) and where the report and the log are.
        Whatever the notebooks' kernels and papermill print goes to ``tour.log`` in ``out`` either way.
    command : str, optional
        How the run was started, for the record (the command line passes its own).

    Returns
    -------
    TourResult
        The folder, the report's path and the record.

    Raises
    ------
    KeyError, ValueError, ConnectionError
        Bad dataset or device (before anything runs); see :func:`resolve_dataset`.
    FileExistsError, PermissionError
        ``out`` is not empty, or not writable.
    TourError
        A notebook failed. The report is still written (marking the failed step), and the executed
        notebook holds the traceback.

    Examples
    --------
    >>> res = tour("/tmp/vemkit-tour", quick=True)  # doctest: +SKIP
    >>> res.report  # doctest: +SKIP
    PosixPath('/tmp/vemkit-tour/report.html')
    """
    import papermill  # noqa: F401 - missing, it fails here, before anything is written

    if dataset is not None:
        _check_dataset_name(dataset)
    device_info = _provenance.device_info(device)
    nb_dir = find_notebooks(notebooks)
    out = _prepare_out(out, overwrite)
    started = time.time()
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    say(f"vemkit tour{' --quick' if quick else ''}: notebooks {nb_dir} -> {out}")
    data = resolve_dataset(dataset, offline=offline, progress=progress)
    say(f"data: {data['name']}" + (" (synthetic phantom, no download)" if data["name"] == "synthetic" else
                                   f" ({len(data['files'])} files verified in {data['folder']})"))
    say(f"device: {device_info['resolved']} ({device_info['name']})")
    record = {
        "vemkit_tour": 1, "status": "running", "quick": quick, "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "out": str(out), "notebooks_dir": str(nb_dir), "kernel_python": sys.executable, "dataset": data, "device": device_info,
        "versions": _provenance.package_versions(), "machine": _provenance.machine_info(),
        "source": _provenance.source_info(), "steps": [], "models": [],
    }
    (out / "notebooks").mkdir(exist_ok=True)
    previous, failure = _run_chain(record, nb_dir, out, device=device, quick=quick, progress=progress)
    report = _finish_record(record, out, previous, started, failure)
    if failure is not None:
        if isinstance(failure, KeyboardInterrupt):
            raise failure
        bad = next(s for s in record["steps"] if s["status"] in ("failed", "interrupted"))
        raise TourError(f"notebook {bad['notebook']} failed: {bad['error']}\nexecuted notebook with the traceback: "
                        f"{bad['executed']}\npartial report: {report}\nlog: {out / 'tour.log'}") from failure
    say(f"tour complete in {record['seconds']:.0f} s: {report}\n(the notebooks' messages: {out / 'tour.log'})")
    return TourResult(out=out, report=report, record=record)


@contextlib.contextmanager
def _headless():
    """Tell the notebooks that nobody sits at them (:func:`vemkit.examples.running_headless`)."""
    old = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = old


@contextlib.contextmanager
def _output_to(log):
    """Send this process's output, and that of the kernels it starts (they inherit it), to ``log``.

    Kernels print to the file descriptors they inherit ("Kernel is running over TCP without encryption",
    ipykernel's shutdown messages), papermill logs through Python: both streams are redirected.
    """
    for stream in (sys.stdout, sys.stderr, log):
        stream.flush()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("papermill")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        log.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _run_chain(record: dict, nb_dir: Path, out: Path, *, device: str, quick: bool, progress: bool):
    """Run the notebooks in order, each on the previous one's outputs, one line each on the terminal.

    Returns the ``metrics.json`` of those that ran, by stem, and the exception that stopped the chain (or None).
    """
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    data = record["dataset"]
    previous: dict = {}
    failure = None
    with _kernel_of_this_python() as kernel, _headless(), (out / "tour.log").open("a") as log:
        for i, stem in enumerate(NOTEBOOKS, 1):
            params = tour_parameters(stem, dataset=data["name"], out=out, device=device, quick=quick,
                                     data_dir=data.get("cache"), previous=previous)
            label = f"[{i}/{len(NOTEBOOKS)}] {TITLES[stem]}"
            live = progress and sys.stdout.isatty()  # a terminal: "label ..." while it runs, rewritten at its end
            if live:
                print(f"{label} ...", end="", flush=True)
            step, failure = _run_notebook(stem, params, nb_dir, out, kernel, log)
            record["steps"].append(step)
            back = "\r\033[K" if live else ""
            if failure is not None:
                say(f"{back}{label}: {step['status']} after {step['seconds']:.0f} s")
                break
            previous[stem] = step["metrics"]
            say(f"{back}{label}: {step['seconds']:.0f} s; {headline(stem, step['metrics']) or 'done'}")
    return previous, failure


def _run_notebook(stem: str, params: dict, nb_dir: Path, out: Path, kernel: str, log):
    """Execute one notebook of the tour, its messages into ``log``; returns its step record and the exception
    that stopped it (or None)."""
    import papermill as pm

    source, executed = nb_dir / f"{stem}.ipynb", out / "notebooks" / f"{stem}.ipynb"
    step = {"notebook": stem, "title": TITLES[stem], "parameters": params, "output_dir": params["OUTPUT_DIR"],
            "executed": str(executed), "status": "running", "seconds": None, "metrics": None}
    log.write(f"===== {stem} {time.strftime('%H:%M:%S')} parameters {json.dumps(params)}\n")
    failure = None
    t0 = time.perf_counter()
    try:
        with _output_to(log):
            pm.execute_notebook(str(source), str(executed), parameters=params, kernel_name=kernel,
                                progress_bar=False, log_output=True, cwd=str(out))
    except BaseException as err:  # noqa: BLE001 - recorded, reported, re-raised by tour()
        step["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        step["error"] = f"{type(err).__name__}: {getattr(err, 'evalue', None) or err}".strip()[:2000]
        failure = err
    step["seconds"] = round(time.perf_counter() - t0, 1)
    step["load_average"] = _provenance.load_average()  # over the step's last minutes: how busy the machine was
    step["peak_rss_gib"] = _provenance.children_peak_rss()  # the largest kernel (or its worker) so far
    _restore_kernelspec(executed, source)
    if failure is None:
        step["status"] = "ok"
        step["metrics"] = json.loads((Path(params["OUTPUT_DIR"]) / "metrics.json").read_text())
    return step, failure


def _finish_record(record: dict, out: Path, previous: dict, started: float, failure) -> Path:
    """Mark the steps not run, add the models and times, and write ``tour.json`` and ``report.html``."""
    for stem in NOTEBOOKS[len(record["steps"]):]:
        record["steps"].append({"notebook": stem, "title": TITLES[stem], "status": "not run", "seconds": None,
                                "metrics": None, "parameters": None, "executed": None})
    record["models"] = _models(previous)
    record["seconds"] = round(time.time() - started, 1)
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    record["status"] = "complete" if failure is None else "failed"
    return _write_record(record, out)
