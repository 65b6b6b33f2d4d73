"""The transposed convolution is exact in every formulation (against a direct numpy scatter and
against lax.conv_transpose), forward and backward; the conv formulations agree."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxgan.nn import conv as C
from jaxgan.nn.cpu import formulations as F
from jaxgan.nn.cpu import rules as R
from jaxgan.nn.cpu import winograd as W


def scatter_reference(x, w, s, p, op):
    """PyTorch ConvTranspose2d by its definition: input pixel i adds x[i] * w[t] at i*s - p + t."""
    n, h, wd, _ = x.shape
    k, co = w.shape[0], w.shape[3]
    ho, wo = (h - 1) * s - 2 * p + k + op, (wd - 1) * s - 2 * p + k + op
    y = np.zeros((n, ho + 2 * p + k, wo + 2 * p + k, co))
    for i in range(h):
        for j in range(wd):
            y[:, i * s : i * s + k, j * s : j * s + k] += np.einsum("nc,abco->nabo", x[:, i, j], w)
    return y[:, p : p + ho, p : p + wo]


# (H, kernel, stride, padding, output_padding): the models' shapes first, then odd ones.
SHAPES = [
    (4, 4, 2, 1, 0),  # DCGAN / U-Net up
    (1, 4, 1, 0, 0),  # DCGAN first layer, 1x1 -> 4x4
    (5, 3, 2, 1, 1),  # ResNet up
    (3, 4, 2, 0, 0),
    (6, 3, 2, 2, 1),
    (4, 5, 3, 2, 2),
    (4, 4, 2, 3, 0),
    (3, 1, 1, 0, 0),
]
IMPLS = ["xla", "subpixel", "im2col", "col2im", "auto"]


@pytest.mark.parametrize("shape", SHAPES)
def test_conv_transpose_exact(shape):
    h, k, s, p, op = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, h, h + 1, 3)).astype(np.float32)
    w = rng.standard_normal((k, k, 3, 5)).astype(np.float32)
    want = scatter_reference(x, w, s, p, op)
    lo = k - 1 - p
    via_lax = lax.conv_transpose(
        jnp.asarray(x), jnp.asarray(w)[::-1, ::-1], (s, s), [(lo, lo + op)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(np.asarray(via_lax), want, atol=2e-5)
    for impl in IMPLS:
        got = C.conv_transpose2d(
            jnp.asarray(x), jnp.asarray(w), stride=s, padding=p, output_padding=op, impl=impl
        )
        assert got.shape == want.shape, impl
        assert got.shape[1] == C.conv_transpose_output_size(h, k, s, p, op)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, err_msg=impl)


@pytest.mark.parametrize("shape", [(4, 4, 2, 1, 0), (5, 3, 2, 1, 1), (1, 4, 1, 0, 0)])
def test_conv_transpose_gradients_agree(shape):
    h, k, s, p, op = shape
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, h, h, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 4, 3)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, *C.conv_transpose2d(x, w, stride=s, padding=p,
                                                                  output_padding=op).shape[1:])),
                    jnp.float32)

    def grads(impl):
        f = lambda x, w: jnp.sum(
            g * C.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, impl=impl)
        )
        return jax.grad(f, argnums=(0, 1))(x, w)

    ref = grads("xla")
    for impl in ("subpixel", "im2col", "col2im", "auto"):
        for a, b in zip(grads(impl), ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (3, 1, 1), (7, 1, 0), (1, 1, 0), (4, 1, 1), (3, 2, 1),
                                   (6, 3, 2)])
def test_conv2d_impls_agree_with_grads(k, s, p):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 9, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 3, 4)), jnp.float32)
    outs = {}
    for impl in ("xla", "im2col", "col2im", "auto"):
        f = lambda x, w, impl=impl: C.conv2d(x, w, stride=s, padding=p, impl=impl)
        y, vjp = jax.vjp(f, x, w)
        outs[impl] = (y, *vjp(jnp.ones_like(y)))
    for impl in ("im2col", "col2im", "auto"):
        for a, b in zip(outs[impl], outs["xla"]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k,s,c,slices", [(4, 2, 3, 4), (6, 3, 3, 4), (3, 2, 3, 9),
                                          (4, 2, 16, 16)])
def test_im2col_builds_narrow_strided_patches_in_space_to_depth_form(k, s, c, slices):
    # k*k slices of C channels become (k/s)^2 slices of s*s*C when the kernel is a multiple
    # of the stride and the patch is at most 160 wide (not 3/2: not a multiple; not 4x4x16).
    x, w = jnp.zeros((1, 12, 12, c)), jnp.zeros((k, k, c, 4))
    jaxpr = jax.make_jaxpr(lambda x: C.conv2d(x, w, stride=s, padding=1, impl="im2col"))(x)
    (cat,) = [e for e in jaxpr.eqns if e.primitive.name == "concatenate"]
    assert len(cat.invars) == slices


def test_bad_arguments():
    x = jnp.zeros((1, 4, 4, 2))
    w = jnp.zeros((4, 4, 2, 3))
    with pytest.raises(ValueError, match="output_padding"):
        C.conv_transpose2d(x, w, stride=2, padding=1, output_padding=2)
    with pytest.raises(ValueError, match="unknown convolution impl"):
        C.conv2d(x, w, impl="cudnn")


def test_default_impl_per_backend():
    # Each case is a layer of the models, measured in experiments/bench/conv.py.
    assert C.default_impl("gpu") == "xla"
    assert C.default_impl("tpu") == "xla"
    assert C.default_impl("gpu", out_features=3, patch_features=48, rows=1) == "xla"
    # thin outputs: the ResNet 7x7 64 -> 3 output conv, the PatchGAN head
    assert C.default_impl("cpu", out_features=3, patch_features=49 * 64, rows=65536) == "xla"
    assert C.default_impl("cpu", out_features=1, patch_features=16 * 512, rows=900) == "col2im"
    # narrow patches (RGB first convs): im2col only with many rows (U-Net at batch 8, not 1)
    assert C.default_impl("cpu", out_features=64, patch_features=4 * 4 * 3, rows=131072) == "im2col"
    assert C.default_impl("cpu", out_features=64, patch_features=4 * 4 * 3, rows=8192,
                          kernel=4, stride=2) == "xla"
    # ... from 16384 rows when strided 4x4 / 2 (space-to-depth patches: the U-Net and the
    # PatchGAN at batch 1), not for a stride-1 narrow conv of as many rows
    assert C.default_impl("cpu", out_features=64, patch_features=4 * 4 * 3, rows=16384,
                          kernel=4, stride=2) == "im2col"
    assert C.default_impl("cpu", out_features=64, patch_features=3 * 3 * 3, rows=16384,
                          kernel=3, stride=1) == "xla"
    assert C.default_impl("cpu", out_features=64, patch_features=7 * 7 * 3, rows=65536) == "im2col"
    # wide patches: im2col with many rows (DCGAN at batch 64), XLA's conv with few (batch-1
    # ResNet blocks at 64x64, U-Net inner levels)
    assert C.default_impl("cpu", out_features=256, patch_features=2048, rows=16384) == "im2col"
    assert C.default_impl("cpu", out_features=256, patch_features=2304, rows=4096,
                          pixels=4096) == "xla"
    assert C.default_impl("cpu", out_features=128, patch_features=1024, rows=4096,
                          pixels=4096) == "xla"
    # ... but im2col for few rows over small images (DCGAN's 8 -> 16 sub-pixel conv, batch 64)
    assert C.default_impl("cpu", out_features=512, patch_features=1024, rows=6400,
                          pixels=100) == "im2col"


def test_winograd_choice_on_cpu():
    # Layers measured in experiments/bench/conv.py. 3x3 stride 1: the batch-1 ResNet block at
    # 64x64 and PGGAN's 16x16 and 32x32 512-channel convs at batch 16 go Winograd ...
    assert C.default_impl("cpu", 256, 9 * 256, 4096, 4096, kernel=3) == "winograd"
    assert C.default_impl("cpu", 512, 9 * 512, 16 * 256, 256, kernel=3) == "winograd"
    # ... but not PGGAN's 8x8 ones (1024 rows: XLA's conv and im2col are faster)
    assert C.default_impl("cpu", 512, 9 * 512, 16 * 64, 64, kernel=3) == "im2col"
    # kernel 4 stride 2 (2x2 after space-to-depth): DCGAN D's 16 -> 8 at batch 64, the
    # U-Net's 32 -> 16 at batch 8 (2048 rows)
    assert C.default_impl("cpu", 256, 16 * 128, 64 * 64, 64, kernel=4, stride=2) == "winograd"
    assert C.default_impl("cpu", 512, 16 * 256, 8 * 256, 256, kernel=4, stride=2) == "winograd"
    assert not C.use_winograd("cpu", 4, 2, 512, 16 * 256, 2047)
    # the PatchGAN's 4x4 stride-1 conv: at batch 8 (7688 rows) and batch 1 (961), not below
    # 900 rows (4-wide kernels)
    assert C.use_winograd("cpu", 4, 1, 512, 16 * 256, 8 * 961)
    assert C.use_winograd("cpu", 4, 1, 512, 16 * 256, 961)
    assert not C.use_winograd("cpu", 4, 1, 512, 16 * 256, 899)
    # narrow CPU defaults, timed as whole train steps: Winograd for the DCGAN default's
    # 32 -> 64 stride-2 conv (512 x 64 weights) and PGGAN's 64 -> 32 3x3 at 32x32, not for its
    # 32 -> 32 (288 x 32: fewer than 16384 weights), which takes XLA's conv even at 16384 rows
    assert C.use_winograd("cpu", 4, 2, 64, 16 * 32, 64 * 64)
    assert C.default_impl("cpu", 32, 9 * 64, 16 * 1024, 1024, kernel=3) == "winograd"
    assert not C.use_winograd("cpu", 3, 1, 32, 9 * 32, 16 * 1024)
    assert C.default_impl("cpu", 32, 9 * 32, 16 * 1024, 1024, kernel=3) == "xla"
    # never: 7x7 kernels, narrow RGB patches, thin outputs, GPU/TPU
    assert not C.use_winograd("cpu", 7, 1, 64, 49 * 64, 65536)
    assert not C.use_winograd("cpu", 4, 2, 64, 16 * 3, 65536)
    assert not C.use_winograd("cpu", 3, 1, 3, 9 * 64, 65536)
    assert not C.use_winograd("gpu", 3, 1, 256, 9 * 256, 4096)
    assert C.default_impl("tpu", 256, 9 * 256, 4096, 4096, kernel=3) == "xla"
    # transposed: the U-Net's 64 -> 128, the ResNet's kernel-3 up convs and DCGAN's 8 -> 16
    # at batch 64 (a 9x9 sub-pixel window grid) go Winograd; DCGAN's 4 -> 8 does not
    assert C.default_transpose_impl("cpu", 4, 2, 64, 4096, in_channels=256, batch=1) == "winograd"
    assert C.default_transpose_impl("cpu", 3, 2, 128, 4096, in_channels=256,
                                    batch=1) == "winograd"
    assert C.default_transpose_impl("cpu", 4, 2, 128, 64, in_channels=256,
                                    batch=64) == "winograd"
    assert C.default_transpose_impl("cpu", 4, 2, 256, 16, in_channels=512, batch=64) == "col2im"
    assert C.default_transpose_impl("cpu", 4, 2, 3, 4096, in_channels=64, batch=8) == "col2im"


@pytest.mark.parametrize("size,r,batch,tile", [
    (16, 2, 64, 4),   # even: F(4x4) tiles it exactly (16 tiles of 25 products)
    (17, 2, 64, 3),   # a strided conv's input gradient: F(3x3), 36 tiles of 16 (F4: 25 of 25)
    (9, 2, 64, 3),    # DCGAN's 8 -> 16 sub-pixel conv: 9 tiles of 16 (F4: 9 of 25)
    (10, 2, 64, 5),   # its input gradient: F(5x5, 2x2), 4 tiles of 36 (F2: 25 of 9)
    (8, 2, 64, 4),
    (32, 3, 16, 4),   # PGGAN's 3x3 convs
    (64, 3, 1, 4),    # the ResNet blocks
    (31, 4, 8, 4),    # the PatchGAN's 4x4 stride-1 conv
    (17, 2, 1, 2),    # batch 1: F(3x3)'s matmuls would have 36 rows
    (9, 3, 64, 3),    # F(5x5) only for 2-wide kernels
])
def test_choose_tile(size, r, batch, tile):
    assert W.choose_tile(batch, size, size, r) == tile


def test_default_transpose_impl():
    assert C.default_transpose_impl("gpu", 3, 2, 3) == "xla"
    assert C.default_transpose_impl("cpu", 4, 2, 3) == "col2im"  # DCGAN / U-Net output layer
    assert C.default_transpose_impl("cpu", 3, 2, 128) == "col2im"  # ResNet up: 3 % 2 != 0
    assert C.default_transpose_impl("cpu", 4, 1, 512, in_pixels=1) == "col2im"  # DCGAN 1x1
    assert C.default_transpose_impl("cpu", 4, 2, 128, in_pixels=256) is None  # sub-pixel


def _gp_loss(conv):
    """A WGAN-GP-shaped loss of a two-conv critic: grad of grad w.r.t. the kernels."""

    def critic(ws, x):
        h = jax.nn.leaky_relu(conv(x, ws[0], 1), 0.2)
        return jnp.sum(conv(h, ws[1], 2) ** 2, axis=(1, 2, 3))

    def loss(ws, x):
        g = jax.grad(lambda x: jnp.sum(critic(ws, x)))(x)
        return jnp.mean((jnp.sqrt(jnp.sum(g**2, axis=(1, 2, 3))) - 1.0) ** 2) + jnp.mean(
            critic(ws, x))

    return loss


def _lean_case():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 4)), jnp.float32)
    ws = [jnp.asarray(rng.standard_normal((3, 3, 4, 6)) * 0.3, jnp.float32),
          jnp.asarray(rng.standard_normal((4, 4, 6, 5)) * 0.3, jnp.float32)]
    return x, ws


def _conv_with(impl):
    return lambda x, w, s: C.conv2d(x, w, stride=s, padding=1, impl=impl)


@pytest.mark.parametrize("stride", [1, 2])
def test_lean_conv_is_exact_at_every_order(monkeypatch, stride):
    # Above the patch cap the im2col conv runs as _lean_conv (a custom JVP): forward, JVP,
    # gradients and the gradient penalty's grad of grad equal XLA's conv.
    x, ws = _lean_case()
    w = ws[0]
    ref = _conv_with("xla")
    monkeypatch.setattr(R, "MAX_IM2COL_PATCH_BYTES", 1024)  # every conv here is above it
    lean = _conv_with("im2col")
    assert "custom_jvp_call" in str(jax.make_jaxpr(lambda x: lean(x, w, stride))(x))
    np.testing.assert_allclose(lean(x, w, stride), ref(x, w, stride), rtol=1e-5, atol=1e-5)
    tangents = (jnp.cos(x), jnp.sin(w))
    got = jax.jvp(lambda x, w: lean(x, w, stride), (x, w), tangents)[1]
    want = jax.jvp(lambda x, w: ref(x, w, stride), (x, w), tangents)[1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(conv(x, w, stride)) ** 2)

    got, want = (jax.grad(loss(c), (0, 1))(x, w) for c in (lean, ref))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    got, want = (jax.grad(_gp_loss(c), (0, 1))(ws, x) for c in (lean, ref))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)


def test_lean_conv_keeps_no_patches_under_the_gradient_penalty(monkeypatch):
    # What reverse mode keeps for the gradient penalty's double backward (the residuals of
    # the VJP): the plain im2col conv keeps its patch matrices (k*k*C_in columns); the lean
    # form keeps nothing wider than the activations.
    x, ws = _lean_case()

    def widest_residual(loss):
        _, vjp = jax.vjp(loss, ws, x)
        return max(r.shape[-1] for r in jax.tree.leaves(vjp) if r.ndim)

    plain = widest_residual(_gp_loss(_conv_with("im2col")))
    assert plain >= 3 * 3 * 4  # the first conv's 3x3x4 patch columns
    monkeypatch.setattr(R, "MAX_IM2COL_PATCH_BYTES", 1024)
    assert widest_residual(_gp_loss(_conv_with("im2col"))) <= 6  # C_out of the first conv


# --- Winograd F(m x m, r x r) --------------------------------------------------------------

def _correlate_1d(d, g):
    m = len(d) - len(g) + 1
    return np.array([sum(d[i + k] * g[k] for k in range(len(g))) for i in range(m)])


@pytest.mark.parametrize("m,r", [(2, 2), (3, 2), (4, 2), (2, 3), (4, 3), (6, 3), (2, 4), (2, 7)])
def test_winograd_matrices_compute_the_correlation(m, r):
    at, g, bt = W.winograd_matrices(m, r)
    n = m + r - 1
    assert at.shape == (m, n) and g.shape == (n, r) and bt.shape == (n, n)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d, k = rng.standard_normal(n), rng.standard_normal(r)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), _correlate_1d(d, k),
                                   rtol=1e-11, atol=1e-11)


def test_winograd_matrices_reject_too_many_points():
    with pytest.raises(ValueError, match="interpolation points"):
        W.winograd_matrices(8, 5)


_WINOGRAD_CONVS = [(k, s, p, impl) for k, s, p in [(4, 2, 1), (3, 1, 1), (4, 1, 1), (3, 2, 1),
                                                   (2, 1, 0), (1, 1, 0)]
                   for impl in ("winograd2", "winograd4")] + [
    (4, 2, 1, "winograd3"), (3, 1, 1, "winograd3")]


@pytest.mark.parametrize("k,s,p,impl", _WINOGRAD_CONVS)
def test_winograd_conv2d_agrees_with_xla(k, s, p, impl):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((2, 9, 11, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 3, 5)), jnp.float32)
    outs = {}
    for name in ("xla", impl):
        f = lambda x, w, name=name: C.conv2d(x, w, stride=s, padding=p, impl=name)
        y, vjp = jax.vjp(f, x, w)
        outs[name] = (y, *vjp(jnp.cos(y)))
    for a, b in zip(outs[impl], outs["xla"]):
        assert a.shape == b.shape
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * scale)


@pytest.mark.parametrize("impl", ["winograd2", "winograd"])
def test_small_strided_winograd_takes_im2col_input_gradient_and_is_exact(impl):
    # Output 4 x 3 (<= 16 pixels): Winograd forward and kernel gradient, im2col input
    # gradient; equal to XLA's conv in the gradients and in the gradient penalty's grad of grad.
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((2, 8, 7, 24)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 4, 24, 16)), jnp.float32) * 0.1
    conv = {name: (lambda x, w, name=name: C.conv2d(x, w, stride=2, padding=1, impl=name))
            for name in ("xla", impl)}
    assert "custom_vjp_call" in str(jax.make_jaxpr(conv[impl])(x, w))
    y, vjp = jax.vjp(conv[impl], x, w)
    y0, vjp0 = jax.vjp(conv["xla"], x, w)
    assert y.shape == y0.shape == (2, 4, 3, 16)
    for a, b in zip((y, *vjp(jnp.cos(y0))), (y0, *vjp0(jnp.cos(y0)))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))

    def penalty(w, conv):
        grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w))))(x)
        return jnp.sum(grad_x ** 2)

    got, want = (jax.grad(penalty)(w, conv[name]) for name in (impl, "xla"))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(want))))
    assert C.default_impl("cpu", 512, 16 * 256, 1024, 16, kernel=4, stride=2) == "winograd"
    assert C.default_impl("cpu", 512, 16 * 256, 1024, 64, kernel=4, stride=2) == "im2col"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", ["winograd2", "winograd3", "winograd4"])
def test_winograd_conv_transpose_exact(shape, impl):
    h, k, s, p, op = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, h, h + 1, 3)).astype(np.float32)
    w = rng.standard_normal((k, k, 3, 5)).astype(np.float32)
    want = scatter_reference(x, w, s, p, op)
    got = C.conv_transpose2d(jnp.asarray(x), jnp.asarray(w), stride=s, padding=p,
                             output_padding=op, impl=impl)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5 * np.abs(want).max())


def _float64():
    """jax's float64 mode, as a context manager (``jax.enable_x64`` from jax 0.8)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # jax < 0.8

    return enable_x64()


