"""Tests of vemkit.viz: physical aspect ratios, lazy slicing, overlays, the viewer and its static fallback."""

import base64
import subprocess
import sys
import threading

import matplotlib

matplotlib.use("Agg")  # headless; the library itself never picks a backend

import dask.array as da
import numpy as np
import pytest

from vemkit import viz
from vemkit._volume import Volume
from vemkit.viz._common import _format_length, _label_colours, _nice_length

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _volume(shape=(8, 24, 32), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _axes(fig):
    return {ax.get_label(): ax for ax in fig.axes}


def _size_inches(fig, ax):
    """Drawn width and height of an axes in inches (after aspect adjustment)."""
    fig.canvas.draw()
    pos = ax.get_position()
    w, h = fig.get_size_inches()
    return pos.width * w, pos.height * h


class BlockCounter:
    """A lazy (z, y, x) dask volume that records which of its blocks get computed."""

    def __init__(self, shape=(16, 64, 64), chunks=(4, 16, 16), dtype=np.uint8):
        self.shape, self.chunks = shape, chunks
        self.seen = []
        self._lock = threading.Lock()
        base = da.zeros(shape, chunks=chunks, dtype=dtype)
        self.array = base.map_blocks(self._block, dtype=dtype)

    def _block(self, block, block_info=None):
        with self._lock:
            self.seen.append(tuple(block_info[None]["chunk-location"]))
        z0 = block_info[None]["array-location"][0][0]
        return (block + z0 + 1).astype(block.dtype)

    @property
    def nblocks(self):
        return int(np.prod([-(-s // c) for s, c in zip(self.shape, self.chunks)]))

    def blocks_of_planes(self, z=None, y=None, x=None):
        """Block indices crossed by the given planes."""
        grid = [range(-(-s // c)) for s, c in zip(self.shape, self.chunks)]
        out = set()
        for axis, pos in enumerate((z, y, x)):
            if pos is None:
                continue
            ranges = list(grid)
            ranges[axis] = [pos // self.chunks[axis]]
            out |= {(a, b, c) for a in ranges[0] for b in ranges[1] for c in ranges[2]}
        return out


# --------------------------------------------------------------------------------------------------
# orthoslices


def test_orthoslices_three_panels_with_physical_aspect():
    vol = _volume((8, 24, 32))
    aniso = _axes(viz.orthoslices(vol, voxel_size=(50, 4, 4)))
    iso = _axes(viz.orthoslices(vol, voxel_size=(4, 4, 4)))
    assert sorted(aniso) == sorted(iso) == ["xy", "xz", "yz"]
    # one pixel's height / width
    assert aniso["xy"].get_aspect() == pytest.approx(1.0)
    assert aniso["xz"].get_aspect() == pytest.approx(12.5)
    assert aniso["yz"].get_aspect() == pytest.approx(4 / 50)
    assert all(ax.get_aspect() == pytest.approx(1.0) for ax in iso.values())


def test_orthoslices_panel_sizes_follow_physical_extent():
    vol = _volume((8, 24, 32))
    fig = viz.orthoslices(vol, voxel_size=(50, 4, 4))
    ax = _axes(fig)
    w_xy, h_xy = _size_inches(fig, ax["xy"])
    w_xz, h_xz = _size_inches(fig, ax["xz"])
    w_yz, h_yz = _size_inches(fig, ax["yz"])
    # physical extents: x 128 nm, y 96 nm, z 400 nm
    assert h_xy / w_xy == pytest.approx(96 / 128, rel=0.02)
    assert h_xz / w_xz == pytest.approx(400 / 128, rel=0.02)
    assert w_yz / h_yz == pytest.approx(400 / 96, rel=0.02)
    assert w_xz == pytest.approx(w_xy, rel=0.02)  # xz sits under xy, sharing x
    assert h_yz == pytest.approx(h_xy, rel=0.02)  # yz sits beside xy, sharing y


def test_orthoslices_anisotropic_pixels_in_plane():
    fig = viz.orthoslices(_volume((4, 10, 10)), voxel_size=(30, 8, 4))
    assert _axes(fig)["xy"].get_aspect() == pytest.approx(2.0)


def test_orthoslices_crosshairs_mark_other_planes():
    ax = _axes(viz.orthoslices(_volume((8, 24, 32)), z=2, y=5, x=7))
    xy_lines = sorted((tuple(line.get_xdata()), tuple(line.get_ydata())) for line in ax["xy"].lines)
    assert ((0, 1), (5, 5)) in xy_lines  # horizontal line at y
    assert ((7, 7), (0, 1)) in xy_lines  # vertical line at x
    xz_y = {tuple(line.get_ydata()) for line in ax["xz"].lines}
    assert (2, 2) in xz_y  # the xy section's depth


def test_orthoslices_shows_the_right_slices():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    ax = _axes(viz.orthoslices(vol, z=1, y=2, x=3))
    np.testing.assert_array_equal(ax["xy"].images[0].get_array(), vol[1])
    np.testing.assert_array_equal(ax["xz"].images[0].get_array(), vol[:, 2, :])
    np.testing.assert_array_equal(ax["yz"].images[0].get_array(), vol[:, :, 3].T)


def test_unknown_voxel_size_is_said_and_never_stored():
    vol = Volume.from_array(_volume(), voxel_size=None)
    fig = viz.orthoslices(vol)
    assert "voxel size unknown" in fig._suptitle.get_text()
    assert vol.voxel_size is None
    assert not [a for a in _axes(fig)["xy"].artists if a.get_gid() == "scale_bar"]
    assert all(ax.get_aspect() == pytest.approx(1.0) for ax in fig.axes)


def test_scale_bar_and_volume_voxel_size():
    vol = Volume.from_array(_volume((8, 24, 200)), voxel_size=(50, 4, 4), source="cells.zarr")
    fig = viz.orthoslices(vol)
    title = fig._suptitle.get_text()
    assert "cells.zarr" in title and "50 × 4 × 4 nm" in title
    bars = [a for a in _axes(fig)["xy"].artists if a.get_gid() == "scale_bar"]
    assert len(bars) == 1
    # 200 px * 4 nm = 800 nm wide, a fifth is 160 nm -> the nice length is 100 nm
    assert bars[0].txt_label.get_text() == "100 nm"
    # argument overrides the volume's voxel size (display only)
    fig = viz.orthoslices(vol, voxel_size=(4, 4, 4))
    assert _axes(fig)["xz"].get_aspect() == pytest.approx(1.0)
    assert vol.voxel_size == (50.0, 4.0, 4.0)


def test_scale_bar_in_micrometres():
    assert _format_length(2000) == "2 µm"
    assert _nice_length(160) == 100
    assert _nice_length(4500) == 2000


def test_only_the_three_slices_are_computed():
    counter = BlockCounter()
    z, y, x = 5, 20, 40
    fig = viz.orthoslices(counter.array, z=z, y=y, x=x, voxel_size=(50, 4, 4))
    expected = counter.blocks_of_planes(z, y, x)
    assert set(counter.seen) <= expected
    assert set(counter.seen) == expected
    assert len(counter.seen) == len(expected)  # shared blocks are read once
    assert len(expected) < counter.nblocks
    assert _axes(fig)["xy"].images[0].get_array()[0, 0] == 5 // 4 * 4 + 1


def test_lazy_overlay_only_slices_computed():
    image, labels = BlockCounter(), BlockCounter()
    viz.orthoslices(image.array, overlay=labels.array, z=0, y=0, x=0)
    assert set(labels.seen) == labels.blocks_of_planes(0, 0, 0)


def test_overlay_shape_mismatch_names_overlay_and_shapes():
    with pytest.raises(ValueError, match=r"overlay.*\(8, 24, 30\).*\(8, 24, 32\)"):
        viz.orthoslices(_volume((8, 24, 32)), overlay=np.zeros((8, 24, 30), np.uint8))
    with pytest.raises(ValueError, match="overlay"):
        viz.show(_volume((8, 24, 32)), overlay=da.zeros((8, 24, 31), dtype=np.uint8))
    with pytest.raises(ValueError, match="overlay"):
        viz.section_grid(_volume((8, 24, 32)), overlay=np.zeros((7, 24, 32), np.uint8))


def test_overlay_voxel_size_mismatch():
    img = Volume.from_array(_volume(), voxel_size=(50, 4, 4))
    ov = Volume.from_array(np.zeros((8, 24, 32), np.uint8), voxel_size=(40, 4, 4))
    with pytest.raises(ValueError, match="overlay has voxel size"):
        viz.orthoslices(img, overlay=ov)


def test_label_colours_consistent_across_panels_and_zero_transparent():
    labels = np.zeros((6, 20, 20), np.uint32)
    labels[2:5, 5:10, 5:10] = 3
    labels[1:3, 12:16, 12:18] = 1000
    ax = _axes(viz.orthoslices(_volume((6, 20, 20)), overlay=labels, z=3, y=7, x=7, overlay_alpha=0.5))
    xy = ax["xy"].images[1].get_array()
    xz = ax["xz"].images[1].get_array()
    yz = ax["yz"].images[1].get_array()
    assert xy.shape == (20, 20, 4) and xy.dtype == np.uint8
    assert xy[0, 0, 3] == 0  # background transparent
    assert xy[7, 7, 3] == 128
    np.testing.assert_array_equal(xy[7, 7], xz[3, 7])
    np.testing.assert_array_equal(xy[7, 7], yz[7, 3])  # yz is drawn (y, z)
    colours = _label_colours(np.arange(1, 60))
    assert len({tuple(np.round(c, 3)) for c in colours}) == 59
    np.testing.assert_array_equal(_label_colours([1000]), _label_colours([1000]))


def test_fractional_labels_are_refused():
    with pytest.raises(ValueError, match="overlay_kind='probability'"):
        viz.orthoslices(_volume(), overlay=np.full((8, 24, 32), 0.5))


def test_probability_overlay_float_and_uint8():
    prob = np.linspace(0, 1, 8 * 24 * 32).reshape(8, 24, 32)
    a = _axes(viz.orthoslices(_volume(), overlay=prob, overlay_kind="probability", overlay_alpha=1.0))
    b = _axes(
        viz.orthoslices(
            _volume(), overlay=np.round(prob * 255).astype(np.uint8), overlay_kind="probability", overlay_alpha=1.0
        )
    )
    alpha_a = a["xy"].images[1].get_array()[..., 3].astype(int)
    alpha_b = b["xy"].images[1].get_array()[..., 3].astype(int)
    assert np.abs(alpha_a - alpha_b).max() <= 1
    assert alpha_a.min() < alpha_a.max()  # opacity follows probability
    with pytest.raises(ValueError, match=r"overlay.*\[0, 1\]"):
        viz.orthoslices(_volume(), overlay=prob * 3, overlay_kind="probability")
    with pytest.raises(ValueError, match="overlay_kind"):
        viz.orthoslices(_volume(), overlay=prob, overlay_kind="heatmap")


def test_contrast_options():
    vol = np.arange(10 * 10 * 10, dtype=np.float32).reshape(10, 10, 10)
    clim = lambda c: _axes(viz.orthoslices(vol, contrast=c))["xy"].images[0].get_clim()  # noqa: E731
    shown = np.concatenate([vol[5].ravel(), vol[:, 5].ravel(), vol[:, :, 5].ravel()])
    assert clim(None) == pytest.approx((shown.min(), shown.max()))
    assert clim("auto") == pytest.approx(tuple(np.percentile(shown, [1, 99])))
    assert clim((10, 20)) == (10, 20)
    with pytest.raises(ValueError, match="contrast"):
        viz.orthoslices(vol, contrast="bright")
    with pytest.raises(ValueError, match="contrast"):
        viz.orthoslices(vol, contrast=(5, 1))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"z=9 .* 8 planes"):
        viz.orthoslices(_volume((8, 24, 32)), z=9)
    with pytest.raises(ValueError, match="3D"):
        viz.orthoslices(np.zeros((2, 3, 4, 5)))
    fig = viz.orthoslices(np.zeros((12, 14)))  # a 2D section
    assert len(fig.axes) == 3
    assert _axes(viz.orthoslices(_volume((8, 24, 32)), z=-1))["xz"].lines[0].get_ydata()[0] == 7


def test_figures_are_not_registered_with_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    viz.orthoslices(_volume())
    viz.section_grid(_volume())
    viz.histogram(_volume())
    assert plt.get_fignums() == before


# --------------------------------------------------------------------------------------------------
# section grid and histogram


def test_section_grid_even_spacing_and_blank_flag():
    vol = _volume((20, 16, 24))
    vol[19] = 7  # a blank last section
    counter_vol = np.asarray(vol)
    fig = viz.section_grid(counter_vol, n=5, voxel_size=(50, 4, 4))
    labels = [ax.get_label() for ax in fig.axes]
    assert labels == ["z=0", "z=5", "z=10", "z=14", "z=19"]
    assert "BLANK" in fig.axes[-1].get_title() and "BLANK" not in fig.axes[0].get_title()
    assert all(ax.get_aspect() == pytest.approx(1.0) for ax in fig.axes)
    assert len(viz.section_grid(vol, n=50).axes) == 20


def test_section_grid_computes_only_its_sections():
    counter = BlockCounter()
    viz.section_grid(counter.array, n=2)
    assert {b[0] for b in counter.seen} == {0, 3}


def test_histogram_reads_a_bounded_sample():
    counter = BlockCounter(shape=(64, 256, 256), chunks=(8, 64, 64))
    fig = viz.histogram(counter.array, sample=5000, percentiles=(1, 99))
    assert len(counter.seen) == 2  # 5000 voxels: two 64 x 64 patches, each inside one block
    ax = fig.axes[0]
    assert [line.get_gid() for line in ax.lines] == ["p1", "p99"]
    assert "5,000 of 4,194,304 voxels" in ax.get_title()


def test_histogram_small_volume_whole_and_into_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    out = viz.histogram(np.arange(1000, dtype=np.uint8).reshape(10, 10, 10), ax=ax)
    assert out is fig
    assert "all 1,000 voxels" in ax.get_title()
    assert len(ax.patches) == 1  # one stairs artist


# --------------------------------------------------------------------------------------------------
# interactive viewer


def test_show_mimebundle_has_widget_and_png():
    viewer = viz.show(_volume(), voxel_size=(50, 4, 4), overlay=(_volume() > 200).astype(np.uint8))
    bundle = viewer._repr_mimebundle_()
    assert WIDGET_MIME in bundle
    assert bundle[WIDGET_MIME]["model_id"] == viewer.widget.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(PNG_MAGIC)
    assert bundle["text/plain"].startswith("OrthoViewer(")
    assert viewer.alpha_slider is not None
    assert bytes(viewer.image.value) == viewer.png


def test_slider_change_updates_image():
    viewer = viz.show(_volume((8, 24, 32)), voxel_size=(50, 4, 4))
    before = bytes(viewer.image.value)
    viewer.z_slider.value = 1
    after = bytes(viewer.image.value)
    assert after != before and after.startswith(PNG_MAGIC)
    assert base64.b64decode(viewer._repr_mimebundle_()["image/png"]) == after
    viewer.contrast_slider.value = (10.0, 50.0)
    assert bytes(viewer.image.value) != after
    with pytest.raises(ValueError, match="z=99"):
        viewer.z = 99


def test_viewer_recomputes_only_the_moved_plane():
    counter = BlockCounter()
    viewer = viz.show(counter.array, z=0, y=0, x=0)
    counter.seen.clear()
    viewer.z = 9
    assert set(counter.seen) == counter.blocks_of_planes(z=9)


def test_viewer_save(tmp_path):
    viewer = viz.show(_volume(), voxel_size=(50, 4, 4))
    viewer.y = 3
    viewer.save(tmp_path / "view.png")
    assert (tmp_path / "view.png").read_bytes().startswith(PNG_MAGIC)
    viewer.save(tmp_path / "view.svg")
    assert b"<svg" in (tmp_path / "view.svg").read_bytes()[:1000]


@pytest.mark.notebook
def test_show_renders_png_in_executed_notebook(tmp_path):
    """Executed headless (no widget front end), the notebook output still carries a PNG."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import numpy as np\n"
            "from vemkit import viz\n"
            "vol = np.random.default_rng(0).integers(0, 255, (8, 32, 32), dtype=np.uint8)\n"
            "viz.show(vol, voxel_size=(50, 4, 4), overlay=(vol > 200).astype(np.uint8))"
        )
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["execute_result"]
    data = outputs[0].data
    assert base64.b64decode(data["image/png"]).startswith(PNG_MAGIC)
    assert WIDGET_MIME in data and "OrthoViewer(" in data["text/plain"]
    # the widget state is stored too, so a widget-aware renderer can still show the widget
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert data[WIDGET_MIME]["model_id"] in state


def test_import_is_cheap_and_picks_no_backend():
    code = (
        "import sys, vemkit.viz\n"
        "heavy = [m for m in ('matplotlib', 'ipywidgets', 'dask') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------
# 3D view of objects


def _two_boxes():
    labels = np.zeros((10, 40, 60), np.uint16)
    labels[2:8, 5:15, 5:45] = 3  # 6 sections x 10 rows x 40 columns
    labels[1:9, 20:35, 20:30] = 7
    labels[5, 38, 58] = 9  # a speck
    return labels


def test_objects_3d_draws_each_object_in_physical_proportions():
    labels = _two_boxes()
    fig = viz.objects_3d(labels, [3, 7], voxel_size=(40, 8, 8))
    ax = fig.axes[0]
    assert ax.name == "3d"
    assert len(ax.collections) == 2
    # extents in nm: x about 25 columns * 8, z about 8 sections * 40 (the meshes pass half a voxel
    # outside the voxel centres, as the cuboids do)
    (x0, x1), (z0, z1) = ax.get_xlim(), ax.get_zlim()
    assert x1 - x0 == pytest.approx(40 * 8, rel=0.1)
    assert z1 - z0 == pytest.approx(8 * 40, rel=0.15)
    aspect = np.asarray(ax.get_box_aspect())
    assert aspect[0] / aspect[2] == pytest.approx((x1 - x0) / (z1 - z0), rel=1e-6)
    # each object in the colour its id has in the overlays
    legend = ax.get_legend()
    legend = {t.get_text(): h.get_facecolor()[:3] for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert set(legend) == {"3", "7"}
    np.testing.assert_allclose(legend["3"], _label_colours([3])[0], atol=1e-6)
    assert fig._repr_png_().startswith(PNG_MAGIC)
    assert "x (nm)" == ax.get_xlabel()


def test_objects_3d_defaults_and_bad_input():
    labels = _two_boxes()
    fig = viz.objects_3d(Volume.from_array(labels, voxel_size=(40, 8, 8)), max_objects=2, show_ids=False)
    assert len(fig.axes[0].collections) == 2  # the two largest, not the speck
    assert fig.axes[0].get_legend() is None
    fig = viz.objects_3d(labels, 9)  # no voxel size: cubes, axes in voxels
    assert fig.axes[0].get_xlabel() == "x (voxels)"
    with pytest.raises(ValueError, match="ids"):
        viz.objects_3d(labels, [3, 4], voxel_size=(40, 8, 8))
    with pytest.raises(ValueError, match="integer"):
        viz.objects_3d(labels.astype(np.float32), [3])
    with pytest.raises(ValueError, match="no object"):
        viz.objects_3d(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="max_objects"):
        viz.objects_3d(labels, max_objects=0)


def test_objects_3d_draws_a_thin_wide_object_within_the_face_budget():
    """A mitochondrion in one or two SBF-SEM sections, wide in plane (notebook 05 on cdeep3m_mito): the
    coarse grid that keeps the faces in budget used to step over its surface (skimage: no surface)."""
    for depth in (1, 2):
        labels = np.zeros((4, 400, 400), np.uint16)
        labels[1 : 1 + depth, 50:350, 50:350] = 5
        fig = viz.objects_3d(labels, [5], voxel_size=(40, 5.9, 5.9), max_faces=1000)
        assert len(fig.axes[0].collections) == 1


def test_objects_3d_and_table_view_render_in_executed_notebook(tmp_path):
    """Without a widget front end (papermill, nbconvert, CI) the 3D view is a PNG and the table view
    an HTML table, both stored in the notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import numpy as np\n"
            "from vemkit import measure, viz\n"
            "labels = np.zeros((8, 32, 32), np.uint8)\n"
            "labels[2:6, 4:12, 4:20] = 1\n"
            "labels[1:7, 16:28, 10:20] = 2\n"
            "viz.objects_3d(labels, voxel_size=(40, 8, 8))"
        ),
        nbformat.v4.new_code_cell(
            "df = measure.regionprops_table(labels, voxel_size=(40, 8, 8), progress=False)\n"
            "measure.table_view(df, ['label', 'volume_um3', 'sphericity'], sort_by='volume_um3')"
        ),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    figure, view = (c.outputs for c in nb.cells)
    assert [o.output_type for o in figure] == ["execute_result"]
    assert base64.b64decode(figure[0].data["image/png"]).startswith(PNG_MAGIC)
    html = view[0].data["text/html"]
    assert "<table" in html and "volume_um3" in html and "<script>" in html
    assert "2 rows" in view[0].data["text/plain"]


# ---------------------------------------------------------------------------------------------------
# legends and colour bars


def test_error_map_and_its_legend_in_orthoslices():
    pred = np.zeros((4, 16, 16), np.uint8)
    truth = np.zeros_like(pred)
    pred[:, 2:8, 2:8] = 1
    truth[:, 5:12, 5:12] = 1
    errors = viz.error_map(pred, truth)
    assert errors.dtype == np.uint8
    assert errors[0, 3, 3] == 1 and errors[0, 6, 6] == 2 and errors[0, 10, 10] == 3 and errors[0, 14, 14] == 0
    assert viz.error_map(pred[0], truth[0]).shape == (16, 16)
    with pytest.raises(ValueError, match="shape"):
        viz.error_map(pred, truth[:2])
    fig = viz.orthoslices(_volume((4, 16, 16)), voxel_size=(8, 8, 8), overlay=errors, overlay_names=viz.ERROR_NAMES)
    legend = [lg for lg in fig.legends if lg.get_gid() == "overlay_legend"]
    assert len(legend) == 1
    texts = [t.get_text() for t in legend[0].get_texts()]
    assert texts == ["false positive", "hit", "missed"]
    for handle, value in zip(legend[0].legend_handles, (1, 2, 3)):  # the colours the overlay draws
        np.testing.assert_allclose(handle.get_facecolor()[:3], _label_colours([value])[0], atol=1e-6)
    # in the free corner right of xz and below yz: it covers no panel
    fig.canvas.draw()
    box = legend[0].get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()), ax.get_label()
    assert fig._repr_png_().startswith(PNG_MAGIC)


def test_overlay_names_checks():
    with pytest.raises(ValueError, match="overlay_kind='labels'"):
        viz.orthoslices(_volume(), overlay=np.zeros((8, 24, 32), np.float32), overlay_kind="probability",
                        overlay_names={1: "x"})
    with pytest.raises(ValueError, match="label ids"):
        viz.orthoslices(_volume(), overlay=np.zeros((8, 24, 32), np.uint8), overlay_names={0: "background"})
    with pytest.raises(ValueError, match="dict"):
        viz.section_grid(_volume(), overlay=np.zeros((8, 24, 32), np.uint8), overlay_names=["a"])
    fig = viz.section_grid(_volume(), n=2, overlay=np.ones((8, 24, 32), np.uint8), overlay_names={1: "mito"})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["mito"]
    assert not viz.orthoslices(_volume(), overlay_names={1: "x"}).legends  # no overlay, nothing to explain


def test_probability_overlay_colorbar():
    prob = np.linspace(0, 1, 8 * 24 * 32, dtype=np.float32).reshape(8, 24, 32)
    fig = viz.orthoslices(_volume(), voxel_size=(8, 8, 8), overlay=prob, overlay_kind="probability", colorbar=True)
    bar = _axes(fig)["colorbar"]
    assert bar.get_xlim() == (0.0, 1.0)
    assert "probability" in bar.get_xlabel()
    fig.canvas.draw()
    for plane in ("xy", "xz", "yz"):
        assert not bar.get_window_extent().overlaps(_axes(fig)[plane].get_window_extent())
    assert "colorbar" not in _axes(viz.orthoslices(_volume(), overlay=prob, overlay_kind="probability"))


def test_channel_grid_per_panel_colormaps_ranges_and_colorbar():
    section = np.random.default_rng(0).integers(0, 255, (16, 16)).astype(np.float32)
    prob = np.full((16, 16), 0.25, np.float32)
    fig = viz.channel_grid(np.stack([section, prob]), ["section", "P(mito)"], cmap=["gray", "magma"],
                           contrast=[None, (0, 1)], colorbar=[False, True])
    ax = _axes(fig)
    assert list(ax) == ["section", "P(mito)", "colorbar"]
    image = ax["P(mito)"].images[0]
    assert image.get_cmap().name == "magma" and image.get_clim() == (0.0, 1.0)
    assert ax["colorbar"].get_ylim() == (0.0, 1.0)
    assert ax["section"].images[0].get_clim() == (section.min(), section.max())
    assert viz.channel_grid(np.stack([prob, prob]), contrast=(0, 1)).axes[1].images[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="cmap has 1 entries for 2 maps"):
        viz.channel_grid(np.stack([prob, prob]), cmap=["gray"])


def test_objects_3d_writes_each_id_above_its_object():
    labels = _two_boxes()
    ax = viz.objects_3d(labels, [3, 7], voxel_size=(40, 8, 8)).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["3", "7"]
    assert not viz.objects_3d(labels, [3, 7], voxel_size=(40, 8, 8), show_ids=False).axes[0].texts


def test_hashed_label_colours_of_neighbouring_ids_differ():
    # a golden-ratio hue walk gave ids 21, 34 and 55 (a Fibonacci number apart) almost the same red
    colours = _label_colours([21, 34, 47, 55, 89])
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)[np.triu_indices(5, 1)]
    assert distances.min() > 0.15
