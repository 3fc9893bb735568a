"""Where vemkit writes: every output path is checked before any work, and only vemkit's own outputs are replaced.

:func:`check_output` resolves an output path (``~``, relative parts, symlinks) and refuses, before any
work, an output that is one of the inputs, lies inside one or contains one (inputs may be files,
folders, OME-Zarr stores, ``file.h5:/dataset`` keys, slice folders and globs, Volumes, zarr/h5py
arrays and dask arrays read from them), an output whose folder cannot be written (read-only, or a
file in the way), and an existing output unless ``overwrite``. With ``overwrite`` it replaces only
what vemkit itself wrote: :func:`mark_output` marks every zarr group vemkit writes (OME-Zarr stores,
label groups, predictions) with the attribute ``"vemkit_output"`` and any other folder with a marker
file (a file in a zarr group would trouble zarr's listing of its members), TIFFs carry ``Software:
vemkit``; :func:`written_by_vemkit` also
knows model directories and the stores of earlier versions (``"method": "vemkit"`` in their OME
metadata, the run record of a prediction). :func:`remove_output` deletes one, never a folder that
holds files vemkit did not write.

Not for: writing (:mod:`vemkit.io`, :mod:`vemkit._omezarr`, :mod:`vemkit.predict`).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path

from ._modeldir import model_kind
from ._omezarr import remove_tree
from ._readers import split_key

__all__ = [
    "LOG_FILE",
    "MARKER",
    "RUN_FILE",
    "TIFF_SOFTWARE",
    "MODEL_DIRECTORY_FILES",
    "check_model_directory",
    "check_output",
    "check_replaceable",
    "expand",
    "input_locations",
    "mark_output",
    "remove_output",
    "written_by_vemkit",
]

#: The marker of what vemkit wrote (``{"written_by": "vemkit", "kind": ...}``): an attribute of the zarr
#: groups it writes, a file of that name in other folders.
MARKER = "vemkit_output"
_MARKER_FILE = ".vemkit-output.json"
#: The TIFF ``Software`` tag of the TIFFs vemkit writes.
TIFF_SOFTWARE = "vemkit"
#: A prediction's run record (parameters, status) and its log of finished blocks, in its output store.
RUN_FILE = "vemkit_predict.json"
LOG_FILE = "vemkit_predict.log"

_ZARR_META = {".zgroup", ".zattrs", ".zarray", ".zmetadata", "zarr.json"}
#: sam-auto's links (vemkit.predict._samauto.LINKS_FILE) and the temporary name it is written under
_LINKS_FILES = {"vemkit_links.npz", "vemkit_links.npz.tmp.npz"}
_OWN_FILES = {_MARKER_FILE, RUN_FILE, LOG_FILE, ".DS_Store", *_LINKS_FILES}
_DIR_CONTAINERS = (".zarr", ".n5")
_GRAPH_SCAN_LIMIT = 200_000


def expand(path) -> Path:
    """``path`` with ``~`` expanded (relative parts and symlinks kept, as the user wrote them)."""
    return Path(os.path.expanduser(os.fspath(path)))


def _resolved(path) -> Path:
    return expand(path).resolve()


# ----------------------------------------------------------------------------------- input locations
def _text_locations(text: str) -> list:
    """Resolved locations of a path string: the file part of ``file.h5:/key``, ``store.zarr/key`` for
    zarr/N5 keys, the matches of a glob (or the folder it would read)."""
    if "://" in text or text.startswith("<"):
        return []
    file_part, key = split_key(text)
    if any(ch in file_part for ch in "*?["):
        matches = glob.glob(os.path.expanduser(file_part))
        if matches:
            return [_resolved(m) for m in matches]
        head = file_part
        while any(ch in head for ch in "*?["):
            head = os.path.dirname(head)
        return [_resolved(head or ".")]
    location = _resolved(file_part)
    if key and file_part.lower().endswith(_DIR_CONTAINERS):
        location = location / key
    return [location]


def _array_location(arr):
    """Where a zarr array (local store) or an h5py dataset lives, or None."""
    root = getattr(getattr(arr, "store", None), "root", None)
    if isinstance(root, (str, os.PathLike)):
        path = getattr(arr, "path", "") or ""
        return _resolved(root) / path if path else _resolved(root)
    try:
        filename = getattr(getattr(arr, "file", None), "filename", None)
    except (ValueError, OSError):  # a closed HDF5 file
        return None
    if isinstance(filename, str) and hasattr(arr, "shape"):
        return _resolved(filename)
    return None


def _array_locations(arr) -> list:
    """Locations of a zarr/h5py array, or of those a dask array's graph reads from."""
    own = _array_location(arr)
    if own is not None:
        return [own]
    graph_of = getattr(arr, "__dask_graph__", None)
    if graph_of is None:
        return []
    found = []
    for i, value in enumerate(graph_of().values()):
        if i >= _GRAPH_SCAN_LIMIT:
            break
        if hasattr(value, "shape") and not hasattr(value, "__dask_graph__"):
            location = _array_location(value)
            if location is not None and location not in found:
                found.append(location)
    return found


