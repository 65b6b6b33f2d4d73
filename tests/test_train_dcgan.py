"""DCGAN train step: jit == eager, determinism, sharded == single device, learning, guards.

Tiny settings (16x16x1, ngf = ndf = 8, batch 8 = one image per simulated device). Every
test uses the same config, so the jitted step compiles once for the module.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import parallel
from jaxgan.train import dcgan

R, C, N = 16, 1, 8


def small_config():
    c = dcgan.default_config()
    c.image_size, c.channels, c.batch_size = R, C, N
    c.model.ngf = c.model.ndf = 8
    return c


CONFIG = small_config()
PURE = dcgan.make_train_step(CONFIG, jit=False)
STEP = dcgan.make_train_step(CONFIG, donate=False)


@functools.cache
def initial_state():
    return dcgan.create_state(CONFIG, jax.random.key(0))


def toy_images(key, n=N):
    """Toy distribution: each image one random brightness U(0.2, 0.8) plus N(0, 0.1) noise."""
    k_level, k_noise = jax.random.split(key)
    level = jax.random.uniform(k_level, (n, 1, 1, 1), minval=0.2, maxval=0.8)
    return (level + 0.1 * jax.random.normal(k_noise, (n, R, R, C))).astype(jnp.float32)


def test_default_config_is_the_reference():
    c = dcgan.default_config()
    assert (c.image_size, c.channels, c.batch_size) == (64, 3, 64)
    assert (c.model.latent_dim, c.model.ngf, c.model.ndf) == (100, 64, 64)
    assert c.loss.gan == "vanilla"
    assert dict(c.optimizer) == {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8}


class JitVersusEagerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_agrees_with_the_jitted_step(self):
        state, batch, key = initial_state(), {"image": toy_images(jax.random.key(1))}, \
            jax.random.key(2)
        got_state, got_metrics = self.variant(PURE)(state, batch, key)
        want_state, want_metrics = STEP(state, batch, key)
        # Same function, same backend; only XLA's fusion differs between the op-by-op and the
        # compiled program, so agreement to a few float32 ulps of O(1) values.
        chex.assert_trees_all_close(got_metrics, want_metrics, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(got_state, want_state, rtol=1e-5, atol=1e-6)
        assert int(got_state.step) == 1


def test_bit_identical_and_key_dependent():
    state, batch = initial_state(), {"image": toy_images(jax.random.key(1))}
    a = STEP(state, batch, jax.random.key(5))
    b = STEP(state, batch, jax.random.key(5))
    chex.assert_trees_all_equal(a, b)
    c_state, c_metrics = STEP(state, batch, jax.random.key(6))
    # another key -> other latents -> other fakes: D's fake loss and G's update differ
    assert float(c_metrics["d_loss_fake"]) != float(a[1]["d_loss_fake"])
    z = jax.random.normal(jax.random.key(3), (4, CONFIG.model.latent_dim))
    assert not np.allclose(dcgan.generate(CONFIG, a[0], z), dcgan.generate(CONFIG, c_state, z))
    # the step key is fold_in(key, step): the next step draws other latents from one run key
    _s1, m1 = STEP(a[0], batch, jax.random.key(5))
    assert float(m1["d_loss_fake"]) != float(a[1]["d_loss_fake"])


def test_sharded_step_matches_single_device():
    """8 devices, batch 8 split one per device, vs the same global batch on one device.

    BatchNorm statistics are reductions over the global batch under jit, so the sharded
    program computes the same function; only the order of float32 summations differs
    (per-device partial sums, then an all-reduce). Relative differences are ~1e-7 per
    reduction; after one Adam step, whose first update lr * g / (|g| + eps) is insensitive
    to tiny relative changes of g, parameters and running statistics agree to 1e-5.
    """
    mesh = parallel.make_mesh()
    assert mesh.shape["data"] == N
    batch, key = {"image": toy_images(jax.random.key(1))}, jax.random.key(2)
    want_state, want_metrics = STEP(initial_state(), batch, key)
    sharded = dcgan.make_train_step(CONFIG, mesh)
    state = parallel.replicate(jax.tree.map(jnp.copy, initial_state()), mesh)
    got_state, got_metrics = sharded(state, parallel.shard_batch(batch, mesh),
                                     parallel.replicate(key, mesh))
    assert got_state.g_params is not None
    assert jax.tree.leaves(got_state.g_params)[0].sharding.is_fully_replicated
    chex.assert_trees_all_close(got_metrics, want_metrics, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(got_state.g_batch_stats, want_state.g_batch_stats,
                                rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(got_state.d_batch_stats, want_state.d_batch_stats,
                                rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(got_state, want_state, rtol=1e-5, atol=1e-6)


def test_generator_moves_toward_the_toy_distribution():
    """Measure: mean over pixels of |mean image of 64 samples - mean image of 256 data images|.

    The data's mean image is about 0.5 everywhere; the untrained generator's samples average
    near 0 (distance about 0.5). After 300 steps (batch 8, the reference's Adam 2e-4) the
    distance must be below half its initial value (measured: 0.52 -> 0.14).
    """
    data_mean = toy_images(jax.random.key(0), 256).mean(0)
    z = jax.random.normal(jax.random.key(99), (64, CONFIG.model.latent_dim))
    gen = jax.jit(lambda s: dcgan.generate(CONFIG, s, z, train=True))

    def distance(state):
        return float(jnp.mean(jnp.abs(gen(state).mean(0) - data_mean)))

    state = initial_state()
    before = distance(state)
    key = jax.random.key(10)
    for i in range(300):
        state, metrics = STEP(state, {"image": toy_images(jax.random.fold_in(key, i))}, key)
    assert bool(metrics["finite"])
    after = distance(state)
    assert before > 0.4
    assert after < 0.5 * before, (before, after)


def test_non_finite_loss_is_reported_and_not_trained_on():
    state = initial_state()
    bad = toy_images(jax.random.key(1)).at[3, 2, 2, 0].set(jnp.nan)
    new, metrics = STEP(state, {"image": bad}, jax.random.key(2))
    assert not bool(metrics["finite"])
    assert not np.isfinite(float(metrics["d_loss"]))
    chex.assert_trees_all_equal(new.replace(step=state.step), state)
    assert int(new.step) == int(state.step) + 1
    _, ok = STEP(state, {"image": toy_images(jax.random.key(1))}, jax.random.key(2))
    assert bool(ok["finite"])


@pytest.mark.parametrize("image, match", [
    (np.zeros((N, R, R), np.float32), r"float32\[N, 16, 16, 1\]"),
    (np.zeros((N, R, R, 3), np.float32), r"got float32\[8, 16, 16, 3\]"),
    (np.zeros((N, 32, 32, C), np.float32), r"float32\[N, 16, 16, 1\]"),
    (np.zeros((N, R, R, C), np.uint8), "uint8.*float32"),
])
def test_wrong_input_raises_a_clear_error(image, match):
    with pytest.raises(ValueError, match=match):
        STEP(initial_state(), {"image": image}, jax.random.key(0))


def test_wrong_batch_structure_or_key():
    with pytest.raises(ValueError, match="missing 'image'"):
        STEP(initial_state(), {"img": np.zeros((N, R, R, C), np.float32)}, jax.random.key(0))
    with pytest.raises(TypeError, match="must be a dict"):
        STEP(initial_state(), np.zeros((N, R, R, C), np.float32), jax.random.key(0))
    with pytest.raises(ValueError, match="PRNG key"):
        STEP(initial_state(), {"image": np.zeros((N, R, R, C), np.float32)}, 3)
