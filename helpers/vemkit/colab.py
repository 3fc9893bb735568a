"""Setting up a Google Colab runtime for the notebooks: install what it lacks, never torch, say what GPU it has.

Every notebook's install cell (which acts only on Colab) installs vemkit itself without its
dependencies and then calls :func:`setup_colab`, which compares vemkit's declared requirements with
what the runtime already has and installs only the missing or too-old ones. torch is never installed
or replaced: Colab ships a CUDA build matched to its driver, and a pip-installed torch would break
it. Nor is ipykernel: Colab pins its own, and it is the kernel running the notebook. The cell ends by
saying whether the runtime has a GPU, and clearly when it is CPU only.

The install cell pins vemkit to a release tag or a commit (:data:`INSTALL_SPEC`, :func:`install_line`):
a branch moves, so the same notebook could install different code from one day to the next. The cell
says which commit it got (:func:`installed_from`) and warns when it came from a branch.

Not for: installing vemkit anywhere else (README: set-up command, ``environment.yml``).
"""

from __future__ import annotations

import json
import re
import sys

from . import __version__

__all__ = ["INSTALL_SPEC", "NEVER_INSTALL", "RELEASE_TAG", "REPOSITORY", "gpu_status", "install_line",
           "installed_from", "is_pinned", "missing_requirements", "setup_colab"]

#: Where the install cell installs vemkit from.
REPOSITORY = "https://github.com/vemkit/vemkit"
#: The release tag of this version of vemkit (``git tag v<version>`` on the release commit).
RELEASE_TAG = f"v{__version__}"
#: The requirement that an install cell of this version installs: vemkit at its release tag.
INSTALL_SPEC = f"vemkit @ git+{REPOSITORY}@{RELEASE_TAG}"

_TAG = re.compile(r"v\d+(\.\d+)*([.-]?(a|b|rc|post|dev)\d*)*")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")

#: Distributions the install cell never installs or replaces, with the reason it says.
NEVER_INSTALL = {
    "torch": "a pip-installed torch would not match Colab's CUDA",
    "torchvision": "a pip-installed torchvision would not match Colab's torch",
    "torchaudio": "a pip-installed torchaudio would not match Colab's torch",
    "ipykernel": "Colab pins its own kernel, the one running this notebook",
}


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def _installed_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _vemkit_requirements() -> list[str]:
    from importlib.metadata import requires

    return list(requires("vemkit") or [])


def missing_requirements(requirements, installed_version=None):
    """Split requirements into those to install and those never installed here (torch).

    Parameters
    ----------
    requirements : iterable of str
        Requirement strings as in package metadata (``"numpy>=1.26"``); those only for an extra
        (``; extra == "test"``) or whose environment marker does not hold are left out.
    installed_version : callable, optional
        ``name -> version string or None``; default: what ``importlib.metadata`` finds.

    Returns
    -------
    missing : list of str
        Requirements not met by what is installed (absent, or a version outside the bounds).
    withheld : list of str
        Requirements of :data:`NEVER_INSTALL` (torch, ipykernel) that are not met: reported, never
        installed.

    Examples
    --------
    >>> have = {"numpy": "2.0.2", "torch": "2.1.0", "ipykernel": "6.17.1"}.get
    >>> missing_requirements(["numpy>=1.26", "skan>=0.11", "torch>=2.2", "ipykernel>=6.25", 'pytest; extra == "test"'], have)
    (['skan>=0.11'], ['torch>=2.2', 'ipykernel>=6.25'])
    """
    from packaging.requirements import Requirement

    installed_version = installed_version or _installed_version
    missing, withheld = [], []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = installed_version(req.name)
        if have is not None and req.specifier.contains(have, prereleases=True):
            continue
        (withheld if _canonical(req.name) in NEVER_INSTALL else missing).append(str(req))
    return missing, withheld


