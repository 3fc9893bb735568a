"""Notebook 08 (neurons): hygiene as tests/test_notebooks.py checks it, and a QUICK papermill run on FlyEM."""

import ast
import json

import nbformat
import numpy as np
import pytest

from conftest import ROOT, shared_data_dir

PATH = ROOT / "notebooks" / "08_neurons.ipynb"
RUN = {"QUICK": True, "TRAIN_SECTIONS": 24, "TEST_SECTIONS": 32, "CROP_YX": 64, "ITERATIONS": 2,
       "SWEEP": "0.3,0.7", "BLOCK": "8,32,32", "DEVICE": "cpu"}


def test_notebook08_hygiene():
    nb = nbformat.read(PATH, as_version=4)
    nbformat.validate(nb)
    cells = nb.cells
    for c in cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None
            assert "sys.path" not in c.source
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert f"https://colab.research.google.com/github/vemkit/vemkit/blob/v0.1.0/notebooks/{PATH.name}" in cells[0].source
    assert '"google.colab" in sys.modules' in cells[1].source and "%pip install" in cells[1].source
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    names = set()
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, ast.Assign) and node.targets[0].id.isupper()
        ast.literal_eval(node.value)
        names.add(node.targets[0].id)
    assert {"QUICK", "OUTPUT_DIR", "DATA_DIR", "MODEL_DIR"} | set(RUN) <= names
    assert any("metrics.json" in c.source for c in cells if c.cell_type == "code")


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.realdata
def test_notebook08_executes_quick(tmp_path):
    import papermill as pm

    from vemkit.io import open_volume
    from vemkit.models import load_model

    data = shared_data_dir()
    if data is None:
        pytest.skip("real EM data not found: expected ../shared/data beside the project (flyem_medulla_fibsem)")
    out_dir = tmp_path / "out"
    params = {**RUN, "DATA_DIR": str(data), "OUTPUT_DIR": str(out_dir)}
    pm.execute_notebook(str(PATH), str(tmp_path / PATH.name), parameters=params, kernel_name="python3",
                        progress_bar=False, cwd=str(tmp_path))
    m = json.loads((out_dir / "metrics.json").read_text())
    assert m["notebook"] == "08_neurons" and m["test_zyx"] == [32, 64, 64] and m["test_first_section"] == 34
    assert m["iterations"] == 2
    model = load_model(out_dir / "model")
    assert model.target["kind"] == "affinities" and [list(o) for o in model.target["offsets"]] == m["offsets"]
    for method in ("mws", "mean"):
        s = m["scores"][method]
        assert s["voi"] == pytest.approx(s["voi_split"] + s["voi_merge"]) and 0.0 <= s["arand"] <= 1.0
    assert [r["threshold"] for r in m["sweep"]] == [0.3, 0.7]
    # lower threshold merges more: never fewer merges, never more splits
    assert m["sweep"][0]["voi_merge"] >= m["sweep"][1]["voi_merge"]
    assert m["sweep"][0]["voi_split"] <= m["sweep"][1]["voi_split"]
    seg = open_volume(out_dir / "neurons.ome.zarr")
    assert seg.shape == (32, 64, 64) and np.asarray(seg.data).dtype == np.uint64
