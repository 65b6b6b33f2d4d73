"""jaxgan.train.common and jaxgan.train.testing: the pieces every family's step relies on."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgan.train import common
from jaxgan.train.testing import assert_step_outputs_close


def test_linear_decay_schedule():
    lr = common.linear_decay_schedule(1.0, 3, 2)
    np.testing.assert_allclose([float(lr(i)) for i in range(7)], [1, 1, 1, 1, 0.5, 0, 0])
    assert float(common.linear_decay_schedule(0.1, 5, 0)(100)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match=">= 0"):
        common.linear_decay_schedule(1.0, -1, 2)


def test_guard_keeps_the_old_tree_unless_finite():
    old, new = {"a": jnp.zeros(3)}, {"a": jnp.ones(3)}
    np.testing.assert_array_equal(common.guard_finite(jnp.bool_(True), new, old)["a"], 1)
    np.testing.assert_array_equal(common.guard_finite(jnp.bool_(False), new, old)["a"], 0)
    assert bool(common.tree_all_finite({"a": jnp.ones(2), "n": jnp.int32(3)}))
    assert not bool(common.tree_all_finite({"a": jnp.array([1.0, jnp.inf])}))
    assert bool(common.tree_all_finite({}))


def test_check_image_batch_and_key():
    ok = {"x": jnp.zeros((2, 4, 4, 3))}
    assert common.check_image_batch("fam", ok, {"x": (None, 4, 4, 3)}) == 2
    with pytest.raises(ValueError, match=r"fam train_step: batch\['x'\] must be float32\[N, 4"
                                         r", 4, 3\].*got float32\[2, 4, 4, 1\]"):
        common.check_image_batch("fam", {"x": jnp.zeros((2, 4, 4, 1))}, {"x": (None, 4, 4, 3)})
    with pytest.raises(ValueError, match="empty batch"):
        common.check_image_batch("fam", {"x": jnp.zeros((0, 4, 4, 3))}, {"x": (None, 4, 4, 3)})
    common.check_key("fam", jax.random.key(0))
    common.check_key("fam", jax.random.PRNGKey(0))  # raw uint32[2] keys work too
    with pytest.raises(ValueError, match="PRNG key"):
        common.check_key("fam", jax.random.split(jax.random.key(0), 2))


def test_bind_config_reuses_one_function_for_equal_configs():
    def f(config, x):
        return x * config.k

    a = ml_collections.ConfigDict({"k": 2})
    b = ml_collections.ConfigDict({"k": 2})
    assert common.bind_config(f, a) is common.bind_config(f, b)
    assert common.bind_config(f, a) is not common.bind_config(f, {"k": 3})
    assert common.bind_config(f, a)(4) == 8


def test_step_output_comparison_tolerates_only_adam_noise():
    state = {"w": np.zeros(10_000, np.float32), "n": np.int32(1)}
    metrics = {"loss": np.float32(1.0)}
    near = {"w": state["w"].copy(), "n": np.int32(1)}
    near["w"][7] = 1.5e-4  # one near-zero-gradient coordinate moved by < 2 * lr
    assert_step_outputs_close((near, metrics), (state, metrics), learning_rate=1e-4)
    far = {"w": state["w"].copy(), "n": np.int32(1)}
    far["w"][7] = 3e-4  # beyond 2 * lr: not summation noise
    with pytest.raises(AssertionError, match="Adam bound"):
        assert_step_outputs_close((far, metrics), (state, metrics), learning_rate=1e-4)
    many = {"w": state["w"] + 1e-5, "n": np.int32(1)}  # every element off: a real difference
    with pytest.raises(AssertionError, match="state elements differ"):
        assert_step_outputs_close((many, metrics), (state, metrics), learning_rate=1e-4)
    with pytest.raises(AssertionError):
        assert_step_outputs_close((state, {"loss": np.float32(1.1)}), (state, metrics),
                                  learning_rate=1e-4)
