"""vemkit tour: the main job. Bad input is refused before anything runs; a failing notebook leaves a
partial report; the quick tour on the real VNC data chains 01 -> 05 and writes a report that a headless
Chromium shows with its figures and the morphometrics table; a non-editable install into a fresh virtual
environment runs the tour offline on the synthetic phantom when the data is nowhere to be had."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, shared_data_dir
from vemkit.cli import main
from vemkit.tour import NOTEBOOKS, TITLES, TourError, resolve_dataset, tour

# ------------------------------------------------------------------------------ refused before running


def test_unknown_dataset_is_refused_with_the_choices(tmp_path, capsys):
    assert main(["tour", "--dataset", "no_such_data", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "no dataset named 'no_such_data'" in err and "drosophila_vnc_sstem" in err and "synthetic" in err
    assert not (tmp_path / "t").exists()


def test_the_sbf_sem_mitochondria_dataset_is_a_tour_and_notebook_choice(tmp_path, capsys):
    """Issue 20: the tour and notebooks 01-05 and 07 run on cdeep3m_mito (SBF-SEM); the whole quick tour
    on it (7 min under load) is run by hand: `vemkit tour --quick --dataset cdeep3m_mito`."""
    assert main(["tour", "--dataset", "no_such_data", "--out", str(tmp_path / "t")]) == 2
    assert "cdeep3m_mito" in capsys.readouterr().err  # among the tour's datasets
    for name in ("01_load_and_explore", "02_annotate", "03_transfer_learning", "04_gpu_inference", "05_quantify",
                 "07_generalist_models"):
        cells = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells
        line = next(ln for c in cells if c.cell_type == "code" for ln in c.source.splitlines()
                    if ln.startswith("DATASET = "))
        assert '"cdeep3m_mito"' in line.split("@param")[1], name


def test_dataset_without_mitochondria_is_refused(tmp_path, capsys):
    assert main(["tour", "--dataset", "isbi2012", "--out", str(tmp_path / "t")]) == 2
    assert "no mitochondria labels" in capsys.readouterr().err


def test_output_folder_checks(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("a user's file")
    assert main(["tour", "--dataset", "synthetic", "--out", str(busy)]) == 2
    assert "is not empty" in capsys.readouterr().err
    # --overwrite replaces an earlier tour, never a folder of other files
    assert main(["tour", "--dataset", "synthetic", "--out", str(busy), "--overwrite"]) == 2
    assert "did not make (mine.txt)" in capsys.readouterr().err
    assert (busy / "mine.txt").read_text() == "a user's file"
    # a folder that cannot be made (its parent is a file)
    assert main(["tour", "--dataset", "synthetic", "--out", str(busy / "mine.txt" / "tour")]) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_missing_device_is_an_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["tour", "--dataset", "synthetic", "--device", "cuda", "--out", str(tmp_path / "t")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_offline_fallback_and_explicit_dataset(tmp_path, monkeypatch, capsys):
    """The default dataset falls back to the phantom, saying why; a dataset asked for by name does not."""
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path / "empty-cache"))
    data = resolve_dataset(None, offline=True, progress=False)
    assert data["name"] == "synthetic" and data["requested"] is None
    assert "drosophila_vnc_sstem could not be had" in data["fallback"] and "synthetic phantom" in data["fallback"]
    assert "NOTE: drosophila_vnc_sstem could not be had" in capsys.readouterr().err
    with pytest.raises(ConnectionError, match="'drosophila_vnc_sstem' is not available.*--dataset synthetic"):
        resolve_dataset("drosophila_vnc_sstem", offline=True, progress=False)


def test_offline_uses_a_verified_cache(shared_data):
    data = resolve_dataset(None, offline=True, progress=False)
    manifest = {f["path"]: f["sha256"] for f in json.loads((ROOT / "data_manifest.json").read_text())
                ["datasets"]["drosophila_vnc_sstem"]["files"]}  # fmt: skip
    assert data["name"] == "drosophila_vnc_sstem" and data["fallback"] is None
    assert len(data["files"]) == 100  # stack1: 20 sections of raw and four label kinds
    assert all(manifest[f["path"]] == f["sha256"] for f in data["files"])


def _fake_notebooks(folder: Path, failing: str | None):
    """Five tiny notebooks with the tour's names: each records its parameters; ``failing`` raises."""
    folder.mkdir()
    for stem in NOTEBOOKS:
        params = nbformat.v4.new_code_cell('DATASET = ""\nOUTPUT_DIR = ""', metadata={"tags": ["parameters"]})
        body = ("import json, pathlib\n"
                "out = pathlib.Path(OUTPUT_DIR); out.mkdir(parents=True, exist_ok=True)\n"
                f"(out / 'metrics.json').write_text(json.dumps({{'ome_zarr': str(out / 'image.ome.zarr'), "
                "'annotations': str(out / 'a.zarr'), 'model_dir': str(out / 'm'), 'labels': str(out / 'l.zarr'), "
                "'class_index_for_05': 1, 'headless': __import__('os').environ.get('VEMKIT_HEADLESS')}))\n"
                "import sys; print('kernel noise on stderr', file=sys.__stderr__, flush=True)\n")  # fmt: skip
        if stem == failing:
            body += "raise ValueError('the stand-in notebook fails here')\n"
        nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{stem}.ipynb")


