"""Smoke test of benchmarks/inference.py (vemkit predict_volume beside MONAI sliding_window_inference):
``--quick`` runs both methods end to end on a tiny volume and prints the comparison table."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "inference.py"

pytestmark = [pytest.mark.slow]
if importlib.util.find_spec("pytest_timeout") is not None:
    pytestmark.append(pytest.mark.timeout(600))


@pytest.mark.skipif(importlib.util.find_spec("monai") is None, reason="MONAI (the benchmark's peer) is not installed")
def test_quick_benchmark_prints_both_methods_ratio_and_agreement(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=540, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^device : CPU ", out, re.M), out  # every figure comes with its device
    rows = {}
    for name in ("vemkit", "MONAI"):
        m = re.search(rf"^{name}\s+([\d.]+) M\s+([\d.]+)\s+\d+\s+1\s+([\d.]+)\s+\(([\d.]+)\)", out, re.M)
        assert m, f"no table row for {name}:\n{out}"
        rows[name] = [float(v) for v in m.groups()]
        assert rows[name][0] > 0 and rows[name][2] >= rows[name][3] > 0  # voxels/s; peak >= baseline host memory
    ratio = re.search(r"^ratio vemkit / MONAI \(voxels/s\): ([\d.]+)x", out, re.M)
    assert ratio and float(ratio.group(1)) > 0, out
    agree = re.search(r"^agreement: ([\d.]+) % of voxels get the same label", out, re.M)
    assert agree and 50.0 < float(agree.group(1)) <= 100.0, out
    # the generated volume and outputs stay in the work directory, never in the repository
    assert list(tmp_path.glob("volume-*.ome.zarr")) and not list(tmp_path.glob("out-*"))


@pytest.mark.skipif(importlib.util.find_spec("monai") is None, reason="MONAI (the benchmark's peer) is not installed")
def test_memory_test_prints_peak_host_memory_and_monai_need(tmp_path):
    # 64 x 256 x 256: the smallest volume --memory-test makes with --side 256
    proc = subprocess.run([sys.executable, str(SCRIPT), "--memory-test", "0.001", "--side", "256", "--workdir",
                           str(tmp_path)], capture_output=True, text=True, timeout=540, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "64 x 256 x 256 uint8" in out, out
    peak = re.search(r"^vemkit : peak host memory ([\d.]+) GB \(baseline ([\d.]+) GB", out, re.M)
    assert peak and float(peak.group(1)) >= float(peak.group(2)) > 0, out
    need = re.search(r"MONAI  : its whole-volume path needs about ([\d.]+) GB", out)
    assert need and abs(float(need.group(1)) - 64 * 256 * 256 * 35 / 1e9) < 0.05, out  # 35 bytes per voxel, 2 classes
    assert re.search(r"^MONAI  : measured on a 64 x 256 x 128 sub-volume", out, re.M), out
