"""PGGAN train step: fade without retracing, growth, EMA, jit == eager, sharding, guards.

Tiny settings: final resolution 8 (stages 4 and 8 px), 16 feature maps, latent 16,
minibatch-stddev groups of 4, batch 8, fade and stable phases of 32 images (4 steps),
plain XLA convolutions. Most tests run at stage 1 (8x8) in the middle of a fade.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import parallel
from jaxgan.nn import downsample_avg_2x, upsample_nearest_2x
from jaxgan.train import common, pggan
from jaxgan.train.testing import assert_step_outputs_close

N, CH = 8, 3


def small_config():
    c = pggan.default_config()
    c.resolution = 8
    c.model.latent_dim, c.model.fmap_base, c.model.fmap_max = 16, 64, 16
    c.model.impl = "xla"
    c.schedule.fade_kimg = c.schedule.stable_kimg = 0.032
    c.schedule.batch_size_per_stage = (N, N)
    return c

CONFIG = small_config()
PURE = pggan.make_train_step(CONFIG, jit=False)


def _stage1_step(state, batch, key):
    return PURE(state, batch, key)


# Every single-device stage-1 step in this module goes through this one traced function; a
# second trace (e.g. a retrace because alpha changed) fails the test that causes it.
COUNTED = chex.assert_max_traces(_stage1_step, n=1)
STEP = jax.jit(COUNTED)
# for other stages and for inputs that must fail at trace time
UNCOUNTED = pggan.make_train_step(CONFIG, donate=False)


@functools.cache
def stage1_state():
    return pggan.create_state(CONFIG, jax.random.key(0), stage=1)


def mid_fade_state():
    """Stage 1 after 16 of the fade's 32 images: alpha 0.5."""
    return stage1_state().replace(stage_images=jnp.asarray(16, jnp.int32))


def toy_reals(seed, r=8, n=N):
    rng = np.random.default_rng(seed)
    return {"image": np.tanh(rng.normal(0.2, 0.6, size=(n, r, r, CH))).astype(np.float32)}


def test_default_config_is_the_reference():
    c = pggan.default_config()
    assert (c.resolution, c.channels, pggan.num_stages(c)) == (1024, 3, 9)
    assert dict(c.model) == {"latent_dim": 512, "fmap_base": 8192, "fmap_max": 512,
                             "mbstd_group_size": 4, "impl": "auto", "dtype": "float32"}
    assert dict(c.loss) == {"gp_weight": 10.0, "gp_target": 1.0, "drift": 0.001}
    assert dict(c.optimizer) == {"learning_rate": 1e-3, "b1": 0.0, "b2": 0.99, "eps": 1e-8}
    assert c.ema_decay == 0.999
    assert (c.schedule.stable_kimg, c.schedule.fade_kimg) == (600, 600)
    assert [pggan.stage_batch_size(c, s) for s in range(9)] == [128, 128, 128, 64, 32, 16,
                                                                8, 4, 4]
    assert c.schedule.reset_optimizer
    assert [pggan.stage_resolution(s) for s in (0, 1, 8)] == [4, 8, 1024]
    assert pggan.stage_images(c, 0) == 600_000 and pggan.stage_images(c, 1) == 1_200_000
    assert pggan.stage_images(c, 8) is None


