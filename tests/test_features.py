"""Tests for vemkit.features: kernels, each feature against references, anisotropy, 2D/3D, blockwise."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit._filters import derivative_kernels, eig3, kernel_radius
from vemkit.features import (
    DEFAULT_SCALES,
    DEFAULT_FEATURES,
    FEATURE_TYPES,
    FeatureConfig,
    auto_mode,
    compute_features,
    compute_features_blockwise,
)


def _smooth_image(shape, sigma=2.0, seed=0, scale=10.0):
    rng = np.random.default_rng(seed)
    return (ndi.gaussian_filter(rng.random(shape), sigma) * scale).astype(np.float32)


def _channel(f, cfg, name):
    return f[cfg.names().index(name)]


def _rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# ----------------------------------------------------------------------------------------- config


def test_config_names_and_counts():
    cfg = FeatureConfig()
    assert cfg.scales == DEFAULT_SCALES and cfg.features == DEFAULT_FEATURES and cfg.mode == "2d"
    assert set(DEFAULT_FEATURES) <= set(FEATURE_TYPES)
    assert cfg.n_features() == len(cfg.names()) == 5 * (2 + 2 + 2)
    full = FeatureConfig(features=FEATURE_TYPES)
    assert full.n_features() == 5 * (4 + 2 + 2)
    assert cfg.names()[:2] == ["gaussian_s0.7", "gaussian_s1.0"]
    assert "hoge_s3.5_ev1" in cfg.names() and "ste_s5.0_ev0" in cfg.names()
    cfg3 = FeatureConfig(scales=[1.6], features=["hoge", "log"], mode="3D")
    assert cfg3.scales == (1.6,) and cfg3.mode == "3d"
    assert cfg3.names() == ["hoge_s1.6_ev0", "hoge_s1.6_ev1", "hoge_s1.6_ev2", "log_s1.6"]
    assert FeatureConfig.from_dict(cfg3.to_dict()) == cfg3
    assert FeatureConfig.from_dict({"scales": [2.0]}) == FeatureConfig(scales=(2.0,))
    hash(cfg3)  # frozen: usable as a dict key


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"scales": (1.0, 0.0)}, "scales"),
        ({"scales": (-1.0,)}, "scales"),
        ({"scales": (float("nan"),)}, "scales"),
        ({"scales": ()}, "scales"),
        ({"scales": ("big",)}, "scales"),
        ({"features": ("gaussian", "sobel")}, "features"),
        ({"features": ()}, "features"),
        ({"mode": "4d"}, "mode"),
    ],
)
def test_config_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        FeatureConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="sigma"):
        FeatureConfig.from_dict({"sigma": [1.0]})


def test_halo_and_auto_mode():
    cfg = FeatureConfig()
    # largest scale 5: kernel radius ceil(3.5 * 5 + 0.5) = 18, structure-tensor outer radius 10
    assert cfg.halo() == (0, 28, 28)
    assert FeatureConfig(features=("gaussian",)).halo() == (0, 18, 18)
    h3 = FeatureConfig(mode="3d").halo((40, 8, 8))  # z sigmas are 5x smaller
    assert h3 == (kernel_radius(1.0) + kernel_radius(0.5), 28, 28)
    assert FeatureConfig(mode="3d").halo((8, 8, 8)) == (28, 28, 28)
    with pytest.raises(ValueError, match="voxel_size"):
        FeatureConfig(mode="3d").halo()
    assert auto_mode((50, 4, 4)) == "2d" and auto_mode((8, 8, 8)) == "3d" and auto_mode(None) == "2d"
    with pytest.raises(ValueError, match="voxel_size"):
        auto_mode((0, 4, 4))


# ----------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("sigma", [0.05, 0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0])
def test_kernels_are_normalised_and_exact_on_polynomials(sigma):
    r = kernel_radius(sigma)
    k = derivative_kernels(sigma, r)
    t = np.arange(-r, r + 1.0)
    assert len(k["g"]) == 2 * r + 1 and r >= 1
    assert k["g"].sum() == pytest.approx(1.0)
    assert (k["g"] >= 0).all() and np.argmax(k["g"]) == r
    # correlation: out = sum_t w(t) f(p + t); ramp f = t -> slope 1, parabola f = t^2 -> 2
    assert (k["d1"] * t).sum() == pytest.approx(1.0) and k["d1"].sum() == pytest.approx(0.0, abs=1e-12)
    assert (k["d2"] * t * t).sum() == pytest.approx(2.0) and k["d2"].sum() == pytest.approx(0.0, abs=1e-12)
    assert (k["d2"] * t).sum() == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(np.concatenate(list(k.values()))).all()


def test_derivatives_of_ramp_and_parabola():
    yy, xx = np.mgrid[0:96, 0:100].astype(np.float64)
    cfg = FeatureConfig(scales=(0.7, 1.6, 3.5), features=("ggm", "log", "hoge"))
    ramp = (0.5 * xx + 1.2 * yy).astype(np.float32)
    f = compute_features(ramp, cfg)[:, 0]
    inner = (slice(30, 66), slice(30, 70))
    for s in ("0.7", "1.6", "3.5"):
        assert np.allclose(_channel(f, cfg, f"ggm_s{s}")[inner], np.hypot(0.5, 1.2), rtol=1e-4)
        assert np.abs(_channel(f, cfg, f"log_s{s}")[inner]).max() < 1e-3
    para = ((xx - 50) ** 2 + 2 * (yy - 48) ** 2).astype(np.float32)  # Hessian diag(4, 2) in (y, x)
    f = compute_features(para, cfg)[:, 0]
    for s in ("0.7", "1.6", "3.5"):
        assert np.allclose(_channel(f, cfg, f"log_s{s}")[inner], 6.0, atol=2e-3)
        assert np.allclose(_channel(f, cfg, f"hoge_s{s}_ev0")[inner], 4.0, atol=2e-3)
        assert np.allclose(_channel(f, cfg, f"hoge_s{s}_ev1")[inner], 2.0, atol=2e-3)


def test_blob_signs_and_edge_peak():
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 3.0**2)).astype(np.float32)
    cfg = FeatureConfig(scales=(1.0, 3.5), features=("log", "hoge", "dog", "ste"))
    for sign in (1, -1):
        f = compute_features(sign * blob, cfg)[:, 0, 32, 32]
        for s in ("1.0", "3.5"):
            assert np.sign(f[cfg.names().index(f"log_s{s}")]) == -sign
            assert np.sign(f[cfg.names().index(f"hoge_s{s}_ev0")]) == -sign
            assert np.sign(f[cfg.names().index(f"hoge_s{s}_ev1")]) == -sign
            assert np.sign(f[cfg.names().index(f"dog_s{s}")]) == -sign  # G(s) - G(0.66 s) ~ LoG
    step = np.zeros((40, 60), np.float32)
    step[:, 30:] = 100
    cfg = FeatureConfig(scales=(0.7, 1.0, 3.5), features=("ggm", "ste"))
    f = compute_features(step, cfg)[:, 0, 20]
    for s in ("0.7", "1.0", "3.5"):
        assert np.argmax(f[cfg.names().index(f"ggm_s{s}")]) in (29, 30)
        assert np.argmax(f[cfg.names().index(f"ste_s{s}_ev0")]) in (29, 30)
        assert np.abs(f[cfg.names().index(f"ste_s{s}_ev1")]).max() < 1e-2  # a straight edge: rank 1


def test_eigenvalues_sorted_and_exact():
    cfg = FeatureConfig(scales=(1.0,), features=("ste", "hoge"))
    f = compute_features(_smooth_image((50, 60)), cfg)
    for name in ("ste", "hoge"):
        e0, e1 = _channel(f, cfg, f"{name}_s1.0_ev0"), _channel(f, cfg, f"{name}_s1.0_ev1")
        assert (e0 >= e1).all()
    assert (_channel(f, cfg, "ste_s1.0_ev1") >= -1e-4).all()  # the structure tensor is positive semidefinite


def test_eig3_closed_form_matches_numpy_and_is_safe():
    import torch

    rng = np.random.default_rng(1)
    m = rng.normal(size=(500, 3, 3))
    m = m + m.transpose(0, 2, 1)
    m[:10] = np.eye(3) * 2.5  # triple eigenvalue
    m[10:20] = 0.0
    m[20:30] = np.diag([1.0, 1.0, -2.0])  # double eigenvalue
    m[30:40] = 1e4 * m[30:40]
    t = torch.from_numpy(m.astype(np.float32))
    outs = [torch.empty(500) for _ in range(3)]
    eig3(torch, t[:, 0, 0], t[:, 1, 1], t[:, 2, 2], t[:, 0, 1], t[:, 0, 2], t[:, 1, 2], outs)
    got = torch.stack(outs, 1).numpy()
    ref = np.linalg.eigvalsh(m)[:, ::-1]
    scale = np.abs(m).reshape(500, -1).max(1, keepdims=True) + 1e-12
    assert np.isfinite(got).all()
    assert (np.abs(got - ref) / scale).max() < 2e-3
    assert (got[:, 0] >= got[:, 1]).all() and (got[:, 1] >= got[:, 2]).all()


# ------------------------------------------------------------------------------ reference filters


def test_2d_channels_match_scipy():
    img = _smooth_image((90, 110))
    cfg = FeatureConfig(scales=(1.0, 1.6, 3.5), features=("gaussian", "ggm", "log", "dog"))
    f = compute_features(img, cfg)[:, 0]
    inner = (slice(30, 60), slice(30, 80))
    ref_img = img.astype(np.float64)
    for s in cfg.scales:
        tag = f"s{s:.1f}"
        g = ndi.gaussian_filter(ref_img, s, mode="mirror")
        assert _rel_err(_channel(f, cfg, f"gaussian_{tag}")[inner], g[inner]) < 1e-4
        ggm = ndi.gaussian_gradient_magnitude(ref_img, s, mode="mirror")
        assert _rel_err(_channel(f, cfg, f"ggm_{tag}")[inner], ggm[inner]) < 5e-3
        # 3.5-sigma kernels normalised to be exact on parabolas (vigra) vs scipy's raw 4-sigma samples
        log = ndi.gaussian_laplace(ref_img, s, mode="mirror")
        assert _rel_err(_channel(f, cfg, f"log_{tag}")[inner], log[inner]) < 3e-2
        dog = g - ndi.gaussian_filter(ref_img, 0.66 * s, mode="mirror")
        assert _rel_err(_channel(f, cfg, f"dog_{tag}")[inner], dog[inner]) < 1e-3


def _tensor_references(img, sigmas, deriv_scale):
    """Hessian and structure tensor eigenvalues (descending) with scipy and numpy."""
    nd = img.ndim

    def d(order):
        return ndi.gaussian_filter(img, sigmas, order=order, mode="mirror")

    unit = [tuple(int(i == j) for i in range(nd)) for j in range(nd)]
    grads = [d(u) * deriv_scale[j] for j, u in enumerate(unit)]
    hess = np.zeros(img.shape + (nd, nd))
    st = np.zeros_like(hess)
    outer = [0.5 * s for s in sigmas]
    for i in range(nd):
        for j in range(nd):
            order = tuple(a + b for a, b in zip(unit[i], unit[j]))
            hess[..., i, j] = d(order) * deriv_scale[i] * deriv_scale[j]
            st[..., i, j] = ndi.gaussian_filter(grads[i] * grads[j], outer, mode="mirror")
    return np.linalg.eigvalsh(hess)[..., ::-1], np.linalg.eigvalsh(st)[..., ::-1]


def test_2d_tensor_features_match_numpy():
    img = _smooth_image((80, 90)).astype(np.float64)
    cfg = FeatureConfig(scales=(1.0, 3.5), features=("ste", "hoge"))
    f = compute_features(img, cfg)[:, 0]
    inner = (slice(28, 52), slice(28, 62))
    for s in cfg.scales:
        hev, sev = _tensor_references(img, (s, s), (1.0, 1.0))
        for i in range(2):
            assert _rel_err(_channel(f, cfg, f"ste_s{s}_ev{i}")[inner], sev[..., i][inner]) < 1e-2
            assert _rel_err(_channel(f, cfg, f"hoge_s{s}_ev{i}")[inner], hev[..., i][inner]) < 3e-2


def test_3d_anisotropic_sigmas():
    vol = _smooth_image((24, 48, 48), sigma=(1, 3, 3)).astype(np.float64)
    cfg = FeatureConfig(scales=(1.6, 3.5), features=("gaussian", "ggm"), mode="3d")
    f = compute_features(vol, cfg, voxel_size=(40.0, 8.0, 8.0))  # z sigma = sigma * 8 / 40
    assert f.shape == (cfg.n_features(), 24, 48, 48) and f.dtype == np.float32
    inner = (slice(6, 18), slice(18, 30), slice(18, 30))
    for s in cfg.scales:
        g = ndi.gaussian_filter(vol, (s * 0.2, s, s), mode="mirror")
        assert _rel_err(_channel(f, cfg, f"gaussian_s{s}")[inner], g[inner]) < 1e-4
    # derivatives are per in-plane pixel: a ramp of 1 grey value per 40 nm z step is 8/40 per pixel
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], (20, 30, 30))
    g = compute_features(ramp, FeatureConfig(scales=(1.0,), features=("ggm",), mode="3d"), voxel_size=(40, 8, 8))
    assert np.allclose(g[0, 8:12, 10:20, 10:20], 0.2, rtol=1e-4)


def test_3d_tensor_features_match_numpy():
    # z sigmas of 0.8 and 1.75 voxels: scipy's raw sampled derivatives are still accurate there
    vol = _smooth_image((24, 48, 48), sigma=(1, 3, 3)).astype(np.float64)
    cfg = FeatureConfig(scales=(1.6, 3.5), features=("ggm", "ste", "hoge"), mode="3d")
    f = compute_features(vol, cfg, voxel_size=(16.0, 8.0, 8.0))
    inner = (slice(6, 18), slice(18, 30), slice(18, 30))
    for s in cfg.scales:
        sig = (s * 0.5, s, s)
        hev, sev = _tensor_references(vol, sig, (0.5, 1.0, 1.0))
        grad = np.sqrt(sum(
            (ndi.gaussian_filter(vol, sig, order=o, mode="mirror") * k) ** 2
            for o, k in (((1, 0, 0), 0.5), ((0, 1, 0), 1.0), ((0, 0, 1), 1.0))
        ))
        assert _rel_err(_channel(f, cfg, f"ggm_s{s}")[inner], grad[inner]) < 1e-2
        for i in range(3):
            assert _rel_err(_channel(f, cfg, f"ste_s{s}_ev{i}")[inner], sev[..., i][inner]) < 1e-2
            assert _rel_err(_channel(f, cfg, f"hoge_s{s}_ev{i}")[inner], hev[..., i][inner]) < 6e-2


def test_2d_mode_is_per_section():
    vol = _smooth_image((4, 40, 50), sigma=(0, 2, 2))
    cfg = FeatureConfig(scales=(0.7, 1.6))
    f = compute_features(vol, cfg)
    for z in range(4):
        assert np.allclose(f[:, z], compute_features(vol[z], cfg)[:, 0], atol=1e-5)


def test_isotropic_3d_is_rotation_consistent():
    vol = _smooth_image((30, 30, 30), sigma=2)
    cfg = FeatureConfig(scales=(1.0,), mode="3d")
    a = compute_features(vol, cfg, voxel_size=(8, 8, 8))
    b = compute_features(vol.transpose(2, 1, 0).copy(), cfg, voxel_size=(8, 8, 8))
    assert np.allclose(a, b.transpose(0, 3, 2, 1), atol=1e-4)


# ----------------------------------------------------------------------------------- input / output


def test_inputs_and_output_types():
    import dask.array as da

    from vemkit.io import Volume

    img = (_smooth_image((20, 36)) * 10).astype(np.uint16)
    cfg = FeatureConfig(scales=(1.0,))
    ref = compute_features(img.astype(np.float64), cfg)
    assert ref.shape == (cfg.n_features(), 1, 20, 36) and ref.dtype == np.float32
    assert np.allclose(compute_features(img, cfg), ref, atol=1e-4)
    assert np.allclose(compute_features(da.from_array(img[None], chunks=(1, 10, 10)), cfg), ref, atol=1e-4)
    vol = Volume.from_array(img, voxel_size=(50, 4, 4))
    assert np.allclose(compute_features(vol, cfg), ref, atol=1e-4)
    # a Volume's voxel size is used in 3d mode
    vol3 = Volume.from_array(np.repeat(img[None], 5, 0), voxel_size=(8, 8, 8))
    f3 = compute_features(vol3, FeatureConfig(scales=(1.0,), features=FEATURE_TYPES, mode="3d"))
    assert f3.shape == (10, 5, 20, 36)
    assert compute_features(np.zeros((7, 5), bool), cfg).shape == (cfg.n_features(), 1, 7, 5)
    assert compute_features(img, cfg.to_dict()).shape == ref.shape


def test_tiny_inputs_mirror_like_the_blockwise_reader():
    cfg = FeatureConfig(scales=(3.5,))
    for shape in [(1, 1, 1), (1, 3, 2), (2, 5, 17)]:
        img = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        f = compute_features(img, cfg)
        assert f.shape == (cfg.n_features(), *shape) and np.isfinite(f).all()
    f = compute_features(np.full((9, 9), 3.0), cfg)
    assert np.allclose(_channel(f, cfg, "gaussian_s3.5"), 3.0)
    assert np.allclose(_channel(f, cfg, "ggm_s3.5"), 0.0, atol=1e-5)


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: compute_features(np.zeros((2, 3, 4, 5))), "image"),
        (lambda: compute_features(np.zeros(5)), "image"),
        (lambda: compute_features(np.zeros((0, 4))), "image"),
        (lambda: compute_features(np.array([["a"]])), "image"),
        (lambda: compute_features(np.zeros((4, 4)), voxel_size=(50, 4)), "voxel_size"),
        (lambda: compute_features(np.zeros((4, 4)), voxel_size=(50, -4, 4)), "voxel_size"),
        (lambda: compute_features(np.zeros((4, 4, 4)), FeatureConfig(mode="3d")), "voxel_size"),
        (lambda: compute_features(np.zeros((4, 4)), {"features": ["gaussian", "hog"]}), "features"),
        (lambda: compute_features(np.zeros((4, 4)), {"scales": [0]}), "scales"),
        (lambda: compute_features(np.zeros((4, 4)), "2d"), "config"),
        (lambda: compute_features(np.full((4, 4), np.nan)), "NaN"),
        (lambda: compute_features(np.zeros((4, 4)), device="tpu"), "device"),
        (lambda: compute_features_blockwise(np.zeros((4, 4, 4)), block=(0, 4, 4)), "block"),
        (lambda: compute_features_blockwise(np.zeros((2, 4, 4)), out=np.zeros((3, 2, 4, 4))), "out"),
        (lambda: compute_features_blockwise(np.zeros((2, 3, 4, 5))), "volume"),
    ],
)
def test_bad_input_errors_name_the_argument(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_missing_cuda_is_an_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="cuda"):
        compute_features(np.zeros((8, 8)), device="cuda")


def test_auto_device_runs():
    f = compute_features(np.zeros((8, 8), np.float32), FeatureConfig(scales=(1.0,)), device="auto")
    assert f.shape[1:] == (1, 8, 8)


# ---------------------------------------------------------------------------------------- blockwise


@pytest.mark.parametrize(
    "shape, cfg, vs, block",
    [
        ((5, 70, 83), FeatureConfig(scales=(0.7, 1.6, 3.5)), None, (2, 32, 40)),
        ((3, 45, 37), FeatureConfig(scales=(1.0, 5.0), features=("ste", "dog")), None, (3, 17, 20)),
        ((20, 40, 38), FeatureConfig(scales=(1.0, 3.5), mode="3d"), (20, 8, 8), (7, 16, 24)),
        ((12, 30, 30), FeatureConfig(scales=(1.6,), features=("ste", "ggm"), mode="3d"), (8, 8, 8), (5, 13, 30)),
    ],
)
def test_blockwise_equals_whole(shape, cfg, vs, block):
    vol = _smooth_image(shape, sigma=1.5, seed=3)
    whole = compute_features(vol, cfg, voxel_size=vs)
    parts = compute_features_blockwise(vol, cfg, voxel_size=vs, block=block, progress=False)
    assert parts.shape == whole.shape and parts.dtype == np.float32
    scale = np.abs(whole).reshape(len(whole), -1).max(1)[:, None, None, None] + 1e-6
    # float32 rounding only (the smallest 3D eigenvalue comes out of a cancellation)
    assert (np.abs(parts - whole) / scale).max() < 1e-4


def test_blockwise_into_zarr_from_dask_volume():
    import dask.array as da
    import zarr

    from vemkit.io import Volume

    vol = _smooth_image((6, 40, 44), seed=5)
    cfg = FeatureConfig(scales=(1.0, 1.6), features=("gaussian", "hoge"))
    whole = compute_features(vol, cfg)
    src = Volume.from_array(da.from_array(vol, chunks=(2, 20, 20)), voxel_size=(50, 5, 5))
    out = zarr.zeros(shape=whole.shape, chunks=(1, 2, 20, 20), dtype="f4")
    res = compute_features_blockwise(src, cfg, block=(4, 24, 24), out=out, progress=False)
    assert res is out
    assert np.allclose(np.asarray(out[:]), whole, atol=1e-4)
    flat = compute_features_blockwise(vol[0], cfg, block=(1, 16, 16), progress=False)
    assert np.allclose(flat, whole[:, :1], atol=1e-4)


def test_threads_restored_and_results_independent_of_threads():
    import torch

    vol = _smooth_image((3, 70, 60), seed=7)
    cfg = FeatureConfig(scales=(1.0, 3.5))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compute_features(vol, cfg)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        three = compute_features(vol, cfg, progress=True)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert np.allclose(one, three, atol=1e-5)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    vol = _smooth_image((6, 64, 72), seed=2)
    for cfg, vs in [(FeatureConfig(), None), (FeatureConfig(scales=(1.0, 3.5), mode="3d"), (16, 8, 8))]:
        cpu = compute_features(vol, cfg, voxel_size=vs, device="cpu")
        gpu = compute_features(vol, cfg, voxel_size=vs, device="cuda")
        scale = np.abs(cpu).reshape(len(cpu), -1).max(1)[:, None, None, None] + 1e-6
        assert (np.abs(gpu - cpu) / scale).max() < 1e-3


def test_border_mirroring_matches_the_blockwise_reader():
    from vemkit._blockwise import read_with_halo
    from vemkit.features import _read_padded

    rng = np.random.default_rng(4)
    for _ in range(200):
        shape = tuple(int(n) for n in rng.integers(1, 9, 3))
        src = rng.random(shape)
        region = []
        for n in shape:
            a = int(rng.integers(0, n))
            region.append(slice(a, int(rng.integers(a + 1, n + 1))))
        halo = tuple(int(h) for h in rng.integers(0, 12, 3))
        assert np.array_equal(_read_padded(src, tuple(region), halo, halo), read_with_halo(src, tuple(region), halo))


def test_auto_mode_chooses_2d_for_one_section_or_a_thin_stack():
    assert auto_mode((8, 8, 8), shape=(1, 768, 1024)) == "2d"  # one FIB-SEM section: 3D means nothing
    assert auto_mode((8, 8, 8), shape=(768, 1024)) == "2d"
    assert auto_mode((8, 8, 8), shape=(10, 2341, 3293)) == "2d"  # thinner than the z window of sigma 5 (37)
    assert auto_mode((8, 8, 8), shape=(37, 64, 64)) == "3d"
    assert auto_mode((8, 8, 8), shape=(20, 64, 64), scales=(1.0, 1.6)) == "3d"  # small scales: small window
    assert auto_mode((50, 4, 4), shape=(500, 64, 64)) == "2d"


def test_features_of_a_region_equal_that_region_of_the_whole(monkeypatch):
    import dask.array as da

    vol = np.random.default_rng(1).random((12, 50, 60)).astype(np.float32)
    for cfg, vs in ((FeatureConfig(scales=(1.0, 2.0), features=("gaussian", "ste", "hoge"), mode="3d"), (10, 8, 8)),
                    (FeatureConfig(scales=(1.0, 3.5)), None)):
        whole = compute_features(vol, cfg, voxel_size=vs)
        for region in ((slice(0, 3), slice(0, 20), slice(40, 60)), (slice(5, 12), slice(17, 50), slice(3, 31))):
            lazy = da.from_array(vol, chunks=(4, 25, 30))
            part = compute_features(lazy, cfg, voxel_size=vs, region=region)
            np.testing.assert_allclose(part, whole[(slice(None), *region)], atol=2e-5)
    with pytest.raises(ValueError, match="region"):
        compute_features(vol, region=(slice(0, 1), slice(60, 70), slice(0, 5)))
    with pytest.raises(ValueError, match="region"):
        compute_features(vol, region=(slice(0, 1, 2), slice(0, 5), slice(0, 5)))
