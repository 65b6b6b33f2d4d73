"""CycleGAN train step: jit == eager, determinism, sharded == single device, pool, guards.

Tiny settings: 32x32x3 images, ResNet generators with 1 block, ngf = ndf = 8, the 'pixel'
discriminator (32x32 maps; the 'basic' PatchGAN is exercised by the pix2pix tests),
InstanceNorm, LSGAN, identity loss on, pool of 4 fakes, batch 8, plain XLA convolutions.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import parallel
from jaxgan.train import cyclegan
from jaxgan.train.testing import assert_step_outputs_close

S, N = 32, 8


def small_config():
    c = cyclegan.default_config()
    c.image_size, c.batch_size, c.pool_size = S, N, 4
    c.model.n_blocks = 1
    c.model.discriminator = "pixel"
    c.model.ngf = c.model.ndf = 8
    c.model.impl = "xla"
    return c

CONFIG = small_config()
PURE = cyclegan.make_train_step(CONFIG, jit=False)
STEP = cyclegan.make_train_step(CONFIG, donate=False)


@functools.cache
def initial_state():
    return cyclegan.create_state(CONFIG, jax.random.key(0))


def toy_batch(seed, n=N):
    """Unaligned domains: A are dark-ish noisy images, B bright-ish ones (numpy, host data)."""
    rng = np.random.default_rng(seed)
    a = np.clip(rng.normal(-0.4, 0.3, size=(n, S, S, 3)), -1, 1).astype(np.float32)
    b = np.clip(rng.normal(0.4, 0.3, size=(n, S, S, 3)), -1, 1).astype(np.float32)
    return {"A": a, "B": b}


def test_default_config_is_the_reference():
    c = cyclegan.default_config()
    assert (c.image_size, c.batch_size, c.pool_size) == (256, 1, 50)
    assert (c.model.generator, c.model.discriminator, c.model.norm) == (
        "resnet_9blocks", "basic", "instance")
    assert not c.model.use_dropout
    assert (c.loss.gan, c.loss.lambda_a, c.loss.lambda_b, c.loss.lambda_identity,
            c.loss.d_scale) == ("lsgan", 10.0, 10.0, 0.5, 0.5)
    assert dict(c.optimizer) == {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8}
    nets = cyclegan.build_models(c)
    assert nets["g_ab"].n_blocks == 9 and nets["d_a"].in_channels == 3


def test_identity_loss_needs_equal_channels():
    c = small_config()
    c.out_channels = 1
    with pytest.raises(ValueError, match="lambda_identity=0"):
        cyclegan.make_train_step(c)


def test_image_pool_follows_the_reference():
    """Filling: every fake is stored and returned. Full: each fake is returned with
    probability 1/2, else a random stored fake is returned and replaced by the new one."""
    query = jax.jit(cyclegan.pool_query)
    pool, count = jnp.zeros((3, 1, 1, 1)), jnp.zeros((), jnp.int32)
    first = jnp.arange(1.0, 3.0).reshape(2, 1, 1, 1)
    out, pool, count = query(pool, count, first, jax.random.key(0))
    np.testing.assert_array_equal(out, first)
    assert int(count) == 2
    np.testing.assert_array_equal(pool[:2], first)
    # one more fills it; later images are swapped in about half the time
    out, pool, count = query(pool, count, jnp.full((1, 1, 1, 1), 3.0), jax.random.key(1))
    assert int(count) == 3 and float(out[0, 0, 0, 0]) == 3.0
    swaps = 0
    for i in range(200):
        new = jnp.full((1, 1, 1, 1), 100.0 + i)
        out, pool, count = query(pool, count, new, jax.random.key(10 + i))
        if float(out[0, 0, 0, 0]) != 100.0 + i:
            swaps += 1
            assert 100.0 + i in np.asarray(pool).ravel()  # the new fake took the old one's slot
    assert int(count) == 3
    assert 70 <= swaps <= 130  # Binomial(200, 0.5): mean 100, sd 7
    # pool_size 0: the reference's pass-through
    empty = jnp.zeros((0, 1, 1, 1))
    out, _, _ = cyclegan.pool_query(empty, jnp.zeros((), jnp.int32), first, jax.random.key(0))
    np.testing.assert_array_equal(out, first)


class JitVersusEagerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_agrees_with_the_jitted_step(self):
        state, batch, key = initial_state(), toy_batch(1), jax.random.key(2)
        got_state, got_metrics = self.variant(PURE)(state, batch, key)
        want_state, want_metrics = STEP(state, batch, key)
        # Same computation; only XLA's fusion (float32 summation order) differs between
        # op-by-op and compiled execution: see jaxgan.train.testing for the tolerances.
        assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                                  learning_rate=CONFIG.optimizer.learning_rate)
        assert int(got_state.pool_a_count) == 4 and int(got_state.pool_b_count) == 4


def test_bit_identical_and_key_dependent():
    state, batch = initial_state(), toy_batch(1)
    a = STEP(state, batch, jax.random.key(5))
    chex.assert_trees_all_equal(a, STEP(state, batch, jax.random.key(5)))
    # The pool fills with the first 4 fakes; the other 4 are swapped by coin flips drawn
    # from the key, so another key gives the discriminators other fakes and other losses.
    b_state, b_metrics = STEP(state, batch, jax.random.key(6))
    assert float(b_metrics["d_loss"]) != float(a[1]["d_loss"])
    assert not np.array_equal(b_state.pool_a, a[0].pool_a) or \
        not np.array_equal(b_state.pool_b, a[0].pool_b)
    # the generator update happens before the pool: it does not depend on the key
    np.testing.assert_array_equal(b_metrics["g_loss"], a[1]["g_loss"])


def test_sharded_step_matches_single_device():
    """8 devices (one image per domain each) vs one device on the same global batch.

    InstanceNorm is per image and the pool update runs on replicated data with the same
    key, so the only difference is float32 summation order in the global means
    (~1e-7 relative): losses agree to rtol 1e-5, parameters too except coordinates with a
    gradient within that noise of zero (Adam bound 2 * lr, see jaxgan.train.testing).
    """
    mesh = parallel.make_mesh()
    batch, key = toy_batch(1), jax.random.key(2)
    want_state, want_metrics = STEP(initial_state(), batch, key)
    sharded = cyclegan.make_train_step(CONFIG, mesh)
    state = parallel.replicate(jax.tree.map(jnp.copy, initial_state()), mesh)
    got_state, got_metrics = sharded(state, parallel.shard_batch(batch, mesh),
                                     parallel.replicate(key, mesh))
    assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                              learning_rate=CONFIG.optimizer.learning_rate)


def test_non_finite_loss_is_reported_and_not_trained_on():
    state, batch = initial_state(), toy_batch(1)
    batch["A"][2, 5, 5, 1] = np.nan
    new, metrics = STEP(state, batch, jax.random.key(2))
    assert not bool(metrics["finite"])
    # nothing moves, not even the pools
    chex.assert_trees_all_equal(new.replace(step=state.step), state)
    assert int(new.pool_a_count) == 0


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((N, S, S, 3), np.float32), np.zeros((N, S, S), np.float32),
     r"batch\['B'\]: expected .*float32\[N, 32, 32, 3\]"),
    (np.zeros((N, S, S, 3), np.int32), np.zeros((N, S, S, 3), np.float32), "int32"),
    (np.zeros((N, 16, 16, 3), np.float32), np.zeros((N, S, S, 3), np.float32),
     r"batch\['A'\]: expected .*float32\[N, 32, 32, 3\], got float32\[8, 16, 16, 3\]"),
])
def test_wrong_input_raises_a_clear_error(a, b, match):
    with pytest.raises(ValueError, match=match):
        STEP(initial_state(), {"A": a, "B": b}, jax.random.key(0))


def test_translate_both_ways():
    batch = toy_batch(3, n=2)
    fake_b = cyclegan.translate(CONFIG, initial_state(), batch["A"], "AtoB")
    fake_a = cyclegan.translate(CONFIG, initial_state(), batch["B"], "BtoA")
    chex.assert_shape([fake_a, fake_b], (2, S, S, 3))
    assert not np.allclose(fake_b, fake_a)  # two different generators
    with pytest.raises(ValueError, match="'AtoB' or 'BtoA'"):
        cyclegan.translate(CONFIG, initial_state(), batch["A"], "A2B")


def test_init_from_torch_maps_the_reference_names():
    """The reference's G_A (A -> B) is g_ab, G_B g_ba, D_A (judging B) d_b, D_B d_a: a
    state_dict given for each lands there exactly, the others stay."""
    from jaxgan.interop import torch as interop

    donor = cyclegan.create_state(CONFIG, jax.random.key(7))
    start = initial_state()

    def export(params, stats, name, model):
        return interop.to_state_dict(model, {"params": params[name], "batch_stats": stats[name]})

    state = cyclegan.init_from_torch(
        CONFIG, start, G_A=export(donor.g_params, donor.g_batch_stats, "g_ab", "resnet_9blocks"),
        D_A=export(donor.d_params, donor.d_batch_stats, "d_b", "pixel"))
    chex.assert_trees_all_equal((state.g_params["g_ab"], state.d_params["d_b"]),
                                (donor.g_params["g_ab"], donor.d_params["d_b"]))
    chex.assert_trees_all_equal((state.g_params["g_ba"], state.d_params["d_a"], state.pool_a),
                                (start.g_params["g_ba"], start.d_params["d_a"], start.pool_a))
    with pytest.raises(ValueError, match=r"unknown network\(s\) \['G_C'\]"):
        cyclegan.init_from_torch(CONFIG, start, G_C={})
