"""Round trips for every format vemkit reads: written with the format's own library, read back equal,
voxel size preserved; and the errors that bad input gets."""

import json
import warnings

import numpy as np
import pytest

from vemkit.io import MissingVoxelSizeWarning, open_volume, write_labels, write_ome_zarr, write_tiff

VOXEL = (50.0, 4.0, 4.0)


@pytest.fixture
def vol():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(7, 40, 56), dtype=np.uint8)


def _quiet_open(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingVoxelSizeWarning)
        return open_volume(*args, **kwargs)


# ---------------------------------------------------------------------------------------- TIFF


def test_imagej_tiff_roundtrip(tmp_path, vol):
    import tifffile

    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, vol, imagej=True, resolution=(1 / 0.004, 1 / 0.004),
                     metadata={"spacing": 0.05, "unit": "micron", "axes": "ZYX"})
    v = open_volume(p)
    assert v.shape == vol.shape and v.dtype == np.uint8
    assert v.voxel_size == pytest.approx(VOXEL)
    assert v.metadata["format"] == "imagej-tiff"
    np.testing.assert_array_equal(np.asarray(v), vol)


def test_ome_tiff_roundtrip(tmp_path, vol):
    import tifffile

    p = tmp_path / "v.ome.tif"
    data = vol.astype(np.uint16) * 200
    tifffile.imwrite(p, data, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.008, "PhysicalSizeY": 0.008, "PhysicalSizeZ": 0.03,
        "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm"})
    v = open_volume(p)
    assert v.metadata["format"] == "ome-tiff"
    assert v.voxel_size == pytest.approx((30.0, 8.0, 8.0))
    np.testing.assert_array_equal(np.asarray(v), data)


def test_plain_tiff_has_unknown_voxel_size_and_warns(tmp_path, vol):
    import tifffile

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, vol)
    with pytest.warns(MissingVoxelSizeWarning, match="never assumes"):
        v = open_volume(p)
    assert v.voxel_size is None
    with pytest.raises(ValueError, match="voxel size .* unknown"):
        v.require_voxel_size("measuring")
    # a user-given voxel size wins
    assert open_volume(p, voxel_size=[40, 5, 5]).voxel_size == (40.0, 5.0, 5.0)


def test_user_voxel_size_overrides_file(tmp_path, vol):
    p = write_tiff(vol, tmp_path / "w.tif", voxel_size=VOXEL, progress=False)
    assert open_volume(p).voxel_size == pytest.approx(VOXEL)
    assert open_volume(p, voxel_size=(45, 4.6, 4.6)).voxel_size == (45.0, 4.6, 4.6)


def test_write_tiff_other_dtype_keeps_voxel_size(tmp_path, vol):
    p = write_tiff(vol.astype(np.int32) - 100, tmp_path / "i32.tif", voxel_size=VOXEL, progress=False)
    v = open_volume(p)
    assert v.dtype == np.int32 and v.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_array_equal(np.asarray(v), vol.astype(np.int32) - 100)


def test_2d_image_becomes_one_section(tmp_path, vol):
    import imageio.v3 as iio

    p = tmp_path / "one.png"
    iio.imwrite(p, vol[0])
    v = _quiet_open(p)
    assert v.shape == (1, 40, 56)
    np.testing.assert_array_equal(np.asarray(v)[0], vol[0])


# ---------------------------------------------------------------------------------------- slices


def test_slice_folder_natural_order(tmp_path, vol):
    import imageio.v3 as iio

    folder = tmp_path / "sections"
    folder.mkdir()
    for i, sec in enumerate(vol):  # unpadded names: lexical order would put 10 before 2
        iio.imwrite(folder / f"s{i + 1}.png", sec)
    (folder / "notes.txt").write_text("not an image")
    v = _quiet_open(folder, voxel_size=VOXEL)
    assert v.shape == vol.shape
    np.testing.assert_array_equal(np.asarray(v), vol)
    # a glob selects the same
    g = _quiet_open(str(folder / "s*.png"))
    np.testing.assert_array_equal(np.asarray(g), vol)


