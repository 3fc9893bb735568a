"""bioimage.io export: a valid package whose TorchScript weights run without vemkit and predict what vemkit does."""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("bioimageio.spec", reason="bioimage.io export needs bioimageio.spec (pip install 'vemkit[export]')")

from vemkit.export import ProbabilityUNet, export_bioimageio, validate_bioimageio  # noqa: E402
from vemkit.models import SegmentationModel, UNet  # noqa: E402
from conftest import randomise_batchnorm

CLASSES = ["background", "membrane", "mitochondria"]
AUTHORS = [{"name": "Ada Lovelace", "affiliation": "vemkit tests"}]


def _jit_load(data: bytes):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated", category=DeprecationWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def _vemkit_probabilities(model: SegmentationModel, raw: np.ndarray) -> np.ndarray:
    """What vemkit.predict computes: percentile normalisation of the image, network, softmax over the classes."""
    norm = model.normalization
    lo, hi = np.percentile(raw.astype(np.float64), [norm["lower"], norm["upper"]])
    x = torch.from_numpy(((raw - lo) / (hi - lo)).astype(np.float32))
    with torch.no_grad():
        return torch.softmax(model.network.eval()(x), dim=1).numpy()


@pytest.fixture(scope="module")
def model2d():
    torch.manual_seed(0)
    net = randomise_batchnorm(UNet(ndim=2, out_channels=3, base_channels=4, depth=2))
    training = {"image": "synthetic phantom", "iterations": 3, "seconds": 1.5, "device": "cpu",
                "plan": {"patch": [1, 64, 64], "batch_size": 2, "lr": 1e-3}, "history": {"loss": [1.0, 0.9]}}
    return SegmentationModel(net, CLASSES, voxel_size=(50, 5, 5), training=training)


@pytest.fixture(scope="module")
def export2d(model2d, tmp_path_factory):
    out = tmp_path_factory.mktemp("bmz") / "model2d.zip"
    path = export_bioimageio(model2d, out, authors=AUTHORS)
    return path, validate_bioimageio(path)


def test_2d_export_validates_and_holds_the_package(export2d):
    path, summary = export2d
    print(json.dumps(summary, indent=1))
    assert path.is_file() and path.suffix == ".zip"
    # bioimageio.spec alone gives "valid-format" at best ("passed" needs bioimageio.core's inference test)
    assert summary["status"] in ("passed", "valid-format"), summary
    assert summary["errors"] == []
    assert summary["format_version"].startswith("0.5.")
    assert summary["test"]["status"] == "passed", summary["test"]
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        rdf = z.read("rdf.yaml").decode()
        readme = z.read("README.md").decode()
    assert {"rdf.yaml", "weights_torchscript.pt", "weights_state_dict.pt", "test_input.npy", "test_output.npy",
            "cover.png", "README.md"} <= names
    for text in ("torchscript:", "pytorch_state_dict:", "import_from: vemkit.export", "scale_range",
                 "min_percentile: 1.0", "halo: 24", "step: 4", "electron-microscopy", "mitochondria"):
        assert text in rdf, text
    assert "## Validation" in readme and "synthetic phantom" in readme and "vemkit" in readme