@pytest.mark.slow
def test_a_failing_notebook_leaves_a_partial_report(tmp_path):
    _fake_notebooks(tmp_path / "nbs", failing="02_annotate")
    with pytest.raises(TourError, match="02_annotate failed.*the stand-in notebook fails here"):
        tour(tmp_path / "t", "synthetic", quick=True, notebooks=tmp_path / "nbs", progress=False)
    record = json.loads((tmp_path / "t" / "tour.json").read_text())
    assert record["status"] == "failed"
    assert [s["status"] for s in record["steps"]] == ["ok", "failed", "not run", "not run", "not run"]
    # 02 got 01's outputs through its parameters
    assert record["steps"][1]["parameters"]["IMAGE_PATH"] == str(tmp_path / "t" / NOTEBOOKS[0] / "image.ome.zarr")
    page = (tmp_path / "t" / "report.html").read_text()
    assert "Not complete" in page and "the stand-in notebook fails here" in page
    executed = nbformat.read(tmp_path / "t" / "notebooks" / "02_annotate.ipynb", as_version=4)
    assert executed.metadata["kernelspec"]["name"] == "python3"  # the tour's temporary kernel is not left behind
    assert "ValueError" in json.dumps(executed.cells[-1]["outputs"])


@pytest.mark.slow
def test_the_tour_prints_one_line_per_notebook_and_logs_the_rest(tmp_path, capfd):
    _fake_notebooks(tmp_path / "nbs", failing=None)
    res = tour(tmp_path / "t", "synthetic", quick=True, notebooks=tmp_path / "nbs")
    out, err = capfd.readouterr()
    lines = out.strip().splitlines()
    steps = [line for line in lines if line.startswith("[")]
    assert [line.split(":")[0] for line in steps] == [f"[{i}/5] {TITLES[stem]}" for i, stem in enumerate(NOTEBOOKS, 1)]
    assert len(lines) == 3 + 5 + 2  # where, data, device; the steps; the report and the log
    assert lines[-2].endswith(str(res.report)) and lines[-1].endswith("tour.log)")
    # the kernels' and papermill's messages are in the log, not on the terminal
    log = (tmp_path / "t" / "tour.log").read_text()
    assert "kernel noise on stderr" in log and "kernel noise" not in out + err
    assert "Kernel is running over TCP" not in out + err and "Executing" not in out + err
    assert all(f"===== {stem}" in log for stem in NOTEBOOKS)
    # QUICK is the notebooks' own switch; they know nobody watches them
    assert all(s["parameters"]["QUICK"] is True and "N_TREES" not in s["parameters"] for s in res.steps)
    assert all(s["metrics"]["headless"] == "1" for s in res.steps)
    assert os.environ.get("VEMKIT_HEADLESS") is None  # set for the run only