def input_locations(obj) -> list:
    """The resolved files and folders an input is read from (empty for arrays in memory).

    Examples
    --------
    >>> [p.name for p in input_locations("~/data/vol.h5:/raw")]
    ['vol.h5']
    >>> [p.parts[-2:] for p in input_locations("image.ome.zarr:/labels/mito")]
    [('labels', 'mito')]
    """
    if obj is None:
        return []
    if isinstance(obj, (str, os.PathLike)):
        return _text_locations(os.fspath(obj))
    source = getattr(obj, "source", None)
    data = getattr(obj, "data", None)
    if isinstance(source, str) and data is not None:  # a Volume
        return _text_locations(source) + [p for p in _array_locations(data) if p not in _text_locations(source)]
    return _array_locations(obj)


# ---------------------------------------------------------------------------------------- the check
def _overlap(out: Path, src: Path) -> str | None:
    """How the resolved output meets the resolved input, or None."""
    if out == src:
        return "is the input"
    if src in out.parents:
        rel = out.relative_to(src).parts
        if rel[0] == "labels" and len(rel) >= 2 and _is_zarr_store(src):
            return None  # a label image written into the input image's labels/ leaves the image untouched
        return "lies inside the input"
    if out in src.parents:
        return "contains the input"
    return None


def _check_writable(out: Path, what: str) -> None:
    """Refuse an output whose folder cannot be written: a file in the way, no permission, read-only."""
    try:
        probe = out if out.is_dir() else out.absolute().parent
        while not probe.exists():
            if probe.is_symlink() or probe == probe.parent:
                break
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise ValueError(f"cannot write the {what} {str(out)!r}: {str(probe)!r} is a file, not a folder; "
                             "choose another path")
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".vemkit-write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write the {what} {str(out)!r}: {err.strerror or err} "
                         f"({str(getattr(err, 'filename', None) or out)!r}); choose another path") from None


def check_output(path, inputs=(), *, overwrite: bool, what: str = "output", exists_ok: bool = False) -> Path:
    """Check an output path before any work; returns it with ``~`` expanded (a key joined to its store).

    Parameters
    ----------
    path : str or Path
        The file or folder to write (``store.zarr:/labels/name`` for a label image in a store).
    inputs : sequence
        What the same call reads (paths, Volumes, arrays); see :func:`input_locations`.
    overwrite : bool
        Whether an existing output may be replaced (only one vemkit wrote, see :func:`check_replaceable`).
    what : str
        How messages call the output.
    exists_ok : bool
        The caller decides about an existing output itself (e.g. to resume it).

    Raises
    ------
    ValueError
        The output is an input, lies inside one or contains one (naming both), or its folder cannot
        be written (naming the path).
    FileExistsError
        It exists and ``overwrite`` is False, or it was not written by vemkit, or holds other files.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); src = os.path.join(d, "in.tif"); _ = open(src, "wb").close()
    >>> check_output(os.path.join(d, "out.ome.zarr"), [src], overwrite=False).name
    'out.ome.zarr'
    >>> check_output(d, [src], overwrite=True)
    Traceback (most recent call last):
    ValueError: output ... contains the input ...
    """
    if "://" in os.fspath(path):
        return Path(path)
    file_part, key = split_key(os.fspath(path))
    out = expand(file_part) / key if key and file_part.lower().endswith(_DIR_CONTAINERS) else expand(path)
    resolved = out.resolve()
    for obj in inputs:
        for src in input_locations(obj):
            how = _overlap(resolved, src)
            if how:
                raise ValueError(f"{what} {str(path)!r} {how} {str(src)!r}; vemkit never writes where it reads: "
                                 "choose another output path")
    _check_writable(out, what)
    if (out.exists() or out.is_symlink()) and not exists_ok:
        if not overwrite:
            raise FileExistsError(
                f"{what} {str(path)!r} already exists; vemkit never replaces your files unless asked: "
                "pass overwrite=True (command line --overwrite) or choose another path"
            )
        check_replaceable(out, what)
    return out


# ----------------------------------------------------------------------------------- what is vemkit's
def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _ZARR_META)


