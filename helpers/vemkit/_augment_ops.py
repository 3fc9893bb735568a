"""The transforms behind :class:`vemkit.augment.Augmenter`, in the order it runs them: exact flips and
quarter turns, one resampling pass (rotation, zoom, elastic deformation, misalignment), intensity
changes and EM section defects. Each works in place on a :class:`State`.

Not for: calling directly (use :class:`vemkit.augment.Augmenter`, which checks inputs and seeds the
random streams).
"""

from __future__ import annotations

import math

__all__ = ["State", "flip", "intensity", "resample", "rot90"]

_BLUR_TRUNCATE = 3.0  # Gaussian blur kernel radius in sigmas


class State:
    """The tensors being augmented and what every stage needs to know about them."""

    def __init__(self, torch, img, lab, ext, gens, cfg, nd, iso):
        self.torch, self.img, self.lab, self.ext = torch, img, lab, ext
        self.gens, self.cfg, self.nd, self.iso = gens, cfg, nd, iso
        self.n = img.shape[0]
        self.spatial = tuple(img.shape[2:])
        self.device = img.device

    def fire(self, name, shape=None):
        """Bernoulli draws for augmentation ``name`` (one per sample unless ``shape`` is given)."""
        p = getattr(self.cfg, name)
        shape = (self.n,) if shape is None else shape
        return self.torch.rand(shape, generator=self.gens[name]) < p

    def index(self, mask):
        """Device index tensor of the True entries of a CPU per-sample mask."""
        return mask.nonzero().flatten().to(self.device)

    def uniform(self, name, lo, hi, shape):
        return lo + (hi - lo) * self.torch.rand(shape, generator=self.gens[name], dtype=self.torch.float64)

    def log_uniform(self, name, rng, shape):
        lo, hi = math.log(rng[0]), math.log(rng[1])
        return self.uniform(name, lo, hi, shape).exp()


# ------------------------------------------------------------------------------------ exact spatial


def _apply_spatial(st, idx, fn):
    """Replace samples ``idx`` of image, labels and extras by ``fn`` of them (fn gets the sample axis)."""
    st.img[idx] = fn(st.img[idx], 2)
    st.lab[idx] = fn(st.lab[idx], 1)
    if st.ext is not None:
        st.ext[idx] = fn(st.ext[idx], 2)


def flip(st):
    if st.cfg.flip <= 0:
        return
    fire = st.fire("flip", (st.n, st.nd))
    for axis in range(st.nd):
        if fire[:, axis].any():
            _apply_spatial(st, st.index(fire[:, axis]), lambda t, off, a=axis: t.flip(off + a))


def rot90(st):
    if st.cfg.rot90 <= 0:
        return
    torch = st.torch
    fire = st.fire("rot90")
    k = torch.randint(1, 4, (st.n,), generator=st.gens["rot90"])
    if st.nd == 2:
        planes = [(0, 1)]
    elif st.iso:
        planes = [(0, 1), (0, 2), (1, 2)]
    else:
        planes = [(1, 2)]
    plane = torch.randint(0, len(planes), (st.n,), generator=st.gens["rot90"])
    for p, (a, b) in enumerate(planes):
        if st.spatial[a] != st.spatial[b]:  # a quarter turn would change the shape: half turn instead
            k = torch.where(plane == p, torch.full_like(k, 2), k)
        for kk in (1, 2, 3):
            sel = fire & (plane == p) & (k == kk)
            if sel.any():
                def turn(t, off, a=a, b=b, kk=kk):
                    return torch.rot90(t, kk, (off + a, off + b))

                _apply_spatial(st, st.index(sel), turn)


# -------------------------------------------------------------------------------- resampled spatial


