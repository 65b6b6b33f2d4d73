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
IMPLS = ["xla", "im2col", "xla_dilated", "auto"]


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
    for impl in ("xla", "im2col", "auto"):
        for a, b in zip(grads(impl), ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (3, 1, 1), (7, 1, 0), (1, 1, 0), (4, 1, 1)])
def test_conv2d_impls_agree_with_grads(k, s, p):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 9, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 3, 4)), jnp.float32)
    outs = {}
    for impl in ("xla", "im2col", "auto"):
        f = lambda x, w, impl=impl: C.conv2d(x, w, stride=s, padding=p, impl=impl)
        y, vjp = jax.vjp(f, x, w)
        outs[impl] = (y, *vjp(jnp.ones_like(y)))
    for impl in ("im2col", "auto"):
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
    assert C.default_impl("gpu") == "xla"
    assert C.default_impl("tpu") == "xla"
    assert C.default_impl("cpu", out_features=512) == "im2col"
    assert C.default_impl("cpu", out_features=64) == "xla"
    # thin outputs: im2col only while the patches are narrow (measured, RESULTS.md)
    assert C.default_impl("cpu", out_features=64, patch_features=4 * 4 * 3) == "im2col"
    assert C.default_impl("cpu", out_features=3, patch_features=128) == "im2col"
    assert C.default_impl("cpu", out_features=12, patch_features=2 * 2 * 128) == "xla"
    assert C.default_impl("cpu", out_features=1, patch_features=4 * 4 * 512) == "xla"
    assert C.default_impl("gpu", out_features=64, patch_features=48) == "xla"


def test_auto_avoids_huge_im2col_patches():
    # PGGAN 128x128x128 3x3 at batch 16: 1.2 GB of patches -> XLA's conv; 32x32x512: im2col.
    assert C.default_impl("cpu", 128, 9 * 128, patch_bytes=16 * 128 * 128 * 9 * 128 * 4) == "xla"
    assert C.default_impl("cpu", 512, 9 * 512, patch_bytes=16 * 32 * 32 * 9 * 512 * 4) == "im2col"
