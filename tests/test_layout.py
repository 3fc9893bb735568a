"""The package's house rules (issue 18): no import cycles between modules, and no module taking the
private names of another stage module (shared code lives in the private base layer, ``vemkit/_*.py``).

The rules are computed by ``tools/layout_report.py``, which also lists modules and functions over the
size limits (reported there, not enforced here).
"""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("layout_report", ROOT / "tools" / "layout_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles_between_modules():
    report = _report()
    modules, edges, _, _, _ = report.scan()
    assert report.cycles(edges, modules) == []


def test_no_private_names_taken_across_stage_modules():
    _, _, crossings, _, _ = _report().scan()
    assert crossings == []


def test_report_finds_a_planted_cycle_and_crossing(tmp_path):
    """The checker itself: a two-module cycle and a private import are both caught."""
    report = _report()
    pkg = tmp_path / "vemkit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _hidden\n")
    (pkg / "b.py").write_text("def _hidden():\n    from .a import x\n")
    (pkg / "_base.py").write_text("from .a import y\n")
    report.ROOT = pkg
    modules, edges, crossings, _, _ = report.scan()
    assert report.cycles(edges, modules) == [["vemkit.a", "vemkit.b"]]
    assert crossings == ["vemkit.a imports _hidden from vemkit.b"]
