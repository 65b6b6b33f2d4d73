"""Building blocks: equalized LR, PixelNorm, minibatch stddev, resampling, norms, init."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import nn as jnn


def test_equalized_conv_runtime_scaling():
    layer = jnn.EqualizedConv(features=256, kernel_size=3, gain=math.sqrt(2))
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 128))
    params = layer.init(jax.random.key(0), x)["params"]
    w = np.asarray(params["kernel"])
    assert w.shape == (3, 3, 128, 256)
    # Stored weights ~ N(0, 1): unit variance at init (295k samples: +-1%).
    assert abs(w.std() - 1.0) < 0.01 and abs(w.mean()) < 0.01
    scale = math.sqrt(2) / math.sqrt(3 * 3 * 128)
    assert abs((w * scale).std() - scale) < 0.01 * scale
    # The layer equals a plain conv with the scaled weight: the scaling happens at runtime.
    bias = jnp.arange(256, dtype=jnp.float32) / 100
    params = {"kernel": params["kernel"], "bias": bias}
    got = layer.apply({"params": params}, x)
    want = jax.lax.conv_general_dilated(
        x, jnp.asarray(w) * scale, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    ) + bias
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # Doubling the stored weights doubles the runtime weight (not folded into the init).
    got2 = layer.apply({"params": {"kernel": 2 * params["kernel"], "bias": 0 * bias}}, x)
    np.testing.assert_allclose(np.asarray(got2), 2 * np.asarray(want - bias), rtol=1e-4, atol=1e-4)


def test_equalized_dense_gain_configurable():
    layer = jnn.EqualizedDense(features=64, gain=0.5)
    x = jax.random.normal(jax.random.key(1), (3, 32))
    params = layer.init(jax.random.key(0), x)["params"]
    want = x @ (params["kernel"] * 0.5 / math.sqrt(32)) + params["bias"]
    np.testing.assert_allclose(np.asarray(layer.apply({"params": params}, x)), np.asarray(want),
                               rtol=1e-6)
    assert not np.any(np.asarray(params["bias"]))


def test_pixel_norm_unit_mean_square():
    x = 3.0 * jax.random.normal(jax.random.key(0), (2, 4, 4, 16)) + 1.0
    y = jnn.pixel_norm(x)
    chex.assert_trees_all_close(jnp.mean(y**2, axis=-1), jnp.ones((2, 4, 4)), atol=1e-5)


def _mbstd_numpy(x, group):
    n = x.shape[0]
    g = min(group, n)
    m = n // g
    out = np.empty(n)
    for j in range(m):
        members = [j + i * m for i in range(g)]  # strided grouping: n mod m == j
        std = np.sqrt(np.var(x[members].astype(np.float64), axis=0) + 1e-8)
        out[members] = std.mean()
    return out


@pytest.mark.parametrize("n,group", [(8, 4), (4, 4), (2, 4), (12, 3), (6, 2)])
def test_minibatch_stddev_strided_groups(n, group):
    x = np.random.default_rng(n).standard_normal((n, 3, 3, 5)).astype(np.float32)
    x[: n // 2] *= 3.0  # make groups differ
    y = np.asarray(jnn.minibatch_stddev(jnp.asarray(x), group))
    assert y.shape == (n, 3, 3, 6)
    np.testing.assert_array_equal(y[..., :5], x)
    want = _mbstd_numpy(x, group)
    np.testing.assert_allclose(y[..., 5], np.broadcast_to(want[:, None, None], (n, 3, 3)),
                               rtol=1e-5)


def test_minibatch_stddev_groups_are_strided_not_contiguous():
    # Samples 0..3 are identical and 4..7 identical: contiguous groups would give std 0,
    # strided groups (n mod 2) mix both halves.
    x = np.concatenate([np.zeros((4, 2, 2, 1)), np.ones((4, 2, 2, 1))]).astype(np.float32)
    y = np.asarray(jnn.minibatch_stddev(jnp.asarray(x), 4))
    assert np.all(y[..., 1] > 0.49)


def test_minibatch_stddev_indivisible_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by the group size 4"):
        jnn.minibatch_stddev(jnp.zeros((6, 2, 2, 3)), 4)


def test_resampling():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    up = jnn.upsample_nearest_2x(x)
    assert up.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(up[:, 1::2, ::2]), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(jnn.downsample_avg_2x(up)), np.asarray(x))
    d = jnn.downsample_avg_2x(x)
    np.testing.assert_allclose(np.asarray(d[0, 0, 0]), np.asarray(x[0, :2, :2].mean((0, 1))))
    with pytest.raises(ValueError, match="even"):
        jnn.downsample_avg_2x(jnp.zeros((1, 3, 4, 1)))


def test_instance_norm_has_no_params_and_normalises():
    x = 5 * jax.random.normal(jax.random.key(0), (2, 6, 6, 4)) + 2
    variables = jnn.Norm("instance").init(jax.random.key(0), x)
    assert not jax.tree_util.tree_leaves(variables)
    y = jnn.instance_norm(x)
    chex.assert_trees_all_close(y.mean(axis=(1, 2)), jnp.zeros((2, 4)), atol=1e-5)
    chex.assert_trees_all_close(y.var(axis=(1, 2)), jnp.ones((2, 4)), atol=1e-3)


def test_batchnorm_and_conv_reference_init():
    x = jnp.ones((2, 4, 4, 64))
    v = jnn.Norm("batch").init(jax.random.key(0), x)
    scale = np.asarray(v["params"]["bn"]["scale"])
    assert abs(scale.mean() - 1) < 0.01 and 0.01 < scale.std() < 0.03
    assert not np.any(np.asarray(v["params"]["bn"]["bias"]))
    k = np.asarray(jnn.Conv2d(128, 4).init(jax.random.key(0), x)["params"]["kernel"])
    assert abs(k.std() - 0.02) < 0.001 and abs(k.mean()) < 0.001


def test_unknown_norm():
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        jnn.check_norm("group")
