"""The feature engine: all features of a padded block, band by band, in worker threads.

:func:`make_plan` turns a feature configuration and a voxel size into per-scale sigmas, kernel radii
and the padding a block needs; :class:`Engine` computes every feature of the block's core into one
(F, Z, H, W) tensor with the GEMM filters of :mod:`vemkit._filters`; :func:`single_threaded_ops` runs
torch single-threaded while the engine runs its own worker threads. The configuration is duck-typed
(``mode``, ``features``, ``scales``, ``n_eigenvalues``: a :class:`vemkit.features.FeatureConfig`).
Not for: reading blocks or the public API (:mod:`vemkit.features`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import numpy as np

from ._filters import (
    DOG_RATIO,
    OUTER_RATIO,
    TILE,
    banded_matrix,
    conv_rows,
    conv_t,
    derivative_kernels,
    eig2,
    eig3,
    gaussian_kernel,
    kernel_radius,
    round_up,
)
from ._progress import progress_bar
from ._voxel import check_voxel_size

__all__ = ["Engine", "axis_geometry", "feature_channels", "make_plan", "single_threaded_ops"]

CHUNK = 128  # rows per band: the y pass and the feature arithmetic of a band stay in cache


def axis_geometry(config, voxel_size):
    """Per-axis sigma factors and derivative factors (in-plane pixel units); z factor 0 in 2d."""
    if voxel_size is None:
        if config.mode == "3d":
            raise ValueError(
                "voxel_size is needed in '3d' mode (it scales the z sigma); pass voxel_size=(z, y, x) "
                "in nm, e.g. (8, 8, 8) for isotropic data"
            )
        vz, vy, vx = 1.0, 1.0, 1.0
    else:
        vz, vy, vx = check_voxel_size(voxel_size, name="voxel_size")
    ref = (vy + vx) / 2
    fac = (ref / vz, ref / vy, ref / vx)
    sig = (0.0 if config.mode == "2d" else fac[0], fac[1], fac[2])
    return sig, fac


def make_plan(config, voxel_size, core_shape=None):
    """Per-scale sigmas and radii and, for a core (Z, H, W), the input padding (lo, hi) per axis.

    ``pad_lo`` is the halo; ``pad_hi`` can be a little larger because results are computed in tiles
    (those extra rows and columns never reach the core).
    """
    sig, fac = axis_geometry(config, voxel_size)
    st = "ste" in config.features
    scales = []
    for s in config.scales:
        sigmas = tuple(s * f for f in sig)
        radii = tuple(kernel_radius(x) if x > 0 else 0 for x in sigmas)
        outer = tuple(kernel_radius(OUTER_RATIO * x) if (x > 0 and st) else 0 for x in sigmas)
        scales.append({"scale": s, "sigmas": sigmas, "radii": radii, "outer": outer})
    plan = {"factors": fac, "scales": scales}
    if core_shape is not None:
        _, H, W = core_shape
        lo, hi = [0, 0, 0], [0, 0, 0]
        for p in scales:
            (rz, ry, rx), (oz, oy, ox) = p["radii"], p["outer"]
            # the engine works on tiles of TILE rows/columns: the last one reads past the core
            extra_y = round_up(H) - H + oy + TILE
            lo = [max(lo[0], oz + rz), max(lo[1], oy + ry), max(lo[2], ox + rx)]
            hi = [max(hi[0], oz + rz), max(hi[1], extra_y + ry), max(hi[2], round_up(W) - W + ox + rx)]
        plan["pad_lo"], plan["pad_hi"] = tuple(lo), tuple(hi)
    return plan


def feature_channels(config):
    """First output channel of each (feature, scale index), and the channel count."""
    idx, start = {}, 0
    n_ev = config.n_eigenvalues
    for f in config.features:
        for i in range(len(config.scales)):
            idx[(f, i)] = start
            start += n_ev if f in ("ste", "hoge") else 1
    return idx, start


class Pool:
    """Work buffers reused by role (one pool per worker thread): fresh 4 MB tensors for every
    intermediate cost page faults and as much time as the arithmetic."""

    def __init__(self, torch, dev):
        self.torch, self.dev, self.bufs = torch, dev, {}

    def __call__(self, role, *shape):
        n = math.prod(shape)
        buf = self.bufs.get(role)
        if buf is None or buf.numel() < n:
            buf = self.bufs[role] = self.torch.empty(n, dtype=self.torch.float32, device=self.dev)
        return buf[:n].view(shape)


def to_tensor(torch, a, dev):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"active": 0, "saved": 1}


@contextlib.contextmanager
def single_threaded_ops(torch):
    """Run torch ops single-threaded while vemkit runs its own worker threads (one band of rows each),
    restoring torch's thread count afterwards. Yields the number of workers (torch's thread count).

    Thousands of small ops scale badly with intra-op threads (and stall when the cores are shared);
    independent bands in parallel scale well. Nested and concurrent calls share one saved value.
    """
    with _THREADS_LOCK:
        if _THREADS_STATE["active"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS_STATE["active"] += 1
        workers = _THREADS_STATE["saved"]
    try:
        yield workers
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["active"] -= 1
            if _THREADS_STATE["active"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


class Engine:
    """All features of the core (Z, H, W) of a padded float32 tensor, written into ``out`` (F, Z, H, W).

    Per scale and z-slab (a section in 2D; in 3D a plane of the z-filtered volume: the z kernels run
    first, as one GEMM) the rows are processed in bands that stay in cache: the x kernels run as one GEMM
    along x (slabs are stored transposed, x-major), then each needed y kernel runs as a banded GEMM along
    y that transposes back, so results land in plain (y, x) layout and are combined into features right
    away. In 2D a band also computes its gradients ``oy`` rows beyond its edges and smooths their
    products at the structure tensor's outer scale itself; in 3D the products of all slabs are smoothed
    along z first, then band by band in y and x. On the CPU the bands run in parallel worker threads,
    each op single-threaded.
    """

    def __init__(self, torch, xp, core, config, plan, out, dev):
        self.torch, self.xp, self.core, self.plan, self.out, self.dev = torch, xp, core, plan, out, dev
        self.three_d = config.mode == "3d"
        self.feats = set(config.features)
        self.chan, _ = feature_channels(config)
        self.n_ev = config.n_eigenvalues
        self.st = "ste" in self.feats
        self.band_rows = CHUNK if dev.type == "cpu" else 1 << 14
        self.local = threading.local()
        axes = (0, 1, 2) if self.three_d else (1, 2)
        nd = self.nd = len(axes)

        def triple(orders):  # derivative order per used axis -> kernel name per axis (None: no z pass)
            names = ["g", "g", "g"] if self.three_d else [None, "g", "g"]
            for a, o in zip(axes, orders):
                names[a] = ("g", "d1", "d2")[o]
            return tuple(names)

        unit = [tuple(int(i == j) for i in range(nd)) for j in range(nd)]
        self.pairs = [(i, j) for i in range(nd) for j in range(i, nd)]
        self.d1_keys = [triple(u) for u in unit]
        self.d2_keys = {(i, j): triple(tuple(unit[i][k] + unit[j][k] for k in range(nd))) for i, j in self.pairs}
        if nd == 2:  # 2D eigenvalues want 2 * (off-diagonal): fold it into the y kernel of d2/dydx
            self.d2_keys[(0, 1)] = (None, "d1x2", "d1")
        self.g_key = triple((0,) * nd)
        self.h_key = ("h" if self.three_d else None, "h", "h")
        keys = []
        if "gaussian" in self.feats or "dog" in self.feats:
            keys.append(self.g_key)
        if "dog" in self.feats:
            keys.append(self.h_key)
        if "ggm" in self.feats or self.st:
            keys.extend(self.d1_keys)
        if "log" in self.feats or "hoge" in self.feats:
            keys.extend(self.d2_keys.values())
        self.core_keys = list(dict.fromkeys(keys))
        self.scales = [self.scale_data(si, p) for si, p in enumerate(plan["scales"])]

    def pool(self, role, *shape):
        p = getattr(self.local, "pool", None)
        if p is None:
            p = self.local.pool = Pool(self.torch, self.dev)
        return p(role, *shape)

    def scale_data(self, si, p):
        """Kernels, banded matrices and the work geometry of one scale."""
        torch, dev = self.torch, self.dev
        _, H, W = self.core
        ry = p["radii"][1]
        oy, ox = p["outer"][1:]
        kern = []
        for sig_a, r_a, f_a in zip(p["sigmas"], p["radii"], self.plan["factors"]):
            k = {}
            if sig_a > 0:
                k = derivative_kernels(sig_a, r_a, f_a)
                k["h"] = gaussian_kernel(DOG_RATIO * sig_a, r_a)
                k["d1x2"] = 2.0 * k["d1"]
            kern.append(k)
        sd = {"si": si, "p": p, "kern": kern, "ybands": {n: banded_matrix(torch, k, dev) for n, k in kern[1].items()}}
        # bands of rows of the work region (core rows start at oy): (first row, rows, in the core?).
        # 2D: a band also computes the gradients oy rows around it and smooths their products itself.
        # 3D: the products are smoothed along z first, so bands of the margins feed a shared buffer.
        bands = [(oy + r, min(self.band_rows, H - r), True) for r in range(0, H, self.band_rows)]
        sd["fused"] = self.st and not self.three_d
        if self.st and self.three_d and oy > 0:
            bands = [(0, oy, False), *bands, (oy + H, oy, False)]
        sd["bands"] = bands
        sd["rows_in"] = max(sum(self.band_rows_x(sd, u, n)) for u, n, _ in bands) + 2 * ry  # slab y extent
        sd["ww"] = round_up(W) + 2 * ox  # x extent of the filter results
        sd["xbanks"] = {}
        if self.st:
            outer = [gaussian_kernel(OUTER_RATIO * s, r) if s > 0 else None for s, r in zip(p["sigmas"], p["outer"])]
            sd["outer_z"] = outer[0]
            sd["obands"] = {"g": banded_matrix(torch, outer[2], dev), "g2": banded_matrix(torch, 2.0 * outer[2], dev),
                            "y": banded_matrix(torch, outer[1], dev)}
        return sd

    def band_rows_x(self, sd, u0, n):
        """First work row and number of rows of the x-pass of a band (the y pass reads 2 ry more)."""
        oy = sd["p"]["outer"][1]
        nr = round_up(n)
        if sd["fused"]:  # gradients for rows u0 - oy .. u0 + n + oy, rounded to tiles
            return u0 - oy, max(round_up(nr + 2 * oy), oy + nr)
        return u0, nr

    def xbank(self, sd, names):
        key = tuple(names)
        if key not in sd["xbanks"]:
            sd["xbanks"][key] = to_tensor(self.torch, [sd["kern"][2][n] for n in names], self.dev)
        return sd["xbanks"][key]

    # ------------------------------------------------------------------------------------- tasks

    def band_task(self, sd, zch, zi, u0, n, is_core, prods):
        """Filter one band of rows of one slab and write its features (and gradient products)."""
        torch, pool = self.torch, self.pool
        Z, _, W = self.core
        si, p = sd["si"], sd["p"]
        ry = p["radii"][1]
        oz, oy, ox = p["outer"]
        zc = zi - oz
        in_core = is_core and 0 <= zc < Z
        keys = self.core_keys if in_core else self.d1_keys
        nr, ww = round_up(n), sd["ww"]
        fused = sd["fused"]
        xs, span = self.band_rows_x(sd, u0, n)
        nr_d1 = round_up(nr + 2 * oy) if fused else nr  # rows of the gradients
        xmajor = {}
        for kz in dict.fromkeys(k[0] for k in keys):
            xnames = list(dict.fromkeys(k[2] for k in keys if k[0] == kz))
            xbuf = pool(("xbuf", kz), ww, len(xnames), span + 2 * ry)
            conv_rows(torch, zch[kz][:, xs : xs + span + 2 * ry], self.xbank(sd, xnames), xbuf)
            for m, xn in enumerate(xnames):
                xmajor[(kz, xn)] = xbuf[:, m]
        d1 = set(self.d1_keys) if self.st else set()
        gauss_out = None
        if in_core and "gaussian" in self.feats and nr == n:  # straight into the output
            gauss_out = self.out[self.chan[("gaussian", si)], zc, u0 - oy : u0 - oy + n]
        res, full = {}, {}
        for key in keys:
            src, band = xmajor[(key[0], key[2])], sd["ybands"][key[1]]
            if key in d1:  # the structure tensor needs the margins
                full[key] = conv_t(torch, src, band, nr_d1, pool(key, nr_d1, ww))
                a = oy if fused else 0
                res[key] = full[key][a : a + n, ox : ox + W]
                continue
            src = src[:, u0 - xs :]
            if key == self.g_key and gauss_out is not None:
                res[key] = conv_t(torch, src[ox : ox + W], band, nr, gauss_out)
            else:
                res[key] = conv_t(torch, src[ox : ox + W], band, nr, pool(key, nr, W))[:n]
        del xmajor
        if in_core:
            out = self.out[:, zc, u0 - oy : u0 - oy + n]
            _write_core(torch, self, si, res, out, gaussian_done=gauss_out is not None)
        if fused:  # products of this band's gradients (with margins), smoothed right away
            rows = nr + 2 * oy
            band_prods = pool("band_prods", len(self.pairs), rows, ww)
            for c, (i, j) in enumerate(self.pairs):
                torch.mul(full[self.d1_keys[i]][:rows], full[self.d1_keys[j]][:rows], out=band_prods[c])
            del full, res
            self.outer_task(sd, band_prods, zc, 0, n, u0 - oy)
        elif self.st:
            for c, (i, j) in enumerate(self.pairs):
                torch.mul(full[self.d1_keys[i]][:n], full[self.d1_keys[j]][:n], out=prods[c, zi, u0 : u0 + n])

    def outer_task(self, sd, prods, zc, v0, n, r_out=None):
        """Smooth gradient products ``prods`` (pairs, rows, ww) of one slab along x and y for output rows
        v0 .. v0 + n (they read rows v0 .. v0 + n + 2 oy), and write the structure tensor eigenvalues
        into core rows ``r_out`` .. (default v0)."""
        torch = self.torch
        r_out = v0 if r_out is None else r_out
        W = self.core[2]
        oy, ox = sd["p"]["outer"][1:]
        ob = sd["obands"]
        nr, wt = round_up(n), round_up(W)
        sm = {}
        for c, (i, j) in enumerate(self.pairs):
            band = ob["g2"] if (self.nd == 2 and i != j) else ob["g"]
            xm = conv_t(torch, prods[c, v0 : v0 + nr + 2 * oy, : wt + 2 * ox], band, wt,
                         self.pool("xm", wt, nr + 2 * oy))
            sm[(i, j)] = conv_t(torch, xm[:W], ob["y"], nr, self.pool(("sm", i, j), nr, W))[:n]
        outs = [self.out[self.chan[("ste", sd["si"])] + i, zc, r_out : r_out + n] for i in range(self.n_ev)]
        if self.nd == 2:
            eig2(torch, sm[(0, 0)], sm[(0, 1)], sm[(1, 1)], outs, self.pool)
        else:
            s = sm
            eig3(torch, s[(0, 0)], s[(1, 1)], s[(2, 2)], s[(0, 1)], s[(0, 2)], s[(1, 2)], outs)

    # --------------------------------------------------------------------------------------- run

    def outer_bands(self):
        """(first row, rows) of the core in bands, for the structure tensor's outer smoothing."""
        H = self.core[1]
        return [(v0, min(self.band_rows, H - v0)) for v0 in range(0, H, self.band_rows)]

    def prods_buffer(self, sd, n_slabs):
        """Gradient products (pairs, slabs, H + 2 oy rounded up, ww); rows no band writes are zeroed (a
        banded GEMM multiplies them by zero weights, and garbage could be NaN)."""
        H = self.core[1]
        oy = sd["p"]["outer"][1]
        prods = self.pool("prods", len(self.pairs), n_slabs, round_up(H) + 2 * oy, sd["ww"])
        prods[:, :, H + 2 * oy :].zero_()
        return prods

    def run_2d(self, executor, progress):
        """Section by section, all bands of all scales in parallel."""

        Z = self.core[0]
        pz, py, px = self.plan["pad_lo"]
        steps = progress_bar(total=Z, desc="features (sections)", unit="section", disable=not progress)
        for z in range(Z):
            # the padded section, transposed once for all scales: x is the row axis of each slab
            sec = self.xp[pz + z]
            xt = self.pool("section_t", sec.shape[1], sec.shape[0]).copy_(sec.t())
            tasks = []
            for sd in self.scales[::-1]:  # large scales first: the longest tasks start early
                ry, rx = sd["p"]["radii"][1:]
                oy, ox = sd["p"]["outer"][1:]
                y0, x0 = py - oy - ry, px - ox - rx
                slab = {None: xt[x0 : x0 + sd["ww"] + 2 * rx, y0 : y0 + sd["rows_in"]]}
                if slab[None].shape[1] != sd["rows_in"]:  # make_plan and scale_data disagree: a bug
                    raise RuntimeError("vemkit.features: input padding too small for the bands")
                tasks += [functools.partial(self.band_task, sd, slab, z, u0, n, c, None) for u0, n, c in sd["bands"]]
            _run(executor, tasks)
            steps.update()
        steps.close()

    def run_3d(self, executor, progress):

        torch = self.torch
        Z = self.core[0]
        pz, py, px = self.plan["pad_lo"]
        for sd in progress_bar(self.scales, desc="features (scales)", unit="scale", disable=not progress):
            p = sd["p"]
            rz, ry, rx = p["radii"]
            oz, oy, ox = p["outer"]
            y0, x0 = py - oy - ry, px - ox - rx
            hi, wi = sd["rows_in"], sd["ww"] + 2 * rx
            zw = Z + 2 * oz
            znames = list(dict.fromkeys(k[0] for k in self.core_keys))
            crop = self.xp[pz - oz - rz : pz + Z + oz + rz, y0 : y0 + hi, x0 : x0 + wi]
            crop = self.pool("crop", crop.shape[0], wi, hi).copy_(crop.transpose(1, 2))
            zbuf = self.pool("zbuf", zw, len(znames), wi * hi)
            bank = to_tensor(torch, [sd["kern"][0][n] for n in znames], self.dev)
            flat = crop.view(crop.shape[0], -1)
            kz = bank.shape[1]
            _run(executor, [
                functools.partial(conv_rows, torch, flat[z0 : z0 + m + kz - 1], bank, zbuf[z0 : z0 + m])
                for z0, m in _splits(zw, executor)])
            zbuf = zbuf.view(zw, len(znames), wi, hi)
            prods = self.prods_buffer(sd, zw) if self.st else None
            tasks = []
            for zi in range(zw):
                slab = {name: zbuf[zi, m] for m, name in enumerate(znames)}
                tasks += [functools.partial(self.band_task, sd, slab, zi, u0, n, c, prods)
                          for u0, n, c in sd["bands"]]
            _run(executor, tasks)
            if self.st:
                rows = prods.shape[2]
                sz = self.pool("smooth_z", len(self.pairs), Z, rows * sd["ww"])
                zbank = to_tensor(torch, [sd["outer_z"]], self.dev)
                tasks = []
                for c in range(len(self.pairs)):
                    src = prods[c].view(zw, -1)
                    for z0, m in _splits(Z, executor):
                        tasks.append(functools.partial(conv_rows, torch, src[z0 : z0 + m + 2 * oz], zbank,
                                                       sz[c, z0 : z0 + m].view(m, 1, -1)))
                _run(executor, tasks)
                sz = sz.view(len(self.pairs), Z, rows, sd["ww"])
                _run(executor, [functools.partial(self.outer_task, sd, sz[:, zc], zc, v0, n)
                                for zc in range(Z) for v0, n in self.outer_bands()])

    def run(self, executor=None, progress=False):
        (self.run_3d if self.three_d else self.run_2d)(executor, progress)


