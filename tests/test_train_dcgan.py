"""DCGAN train step: jit == eager, determinism, sharded == single device, learning, guards.

Tiny settings (16x16x1, ngf = ndf = 8, batch 8 = one image per simulated device, plain XLA
convolutions). Every
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
from jaxgan.train.testing import assert_step_outputs_close

R, C, N = 16, 1, 8


def small_config():
    c = dcgan.default_config()
    c.image_size, c.channels, c.batch_size = R, C, N
    c.model.ngf = c.model.ndf = 8
    c.model.impl = "xla"  # fewest ops: the cheapest to compile and to run eagerly
    return c

CONFIG = small_config()
PURE = dcgan.make_train_step(CONFIG, jit=False)
STEP = dcgan.make_train_step(CONFIG, donate=False)


@functools.cache
def initial_state():
    return dcgan.create_state(CONFIG, jax.random.key(0))


def toy_images(seed, n=N):
    """Toy distribution: each image one random brightness U(0.2, 0.8) plus N(0, 0.1) noise
    (numpy: host data, as a data pipeline would give)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.2, 0.8, size=(n, 1, 1, 1))
    return (level + 0.1 * rng.normal(size=(n, R, R, C))).astype(np.float32)


def test_default_config_is_the_reference():
    c = dcgan.default_config()
    assert (c.image_size, c.channels, c.batch_size) == (64, 3, 64)
    assert (c.model.latent_dim, c.model.ngf, c.model.ndf) == (100, 64, 64)
    assert c.loss.gan == "vanilla"
    assert dict(c.optimizer) == {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8}


class JitVersusEagerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_agrees_with_the_jitted_step(self):
        state, batch, key = initial_state(), {"image": toy_images(1)}, \
            jax.random.key(2)
        got_state, got_metrics = self.variant(PURE)(state, batch, key)
        want_state, want_metrics = STEP(state, batch, key)
        # Same computation; only XLA's fusion (float32 summation order) differs between
        # op-by-op and compiled execution: see jaxgan.train.testing for the tolerances.
        assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                                  learning_rate=CONFIG.optimizer.learning_rate)
        assert int(got_state.step) == 1


def test_bit_identical_and_key_dependent():
    state, batch = initial_state(), {"image": toy_images(1)}
    a = STEP(state, batch, jax.random.key(5))
    b = STEP(state, batch, jax.random.key(5))
    chex.assert_trees_all_equal(a, b)
    c_state, c_metrics = STEP(state, batch, jax.random.key(6))
    # another key -> other latents -> other fakes: D's loss on the step's fakes (same D
    # params, same reals) differs, and so do the updated generators
    assert float(c_metrics["d_loss_fake"]) != float(a[1]["d_loss_fake"])
    assert not np.allclose(c_state.g_params["ConvTranspose2d_0"]["kernel"],
                           a[0].g_params["ConvTranspose2d_0"]["kernel"])
    # the step key is fold_in(key, step): the next step draws other latents from one run key
    _s1, m1 = STEP(a[0], batch, jax.random.key(5))
    assert float(m1["d_loss_fake"]) != float(a[1]["d_loss_fake"])


def test_sharded_step_matches_single_device():
    """8 devices, batch 8 split one per device, vs the same global batch on one device.

    BatchNorm statistics are reductions over the global batch under jit, so the sharded
    program computes the same function; only the order of float32 summations differs
    (per-device partial sums, then an all-reduce), ~1e-7 relative per reduction: losses
    and BatchNorm statistics agree to rtol 1e-5; parameters too, except coordinates whose
    gradient is within that noise of zero, where Adam's first update lr * g / (|g| + eps)
    may differ by up to 2 * lr (jaxgan.train.testing).
    """
    mesh = parallel.make_mesh()
    assert mesh.shape["data"] == N
    batch, key = {"image": toy_images(1)}, jax.random.key(2)
    want_state, want_metrics = STEP(initial_state(), batch, key)
    sharded = dcgan.make_train_step(CONFIG, mesh)
    state = parallel.replicate(jax.tree.map(jnp.copy, initial_state()), mesh)
    got_state, got_metrics = sharded(state, parallel.shard_batch(batch, mesh),
                                     parallel.replicate(key, mesh))
    assert got_state.g_params is not None
    assert jax.tree.leaves(got_state.g_params)[0].sharding.is_fully_replicated
    # BatchNorm running statistics: global batch moments, tight tolerance
    chex.assert_trees_all_close(got_state.g_batch_stats, want_state.g_batch_stats,
                                rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(got_state.d_batch_stats, want_state.d_batch_stats,
                                rtol=1e-5, atol=1e-6)
    assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                              learning_rate=CONFIG.optimizer.learning_rate)


