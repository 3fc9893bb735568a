"""Public volume-EM datasets from ``data_manifest.json``, downloaded once and verified byte for byte.

Every file has a URL pinned to a commit and a SHA-256; :func:`fetch` downloads what is missing into
the cache (``VEMKIT_DATA_DIR``, else the user's cache folder) through pooch, which writes to a
temporary name and moves the file into place only once its hash matches, so a failed download never
leaves a half-written file. Files already in the cache are re-hashed before use.
:func:`load_dataset` opens a dataset's image and label volumes lazily with the voxel size.

Not for: reading arbitrary files (:func:`vemkit.io.open_volume`) or synthetic data
(:mod:`vemkit.synthetic`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._errors import UnknownNameError
from ._progress import progress_bar
from ._provenance import sha256_file
from ._readers import split_key
from ._volume import Volume
from .io import open_volume

__all__ = [
    "Dataset",
    "cache_dir",
    "fetch",
    "files_for",
    "get_entry",
    "list_datasets",
    "load_dataset",
    "manifest",
]

ENV_VAR = "VEMKIT_DATA_DIR"


@lru_cache(maxsize=4)
def _read_manifest(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def manifest(path=None) -> dict:
    """The parsed data manifest (the package's copy unless ``path`` is given)."""
    path = Path(path) if path is not None else Path(__file__).with_name("data_manifest.json")
    return _read_manifest(str(path.resolve()))


def list_datasets(path=None) -> list[str]:
    """Names of the datasets in the manifest.

    Examples
    --------
    >>> "drosophila_vnc_sstem" in list_datasets()
    True
    """
    return sorted(manifest(path)["datasets"])


def get_entry(name: str, path=None) -> dict:
    """The manifest entry of dataset ``name``; a clear KeyError (:class:`UnknownNameError`, also a ValueError) lists the known names."""
    datasets = manifest(path)["datasets"]
    if not isinstance(name, str) or name not in datasets:
        raise UnknownNameError(f"no dataset named {name!r} in the data manifest; known datasets: {', '.join(sorted(datasets))}")
    return datasets[name]


def cache_dir(name: str | None = None) -> Path:
    """Where datasets are kept: ``$VEMKIT_DATA_DIR`` when set, else the user's cache folder.

    A dataset ``name`` lives in ``cache_dir() / name``, laid out as in its source repository.
    """
    base = os.environ.get(ENV_VAR)
    if base:
        root = Path(base).expanduser()
    else:
        import pooch

        root = Path(pooch.os_cache("vemkit"))
    return root / name if name else root


def fetch(name: str, *, files: list[str] | None = None, progress: bool = True, manifest_path=None) -> Path:
    """Download (if needed) and verify every file of dataset ``name``; return its folder.

    Parameters
    ----------
    name : str
        A dataset of the manifest (see :func:`list_datasets`).
    files : list of str, optional
        Only these paths of the dataset (default: all).
    progress : bool
        Show a progress bar over the files.
    manifest_path : str or Path, optional
        Another manifest (tests use this); default the package's own.

    Returns
    -------
    Path
        The dataset's folder in the cache.

    Raises
    ------
    KeyError
        Unknown dataset or file (:class:`vemkit._errors.UnknownNameError`, also a ValueError).
    ValueError
        A file's SHA-256 does not match the manifest (the bad download is discarded).
    ConnectionError
        A file is missing from the cache and could not be downloaded.
    """
    import pooch

    entry = get_entry(name, manifest_path)
    folder = cache_dir(name)
    wanted = entry["files"]
    if files is not None:
        by_path = {f["path"]: f for f in wanted}
        missing = [f for f in files if f not in by_path]
        if missing:
            raise UnknownNameError(f"dataset {name!r} has no file(s) {missing}")
        wanted = [by_path[f] for f in files]
    registry = {f["path"]: f"sha256:{f['sha256']}" for f in wanted}
    urls = {f["path"]: f["url"] for f in wanted}
    store = pooch.create(path=folder, base_url="", registry=registry, urls=urls, retry_if_failed=2)
    logger = pooch.get_logger()
    old_level = logger.level
    logger.setLevel("WARNING")
    try:
        for f in progress_bar(wanted, desc=f"fetch {name}", unit="file", disable=not progress):
            processor = pooch.Unzip(extract_dir=f["path"] + ".unzip") if f.get("unpack") == "zip" else None
            try:
                _fetch_one(store, f["path"], processor)
            except ValueError as err:  # hash mismatch: pooch has already removed the download
                found = re.search(r"but got ([0-9a-fA-F]{64})", str(err))
                raise ValueError(
                    f"dataset {name!r}: checksum mismatch: {f['path']} does not match its SHA-256 in the manifest: "
                    f"expected {f['sha256']}, found {found[1] if found else 'another'} (downloaded from {f['url']}). "
                    f"The bad file was not kept; delete any copy in {folder} and fetch again."
                ) from err
            except Exception as err:  # requests' connection errors, HTTP errors, full disk ...
                _refuse_tampered(name, folder / f["path"], f["sha256"], err)
                raise ConnectionError(
                    f"dataset {name!r}: could not get {f['path']} from {f['url']} ({type(err).__name__}: {err}). "
                    f"Check the network, or set {ENV_VAR} to a folder that already holds the dataset "
                    f"as <folder>/{name}/{f['path']}."
                ) from err
    finally:
        logger.setLevel(old_level)
    return folder


def _fetch_one(store, path: str, processor) -> None:
    """``store.fetch``; a ValueError only for a checksum mismatch (pooch raises one for a bad URL too,
    which is a download that failed: OSError)."""
    try:
        store.fetch(path, processor=processor, progressbar=False)
    except ValueError as err:
        if "does not match the known hash" not in str(err):
            raise OSError(str(err)) from err
        raise


def _refuse_tampered(name: str, path: Path, expected: str, err: Exception) -> None:
    """When fetching a fresh copy failed because a cached file's checksum is wrong (pooch downloads
    again then, and keeps the old file if that fails), say so: the network is not the first problem."""
    if not path.is_file():
        return
    found = sha256_file(path)
    if found != expected:
        raise ValueError(
            f"dataset {name!r}: checksum mismatch: the cached file {path} has SHA-256 {found}, but the manifest "
            f"expects {expected}: it was changed or damaged after it was downloaded. Fetching a fresh copy failed "
            f"too ({type(err).__name__}: {err}); delete the file and fetch again when the source is reachable."
        ) from err


@dataclass
class Dataset:
    """A loaded dataset: an image volume, label volumes and what they mean.

    Attributes
    ----------
    name : str
        Manifest name.
    volume : str
        Which of the dataset's volumes this is (e.g. ``"stack1"``).
    image : Volume
        The EM image, lazy, (z, y, x), with voxel size in nm.
    labels : dict of str to Volume
        Label volumes of the same shape: binary masks (0/1) or instance ids, see ``meanings``.
    meanings : dict of str to str
        What each label volume's values mean.
    entry : dict
        The manifest entry (licence, citation, voxel-size source ...).
    """

    name: str
    volume: str
    image: Volume
    labels: dict = field(default_factory=dict)
    meanings: dict = field(default_factory=dict)
    entry: dict = field(default_factory=dict)

    @property
    def voxel_size(self):
        return self.image.voxel_size

    @property
    def citation(self) -> str:
        return self.entry.get("citation", "")

    @property
    def licence(self) -> str:
        return self.entry.get("licence", "")

    def __repr__(self):
        labels = ", ".join(f"{k} {v.dtype}" for k, v in self.labels.items()) or "none"
        return f"Dataset({self.name}/{self.volume}: image {self.image.shape} {self.image.dtype} at {self.voxel_size} nm; labels: {labels})"


def load_dataset(name: str, volume: str | None = None, *, progress: bool = True, manifest_path=None) -> Dataset:
    """Fetch (if needed), verify and open a dataset of the manifest.

    Parameters
    ----------
    name : str
        e.g. ``"drosophila_vnc_sstem"``, ``"isbi2012"``, ``"flyem_medulla_fibsem"``.
    volume : str, optional
        Which volume of the dataset (``"stack1"``/``"stack2"``, ``"train"``/``"test"`` ...); default the
        entry's ``default_volume``.
    progress : bool
        Show progress bars.

    Returns
    -------
    Dataset
        Image and label volumes, lazily loaded, with the voxel size from the manifest.

    Examples
    --------
    >>> ds = load_dataset("drosophila_vnc_sstem")  # doctest: +SKIP
    >>> ds.image.shape, ds.voxel_size, sorted(ds.labels)  # doctest: +SKIP
    ((20, 1024, 1024), (50.0, 4.6, 4.6), ['classes', 'membranes', 'mitochondria', 'synapses'])
    """
    entry = get_entry(name, manifest_path)
    volumes = entry.get("volumes")
    if not volumes:
        raise ValueError(f"dataset {name!r} has no loadable volumes in the manifest; use fetch({name!r}) for its files")
    volume = volume or entry.get("default_volume") or next(iter(volumes))
    if volume not in volumes:
        raise UnknownNameError(f"dataset {name!r} has no volume {volume!r}; it has: {', '.join(volumes)}")
    spec = volumes[volume]
    needed = files_for(entry, spec)
    folder = fetch(name, files=needed, progress=progress, manifest_path=manifest_path)
    voxel = tuple(entry["voxel_size_nm"]) if entry.get("voxel_size_nm") else None
    image = open_volume(str(folder / spec["image"]), voxel_size=voxel)
    image.source = f"{name}/{volume}"
    labels, meanings = {}, {}
    for lname, lspec in spec.get("labels", {}).items():
        labels[lname] = _load_label(folder, lspec, voxel, f"{name}/{volume}/{lname}")
        meanings[lname] = lspec.get("meaning", "")
        if labels[lname].shape != image.shape:
            raise ValueError(
                f"dataset {name!r}: labels {lname!r} have shape {labels[lname].shape}, image {image.shape}"
            )
    return Dataset(name=name, volume=volume, image=image, labels=labels, meanings=meanings, entry=entry)


def files_for(entry: dict, spec: dict) -> list[str]:
    """The manifest file paths one volume of a dataset needs.

    Parameters
    ----------
    entry : dict
        A dataset's manifest entry (:func:`get_entry`).
    spec : dict
        One of its ``entry["volumes"]``: the image and label paths, which may be globs, container
        keys (``file.hdf:/volumes/raw``) or paths inside an unpacked archive.

    Returns
    -------
    list of str
        The paths of ``entry["files"]`` to fetch for it, each once, in the order the spec names them.

    Raises
    ------
    ValueError
        A path of the spec matches no file of the dataset.

    Examples
    --------
    >>> entry = get_entry("drosophila_vnc_sstem")
    >>> len(files_for(entry, entry["volumes"][entry["default_volume"]])) > 0
    True
    """
    patterns = [spec["image"], *(lab["path"] for lab in spec.get("labels", {}).values())]
    out = []
    for pat in patterns:
        pat = split_key(pat)[0]  # "file.hdf:/volumes/raw" needs "file.hdf"
        # a path inside an unpacked archive needs the archive: "x.zip.unzip/..." needs "x.zip"
        hits = [
            f["path"] for f in entry["files"]
            if fnmatchcase(f["path"], pat) or (f.get("unpack") and pat.startswith(f["path"] + ".unzip/"))
        ]
        if not hits:
            raise ValueError(f"manifest pattern {pat!r} matches no file of the dataset")
        out.extend(h for h in hits if h not in out)
    return out


def _load_label(folder: Path, spec: dict, voxel, source: str) -> Volume:
    rule = spec.get("rule", "raw")
    if rule == "flyem_bodies":
        data = _flyem_bodies(folder / spec["path"])
        return Volume.from_array(data, voxel_size=voxel, source=source, metadata={"format": "hdf5.gz"},
                                 chunks=(64, 250, 250))
    vol = open_volume(str(folder / spec["path"]), voxel_size=voxel, channel=spec.get("channel"),
                      warn_missing_voxel_size=False)
    data = vol.data
    if rule == ">127":
        data = data if data.dtype == bool else data > 127
        data = data.astype(np.uint8)
    elif rule.startswith("=="):
        data = (data == int(rule[2:])).astype(np.uint8)
    elif rule == "map":
        table = np.zeros(256, np.uint8)
        for k, v in spec["map"].items():
            table[int(k)] = int(v)
        data = data.map_blocks(lambda b: table[b], dtype=np.uint8)
    elif rule != "raw":
        raise ValueError(f"unknown label rule {rule!r} in the manifest")
    return Volume(data=data, voxel_size=voxel, source=source, metadata={"rule": rule})


def _flyem_bodies(path: Path) -> np.ndarray:
    """Body ids of the FlyEM NeuroProof ground truth: supervoxel ``stack`` mapped through ``transforms``."""
    import gzip
    import io

    import h5py

    with gzip.open(path, "rb") as fh:
        raw = io.BytesIO(fh.read())
    with h5py.File(raw, "r") as f:
        stack = f["stack"][...]
        transforms = f["transforms"][...]
    lut_size = int(max(stack.max(), transforms[:, 0].max())) + 1
    lut = np.arange(lut_size, dtype=np.int64)
    lut[transforms[:, 0]] = transforms[:, 1]
    bodies = lut[stack]
    bodies[stack == 0] = 0
    return bodies.astype(np.uint32)
