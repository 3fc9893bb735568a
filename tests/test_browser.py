"""The Annotator in a real browser: JupyterLab + headless Chromium (Playwright) paint strokes with the
mouse, the test reads the annotation store on disk, then restarts the kernel, reloads the page, re-runs
the notebook and checks the strokes are shown again.

Needs ``playwright`` (the Python package), ``jupyterlab`` and a Chromium (``$VEMKIT_CHROMIUM``,
Debian's ``/usr/bin/chromium`` or Playwright's own download); skips with the reason when one is
missing. ``$VEMKIT_BROWSER_SCREENSHOT`` names a file to save a screenshot of the painted widget to (it
is always saved in the test's tmp dir).
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

pytestmark = [pytest.mark.browser]
if importlib.util.find_spec("pytest_timeout") is not None:
    pytestmark.append(pytest.mark.timeout(300))  # a backstop: every wait below has its own timeout

TOKEN = "vemkit-browser-test"
TIMEOUT_MS = 60_000
CLASSES = ["background", "mitochondria"]
# colours of the store (DEFAULT_COLORS): value 1 = background (blue), 2 = first class (red)
RED, BLUE = (234, 67, 53), (66, 133, 244)


def _chromium():
    for candidate in (os.environ.get("VEMKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):  # fmt: skip
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _requirements():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser test needs the playwright package: pip install playwright")
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.skip("browser test needs jupyterlab: pip install jupyterlab")
    chromium = _chromium() or _playwright_chromium()
    if chromium is None:
        pytest.skip("browser test needs Chromium: apt-get install chromium, `python -m playwright install "
                    "chromium`, or $VEMKIT_CHROMIUM naming one")  # fmt: skip
    return chromium


def _playwright_chromium():
    """The Chromium that ``python -m playwright install chromium`` downloaded, if any."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        path = pw.chromium.executable_path
    return path if path and Path(path).exists() else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_notebook(root: Path):
    """The notebook the browser runs: a 3 x 256 x 256 phantom and an Annotator on root/ann.zarr."""
    cells = [
        nbformat.v4.new_code_cell(
            "import numpy as np\n"
            "from vemkit.annotate import Annotator\n"
            "yy, xx = np.mgrid[0:256, 0:256]\n"
            "vol = np.stack([(np.sin(xx / 9 + z) * np.cos(yy / 13) * 50 + 128).astype(np.uint8) for z in range(3)])\n"
            "def predictor(z):\n"
            "    p = vol[z] / 255.0\n"
            "    return np.stack([1 - p, p])"
        ),
        nbformat.v4.new_code_cell(
            f"ann = Annotator(vol, {str(root / 'ann.zarr')!r}, classes={CLASSES!r}, z=0, height=400,\n"
            "                predictor=predictor, preview_delay=0.2)\n"
            "ann"
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "vemkit-test", "display_name": "vemkit test", "language": "python"}
    nbformat.write(nb, root / "annotate_demo.ipynb")


def _kernelspec(data_dir: Path):
    """A kernelspec that runs this very Python (so the kernel imports the vemkit under test)."""
    spec = data_dir / "kernels" / "vemkit-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "vemkit test", "language": "python",
    }))  # fmt: skip


@pytest.fixture
def chromium():
    """Path of the Chromium to drive; skips when it, playwright or jupyterlab is missing."""
    return _requirements()


@pytest.fixture
def jupyterlab_server(chromium, tmp_path):
    """JupyterLab on a free loopback port serving tmp_path/root; yields (base_url, root)."""
    root = tmp_path / "root"
    root.mkdir()
    data_dir = tmp_path / "jupyter-data"
    _kernelspec(data_dir)
    # no "official Jupyter news?" toast over the page
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(data_dir),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONWARNINGS": "ignore",
    })  # fmt: skip
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}", "--allow-root",
    ]  # fmt: skip
    log_path = tmp_path / "jupyterlab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


# ------------------------------------------------------------------------------- page helpers


def _api(base, method, path):
    """Call the Jupyter server's REST API."""
    request = urllib.request.Request(f"{base}{path}", method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": f"token {TOKEN}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read() or b"null")


def _restart_kernels(base):
    """Restart every kernel through the server (the server waits until each is back)."""
    for kernel in _api(base, "GET", "/api/kernels"):
        _api(base, "POST", f"/api/kernels/{kernel['id']}/restart")