def test_slice_stack_mixed_1bit_and_8bit(tmp_path):
    import imageio.v3 as iio

    folder = tmp_path / "masks"
    folder.mkdir()
    a = np.zeros((16, 16), np.uint8)
    a[4:8] = 255
    iio.imwrite(folder / "0.png", a > 0)  # 1-bit PNG, read as bool
    iio.imwrite(folder / "1.png", a)  # 8-bit PNG
    v = _quiet_open(folder)
    assert v.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(v), np.stack([a, a]))


def test_slice_stack_shape_mismatch(tmp_path):
    import imageio.v3 as iio

    folder = tmp_path / "bad"
    folder.mkdir()
    iio.imwrite(folder / "0.png", np.zeros((16, 16), np.uint8))
    iio.imwrite(folder / "1.png", np.zeros((16, 17), np.uint8))
    v = _quiet_open(folder)
    with pytest.raises(ValueError, match="1.png.*all slices must match"):
        np.asarray(v)


# ---------------------------------------------------------------------------------------- zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_roundtrip(tmp_path, vol, zarr_format):
    import zarr

    p = tmp_path / f"v{zarr_format}.zarr"
    arr = zarr.create_array(str(p), shape=vol.shape, chunks=(2, 16, 16), dtype=vol.dtype, zarr_format=zarr_format)
    arr[:] = vol
    arr.attrs["resolution"] = list(VOXEL)
    v = open_volume(p)
    assert v.voxel_size == VOXEL
    assert v.data.chunksize == (2, 16, 16)
    np.testing.assert_array_equal(np.asarray(v), vol)


def test_zarr_group_needs_a_key(tmp_path, vol):
    import zarr

    p = tmp_path / "g.zarr"
    g = zarr.open_group(str(p), mode="w")
    g.create_array("raw", shape=vol.shape, dtype=vol.dtype)[:] = vol
    with pytest.raises(ValueError, match="name an array inside.*raw"):
        open_volume(p)
    np.testing.assert_array_equal(np.asarray(_quiet_open(f"{p}:/raw")), vol)
    np.testing.assert_array_equal(np.asarray(_quiet_open(p, key="raw")), vol)
    with pytest.raises(KeyError, match="no array or group 'nope'.*raw"):
        open_volume(p, key="nope")