def gpu_status() -> dict:
    """What accelerator this runtime has, as torch sees it.

    Returns
    -------
    dict
        ``device`` (``"cuda"``, ``"mps"`` or ``"cpu"``), ``name`` and ``memory_gb`` of the GPU (or
        ``None``), ``torch`` (its version, or ``None`` when torch is missing).

    Examples
    --------
    >>> gpu_status()["device"] in ("cuda", "mps", "cpu")
    True
    """
    try:
        import torch
    except ImportError:
        return {"device": "cpu", "name": None, "memory_gb": None, "torch": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "name": props.name, "memory_gb": round(props.total_memory / 1e9, 1),
                "torch": torch.__version__}
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return {"device": "mps", "name": "Apple GPU (MPS)", "memory_gb": None, "torch": torch.__version__}
    return {"device": "cpu", "name": None, "memory_gb": None, "torch": torch.__version__}


def is_pinned(ref: str) -> bool:
    """Whether a git ref names fixed code: a release tag (``v0.1.0``) or a commit (7-40 hex digits),
    not a branch (``main``), whose code moves.

    Examples
    --------
    >>> is_pinned("v0.1.0"), is_pinned("0730b4dc824c27fa7d4d79980c1b1a0f46b2651f"), is_pinned("main")
    (True, True, False)
    """
    ref = str(ref)
    return bool(_TAG.fullmatch(ref) or _COMMIT.fullmatch(ref))


def install_line(ref: str = RELEASE_TAG) -> str:
    """The ``%pip`` line of a notebook's install cell, installing vemkit alone at ``ref``.

    Parameters
    ----------
    ref : str
        A release tag or a commit (default: this version's tag, :data:`RELEASE_TAG`); a branch is
        refused, since what it installs changes under the notebook.

    Examples
    --------
    >>> install_line("v0.1.0")
    '%pip install -q --no-deps "vemkit @ git+https://github.com/vemkit/vemkit@v0.1.0"'
    >>> install_line("main")
    Traceback (most recent call last):
    ...
    ValueError: 'main' looks like a branch: pin a release tag (v0.1.0) or a commit (40 hex digits)
    """
    if not is_pinned(ref):
        raise ValueError(f"{ref!r} looks like a branch: pin a release tag (v0.1.0) or a commit (40 hex digits)")
    return f'%pip install -q --no-deps "vemkit @ git+{REPOSITORY}@{ref}"'


def _direct_url() -> str | None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return distribution("vemkit").read_text("direct_url.json")
    except PackageNotFoundError:
        return None


def installed_from(direct_url: str | None = None) -> dict:
    """Where the installed vemkit came from (pip's ``direct_url.json``, PEP 610).

    Returns
    -------
    dict
        ``url``, ``requested`` (the ref the install asked for, or None), ``commit`` (the commit pip
        checked out, or None), ``editable`` (bool) and ``pinned`` (whether ``requested`` is a tag or
        commit; None when not installed from git).

    Examples
    --------
    >>> installed_from('{"url": "https://github.com/vemkit/vemkit", "vcs_info": {"vcs": "git", '
    ...                '"requested_revision": "main", "commit_id": "0730b4dc824c27fa7d4d79980c1b1a0f46b2651f"}}')["pinned"]
    False
    """
    text = _direct_url() if direct_url is None else direct_url
    info = json.loads(text) if text else {}
    vcs = info.get("vcs_info") or {}
    requested = vcs.get("requested_revision")
    return {
        "url": info.get("url"),
        "requested": requested,
        "commit": vcs.get("commit_id"),
        "editable": bool((info.get("dir_info") or {}).get("editable")),
        "pinned": (is_pinned(requested) if requested else False) if vcs else None,
    }


def _report_source(version, source):
    if source["commit"]:
        print(f"vemkit {version} from {source['url']} at commit {source['commit'][:12]}"
              f" (requested: {source['requested'] or 'default branch'})")
    if source["pinned"] is False:
        print(f"NOTE: vemkit came from a branch ({source['requested'] or 'default'}), whose code moves: the same "
              f"notebook can install different code tomorrow. Pin it: {install_line()}")


def _run_pip(args):
    import subprocess

    subprocess.check_call([sys.executable, "-m", "pip", *args])


