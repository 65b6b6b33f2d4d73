"""PyTorch reference models and train steps for experiments/bench/run.py (bench-only).

Written from the architecture facts in shared REFERENCE.md ([DC], [CG], [PG]); every
model's parameter count is asserted against REFERENCE.md (or, for the truncated PGGAN
stages, against jaxgan's). Each ``*_step`` object does, per call, the same work as the
corresponding jaxgan fused train step (same losses, D and G updates, Adam, GP with
``create_graph``, EMA), in float32, NCHW; after ``set_autocast("bfloat16")`` their forward
passes and losses run under ``torch.autocast`` (bfloat16 AMP, as the PyTorch docs prescribe:
backward passes outside it). Importing this module needs torch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random

import torch
from torch import nn
from torch.nn import functional as F

_AUTOCAST_DTYPE: torch.dtype | None = None


def device() -> str:
    """Where the bench's PyTorch steps run: ``"cuda"`` when PyTorch sees a GPU, else
    ``"cpu"`` (the one place that decides)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_device() -> str:
    """Set PyTorch up to run on :func:`device` and return it. On CUDA: new tensors on the GPU,
    ``cudnn.benchmark``, and TF32 allowed for matmuls: XLA's default precision lets float32
    convs and matmuls use TF32 on NVIDIA GPUs (docs.jax.dev "Matmul precision"); cuDNN's
    convs already do, PyTorch's matmuls not."""
    where = device()
    if where == "cuda":
        torch.set_default_device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    return where


def set_autocast(dtype: str) -> None:
    """``"float32"``: no autocast; ``"bfloat16"``: forward passes under bfloat16 autocast."""
    global _AUTOCAST_DTYPE
    _AUTOCAST_DTYPE = None if dtype == "float32" else getattr(torch, dtype)


def amp():
    """The forward passes' context: ``torch.autocast`` on this device, or nothing."""
    if _AUTOCAST_DTYPE is None:
        return contextlib.nullcontext()
    return torch.autocast(device(), dtype=_AUTOCAST_DTYPE)


def to_channels_last(step: object) -> None:
    """Every module and 4-D input tensor of a step object in channels_last, in place (the
    optimizers keep their parameters: ``Module.to`` replaces their data, not them)."""
    for k, v in vars(step).items():
        if isinstance(v, nn.Module):
            v.to(memory_format=torch.channels_last)
        elif isinstance(v, torch.Tensor) and v.dim() == 4:
            setattr(step, k, v.contiguous(memory_format=torch.channels_last))


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def _init_ref(m: nn.Module) -> None:
    """N(0, 0.02) conv weights, zero biases, BatchNorm scale N(1, 0.02) ([CG], [DC])."""
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(mod.weight, 0.0, 0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.normal_(mod.weight, 1.0, 0.02)
            nn.init.zeros_(mod.bias)


def _adam(params, lr, b1, b2):
    return torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=1e-8)


def _reference_gd(g, d, g_params: int, d_params: int):
    """Reference-initialise a G/D pair, check their parameter counts (REFERENCE.md) and
    return their Adam optimizers with the DCGAN/pix2pix settings (2e-4, 0.5, 0.999)."""
    _init_ref(g)
    _init_ref(d)
    assert count_params(g) == g_params, count_params(g)
    assert count_params(d) == d_params, count_params(d)
    return _adam(g.parameters(), 2e-4, 0.5, 0.999), _adam(d.parameters(), 2e-4, 0.5, 0.999)


def _linear_decay(schedule: tuple[int, int] | None, *optimizers) -> list:
    """LambdaLR schedulers: the rate constant for ``schedule[0]`` steps, then linearly to 0
    over ``schedule[1]`` (jaxgan.train.common.linear_decay_schedule); none for None."""
    if schedule is None:
        return []
    constant, decay = schedule

    def factor(t: int) -> float:
        return 1.0 if t < constant or decay == 0 else max(0.0, 1.0 - (t - constant) / decay)
    return [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]


def _mse(p, t):
    return torch.mean((p - t) ** 2)


def _requires_grad(m: nn.Module, flag: bool) -> None:
    for p in m.parameters():
        p.requires_grad_(flag)


