"""environment.yml (the workshop's conda environment) and pyproject.toml agree: the same dependencies
with the same bounds, the same Python, extras only from pyproject's optional dependencies, and vemkit
itself installed from the checkout."""

import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import ROOT


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_section(environment):
    sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip: section"
    return sections[0]


def _by_name(requirements):
    out = {}
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name not in out, f"{req.name} is listed twice"
        out[name] = req
    return out


def test_pip_requirements_match_pyproject_dependencies(project, environment):
    pip = _pip_section(environment)
    assert "-e ." in pip, "the environment installs vemkit from the checkout (pip: - -e .)"
    env = _by_name(p for p in pip if not p.startswith("-"))
    deps = _by_name(project["dependencies"])
    extras = {}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for name, req in _by_name(reqs).items():  # the same package in two extras keeps one bound
            assert extras.setdefault(name, req).specifier == req.specifier, f"{name} in [{extra}]"
    missing = sorted(set(deps) - set(env))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    for name, req in deps.items():
        assert env[name].specifier == req.specifier, f"{name}: environment.yml {env[name]} vs pyproject.toml {req}"
    for name in set(env) - set(deps):
        assert name in extras, f"environment.yml installs {name}, which pyproject.toml does not declare"
        assert env[name].specifier == extras[name].specifier, f"{name}: {env[name]} vs {extras[name]}"


def test_python_and_channels(project, environment):
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    python = [d for d in conda if d.startswith("python")]
    assert len(python) == 1 and "pip" in conda
    assert SpecifierSet(python[0][len("python"):]) == SpecifierSet(project["requires-python"])
    assert environment["name"] == "vemkit" and "conda-forge" in environment["channels"]


def test_zarr_is_bounded_to_atomic_chunk_writes(project, environment):
    """zarr >= 3.1.3's LocalStore writes a new chunk file to a temporary name and renames it (zarr-python#3412),
    so a crash mid-stroke cannot leave a torn new annotation chunk (a torn one is still a clear error that
    names it: tests/test_annotations.py)."""
    deps = _by_name(project["dependencies"])
    env = _by_name(p for p in _pip_section(environment) if not p.startswith("-"))
    for where, reqs in (("pyproject.toml", deps), ("environment.yml", env)):
        spec = reqs["zarr"].specifier
        assert not spec.contains("3.1.2") and spec.contains("3.1.3"), f"{where}: zarr{spec}"