def _penalty_grads(critic, params, x):
    """Gradients w.r.t. (params, x) of ``sum((d critic / dx)^2) + critic``: a gradient
    penalty's grad of grad through ``critic(params, x)`` (a scalar)."""

    def loss(params, x):
        g = jax.grad(lambda x: critic(params, x))(x)
        return jnp.sum(g**2) + critic(params, x)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)


@pytest.mark.parametrize("m,r", [(2, 3), (3, 3), (4, 3), (4, 2), (3, 2), (5, 2)])
def test_winograd_is_exact_to_every_order_in_float64(m, r):
    # In float64 the only difference from XLA's convolution is rounding at 1e-16: forward,
    # both gradients (custom VJP) and the gradient penalty's grad of grad (the custom VJPs'
    # own derivatives) agree to 1e-12.
    with _float64():
        rng = np.random.default_rng(5)
        x = jnp.asarray(rng.standard_normal((2, 9, 8, 3)))
        ws = [jnp.asarray(rng.standard_normal((r, r, 3, 4)) * 0.3),
              jnp.asarray(rng.standard_normal((r, r, 4, 2)) * 0.3)]

        def ref(x, w):
            return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def wino(x, w):
            return W.winograd_conv(x, w, m)

        def critic(conv, ws, x):
            return jnp.sum(jnp.tanh(conv(jnp.tanh(conv(x, ws[0])), ws[1])) ** 2)

        def gp(conv):
            return _penalty_grads(lambda ws, x: critic(conv, ws, x), ws, x)

        np.testing.assert_allclose(wino(x, ws[0]), ref(x, ws[0]), rtol=1e-12, atol=1e-12)
        for a, b in zip(jax.tree.leaves(gp(wino)), jax.tree.leaves(gp(ref))):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("k,h,w", [(4, 11, 13), (4, 12, 10), (3, 11, 12)])
