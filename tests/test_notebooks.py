"""Every notebook: static hygiene (no kernel), and execution with papermill with ``QUICK=True`` (the workshop
switch) and a small parameter set."""

import ast
import json
import re

import nbformat
import numpy as np
import pytest

from conftest import ROOT, shared_data_dir

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO = "vemkit/vemkit"

# Small parameter sets, one or more per notebook: (id, parameters, needs real data). Every run adds
# QUICK=True (the notebooks' own minutes-long version); the sizes below keep the runs smaller still.
RUNS = {
    "01_load_and_explore": [
        ("synthetic", {"QUICK": True, "DATASET": "synthetic", "MAX_SECTIONS": 6, "CROP_YX": 128}, False),
        ("vnc", {"QUICK": True, "DATASET": "drosophila_vnc_sstem", "MAX_SECTIONS": 6, "CROP_YX": 256}, True),
        ("cdeep3m", {"QUICK": True, "DATASET": "cdeep3m_mito", "MAX_SECTIONS": 4, "CROP_YX": 256}, True),
    ],
    "02_annotate": [
        ("synthetic", {"QUICK": True, "DATASET": "synthetic", "MAX_SECTIONS": 4, "CROP_YX": 128, "N_TREES": 10,
                       "SCRIBBLE_SECTIONS": "0,2"}, False),
        ("vnc", {"QUICK": True, "DATASET": "drosophila_vnc_sstem", "MAX_SECTIONS": 6, "CROP_YX": 256, "N_TREES": 20,
                 "SCRIBBLE_SECTIONS": "0,3"}, True),
    ],
    "03_transfer_learning": [
        ("synthetic", {"QUICK": True, "DATASET": "synthetic", "MAX_SECTIONS": 6, "CROP_YX": 128, "ANNOTATED_SECTIONS": "0,3",
                       "ITERATIONS": 3, "CURVE_SECTIONS": "1,2", "CURVE_ITERATIONS": 2, "DEVICE": "cpu"}, False),
        ("vnc", {"QUICK": True, "DATASET": "drosophila_vnc_sstem", "MAX_SECTIONS": 6, "CROP_YX": 256, "ANNOTATED_SECTIONS": "0,3",
                 "ITERATIONS": 8, "COMPARE": False, "CURVE_SECTIONS": "", "DEVICE": "cpu"}, True),
    ],
    "04_gpu_inference": [
        ("synthetic", {"QUICK": True, "DATASET": "synthetic", "MAX_SECTIONS": 4, "CROP_YX": 192, "DEVICE": "cpu",
                       "USE_DASK": True, "N_WORKERS": 2}, False),
        ("vnc", {"QUICK": True, "DATASET": "drosophila_vnc_sstem", "MAX_SECTIONS": 4, "CROP_YX": 512, "DEVICE": "cpu",
                 "USE_DASK": False}, True),
        ("cdeep3m", {"QUICK": True, "DATASET": "cdeep3m_mito", "MAX_SECTIONS": 4, "CROP_YX": 256, "DEVICE": "cpu",
                     "USE_DASK": False}, True),
    ],
    "05_quantify": [
        ("synthetic", {"QUICK": True, "DATASET": "synthetic", "MAX_SECTIONS": 8, "CROP_YX": 160, "SKELETON": False}, False),
        ("vnc", {"QUICK": True, "DATASET": "drosophila_vnc_sstem", "MAX_SECTIONS": 10, "CROP_YX": 512}, True),
        ("cdeep3m", {"QUICK": True, "DATASET": "cdeep3m_mito", "MAX_SECTIONS": 4, "CROP_YX": 256}, True),
    ],
    "06_domain_adaptation": [
        ("synthetic", {"QUICK": True, "SOURCE": "synthetic", "SOURCE_SECTIONS": 3, "CROP_YX": 128, "TARGET_SECTIONS": 8,
                       "TEST_SECTIONS": 2, "MAX_ITERATIONS": 2, "FEW_LABEL_SECTIONS": "0", "PATCH": 64, "GAP_PATCHES": 12,
                       "DEVICE": "cpu"}, False),
        ("vnc-flyem", {"QUICK": True, "SOURCE": "drosophila_vnc_sstem", "SOURCE_SECTIONS": 3, "CROP_YX": 256, "TEST_SECTIONS": 3,
                       "MAX_ITERATIONS": 2, "FEW_LABEL_SECTIONS": "0", "PATCH": 64, "GAP_PATCHES": 12,
                       "DEVICE": "cpu"}, True),
    ],
    # executed by their own test files (tiny stand-in models; a short affinity training), hygiene checked here
    "07_generalist_models": [],  # tests/test_notebook07.py
    "08_neurons": [],  # tests/test_notebook08.py
}


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _parameters_cell(cells):
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def _parameter_names(cell):
    return {node.targets[0].id for node in ast.parse(cell.source).body}


