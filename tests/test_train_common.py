"""jaxgan.train.common and jaxgan.train.testing: the pieces every family's step relies on."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
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


ADAM = ml_collections.ConfigDict({"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8})


def _bits(tree):
    """Leaves as raw integers: equality that tells -0.0 from 0.0 and compares NaNs."""
    return jax.tree.map(lambda x: np.asarray(x).view(f"i{np.asarray(x).dtype.itemsize}"), tree)


def _adam_case():
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
              "b": jnp.array([0.0, -0.0, 1e-30, -3.0])}
    grads = [jax.tree.map(lambda p, i=i: jnp.sin(7.0 * p + i) * 10.0 ** -i, params)
             for i in range(4)]
    return params, grads


@pytest.mark.parametrize("schedule", [False, True])
def test_adam_is_optax_adam_of_the_config(schedule):
    lr = common.linear_decay_schedule(2e-4, 1, 2) if schedule else None
    ours = common.adam(ADAM, lr)
    ref = optax.adam(lr or 2e-4, b1=0.5, b2=0.999, eps=1e-8)
    params, grads = _adam_case()
    s_ours, s_ref = ours.init(params), ref.init(params)
    chex.assert_trees_all_equal_structs(s_ours, s_ref)  # checkpoints keep optax's layout
    p_ours = p_ref = params
    for g in grads:
        p_ours, s_ours = common.apply_optimizer(ours, g, s_ours, p_ours)
        u_ref, s_ref = jax.jit(ref.update)(g, s_ref, p_ref)
        p_ref = jax.jit(optax.apply_updates)(p_ref, u_ref)
        chex.assert_trees_all_close((p_ours, s_ours), (p_ref, s_ref), rtol=1e-6, atol=0)
    assert int(common.optimizer_count(s_ours)) == len(grads)


@pytest.mark.parametrize("steps_before", [0, 2])
def test_commit_step_keeps_the_whole_state_bit_for_bit_when_not_finite(steps_before):
    # At count 0 Adam's bias correction divides by zero: the guard must select, not scale.
    from flax import struct

    class State(struct.PyTreeNode):
        step: jax.Array
        params: dict
        opt_state: tuple

    tx = common.adam(ADAM, common.linear_decay_schedule(2e-4, 1, 2))
    params, grads = _adam_case()
    state = State(jnp.int32(0), params, tx.init(params))
    for g in grads[:steps_before]:
        p, o = common.apply_optimizer(tx, g, state.opt_state, state.params)
        state, _ = common.commit_step(state, state.replace(params=p, opt_state=o), {},
                                      jnp.bool_(True))
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads[-1])
    p, o = common.apply_optimizer(tx, bad, state.opt_state, state.params)
    finite = common.tree_all_finite(bad)
    kept, metrics = common.commit_step(state, state.replace(params=p, opt_state=o), {}, finite)
    assert not bool(metrics["finite"]) and int(kept.step) == steps_before + 1
    chex.assert_trees_all_equal(_bits((kept.params, kept.opt_state)),
                                _bits((state.params, state.opt_state)))
    assert int(common.optimizer_count(kept.opt_state)) == steps_before
    p, o = common.apply_optimizer(tx, grads[-1], state.opt_state, state.params)
    moved, _ = common.commit_step(state, state.replace(params=p, opt_state=o), {},
                                  common.tree_all_finite(grads[-1]))
    assert int(common.optimizer_count(moved.opt_state)) == steps_before + 1
    assert not np.array_equal(moved.params["w"], params["w"])


def test_check_image_batch_and_key():
    ok = {"x": jnp.zeros((2, 4, 4, 3))}
    assert common.check_image_batch("fam", ok, {"x": (None, 4, 4, 3)}) == 2
    with pytest.raises(ValueError, match=r"fam train_step: batch\['x'\]: expected input of "
                                         r"shape float32\[N, 4, 4, 3\], got float32\[2, 4, 4, 1\]"):
        common.check_image_batch("fam", {"x": jnp.zeros((2, 4, 4, 1))}, {"x": (None, 4, 4, 3)})
    with pytest.raises(ValueError, match="empty batch"):
        common.check_image_batch("fam", {"x": jnp.zeros((0, 4, 4, 3))}, {"x": (None, 4, 4, 3)})
    with pytest.raises(ValueError, match=r"expected float32\[N, 4, 4, 3\] images.*got float16"):
        common.check_image_batch("fam", {"x": jnp.zeros((2, 4, 4, 3), jnp.float16)},
                                 {"x": (None, 4, 4, 3)})
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
