"""vemkit._progress: live bars where someone watches, one final line per step in stored or piped runs."""

import io
import subprocess
import sys
import types

import pytest

from vemkit import _progress
from vemkit._progress import LineProgress, progress_bar, progress_mode


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("VEMKIT_PROGRESS", raising=False)


def _fake_kernel(monkeypatch, allow_stdin):
    kernel = types.SimpleNamespace(_allow_stdin=allow_stdin)
    monkeypatch.setattr(_progress, "_kernel", lambda: kernel)


def test_kernel_run_by_nbclient_prints_lines(monkeypatch, capsys):
    # papermill / nbconvert / vemkit tour: nbclient sends every cell with allow_stdin=False
    _fake_kernel(monkeypatch, allow_stdin=False)
    assert progress_mode() == "lines"
    assert sum(progress_bar(range(3), desc="measure objects", unit="object")) == 3
    out = capsys.readouterr()
    assert out.out.startswith("measure objects: 3 objects done in ") and out.out.count("\n") == 1
    assert out.err == ""  # a stored notebook shows stdout plainly


def test_kernel_with_front_end_gets_tqdm_auto(monkeypatch):
    _fake_kernel(monkeypatch, allow_stdin=True)
    assert progress_mode() == "bars"
    from tqdm.auto import tqdm

    bar = progress_bar(total=2, desc="x")
    try:
        assert isinstance(bar, tqdm)
    finally:
        bar.close()


def test_pipe_prints_lines_to_stderr_and_terminal_gets_bars(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_kernel", lambda: None)
    assert progress_mode() == "lines"  # pytest captures stderr: not a terminal
    with progress_bar(total=4, desc="stitch faces", unit="face") as bar:
        bar.update(3)
    assert capsys.readouterr().err.startswith("stitch faces: 3 of 4 faces done in ")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_mode() == "bars"


def test_environment_overrides(monkeypatch, capsys):
    _fake_kernel(monkeypatch, allow_stdin=True)
    monkeypatch.setenv("VEMKIT_PROGRESS", "lines")
    assert progress_mode() == "lines"
    monkeypatch.setenv("VEMKIT_PROGRESS", "off")
    list(progress_bar(range(5), desc="quiet"))
    assert capsys.readouterr().out == ""


def test_disable_prints_nothing_anywhere(monkeypatch, capsys):
    _fake_kernel(monkeypatch, allow_stdin=False)
    bar = progress_bar(total=3, desc="off", disable=True)
    bar.update(3)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_final_line_has_postfix_resume_and_scaled_units(monkeypatch, capsys):
    _fake_kernel(monkeypatch, allow_stdin=False)
    bar = progress_bar(total=3_000_000, initial=1_000_000, unit="vox", unit_scale=True, desc="predict 2/3 blocks")
    bar.update(2_000_000)
    bar.set_postfix(loss="0.125")
    bar.close()
    bar.close()  # once only
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert line.startswith("predict 2/3 blocks: 2M vox done in ") and "(+1M done before)" in line and "loss 0.125" in line


def test_long_step_prints_a_heartbeat(monkeypatch, capsys):
    _fake_kernel(monkeypatch, allow_stdin=False)
    monkeypatch.setattr(_progress, "HEARTBEAT_S", 0.0)
    list(progress_bar(range(2), desc="fetch", unit="file"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fetch: 50% (1/2 files) after") and lines[-1].startswith("fetch: 2 files done in")


def test_zip_over_the_bar_counts_every_item(monkeypatch, capsys):
    # measure objects zips the ids with the bar: the bar is never asked for an item after the last
    _fake_kernel(monkeypatch, allow_stdin=False)
    pairs = list(zip([1, 2, 3], progress_bar(iter("abc"), total=3, desc="zip", unit="object")))
    del pairs
    assert "zip: 3 objects done" in capsys.readouterr().out


def test_line_progress_is_a_drop_in_for_tqdm():
    bar = LineProgress(range(3), total=3, silent=True)
    assert len(bar) == 3 and list(bar) == [0, 1, 2] and bar.n == 3


def test_papermill_like_run_in_a_real_kernel(tmp_path):
    """A notebook executed by nbclient (as papermill and the tour do) stores a line, not a frozen widget."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from vemkit._progress import progress_bar\n"
        "total = sum(progress_bar(range(3), desc='measure objects', unit='object'))"
    )])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env_python = sys.executable
    try:
        subprocess.run([env_python, "-c", "import ipykernel"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.skip("ipykernel is not installed")
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("no python3 kernelspec")
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.get("output_type") for o in outputs] == ["stream"], outputs
    assert outputs[0]["name"] == "stdout" and outputs[0]["text"].startswith("measure objects: 3 objects done in ")


def test_headless_and_the_live_training_plot(monkeypatch):
    from vemkit.train import _LivePlot

    monkeypatch.setattr(_progress, "_kernel", lambda: None)
    assert _progress.headless() and not _LivePlot().active  # a script: no live plot
    _fake_kernel(monkeypatch, allow_stdin=False)
    assert _progress.headless() and not _LivePlot().active  # papermill: only the final figure is stored
    _fake_kernel(monkeypatch, allow_stdin=True)
    monkeypatch.setenv("VEMKIT_PROGRESS", "lines")  # quiet bars do not make a watched notebook headless
    assert not _progress.headless() and _LivePlot().active
