"""The generalist models of ``data_manifest.json`` (its ``"models"`` section): list, fetch, verify, pin.

A model file is downloaded through pooch on first use into ``cache_dir("models") / NAME`` and
verified: against the manifest's SHA-256 where one is published; where none is, against the
published hash of another kind (micro-sam's xxh128, when the ``xxhash`` package is there) and its
SHA-256 is then recorded beside the file so every later use is checked against it. A TorchScript
file runs code when loaded, so it is refused until a SHA-256 is pinned (in the manifest, or by the
user with :func:`pin_model` after checking the file against its publisher's checksum).

Not for: building or running the networks (:mod:`._sam`, :mod:`._mitonet`, :mod:`._bioimageio`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._errors import UnknownNameError
from .._provenance import sha256_file
from ..datasets import ENV_VAR, cache_dir, manifest

__all__ = ["list_models", "model_entry", "model_file", "is_cached", "fetch_model", "pin_model", "manifest_weights",
           "file_sha256", "pinned_sha256", "UnpinnedCodeError", "is_generalist", "GENERALIST_ALIASES"]

#: Short names ``vemkit predict --model`` takes.
GENERALIST_ALIASES = {"mitonet": "mitonet_v1", "mitonet-mini": "mitonet_mini_v1"}
#: File formats that can run code when loaded (then a SHA-256 must be published or pinned first).
CODE_FORMATS = {"torchscript": "TorchScript", "torch_pickle": "a torch pickle loaded by another package"}

_PINS = "pins.json"


class UnpinnedCodeError(PermissionError, ValueError):
    """A file that runs code when loaded (TorchScript) has no pinned SHA-256: vemkit will not load it."""


def _models(manifest_path=None) -> dict:
    if manifest_path is None:
        return manifest().get("models", {})
    # another manifest (tests, tiny models): read each time, it may have been rewritten
    return json.loads(Path(manifest_path).read_text(encoding="utf-8")).get("models", {})


def list_models(manifest_path=None) -> list[str]:
    """Names of the generalist models in the manifest.

    Examples
    --------
    >>> "sam_vit_b" in list_models() and "mitonet_v1" in list_models()
    True
    """
    return sorted(_models(manifest_path))


def model_entry(name: str, manifest_path=None) -> dict:
    """The manifest entry of model ``name`` (URL, hashes, licence, citation, input expectations)."""
    models = _models(manifest_path)
    if not isinstance(name, str) or name not in models:
        raise UnknownNameError(f"no model named {name!r} in the data manifest; known models: {', '.join(sorted(models))}")
    return models[name]


def model_file(name: str, manifest_path=None) -> Path:
    """Where model ``name``'s file lives in the cache (whether or not it is there yet)."""
    entry = model_entry(name, manifest_path)
    filename = entry.get("filename") or entry["url"].split("?")[0].rstrip("/").split("/")[-1]
    return cache_dir("models") / name / filename


def manifest_weights(model, family: str, label: str, *, progress: bool = True, manifest_path=None):
    """``(path, name, entry)`` of manifest model ``model`` of ``family``, fetched and verified.

    ``label`` names the family in the error when ``model`` belongs to another one (``"SAM"``,
    ``"MitoNet"``, ``"Cellpose"``); an unknown name lists the known ones.
    """
    entry = model_entry(model, manifest_path)
    if entry.get("family") != family:
        raise ValueError(f"model {model!r} is a {entry.get('family')} model, not {label}")
    return fetch_model(model, progress=progress, manifest_path=manifest_path), model, entry


#: SHA-256 of a file, read in 1 MiB pieces (the one helper datasets and provenance use too).
file_sha256 = sha256_file


def _pins() -> dict:
    path = cache_dir("models") / _PINS
    return json.loads(path.read_text()) if path.is_file() else {}