# ---------------------------------------------------------------------------------- DCGAN


class DCGANG(nn.Module):
    """pytorch/examples' netG, at ``res`` = 2**k pixels (64: the reference) as jaxgan's."""

    def __init__(self, nz=100, ngf=64, nc=3, res=64):
        super().__init__()
        n_up = res.bit_length() - 3  # log2(res) - 2
        layers, ch = [], ngf * 2 ** (n_up - 1)
        layers += [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z[:, :, None, None])


class DCGAND(nn.Module):
    """pytorch/examples' netD, at ``res`` = 2**k pixels (64: the reference) as jaxgan's."""

    def __init__(self, ndf=64, nc=3, res=64):
        super().__init__()
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        ch = ndf
        for _ in range(res.bit_length() - 4):  # log2(res) - 3
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2),
                       nn.LeakyReLU(0.2)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).reshape(-1)


class DCGANStep:
    """D on reals and detached fakes (BCE, real + fake), Adam; G non-saturating through the
    updated D, Adam (the jaxgan.train.dcgan step)."""

    def __init__(self, batch: int, res: int = 64, nc: int = 3, ngf: int = 64, ndf: int = 64,
                 counts: tuple[int, int] = (3_576_704, 2_765_568)):
        self.g, self.d = DCGANG(ngf=ngf, nc=nc, res=res), DCGAND(ndf=ndf, nc=nc, res=res)
        self.og, self.od = _reference_gd(self.g, self.d, *counts)
        self.real = torch.rand(batch, nc, res, res) * 2 - 1
        self.batch = batch

    def __call__(self, real: torch.Tensor | None = None):
        """One step on ``real`` (N, C, R, R) in [-1, 1] (default: a fixed random batch)."""
        real = self.real if real is None else real
        z = torch.randn(len(real), 100)
        with amp():
            fake = self.g(z)
        self.od.zero_grad(set_to_none=True)
        with amp():
            lr_ = self.d(real)
            lf_ = self.d(fake.detach())
            d_loss = (F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_))
                      + F.binary_cross_entropy_with_logits(lf_, torch.zeros_like(lf_)))
        d_loss.backward()
        self.od.step()
        self.og.zero_grad(set_to_none=True)
        _requires_grad(self.d, False)
        with amp():
            lg = self.d(fake)
            g_loss = F.binary_cross_entropy_with_logits(lg, torch.ones_like(lg))
        g_loss.backward()
        _requires_grad(self.d, True)
        self.og.step()
        return d_loss.item(), g_loss.item()


# ----------------------------------------------------------------------------- pix2pix / CG


def _norm(kind: str, ch: int) -> nn.Module:
    return nn.BatchNorm2d(ch) if kind == "batch" else nn.InstanceNorm2d(ch)


class UNetLevel(nn.Module):
    """One U-Net level: ``[LReLU] down [norm] (sub) ReLU up [norm] [dropout]``, skip concat."""

    def __init__(self, outer, inner, sub=None, outermost=False, innermost=False,
                 norm="batch", dropout=False, in_ch=None):
        super().__init__()
        bias = norm == "instance"
        in_ch = outer if in_ch is None else in_ch
        self.outermost = outermost
        down = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            self.model = nn.Sequential(down, sub, nn.ReLU(), up, nn.Tanh())
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            self.model = nn.Sequential(nn.LeakyReLU(0.2), down, nn.ReLU(), up, _norm(norm, outer))
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            parts = [nn.LeakyReLU(0.2), down, _norm(norm, inner), sub, nn.ReLU(), up,
                     _norm(norm, outer)]
            if dropout:
                parts.append(nn.Dropout(0.5))
            self.model = nn.Sequential(*parts)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        # out-of-place LReLU: the skip carries the *activated* input, as the reference's
        # in-place LeakyReLU makes it (REFERENCE.md).
        return torch.cat([F.leaky_relu(x, 0.2), self.model(x)], 1)


