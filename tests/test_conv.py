"""The transposed convolution is exact in every formulation (against a direct numpy scatter and
against lax.conv_transpose), forward and backward; the conv formulations agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxgan.nn import conv as C


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
IMPLS = ["xla", "im2col", "col2im", "xla_dilated", "auto"]


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

    ref = grads("xla_dilated")
    for impl in ("xla", "im2col", "col2im", "auto"):
        for a, b in zip(grads(impl), ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (3, 1, 1), (7, 1, 0), (1, 1, 0), (4, 1, 1), (3, 2, 1)])
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
    assert C.default_impl("cpu", out_features=64, patch_features=4 * 4 * 3, rows=16384) == "xla"
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


def test_default_transpose_impl():
    assert C.default_transpose_impl("gpu", 3, 2, 3) == "xla"
    assert C.default_transpose_impl("cpu", 4, 2, 3) == "col2im"  # DCGAN / U-Net output layer
    assert C.default_transpose_impl("cpu", 3, 2, 128) == "col2im"  # ResNet up: 3 % 2 != 0
    assert C.default_transpose_impl("cpu", 4, 1, 512, in_pixels=1) == "col2im"  # DCGAN 1x1
    assert C.default_transpose_impl("cpu", 4, 2, 128, in_pixels=256) is None  # sub-pixel


def test_huge_im2col_patches_are_rebuilt_not_kept(monkeypatch):
    # Above the cap (PGGAN 128x128x128 3x3 at batch 16: 1.2 GB of patches) the im2col conv is
    # rematerialised: the backward pass rebuilds the patches instead of keeping them.
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)

    def loss(x, w):  # a new function per trace: the cap is read at trace time
        return jnp.sum(C.conv2d(x, w, padding=1, impl="im2col") ** 2)

    want = jax.grad(loss, argnums=(0, 1))(x, w)
    assert "remat" not in str(jax.make_jaxpr(loss)(x, w))
    monkeypatch.setattr(C, "_MAX_IM2COL_PATCH_BYTES", 1024)
    loss = lambda x, w: jnp.sum(C.conv2d(x, w, padding=1, impl="im2col") ** 2)
    assert "remat" in str(jax.make_jaxpr(loss)(x, w))
    got = jax.grad(loss, argnums=(0, 1))(x, w)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