def _open_and_run(page, base):
    """Open the notebook, clear its outputs, run every cell and wait for the widget to show a section."""
    page.goto(f"{base}/lab/tree/annotate_demo.ipynb?token={TOKEN}", timeout=TIMEOUT_MS)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext", timeout=TIMEOUT_MS)  # fmt: skip
    page.evaluate(
        """async (ms) => {
            const within = (promise, what) => Promise.race([promise, new Promise((_, reject) =>
                setTimeout(() => reject(new Error(`JupyterLab: ${what} took more than ${ms} ms`)), ms))]);
            const app = window.jupyterapp;
            const panel = app.shell.currentWidget;
            await within(panel.context.ready, 'opening the notebook');
            await within(panel.sessionContext.ready, 'starting the kernel');
            await within(app.commands.execute('notebook:clear-all-cell-outputs'), 'clearing outputs');
            app.commands.execute('notebook:run-all-cells');  // resolves only when every cell ran: not awaited
        }""",
        TIMEOUT_MS,
    )
    widget = page.locator('.vemkit-ann[data-ready="1"]')
    widget.wait_for(timeout=TIMEOUT_MS)
    widget.scroll_into_view_if_needed()
    return widget


def _view(page):
    canvas = page.locator(".vemkit-ann-canvas")
    box = canvas.bounding_box()
    attrs = canvas.evaluate("c => [c.dataset.scale, c.dataset.offsetX, c.dataset.offsetY]")
    s, ox, oy = (float(a) for a in attrs)
    return box, s, ox, oy


def _screen(page, row, col):
    """Viewport coordinates of the centre of image pixel (row, col) with the widget's current view."""
    box, s, ox, oy = _view(page)
    return box["x"] + ox + (col + 0.5) * s, box["y"] + oy + (row + 0.5) * s


def _stroke(page, start, end):
    page.mouse.move(*_screen(page, *start))
    page.mouse.down()
    page.mouse.move(*_screen(page, *end), steps=12)
    page.mouse.up()


def _wait_saved(page, index):
    """Wait until the widget shows section ``index`` and every stroke sent has come back stored."""
    page.wait_for_function(
        """(index) => { const r = document.querySelector('.vemkit-ann');
            return r && r.dataset.ready === '1' && r.dataset.index === String(index) && r.dataset.pending === '0'; }""",
        arg=index,
        timeout=TIMEOUT_MS,
    )


