"""pix2pix train step: jit == eager, determinism, sharded == single device, learning, guards.

Tiny settings: 64x64x3 pairs, U-Net with 6 downs (the fewest that has a dropout block),
ngf = ndf = 8, the 70x70 'basic' PatchGAN (here a 6x6 map), BatchNorm and dropout on as in
the reference, batch 8, plain XLA convolutions.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import parallel
from jaxgan.train import pix2pix
from jaxgan.train.testing import assert_step_outputs_close

S, N = 64, 8


def small_config():
    c = pix2pix.default_config()
    c.image_size, c.batch_size = S, N
    c.model.num_downs = 6
    c.model.ngf = c.model.ndf = 8
    c.model.impl = "xla"
    c.schedule.constant_steps = c.schedule.decay_steps = 1000
    return c

CONFIG = small_config()
PURE = pix2pix.make_train_step(CONFIG, jit=False)
STEP = pix2pix.make_train_step(CONFIG, donate=False)


@functools.cache
def initial_state():
    return pix2pix.create_state(CONFIG, jax.random.key(0))


def toy_pairs(seed, n=N):
    """A: smooth random colour fields (4x4 noise, nearest-upsampled, plus fine noise).
    B = -A with the colour channels reversed: a fixed pixelwise map G has to learn.
    (numpy: host data, as a data pipeline would give.)"""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-0.9, 0.9, size=(n, 4, 4, 3))
    a = np.repeat(np.repeat(coarse, S // 4, axis=1), S // 4, axis=2)
    a = np.clip(a + 0.05 * rng.normal(size=a.shape), -1, 1).astype(np.float32)
    return {"A": a, "B": np.ascontiguousarray(-a[..., ::-1])}


def test_default_config_is_the_reference():
    c = pix2pix.default_config()
    assert (c.image_size, c.in_channels, c.out_channels, c.batch_size) == (256, 3, 3, 1)
    assert (c.model.generator, c.model.discriminator, c.model.norm) == ("unet_256", "basic",
                                                                        "batch")
    assert c.model.use_dropout and (c.model.ngf, c.model.ndf) == (64, 64)
    assert (c.loss.gan, c.loss.l1_weight, c.loss.d_scale) == ("vanilla", 100.0, 0.5)
    assert dict(c.optimizer) == {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8}
    assert (c.data.load_size, c.data.random_flip) == (286, True)
    assert c.num_steps == c.schedule.constant_steps + c.schedule.decay_steps
    g, d = pix2pix.build_models(c)
    assert (g.num_downs, d.in_channels, d.n_layers) == (8, 6, 3)


def test_learning_rate_is_constant_then_linear_to_zero():
    c = pix2pix.default_config()
    c.schedule.constant_steps, c.schedule.decay_steps = 10, 4
    lr = pix2pix.learning_rate_schedule(c)
    got = [float(lr(i)) for i in (0, 9, 10, 11, 12, 13, 14, 20)]
    np.testing.assert_allclose(got, [2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 0, 0], atol=1e-12)


class JitVersusEagerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_agrees_with_the_jitted_step(self):
        state, batch, key = initial_state(), toy_pairs(1), jax.random.key(2)
        got_state, got_metrics = self.variant(PURE)(state, batch, key)
        want_state, want_metrics = STEP(state, batch, key)
        # Same computation; only XLA's fusion (float32 summation order) differs between
        # op-by-op and compiled execution: see jaxgan.train.testing for the tolerances.
        assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                                  learning_rate=CONFIG.optimizer.learning_rate)
        np.testing.assert_allclose(want_metrics["learning_rate"], 2e-4, rtol=1e-6)


def test_bit_identical_and_key_dependent():
    state, batch = initial_state(), toy_pairs(1)
    a = STEP(state, batch, jax.random.key(5))
    chex.assert_trees_all_equal(a, STEP(state, batch, jax.random.key(5)))
    # the key drives dropout: another key gives other fakes G(A) (same params, same A),
    # hence another L1(G(A), B) and another update
    b_state, b_metrics = STEP(state, batch, jax.random.key(6))
    assert float(b_metrics["g_l1"]) != float(a[1]["g_l1"])
    assert not all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(a[0].g_params),
                                                     jax.tree.leaves(b_state.g_params)))


def test_sharded_step_matches_single_device():
    """8 devices (one pair each) vs one device on the same global batch of 8.

    Under jit the BatchNorm statistics (G and D) reduce over the global batch, and dropout
    masks come from the same replicated key, so the sharded program is the same function;
    only float32 summation order differs (partial sums + all-reduce, ~1e-7 relative per
    reduction): losses and BatchNorm statistics agree to rtol 1e-5; parameters too, except
    coordinates whose gradient is within that noise of zero, where Adam's first update
    lr * g / (|g| + eps) may differ by up to 2 * lr (jaxgan.train.testing).
    """
    mesh = parallel.make_mesh()
    batch, key = toy_pairs(1), jax.random.key(2)
    want_state, want_metrics = STEP(initial_state(), batch, key)
    sharded = pix2pix.make_train_step(CONFIG, mesh)
    state = parallel.replicate(jax.tree.map(jnp.copy, initial_state()), mesh)
    got_state, got_metrics = sharded(state, parallel.shard_batch(batch, mesh),
                                     parallel.replicate(key, mesh))
    # BatchNorm running statistics: global batch moments, tight tolerance
    chex.assert_trees_all_close(got_state.g_batch_stats, want_state.g_batch_stats,
                                rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(got_state.d_batch_stats, want_state.d_batch_stats,
                                rtol=1e-5, atol=1e-6)
    assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                              learning_rate=CONFIG.optimizer.learning_rate)


def test_short_run_halves_the_l1_term():
    """The unweighted L1(G(A), B) of the step's metrics, averaged over the first 5 and the
    last 5 of 150 steps: the later one must be at most half the first."""
    # 150 steps at 64x64: XLA's default optimisation (3; conftest.py lowers it to 0 for the
    # suite's compile-bound tests) runs them ~3x faster than level 0
    step = pix2pix.make_train_step(CONFIG, donate=False,
                                   compiler_options={"xla_backend_optimization_level": 3})
    state, key, l1 = initial_state(), jax.random.key(10), []
    for i in range(150):
        state, metrics = step(state, toy_pairs(100 + i), key)
        l1.append(float(metrics["g_l1"]))
    assert bool(metrics["finite"])
    first, last = np.mean(l1[:5]), np.mean(l1[-5:])
    assert last <= 0.5 * first, (first, last)


def test_non_finite_loss_is_reported_and_not_trained_on():
    state, batch = initial_state(), toy_pairs(1)
    batch["B"][0, 0, 0, 0] = np.inf
    new, metrics = STEP(state, batch, jax.random.key(2))
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal(new.replace(step=state.step), state)
    assert int(new.step) == 1


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((N, S, S, 3), np.float32), np.zeros((N, S, S, 1), np.float32),
     r"batch\['B'\]: expected .*float32\[N, 64, 64, 3\]"),
    (np.zeros((N, 32, 32, 3), np.float32), np.zeros((N, 32, 32, 3), np.float32),
     r"batch\['A'\]: expected .*float32\[N, 64, 64, 3\]"),
    (np.zeros((N, S, S, 3), np.float16), np.zeros((N, S, S, 3), np.float32), "float16"),
    (np.zeros((N, S, S, 3), np.float32), np.zeros((4, S, S, 3), np.float32), "batch size"),
])
def test_wrong_input_raises_a_clear_error(a, b, match):
    with pytest.raises(ValueError, match=match):
        STEP(initial_state(), {"A": a, "B": b}, jax.random.key(0))


def test_translate():
    a = toy_pairs(3, n=2)["A"]
    out = pix2pix.translate(CONFIG, initial_state(), a)  # eval mode: running statistics
    chex.assert_shape(out, (2, S, S, 3))
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    np.testing.assert_array_equal(out, pix2pix.translate(CONFIG, initial_state(), a))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        pix2pix.translate(CONFIG, initial_state(), a, train=True)


def test_init_from_torch_starts_from_the_reference_networks(tmp_path):
    """Fine-tuning: reference-named state_dicts of netG / netD (here another jaxgan init,
    exported by jaxgan.interop and written without torch) become G and D exactly (params
    and BatchNorm statistics); the Adam states and step stay; another architecture is a
    clear error naming the config field."""
    from jaxgan.interop import torch as interop
    from jaxgan.interop import write_pth

    donor = pix2pix.create_state(CONFIG, jax.random.key(7))
    g_sd = interop.to_state_dict("unet_256", {"params": donor.g_params,
                                              "batch_stats": donor.g_batch_stats})
    d_sd = interop.to_state_dict("basic", {"params": donor.d_params,
                                           "batch_stats": donor.d_batch_stats})
    assert "model.model.1.model.3.model.2.running_var" in g_sd
    write_pth(tmp_path / "latest_net_G.pth", g_sd)
    c = small_config()
    c.init.torch_G = str(tmp_path / "latest_net_G.pth")
    start = initial_state()
    state = pix2pix.init_from_torch(c, start, d=d_sd)
    chex.assert_trees_all_equal((state.g_params, state.g_batch_stats, state.d_params,
                                 state.d_batch_stats),
                                (donor.g_params, donor.g_batch_stats, donor.d_params,
                                 donor.d_batch_stats))
    chex.assert_trees_all_equal((state.step, state.g_opt_state, state.d_opt_state),
                                (start.step, start.g_opt_state, start.d_opt_state))
    assert pix2pix.init_from_torch(small_config(), start) is not None  # '' = keep
    c.model.ngf = 4
    with pytest.raises(ValueError, match=r"init\.torch_G: .*has shape \(8, 3, 4, 4\), "
                                         r"expected \(4, 3, 4, 4\).*It fits --netG=unet_256"):
        pix2pix.init_from_torch(c, start)
