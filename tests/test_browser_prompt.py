"""The Annotator's prompt mode in a real browser (JupyterLab + headless Chromium): after zooming and
panning, a click on a section reaches the segmenter at that image pixel of that section, the mask it
returns is accepted into the annotation store on disk, and Ctrl+Z removes it.

Reuses tests/test_browser.py's server and page helpers; skips where they skip (no playwright,
jupyterlab or Chromium).
"""

import importlib.util
import json

import nbformat
import pytest

from test_browser import (TIMEOUT_MS, _labelled, _open_and_run, _screen, _view, _wait_saved,  # noqa: F401
                          chromium, jupyterlab_server)

pytestmark = [pytest.mark.browser]
if importlib.util.find_spec("pytest_timeout") is not None:
    pytestmark.append(pytest.mark.timeout(300))  # a backstop: every wait has its own timeout

CLASSES = ["background", "mitochondria"]


def _write_notebook(root):
    """A phantom-like volume and a PromptAnnotator whose segmenter logs every call to calls.json."""
    cells = [
        nbformat.v4.new_code_cell(
            "import json\n"
            "import numpy as np\n"
            "from vemkit._prompt import PromptAnnotator\n"
            "yy, xx = np.mgrid[0:256, 0:256]\n"
            "vol = np.stack([(np.sin(xx / 9 + z) * np.cos(yy / 13) * 50 + 128).astype(np.uint8) for z in range(3)])\n"
            "class Logged:\n"
            "    name = 'logged'\n"
            "    def embed(self, section):\n"
            "        return {'shape': section.shape, 'z': [int(z) for z in range(3) if np.array_equal(vol[z], section)]}\n"
            "    def predict(self, emb, points=None, labels=None, box=None):\n"
            "        with open('calls.json', 'a') as f:\n"
            "            f.write(json.dumps({'z': emb['z'], 'points': points, 'labels': labels, 'box': box}) + '\\n')\n"
            "        r, c = points[0]\n"
            "        return (yy - r) ** 2 + (xx - c) ** 2 <= 36, 0.9"
        ),
        nbformat.v4.new_code_cell(
            f"ann = PromptAnnotator(vol, 'ann.zarr', classes={CLASSES!r}, z=0, height=400, segmenter=Logged(),\n"
            "                      embedding_cache=None)\n"
            "ann"
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "vemkit-test", "display_name": "vemkit test", "language": "python"}
    nbformat.write(nb, root / "annotate_demo.ipynb")


def test_click_reaches_the_segmenter_and_the_mask_the_store(chromium, jupyterlab_server, tmp_path):
    from playwright.sync_api import sync_playwright

    from vemkit.annotate import open_annotations

    base, root = jupyterlab_server
    _write_notebook(root)
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda err: errors.append(str(err)))
            widget = _open_and_run(page, base)
            widget.focus()
            page.keyboard.press("ArrowUp")  # section 1
            _wait_saved(page, 1)
            # zoom about pixel (100, 150) and pan by a shift-drag: the click must go through the new view
            scale = _view(page)[1]
            page.mouse.move(*_screen(page, 100, 150))
            page.mouse.wheel(0, -300)
            page.wait_for_function("s => Number(document.querySelector('.vemkit-ann-canvas').dataset.scale) > s * 1.3",
                                   arg=scale, timeout=TIMEOUT_MS)  # fmt: skip
            x, y = _screen(page, 120, 140)
            page.keyboard.down("Shift")
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x - 40, y - 30, steps=6)
            page.mouse.up()
            page.keyboard.up("Shift")
            widget.focus()
            page.keyboard.press("s")  # prompt tool
            page.wait_for_selector('.vemkit-ann[data-prompt="1"]', timeout=TIMEOUT_MS)
            page.mouse.click(*_screen(page, 100, 150))
            page.wait_for_function("() => Number(document.querySelector('.vemkit-ann').dataset.promptPixels) > 0",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            calls = [json.loads(line) for line in (root / "calls.json").read_text().splitlines()]
            assert calls[-1]["z"] == [1] and calls[-1]["labels"] == [1]
            assert [round(v) for v in calls[-1]["points"][0]] == [100, 150]
            assert int(page.locator(".vemkit-ann").get_attribute("data-prompt-pixels")) == 113  # disk of radius 6
            widget.focus()
            page.keyboard.press("Enter")  # accept into the current class (mitochondria)
            page.wait_for_function("() => Number(document.querySelector('.vemkit-ann').dataset.labelled) === 113",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            z1 = open_annotations(root / "ann.zarr").section(1)
            assert z1[100, 150] == 2 and int((z1 == 2).sum()) == 113 and z1[100, 157] == 0
            widget.focus()
            page.keyboard.press("Control+z")
            page.wait_for_function("() => document.querySelector('.vemkit-ann').dataset.labelled === '0'",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            assert not open_annotations(root / "ann.zarr").section(1).any()
            page.screenshot(path=str(tmp_path / "prompt.png"))
        finally:
            browser.close()
    assert not errors, f"errors in the page: {errors}"