def _recorded(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def pinned_sha256(name: str, manifest_path=None) -> str | None:
    """The SHA-256 model ``name`` must have: the manifest's, else one the user pinned, else None."""
    return model_entry(name, manifest_path).get("sha256") or _pins().get(name)


def is_cached(name: str, manifest_path=None) -> bool:
    """Whether model ``name``'s file is in the cache (not verified here)."""
    return model_file(name, manifest_path).is_file()


def pin_model(name: str, sha256: str, manifest_path=None) -> Path:
    """Pin the SHA-256 of a model whose publisher gives none (checked against the cached file).

    Do this only after checking the file against its publisher's own checksum (e.g. the MD5 on a
    Zenodo record): a pinned TorchScript file is then loaded, and loading TorchScript runs its code.
    """
    sha256 = str(sha256).lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    path = model_file(name, manifest_path)
    if not path.is_file():
        raise FileNotFoundError(f"model {name!r} is not in the cache ({path}); fetch it or put the file there first")
    found = file_sha256(path)
    if found != sha256:
        raise ValueError(f"model {name!r}: {path} has SHA-256 {found}, not {sha256}; nothing pinned")
    pins = _pins()
    pins[name] = sha256
    (cache_dir("models") / _PINS).write_text(json.dumps(pins, indent=1))
    return path


def _verify_existing(name, path: Path, expected: str | None) -> None:
    recorded = _recorded(path)
    expected = expected or (recorded.read_text().strip() if recorded.is_file() else None)
    if expected is None:
        return
    found = file_sha256(path)
    if found != expected:
        raise ValueError(
            f"model {name!r}: {path} does not match its SHA-256 (expected {expected}, found {found}). "
            f"Delete the file and fetch it again."
        )


def _download(name, entry, path: Path, expected: str | None, progress: bool) -> None:
    import pooch

    known = f"sha256:{expected}" if expected else entry.get("published_hash")
    if known and known.startswith("xxh") and not _has_xxhash():
        known = None  # recorded below, checked from then on
    try:
        pooch.retrieve(entry["url"], known_hash=known, fname=path.name, path=path.parent, progressbar=progress)
    except ValueError as err:  # pooch removes the download on a hash mismatch
        path.unlink(missing_ok=True)
        raise ValueError(
            f"model {name!r}: the download of {path.name} does not match its checksum "
            f"(expected {known}; {err}). The file was not kept."
        ) from err
    except Exception as err:  # no network, HTTP errors ...
        path.unlink(missing_ok=True)
        raise ConnectionError(
            f"model {name!r}: could not download {entry['url']} ({type(err).__name__}: {err}). Without a network, "
            f"put the file at {path} (or set {ENV_VAR} to a folder holding models/{name}/{path.name})."
        ) from err
    if not expected:
        _recorded(path).write_text(file_sha256(path) + "\n")


def _has_xxhash() -> bool:
    try:
        import xxhash  # noqa: F401
    except ImportError:
        return False
    return True


def fetch_model(name: str, *, progress: bool = True, manifest_path=None) -> Path:
    """Download (if needed) and verify model ``name``'s file; return its path in the cache.

    Raises
    ------
    KeyError
        Unknown model (:class:`vemkit._errors.UnknownNameError`, also a ValueError).
    ValueError
        The file does not match its checksum (names the file, the expected and the found hash;
        a bad download is removed).
    ConnectionError
        The file is not cached and cannot be downloaded (says where to put it).
    UnpinnedCodeError
        A model in a format that can run code (:data:`CODE_FORMATS`) whose SHA-256 is not pinned.
    """
    entry = model_entry(name, manifest_path)
    expected = pinned_sha256(name, manifest_path)
    if entry.get("format") in CODE_FORMATS and not expected:
        raise UnpinnedCodeError(
            f"model {name!r} is {CODE_FORMATS[entry['format']]}, which can run code when loaded, and no SHA-256 is "
            "published for it. "
            f"Download {entry['url']} yourself, check it against the publisher's checksum "
            f"({entry.get('hash_source', 'see the model page')}), put it at {model_file(name, manifest_path)} "
            f"and pin it: vemkit models pin {name} --sha256 HEX"
        )
    path = model_file(name, manifest_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        _verify_existing(name, path, expected)
        return path
    _download(name, entry, path, expected, progress)
    return path


def is_generalist(model) -> bool:
    """Whether ``model`` names a generalist model blockwise inference runs: ``bioimageio:...``, or a
    MitoNet name of the manifest (or an alias such as ``"mitonet"``). Paths and objects are not.

    Examples
    --------
    >>> is_generalist("mitonet"), is_generalist("bioimageio:affable-shark"), is_generalist("my_model_dir")
    (True, True, False)
    """
    if not isinstance(model, str):
        return False
    if model.startswith("bioimageio:"):
        return True
    name = GENERALIST_ALIASES.get(model, model)
    return name in _models() and _models()[name].get("family") == "mitonet"