# --------------------------------------------------------------------------- the quick tour on real data


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory):
    """``vemkit tour --quick`` offline on ../shared/data, run once for the tests below."""
    data = shared_data_dir()
    if data is None:
        pytest.skip("real EM data not found: expected ../shared/data beside the project (or $VEMKIT_SHARED_DATA)")
    out = tmp_path_factory.mktemp("tour") / "quick"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEMKIT_DATA_DIR", str(data))
        assert main(["tour", "--quick", "--offline", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.notebook
def test_quick_tour_on_real_data(quick_tour):
    out = quick_tour
    record = json.loads((out / "tour.json").read_text())
    assert record["status"] == "complete" and record["quick"] is True
    data = record["dataset"]
    assert data["name"] == "drosophila_vnc_sstem" and data["fallback"] is None and len(data["files"]) == 100
    steps = {s["notebook"]: s for s in record["steps"]}
    assert list(steps) == list(NOTEBOOKS)
    for stem, s in steps.items():
        assert s["status"] == "ok" and s["seconds"] > 0, stem
        assert (out / "notebooks" / f"{stem}.ipynb").is_file() and (out / stem / "metrics.json").is_file()
    m = {stem: s["metrics"] for stem, s in steps.items()}
    p = {stem: s["parameters"] for stem, s in steps.items()}
    # each notebook ran on the previous one's outputs
    image = m["01_load_and_explore"]["ome_zarr"]
    assert all(p[stem]["IMAGE_PATH"] == image for stem in NOTEBOOKS[1:])
    assert p["03_transfer_learning"]["ANNOTATIONS_PATH"] == m["02_annotate"]["annotations"]
    # QUICK spreads 02's two example sections (0 and 10 of the full stack) over the 6-section crop
    assert m["03_transfer_learning"]["annotated_sections"] == m["02_annotate"]["annotated_sections"] == [0, 5]
    assert all(p[stem]["QUICK"] is True for stem in NOTEBOOKS)
    assert p["04_gpu_inference"]["MODEL_DIR"] == m["03_transfer_learning"]["model_dir"]
    assert m["04_gpu_inference"]["model"] == m["03_transfer_learning"]["model_dir"]
    assert p["05_quantify"]["MASK_PATH"] == m["04_gpu_inference"]["labels"] == m["05_quantify"]["mask"]
    # every notebook worked on the same crop of the real stack
    assert all(m[stem]["crop_zyx"] == [6, 256, 256] for stem in ("01_load_and_explore", "02_annotate",
                                                                 "04_gpu_inference", "05_quantify"))
    assert m["05_quantify"]["voxel_size_nm_zyx"] == [50.0, 4.6, 4.6]
    # the provenance record
    assert record["device"]["resolved"] in ("cpu", "cuda", "mps") and record["versions"]["torch"]
    assert {mod["role"] for mod in record["models"]} == {"base model fine-tuned in 03", "fine-tuned in 03, run by 04"}
    page = (out / "report.html").read_text()
    assert data["files_sha256"] in page and data["files"][0]["sha256"] in page
    executed = nbformat.read(out / "notebooks" / "05_quantify.ipynb", as_version=4)
    assert executed.metadata["kernelspec"]["name"] == "python3"


def _chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the report test needs the playwright package: pip install playwright")
    for candidate in (os.environ.get("VEMKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):  # fmt: skip
        if candidate and Path(candidate).exists():
            return candidate
    with sync_playwright() as pw:
        path = pw.chromium.executable_path
    if path and Path(path).exists():
        return path
    pytest.skip("the report test needs Chromium: apt-get install chromium, `python -m playwright install chromium`, "
                "or $VEMKIT_CHROMIUM naming one")


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.browser
def test_report_in_headless_chromium(quick_tour, tmp_path):
    import numpy as np
    import pandas as pd
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from vemkit._report import key_figures

    chromium = _chromium()
    out = quick_tour
    n_figures = sum(len(key_figures(out / "notebooks" / f"{stem}.ipynb")) for stem in NOTEBOOKS)
    n_objects = len(pd.read_csv(out / "05_quantify" / "mitochondria.csv"))
    assert n_figures >= len(NOTEBOOKS) and n_objects > 0
    shot = tmp_path / "report.png"
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("requestfailed", lambda req: errors.append(f"failed to load {req.url}"))
            page.goto((out / "report.html").as_uri(), wait_until="load", timeout=60_000)
            images = page.evaluate("""() => Promise.all(Array.from(document.images).map(img =>
                img.decode().then(() => [img.naturalWidth, img.naturalHeight, img.getBoundingClientRect().width],
                                  () => [0, 0, 0])))""")
            assert len(images) == n_figures
            assert all(w > 100 and h > 100 and shown > 100 for w, h, shown in images), images
            assert page.locator("#status").inner_text().startswith("Complete")
            table = page.locator("table#morphometrics")
            table.scroll_into_view_if_needed()
            assert table.is_visible()
            assert table.locator("tr").count() == n_objects + 1
            header = table.locator("th").all_inner_texts()
            assert header[:2] == ["label", "volume_um3"]
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("VEMKIT_REPORT_SCREENSHOT"):
                page.screenshot(path=os.environ["VEMKIT_REPORT_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] > 2000 and pixels.std() > 20  # a long page with pictures on it, not a blank one


# ---------------------------------------------------------- a non-editable install in a fresh environment


def _copy_of_the_project(dest: Path) -> Path:
    """The working tree without build outputs, virtual environments or data (pip builds in its source)."""
    ignore = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "dist", "*.egg-info", "__pycache__",
                                    "outputs", ".devdata", ".whl", ".pytest_cache", ".benchmarks", "_data", "_out",
                                    ".ipynb_checkpoints", "*.ome.zarr")  # fmt: skip
    return Path(shutil.copytree(ROOT, dest, ignore=ignore))


@pytest.mark.slow
@pytest.mark.notebook
def test_installed_package_runs_the_tour_offline_on_the_phantom(tmp_path):
    """``pip install .`` (not editable) into a fresh venv that sees this environment's dependencies, then
    ``vemkit tour --quick --offline`` with an empty cache: it says the data is nowhere to be had and runs
    every notebook, from the installed copy, on the synthetic phantom."""
    src = _copy_of_the_project(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment's packages, without its .pth files (so not the editable vemkit in helpers/)
    (Path(site) / "_vemkit_test_base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["VEMKIT_DATA_DIR"] = str(tmp_path / "empty-cache")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                   check=True, env=env, cwd=tmp_path)
    probe = subprocess.run([str(python), "-c", (
        "import json, vemkit, vemkit.train as t, vemkit.tour as tour, vemkit.datasets as d, pathlib\n"
        "pkg = pathlib.Path(vemkit.__file__).parent\n"
        "print(json.dumps({'package': str(pkg), 'manifest': len(d.list_datasets()), 'static': sorted(p.name for p in "
        "(pkg / 'static').iterdir()), 'base_models': sorted(t.list_base_models()), 'notebooks': str(tour.find_notebooks())}))"
    )], capture_output=True, text=True, check=True, env=env, cwd=tmp_path)  # fmt: skip
    info = json.loads(probe.stdout)
    assert Path(info["package"]).is_relative_to(Path(site)), info  # not helpers/ of the checkout
    assert info["manifest"] >= 3 and {"annotator.js", "annotator.css"} <= set(info["static"])
    assert {"em2d-small", "em2d-small-vnc"} <= set(info["base_models"])
    assert Path(info["notebooks"]).is_relative_to(venv)  # the wheel's copy of the notebooks

    vemkit_cmd = venv / ("Scripts/vemkit.exe" if os.name == "nt" else "bin/vemkit")
    run = subprocess.run([str(vemkit_cmd), "tour", "--quick", "--offline", "--out", str(tmp_path / "tour"), "--quiet"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "NOTE: drosophila_vnc_sstem could not be had" in run.stderr and "synthetic phantom" in run.stderr
    record = json.loads((tmp_path / "tour" / "tour.json").read_text())
    assert record["status"] == "complete" and record["dataset"]["name"] == "synthetic"
    assert Path(record["source"]["package"]).is_relative_to(Path(site))
    assert record["notebooks_dir"] == info["notebooks"]
    page = (tmp_path / "tour" / "report.html").read_text()
    assert 'id="fallback"' in page and 'id="morphometrics"' in page and page.count("data:image/png;base64,") >= 5
    assert Path(record["kernel_python"]).is_relative_to(venv)  # the kernels ran the venv's python, so its vemkit
    assert all(s["metrics"]["notebook"] == s["notebook"] for s in record["steps"])