def _pixel(page, row, col):
    """RGB the canvas shows at the centre of image pixel (row, col), after the next frame."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    box, s, ox, oy = _view(page)
    x, y = ox + (col + 0.5) * s, oy + (row + 0.5) * s
    return page.locator(".vemkit-ann-canvas").evaluate(
        """(c, [x, y]) => { const d = window.devicePixelRatio || 1;
            const px = c.getContext('2d').getImageData(Math.floor(x * d), Math.floor(y * d), 1, 1).data;
            return [px[0], px[1], px[2]]; }""",
        [x, y],
    )


def _labelled(page):
    return int(page.locator(".vemkit-ann").get_attribute("data-labelled"))


def _is(rgb, colour):
    """The canvas pixel is tinted by ``colour`` (label drawn over a grey image)."""
    r, g, b = rgb
    if colour == RED:
        return r > g + 40 and r > b + 40
    return b > r + 40 and b > g + 20


# ------------------------------------------------------------------------------------- the test


def test_paint_in_jupyterlab_and_reload(chromium, jupyterlab_server, tmp_path):
    from playwright.sync_api import sync_playwright

    from vemkit.annotate import open_annotations

    base, root = jupyterlab_server
    _write_notebook(root)
    errors = []
    shot = tmp_path / "annotator.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "vemkit" in m.text else None)
            widget = _open_and_run(page, base)
            assert _labelled(page) == 0
            assert widget.locator("[data-class-value]").count() == 2
            # up and back down through unlabelled sections (their label layers are the same bytes)
            widget.focus()
            page.keyboard.press("ArrowUp")
            _wait_saved(page, 1)
            page.keyboard.press("ArrowDown")
            _wait_saved(page, 0)

            # z = 0: a mitochondria stroke (class value 2) and a background stroke (value 1)
            widget.locator('[data-class-value="2"]').click()
            _stroke(page, (60, 40), (60, 120))
            widget.locator('[data-class-value="1"]').click()
            _stroke(page, (180, 40), (180, 120))
            _wait_saved(page, 0)
            # next section with the keyboard, then paint mitochondria there
            widget.focus()
            page.keyboard.press("ArrowUp")
            _wait_saved(page, 1)
            # zoom in with the wheel about image pixel (100, 200): the stroke below goes through the new view
            scale = _view(page)[1]
            page.mouse.move(*_screen(page, 100, 200))
            page.mouse.wheel(0, -300)
            page.wait_for_function("s => Number(document.querySelector('.vemkit-ann-canvas').dataset.scale) > s * 1.3",
                                   arg=scale, timeout=TIMEOUT_MS)  # fmt: skip
            widget.locator('[data-class-value="2"]').click()
            _stroke(page, (50, 200), (150, 200))
            _wait_saved(page, 1)
            # a stroke, then Ctrl+Z: gone from the canvas and from disk
            labelled = _labelled(page)
            widget.locator('[data-class-value="1"]').click()
            _stroke(page, (120, 170), (120, 190))
            _wait_saved(page, 1)
            assert _labelled(page) > labelled
            widget.focus()
            page.keyboard.press("Control+z")
            page.wait_for_function("n => document.querySelector('.vemkit-ann').dataset.labelled === String(n)",
                                   arg=labelled, timeout=TIMEOUT_MS)  # fmt: skip
            page.wait_for_selector('.vemkit-ann[data-overlay="1"]', timeout=TIMEOUT_MS)  # debounced preview ran
            assert _labelled(page) > 0
            page.screenshot(path=str(shot))

            # on disk, read by this process while the kernel holds the store open
            ann = open_annotations(root / "ann.zarr")
            assert ann.classes == CLASSES
            z0, z1, z2 = ann.section(0), ann.section(1), ann.section(2)
            assert z0[60, 45] == 2 and z0[60, 80] == 2 and z0[60, 115] == 2
            assert z0[180, 45] == 1 and z0[180, 80] == 1 and z0[180, 115] == 1
            assert z1[55, 200] == 2 and z1[100, 200] == 2 and z1[145, 200] == 2
            assert z0[120, 80] == 0 and z1[60, 80] == 0 and z1[120, 180] == 0 and not z2.any()
            assert set(np.unique(z0[60, 40:121])) == {2}  # the whole stroke, not only its ends
            assert ann.counts()["mitochondria"] == int((z0 == 2).sum() + (z1 == 2).sum())

            # restart the kernel, reload the page, run the notebook again: the strokes are shown
            _restart_kernels(base)
            _open_and_run(page, base)  # navigates again: a fresh page load
            _wait_saved(page, 0)
            assert _labelled(page) == int((z0 > 0).sum())
            assert _is(_pixel(page, 60, 80), RED)
            assert _is(_pixel(page, 180, 80), BLUE)
            page.locator(".vemkit-ann").focus()
            page.keyboard.press("ArrowUp")
            _wait_saved(page, 1)
            assert _labelled(page) == int((z1 > 0).sum())
            assert _is(_pixel(page, 100, 200), RED)
            page.wait_for_selector('.vemkit-ann[data-overlay="1"]', timeout=TIMEOUT_MS)
            if os.environ.get("VEMKIT_BROWSER_SCREENSHOT"):
                page.screenshot(path=os.environ["VEMKIT_BROWSER_SCREENSHOT"])
        finally:
            browser.close()
    assert not errors, f"errors in the page: {errors}"


# ------------------------------------------- an interactive run: nothing pre-painted, preview follows


def _write_classifier_notebook(root: Path):
    """Three sections, each with a bright disc further right; an Annotator with example strokes on
    section 2 (offered, not painted); later cells train a real PixelClassifier, attach it, retrain."""
    cells = [
        nbformat.v4.new_code_cell(
            "import numpy as np\n"
            "from vemkit.annotate import Annotator\n"
            "from vemkit.pixel_classifier import PixelClassifier\n"
            "rng = np.random.default_rng(0)\n"
            "yy, xx = np.mgrid[0:256, 0:256]\n"
            "vol = np.stack([np.where((yy - 128) ** 2 + (xx - 60 - 70 * z) ** 2 < 30 ** 2, 200, 50)\n"
            "                + rng.integers(0, 20, (256, 256)) for z in range(3)]).astype(np.uint8)\n"
            "examples = np.zeros(vol.shape, np.uint8)\n"
            "examples[2, 240:244, 20:120] = 1\n"
            "clf = PixelClassifier(classes=['background', 'mitochondria'], seed=0)"
        ),
        nbformat.v4.new_code_cell(
            f"ann = Annotator(vol, {str(root / 'ann.zarr')!r}, classes={CLASSES!r}, z=0, height=400,\n"
            "                example_strokes=examples, preview_delay=0.2)\n"
            "ann"
        ),
        nbformat.v4.new_code_cell("clf.fit(vol, ann.annotations, progress=False)\nann.set_predictor(clf)"),
        nbformat.v4.new_code_cell("ann.retrain()"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "vemkit-test", "display_name": "vemkit test", "language": "python"}
    nbformat.write(nb, root / "classifier_demo.ipynb")


def _run_cell(page, index):
    """Run cell ``index`` of the open notebook (as Shift+Enter on it would), without waiting for it."""
    page.evaluate(
        """(i) => { const app = window.jupyterapp; const panel = app.shell.currentWidget;
            panel.content.activeCellIndex = i; app.commands.execute('notebook:run-cell'); }""",
        index,
    )


def _open(page, base, name):
    page.goto(f"{base}/lab/tree/{name}?token={TOKEN}", timeout=TIMEOUT_MS)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext", timeout=TIMEOUT_MS)  # fmt: skip
    page.evaluate(
        """async () => { const panel = window.jupyterapp.shell.currentWidget;
            await panel.context.ready; await panel.sessionContext.ready; }"""
    )


def _status(page):
    return page.locator(".vemkit-ann-status").inner_text()


def test_interactive_run_attach_classifier_preview_follows_section(chromium, jupyterlab_server, tmp_path):
    from playwright.sync_api import sync_playwright

    from vemkit.annotate import open_annotations

    base, root = jupyterlab_server
    _write_classifier_notebook(root)
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "vemkit" in m.text else None)
            _open(page, base, "classifier_demo.ipynb")
            _run_cell(page, 0)
            _run_cell(page, 1)
            widget = page.locator('.vemkit-ann[data-ready="1"]')
            widget.wait_for(timeout=TIMEOUT_MS)
            widget.scroll_into_view_if_needed()
            # an interactive run: nothing painted, no preview, the example strokes only offered
            assert _labelled(page) == 0
            assert widget.get_attribute("data-overlay") == "0"
            button = widget.locator('[data-action="examples"]')
            assert button.is_visible()
            assert not widget.locator('[data-action="predict"]').is_visible()  # no predictor yet

            # the learner paints section 0: mitochondria inside the disc, background around it
            widget.locator('[data-class-value="2"]').click()
            _stroke(page, (128, 45), (128, 75))
            widget.locator('[data-class-value="1"]').click()
            _stroke(page, (220, 20), (220, 240))
            _stroke(page, (30, 20), (30, 240))
            _wait_saved(page, 0)

            # train in a notebook cell and attach the classifier to this widget: a preview of section 0
            _run_cell(page, 2)
            page.wait_for_selector('.vemkit-ann[data-overlay="1"][data-index="0"]', timeout=TIMEOUT_MS)
            assert widget.locator('[data-action="predict"]').is_visible()
            assert _is(_pixel(page, 105, 60), RED)  # the disc of section 0, away from the stroke
            assert _is(_pixel(page, 128, 200), BLUE)

            # two sections up: the preview follows, and shows that section's disc, further right
            widget.focus()
            page.keyboard.press("ArrowUp")
            _wait_saved(page, 1)
            page.keyboard.press("ArrowUp")
            _wait_saved(page, 2)
            page.wait_for_selector('.vemkit-ann[data-overlay="1"][data-index="2"]', timeout=TIMEOUT_MS)
            assert _is(_pixel(page, 128, 200), RED)
            assert _is(_pixel(page, 128, 60), BLUE)
            assert "preview of z 2" in _status(page)

            # "Load example strokes": painted as an ordinary edit, on disk at once, undone by Ctrl+Z
            button.click()
            page.wait_for_function("() => Number(document.querySelector('.vemkit-ann').dataset.labelled) > 0",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            ann = open_annotations(root / "ann.zarr")
            assert _labelled(page) == int((ann.section(2) > 0).sum()) == 4 * 100
            assert _is(_pixel(page, 241, 60), BLUE)
            widget.focus()
            page.keyboard.press("Control+z")
            page.wait_for_function("() => document.querySelector('.vemkit-ann').dataset.labelled === '0'",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            assert not open_annotations(root / "ann.zarr").section(2).any()
            button.click()
            page.wait_for_function("() => Number(document.querySelector('.vemkit-ann').dataset.labelled) > 0",
                                   timeout=TIMEOUT_MS)  # fmt: skip

            # retrain on everything painted (own strokes and the examples): the preview is made again
            _run_cell(page, 3)
            page.wait_for_function("() => document.querySelector('.vemkit-ann-status').textContent.includes('retrained')",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            page.wait_for_selector('.vemkit-ann[data-overlay="1"][data-index="2"]', timeout=TIMEOUT_MS)
            assert _is(_pixel(page, 128, 200), RED)
            ann = open_annotations(root / "ann.zarr")
            assert ann.section(0)[128, 60] == 2 and ann.section(0)[220, 128] == 1 and ann.section(2)[241, 60] == 1
            page.screenshot(path=str(tmp_path / "classifier.png"))
        finally:
            browser.close()
    assert not errors, f"errors in the page: {errors}"
