"""Colab: every notebook's install cell, executed as IPython would, with a stand-in ``google.colab``.

It installs vemkit without its dependencies, then only what the runtime lacks (never torch, which stays
pinned to Colab's own build), and says whether the runtime has a GPU; off Colab it does nothing. Every
notebook has a Colab badge in README.md and colab/README.md.
"""

import re
import sys
import tomllib
import types
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from conftest import ROOT
from vemkit import colab

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
VEMKIT_SPEC = f'"{colab.INSTALL_SPEC}"'
PYPROJECT_DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

# A Colab runtime as the stand-in sees it: most of vemkit's dependencies already there, three missing,
# zarr too old for vemkit, and a CUDA torch and Colab's pinned ipykernel below vemkit's bounds (both must
# be left alone).
COLAB_HAS = {"numpy": "2.0.2", "scipy": "1.14.1", "scikit-image": "0.25.2", "dask": "2024.12.1",
             "zarr": "2.18.3", "tifffile": "2025.1.10", "imageio": "2.36.1", "h5py": "3.12.1", "pooch": "1.8.2",
             "tqdm": "4.67.1", "matplotlib": "3.10.0", "pandas": "2.2.2", "ipywidgets": "8.1.5",
             "ipykernel": "6.17.1", "nbformat": "5.10.4", "scikit-learn": "1.6.1", "joblib": "1.4.2",
             "pillow": "11.1.0", "pyarrow": "18.1.0", "distributed": "2024.12.1", "safetensors": "0.5.2",
             "papermill": "2.6.0", "mrcfile": "1.5.3", "tensorstore": "0.1.71", "anywidget": "0.9.13",
             "fastremap": "1.15.0", "edt": "3.0.0", "torch": "2.1.0+cu121", "vemkit": "0.1.0"}  # fmt: skip
LACKS = {"ome-zarr", "connected-components-3d", "skan"}


class _IPython:
    """Records the line magics a cell runs (``%pip ...``)."""

    def __init__(self):
        self.magics = []

    def run_line_magic(self, name, line):
        self.magics.append((name, line))


def _install_cell(path):
    return nbformat.read(path, as_version=4).cells[1].source


def _run_cell(source, monkeypatch, *, on_colab, gpu):
    """Execute an install cell; returns (magics run, pip calls, widget-manager calls)."""
    pip_calls, widget_calls = [], []

    def pip(args):
        constraints = [Path(args[i + 1]).read_text() for i, a in enumerate(args) if a == "-c"]
        pip_calls.append((list(args), constraints))

    monkeypatch.setattr(colab, "_installed_version", COLAB_HAS.get)
    monkeypatch.setattr(colab, "_vemkit_requirements", lambda: PYPROJECT_DEPENDENCIES)  # what a fresh install declares
    monkeypatch.setattr(colab, "_run_pip", pip)
    monkeypatch.setattr(colab, "gpu_status", lambda: gpu)
    if on_colab:
        stand_in = types.ModuleType("google.colab")
        stand_in.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: widget_calls.append(True))
        monkeypatch.setitem(sys.modules, "google.colab", stand_in)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    ipython = _IPython()
    code = TransformerManager().transform_cell(source)  # %pip -> get_ipython().run_line_magic(...)
    exec(compile(code, "install cell", "exec"), {"get_ipython": lambda: ipython, "__name__": "__main__"})
    return ipython.magics, pip_calls, widget_calls