def test_generator_moves_toward_the_toy_distribution():
    """Measure: mean over pixels of |mean image of 64 samples - mean image of 256 data images|.

    The data's mean image is about 0.5 everywhere; the untrained generator's samples average
    near 0 (distance about 0.5). After 300 steps (batch 8, the reference's Adam 2e-4) the
    distance must be below half its initial value (measured: 0.52 -> 0.14).
    """
    data_mean = toy_images(0, 256).mean(0)
    z = jax.random.normal(jax.random.key(99), (64, CONFIG.model.latent_dim))

    def distance(state):
        samples = dcgan.generate(CONFIG, state, z, train=True)
        chex.assert_shape(samples, (64, R, R, C))
        assert float(jnp.max(jnp.abs(samples))) <= 1.0  # tanh output
        return float(jnp.mean(jnp.abs(samples.mean(0) - data_mean)))

    state = initial_state()
    before = distance(state)
    key = jax.random.key(10)
    for i in range(300):
        state, metrics = STEP(state, {"image": toy_images(100 + i)}, key)
    assert bool(metrics["finite"])
    after = distance(state)
    assert before > 0.4
    assert after < 0.5 * before, (before, after)


def test_non_finite_loss_is_reported_and_not_trained_on():
    state = initial_state()
    bad = toy_images(1)
    bad[3, 2, 2, 0] = np.nan
    new, metrics = STEP(state, {"image": bad}, jax.random.key(2))
    assert not bool(metrics["finite"])
    assert not np.isfinite(float(metrics["d_loss"]))
    chex.assert_trees_all_equal(new.replace(step=state.step), state)
    assert int(new.step) == int(state.step) + 1
    _, ok = STEP(state, {"image": toy_images(1)}, jax.random.key(2))
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


def test_init_from_torch_takes_pytorch_examples_state_dicts():
    """netG / netD state_dicts of pytorch/examples' DCGAN (names main.N.*; here another jaxgan
    init exported by jaxgan.interop) become G and D exactly; Adam states and step stay."""
    from jaxgan.interop import torch as interop

    donor, start = dcgan.create_state(CONFIG, jax.random.key(7)), initial_state()
    g = interop.to_state_dict("dcgan", {"params": donor.g_params,
                                        "batch_stats": donor.g_batch_stats}, part="g")
    d = interop.to_state_dict("dcgan", {"params": donor.d_params,
                                        "batch_stats": donor.d_batch_stats}, part="d")
    assert list(g)[:3] == ["main.0.weight", "main.1.weight", "main.1.bias"]
    state = dcgan.init_from_torch(CONFIG, start, g=g, d=d)
    chex.assert_trees_all_equal((state.g_params, state.g_batch_stats, state.d_params,
                                 state.d_batch_stats),
                                (donor.g_params, donor.g_batch_stats, donor.d_params,
                                 donor.d_batch_stats))
    chex.assert_trees_all_equal((state.step, state.g_opt_state), (start.step, start.g_opt_state))
    with pytest.raises(ValueError, match=r"netD: .*main\.0\.weight"):
        dcgan.init_from_torch(CONFIG, start, d=g)


def test_init_from_torch_reads_the_configs_init_files(tmp_path):
    """``config.init.torch_G`` (the CLI's ``--config.init.torch_G=netG.pth``) is the default
    source: G comes from the file, D (no file) stays the state's."""
    from jaxgan.interop import pth
    from jaxgan.interop import torch as interop

    donor, start = dcgan.create_state(CONFIG, jax.random.key(7)), initial_state()
    pth.write_pth(tmp_path / "netG.pth", interop.to_state_dict(
        "dcgan", {"params": donor.g_params, "batch_stats": donor.g_batch_stats}, part="g"))
    config = CONFIG.copy_and_resolve_references()
    config.init.torch_G = str(tmp_path / "netG.pth")
    state = dcgan.init_from_torch(config, start)
    chex.assert_trees_all_equal((state.g_params, state.g_batch_stats),
                                (donor.g_params, donor.g_batch_stats))
    chex.assert_trees_all_equal(state.d_params, start.d_params)
