"""The shapes of the synthetic phantom: Voronoi cells with membranes, mitochondria, vesicles.

Everything is built in physical coordinates (nm) on the voxel grid of :func:`vemkit.synthetic.make_phantom`,
drawing only from the random generators it is handed, so the same seed gives the same shapes:
:func:`cell_seeds` and :func:`voronoi` make the cells and their membranes (with the partial volume of
each voxel), :class:`Mitochondria` and :class:`Vesicles` place and render the organelles (labels and
grey values before the imaging model). Not for: the imaging model, defects or the public API
(:mod:`vemkit.synthetic`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["Mitochondria", "Vesicles", "cell_seeds", "voronoi"]

# ---- geometry (all lengths in nm) ----
_MEMBRANE_NM = 16.0  # two apposed plasma membranes and the cleft between them
_MITO_LENGTH_NM = (300.0, 1500.0)
_MITO_DIAMETER_NM = (150.0, 400.0)
_MITO_RIM_NM = 18.0  # outer + inner membrane
_MITO_PAIR_PROB = 0.35  # chance that a mitochondrion gets a touching partner (the first always does)
_VESICLES_PER_CLUSTER = 25
_VESICLE_DIAMETER_NM = (30.0, 60.0)
_VESICLE_RIM_NM = 8.0
_BLOCK_NM = 300.0  # block size of the Voronoi computation

# ---- intensities before the imaging model (0 = black, 1 = white) ----
_MITO_MATRIX = 0.36
_MITO_CRISTAE = 0.16
_MITO_RIM = 0.18
_VESICLE_LUMEN = 0.72
_VESICLE_RIM = 0.16


# ----------------------------------------------------------------------------------------------------
# cells


def _coords(shape, vs):
    """Physical coordinates (nm) of the voxel centres along each axis (voxel 0 is at 0)."""
    return [np.arange(n, dtype=np.float64) * v for n, v in zip(shape, vs)]


def cell_seeds(rng, n_cells, spacing, shape, vs):
    """Seed points (nm): ``n_cells`` inside the volume and more, at the same density (one per
    ``spacing`` cubed), in a shell one spacing thick around it; kept apart by dart throwing."""
    lo = -0.5 * np.asarray(vs)
    hi = lo + np.asarray(shape) * np.asarray(vs)
    volume = float(np.prod(hi - lo))
    pad = spacing
    plo, phi = lo - pad, hi + pad
    n_shell = max(1, round((float(np.prod(phi - plo)) - volume) / spacing**3))
    min_dist = 0.6 * spacing

    accepted = np.empty((0, 3))

    def throw(n, inside, min_dist):
        nonlocal accepted
        placed = 0
        tries = 0
        while placed < n:
            batch = rng.uniform(plo if not inside else lo, phi if not inside else hi, size=(256, 3))
            for p in batch:
                tries += 1
                if tries > 200 * n + 1000:  # too crowded: relax the spacing
                    min_dist *= 0.8
                    tries = 0
                if not inside and np.all((p >= lo) & (p <= hi)):
                    continue
                if len(accepted) and np.min(np.sum((accepted - p) ** 2, axis=1)) < min_dist**2:
                    continue
                accepted = np.vstack([accepted, p])
                placed += 1
                if placed == n:
                    break

    throw(n_cells, True, min_dist)
    throw(n_shell, False, min_dist)
    return accepted


def voronoi(shape, vs, seeds, rng):
    """Voronoi cells of ``seeds`` on the voxel grid, block by block.

    Returns the nearest seed of each voxel, the fraction of the voxel covered by the membrane slab
    (partial volume, scaled by a staining factor drawn from ``rng`` for each pair of cells) and the
    membrane mask: voxels that a boundary passes through or that lie within half a membrane thickness
    of one.
    """
    stain = rng.uniform(0.7, 1.1, size=(len(seeds), len(seeds))).astype(np.float32)
    stain = np.triu(stain) + np.triu(stain, 1).T
    cells = np.empty(shape, np.int32)
    cover = np.empty(shape, np.float32)
    membrane = np.empty(shape, bool)
    coords = _coords(shape, vs)
    vsa = np.asarray(vs)
    half_t = _MEMBRANE_NM / 2
    gmax = max(half_t, float(vsa.sum()) / 2) + 1.0
    blocks = [max(1, min(n, round(_BLOCK_NM / v))) for n, v in zip(shape, vs)]
    for z0 in range(0, shape[0], blocks[0]):
        for y0 in range(0, shape[1], blocks[1]):
            for x0 in range(0, shape[2], blocks[2]):
                sl = tuple(slice(a, a + b) for a, b in zip((z0, y0, x0), blocks))
                cz, cy, cx = (c[s] for c, s in zip(coords, sl))
                centre = np.array([(c[0] + c[-1]) / 2 for c in (cz, cy, cx)])
                radius = 0.5 * math.sqrt(sum((c[-1] - c[0]) ** 2 for c in (cz, cy, cx)))
                dist = np.sqrt(np.sum((seeds - centre) ** 2, axis=1))
                cand = np.flatnonzero(dist <= dist.min() + 2 * radius + 2 * gmax)
                if len(cand) == 1:
                    cells[sl] = cand[0]
                    cover[sl] = 0
                    membrane[sl] = False
                    continue
                s = seeds[cand] - centre
                dz = ((cz - centre[0])[:, None] - s[:, 0]).astype(np.float32)
                dy = ((cy - centre[1])[:, None] - s[:, 1]).astype(np.float32)
                dx = ((cx - centre[2])[:, None] - s[:, 2]).astype(np.float32)
                d2 = dz[:, None, None, :] ** 2 + dy[None, :, None, :] ** 2 + dx[None, None, :, :] ** 2
                i = d2.argmin(axis=-1)
                d1 = np.take_along_axis(d2, i[..., None], axis=-1)
                # distance to the bisector plane between seed i and seed j: (|p-sj|^2 - |p-si|^2) / 2|si-sj|
                diff = s[None, :, :] - s[:, None, :]
                length = np.sqrt(np.sum(diff**2, axis=-1))
                np.fill_diagonal(length, 1.0)
                inv = (0.5 / length).astype(np.float32)
                never = np.zeros_like(inv)
                np.fill_diagonal(never, np.inf)
                g_all = (d2 - d1) * inv[i] + never[i]
                j = g_all.argmin(axis=-1)
                g = np.take_along_axis(g_all, j[..., None], axis=-1)[..., 0]
                # extent of a voxel along the boundary normal
                foot = (np.abs(diff) @ vsa / length).astype(np.float32)
                w = foot[i, j]
                overlap = np.minimum(g + w / 2, half_t) - np.maximum(g - w / 2, -half_t)
                cells[sl] = cand[i]
                cover[sl] = np.clip(overlap / w, 0, 1) * stain[cand[i], cand[j]]
                # membrane where any boundary plane passes through the voxel (so that cells are always
                # separated by membrane voxels) or lies within half a membrane thickness
                membrane[sl] = np.any(g_all < np.maximum(half_t, foot / 2)[i], axis=-1)
    return cells, cover, membrane


def _nearest_and_gap(points, seeds, reach=None):
    """Nearest seed of each point and its distance (nm) to that seed's cell boundary.

    With ``reach`` (nm), only the seeds that can matter for gaps below ``reach`` are compared (faster
    for a compact group of points); gaps below ``reach`` stay exact, larger ones may be overestimated.
    """
    index = np.arange(len(seeds))
    if reach is not None and len(seeds) > 8:
        centre = points.mean(axis=0)
        extent = float(np.sqrt(np.max(np.sum((points - centre) ** 2, axis=1))))
        dist = np.sqrt(np.sum((seeds - centre) ** 2, axis=1))
        index = np.flatnonzero(dist <= dist.min() + 2 * extent + 2 * reach)
        seeds = seeds[index]
    d2 = np.sum((points[:, None, :] - seeds[None, :, :]) ** 2, axis=-1)
    i = d2.argmin(axis=1)
    rows = np.arange(len(points))
    d1 = d2[rows, i]
    length = np.sqrt(np.sum((seeds[None, :, :] - seeds[i][:, None, :]) ** 2, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (d2 - d1[:, None]) / (2 * length)
    g[rows, i] = np.inf
    return index[i], g.min(axis=1)


def _random_unit(rng):
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _perpendicular(rng, u):
    v = np.cross(u, _random_unit(rng))
    while np.linalg.norm(v) < 1e-6:
        v = np.cross(u, _random_unit(rng))
    return v / np.linalg.norm(v)


def _box(lo_nm, hi_nm, shape, vs):
    """Voxel slices covering the physical box [lo_nm, hi_nm], clipped to the volume (None if empty)."""
    sl = []
    for lo, hi, n, v in zip(lo_nm, hi_nm, shape, vs):
        a = max(0, math.floor(lo / v))
        b = min(n, math.ceil(hi / v) + 1)
        if b <= a:
            return None
        sl.append(slice(a, b))
    return tuple(sl)


def _box_coords(sl, vs):
    """Physical coordinates of a box's voxels, shaped to broadcast as (z, 1, 1), (1, y, 1), (1, 1, x)."""
    out = []
    for axis, (s, v) in enumerate(zip(sl, vs)):
        c = (np.arange(s.start, s.stop, dtype=np.float32) * np.float32(v)).reshape(
            [-1 if a == axis else 1 for a in range(3)]
        )
        out.append(c)
    return out