@pytest.mark.parametrize("fmt", ["0.4", "0.5"])
def test_ome_zarr_written_by_ome_zarr_py(tmp_path, vol, fmt):
    """OME-Zarr written by the ome-zarr-py package reads back with voxel size and levels."""
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt_obj = FormatV04() if fmt == "0.4" else FormatV05()
    p = tmp_path / "ext.ome.zarr"
    root = zarr.open_group(str(p), mode="w", zarr_format=2 if fmt == "0.4" else 3)
    write_image(vol, root, axes="zyx", fmt=fmt_obj, scale={"z": 0.05, "y": 0.004, "x": 0.004},
                axes_units={a: "micrometer" for a in "zyx"}, scale_factors=[{"z": 1, "y": 2, "x": 2}])
    v = open_volume(p)
    assert v.metadata["format"].startswith(f"ome-zarr {fmt}")
    assert v.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_array_equal(np.asarray(v), vol)
    v1 = open_volume(p, level=1)
    assert v1.shape == (7, 20, 28)
    assert v1.voxel_size == pytest.approx((50.0, 8.0, 8.0))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_write_ome_zarr_valid_for_ome_zarr_py(tmp_path, vol, version):
    """vemkit's OME-Zarr reads with ome-zarr-py (napari's reader): pyramid, scales, labels."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    big = np.tile(vol, (1, 12, 12))  # (7, 480, 672)
    labels = (big > 200).astype(np.uint16)
    p = tmp_path / "out.ome.zarr"
    write_ome_zarr(big, p, voxel_size=VOXEL, labels={"mito": labels}, version=version, progress=False)
    fmt = FormatV04() if version == "0.4" else FormatV05()
    nodes = list(Reader(parse_url(str(p), fmt=fmt))())
    image = next(n for n in nodes if n.load(Multiscales) and not n.load(Label))
    shapes = [tuple(d.shape) for d in image.data]
    # halved in y, x until at most 256 px; z never: 50 nm stays coarser than 8 and 16 nm
    assert shapes == [(7, 480, 672), (7, 240, 336), (7, 120, 168)]
    scales = [t[0]["scale"] for t in image.metadata["coordinateTransformations"]]
    assert scales == [[50.0, 4.0, 4.0], [50.0, 8.0, 8.0], [50.0, 16.0, 16.0]]
    assert [a["name"] for a in image.metadata["axes"]] == ["z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(image.data[0]), big)
    label_nodes = [n for n in nodes if n.load(Label)]
    assert len(label_nodes) == 1
    np.testing.assert_array_equal(np.asarray(label_nodes[0].data[0]), labels)
    # nearest-neighbour label pyramid keeps label values (no blending)
    assert set(np.unique(np.asarray(label_nodes[0].data[1]))) <= {0, 1}
    # and vemkit reads its own output back
    lab = open_volume(f"{p}:/labels/mito")
    assert lab.voxel_size == VOXEL and lab.dtype == np.uint16


def test_pyramid_downsamples_z_once_isotropic_enough(tmp_path):
    from vemkit._omezarr import pyramid_factors

    assert pyramid_factors((20, 2048, 2048), (50.0, 4.0, 4.0), levels=5) == [
        (1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert pyramid_factors((64, 512, 512), (8.0, 8.0, 8.0)) == [(2, 2, 2)]
    mean_img = np.arange(4 * 4 * 4, dtype=np.uint8).reshape(4, 4, 4)
    p = write_ome_zarr(mean_img, tmp_path / "iso.ome.zarr", voxel_size=(8, 8, 8), levels=2, progress=False)
    lvl1 = open_volume(p, level=1)
    assert lvl1.shape == (2, 2, 2) and lvl1.voxel_size == (16.0, 16.0, 16.0)
    expected = mean_img.reshape(2, 2, 2, 2, 2, 2).mean(axis=(1, 3, 5))
    np.testing.assert_array_equal(np.asarray(lvl1), np.round(expected).astype(np.uint8))


def test_write_ome_zarr_streams_from_dask_in_bounded_slabs(tmp_path):
    """A lazy source is read slab by slab: each compute sees at most memory_limit bytes."""
    import dask.array as da

    seen = []

    def record(block, block_info=None):
        seen.append(block_info[None]["array-location"])
        return block

    src = da.ones((8, 256, 256), dtype=np.uint8, chunks=(4, 64, 256)).map_blocks(record, dtype=np.uint8)
    p = write_ome_zarr(src, tmp_path / "s.ome.zarr", voxel_size=VOXEL, chunks=(4, 64, 64), levels=1,
                       memory_limit=4 * 64 * 256, progress=False)
    assert np.asarray(open_volume(p)).sum() == 8 * 256 * 256
    # 2 z-slabs x 4 y-bands, each one source block: nothing was read twice, nothing whole
    assert len(seen) == 8 and len({tuple(map(tuple, s)) for s in seen}) == 8


def test_existing_output_is_never_overwritten(tmp_path, vol):
    p = write_ome_zarr(vol, tmp_path / "keep.ome.zarr", voxel_size=VOXEL, progress=False)
    with pytest.raises(FileExistsError, match="never replaces"):
        write_ome_zarr(vol, p, voxel_size=VOXEL, progress=False)
    assert open_volume(p).shape == vol.shape
    write_ome_zarr(vol[:3], p, voxel_size=VOXEL, overwrite=True, progress=False)
    assert open_volume(p).shape == (3, 40, 56)
    write_labels(p, "cells", np.ones((3, 40, 56), np.uint8), progress=False)
    with pytest.raises(FileExistsError, match="labels/cells already exists"):
        write_labels(p, "cells", np.zeros((3, 40, 56), np.uint8), progress=False)


def test_write_ome_zarr_errors(tmp_path, vol):
    with pytest.raises(ValueError, match="voxel size .* unknown"):
        write_ome_zarr(vol, tmp_path / "a.ome.zarr", progress=False)
    with pytest.raises(ValueError, match=r"labels\['m'\] has shape"):
        write_ome_zarr(vol, tmp_path / "b.ome.zarr", voxel_size=VOXEL, labels={"m": vol[:2]}, progress=False)
    with pytest.raises(ValueError, match="label images must be integers"):
        write_ome_zarr(vol, tmp_path / "c.ome.zarr", voxel_size=VOXEL, labels={"m": vol * 0.5}, progress=False)
    with pytest.raises(ValueError, match="version must be"):
        write_ome_zarr(vol, tmp_path / "d.ome.zarr", voxel_size=VOXEL, version="0.3", progress=False)
    assert not (tmp_path / "b.ome.zarr").exists()


# ---------------------------------------------------------------------------------------- N5, HDF5, MRC


def test_n5_roundtrip_tensorstore(tmp_path, vol):
    import tensorstore as ts

    p = tmp_path / "v.n5"
    store = ts.open({
        "driver": "n5", "kvstore": {"driver": "file", "path": str(p / "raw")},
        "metadata": {"dimensions": list(vol.shape), "blockSize": [3, 16, 16], "dataType": "uint8",
                     "compression": {"type": "gzip"}},
        "create": True,
    }).result()
    store.write(vol).result()
    attrs_file = p / "raw" / "attributes.json"
    attrs = json.loads(attrs_file.read_text())
    attrs["pixelResolution"] = {"dimensions": [4.0, 4.0, 50.0], "unit": "nm"}  # N5 lists x first
    attrs_file.write_text(json.dumps(attrs))
    v = open_volume(f"{p}:/raw")
    assert v.shape == vol.shape and v.voxel_size == VOXEL
    np.testing.assert_array_equal(np.asarray(v), vol)
    with pytest.raises(ValueError, match="N5 group.*raw"):
        open_volume(p)


def test_hdf5_roundtrip(tmp_path, vol):
    import h5py

    p = tmp_path / "v.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("volumes/raw", data=vol, chunks=(1, 40, 56), compression="gzip")
        d.attrs["element_size_um"] = [0.05, 0.004, 0.004]
        f.create_dataset("volumes/labels", data=vol > 100)
    v = open_volume(f"{p}:/volumes/raw")
    assert v.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_array_equal(np.asarray(v), vol)
    with pytest.raises(ValueError, match="holds 2 image datasets.*volumes/raw"):
        open_volume(p)
    with pytest.raises(KeyError, match="no dataset 'raw'"):
        open_volume(f"{p}:/raw")


def test_mrc_roundtrip(tmp_path, vol):
    import mrcfile

    p = tmp_path / "tomo.mrc"
    with mrcfile.new(p) as m:
        m.set_data(vol.astype(np.int16))
        m.voxel_size = (40.0, 40.0, 500.0)  # angstrom, (x, y, z)
    v = open_volume(p)
    assert v.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_array_equal(np.asarray(v), vol.astype(np.int16))


# ---------------------------------------------------------------------------------------- bad input


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file or folder"):
        open_volume(tmp_path / "nope.tif")
    odd = tmp_path / "data.xyz"
    odd.write_bytes(b"hello world, not an image")
    with pytest.raises(ValueError, match="cannot tell the format.*expected one of"):
        open_volume(odd)
    gz = tmp_path / "v.h5.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00rest")
    with pytest.raises(ValueError, match="gzip-compressed"):
        open_volume(gz)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no zarr/N5 metadata and no 2D slices"):
        open_volume(empty)


def test_corrupt_tiff(tmp_path):
    p = tmp_path / "broken.tif"
    p.write_bytes(b"II*\x00" + b"\xff" * 50)
    with pytest.raises(ValueError, match="could not read .*broken.tif.* as tiff"):
        open_volume(p)


def test_rgb_and_4d_are_explained(tmp_path):
    import imageio.v3 as iio
    import tifffile

    rgb = tmp_path / "rgb.png"
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 1] = 7
    iio.imwrite(rgb, img)
    with pytest.raises(ValueError, match="RGB colour image.*channel=N"):
        open_volume(rgb)
    v = _quiet_open(rgb, channel=1)
    assert v.shape == (1, 20, 30) and int(np.asarray(v).max()) == 7
    hyper = tmp_path / "czyx.tif"
    tifffile.imwrite(hyper, np.zeros((3, 2, 8, 8), np.uint8), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(ValueError, match="2-channel"):
        open_volume(hyper)
    assert _quiet_open(hyper, channel=1).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="channel=5 is out of range"):
        open_volume(hyper, channel=5)


def test_unsupported_dtype(tmp_path):
    import zarr

    p = tmp_path / "c.zarr"
    zarr.create_array(str(p), shape=(2, 4, 4), dtype=np.complex64)
    with pytest.raises(ValueError, match="dtype complex64; vemkit reads"):
        _quiet_open(p)


@pytest.mark.parametrize("bad", [(1, 2), (1, 2, 3, 4), (0, 4, 4), (-1, 4, 4), (np.nan, 4, 4), "50,4,4"])
def test_bad_voxel_size(tmp_path, vol, bad):
    p = write_tiff(vol, tmp_path / "v.tif", voxel_size=VOXEL, progress=False)
    with pytest.raises(ValueError, match="voxel_size"):
        open_volume(p, voxel_size=bad)


def test_level_out_of_range(tmp_path, vol):
    p = write_ome_zarr(vol, tmp_path / "l.ome.zarr", voxel_size=VOXEL, levels=1, progress=False)
    with pytest.raises(IndexError, match="1 resolution level.*level=3 does not exist"):
        open_volume(p, level=3)
    with pytest.raises(ValueError, match="level must be a non-negative integer"):
        open_volume(p, level=-1)


def test_channel_axis_roundtrip(tmp_path):
    """(c, z, y, x) data such as class probabilities: one OME-Zarr with a channel axis."""
    import dask.array as da
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    probs = np.random.default_rng(2).integers(0, 255, (3, 6, 300, 280), dtype=np.uint8)
    p = write_ome_zarr(da.from_array(probs, chunks=(3, 3, 100, 100)), tmp_path / "p.ome.zarr",
                       voxel_size=VOXEL, progress=False)
    for c in range(3):
        np.testing.assert_array_equal(np.asarray(open_volume(p, channel=c)), probs[c])
    with pytest.raises(ValueError, match="3-channel image.*channel=N"):
        open_volume(p)
    node = next(iter(Reader(parse_url(str(p)))()))
    assert [tuple(d.shape) for d in node.data] == [(3, 6, 300, 280), (3, 6, 150, 140)]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "z", "y", "x"]
    assert open_volume(p, channel=0, level=1).voxel_size == (50.0, 8.0, 8.0)


def test_label_images_are_downsampled_without_blending(tmp_path):
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[:, ::2, ::2] = 7
    labels[:, 1::2, 1::2] = 3
    p = write_ome_zarr(labels, tmp_path / "l.ome.zarr", voxel_size=VOXEL, levels=2, kind="labels", progress=False)
    assert set(np.unique(np.asarray(open_volume(p, level=1))).tolist()) <= {0, 3, 7}
    blended = write_ome_zarr(labels, tmp_path / "m.ome.zarr", voxel_size=VOXEL, levels=2, progress=False)
    assert not set(np.unique(np.asarray(open_volume(blended, level=1))).tolist()) <= {0, 3, 7}
