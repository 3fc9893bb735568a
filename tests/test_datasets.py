"""The data manifest, verified downloads (over loopback HTTP) and the real shared datasets."""

import hashlib
import io
import json
import re
import zipfile

import numpy as np
import pytest

from vemkit import datasets
from vemkit.datasets import fetch, get_entry, list_datasets, load_dataset


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- manifest


def test_manifest_entries_are_complete():
    names = list_datasets()
    assert {"drosophila_vnc_sstem", "isbi2012", "flyem_medulla_fibsem", "cdeep3m_mito", "lucchi_pp", "mitoem_h",
            "cremi"} <= set(names)
    for name in names:
        e = get_entry(name)
        for key in ("title", "modality", "licence", "citation", "checksums_established", "voxel_size_source", "files"):
            assert e.get(key), f"{name} lacks {key}"
        vs = e["voxel_size_nm"]
        assert vs is None or (len(vs) == 3 and min(vs) > 0), name
        for f in e["files"]:
            assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), (name, f["path"])
            assert f["url"].startswith(("https://", "http://")), (name, f["url"])
        for vname, spec in e.get("volumes", {}).items():
            assert datasets.files_for(e, spec), (name, vname)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(KeyError, match="no dataset named 'nope'.*drosophila_vnc_sstem"):
        get_entry("nope")
    with pytest.raises(KeyError, match="has no volume 'stack9'.*stack1, stack2"):
        load_dataset("drosophila_vnc_sstem", "stack9")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path))
    assert datasets.cache_dir("isbi2012") == tmp_path / "isbi2012"


# ---------------------------------------------------------------------------------------- downloads


def _make_remote(folder, base_url, tamper=False):
    """A small dataset on the loopback server: a zip of slice PNGs and a TIFF, plus its manifest."""
    import imageio.v3 as iio
    import tifffile

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 24, 32), dtype=np.uint8)
    labels = (image > 128).astype(np.uint8) * 255
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(3):
            for kind, arr in (("raw", image[i]), ("mask", labels[i])):
                png = io.BytesIO()
                iio.imwrite(png, arr, extension=".png")
                z.writestr(f"toy/{kind}/{i}.png", png.getvalue())
    zip_bytes = buf.getvalue()
    tif = io.BytesIO()
    tifffile.imwrite(tif, image, photometric="minisblack")
    tif_bytes = tif.getvalue()
    (folder / "toy.zip").write_bytes(zip_bytes)
    (folder / "stack.tif").write_bytes(tif_bytes[:-10] + b"0" * 10 if tamper else tif_bytes)
    manifest = {"datasets": {"toy": {
        "title": "toy", "modality": "test", "licence": "none", "citation": "none",
        "checksums_established": "computed by the test", "voxel_size_nm": [40.0, 5.0, 5.0],
        "voxel_size_source": "test",
        "files": [
            {"path": "toy.zip", "url": f"{base_url}/toy.zip", "sha256": _sha(zip_bytes), "size": len(zip_bytes), "unpack": "zip"},
            {"path": "sub/stack.tif", "url": f"{base_url}/stack.tif", "sha256": _sha(tif_bytes), "size": len(tif_bytes)},
        ],
        "default_volume": "a",
        "volumes": {
            "a": {"image": "toy.zip.unzip/toy/raw/*.png",
                  "labels": {"mask": {"path": "toy.zip.unzip/toy/mask/*.png", "rule": ">127", "meaning": "1 = mask"}}},
            "b": {"image": "sub/stack.tif", "labels": {}},
        },
    }}}
    return image, labels, manifest