def unet(num_downs=8, in_ch=3, out_ch=3, ngf=64, norm="batch", dropout=True) -> nn.Module:
    blk = UNetLevel(ngf * 8, ngf * 8, innermost=True, norm=norm)
    for _ in range(num_downs - 5):
        blk = UNetLevel(ngf * 8, ngf * 8, blk, norm=norm, dropout=dropout)
    blk = UNetLevel(ngf * 4, ngf * 8, blk, norm=norm)
    blk = UNetLevel(ngf * 2, ngf * 4, blk, norm=norm)
    blk = UNetLevel(ngf, ngf * 2, blk, norm=norm)
    return UNetLevel(out_ch, ngf, blk, outermost=True, norm=norm, in_ch=in_ch)


def nlayer_d(in_ch=6, ndf=64, n_layers=3, norm="batch") -> nn.Module:
    bias = norm == "instance"
    layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2**n, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias), _norm(norm, ndf * mult),
                   nn.LeakyReLU(0.2)]
    prev, mult = mult, min(2**n_layers, 8)
    layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias), _norm(norm, ndf * mult),
               nn.LeakyReLU(0.2), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, ch, norm="instance"):
        super().__init__()
        bias = norm == "instance"
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), _norm(norm, ch), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), _norm(norm, ch))

    def forward(self, x):
        return x + self.body(x)