def setup_colab(*, requirements=None, installed_version=None, pip=None, quiet: bool = True) -> dict:
    """Install what vemkit needs and this runtime lacks (never torch), then report the GPU.

    Called by every notebook's install cell after ``%pip install --no-deps vemkit``. Installing with
    pip's default strategy would also upgrade anything below vemkit's bounds, torch included; here
    torch is pinned to the version the runtime has, and a torch below vemkit's bound is only reported.

    Parameters
    ----------
    requirements : list of str, optional
        Default: vemkit's own requirements from its installed metadata.
    installed_version : callable, optional
        ``name -> version or None`` (default: what ``importlib.metadata`` finds).
    pip : callable, optional
        Runs pip with a list of arguments (default: ``python -m pip`` in a subprocess).
    quiet : bool
        Pass ``-q`` to pip.

    Returns
    -------
    dict
        ``installed`` (requirements installed), ``withheld`` (torch requirements left alone),
        ``restart`` (whether modules already imported were upgraded: restart the session),
        ``source`` (:func:`installed_from`: the commit installed, and whether it was pinned) and
        ``gpu`` (:func:`gpu_status`).

    Examples
    --------
    >>> calls = []
    >>> res = setup_colab(requirements=["numpy>=1.0"], pip=calls.append)  # doctest: +ELLIPSIS
    vemkit ...: nothing else to install ...
    >>> calls, res["installed"]
    ([], [])
    """
    import importlib
    import os
    import tempfile

    from packaging.requirements import Requirement

    installed_version = installed_version or _installed_version
    pip = pip or _run_pip
    reqs = _vemkit_requirements() if requirements is None else list(requirements)
    missing, withheld = missing_requirements(reqs, installed_version)
    version = installed_version("vemkit") or "(not installed)"
    source = installed_from()
    _report_source(version, source)
    restart = False
    if missing:
        print(f"vemkit {version}: installing what this runtime lacks: {', '.join(missing)}")
        pins = {name: installed_version(name) for name in NEVER_INSTALL}
        pins = "".join(f"{name}=={v}\n" for name, v in pins.items() if v)
        with tempfile.TemporaryDirectory() as tmp:
            args = ["install", *(["-q"] if quiet else []), *missing]
            if pins:  # whatever the missing packages pull in, pip keeps Colab's torch and kernel
                constraints = os.path.join(tmp, "constraints.txt")
                with open(constraints, "w", encoding="utf-8") as fh:
                    fh.write(pins)
                args += ["-c", constraints]
            pip(args)
        importlib.invalidate_caches()
        upgraded = [Requirement(r).name for r in missing]
        restart = any(_canonical(n).replace("-", "_") in sys.modules for n in upgraded)
    else:
        print(f"vemkit {version}: nothing else to install (every dependency is already here)")
    for req in withheld:
        name = _canonical(Requirement(req).name)
        have = installed_version(name)
        print(f"NOTE: vemkit wants {req}, this runtime has {name} {have or '(none)'}; it is left alone "
              f"({NEVER_INSTALL[name]}). If a step fails because of it, use a newer Colab runtime.")
    if restart:
        print("RESTART NEEDED: packages that were already imported were upgraded. Runtime > Restart session, "
              "then run the notebook from the top.")
    gpu = gpu_status()
    if gpu["device"] == "cuda":
        print(f"GPU runtime: {gpu['name']} ({gpu['memory_gb']} GB), torch {gpu['torch']} (Colab's own build). "
              "Training and inference use it with DEVICE = \"auto\".")
    elif gpu["device"] == "mps":
        print(f"GPU: {gpu['name']}, torch {gpu['torch']}.")
    else:
        print("CPU ONLY: this runtime has no GPU. Notebooks 01, 02 and 05 run fine; 03 (training) and 04 "
              "(inference) run, but many times slower. For a GPU: Runtime > Change runtime type > T4 GPU, "
              "then run the notebook again from the top.")
    return {"installed": missing, "withheld": withheld, "restart": restart, "source": source, "gpu": gpu}
