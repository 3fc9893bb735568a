"""Shared fixtures: where the real datasets are, and a loopback HTTP server for download tests."""

import functools
import http.server
import os
import threading
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the project (or ``$VEMKIT_SHARED_DATA``), if it holds the datasets."""
    candidates = [os.environ.get("VEMKIT_SHARED_DATA"), ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "drosophila_vnc_sstem" / "sources.json").exists():
            return Path(c)
    return None


@pytest.fixture
def shared_data(monkeypatch):
    """Point the vemkit data cache at ../shared/data (read-only), or skip with the reason."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(
            "real EM data not found: expected ../shared/data beside the project (or $VEMKIT_SHARED_DATA) "
            "holding drosophila_vnc_sstem, isbi2012 and flyem_medulla_fibsem"
        )
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(path))
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """Serve a temporary folder on 127.0.0.1; yields (folder, base_url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def randomise_batchnorm(net, seed=0):
    """Give every BatchNorm layer non-trivial running statistics (and put ``net`` in eval mode), so a
    test notices per-block normalisation, or a trace or load that dropped them."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return net.eval()