def test_alpha_schedule():
    c = CONFIG
    assert float(pggan.alpha(c, 0, 0)) == 1.0  # nothing to fade at 4x4
    np.testing.assert_allclose([float(pggan.alpha(c, 1, i)) for i in (0, 8, 16, 32, 100)],
                               [0.0, 0.25, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"stage must be an int in \[0, 1\]"):
        pggan.stage_images(c, 3)


def test_fade_reals_blends_with_the_box_down_up_image():
    x = jnp.asarray(toy_reals(0)["image"])
    low = upsample_nearest_2x(downsample_avg_2x(x))
    np.testing.assert_array_equal(pggan.fade_reals(x, 1.0), x)
    np.testing.assert_allclose(pggan.fade_reals(x, 0.0), low, atol=1e-7)
    np.testing.assert_allclose(pggan.fade_reals(x, 0.25), 0.75 * low + 0.25 * x, atol=1e-6)


class JitVersusEagerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_agrees_with_the_jitted_step(self):
        state, batch, key = mid_fade_state(), toy_reals(1), jax.random.key(2)
        got_state, got_metrics = self.variant(COUNTED)(state, batch, key)
        want_state, want_metrics = STEP(state, batch, key)
        # Same computation; only XLA's fusion (float32 summation order) differs between
        # op-by-op and compiled execution: see jaxgan.train.testing for the tolerances.
        assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                                  learning_rate=CONFIG.optimizer.learning_rate, atol=1e-5)
        assert float(got_metrics["alpha"]) == 0.5