def _elastic_field(st, m, n_comp):
    """Smooth random displacements (m, n_comp, *spatial) in pixels, components in (z,) y, x order."""
    torch = st.torch
    F = torch.nn.functional
    cfg = st.cfg
    dtype = st.img.dtype
    spacing = cfg.elastic_spacing

    def n_ctrl(size):
        return 1 if size == 1 else max(2, round(size / spacing) + 1)

    Y, X = st.spatial[-2:]
    Z = st.spatial[0] if st.nd == 3 else 1
    nz, ny, nx = n_ctrl(Z), n_ctrl(Y), n_ctrl(X)
    ctrl = torch.randn((m, n_comp, nz, ny, nx), generator=st.gens["elastic"], dtype=dtype) * cfg.elastic_strength
    ctrl = ctrl.to(st.device)
    if ny == 1 or nx == 1:
        plane = F.interpolate(ctrl.reshape(m * n_comp * nz, 1, ny, nx), size=(Y, X), mode="bilinear",
                              align_corners=True)
    else:
        plane = F.interpolate(ctrl.reshape(m * n_comp * nz, 1, ny, nx), size=(Y, X), mode="bicubic",
                              align_corners=True)
    plane = plane.reshape(m, n_comp, nz, Y, X)
    if st.nd == 2:
        return plane[:, :, 0]
    if nz == 1:
        return plane.expand(m, n_comp, Z, Y, X)
    lin = plane.reshape(m * n_comp, nz, Y * X).transpose(1, 2)
    lin = F.interpolate(lin, size=Z, mode="linear", align_corners=True)
    return lin.transpose(1, 2).reshape(m, n_comp, Z, Y, X)


def _misalign_offsets(st):
    """Integer (dy, dx) offsets per sample and section (N, Z, 2), or None (2D patches, never fires)."""
    torch = st.torch
    cfg = st.cfg
    if st.nd != 3 or cfg.misalign <= 0:
        return None
    Z = st.spatial[0]
    g = st.gens["misalign"]
    event = st.fire("misalign", (st.n, Z))
    slip = torch.rand((st.n, Z), generator=g) < cfg.misalign_slip
    step = event & ~slip
    step[:, 0] = False  # a step at the first section moves the whole patch: no misalignment
    slip = event & slip
    # a shift of 1..max pixels in a random direction; its largest component is always >= 1 after rounding
    radius = 1.0 + (cfg.misalign_max_shift - 1.0) * torch.rand((st.n, Z), generator=g, dtype=torch.float64)
    angle = 2 * math.pi * torch.rand((st.n, Z), generator=g, dtype=torch.float64)
    shift = torch.stack([radius * angle.sin(), radius * angle.cos()], dim=-1).round()
    shift = shift.clamp(-cfg.misalign_max_shift, cfg.misalign_max_shift)
    offsets = torch.cumsum(shift * step[..., None], dim=1) + shift * slip[..., None]
    return offsets