def resnet_g(n_blocks=9, in_ch=3, out_ch=3, ngf=64, norm="instance") -> nn.Module:
    bias = norm == "instance"
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=bias), _norm(norm, ngf),
              nn.ReLU()]
    for mult in (1, 2):
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias),
                   _norm(norm, ngf * mult * 2), nn.ReLU()]
    layers += [ResBlock(ngf * 4, norm) for _ in range(n_blocks)]
    for mult in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, 1, bias=bias),
                   _norm(norm, ngf * mult // 2), nn.ReLU()]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
    return nn.Sequential(*layers)


class Pix2PixStep:
    """G(A); D on concat(A, fake) (detached) and concat(A, B), BCE, 0.5 * (real + fake), Adam;
    G through the updated D: BCE + 100 * L1, Adam (the jaxgan.train.pix2pix step).

    ``g_kw`` / ``d_kw``: :func:`unet` / :func:`nlayer_d` arguments (default: the paper's
    networks, whose parameter counts ``counts`` asserts); ``schedule``: (constant, decay)
    steps of the learning rate, as jaxgan.train.common.linear_decay_schedule (None: constant).
    """

    def __init__(self, batch: int, size: int = 256, *, g_kw: dict | None = None,
                 d_kw: dict | None = None, counts: tuple[int, int] = (54_413_955, 2_768_705),
                 schedule: tuple[int, int] | None = None):
        g_kw, d_kw = g_kw or {}, d_kw or {"in_ch": 6}
        self.g, self.d = unet(**g_kw), nlayer_d(**d_kw)
        self.og, self.od = _reference_gd(self.g, self.d, *counts)
        self.schedulers = _linear_decay(schedule, self.og, self.od)
        in_ch = g_kw.get("in_ch", 3)
        self.a = torch.rand(batch, in_ch, size, size) * 2 - 1
        self.b = torch.rand(batch, d_kw["in_ch"] - in_ch, size, size) * 2 - 1

    def __call__(self, a: torch.Tensor | None = None, b: torch.Tensor | None = None):
        """One step on the pair ``a``, ``b`` (N, C, S, S) in [-1, 1] (default: fixed random)."""
        a = self.a if a is None else a
        b = self.b if b is None else b
        with amp():
            fake = self.g(a)
        self.od.zero_grad(set_to_none=True)
        with amp():
            pf = self.d(torch.cat([a, fake.detach()], 1))
            pr = self.d(torch.cat([a, b], 1))
            d_loss = 0.5 * (F.binary_cross_entropy_with_logits(pf, torch.zeros_like(pf))
                            + F.binary_cross_entropy_with_logits(pr, torch.ones_like(pr)))
        d_loss.backward()
        self.od.step()
        self.og.zero_grad(set_to_none=True)
        _requires_grad(self.d, False)
        with amp():
            pg = self.d(torch.cat([a, fake], 1))
            g_loss = (F.binary_cross_entropy_with_logits(pg, torch.ones_like(pg))
                      + 100.0 * F.l1_loss(fake, b))
        g_loss.backward()
        _requires_grad(self.d, True)
        self.og.step()
        for scheduler in self.schedulers:
            scheduler.step()
        return d_loss.item(), g_loss.item()


class ImagePool:
    """The reference's 50-image history of fakes."""

    def __init__(self, size=50):
        self.size, self.images = size, []

    def query(self, images):
        out = []
        for im in images:
            im = im[None]
            if len(self.images) < self.size:
                self.images.append(im)
                out.append(im)
            elif random.random() > 0.5:
                i = random.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = im
            else:
                out.append(im)
        return torch.cat(out, 0)


class CycleGANStep:
    """G step (both G, one Adam; LSGAN through the pre-update Ds, cycle 10, identity 0.5),
    then D step (both D, one Adam, pooled fakes, 0.5 * (real + fake)): jaxgan.train.cyclegan."""

    def __init__(self, batch: int, size: int = 256, *, g_kw: dict | None = None,
                 d_kw: dict | None = None, counts: tuple[int, int] = (11_378_179, 2_764_737),
                 schedule: tuple[int, int] | None = None):
        g_kw, d_kw = g_kw or {}, {"in_ch": 3, "norm": "instance", **(d_kw or {})}
        self.g_ab, self.g_ba = resnet_g(**g_kw), resnet_g(**g_kw)
        self.d_a, self.d_b = nlayer_d(**d_kw), nlayer_d(**d_kw)
        for m in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            _init_ref(m)
        assert count_params(self.g_ab) == counts[0], count_params(self.g_ab)
        assert count_params(self.d_a) == counts[1], count_params(self.d_a)
        self.og = _adam(list(self.g_ab.parameters()) + list(self.g_ba.parameters()),
                        2e-4, 0.5, 0.999)
        self.od = _adam(list(self.d_a.parameters()) + list(self.d_b.parameters()),
                        2e-4, 0.5, 0.999)
        self.schedulers = _linear_decay(schedule, self.og, self.od)
        self.pool_a, self.pool_b = ImagePool(), ImagePool()
        self.a = torch.rand(batch, 3, size, size) * 2 - 1
        self.b = torch.rand(batch, 3, size, size) * 2 - 1

    def __call__(self, a: torch.Tensor | None = None, b: torch.Tensor | None = None):
        """One step on unpaired ``a``, ``b`` (N, 3, S, S) in [-1, 1] (default: fixed random)."""
        a = self.a if a is None else a
        b = self.b if b is None else b
        self.og.zero_grad(set_to_none=True)
        _requires_grad(self.d_a, False)
        _requires_grad(self.d_b, False)
        with amp():
            fake_b = self.g_ab(a)
            rec_a = self.g_ba(fake_b)
            fake_a = self.g_ba(b)
            rec_b = self.g_ab(fake_a)
            idt_b = self.g_ab(b)
            idt_a = self.g_ba(a)
            g_loss = (_mse(self.d_b(fake_b), 1.0) + _mse(self.d_a(fake_a), 1.0)
                      + 10.0 * F.l1_loss(rec_a, a) + 10.0 * F.l1_loss(rec_b, b)
                      + 10.0 * 0.5 * F.l1_loss(idt_b, b) + 10.0 * 0.5 * F.l1_loss(idt_a, a))
        g_loss.backward()
        self.og.step()
        _requires_grad(self.d_a, True)
        _requires_grad(self.d_b, True)
        self.od.zero_grad(set_to_none=True)
        pa = self.pool_a.query(fake_a.detach())
        pb = self.pool_b.query(fake_b.detach())
        with amp():
            d_a = 0.5 * (_mse(self.d_a(a), 1.0) + _mse(self.d_a(pa), 0.0))
            d_b = 0.5 * (_mse(self.d_b(b), 1.0) + _mse(self.d_b(pb), 0.0))
        (d_a + d_b).backward()
        self.od.step()
        for scheduler in self.schedulers:
            scheduler.step()
        return g_loss.item(), (d_a + d_b).item()


# ---------------------------------------------------------------------------------- PGGAN


class EqConv(nn.Module):
    """Conv (same padding) with the equalized learning rate: N(0, 1) weight scaled at runtime."""

    def __init__(self, cin, cout, k, gain=None):
        super().__init__()
        gain = math.sqrt(2) if gain is None else gain
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale, self.pad = gain / math.sqrt(k * k * cin), k // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


class EqDense(nn.Module):
    def __init__(self, cin, cout, gain=None, bias=True):
        super().__init__()
        gain = math.sqrt(2) if gain is None else gain
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = gain / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


def _pn(x, dim=1):
    return x * torch.rsqrt(torch.mean(x * x, dim=dim, keepdim=True) + 1e-8)


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _nf(res, fmap_base=8192, fmap_max=512):
    return min(fmap_base // (res // 2), fmap_max)


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _down(x):
    return F.avg_pool2d(x, 2)


def _widths(resolution, fmap_base, fmap_max):
    return [_nf(4 * 2**s, fmap_base, fmap_max) for s in range(int(math.log2(resolution)) - 1)]


class PGG(nn.Module):
    """All stages up to ``resolution`` (all toRGB layers), as jaxgan's PGGANGenerator."""

    def __init__(self, resolution, latent=512, ch=3, fmap_base=8192, fmap_max=512):
        super().__init__()
        self.nf = nf = _widths(resolution, fmap_base, fmap_max)
        n = len(nf)
        self.dense = EqDense(latent, 16 * nf[0], gain=math.sqrt(2) / 4, bias=False)
        self.dense_bias = nn.Parameter(torch.zeros(nf[0]))
        self.convs = nn.ModuleList([
            nn.ModuleList([EqConv(nf[0], nf[0], 3)]) if s == 0 else
            nn.ModuleList([EqConv(nf[s - 1], nf[s], 3), EqConv(nf[s], nf[s], 3)])
            for s in range(n)])
        self.to_rgb = nn.ModuleList([EqConv(nf[s], ch, 1, gain=1.0) for s in range(n)])

    def forward(self, z, stage, alpha):
        # jaxgan reshapes the dense output NHWC: (N, 4, 4, C) is (N, C, 4, 4) permuted
        h = self.dense(_pn(z)).reshape(-1, 4, 4, self.nf[0]).permute(0, 3, 1, 2)
        h = _pn(_lrelu(h + self.dense_bias[None, :, None, None]))
        prev = None
        for s in range(stage + 1):
            prev = h
            if s > 0:
                h = _up(h)
            for conv in self.convs[s]:
                h = _pn(_lrelu(conv(h)))
        img = self.to_rgb[stage](h)
        if stage > 0:
            skip = _up(self.to_rgb[stage - 1](prev))
            img = skip + alpha * (img - skip)
        return img


def _mbstd(x, group=4):
    n, c, h, w = x.shape
    g = min(group, n)
    y = x.reshape(g, n // g, c, h, w)
    y = y - y.mean(0, keepdim=True)
    s = torch.sqrt((y * y).mean(0) + 1e-8).mean(dim=(1, 2, 3))  # (n // g,)
    feat = s.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([x, feat], 1)


class PGD(nn.Module):
    """All stages up to ``resolution`` (all fromRGB layers), as jaxgan's PGGANDiscriminator."""

    def __init__(self, resolution, ch=3, fmap_base=8192, fmap_max=512, mbstd_group=4):
        super().__init__()
        self.nf = nf = _widths(resolution, fmap_base, fmap_max)
        n, self.mbstd_group = len(nf), mbstd_group
        self.from_rgb = nn.ModuleList([EqConv(ch, nf[s], 1) for s in range(n)])
        self.convs = nn.ModuleList([
            nn.ModuleList([EqConv(nf[s], nf[s], 3), EqConv(nf[s], nf[s - 1], 3)])
            for s in range(1, n)])
        self.final_conv = EqConv(nf[0] + 1, nf[0], 3)
        self.final_dense = EqDense(16 * nf[0], nf[0])
        self.out = EqDense(nf[0], 1, gain=1.0)

    def _block(self, h, s):
        for conv in self.convs[s - 1]:
            h = _lrelu(conv(h))
        return _down(h)

    def forward(self, x, stage, alpha):
        h = _lrelu(self.from_rgb[stage](x))
        if stage > 0:
            h = self._block(h, stage)
            skip = _lrelu(self.from_rgb[stage - 1](_down(x)))
            h = skip + alpha * (h - skip)
            for s in range(stage - 1, 0, -1):
                h = self._block(h, s)
        h = _lrelu(self.final_conv(_mbstd(h, self.mbstd_group)))
        # flattened in jaxgan's NHWC order
        h = _lrelu(self.final_dense(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)))
        return self.out(h)[:, 0]


class PGGANStep:
    """WGAN-GP D step (fake - real, GP 10 with create_graph, drift 0.001) on fakes from fresh
    latents, Adam(lr, 0, 0.99); G step -D(G(z)) through the updated D; the generator EMA;
    the reals cross-faded with alpha (jaxgan.train.pggan).

    The bench's form, ``PGGANStep(resolution, batch)()``, times the last stage on fixed
    random reals at alpha 0.5 with the paper's widths. The quality bench passes the config's
    widths (``g_kw`` / ``d_kw``, parameter counts checked against ``counts``), calls
    ``step(real, stage, alpha)`` with jaxgan's batches and :meth:`grow` at each growth.
    """

    def __init__(self, resolution: int, batch: int, alpha: float = 0.5, *,
                 g_kw: dict | None = None, d_kw: dict | None = None,
                 counts: tuple[int, int] | None = None, lr: float = 1e-3,
                 ema_decay: float = 0.999):
        self.stage = int(math.log2(resolution)) - 2
        self.g, self.d = PGG(resolution, **(g_kw or {})), PGD(resolution, **(d_kw or {}))
        if counts is not None:
            assert (count_params(self.g), count_params(self.d)) == counts, (
                count_params(self.g), count_params(self.d), counts)
        self.latent = self.g.dense.weight.shape[1]
        self.g_ema = copy.deepcopy(self.g)
        _requires_grad(self.g_ema, False)
        self.lr, self.ema_decay = lr, ema_decay
        self.grow(self.stage)
        ch = self.g.to_rgb[0].weight.shape[0]
        self.real = torch.rand(batch, ch, resolution, resolution) * 2 - 1
        self.batch, self.alpha = batch, torch.tensor(alpha)

    def grow(self, stage: int, lr: float | None = None) -> None:
        """Train ``stage`` from now on, with fresh Adam states (``schedule.reset_optimizer``)."""
        self.stage, self.lr = stage, self.lr if lr is None else lr
        self.og = _adam(self.g.parameters(), self.lr, 0.0, 0.99)
        self.od = _adam(self.d.parameters(), self.lr, 0.0, 0.99)

    def __call__(self, real: torch.Tensor | None = None, stage: int | None = None,
                 alpha: float | None = None):
        s = self.stage if stage is None else stage
        a = self.alpha if alpha is None else torch.tensor(float(alpha))
        real = self.real if real is None else real
        n = real.shape[0]
        if s > 0 and float(a) < 1.0:  # jaxgan keeps the reals exactly once the fade is over
            low = _up(_down(real))
            real = low + a * (real - low)
        with torch.no_grad(), amp():
            fake = self.g(torch.randn(n, self.latent), s, a).float()
        self.od.zero_grad(set_to_none=True)
        with amp():
            rs = self.d(real, s, a)
            fs = self.d(fake, s, a)
            u = torch.rand(n, 1, 1, 1)
            x_hat = (real + u * (fake - real)).requires_grad_(True)
            d_hat = self.d(x_hat, s, a).sum()
        # the penalty's gradient outside autocast, its norm inside (the PyTorch AMP recipe)
        (grad,) = torch.autograd.grad(d_hat, x_hat, create_graph=True)
        with amp():
            gp = 10.0 * torch.mean((grad.reshape(n, -1).norm(dim=1) - 1.0) ** 2)
            d_loss = fs.mean() - rs.mean() + gp + 0.001 * torch.mean(rs * rs)
        d_loss.backward()
        self.od.step()
        self.og.zero_grad(set_to_none=True)
        _requires_grad(self.d, False)
        with amp():
            g_loss = -self.d(self.g(torch.randn(n, self.latent), s, a), s, a).mean()
        g_loss.backward()
        _requires_grad(self.d, True)
        self.og.step()
        with torch.no_grad():
            for e, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
                e.lerp_(p, 1.0 - self.ema_decay)
        return d_loss.item(), g_loss.item()