def test_fetch_downloads_verifies_and_unpacks(http_server, tmp_path, monkeypatch):
    folder, base = http_server
    image, labels, manifest = _make_remote(folder, base)
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    cache = tmp_path / "cache"
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(cache))
    ds = load_dataset("toy", manifest_path=mpath, progress=False)
    assert ds.image.shape == (3, 24, 32) and ds.voxel_size == (40.0, 5.0, 5.0)
    np.testing.assert_array_equal(np.asarray(ds.image), image)
    np.testing.assert_array_equal(np.asarray(ds.labels["mask"]), labels // 255)
    assert (cache / "toy" / "toy.zip").exists() and (cache / "toy" / "toy.zip.unzip" / "toy" / "raw").is_dir()
    b = load_dataset("toy", "b", manifest_path=mpath, progress=False)
    np.testing.assert_array_equal(np.asarray(b.image), image)
    # a second load uses the cache: the server may go away
    for f in folder.iterdir():
        f.unlink()
    assert load_dataset("toy", "b", manifest_path=mpath, progress=False).image.shape == (3, 24, 32)


def test_hash_mismatch_leaves_no_file(http_server, tmp_path, monkeypatch):
    folder, base = http_server
    _, _, manifest = _make_remote(folder, base, tamper=True)
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    cache = tmp_path / "cache"
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(cache))
    with pytest.raises(ValueError, match="sub/stack.tif does not match its SHA-256"):
        fetch("toy", files=["sub/stack.tif"], manifest_path=mpath, progress=False)
    left = [p for p in cache.rglob("*") if p.is_file()]
    assert left == [], f"a failed download left {left}"


def test_unreachable_server_says_what_to_do(tmp_path, monkeypatch, http_server):
    folder, base = http_server
    _, _, manifest = _make_remote(folder, base)
    for f in manifest["datasets"]["toy"]["files"]:
        f["url"] = f["url"].replace(base, "http://127.0.0.1:9")  # discard port: nothing listens
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(ConnectionError, match="could not get .*VEMKIT_DATA_DIR"):
        fetch("toy", manifest_path=mpath, progress=False)


def test_corrupted_cache_file_is_replaced_by_a_verified_download(http_server, tmp_path, monkeypatch):
    folder, base = http_server
    image, _, manifest = _make_remote(folder, base)
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    cache = tmp_path / "cache"
    monkeypatch.setenv("VEMKIT_DATA_DIR", str(cache))
    fetch("toy", files=["sub/stack.tif"], manifest_path=mpath, progress=False)
    target = cache / "toy" / "sub" / "stack.tif"
    target.write_bytes(b"corrupted")
    fetch("toy", files=["sub/stack.tif"], manifest_path=mpath, progress=False)
    assert _sha(target.read_bytes()) == manifest["datasets"]["toy"]["files"][1]["sha256"]


# ---------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_shared_datasets_verify_offline(shared_data):
    for name in ("drosophila_vnc_sstem", "isbi2012", "flyem_medulla_fibsem", "cdeep3m_mito"):
        folder = fetch(name, progress=False)
        entry = get_entry(name)
        for f in entry["files"][:5] + entry["files"][-5:]:  # spot-check against our own hashing
            assert _sha((folder / f["path"]).read_bytes()) == f["sha256"]


@pytest.mark.realdata
def test_vnc_loads_with_documented_shapes_and_labels(shared_data):
    ds = load_dataset("drosophila_vnc_sstem", progress=False)
    assert ds.image.shape == (20, 1024, 1024) and ds.image.dtype == np.uint8
    assert ds.voxel_size == (50.0, 4.6, 4.6)
    assert sorted(ds.labels) == ["classes", "membranes", "mitochondria", "synapses"]
    mito = np.asarray(ds.labels["mitochondria"])
    classes = np.asarray(ds.labels["classes"])
    assert set(np.unique(mito)) == {0, 1}
    assert 0.04 < mito.mean() < 0.07  # about 5 % of stack1 is mitochondria
    # the binary mitochondria PNGs and the merged map (191 = mitochondria) agree
    inter = np.logical_and(mito == 1, classes == 3).sum()
    union = np.logical_or(mito == 1, classes == 3).sum()
    assert inter / union > 0.99
    assert 0.15 < np.asarray(ds.labels["membranes"]).mean() < 0.25
    assert "CC BY-NC-SA" in ds.licence and "856713" in ds.citation
    stack2 = load_dataset("drosophila_vnc_sstem", "stack2", progress=False)
    assert stack2.image.shape == (20, 1024, 1024) and stack2.labels == {}