def _submit(executor, tasks):
    """Start callables in the worker threads (or run them now when there are none); their futures."""
    if executor is None:
        for t in tasks:
            t()
        return []
    return [executor.submit(t) for t in tasks]


def _wait(futures):
    for f in futures:
        f.result()  # errors propagate


def _run(executor, tasks):
    """Run callables, in the worker threads when there are any, and wait for them."""
    _wait(_submit(executor, tasks))


def _splits(n, executor):
    """(start, count) pieces of range(n), one per worker."""
    parts = 1 if executor is None else executor._max_workers
    bounds = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _write_core(torch, eng, si, res, out, gaussian_done=False):
    """Combine the filter responses ``res`` of one band (core rows and columns) into the feature
    channels ``out`` (F, rows, W) of scale ``si``."""
    feats, chan, n_ev = eng.feats, eng.chan, eng.n_ev
    if "gaussian" in feats and not gaussian_done:
        out[chan[("gaussian", si)]].copy_(res[eng.g_key])
    if "dog" in feats:
        torch.sub(res[eng.g_key], res[eng.h_key], out=out[chan[("dog", si)]])
    if "ggm" in feats:
        g1 = [res[k] for k in eng.d1_keys]
        o = torch.mul(g1[0], g1[0], out=out[chan[("ggm", si)]])
        for g in g1[1:]:
            o.addcmul_(g, g)
        o.sqrt_()
    if "log" in feats or "hoge" in feats:
        h = {ij: res[k] for ij, k in eng.d2_keys.items()}
        log_out = out[chan[("log", si)]] if "log" in feats else None
        if "hoge" in feats:
            outs = [out[chan[("hoge", si)] + i] for i in range(n_ev)]
            if eng.nd == 2:
                eig2(torch, h[(0, 0)], h[(0, 1)], h[(1, 1)], outs, eng.pool, trace_out=log_out)
            else:
                eig3(torch, h[(0, 0)], h[(1, 1)], h[(2, 2)], h[(0, 1)], h[(0, 2)], h[(1, 2)], outs)
        if log_out is not None and (eng.nd == 3 or "hoge" not in feats):
            torch.add(h[(0, 0)], h[(1, 1)], out=log_out)
            if eng.nd == 3:
                log_out.add_(h[(2, 2)])