def test_fade_runs_without_retracing_and_updates_the_ema():
    """alpha goes 0.5 -> 0.75 -> 1.0 -> 1.0 through one compiled program (COUNTED allows a
    single trace for the whole module); the EMA is 0.999 * ema + 0.001 * new G each step."""
    state, key = mid_fade_state(), jax.random.key(3)
    alphas = []
    for i in range(4):
        old_ema = state.g_ema_params
        state, metrics = STEP(state, toy_reals(10 + i), key)
        assert bool(metrics["finite"]) and int(metrics["stage"]) == 1
        alphas.append(float(metrics["alpha"]))
        want = jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p, old_ema, state.g_params)
        chex.assert_trees_all_close(state.g_ema_params, want, rtol=1e-6, atol=1e-7)
    assert alphas == [0.5, 0.75, 1.0, 1.0]
    assert int(state.stage_images) == 16 + 4 * N and int(state.step) == 4
    # stage 1 is the last: it never grows; stage 0 grows after its 32 stable images
    assert pggan.stage_steps(CONFIG, 1) is None
    assert pggan.stage_start_step(CONFIG, 1) == -(-32 // pggan.stage_batch_size(CONFIG, 0))


def test_bit_identical_and_key_dependent():
    state, batch = mid_fade_state(), toy_reals(1)
    a = STEP(state, batch, jax.random.key(5))
    chex.assert_trees_all_equal(a, STEP(state, batch, jax.random.key(5)))
    # another key: other latents for D's fakes (d_fake, the mean critic score on them)
    _, b_metrics = STEP(state, batch, jax.random.key(6))
    assert float(b_metrics["d_fake"]) != float(a[1]["d_fake"])
    assert float(b_metrics["gradient_penalty"]) != float(a[1]["gradient_penalty"])


def test_grow_moves_to_the_next_stage_and_resets_adam():
    # a stage-0 state whose Adam states have moved (the parameter tree spans all stages)
    trained, _ = STEP(mid_fade_state(), toy_reals(1), jax.random.key(0))
    state = trained.replace(stage=0, stage_images=jnp.asarray(32, jnp.int32))
    grown = pggan.grow(CONFIG, state)
    assert grown.stage == 1 and int(grown.stage_images) == 0 and int(grown.step) == 1
    fresh = common.adam_pair(CONFIG)[0].init(state.g_params)
    chex.assert_trees_all_equal(grown.g_opt_state, fresh)
    assert float(pggan.alpha(CONFIG, grown.stage, grown.stage_images)) == 0.0
    chex.assert_trees_all_equal(grown.g_params, state.g_params)
    keep = CONFIG.copy_and_resolve_references()
    keep.schedule.reset_optimizer = False
    kept = pggan.grow(keep, state)
    chex.assert_trees_all_equal(kept.d_opt_state, state.d_opt_state)
    # the grown state traces at 8x8 (a new static stage is a new program; traced only, as
    # compiling it would cost the test seconds) and keeps its structure
    new, metrics = jax.eval_shape(UNCOUNTED, grown, toy_reals(2), jax.random.key(1))
    assert new.stage == 1 and metrics["alpha"].dtype == jnp.float32
    chex.assert_trees_all_equal_shapes_and_dtypes(new.g_params, grown.g_params)
    with pytest.raises(ValueError, match="stage must be an int"):
        pggan.grow(CONFIG, new)


def test_sharded_step_matches_single_device():
    """8 devices (one image each) vs one device, batch 8, mid-fade at 8x8.

    Minibatch stddev groups (strided: sample n in group n mod 2) span devices; under jit
    with a global batch the groups are the same as on one device, so the function is the
    same and only float32 summation order differs (~1e-7 relative). The gradient penalty
    differentiates through the critic twice, hence atol 1e-5 on O(1..10) losses; Adam
    (beta1 = 0) may move near-zero-gradient coordinates by up to 2 * lr
    (jaxgan.train.testing).
    """
    mesh = parallel.make_mesh()
    batch, key = toy_reals(1), jax.random.key(2)
    want_state, want_metrics = STEP(mid_fade_state(), batch, key)
    sharded = pggan.make_train_step(CONFIG, mesh)
    state = parallel.replicate(jax.tree.map(jnp.copy, mid_fade_state()), mesh)
    got_state, got_metrics = sharded(state, parallel.shard_batch(batch, mesh),
                                     parallel.replicate(key, mesh))
    assert got_state.stage == 1
    assert_step_outputs_close((got_state, got_metrics), (want_state, want_metrics),
                              learning_rate=CONFIG.optimizer.learning_rate, atol=1e-5)


def test_non_finite_loss_is_reported_and_not_trained_on():
    state, batch = mid_fade_state(), toy_reals(1)
    batch["image"][0, 0, 0, 0] = np.nan
    new, metrics = STEP(state, batch, jax.random.key(2))
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal(new.replace(step=state.step, stage_images=state.stage_images),
                                state)


@pytest.mark.parametrize("image, match", [
    (np.zeros((N, 4, 4, CH), np.float32), r"float32\[N, 8, 8, 3\], got float32\[8, 4, 4"),
    (np.zeros((N, 8, 8, 1), np.float32), r"float32\[N, 8, 8, 3\]"),
    (np.zeros((6, 8, 8, CH), np.float32), "multiple of the minibatch-stddev group size 4"),
    (np.zeros((N, 8, 8, CH), np.uint8), "uint8"),
])
def test_wrong_input_raises_a_clear_error(image, match):
    with pytest.raises(ValueError, match=match):
        UNCOUNTED(mid_fade_state(), {"image": image}, jax.random.key(0))


def test_generate_uses_the_ema_and_the_current_alpha():
    state, _ = STEP(mid_fade_state(), toy_reals(1), jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (4, CONFIG.model.latent_dim))
    ema = pggan.generate(CONFIG, state, z)
    chex.assert_shape(ema, (4, 8, 8, CH))
    raw = pggan.generate(CONFIG, state, z, use_ema=False)
    assert not np.allclose(ema, raw)  # the EMA lags G after an update
    # the state's alpha (0.75 after one step from 0.5) is the default
    np.testing.assert_array_equal(ema, pggan.generate(CONFIG, state, z, alpha_value=0.75))
    assert not np.allclose(ema, pggan.generate(CONFIG, state, z, alpha_value=1.0))


@pytest.mark.parametrize("impl", ["winograd2", "winograd4"])
def test_winograd_step_matches_the_xla_step(impl):
    # The whole step with every convolution in Winograd form (forward, gradients and the
    # gradient penalty's double backward through the custom VJPs) against XLA's convolutions:
    # the same computation up to float32 rounding, which the penalty's second derivative and
    # Adam's first update (beta1 = 0) amplify; see jaxgan.train.testing for the bound.
    cfg = small_config()
    cfg.model.impl = impl
    step = pggan.make_train_step(cfg, donate=False)
    batch, key = toy_reals(1), jax.random.key(2)
    want = STEP(mid_fade_state(), batch, key)
    got = step(mid_fade_state(), batch, key)
    assert_step_outputs_close(got, want, learning_rate=cfg.optimizer.learning_rate,
                              rtol=1e-3, atol=1e-4)