def test_every_notebook_has_a_test_run():
    assert NOTEBOOKS, "no notebooks found"
    assert {p.stem for p in NOTEBOOKS} == set(RUNS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_hygiene(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = nb.cells
    for c in cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"stored outputs in {path.name}"
            assert "sys.path" not in c.source, "no sys.path edits in notebooks"
            assert not re.search(r"^\s*from\s+\S+\s+import\s+\*", c.source, re.M), "no star imports"
    # cell 1: title and a Colab badge pointing at this very notebook
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    badge = f"https://colab.research.google.com/github/{REPO}/blob/v0.1.0/notebooks/{path.name}"
    assert badge in first.source
    # cell 2: an install cell that acts only on Colab and never installs torch
    install = cells[1]
    assert install.cell_type == "code" and '"google.colab" in sys.modules' in install.source
    assert "%pip install" in install.source and "torch" not in install.source.replace("torch is never", "")
    # parameters: literal UPPER_CASE assignments only
    params = _parameters_cell(cells)
    for node in ast.parse(params.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name) and target.id.isupper(), target
        ast.literal_eval(node.value)  # raises if not a literal
    names = _parameter_names(params)
    assert "OUTPUT_DIR" in names and "QUICK" in names
    assert "QUICK = False" in params.source  # the full version by default, the switch documented beside it
    quick = [c for c in cells if c.cell_type == "code" and "if QUICK:" in c.source]
    assert quick and cells.index(quick[0]) == cells.index(params) + 2, "QUICK is resolved in the cell after the parameters"
    # the first cell says how long the notebook takes, with and without QUICK, on a CPU and on GPUs
    assert "**Time**" in first.source and "`QUICK = True`" in first.source
    assert all(where in first.source for where in ("laptop CPU", "Colab T4", "workstation GPU"))
    for _, run_params, _ in RUNS[path.stem]:
        assert set(run_params) <= names, f"test parameters {set(run_params) - names} not in the notebook"
    assert any("metrics.json" in c.source for c in cells if c.cell_type == "code")
    # the key figures end the notebook as a short table, not as the whole metrics.json
    assert not any("print(json.dumps(key_figures" in c.source for c in cells if c.cell_type == "code")
    assert any("summary_table(key_figures" in c.source for c in cells if c.cell_type == "code")


def _run_ids():
    for stem, runs in RUNS.items():
        for run_id, params, real in runs:
            yield pytest.param(stem, params, real, id=f"{stem}-{run_id}",
                               marks=[pytest.mark.notebook, pytest.mark.slow])


@pytest.mark.parametrize("stem,params,real", list(_run_ids()))
def test_notebook_executes(stem, params, real, tmp_path):
    import papermill as pm

    params = dict(params)
    if real:
        data = shared_data_dir()
        if data is None:
            pytest.skip("real EM data not found: expected ../shared/data beside the project")
        params["DATA_DIR"] = str(data)
    out_dir = tmp_path / "out"
    params["OUTPUT_DIR"] = str(out_dir)
    pm.execute_notebook(
        str(ROOT / "notebooks" / f"{stem}.ipynb"), str(tmp_path / f"{stem}.ipynb"),
        parameters=params, kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
    )
    metrics = json.loads((out_dir / "metrics.json").read_text())
    CHECKS[stem](metrics, out_dir, params, real)


def _check_01(m, out_dir, params, real):
    from vemkit.io import open_volume

    assert m["notebook"] == "01_load_and_explore"
    assert m["crop_zyx"][0] == params["MAX_SECTIONS"]
    vol = open_volume(out_dir / "image.ome.zarr")
    assert list(vol.shape) == m["shape_zyx"] and list(vol.voxel_size) == m["voxel_size_nm_zyx"]
    assert open_volume(f"{out_dir / 'image.ome.zarr'}:/labels/mitochondria").shape == vol.shape
    ious = m["iou"]
    assert set(ious) == {"global threshold 0.3", "Otsu", "Li", "Otsu + clean-up + watershed"}
    assert all(0.0 <= v <= 1.0 for v in ious.values())
    if params["DATASET"] == "cdeep3m_mito":  # SBF-SEM, issue 20's dataset
        assert m["voxel_size_nm_zyx"] == [40.0, 5.9, 5.9]
    elif real:
        # the lesson of the notebook, in numbers: on real ssTEM no grey-value rule gets near a useful IoU
        assert m["voxel_size_nm_zyx"] == [50.0, 4.6, 4.6]
        assert max(ious.values()) < 0.4 and m["best_oracle_threshold_iou"] < 0.4


def _check_02(m, out_dir, params, real):
    from vemkit.annotate import open_annotations
    from vemkit.io import open_volume
    from vemkit.pixel_classifier import load_pixel_classifier

    sections = [int(z) for z in params["SCRIBBLE_SECTIONS"].split(",")]
    assert m["annotated_sections"] == sections
    ann = open_annotations(out_dir / "annotations.zarr")  # saved for notebook 03
    assert ann.annotated_sections() == sections and ann.classes == ["background", "mitochondria"]
    assert m["annotated_voxels"] == ann.counts()
    clf = load_pixel_classifier(out_dir / "model_rf")
    assert clf.classes == ann.classes and len(clf.training["feature_names"]) == m["n_features"]
    pred = open_volume(out_dir / "prediction_rf.ome.zarr")
    assert list(pred.shape) == m["crop_zyx"] and set(np.unique(np.asarray(pred)).tolist()) <= {0, 1}
    assert 0.0 <= m["iou_unannotated_sections"] <= 1.0
    if real:
        # measured 0.35 on this crop: better than notebook 01's classic methods (below 0.25 here)
        assert m["iou_unannotated_sections"] > 0.25


def _check_03(m, out_dir, params, real):
    from vemkit.models import load_model

    assert m["annotated_sections"] == [int(z) for z in params["ANNOTATED_SECTIONS"].split(",")]
    model = load_model(m["model_dir"])  # saved for notebook 04
    assert model.classes == ["background", "mitochondria"] and model.training["iterations"] == params["ITERATIONS"]
    assert m["plan"]["ndim"] == 2 and (out_dir / "plan.json").exists()
    names = set(m["results"])
    assert "fine-tuned base model" in names
    if params.get("COMPARE", True):
        assert names == {"fine-tuned base model", "U-Net from scratch", "random forest"}
    assert all(0.0 <= r["iou"] <= 1.0 for r in m["results"].values())
    curve = params.get("CURVE_SECTIONS", "1,2,4,8")
    assert [len(c["sections"]) for c in m["learning_curve"]] == ([int(k) for k in curve.split(",")] if curve else [])


def _check_04(m, out_dir, params, real):
    from vemkit.io import open_volume

    labels = open_volume(m["labels"])
    assert list(labels.shape) == m["crop_zyx"] and list(labels.voxel_size) == m["voxel_size_nm_zyx"]
    assert m["resumed_blocks_skipped"] == m["blocks"] >= 1  # the second call found every block done
    assert m["voxels_per_second"] > 0 and m["planned_voxels_per_second"] > 0
    # the halo removes the seams: far smaller error against the whole-section result than without
    assert m["seam_max_error"]["model halo"] < 0.5 * m["seam_max_error"]["no halo"], m["seam_max_error"]
    if params.get("USE_DASK"):
        assert m["dask_agreement"] > 0.999
    assert 0.0 <= m["iou"] <= 1.0
    zs = m["zero_shot"]  # em2d-mito with no training, only on sections it never trained on
    if params["DATASET"] == "synthetic":  # a fresh phantom: every section is unseen
        assert zs["model"] == "em2d-mito" and zs["sections"] == list(range(m["crop_zyx"][0]))
        assert 0.0 <= zs["iou_zero_shot"] <= 1.0 and 0.0 <= zs["iou_this_model"] <= 1.0
        assert zs["rescale"] in (0.5, 0.7, 1.0, 1.4, 2.0)  # ZERO_SHOT_RESCALE = "auto": one of the factors tried
    else:  # VNC sections 0-3 / CDeep3M's 'training' volume were in em2d-mito's pretraining: no inflated figure
        assert zs is None


def _check_05(m, out_dir, params, real):
    import pandas as pd

    from vemkit.io import open_volume

    table = pd.read_csv(out_dir / "mitochondria.csv")
    assert len(table) == m["n_measured"] == m["n_instances"] > 0
    assert m["n_instances"] >= m["n_connected_components"]  # the watershed only splits
    inst = open_volume(out_dir / "mitochondria_instances.ome.zarr")
    assert int(np.asarray(inst).max()) == m["n_instances"]
    assert pd.read_parquet(out_dir / "mitochondria.parquet")["volume_nm3"].sum() == pytest.approx(table["volume_nm3"].sum())
    scores = m["instance_scores"]
    assert 0 <= scores["adapted_rand_error"] <= 1 and scores["vi_split"] >= 0
    # the mask is the truth itself (run alone): every error comes from the instance step
    if params["DATASET"] == "cdeep3m_mito":
        # measured 0.25 on this 4 x 256² crop (0.35 on 10 x 512²): the defaults made for VNC (seeds 100 nm apart,
        # objects >= 2e6 nm³) split CDeep3M's smaller mitochondria and drop the slivers the crop cuts off
        assert scores["tp"] >= 1 and 0.0 < scores["ap"]["0.5"] <= 1.0, scores
    else:
        assert scores["ap"]["0.5"] >= 0.6, scores  # measured: 0.67 (phantom crop), 0.83 (VNC crop)
    if params["DATASET"] == "cdeep3m_mito":  # mitochondria labels only: no membranes to measure against
        assert m["voxel_size_nm_zyx"] == [40.0, 5.9, 5.9]
    elif real:
        assert m["voxel_size_nm_zyx"] == [50.0, 4.6, 4.6]
        assert "distance_to_membranes_nm" in table


def _check_06(m, out_dir, params, real):
    from vemkit.models import load_model

    methods = {"histogram", "adabn", "ynet", "dann"}
    assert set(m["results"]) == {"no adaptation", "resample"} | {f"resample + {k}" for k in methods} | {
        "fine-tune on 1 labelled target sections"}
    assert all(0.0 <= r["iou"] <= 1.0 and 0.0 <= r["flip_agreement"] <= 1.0 for r in m["results"].values())
    assert m["source_iterations"] == params["MAX_ITERATIONS"] and len(m["test_sections"]) == params["TEST_SECTIONS"]
    assert (out_dir / "domain_gap.png").exists() and (out_dir / "results.png").exists()
    if m["adapted_model"]:
        rec = load_model(m["adapted_model"]).training["adaptation"]
        assert m["best_unsupervised"].endswith(rec["method"])
    if real:  # 10 nm FIB-SEM against 4.6 nm ssTEM: the diagnosis names the pixel size first
        assert abs(m["gap"]["zoom"] - 10 / 4.6) < 1e-6 and m["gap"]["advice"][0].startswith("resample")
        assert m["test_sections"][0] >= m["target_sections"] // 2  # scored only on the half no method saw
    else:
        assert m["gap"]["zoom"] == 2.0


CHECKS = {"01_load_and_explore": _check_01, "02_annotate": _check_02, "03_transfer_learning": _check_03,
          "04_gpu_inference": _check_04, "05_quantify": _check_05, "06_domain_adaptation": _check_06}


@pytest.mark.notebook
@pytest.mark.slow
def test_02_paints_nothing_in_a_live_session(tmp_path, monkeypatch):
    """Run as a learner would (not headless): the store stays empty and the notebook stops to ask for strokes."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from vemkit.annotate import open_annotations
    from vemkit.examples import HEADLESS_ENV

    monkeypatch.setenv(HEADLESS_ENV, "0")
    out_dir = tmp_path / "out"
    with pytest.raises(PapermillExecutionError, match="nothing is painted yet"):
        pm.execute_notebook(
            str(ROOT / "notebooks" / "02_annotate.ipynb"), str(tmp_path / "02.ipynb"), kernel_name="python3",
            parameters={"QUICK": True, "DATASET": "synthetic", "MAX_SECTIONS": 4, "CROP_YX": 96,
                        "OUTPUT_DIR": str(out_dir)}, progress_bar=False, cwd=str(tmp_path))
    assert not any(open_annotations(out_dir / "annotations.zarr").counts().values())