def _slab_cover(d, w, inner, outer):
    """Fraction of a voxel (extent ``w`` across the surface, centre at ``d``) inside [inner, outer]."""
    overlap = np.minimum(d + w / 2, outer) - np.maximum(d - w / 2, inner)
    return np.clip(overlap / w, 0, 1)


# ----------------------------------------------------------------------------------------------------
# mitochondria


class Mitochondria:
    """Bent capsules inside cells; where two overlap, each voxel goes to the one whose axis is nearer
    relative to its radius, so touching partners keep their own ids and share a flat contact face."""

    def __init__(self, shape, vs, seeds, cells, membrane):
        self.shape, self.vs, self.seeds, self.cells, self.membrane = shape, vs, seeds, cells, membrane
        self.labels = np.zeros(shape, np.uint32)
        self.intensity = np.zeros(shape, np.float32)
        self.best = None  # normalised distance d / r of the winning object, made lazily
        self.count = 0
        self._pts = np.empty((0, 3))  # points along the axes of all placed mitochondria,
        self._pr = np.empty(0)  # their radii
        self._owner = np.empty(0, int)  # and which mitochondrion (0-based) they belong to
        self.infos = []  # (centre, direction, body length, radius, host cell) of every placed one
        lo = -0.5 * np.asarray(vs)
        self.lo, self.hi = lo, lo + np.asarray(shape) * np.asarray(vs)

    def _axis_samples(self, path):
        pts = [path[0]]
        for a, b in itertools.pairwise(path):
            n = max(2, int(np.linalg.norm(b - a) / 20.0) + 1)
            pts.append(a + (b - a) * np.linspace(0, 1, n)[1:, None])
        return np.vstack([np.atleast_2d(p) for p in pts])

    def _fits(self, path, radius, host, partner=None):
        """Whether a tube stays inside its host cell, clear of the membrane and of other mitochondria."""
        pts = self._axis_samples(path)
        near = np.all((pts >= self.lo - radius) & (pts <= self.hi + radius), axis=1)
        if not near.any():
            return False
        pts = pts[near]
        i, g = _nearest_and_gap(pts, self.seeds, reach=radius + 2 * _MEMBRANE_NM)
        if np.any(i != host) or np.any(g < radius + _MEMBRANE_NM):
            return False
        if len(self._pts):
            keep = self._owner != (-1 if partner is None else partner)
            d2 = np.sum((pts[:, None, :] - self._pts[None, keep, :]) ** 2, axis=-1)
            if np.any(np.sqrt(d2) < radius + self._pr[None, keep] + 20.0):
                return False
        return True

    def surface_distance(self, points, within):
        """Distance (nm) from each point to the nearest mitochondrion surface (negative inside);
        distances beyond ``within`` nm may come back as ``inf``."""
        out = np.full(len(points), np.inf)
        if not len(self._pts) or not len(points):
            return out
        centre = points.mean(axis=0)
        extent = float(np.sqrt(np.max(np.sum((points - centre) ** 2, axis=1))))
        dist = np.sqrt(np.sum((self._pts - centre) ** 2, axis=1)) - self._pr
        near = dist <= extent + within
        if near.any():
            d2 = np.sum((points[:, None, :] - self._pts[None, near, :]) ** 2, axis=-1)
            out = np.min(np.sqrt(d2) - self._pr[None, near], axis=1)
        return out

    def place(self, rng, n):
        """Place up to ``n`` mitochondria; returns the (label, label) pairs made to touch."""
        pairs = []
        pending = None  # index of a mitochondrion waiting for its touching partner
        while self.count < n:
            if pending is not None:
                made = self._place_partner(rng, pending)
                if made:
                    pairs.append((pending + 1, self.count))
                pending = None
                continue
            if not self._place_single(rng, straight=False):
                break
            first = len(pairs) == 0 and self.count == 1
            if self.count < n and (first or rng.random() < _MITO_PAIR_PROB):
                pending = self.count - 1
        return pairs

    def _place_single(self, rng, straight):
        vs = np.asarray(self.vs)
        for attempt in range(60):
            length = rng.uniform(*_MITO_LENGTH_NM) * (0.85 ** (attempt // 10))
            radius = rng.uniform(*_MITO_DIAMETER_NM) / 2 * (0.9 ** (attempt // 20))
            centre = rng.uniform(self.lo, self.hi)
            u = _random_unit(rng)
            body = max(length - 2 * radius, 1.0)  # the caps add a radius at each end
            bend = 0.0 if straight else rng.uniform(0, 0.2) * body
            mid = centre + _perpendicular(rng, u) * bend
            path = np.array([centre - u * body / 2, mid, centre + u * body / 2])
            idx = np.clip(np.round(centre / vs).astype(int), 0, np.asarray(self.shape) - 1)
            host = int(self.cells[tuple(idx)])
            if self._fits(path, radius, host):
                self._render(rng, path, radius, host)
                self.infos.append((centre, u, body, radius, host))
                return True
        return False

    def _place_partner(self, rng, k):
        centre0, u0, body0, r0, host = self.infos[k]
        for _ in range(40):
            radius = rng.uniform(*_MITO_DIAMETER_NM) / 2
            length = rng.uniform(*_MITO_LENGTH_NM)
            body = max(length - 2 * radius, 1.0)
            e = _perpendicular(rng, u0)
            # rotate the direction about the offset vector: the two axes never come closer than the offset
            theta = rng.uniform(-0.35, 0.35)
            u = u0 * math.cos(theta) + np.cross(e, u0) * math.sin(theta)
            centre = centre0 + e * 0.9 * (r0 + radius) + u0 * rng.uniform(-0.25, 0.25) * min(body0, body)
            path = np.array([centre - u * body / 2, centre, centre + u * body / 2])
            if self._fits(path, radius, host, partner=k):
                self._render(rng, path, radius, host)
                self.infos.append((centre, u, body, radius, host))
                return True
        return False

    def _render(self, rng, path, radius, host):
        pts = self._axis_samples(path)
        self._pts = np.vstack([self._pts, pts])
        self._pr = np.concatenate([self._pr, np.full(len(pts), radius)])
        self._owner = np.concatenate([self._owner, np.full(len(pts), self.count)])
        self.count += 1
        label = self.count
        vs = self.vs
        sl = _box(path.min(axis=0) - radius, path.max(axis=0) + radius, self.shape, vs)
        if sl is None:
            return
        if self.best is None:
            self.best = np.full(self.shape, np.inf, np.float32)
        pz, py, px = _box_coords(sl, vs)
        best_d2 = None
        arc = 0.0
        for a, b in itertools.pairwise(path):
            ab = (b - a).astype(np.float32)
            seg = float(np.linalg.norm(ab))
            if seg == 0:
                continue
            az, ay, ax = (np.float32(c) for c in a)
            t = ((pz - az) * ab[0] + (py - ay) * ab[1] + (px - ax) * ab[2]) / np.float32(seg * seg)
            np.clip(t, 0, 1, out=t)
            qz = pz - az - t * ab[0]
            qy = py - ay - t * ab[1]
            qx = px - ax - t * ab[2]
            d2 = qz * qz + qy * qy + qx * qx
            s = np.float32(arc) + t * np.float32(seg)
            if best_d2 is None:
                best_d2, best_s, nz, ny, nx = d2, s, qz, qy, qx
            else:
                closer = d2 < best_d2
                best_d2 = np.where(closer, d2, best_d2)
                best_s = np.where(closer, s, best_s)
                nz, ny, nx = (np.where(closer, q, n0) for q, n0 in ((qz, nz), (qy, ny), (qx, nx)))
            arc += seg
        d = np.sqrt(best_d2)
        dn = d / np.float32(radius)
        win = (dn < 1) & (dn < self.best[sl]) & (self.cells[sl] == host) & ~self.membrane[sl]
        if not win.any():
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            foot = (np.abs(nz) * vs[0] + np.abs(ny) * vs[1] + np.abs(nx) * vs[2]) / d
        foot = np.where(np.isfinite(foot), foot, min(vs)).astype(np.float32)
        # cristae: stripes across the long axis, wobbling with a transverse coordinate
        u = (path[-1] - path[0]) / max(np.linalg.norm(path[-1] - path[0]), 1e-9)
        v = _perpendicular(rng, u)
        period = rng.uniform(45.0, 80.0)
        trans = (pz - path[1][0]) * v[0] + (py - path[1][1]) * v[1] + (px - path[1][2]) * v[2]
        wobble = rng.uniform(5.0, 15.0) * np.sin(
            2 * np.pi * trans / rng.uniform(120.0, 250.0) + rng.uniform(0, 6.3)
        )
        phase = 2 * np.pi * (best_s + wobble) / np.float32(period) + np.float32(rng.uniform(0, 2 * np.pi))
        stripes = (0.5 + 0.5 * np.cos(phase)) ** 4
        inner = np.clip((np.float32(radius - _MITO_RIM_NM) - d) / 10.0, 0, 1)  # fade out near the rim
        level = np.float32(_MITO_MATRIX * rng.uniform(0.92, 1.08))
        value = level + np.float32(_MITO_CRISTAE) * (stripes - 0.2) * inner
        rim = _slab_cover(d, foot, radius - _MITO_RIM_NM, radius)
        value = value * (1 - rim) + np.float32(_MITO_RIM) * rim
        self.best[sl][win] = dn[win]
        self.labels[sl][win] = label
        self.intensity[sl][win] = value[win]


# ----------------------------------------------------------------------------------------------------
# vesicles


class Vesicles:
    """Clusters of small spheres next to membranes, each inside one cell and clear of mitochondria.

    Sections are imaged in projection: a voxel belongs to a vesicle when the sphere reaches into the
    voxel's section slab within the voxel's in-plane footprint, so vesicles thinner than a section
    still appear.
    """

    def __init__(self, shape, vs, seeds, cells, membrane, mito):
        self.shape, self.vs, self.seeds, self.cells = shape, vs, seeds, cells
        self.membrane, self.mito = membrane, mito
        self.labels = np.zeros(shape, np.uint32)
        self.intensity = np.zeros(shape, np.float32)
        self.count = 0
        lo = -0.5 * np.asarray(vs)
        self.lo, self.hi = lo, lo + np.asarray(shape) * np.asarray(vs)

    def place(self, rng, n):
        if n == 0:
            return
        anchors = np.flatnonzero(self.membrane)
        if len(anchors) == 0:
            return
        n_clusters = max(1, round(n / _VESICLES_PER_CLUSTER))
        sizes = np.bincount(rng.integers(0, n_clusters, size=n), minlength=n_clusters)
        vs = np.asarray(self.vs)
        centres, radii = np.empty((0, 3)), np.empty(0)
        for size in sizes:
            if size == 0:
                continue
            anchor = np.array(np.unravel_index(anchors[rng.integers(len(anchors))], self.shape)) * vs
            host, _ = _nearest_and_gap(anchor[None], self.seeds)
            host = int(host[0])
            inward = self.seeds[host] - anchor
            inward /= max(np.linalg.norm(inward), 1e-9)
            spread = rng.uniform(60.0, 120.0)
            centre = anchor + inward * (spread + _MEMBRANE_NM)
            # candidates in a ball around the cluster centre, screened all at once
            m = 15 * size
            r = rng.uniform(*_VESICLE_DIAMETER_NM, size=m) / 2
            direction = rng.standard_normal((m, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            p = centre + direction * (spread * rng.random(m) ** (1 / 3))[:, None]
            ok = np.all((p >= self.lo - r[:, None]) & (p <= self.hi + r[:, None]), axis=1)
            i, g = _nearest_and_gap(p, self.seeds, reach=2 * _VESICLE_DIAMETER_NM[1])
            ok &= (i == host) & (g >= r + _MEMBRANE_NM / 2 + 4.0)
            ok &= self.mito.surface_distance(p, within=100.0) >= r + 10.0
            close = np.sum((centres - centre) ** 2, axis=1) < (spread + 2 * _VESICLE_DIAMETER_NM[1]) ** 2
            near_c, near_r = centres[close], radii[close]
            placed = 0
            for k in np.flatnonzero(ok):
                if (
                    len(near_c)
                    and np.min(np.sqrt(np.sum((near_c - p[k]) ** 2, axis=1)) - near_r) < r[k] + 3.0
                ):
                    continue
                near_c = np.vstack([near_c, p[k]])
                near_r = np.append(near_r, r[k])
                centres = np.vstack([centres, p[k]])
                radii = np.append(radii, r[k])
                self._render(p[k], r[k], host)
                placed += 1
                if placed == size:
                    break

    def _render(self, centre, radius, host):
        vs = self.vs
        reach = np.array([radius + vs[0] / 2, radius, radius])
        sl = _box(centre - reach, centre + reach, self.shape, vs)
        self.count += 1
        if sl is None:
            return
        pz, py, px = _box_coords(sl, vs)
        cz, cy, cx = (np.float32(c) for c in centre)
        dz = np.maximum(np.abs(pz - cz) - np.float32(vs[0] / 2), 0)  # distance to the section slab
        dy, dx = py - cy, px - cx
        d = np.sqrt(dz * dz + dy * dy + dx * dx)
        win = (
            (d < radius)
            & (self.cells[sl] == host)
            & ~self.membrane[sl]
            & (self.mito.labels[sl] == 0)
            & (self.labels[sl] == 0)
        )
        if not win.any():
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            foot = (np.abs(dy) * vs[1] + np.abs(dx) * vs[2]) / np.sqrt(dy * dy + dx * dx)
        foot = np.where(np.isfinite(foot), foot, min(vs[1:])).astype(np.float32)
        rim = _slab_cover(d, foot, radius - _VESICLE_RIM_NM, radius)
        value = np.float32(_VESICLE_LUMEN) * (1 - rim) + np.float32(_VESICLE_RIM) * rim
        self.labels[sl][win] = self.count
        self.intensity[sl][win] = value[win]