def test_blocked_winograd_equals_the_written_out_space_to_depth_form(m, k, h, w):
    # winograd_conv(x, w_blocks, m, block=2) reads the space-to-depth form from x in place;
    # the same sums as on the written-out blocks (odd sizes: a zero-padded last block),
    # bit for bit, forward and both gradients, the input gradient back in x's shape.
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((2, h, w, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 3, 5)), jnp.float32)
    wb = F.kernel_to_depth(kernel, 2)
    xb = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    xb = xb.reshape(2, -(-h // 2), 2, -(-w // 2), 2, 3).transpose(0, 1, 3, 2, 4, 5)
    xb = xb.reshape(2, -(-h // 2), -(-w // 2), 12)
    y, vjp = jax.vjp(jax.jit(lambda x, wb: W.winograd_conv(x, wb, m, 2)), x, wb)
    y0, vjp0 = jax.vjp(jax.jit(lambda xb, wb: W.winograd_conv(xb, wb, m)), xb, wb)
    np.testing.assert_array_equal(y, y0)
    dy = jnp.cos(y)
    (dx, dwb), (dxb, dwb0) = vjp(dy), vjp0(dy)
    np.testing.assert_array_equal(dwb, dwb0)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, W.depth_to_space(dxb, 2, h, w))
    with pytest.raises(ValueError, match=r"space-to-depth form \(block 2\) has 12"):
        W.winograd_conv(x, kernel, m, 2)


@pytest.mark.parametrize("m,r,block,pad", [
    (2, 3, 1, ((1, 1), (1, 1))), (4, 3, 1, ((2, 0), (0, 3))),
    (3, 2, 2, ((2, 0), (0, 3))), (4, 2, 2, ((1, 1), (1, 1)))])
def test_winograd_padding_read_in_place_equals_the_padded_copy(m, r, block, pad):
    # winograd_conv(x, w, m, block, pad) reads x zero-padded in place (slices of x with the
    # entries in the padding added as zeros): the same sums as on the written-out padded
    # copy, bit for bit (op by op), forward and both gradients, the input gradient in x's
    # (unpadded) shape.
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.standard_normal((2, 9, 10, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((r, r, block * block * 3, 4)), jnp.float32)
    xp = jnp.pad(x, ((0, 0),) + pad + ((0, 0),))
    y, vjp = jax.vjp(lambda x, w: W.winograd_conv(x, w, m, block, pad), x, w)
    y0, vjp0 = jax.vjp(lambda xp, w: W.winograd_conv(xp, w, m, block), xp, w)
    np.testing.assert_array_equal(y, y0)
    dy = jnp.cos(y)
    (dx, dw), (dxp, dw0) = vjp(dy), vjp0(dy)
    np.testing.assert_array_equal(dw, dw0)
    assert dx.shape == x.shape
    (top, _), (left, _) = pad
    np.testing.assert_array_equal(dx, dxp[:, top:top + 9, left:left + 10])
    with pytest.raises(ValueError, match="padding must be >= 0"):
        W.winograd_conv(x, w, m, block, ((-1, 0), (0, 0)))


@pytest.mark.parametrize("impl", ["winograd2", "winograd4"])
def test_padded_stride1_winograd_is_exact_to_every_order_in_float64(impl):
    # conv2d's stride-1 Winograd path with asymmetric padding (read in place, no padded
    # copy) against XLA's padded conv in float64, through a gradient penalty, to 1e-10.
    with _float64():
        rng = np.random.default_rng(12)
        x = jnp.asarray(rng.standard_normal((2, 7, 8, 3)))
        ws = [jnp.asarray(rng.standard_normal((3, 3, 3, 4)) * 0.3),
              jnp.asarray(rng.standard_normal((4, 4, 4, 2)) * 0.3)]
        pads = [((1, 1), (1, 1)), ((2, 1), (1, 2))]

        def critic(impl, ws, x):
            h = jnp.tanh(C.conv2d(x, ws[0], padding=pads[0], impl=impl))
            return jnp.sum(jnp.tanh(C.conv2d(h, ws[1], padding=pads[1], impl=impl)) ** 2)

        def gp(impl):
            return _penalty_grads(lambda ws, x: critic(impl, ws, x), ws, x)

        for a, b in zip(jax.tree.leaves(gp(impl)), jax.tree.leaves(gp("xla"))):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", ["winograd2", "winograd4"])
@pytest.mark.parametrize("k,s,p,op", [(4, 2, 1, 0), (3, 2, 1, 1)])
def test_winograd_conv_transpose_is_exact_to_every_order_in_float64(impl, k, s, p, op):
    # The transposed conv's Winograd path (sub-pixel form) against XLA's (lhs-dilated) conv
    # in float64: forward, gradients and a penalty's grad of grad through it, to 1e-10.
    with _float64():
        rng = np.random.default_rng(10)
        x = jnp.asarray(rng.standard_normal((2, 5, 6, 3)))
        w = jnp.asarray(rng.standard_normal((k, k, 3, 4)) * 0.3)

        def up(x, w, impl):
            return C.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, impl=impl)

        def gp(impl):
            return _penalty_grads(lambda w, x: jnp.sum(jnp.tanh(up(x, w, impl)) ** 2), w, x)

        np.testing.assert_allclose(up(x, w, impl), up(x, w, "xla"), rtol=1e-12,
                                   atol=1e-12)
        for a, b in zip(gp(impl), gp("xla")):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", ["winograd2", "winograd4"])
@pytest.mark.parametrize("k,size", [(4, 9), (4, 12), (3, 11)])
def test_strided_winograd_is_exact_to_every_order_in_float64(impl, k, size):
    # The blocked strided conv (conv2d's Winograd path for strides > 1, outputs over 16
    # pixels) against XLA's strided conv in float64: forward, gradients and the gradient
    # penalty's grad of grad, to 1e-10.
    with _float64():
        rng = np.random.default_rng(8)
        x = jnp.asarray(rng.standard_normal((2, size, size + 1, 3)))
        ws = [jnp.asarray(rng.standard_normal((k, k, 3, 4)) * 0.3),
              jnp.asarray(rng.standard_normal((3, 3, 4, 2)) * 0.3)]

        def critic(impl, ws, x):
            h = jnp.tanh(C.conv2d(x, ws[0], stride=2, padding=1, impl=impl))
            return jnp.sum(jnp.tanh(C.conv2d(h, ws[1], padding=1, impl="xla")) ** 2)

        def gp(impl):
            return _penalty_grads(lambda ws, x: critic(impl, ws, x), ws, x)

        assert "custom_vjp_call" in str(jax.make_jaxpr(
            lambda x: C.conv2d(x, ws[0], stride=2, padding=1, impl=impl))(x))
        np.testing.assert_allclose(C.conv2d(x, ws[0], stride=2, padding=1, impl=impl),
                                   C.conv2d(x, ws[0], stride=2, padding=1, impl="xla"),
                                   rtol=1e-12, atol=1e-12)
        for a, b in zip(jax.tree.leaves(gp(impl)), jax.tree.leaves(gp("xla"))):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl,rtol", [("winograd2", 2e-4), ("winograd4", 1e-3)])
def test_winograd_gradient_penalty_float32(impl, rtol):
    # F(4x4) rounds more than F(2x2) (larger transform coefficients): through the penalty's
    # double backward its worst element differs from XLA's by 3.6e-4 relative here.
    x, ws = _lean_case()
    got, want = (jax.jit(jax.grad(_gp_loss(c), (0, 1)))(ws, x)
                 for c in (_conv_with(impl), _conv_with("xla")))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_winograd_auto_tiles_each_pass_for_its_size():
    # impl="winograd" picks a tile per pass: DCGAN-like shapes at batch 64 with two channels.
    # The k4 s2 conv on 32x32 is a 2x2 conv over 17x17 blocks: forward 16x16 (F4), input
    # gradient 17x17 (F3); the k4 s2 transposed conv from 8x8 is a 2x2 conv over a 10x10
    # padded input: forward 9x9 (F3), input gradient 10x10 (F5). All equal XLA's.
    assert [W.choose_tile(64, n, n, 2) for n in (16, 17, 9, 10)] == [4, 3, 3, 5]
    rng = np.random.default_rng(6)
    cases = [
        (lambda x, w, impl: C.conv2d(x, w, stride=2, padding=1, impl=impl),
         (64, 32, 32, 2), (4, 4, 2, 3)),
        (lambda x, w, impl: C.conv_transpose2d(x, w, stride=2, padding=1, impl=impl),
         (64, 8, 8, 2), (4, 4, 2, 3)),
    ]
    for f, xs, ws in cases:
        x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
        w = jnp.asarray(rng.standard_normal(ws), jnp.float32)
        outs = {}
        for impl in ("xla", "winograd"):
            y, vjp = jax.vjp(lambda x, w, impl=impl, f=f: f(x, w, impl), x, w)
            outs[impl] = (y, *vjp(jnp.cos(y)))
        for a, b in zip(outs["winograd"], outs["xla"]):
            assert a.shape == b.shape
            np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                       atol=2e-5 * float(jnp.max(jnp.abs(b))))


def test_identical_winograd_convs_are_traced_and_lowered_once():
    # Two convolutions of the same shapes and arguments, differentiated: the forward, the
    # input gradient and the kernel gradient are each one function of the lowered module,
    # called twice (a ResNet generator's 18 block convs trace as one; the step compiles to
    # the same program either way).
    x = jnp.ones((2, 8, 8, 4))
    w = jnp.ones((3, 3, 4, 4))
    pad = ((1, 1), (1, 1))

    def loss(x, w):
        return jnp.sum(W.winograd_conv(W.winograd_conv(x, w, None, 1, pad), w, None, 1, pad) ** 2)

    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).as_text()
    for body in ("_winograd_forward", "_winograd_transposed", "_winograd_weight_grad"):
        assert len(re.findall(rf"func\.func private @{body}\(", text)) == 1, body
        assert len(re.findall(rf"call @{body}\(", text)) == 2, body


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
def test_xla_transposed_conv_is_xlas_own_op(monkeypatch, backend):
    # impl="xla" is XLA's lhs-dilated convolution (what lax.conv_transpose lowers to) on every
    # backend: one conv_general_dilated, nothing else that computes.
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    x, w = jnp.zeros((2, 8, 8, 16)), jnp.zeros((4, 4, 16, 32))
    jaxpr = jax.make_jaxpr(lambda x, w: C.conv_transpose2d(x, w, stride=2, padding=1,
                                                           impl="xla"))(x, w)
    names = [e.primitive.name for e in jaxpr.eqns]
    assert names.count("conv_general_dilated") == 1
    assert not {"dot_general", "concatenate", "pad"} & set(names)
    (conv,) = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert conv.params["lhs_dilation"] == (2, 2)