CPU = {"device": "cpu", "name": None, "memory_gb": None, "torch": "2.1.0+cu121"}
T4 = {"device": "cuda", "name": "Tesla T4", "memory_gb": 15.8, "torch": "2.1.0+cu121"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_on_colab_cpu_runtime(path, monkeypatch, capsys):
    import zarr  # noqa: F401 - imported before the cell upgrades it: the cell must ask for a restart

    magics, pip_calls, widgets = _run_cell(_install_cell(path), monkeypatch, on_colab=True, gpu=CPU)
    assert magics == [("pip", f"install -q --no-deps {VEMKIT_SPEC}")]  # vemkit itself, none of its dependencies
    assert len(pip_calls) == 1
    args, constraints = pip_calls[0]
    requirements = [a for a in args if a[0].isalpha() and a != "install"]
    names = {r.split(">")[0].split("=")[0].split("<")[0] for r in requirements}
    assert names == LACKS | {"zarr"}, requirements  # only what the runtime lacks (zarr: below vemkit's bound)
    assert "zarr>=3.1.3" in requirements
    # never torch nor the running kernel, though Colab's are below vemkit's bounds ...
    assert not any(r.startswith(("torch", "ipykernel")) for r in requirements)
    # ... and whatever the others pull in, pip keeps them
    assert constraints == ["torch==2.1.0+cu121\nipykernel==6.17.1\n"]
    out = capsys.readouterr().out
    assert "CPU ONLY: this runtime has no GPU" in out and "Change runtime type" in out
    assert "this runtime has torch 2.1.0+cu121; it is left alone" in out
    assert "this runtime has ipykernel 6.17.1; it is left alone" in out
    assert "RESTART NEEDED" in out
    # the annotator needs Colab's widget manager: notebook 02 turns it on
    assert widgets == ([True] if "Annotator(" in "".join(c.source for c in nbformat.read(path, 4).cells) else [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_on_colab_gpu_runtime_with_everything_there(path, monkeypatch, capsys):
    monkeypatch.setitem(COLAB_HAS, "torch", "2.5.1+cu121")
    monkeypatch.setitem(COLAB_HAS, "ipykernel", "6.29.5")
    for name, version in {"ome-zarr": "0.11.1", "connected-components-3d": "3.22.0", "skan": "0.12.2",
                          "zarr": "3.1.3"}.items():  # fmt: skip
        monkeypatch.setitem(COLAB_HAS, name, version)
    magics, pip_calls, _ = _run_cell(_install_cell(path), monkeypatch, on_colab=True, gpu=T4)
    assert len(magics) == 1 and pip_calls == []
    out = capsys.readouterr().out
    assert "nothing else to install" in out
    assert "GPU runtime: Tesla T4 (15.8 GB)" in out and "CPU ONLY" not in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_does_nothing_off_colab(path, monkeypatch, capsys):
    magics, pip_calls, widgets = _run_cell(_install_cell(path), monkeypatch, on_colab=False, gpu=CPU)
    assert magics == [] and pip_calls == [] and widgets == []
    assert capsys.readouterr().out == ""


def test_missing_requirements_reads_vemkit_metadata():
    """The real metadata: in this environment every requirement is met; extras are not requirements."""
    from importlib.metadata import requires

    reqs = requires("vemkit")
    assert any("extra ==" in r for r in reqs)  # the test extra is in the metadata ...
    missing, withheld = colab.missing_requirements(reqs)
    assert missing == [] and withheld == []  # ... but never installed by the cell
    missing, withheld = colab.missing_requirements(reqs, {}.get)  # a bare runtime
    withheld_names = {w.split(">")[0] for w in withheld}
    assert withheld_names == {"torch", "ipykernel"} & {r.split(">")[0] for r in reqs}
    assert len(missing) + len(withheld) == len([r for r in reqs if "extra ==" not in r])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_colab_badge_in_both_readmes(path):
    url = f"https://colab.research.google.com/github/vemkit/vemkit/blob/{colab.RELEASE_TAG}/notebooks/{path.name}"
    assert url in (ROOT / "README.md").read_text(), "README.md"
    assert url in (ROOT / "colab" / "README.md").read_text(), "colab/README.md"


def test_install_line_pins_a_tag_or_commit_never_a_branch():
    import vemkit

    assert colab.RELEASE_TAG == f"v{vemkit.__version__}" and colab.is_pinned(colab.RELEASE_TAG)
    assert colab.INSTALL_SPEC == f"vemkit @ git+https://github.com/vemkit/vemkit@{colab.RELEASE_TAG}"
    assert colab.install_line() == f'%pip install -q --no-deps "{colab.INSTALL_SPEC}"'
    commit = "0730b4dc824c27fa7d4d79980c1b1a0f46b2651f"
    assert colab.install_line(commit).endswith(f'@{commit}"')
    for branch in ("main", "master", "dev", "feature/x", "v1-branch"):
        with pytest.raises(ValueError, match="looks like a branch"):
            colab.install_line(branch)


def test_setup_colab_says_which_commit_it_got_and_warns_about_a_branch(monkeypatch, capsys):
    def from_git(ref):
        return ('{"url": "https://github.com/vemkit/vemkit", "vcs_info": {"vcs": "git", "requested_revision": '
                f'"{ref}", "commit_id": "0730b4dc824c27fa7d4d79980c1b1a0f46b2651f"}}}}')

    monkeypatch.setattr(colab, "gpu_status", lambda: CPU)
    monkeypatch.setattr(colab, "_direct_url", lambda: from_git("main"))
    res = colab.setup_colab(requirements=[], installed_version=COLAB_HAS.get, pip=lambda args: None)
    out = capsys.readouterr().out
    assert res["source"]["pinned"] is False and "at commit 0730b4dc824c" in out
    assert "NOTE: vemkit came from a branch (main)" in out and colab.install_line() in out
    monkeypatch.setattr(colab, "_direct_url", lambda: from_git(colab.RELEASE_TAG))
    res = colab.setup_colab(requirements=[], installed_version=COLAB_HAS.get, pip=lambda args: None)
    out = capsys.readouterr().out
    assert res["source"]["pinned"] is True and f"(requested: {colab.RELEASE_TAG})" in out and "NOTE" not in out
    monkeypatch.setattr(colab, "_direct_url", lambda: None)  # a checkout (pip install -e .): nothing to say
    assert colab.setup_colab(requirements=[], installed_version=COLAB_HAS.get, pip=lambda a: None)["source"]["pinned"] is None
    assert "from https://" not in capsys.readouterr().out


def test_every_install_cell_badge_and_requirement_is_pinned_to_the_release_tag():
    """The Colab cells install the tagged release (issue 19), and the badges open the notebooks at the same tag."""
    assert colab.RELEASE_TAG == "v0.1.0" == f"v{tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']}"
    badge = re.compile(r"colab\.research\.google\.com/github/vemkit/vemkit/blob/([^/]+)/notebooks/")
    for path in NOTEBOOKS:
        text = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        assert colab.install_line() in text, path.name
        assert "@main" not in text and "/blob/main/" not in text, path.name
        assert set(badge.findall(text)) == {colab.RELEASE_TAG}, path.name
    for path in (ROOT / "README.md", ROOT / "colab" / "README.md"):
        assert set(badge.findall(path.read_text())) <= {colab.RELEASE_TAG}, path.name
    requirements = (ROOT / "colab" / "requirements-colab.txt").read_text()
    assert colab.INSTALL_SPEC in requirements and "@main" not in requirements