def resample(st):
    """In-plane rotation, zoom, elastic deformation and misalignment in one grid_sample pass."""
    torch = st.torch
    F = torch.nn.functional
    cfg = st.cfg
    n = st.n
    fire_rot = st.fire("rotate")
    angle = st.uniform("rotate", -cfg.rotate_max, cfg.rotate_max, (n,)) * (math.pi / 180)
    fire_scale = st.fire("scale")
    factor = st.log_uniform("scale", cfg.scale_range, (n,))
    fire_el = st.fire("elastic")
    offsets = _misalign_offsets(st)
    fire_mis = torch.zeros(n, dtype=torch.bool) if offsets is None else (offsets != 0).flatten(1).any(1)
    sel = fire_rot | fire_scale | fire_el | fire_mis
    if not sel.any():
        return
    ids = sel.nonzero().flatten()
    m = len(ids)
    dtype, dev = st.img.dtype, st.device
    angle = torch.where(fire_rot, angle, 0.0)[ids]
    zoom = torch.where(fire_scale, factor, 1.0)[ids]
    iso3 = st.iso and st.nd == 3

    Y, X = st.spatial[-2:]
    Z = st.spatial[0] if st.nd == 3 else 1
    cy, cx, cz = (Y - 1) / 2, (X - 1) / 2, (Z - 1) / 2
    # output voxel p maps to source voxel R(angle) (p - c) / zoom + c (+ displacement - misalignment)
    cos = (angle.cos() / zoom).to(dtype).to(dev).view(m, 1, 1, 1)
    sin = (angle.sin() / zoom).to(dtype).to(dev).view(m, 1, 1, 1)
    py = (torch.arange(Y, dtype=dtype, device=dev) - cy).view(1, 1, Y, 1)
    px = (torch.arange(X, dtype=dtype, device=dev) - cx).view(1, 1, 1, X)
    src_y = (cos * py - sin * px + cy).expand(m, Z, Y, X)
    src_x = (sin * py + cos * px + cx).expand(m, Z, Y, X)
    src_z = None
    if iso3:
        pz = (torch.arange(Z, dtype=dtype, device=dev) - cz).view(1, Z, 1, 1)
        src_z = (pz / zoom.to(dtype).to(dev).view(m, 1, 1, 1) + cz).expand(m, Z, Y, X)
    el = fire_el[ids]
    if el.any() and cfg.elastic_strength > 0:
        n_comp = 3 if iso3 else 2
        disp = _elastic_field(st, int(el.sum()), n_comp)
        if st.nd == 2:
            disp = disp[:, :, None]
        full = torch.zeros((m, n_comp, Z, Y, X), dtype=dtype, device=dev)
        full[el.nonzero().flatten().to(dev)] = disp
        src_y = src_y + full[:, -2]
        src_x = src_x + full[:, -1]
        if iso3:
            src_z = src_z + full[:, 0]
    if offsets is not None:
        off = offsets[ids].to(dtype).to(dev)  # (m, Z, 2)
        src_y = src_y - off[:, :, 0].view(m, Z, 1, 1)
        src_x = src_x - off[:, :, 1].view(m, Z, 1, 1)

    def norm(src, size):
        return src * (2.0 / max(size - 1, 1)) - 1.0

    idx = ids.to(dev)
    img = st.img[idx]
    c = img.shape[1]
    chans = img if st.ext is None else torch.cat([img, st.ext[idx]], dim=1)
    lab = st.lab[idx].to(dtype)[:, None]
    if iso3:
        grid = torch.stack([norm(src_x, X), norm(src_y, Y), norm(src_z, Z)], dim=-1)  # (m, Z, Y, X, 3)
    else:
        grid = torch.stack([norm(src_x, X), norm(src_y, Y)], dim=-1).reshape(m * Z, Y, X, 2)
        if st.nd == 3:  # each section on its own: (m, C, Z, Y, X) -> (m * Z, C, Y, X)
            chans = chans.transpose(1, 2).reshape(m * Z, -1, Y, X)
            lab = lab.transpose(1, 2).reshape(m * Z, 1, Y, X)
    chans = F.grid_sample(chans, grid, mode="bilinear", padding_mode=cfg.padding, align_corners=True)
    lab = F.grid_sample(lab, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    if st.nd == 3 and not iso3:
        chans = chans.reshape(m, Z, -1, Y, X).transpose(1, 2)
        lab = lab.reshape(m, Z, 1, Y, X).transpose(1, 2)
    st.img[idx] = chans[:, :c]
    if st.ext is not None:
        st.ext[idx] = chans[:, c:]
    st.lab[idx] = lab[:, 0].round().to(st.lab.dtype)


# ---------------------------------------------------------------------------------------- intensity


def _per_sample(st, values):
    """A CPU (N,) float64 tensor as a broadcastable (N, 1, 1, ...) tensor on the image's device."""
    return values.to(st.img.dtype).to(st.device).view((-1,) + (1,) * (st.img.dim() - 1))


def intensity(st):
    torch = st.torch
    cfg = st.cfg
    n = st.n
    sp_dims = tuple(range(2, st.img.dim()))
    std0 = None
    if cfg.brightness > 0 or cfg.noise > 0:
        std0 = st.img.std(dim=sp_dims, keepdim=True, correction=0)  # (N, C, 1, ...)

    if cfg.brightness > 0:
        fire = st.fire("brightness")
        shift = st.uniform("brightness", -cfg.brightness_range, cfg.brightness_range, (n,))
        if fire.any():
            st.img += _per_sample(st, torch.where(fire, shift, 0.0)) * std0

    if cfg.contrast > 0:
        fire = st.fire("contrast")
        f = st.log_uniform("contrast", cfg.contrast_range, (n,))
        if fire.any():
            idx = st.index(fire)
            x = st.img[idx]
            mean = x.mean(dim=sp_dims, keepdim=True)
            st.img[idx] = (x - mean) * _per_sample(st, f[fire]) + mean

    if cfg.gamma > 0:
        fire = st.fire("gamma")
        gam = st.log_uniform("gamma", cfg.gamma_range, (n,))
        if fire.any():
            idx = st.index(fire)
            x = st.img[idx]
            lo = x.amin(dim=sp_dims, keepdim=True)
            hi = x.amax(dim=sp_dims, keepdim=True)
            span = hi - lo
            safe = torch.where(span > 0, span, torch.ones_like(span))
            r = ((x - lo) / safe).clamp_(0, 1).pow_(_per_sample(st, gam[fire]))
            st.img[idx] = torch.where(span > 0, lo + r * span, x)

    if cfg.blur > 0:
        fire = st.fire("blur")
        sigma = st.uniform("blur", cfg.blur_range[0], cfg.blur_range[1], (n,))
        if fire.any():
            _blur(st, fire, sigma)

    if cfg.shading > 0 or cfg.stripes > 0 or cfg.fold > 0:
        _plane_defects(st)

    if st.nd == 3:
        _section_defects(st)

    if cfg.noise > 0:
        fire = st.fire("noise")
        level = st.uniform("noise", cfg.noise_range[0], cfg.noise_range[1], (n,))
        if fire.any():
            idx = st.index(fire)
            shape = (int(fire.sum()),) + tuple(st.img.shape[1:])
            field = torch.randn(shape, generator=st.gens["noise"], dtype=st.img.dtype).to(st.device)
            st.img[idx] = st.img[idx] + field * _per_sample(st, level[fire]) * std0[idx]

    if cfg.invert > 0:
        fire = st.fire("invert")
        if fire.any():
            idx = st.index(fire)
            x = st.img[idx]
            lo = x.amin(dim=sp_dims, keepdim=True)
            hi = x.amax(dim=sp_dims, keepdim=True)
            st.img[idx] = lo + hi - x


def _blur(st, fire, sigma):
    """In-plane Gaussian blur of the firing samples, one grouped separable convolution per axis."""
    torch = st.torch
    F = torch.nn.functional
    idx = st.index(fire)
    sig = sigma[fire]
    m = len(sig)
    x = st.img[idx]
    c = x.shape[1]
    radius = max(1, math.ceil(_BLUR_TRUNCATE * float(sig.max())))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t[None] / sig[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x.dtype).to(st.device)  # (m, 2r+1)
    k = k.repeat_interleave(c, dim=0)  # one kernel per (sample, channel) group
    flat = x.reshape(1, m * c, *x.shape[2:])
    if st.nd == 2:
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=m * c)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=m * c)
    else:
        flat = F.conv3d(F.pad(flat, (0, 0, radius, radius, 0, 0), mode="replicate"), k[:, None, None, :, None],
                        groups=m * c)
        flat = F.conv3d(F.pad(flat, (radius, radius, 0, 0, 0, 0), mode="replicate"), k[:, None, None, None, :],
                        groups=m * c)
    st.img[idx] = flat.reshape(x.shape)