def _group_attrs(path: Path) -> dict:
    """The attributes of the zarr group stored at ``path`` (v2 or v3), or {}."""
    for name in (".zattrs", "zarr.json"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", {}) if name == "zarr.json" and isinstance(attrs, dict) else attrs
        if isinstance(attrs, dict):
            return attrs
    return {}


def _marked_zarr(path: Path) -> bool:
    """A zarr group with vemkit's marker, or an OME-Zarr of an earlier vemkit (``"method": "vemkit"``
    in its multiscales)."""
    attrs = _group_attrs(path)
    if (attrs.get(MARKER) or {}).get("written_by") == "vemkit":
        return True
    ome = attrs.get("ome", attrs)
    for ms in ome.get("multiscales", []) if isinstance(ome, dict) else []:
        if isinstance(ms, dict) and (ms.get("metadata") or {}).get("method") == "vemkit":
            return True
    return False


def written_by_vemkit(path) -> bool:
    """Whether vemkit wrote the file or folder at ``path`` (so ``overwrite`` may replace it).

    Folders: the marker of :func:`mark_output`, a prediction's run record, a model directory, or the
    OME metadata of an earlier vemkit. TIFFs: the ``Software`` tag. Anything else: no.
    """
    p = expand(path)
    if p.is_dir():
        if (p / _MARKER_FILE).is_file() or (p / RUN_FILE).is_file() or _marked_zarr(p):
            return True
        try:
            model_kind(p)
            return True
        except (ValueError, OSError):
            return False
    if p.is_file() and p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                return (tif.pages.first.software or "").split(" ")[0] == TIFF_SOFTWARE
        except Exception:  # noqa: BLE001 - not a readable TIFF: not ours
            return False
    return False


def _foreign_entries(path: Path) -> list:
    """Entries of a vemkit zarr store that vemkit does not write there."""
    if not _is_zarr_store(path):
        return []
    return sorted(n for n in os.listdir(path)
                  if not (n in _ZARR_META or n in _OWN_FILES or n.isdigit() or n == "labels"
                          or n.startswith(".vemkit-write-test-")))


def check_replaceable(path, what: str = "output") -> None:
    """Refuse to replace ``path`` unless vemkit wrote it and it holds nothing else.

    Raises
    ------
    FileExistsError
        Naming the path (and the foreign files, if any).
    """
    p = expand(path)
    if not written_by_vemkit(p):
        raise FileExistsError(
            f"{what} {str(path)!r} exists and was not written by vemkit; --overwrite (overwrite=True) only "
            "replaces what vemkit wrote: delete it yourself or choose another path"
        )
    foreign = _foreign_entries(p)
    if foreign:
        raise FileExistsError(
            f"{what} {str(path)!r} holds files vemkit did not write ({', '.join(foreign[:5])}); --overwrite "
            "never deletes a folder with other things in it: move them away or choose another path"
        )


def remove_output(path, what: str = "output") -> None:
    """Delete an output vemkit wrote, to replace it (after :func:`check_replaceable`)."""
    p = expand(path)
    check_replaceable(p, what)
    remove_tree(p)


def mark_output(target, kind: str) -> None:
    """Mark ``target`` as written by vemkit: a zarr group (an attribute) or a folder (a marker file).

    ``kind`` says what it is: ``"ome-zarr"``, ``"labels"``, ``"prediction"``...
    """
    mark = {"written_by": "vemkit", "kind": kind}
    attrs = getattr(target, "attrs", None)
    if attrs is not None:
        attrs[MARKER] = mark
    else:
        (expand(target) / _MARKER_FILE).write_text(json.dumps(mark))


#: What vemkit writes into a model directory (model files, training work files, cards, markers).
MODEL_DIRECTORY_FILES = frozenset({
    "config.json", "weights.safetensors", "training.json", "plan.json", "checkpoint.pt", "checkpoint.pt.tmp",
    "forest.npz", "forest.joblib", "MODEL_CARD.md", "scores.json", _MARKER_FILE, ".DS_Store",
})


def check_model_directory(path, inputs=(), *, overwrite: bool, what: str = "model directory") -> Path:
    """Check a model directory to write, before any work; returns it as a Path (``~`` expanded).

    Refuses what :func:`check_output` refuses (the directory is an input, lies inside one or contains
    one; it cannot be written), a file in its place, a folder holding anything a model directory does
    not (vemkit writes model files only into an empty folder or its own; ``overwrite`` does not change
    that), and one that already holds a model unless ``overwrite``. A folder with only a training
    checkpoint and plan (a run to resume) is accepted.

    Raises
    ------
    ValueError
        The directory meets an input, or cannot be written.
    FileExistsError
        A file is in the way, the folder holds other files, or it holds a model and not ``overwrite``.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "notes.txt"), "w").close()
    >>> check_model_directory(os.path.join(d, "model"), overwrite=False).name
    'model'
    >>> check_model_directory(d, overwrite=True)
    Traceback (most recent call last):
    FileExistsError: model directory ... holds files a model directory does not (notes.txt)...
    """
    out = check_output(path, inputs, overwrite=overwrite, what=what, exists_ok=True)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{what} {str(path)!r} is a file; give a folder (new or a vemkit model directory)")
    if out.is_dir():
        foreign = sorted(n for n in os.listdir(out) if n not in MODEL_DIRECTORY_FILES)
        if foreign:
            raise FileExistsError(
                f"{what} {str(path)!r} holds files a model directory does not ({', '.join(foreign[:5])}); vemkit "
                "writes a model only into a new or empty folder or one of its own model directories, even with "
                "--overwrite: choose another path"
            )
        try:
            model_kind(out)
            holds = True
        except (ValueError, OSError):
            holds = False
        if holds and not overwrite:
            raise FileExistsError(f"{what} {str(path)!r} already holds a model; pass overwrite=True (command line "
                                  "--overwrite) or choose another path")
    return out
