"""PGGAN training (Karras et al. 2018; [PG] tkarras/progressive_growing_of_gans).

Stage ``s`` trains at ``4 * 2**s`` pixels: stage 0 for ``schedule.stable_kimg`` thousand
images; each later stage fades its new blocks in over ``fade_kimg`` (reals cross-faded like
G's output, :func:`fade_reals`), then trains stable for ``stable_kimg``; the last runs to
``total_kimg``. The stage is static (one compile per stage); alpha is traced from
``state.stage_images``, so a fade never recompiles. :func:`grow` moves to the next stage.

Per step: D update with WGAN-GP and drift on fresh fakes, then G update (``-D(G(z))``)
through the updated D, then the generator EMA.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jaxgan import losses
from jaxgan.models.pggan import num_stages as model_num_stages
from jaxgan.models.pggan import stage_resolution
from jaxgan.train import common

__all__ = [
    "PGGANState",
    "alpha",
    "build_models",
    "create_state",
    "default_config",
    "fade_reals",
    "generate",
    "grow",
    "make_train_step",
    "num_stages",
    "stage_batch_size",
    "stage_images",
    "stage_resolution",
    "stage_start_step",
    "stage_steps",
    "steps_to_kimg",
    "train_step",
]


def default_config() -> ml_collections.ConfigDict:
    """The reference defaults ([PG]: tkarras/progressive_growing_of_gans's config).

    Fields:
      resolution: final image side (a power of two >= 4).
      mirror_augment: random horizontal flip of the reals inside the step (the reference
        turns it on for faces). ema_decay: the generator's moving average, per step.
      model.impl, model.dtype: as in :func:`jaxgan.train.dcgan.default_config`.
      schedule.stable_kimg / fade_kimg: thousands of images per phase (the paper used
        800 / 800). schedule.total_kimg: the run's length.
      schedule.batch_size_per_stage: global batch at 4, 8, ..., 1024 px (the reference's
        one-GPU preset). schedule.reset_optimizer: reset Adam on growth.
    """
    c = ml_collections.ConfigDict()
    c.resolution = 1024
    c.channels = 3
    c.seed = 0
    c.mirror_augment = False
    c.model = ml_collections.ConfigDict({
        "latent_dim": 512, "fmap_base": 8192, "fmap_max": 512, "mbstd_group_size": 4,
        "impl": "auto", "dtype": "float32"})
    c.loss = ml_collections.ConfigDict({"gp_weight": 10.0, "gp_target": 1.0, "drift": 0.001})
    c.optimizer = ml_collections.ConfigDict({"learning_rate": 1e-3, "b1": 0.0, "b2": 0.99, "eps": 1e-8})
    c.ema_decay = 0.999
    c.schedule = ml_collections.ConfigDict({
        "stable_kimg": 600.0, "fade_kimg": 600.0, "total_kimg": 12_000.0,
        "batch_size_per_stage": (128, 128, 128, 64, 32, 16, 8, 4, 4),
        "reset_optimizer": True})
    return c


class PGGANState(struct.PyTreeNode):
    """A PGGAN run between steps: ``step`` (int32, over the whole run), ``stage_images``
    (int32, images seen in this stage; drives alpha), G's and D's parameters of *all* stages,
    ``g_ema_params`` (for samples), Adam states and the static ``stage`` (int; 0 -> 4x4)."""

    step: jax.Array
    stage_images: jax.Array
    g_params: Any
    d_params: Any
    g_ema_params: Any
    g_opt_state: Any
    d_opt_state: Any
    stage: int = struct.field(pytree_node=False, default=0)


def num_stages(config: ml_collections.ConfigDict) -> int:
    """Stages from 4x4 to ``config.resolution`` (9 for 1024)."""
    return model_num_stages(int(config.resolution))


def _check_stage(config, stage: int) -> None:
    if not isinstance(stage, int) or not 0 <= stage < num_stages(config):
        raise ValueError(
            f"pggan: stage must be an int in [0, {num_stages(config) - 1}] for resolution "
            f"{config.resolution}; got {stage!r}")


def stage_batch_size(config: ml_collections.ConfigDict, stage: int) -> int:
    """The configured global batch at ``stage`` (``schedule.batch_size_per_stage[stage]``,
    the last entry for stages past the list's end)."""
    _check_stage(config, stage)
    sizes = tuple(config.schedule.batch_size_per_stage)
    return int(sizes[min(stage, len(sizes) - 1)])


def stage_images(config: ml_collections.ConfigDict, stage: int) -> int | None:
    """Images to train at ``stage`` before growing (fade + stable); None for the last stage
    (it runs until ``schedule.total_kimg``)."""
    _check_stage(config, stage)
    sc = config.schedule
    if stage == num_stages(config) - 1:
        return None
    kimg = sc.stable_kimg + (sc.fade_kimg if stage > 0 else 0.0)
    return round(kimg * 1000)


def alpha(config: ml_collections.ConfigDict, stage: int, images_in_stage: jax.Array
          ) -> jax.Array:
    """Fade-in weight of the newest block (float32 scalar): 1 at stage 0, else
    ``images_in_stage / (fade_kimg * 1000)`` clipped to [0, 1] (1 when fade_kimg is 0)."""
    fade = float(config.schedule.fade_kimg) * 1000.0
    if stage == 0 or fade <= 0:
        return jnp.ones((), jnp.float32)
    return jnp.clip(jnp.asarray(images_in_stage, jnp.float32) / fade, 0.0, 1.0)


def stage_steps(config: ml_collections.ConfigDict, stage: int) -> int | None:
    """Steps spent at ``stage`` before growing (None for the last stage): the run's growth
    clock, in steps so that it is a function of the config alone."""
    images = stage_images(config, stage)
    if images is None:
        return None
    return math.ceil(images / stage_batch_size(config, stage))


def stage_start_step(config: ml_collections.ConfigDict, stage: int) -> int:
    """The global step at which ``stage`` begins."""
    return sum(stage_steps(config, s) for s in range(stage))


def steps_to_kimg(config: ml_collections.ConfigDict, kimg: float) -> int:
    """Steps to show ``kimg`` thousand images under the growth schedule."""
    remaining = kimg * 1000.0
    steps = 0
    for stage in range(num_stages(config)):
        batch = stage_batch_size(config, stage)
        limit = stage_images(config, stage)
        take = remaining if limit is None else min(remaining, limit)
        n = math.ceil(take / batch)
        steps += n
        remaining -= n * batch
        if remaining <= 0:
            break
    return steps


def build_models(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for the final resolution."""
    from jaxgan import models

    mc = config.model
    g = models.PGGANGenerator(resolution=config.resolution, channels=config.channels,
                              latent_dim=mc.latent_dim, fmap_base=mc.fmap_base,
                              fmap_max=mc.fmap_max, impl=mc.impl)
    d = models.PGGANDiscriminator(resolution=config.resolution, channels=config.channels,
                                  fmap_base=mc.fmap_base, fmap_max=mc.fmap_max,
                                  mbstd_group_size=mc.mbstd_group_size, impl=mc.impl)
    return common.in_compute_dtype(config, (g, d))


def create_state(config: ml_collections.ConfigDict, key: jax.Array, stage: int = 0
                 ) -> PGGANState:
    """Initialise G, its EMA (equal to G), D and the optimizers at ``stage``, jitted; the
    parameters cover all stages."""
    _check_stage(config, stage)
    return common.jit_init(_init, config, stage)(key)


def _init(config: ml_collections.ConfigDict, stage: int, key: jax.Array) -> PGGANState:
    g, d = build_models(config)
    g_tx, d_tx = common.adam_pair(config)
    kg, kd = jax.random.split(key)
    r = stage_resolution(stage)
    a = jnp.ones((), jnp.float32)
    g_params = g.init(kg, jnp.zeros((2, config.model.latent_dim), jnp.float32), stage, a
                      )["params"]
    d_params = d.init(kd, jnp.zeros((2, r, r, config.channels), jnp.float32), stage, a
                      )["params"]
    return PGGANState(
        step=jnp.zeros((), jnp.int32), stage_images=jnp.zeros((), jnp.int32),
        g_params=g_params, d_params=d_params,
        g_ema_params=jax.tree.map(jnp.copy, g_params),
        g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params), stage=stage)


def grow(config: ml_collections.ConfigDict, state: PGGANState) -> PGGANState:
    """The state at the next stage: ``stage + 1``, ``stage_images`` 0 (a fade starts), and
    both Adam states reset when ``schedule.reset_optimizer`` (else kept)."""
    _check_stage(config, state.stage + 1)
    new = state.replace(stage=state.stage + 1, stage_images=jnp.zeros_like(state.stage_images))
    if config.schedule.reset_optimizer:
        g_tx, d_tx = common.adam_pair(config)
        new = new.replace(g_opt_state=g_tx.init(state.g_params),
                          d_opt_state=d_tx.init(state.d_params))
    return new


def fade_reals(images: jax.Array, a: jax.Array) -> jax.Array:
    """``lerp(upsample(downsample(images)), images, a)``: reals at the blend the networks
    see during a fade (``a`` = 1: unchanged). images ``[N, r, r, C]``, r even."""
    from jaxgan import nn as jnn

    low = jnn.upsample_nearest_2x(jnn.downsample_avg_2x(images))
    # exactly the reals once the fade is over (the lerp could differ by an ulp)
    return jnp.where(jnp.asarray(a) >= 1.0, images, low + a * (images - low))


def train_step(config: ml_collections.ConfigDict, state: PGGANState, batch: dict,
               key: jax.Array) -> tuple[PGGANState, dict[str, jax.Array]]:
    """One fused D-then-G update and the EMA; pure. Prefer :func:`make_train_step`.

    ``batch``: ``{"image": float32[N, r, r, channels]}`` reals in [-1, 1] at the stage's
    resolution, N a multiple of ``min(mbstd_group_size, N)``; the step uses ``fold_in(key,
    state.step)``. Metrics: float32 ``d_loss, d_wgan, gradient_penalty, drift, g_loss,
    d_real, d_fake`` (mean critic scores), ``alpha``, int32 ``stage``, bool ``finite``.
    ``stage_images`` grows by N; when not finite only it and ``step`` advance.
    """
    stage = state.stage
    _check_stage(config, stage)
    r, ch = stage_resolution(stage), config.channels
    n = common.check_image_batch("pggan", batch, {"image": (None, r, r, ch)})
    group = min(config.model.mbstd_group_size, n)
    if group > 0 and n % group:
        raise ValueError(
            f"pggan train_step: batch size {n} must be a multiple of the minibatch-stddev "
            f"group size {group} (model.mbstd_group_size)")
    common.check_key("pggan", key)
    g, d = build_models(config)
    g_tx, d_tx = common.adam_pair(config)
    lc = config.loss
    a = alpha(config, stage, state.stage_images)
    k_step = jax.random.fold_in(key, state.step)
    k_zd, k_zg, k_gp, k_flip = jax.random.split(k_step, 4)

    real = batch["image"]
    if config.mirror_augment:
        flip = jax.random.bernoulli(k_flip, 0.5, (n,)).reshape(n, 1, 1, 1)
        real = jnp.where(flip, real[:, :, ::-1, :], real)
    if stage > 0:
        real = fade_reals(real, a)

    def gen(g_params, z):
        return g.apply({"params": g_params}, z, stage, a)

    def critic(d_params, x):
        return d.apply({"params": d_params}, x, stage, a)

    z_d = jax.random.normal(k_zd, (n, config.model.latent_dim), jnp.float32)
    fake = jax.lax.stop_gradient(gen(state.g_params, z_d))

    def d_loss_fn(d_params):
        real_scores = critic(d_params, real)
        fake_scores = critic(d_params, fake)
        wgan = jnp.mean(fake_scores) - jnp.mean(real_scores)
        gp = losses.gradient_penalty(lambda x: critic(d_params, x), real, fake, k_gp,
                                     weight=lc.gp_weight, target=lc.gp_target)
        drift = losses.drift_penalty(real_scores, lc.drift)
        aux = {"d_wgan": wgan, "gradient_penalty": gp, "drift": drift,
                   "d_real": jnp.mean(real_scores), "d_fake": jnp.mean(fake_scores)}
        return wgan + gp + drift, aux

    (d_loss, d_aux), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
    d_params, d_opt_state = common.apply_optimizer(d_tx, d_grads, state.d_opt_state,
                                                   state.d_params)

    z_g = jax.random.normal(k_zg, (n, config.model.latent_dim), jnp.float32)

    def g_loss_fn(g_params):
        return losses.generator_loss(critic(d_params, gen(g_params, z_g)), "wgan")

    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(state.g_params)
    metrics = dict(d_loss=d_loss, **d_aux, g_loss=g_loss)
    g_params, g_opt_state = common.apply_optimizer(g_tx, g_grads, state.g_opt_state,
                                                   state.g_params)
    g_ema = optax.incremental_update(g_params, state.g_ema_params, 1.0 - config.ema_decay)

    new = state.replace(g_params=g_params, d_params=d_params, g_ema_params=g_ema,
                        g_opt_state=g_opt_state, d_opt_state=d_opt_state)
    finite = common.tree_all_finite((metrics, d_grads, g_grads))
    new, metrics = common.commit_step(state, new, metrics, finite,
                                      stage_images=state.stage_images + n)
    metrics.update(alpha=a, stage=jnp.asarray(stage, jnp.int32))
    return new, metrics


def make_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
                    **kwargs):
    """``step(state, batch, key) -> (state, metrics)``, compiled once per stage, never per
    alpha; see ``common.make_train_step``."""
    num_stages(config)
    return common.make_train_step(train_step, config, mesh, **kwargs)


def generate(config: ml_collections.ConfigDict, state: PGGANState, z: jax.Array, *,
             use_ema: bool = True, alpha_value: jax.Array | None = None) -> jax.Array:
    """Samples ``[N, r, r, C]`` at the state's stage from ``z: [N, latent_dim]``, jitted;
    by default from the EMA generator at the state's alpha."""
    params = state.g_ema_params if use_ema else state.g_params
    a = alpha(config, state.stage, state.stage_images) if alpha_value is None else alpha_value
    return common.jit_bound(_generate, config, int(state.stage))(
        params, z, jnp.asarray(a, jnp.float32))


def _generate(config, stage, params, z, a):
    g, _ = build_models(config)
    return g.apply({"params": params}, z, stage, a)