def _planes(st):
    """Image and labels as stacks of sections ``(M, C, Y, X)`` / ``(M, Y, X)`` and the draw shape."""
    if st.nd == 2:
        return st.img, st.lab, (st.n,)
    n, c, z, y, x = st.img.shape
    return st.img.permute(0, 2, 1, 3, 4).reshape(n * z, c, y, x), st.lab.reshape(n * z, y, x), (n, z)


def _plane_defects(st):
    """Shading, stripes and folds, each with its probability per 2D patch or per z-section.

    Every parameter is drawn for every section whether it fires or not, so one augmentation's
    probability never changes another's draws.
    """
    torch = st.torch
    cfg = st.cfg
    img, lab, shape = _planes(st)
    m, _, h, w = img.shape
    f64 = torch.float64

    def std(idx):
        return img[idx].std(dim=(2, 3), keepdim=True, correction=0)

    def add(idx, field, amp):
        """Add ``field`` (per firing plane) times ``amp`` standard deviations of each plane."""
        scale = amp.to(img.dtype).to(st.device).view(-1, 1, 1, 1) * std(idx)
        img[idx] = img[idx] + field.to(img.dtype).to(st.device) * scale

    if cfg.shading > 0:
        fire = st.fire("shading", shape).flatten()
        amp = st.uniform("shading", *cfg.shading_strength, (m,))
        ctrl = torch.rand((m, 1, 3, 3), generator=st.gens["shading"], dtype=f64) * 2 - 1
        if fire.any():
            idx = st.index(fire)
            field = torch.nn.functional.interpolate(ctrl[fire], size=(h, w), mode="bicubic", align_corners=True)
            field = field / field.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
            add(idx, field, amp[fire])

    if cfg.stripes > 0:
        fire = st.fire("stripes", shape).flatten()
        amp = st.uniform("stripes", *cfg.stripes_strength, (m,))
        rows = torch.rand((m,), generator=st.gens["stripes"]) < 0.5
        along_y = torch.randn((m, h), generator=st.gens["stripes"], dtype=f64)
        along_x = torch.randn((m, w), generator=st.gens["stripes"], dtype=f64)
        if fire.any():
            idx = st.index(fire)
            field = torch.where(rows[:, None, None], along_y[:, :, None].expand(m, h, w),
                                along_x[:, None, :].expand(m, h, w))[fire][:, None]
            add(idx, field, amp[fire])

    if cfg.fold > 0:
        fire = st.fire("fold", shape).flatten()
        width = st.uniform("fold", *cfg.fold_width, (m,))
        angle = st.uniform("fold", 0.0, math.pi, (m,))
        cy, cx = st.uniform("fold", 0.0, h, (m,)), st.uniform("fold", 0.0, w, (m,))
        if fire.any():
            idx = st.index(fire)
            yy = torch.arange(h, dtype=f64).view(1, h, 1)
            xx = torch.arange(w, dtype=f64).view(1, 1, w)
            a = angle[fire].view(-1, 1, 1)
            dist = ((yy - cy[fire].view(-1, 1, 1)) * torch.cos(a) - (xx - cx[fire].view(-1, 1, 1)) * torch.sin(a)).abs()
            band = (dist <= width[fire].view(-1, 1, 1) / 2).to(st.device)
            dark = img[idx].amin(dim=(2, 3), keepdim=True) - 0.5 * std(idx)
            img[idx] = torch.where(band[:, None], dark, img[idx])
            lab[idx] = torch.where(band, torch.zeros_like(lab[idx]), lab[idx])

    if st.nd == 3:
        n, z = shape
        st.img = img.reshape(n, z, *img.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()
        st.lab = lab.reshape(st.lab.shape)


def _section_defects(st):
    """Low-contrast and missing sections (3D only); labels untouched."""
    torch = st.torch
    cfg = st.cfg
    Z = st.spatial[0]
    if cfg.low_contrast > 0:
        fire = st.fire("low_contrast", (st.n, Z))
        f = st.uniform("low_contrast", cfg.low_contrast_range[0], cfg.low_contrast_range[1], (st.n, Z))
        if fire.any():
            factor = torch.where(fire, f, 1.0).to(st.img.dtype).to(st.device).view(st.n, 1, Z, 1, 1)
            mean = st.img.mean(dim=(3, 4), keepdim=True)
            st.img = (st.img - mean) * factor + mean
    if cfg.missing_section > 0:
        fire = st.fire("missing_section", (st.n, Z))
        if fire.any():
            mask = fire.to(st.device).view(st.n, 1, Z, 1, 1)
            mean = st.img.mean(dim=(2, 3, 4), keepdim=True)
            st.img = torch.where(mask, mean, st.img)