@pytest.mark.realdata
def test_isbi_loads(shared_data):
    ds = load_dataset("isbi2012", progress=False)
    assert ds.image.shape == (30, 512, 512) and ds.voxel_size == (50.0, 4.0, 4.0)
    membranes = np.asarray(ds.labels["membranes"])
    assert 0.18 < membranes.mean() < 0.26
    # membranes are dark in the raw data
    raw = np.asarray(ds.image).astype(float)
    assert raw[membranes == 1].mean() < raw[membranes == 0].mean() - 40


@pytest.mark.realdata
def test_flyem_loads_dense_bodies(shared_data):
    ds = load_dataset("flyem_medulla_fibsem", progress=False)
    assert ds.image.shape == (250, 250, 250) and ds.voxel_size == (10.0, 10.0, 10.0)
    bodies = np.asarray(ds.labels["neurons"])
    ids = np.unique(bodies)
    assert 500 <= len(ids[ids > 0]) <= 550  # about 525 bodies
    # the orientation matches the PNG order: membranes (darker) lie on body boundaries
    raw = np.asarray(ds.image).astype(float)
    boundary = np.zeros(bodies.shape, bool)
    boundary[:, 1:, :] |= bodies[:, 1:, :] != bodies[:, :-1, :]
    boundary[:, :, 1:] |= bodies[:, :, 1:] != bodies[:, :, :-1]
    assert raw[boundary].mean() < raw[~boundary].mean() - 10


def test_cdeep3m_entry_matches_its_sources_json():
    """The manifest's cdeep3m_mito files are its sources.json's (tools/make_manifest.py), two volumes."""
    e = get_entry("cdeep3m_mito")
    assert e["modality"] == "SBF-SEM" and e["voxel_size_nm"] == [40.0, 5.9, 5.9]
    assert "inferred" in e["voxel_size_source"] and "Haberl" in e["citation"] and "Nature Methods" in e["citation"]
    assert set(e["volumes"]) == {"training", "validation"} and e["default_volume"] == "training"
    paths = [f["path"] for f in e["files"]]
    assert len(paths) == 62 and "LICENSE" in paths
    assert len(datasets.files_for(e, e["volumes"]["training"])) == 40
    assert len(datasets.files_for(e, e["volumes"]["validation"])) == 20


@pytest.mark.realdata
def test_cdeep3m_loads_both_volumes_in_z_order(shared_data):
    src = json.loads((shared_data / "cdeep3m_mito" / "sources.json").read_text())
    assert {f["repo_path"]: f["sha256"] for f in src["files"]} == {f["path"]: f["sha256"] for f in get_entry("cdeep3m_mito")["files"]}
    train = load_dataset("cdeep3m_mito", progress=False)
    assert train.volume == "training" and train.image.shape == (20, 1024, 1024) and train.image.dtype == np.uint8
    assert train.voxel_size == (40.0, 5.9, 5.9) and sorted(train.labels) == ["mitochondria"]
    mito = np.asarray(train.labels["mitochondria"])
    assert set(np.unique(mito)) == {0, 1} and 0.08 < mito.mean() < 0.095  # README: 8.8 %
    raw = np.asarray(train.image).astype(float)
    assert raw[mito == 1].mean() < raw[mito == 0].mean() - 30  # mitochondria are dark in this SBF-SEM stack
    val = load_dataset("cdeep3m_mito", "validation", progress=False)
    assert val.image.shape == (10, 1024, 1024) and 0.07 < np.asarray(val.labels["mitochondria"]).mean() < 0.08
    # z order: images.010 .. images.029 (the glob sorts the zero-padded numbers)
    one = np.asarray(train.image.data[5])
    from PIL import Image

    png = np.asarray(Image.open(shared_data / "cdeep3m_mito/mito_testsample/training/images/images.015.png"))
    assert np.array_equal(one, png if png.ndim == 2 else png[..., 0])
    assert "Haberl" in train.citation


@pytest.mark.realdata
def test_cdeep3m_is_a_notebook_example(shared_data):
    from vemkit.examples import load_example

    ex = load_example("cdeep3m_mito", sections=2, crop_yx=128)
    assert ex.image.shape == (2, 128, 128) and ex.image.voxel_size == (40.0, 5.9, 5.9)
    assert ex.truth.dtype == np.uint8 and set(np.unique(ex.truth)) <= {0, 1} and "Haberl" in ex.citation
