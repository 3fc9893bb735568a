"""Tests for vemkit.augment: every augmentation keeps labels aligned with the image.

The construction: labels of random blocks, and an image that is an exact function of them
(``image = 40 * labels``, extras ``= 3 - 7 * labels``). After a spatial transform, wherever a voxel is
labelled and away from a label edge, the image and the extras must still be that function of the label.
"""

import io

import numpy as np
import pytest
import torch

from vemkit.augment import AugmentConfig, Augmenter, preview

F = torch.nn.functional
SPATIAL = ("flip", "rot90", "rotate", "scale", "elastic")
INTENSITY = ("brightness", "contrast", "gamma", "blur", "noise")


def only(name, **kw):
    """A config in which only augmentation ``name`` fires, always."""
    return AugmentConfig(**{**AugmentConfig.none().to_dict(), name: 1.0, **kw})


def block_labels(n, spatial, block=8, seed=0):
    """Random blocks with values 1..3, shape (n, *spatial)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(1, 4, (n,) + tuple(-(-s // block) for s in spatial), generator=g)
    for axis in range(1, coarse.dim()):
        coarse = coarse.repeat_interleave(block, dim=axis)
    return coarse[(slice(None),) + tuple(slice(0, s) for s in spatial)].contiguous()


def batch(n, spatial, seed=0):
    labels = block_labels(n, spatial, seed=seed)
    image = labels[:, None].float() * 40
    extras = torch.cat([3 - 7 * labels[:, None].float(), labels[:, None].float() * 2], dim=1)
    return image, labels, extras


def interior(labels, in_plane=True):
    """Labelled voxels whose 3x3 (in-plane) or 3x3x3 neighbourhood carries the same label."""
    x = labels.float()
    if labels.dim() == 4 and in_plane:  # (N, Z, Y, X): look within each section
        x = x.reshape(-1, 1, *labels.shape[2:])
        hi, lo = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
    elif labels.dim() == 4:
        x = x[:, None]
        hi, lo = F.max_pool3d(x, 3, 1, 1), -F.max_pool3d(-x, 3, 1, 1)
    else:
        x = x[:, None]
        hi, lo = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
    return ((hi == lo).reshape(labels.shape)) & (labels != 0)


def agreement(image, labels, extras=None, in_plane=True):
    """Fraction of interior labelled voxels where image (and extras) are still the function of the label."""
    mask = interior(labels, in_plane)
    assert mask.sum() > 100, "too few interior labelled voxels to check"
    ok = (image[:, 0] - 40 * labels.float()).abs() < 0.5
    if extras is not None:
        ok &= (extras[:, 0] - (3 - 7 * labels.float())).abs() < 0.5
        ok &= (extras[:, 1] - 2 * labels.float()).abs() < 0.5
    return ok[mask].float().mean().item()


# ----------------------------------------------------------------------------------------------- config


def test_config_presets_roundtrip_and_validation():
    assert AugmentConfig() == AugmentConfig.default()
    assert not AugmentConfig.none().any() and AugmentConfig.light().any()
    light = AugmentConfig.light()
    assert light.rotate == light.elastic == light.missing_section == 0
    cfg = AugmentConfig(scale_range=[0.9, 1.1], padding="Border")
    assert cfg.scale_range == (0.9, 1.1) and cfg.padding == "border"
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"AugmentConfig\.flip must be in \[0.0, 1.0\]"):
        AugmentConfig(flip=1.5)
    with pytest.raises(ValueError, match="AugmentConfig.gamma_range"):
        AugmentConfig(gamma_range=(1.5, 0.7))
    with pytest.raises(ValueError, match="AugmentConfig.padding"):
        AugmentConfig(padding="zeros")
    with pytest.raises(ValueError, match="unknown key"):
        AugmentConfig.from_dict({"flipp": 0.5})
    with pytest.raises(ValueError, match="elastic_spacing must be a whole number"):
        AugmentConfig(elastic_spacing=7.5)


def test_none_config_returns_copies_without_touching_inputs():
    image, labels, extras = batch(3, (32, 32))
    copies = image.clone(), labels.clone(), extras.clone()
    out = Augmenter(AugmentConfig.none(), ndim=2)(image, labels, extras, generator=0)
    for a, b in zip(out, copies):
        assert torch.equal(a, b)
    out = Augmenter(AugmentConfig.default(), ndim=2)(image, labels, extras, generator=0)
    assert torch.equal(image, copies[0]) and torch.equal(labels, copies[1]) and torch.equal(extras, copies[2])
    assert out[0].data_ptr() != image.data_ptr()


# --------------------------------------------------------------------------------------------- spatial


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", SPATIAL)
def test_spatial_keeps_labels_image_and_extras_aligned(name, ndim):
    spatial = (64, 64) if ndim == 2 else (6, 48, 48)
    image, labels, extras = batch(6, spatial, seed=1)
    cfg = only(name, elastic_strength=4.0, elastic_spacing=16)
    img, lab, ext = Augmenter(cfg, ndim=ndim)(image, labels, extras, generator=torch.Generator().manual_seed(3))
    assert img.shape == image.shape and lab.shape == labels.shape and ext.shape == extras.shape
    assert lab.dtype == labels.dtype and img.dtype == image.dtype
    assert not torch.equal(lab, labels), f"{name} changed nothing"
    if name in ("flip", "rot90"):  # exact: nothing interpolated, nothing comes from outside
        assert torch.equal(img[:, 0], 40 * lab.float()) and bool((lab != 0).all())
        assert torch.equal(ext[:, 0], 3 - 7 * lab.float())
    else:
        assert agreement(img, lab, ext) >= 0.98
    # a spatial transform permutes/resamples labels: it never invents label values
    assert set(lab.unique().tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("ndim", [2, 3])
def test_rotation_out_of_patch_voxels_are_ignored(ndim):
    spatial = (48, 48) if ndim == 2 else (3, 48, 48)
    labels = torch.ones((16,) + spatial, dtype=torch.int64)
    image = torch.full((16, 1) + spatial, 40.0)
    img, lab, _ = Augmenter(only("rotate", rotate_max=45.0), ndim=ndim)(image, labels, generator=7)
    corners = lab[..., [0, 0, -1, -1], [0, -1, 0, -1]]  # (16, [Z,] 4)
    all_corners_out = corners.reshape(16, -1).eq(0).all(dim=1)
    assert all_corners_out.sum() >= 13  # every rotation by more than ~3 degrees
    assert bool((lab[..., 20:28, 20:28] == 1).all())  # the centre stays labelled
    assert torch.allclose(img, torch.full_like(img, 40.0))  # reflection fills the image, no zeros or NaNs


@pytest.mark.parametrize("ndim", [2, 3])
def test_zoom_out_leaves_an_ignored_frame(ndim):
    spatial = (40, 40) if ndim == 2 else (4, 40, 40)
    image, labels, extras = batch(4, spatial)
    aug = Augmenter(only("scale", scale_range=(0.7, 0.75)), ndim=ndim)
    img, lab, ext = aug(image, labels, extras, generator=0)
    assert bool((lab[..., 0, :] == 0).all() and (lab[..., -1, :] == 0).all())
    assert bool((lab[..., :, 0] == 0).all() and (lab[..., :, -1] == 0).all())
    assert bool((lab[..., 8:32, 8:32] != 0).all())
    assert agreement(img, lab, ext) >= 0.98
    if ndim == 3:  # in-plane only: every section keeps a labelled centre
        assert bool((lab[:, :, 20, 20] != 0).all())


def test_padding_border_mode():
    image, labels, _ = batch(4, (32, 32))
    img, lab, _ = Augmenter(only("rotate", padding="border"), ndim=2)(image, labels, generator=0)
    assert torch.isfinite(img).all() and agreement(img, lab) >= 0.98


# ------------------------------------------------------------------------------------ anisotropy in 3D


def section_labels(n, z, yx):
    """Labels (n, z, yx, yx) holding 1 + z in section z: each section has its own value."""
    return (torch.arange(z) + 1).view(1, z, 1, 1).expand(n, z, yx, yx).clone()


@pytest.mark.parametrize("name", ["rot90", "rotate", "scale", "elastic"])
def test_anisotropic_transforms_never_mix_sections(name):
    lab = section_labels(4, 16, 16)
    image = lab[:, None].float() * 40
    cfg = only(name, elastic_strength=4.0, elastic_spacing=8, scale_range=(0.7, 1.4))
    img, out, _ = Augmenter(cfg, ndim=3)(image, lab, generator=1)
    for z in range(16):
        values = set(out[:, z].unique().tolist())
        assert values <= {0, z + 1}, f"section {z} got labels {values} from other sections"
    assert torch.allclose(img[:, 0][out != 0], 40 * out[out != 0].float(), atol=1e-3)


@pytest.mark.parametrize("name", ["rot90", "elastic", "scale"])
def test_isotropic_transforms_may_act_along_z(name):
    lab = section_labels(6, 16, 16)
    image = lab[:, None].float() * 40
    cfg = only(name, elastic_strength=4.0, elastic_spacing=8, scale_range=(0.7, 0.8))
    img, out, _ = Augmenter(cfg, ndim=3, isotropic=True)(image, lab, generator=1)
    moved = any(set(out[i, z].unique().tolist()) - {0, z + 1} for i in range(6) for z in range(16))
    assert moved, f"isotropic {name} never brought labels across sections"
    image, labels, extras = batch(4, (16, 32, 32), seed=4)  # 8-voxel cubes: alignment in 3D
    img, lab, ext = Augmenter(cfg, ndim=3, isotropic=True)(image, labels, extras, generator=2)
    assert agreement(img, lab, ext, in_plane=False) >= 0.98


def test_rot90_on_non_square_plane_turns_half_way():
    image, labels, extras = batch(8, (32, 48))
    img, lab, ext = Augmenter(only("rot90"), ndim=2)(image, labels, extras, generator=0)
    assert lab.shape == labels.shape
    for i in range(8):
        assert torch.equal(lab[i], labels[i].flip(0, 1))


def test_z_flip_is_allowed_when_anisotropic():
    lab = section_labels(8, 6, 8)
    _, out, _ = Augmenter(only("flip", flip=0.5), ndim=3)(lab[:, None].float(), lab, generator=0)
    flipped_z = [bool(torch.equal(out[i, :, 0, 0], lab[i, :, 0, 0].flip(0))) for i in range(8)]
    assert any(flipped_z) and not all(flipped_z)


# ------------------------------------------------------------------------------------------- intensity


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", INTENSITY)
def test_intensity_changes_image_only(name, ndim):
    spatial = (32, 32) if ndim == 2 else (4, 32, 32)
    image, labels, extras = batch(4, spatial)
    img, lab, ext = Augmenter(only(name), ndim=ndim)(image, labels, extras, generator=2)
    assert torch.equal(lab, labels) and torch.equal(ext, extras)
    assert torch.isfinite(img).all()
    for i in range(4):
        assert not torch.allclose(img[i], image[i]), f"{name} left sample {i} unchanged"


def test_blur_is_in_plane():
    lab = section_labels(2, 6, 16)
    image = lab[:, None].float() * 40
    img, _, _ = Augmenter(only("blur", blur_range=(1.5, 1.5)), ndim=3)(image, lab, generator=0)
    assert torch.allclose(img, image)  # each section is constant: nothing to blur in-plane, z untouched


def test_gamma_keeps_min_and_max():
    image, labels, _ = batch(4, (32, 32))
    img, _, _ = Augmenter(only("gamma"), ndim=2)(image, labels, generator=0)
    assert torch.allclose(img.amin(dim=(1, 2, 3)), image.amin(dim=(1, 2, 3)))
    assert torch.allclose(img.amax(dim=(1, 2, 3)), image.amax(dim=(1, 2, 3)))


# ----------------------------------------------------------------------------------------- EM defects


def test_missing_section_blanks_image_keeps_labels():
    image, labels, extras = batch(4, (8, 24, 24))
    image = image + torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    aug = Augmenter(only("missing_section", missing_section=0.3), ndim=3)
    img, lab, ext = aug(image, labels, extras, generator=0)
    assert torch.equal(lab, labels) and torch.equal(ext, extras)
    changed = ~(img == image).flatten(3).all(-1)[:, 0]  # (N, Z)
    assert 0 < changed.sum() < changed.numel()
    for i, z in changed.nonzero().tolist():
        section = img[i, 0, z]
        assert torch.allclose(section, torch.full_like(section, image[i].mean().item()), atol=1e-4)


def test_low_contrast_section():
    image, labels, _ = batch(4, (8, 24, 24))
    img, lab, _ = Augmenter(only("low_contrast", low_contrast=0.3), ndim=3)(image, labels, generator=0)
    assert torch.equal(lab, labels)
    changed = ~(img == image).flatten(3).all(-1)[:, 0]
    assert 0 < changed.sum() < changed.numel()
    for i, z in changed.nonzero().tolist():
        before, after = image[i, 0, z], img[i, 0, z]
        ratio = (after.std() / before.std()).item()
        assert 0.1 - 1e-4 <= ratio <= 0.3 + 1e-4
        assert after.mean().item() == pytest.approx(before.mean().item(), abs=1e-3)


def shifted(section, dy, dx):
    """Section moved by (dy, dx): out[p] = section[p - d], the uncovered strip 0."""
    out = torch.zeros_like(section)
    Y, X = section.shape
    out[max(dy, 0): Y + min(dy, 0), max(dx, 0): X + min(dx, 0)] = \
        section[max(-dy, 0): Y - max(dy, 0), max(-dx, 0): X - max(dx, 0)]
    return out


def find_shift(before, after, max_shift):
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if torch.equal(shifted(before, dy, dx), after):
                return dy, dx
    raise AssertionError("section is not a whole-pixel shift of the original")


@pytest.mark.parametrize("slip", [1.0, 0.0])
def test_misaligned_sections_shift_labels_and_image_together(slip):
    image, labels, extras = batch(4, (10, 32, 32), seed=3)
    cfg = only("misalign", misalign=0.15, misalign_slip=slip, misalign_max_shift=4)
    img, lab, ext = Augmenter(cfg, ndim=3)(image, labels, extras, generator=5)
    shifts = [[find_shift(labels[i, z], lab[i, z], 8) for z in range(10)] for i in range(4)]
    moved = [[s != (0, 0) for s in row] for row in shifts]
    assert any(any(row) for row in moved) and not all(all(row) for row in moved)
    for i in range(4):
        for z in range(10):
            dy, dx = shifts[i][z]
            assert max(abs(dy), abs(dx)) <= (4 if slip else 40)
            m = lab[i, z] != 0  # labelled voxels: image and extras moved identically
            assert torch.allclose(img[i, 0, z][m], 40 * lab[i, z][m].float(), atol=1e-3)
            assert torch.allclose(ext[i, 0, z][m], 3 - 7 * lab[i, z][m].float(), atol=1e-3)
            if (dy, dx) != (0, 0):
                assert bool((lab[i, z] == 0).any())  # the uncovered strip is ignored
    if slip == 0.0:  # a step moves every later section: each moved run continues to the last section
        for row in moved:
            if any(row):
                assert row[-1], "a step must carry through to the last section"
    else:  # slips stay single: some moved section sits between unmoved ones or at an end
        assert any(row[z] and not row[z + 1] for row in moved for z in range(9))


def test_defects_are_skipped_for_2d():
    image, labels, extras = batch(3, (32, 32))
    cfg = AugmentConfig(**{**AugmentConfig.none().to_dict(), "missing_section": 1.0, "misalign": 1.0,
                           "low_contrast": 1.0})
    out = Augmenter(cfg, ndim=2)(image, labels, extras, generator=0)
    assert torch.equal(out[0], image) and torch.equal(out[1], labels) and torch.equal(out[2], extras)


def test_shading_and_stripes_are_smooth_fields_on_the_image_only():
    image, labels, extras = batch(4, (32, 48))
    for name in ("shading", "stripes"):
        img, lab, ext = Augmenter(only(name), ndim=2)(image, labels, extras, generator=1)
        assert torch.equal(lab, labels) and torch.equal(ext, extras)
        delta = img - image
        for i in range(4):
            d = delta[i, 0]
            assert d.abs().max() > 0.5, f"{name} left sample {i} unchanged"
            if name == "stripes":  # one shift per row or per column: constant along the other axis
                assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-3) or torch.allclose(d, d[:1].expand_as(d), atol=1e-3)
            else:  # amplitude within the range of standard deviations, and smooth (no pixel jumps)
                sd = image[i, 0].std(correction=0)
                assert d.abs().max() <= 1.0 * sd + 1e-3
                assert (d[1:] - d[:-1]).abs().max() < 0.2 * d.abs().max()


def test_fold_darkens_a_band_and_ignores_its_labels():
    image, labels, _ = batch(3, (40, 40))
    img, lab, _ = Augmenter(only("fold", fold_width=(4.0, 4.0)), ndim=2)(image, labels, generator=0)
    for i in range(3):
        band = lab[i] == 0
        assert 40 <= band.sum() <= 4 * 40 * 1.5 + 10, "a 4-pixel band across a 40 x 40 section"
        assert (img[i, 0][band] < image[i, 0].min()).all(), "the fold is darker than anything in the section"
        assert torch.equal(img[i, 0][~band], image[i, 0][~band]) and torch.equal(lab[i][~band], labels[i][~band])


def test_section_defects_of_a_3d_patch_fire_per_section():
    image, labels, _ = batch(4, (8, 24, 24))
    for name in ("shading", "stripes", "fold"):
        img, _, _ = Augmenter(only(name, **{name: 0.4}), ndim=3)(image, labels, generator=3)
        changed = ~(img == image).flatten(3).all(-1)[:, 0]  # (N, Z)
        assert 0 < changed.sum() < changed.numel(), name


def test_new_defects_leave_other_augmentations_draws_alone():
    image, labels, _ = batch(2, (32, 32))
    base = {**AugmentConfig.none().to_dict(), "noise": 1.0, "brightness": 1.0}
    a = Augmenter(AugmentConfig(**base), ndim=2)(image, labels, generator=5)[0]
    b = Augmenter(AugmentConfig(**{**base, "fold": 1.0}), ndim=2)(image, labels, generator=5)[0]
    lab_b = Augmenter(AugmentConfig(**{**base, "fold": 1.0}), ndim=2)(image, labels, generator=5)[1]
    assert torch.equal(a[lab_b[:, None] != 0], b[lab_b[:, None] != 0])  # same noise off the fold


# --------------------------------------------------------------------------------- determinism, dtypes


def test_same_seed_same_output_and_seeds_differ():
    image, labels, extras = batch(3, (6, 32, 32))
    cfg = AugmentConfig(**{name: 1.0 for name in ("flip", "rot90", "rotate", "scale", "elastic", "brightness",
                                                  "contrast", "gamma", "blur", "noise")},
                        missing_section=0.2, misalign=0.2, low_contrast=0.2)
    aug = Augmenter(cfg, ndim=3)
    a = aug(image, labels, extras, generator=torch.Generator().manual_seed(11))
    b = aug(image, labels, extras, generator=torch.Generator().manual_seed(11))
    c = aug(image, labels, extras, generator=11)
    d = aug(image, labels, extras, generator=12)
    for x, y, w in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, w)
    assert not torch.equal(a[0], d[0])
    with torch.random.fork_rng():
        torch.manual_seed(4)
        e = aug(image, labels, extras)
        torch.manual_seed(4)
        f = aug(image, labels, extras)
    assert torch.equal(e[0], f[0]) and torch.equal(e[1], f[1])


def test_one_generator_draws_differently_per_sample_and_call():
    image, labels, _ = batch(4, (32, 32))
    image = image[:1].expand(4, -1, -1, -1).contiguous()
    labels = labels[:1].expand(4, -1, -1).contiguous()
    g = torch.Generator().manual_seed(0)
    aug = Augmenter(only("noise"), ndim=2)
    first, _, _ = aug(image, labels, generator=g)
    second, _, _ = aug(image, labels, generator=g)
    assert not torch.equal(first[0], first[1]) and not torch.equal(first, second)


def test_dtypes_are_kept():
    image, labels, extras = batch(2, (16, 16))
    img, lab, ext = Augmenter(AugmentConfig(), ndim=2)(image.double(), labels.int(), extras.double(), generator=0)
    assert img.dtype == torch.float64 and lab.dtype == torch.int32 and ext.dtype == torch.float64
    _, _, none = Augmenter(ndim=2)(image, labels, generator=0)
    assert none is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    image, labels, extras = batch(4, (6, 48, 48))
    aug = Augmenter(AugmentConfig(missing_section=0.2, misalign=0.2, low_contrast=0.2), ndim=3)
    cpu = aug(image, labels, extras, generator=3)
    gpu = aug(image.cuda(), labels.cuda(), extras.cuda(), generator=3)
    assert all(t.device.type == "cuda" for t in gpu)
    assert (gpu[1].cpu() == cpu[1]).float().mean() > 0.999
    assert (gpu[0].cpu() - cpu[0]).abs().le(1e-3 * (1 + cpu[0].abs())).float().mean() > 0.999


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("ndim, image, labels, extras, match", [
    (2, torch.zeros(2, 16, 16), torch.ones(2, 16, 16, dtype=torch.int64), None, r"image must have shape \(N, C, Y, X\).*channel axis"),
    (3, torch.zeros(2, 1, 16, 16), torch.ones(2, 16, 16, dtype=torch.int64), None, r"image must have shape \(N, C, Z, Y, X\)"),
    (2, torch.zeros(2, 1, 16, 16), torch.ones(2, 16, 15, dtype=torch.int64), None, r"labels must have shape"),
    (2, torch.zeros(2, 1, 16, 16), torch.ones(3, 16, 16, dtype=torch.int64), None, r"labels must have shape"),
    (2, torch.zeros(2, 1, 16, 16), torch.ones(2, 16, 16), None, r"labels must be an integer tensor.*float32"),
    (2, torch.zeros(2, 1, 16, 16), torch.ones(2, 16, 16, dtype=torch.bool), None, r"labels must be an integer"),
    (2, torch.zeros(2, 1, 16, 16, dtype=torch.uint8), torch.ones(2, 16, 16, dtype=torch.int64), None,
     r"image must be a floating-point"),
    (2, np.zeros((2, 1, 16, 16), np.float32), torch.ones(2, 16, 16, dtype=torch.int64), None,
     r"image must be a torch.Tensor"),
    (2, torch.zeros(2, 1, 16, 16), torch.ones(2, 16, 16, dtype=torch.int64), torch.zeros(2, 1, 16, 8),
     r"extras must have shape"),
    (2, torch.zeros(2, 1, 16, 16), torch.ones(2, 16, 16, dtype=torch.int64), torch.zeros(2, 1, 16, 16,
                                                                                        dtype=torch.int64),
     r"extras must be a floating-point"),
])  # fmt: skip
def test_bad_input_raises(ndim, image, labels, extras, match):
    with pytest.raises(ValueError, match=match):
        Augmenter(ndim=ndim)(image, labels, extras)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="ndim must be 2"):
        Augmenter(ndim=4)
    with pytest.raises(ValueError, match="config must be an AugmentConfig"):
        Augmenter("default")
    with pytest.raises(ValueError, match="generator must be"):
        Augmenter(ndim=2)(torch.zeros(1, 1, 8, 8), torch.ones(1, 8, 8, dtype=torch.int64), generator="seed")


# --------------------------------------------------------------------------------------------- preview


@pytest.mark.parametrize("shape", [(48, 40), (5, 32, 32)])
def test_preview_draws_n_versions(shape):
    from matplotlib.figure import Figure

    labels = block_labels(1, shape, seed=2)[0].numpy()
    image = (labels * 60).astype(np.uint8)
    fig = preview(image, labels, AugmentConfig(), n=5, seed=1)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[0].get_title() == "original"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="labels must be integers"):
        preview(image, labels.astype(float), n=2)