def test_torchscript_reproduces_test_output_and_vemkit(export2d, model2d):
    path, _ = export2d
    with zipfile.ZipFile(path) as z:
        net = _jit_load(z.read("weights_torchscript.pt"))
        raw = np.load(io.BytesIO(z.read("test_input.npy")))
        expected = np.load(io.BytesIO(z.read("test_output.npy")))
        state = torch.load(io.BytesIO(z.read("weights_state_dict.pt")), weights_only=True)
    assert raw.shape[:2] == (1, 1) and expected.shape == (1, 3, *raw.shape[2:])
    # the bioimage.io preprocessing (scale_range over y, x with its eps), then the TorchScript network
    lo, hi = np.percentile(raw.astype(np.float64), [1, 99])
    x = torch.from_numpy(((raw - lo) / (hi - lo + 1e-6)).astype(np.float32))
    with torch.no_grad():
        got = net(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(expected.sum(1), 1.0, atol=1e-5)
    # ... which is vemkit's own inference: softmax of the vemkit network on the normalised image
    np.testing.assert_allclose(expected, _vemkit_probabilities(model2d, raw), rtol=0, atol=1e-4)
    # the state-dict weights: the architecture the package names, and the plain U-Net (logits) alike
    prob_net = ProbabilityUNet(n_classes=3, **model2d.network.config()).eval()
    prob_net.load_state_dict(state)
    with torch.no_grad():
        np.testing.assert_allclose(prob_net(x).numpy(), expected, rtol=0, atol=1e-5)
    # other sizes than the traced one (any valid size: 52 + n * 4)
    other = torch.rand(2, 1, 60, 76)
    with torch.no_grad():
        np.testing.assert_allclose(net(other).numpy(), prob_net(other).numpy(), rtol=0, atol=1e-5)


def test_3d_export_with_z_halo(tmp_path):
    torch.manual_seed(1)
    net = randomise_batchnorm(UNet(ndim=3, out_channels=2, base_channels=2, depth=2, voxel_size=(10, 5, 5)), seed=1)
    assert net.divisor == (2, 4, 4)
    model = SegmentationModel(net, ["background", "mitochondria"], voxel_size=(10, 5, 5), halo=(2, 8, 8),
                              normalization={"mode": "fixed", "low": 20.0, "high": 220.0})
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (9, 30, 41), dtype=np.uint8)
    out = export_bioimageio(model, tmp_path / "pkg", authors=["Ada Lovelace"], test_image=image)
    assert (out / "rdf.yaml").is_file()
    summary = validate_bioimageio(out)
    assert summary["status"] in ("passed", "valid-format") and summary["errors"] == [], summary
    assert summary["test"]["status"] == "passed"
    rdf = (out / "rdf.yaml").read_text()
    assert "scale_linear" in rdf and "halo: 2" in rdf and "halo: 8" in rdf
    raw = np.load(out / "test_input.npy")
    assert raw.shape == (1, 1, 8, 28, 40)  # centre crop to valid sizes: z 6 + n * 2, y and x 20 + n * 4
    net_ts = _jit_load((out / "weights_torchscript.pt").read_bytes())
    x = torch.from_numpy(((raw - 20.0) / 200.0).astype(np.float32))
    with torch.no_grad():
        got = net_ts(x).numpy()
        ref = torch.softmax(net(x), dim=1).numpy()
    np.testing.assert_allclose(got, np.load(out / "test_output.npy"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # validation stays offline: links and GitHub names are listed as unchecked, remote files refused
    linked = rdf.replace("cite:\n", "git_repo: https://github.com/example/vemkit-model\ncite:\n", 1)
    linked = linked.replace("- name: Ada Lovelace", "- name: Ada Lovelace\n    github_user: adalovelace", 1)
    (out / "rdf.yaml").write_text(linked)
    summary = validate_bioimageio(out, run_test=False)
    assert summary["errors"] == [], summary
    assert summary["not_checked_offline"] == ["https://github.com/example/vemkit-model", "github_user adalovelace"]
    (out / "rdf.yaml").write_text(rdf.replace("source: cover.png", "source: https://example.org/cover.png", 1))
    with pytest.raises(ValueError, match="remote file"):
        validate_bioimageio(out)


def test_refuses_to_overwrite(export2d, model2d, tmp_path):
    path, _ = export2d
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_bioimageio(model2d, path)
    assert path.read_bytes() == before
    folder = tmp_path / "not_a_package"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_bioimageio(model2d, folder)
    with pytest.raises(FileExistsError, match="no bioimage.io package"):
        export_bioimageio(model2d, folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"


def test_clear_errors(model2d, tmp_path):
    class Plain(torch.nn.Module):
        out_channels = 2

        def forward(self, x):
            return torch.cat([x, -x], 1)

    with pytest.raises(TypeError, match="only vemkit.models.UNet"):
        export_bioimageio(SegmentationModel(Plain(), ["background", "a"]), tmp_path / "x.zip")
    with pytest.raises(TypeError, match="model directory path or a SegmentationModel"):
        export_bioimageio(object(), tmp_path / "x.zip")
    with pytest.raises(ValueError, match="not a model directory"):
        export_bioimageio(tmp_path, tmp_path / "x.zip")
    with pytest.raises(ValueError, match="name must be"):
        export_bioimageio(model2d, tmp_path / "x.zip", name="bad/name")
    with pytest.raises(ValueError, match="too small along x"):
        export_bioimageio(model2d, tmp_path / "x.zip", test_image=np.zeros((64, 40)))
    with pytest.raises(ValueError, match="2D array"):
        export_bioimageio(model2d, tmp_path / "x.zip", test_image=np.zeros((4, 64, 64)))
    assert not (tmp_path / "x.zip").exists()
    with pytest.raises(FileNotFoundError):
        validate_bioimageio(tmp_path / "missing.zip")


def test_export_from_model_directory_overwriting(model2d, tmp_path):
    model2d.save(tmp_path / "model")
    out = tmp_path / "m.zip"
    out.write_bytes(b"old")
    export_bioimageio(tmp_path / "model", out, overwrite=True, name="membranes and mitochondria (test)",
                      test_image=np.random.default_rng(0).random((1, 52, 60)))
    summary = validate_bioimageio(out, run_test=False)
    assert summary["name"] == "membranes and mitochondria (test)" and "test" not in summary
    assert summary["errors"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip", "model"]  # no staging left behind
    with zipfile.ZipFile(out) as z:
        cfg = json.loads(z.read("vemkit_config.json"))
        training = json.loads(z.read("training.json"))
        assert np.load(io.BytesIO(z.read("test_input.npy"))).shape == (1, 1, 52, 60)
    assert cfg["classes"] == CLASSES and training["image"] == "synthetic phantom"
