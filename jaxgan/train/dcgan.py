"""DCGAN training (Radford et al. 2015; the pytorch/examples dcgan reference).

Per step, as the reference: D update on reals and detached fakes with binary cross-entropy,
loss ``real + fake`` (not halved); then G update with the non-saturating loss through the
*updated* D. BatchNorm runs in train mode on each D call separately, as the reference's three
forward passes do.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from jaxgan import losses
from jaxgan.train import common

__all__ = [
    "DCGANState",
    "build_models",
    "create_state",
    "default_config",
    "generate",
    "init_from_torch",
    "make_train_step",
    "train_step",
]


def default_config() -> ml_collections.ConfigDict:
    """The reference defaults (pytorch/examples' ``dcgan/main.py``).

    Fields:
      image_size R, channels C: images are [N, R, R, C]. batch_size: global batch.
      model.impl: convolution formulation for jaxgan.nn ('auto' picks per backend, 'xla',
        'im2col'): the same function, different speed.
      model.dtype: 'float32' or 'bfloat16' (mixed precision, common.MixedPrecision).
      loss.gan: 'vanilla' (BCE with logits) or any of jaxgan.losses.GAN_KINDS.
      init.torch_G / init.torch_D: pytorch/examples state_dicts (``netG_epoch_N.pth``) a new
        run starts from (:func:`init_from_torch`); '' = the reference init.
    """
    c = ml_collections.ConfigDict()
    c.image_size = 64
    c.channels = 3
    c.batch_size = 64
    c.seed = 0
    c.num_steps = 20_000
    c.model = ml_collections.ConfigDict(
        {"latent_dim": 100, "ngf": 64, "ndf": 64, "impl": "auto", "dtype": "float32"})
    c.loss = ml_collections.ConfigDict({"gan": "vanilla"})
    c.optimizer = ml_collections.ConfigDict(
        {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8})
    c.init = ml_collections.ConfigDict({"torch_G": "", "torch_D": ""})
    return c


class DCGANState(struct.PyTreeNode):
    """Everything a DCGAN run carries between steps (replicated when sharded): ``step``
    (int32), G's and D's flax variables and Adam states."""

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    g_opt_state: Any
    d_opt_state: Any


def build_models(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) modules for the config."""
    from jaxgan import models

    g = models.DCGANGenerator(resolution=config.image_size, channels=config.channels,
                              latent_dim=config.model.latent_dim, ngf=config.model.ngf,
                              impl=config.model.impl)
    d = models.DCGANDiscriminator(resolution=config.image_size, channels=config.channels,
                                  ndf=config.model.ndf, impl=config.model.impl)
    return common.in_compute_dtype(config, (g, d))


def create_state(config: ml_collections.ConfigDict, key: jax.Array) -> DCGANState:
    """Initialise both networks (reference init) and their optimizers, jitted per config."""
    return common.jit_init(_init, config)(key)


def _init(config: ml_collections.ConfigDict, key: jax.Array) -> DCGANState:
    g, d = build_models(config)
    g_tx, d_tx = common.adam_pair(config)
    kg, kd = jax.random.split(key)
    r = config.image_size
    g_params, g_bs = common.init_variables(
        g, kg, jnp.zeros((2, config.model.latent_dim), jnp.float32), train=False)
    d_params, d_bs = common.init_variables(
        d, kd, jnp.zeros((2, r, r, config.channels), jnp.float32), train=False)
    return DCGANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params, g_batch_stats=g_bs,
        d_params=d_params, d_batch_stats=d_bs,
        g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
    )


def init_from_torch(config: ml_collections.ConfigDict, state: DCGANState, *,
                    g: Any = None, d: Any = None) -> DCGANState:
    """``state`` with G and/or D from pytorch/examples DCGAN state_dicts, for fine-tuning.

    ``g`` / ``d``: a path or mapping; None = ``config.init.torch_G`` / ``torch_D`` (empty:
    keep the state's). Parameters and BatchNorm statistics are replaced; Adam states and
    ``step`` are kept. ValueError for a file of another architecture than the config's.
    """
    mc = config.model
    init = config.get("init") or {}
    g = g if g is not None else (init.get("torch_G") or None)
    d = d if d is not None else (init.get("torch_D") or None)
    new = {}
    if g is not None:
        new["g_params"], new["g_batch_stats"] = common.load_torch_variables(
            "netG", g, "dcgan", state.g_params, state.g_batch_stats, part="g",
            resolution=config.image_size, channels=config.channels,
            latent_dim=mc.latent_dim, ngf=mc.ngf, impl=mc.impl)
    if d is not None:
        new["d_params"], new["d_batch_stats"] = common.load_torch_variables(
            "netD", d, "dcgan", state.d_params, state.d_batch_stats, part="d",
            resolution=config.image_size, channels=config.channels, ndf=mc.ndf, impl=mc.impl)
    return state.replace(**new)


def train_step(config: ml_collections.ConfigDict, state: DCGANState, batch: dict,
               key: jax.Array) -> tuple[DCGANState, dict[str, jax.Array]]:
    """One fused D-then-G update; pure. Prefer :func:`make_train_step`.

    ``batch``: ``{"image": float32[N, R, R, C]}`` reals in [-1, 1] (N global); ``key``: the
    run's key (folded with ``state.step``). Returns ``(state, metrics)``: float32 ``d_loss,
    d_loss_real, d_loss_fake, g_loss, d_real, d_fake`` (mean D logits) and bool ``finite``;
    when any loss or gradient is not finite, only ``step`` advances.
    """
    r, ch, kind = config.image_size, config.channels, config.loss.gan
    n = common.check_image_batch("dcgan", batch, {"image": (None, r, r, ch)})
    common.check_key("dcgan", key)
    g, d = build_models(config)
    g_tx, d_tx = common.adam_pair(config)
    real = batch["image"]
    z = jax.random.normal(jax.random.fold_in(key, state.step),
                          (n, config.model.latent_dim), jnp.float32)

    def g_forward(g_params):
        return common.apply_model(g, g_params, state.g_batch_stats, z, train=True)

    fake, g_vjp, g_bs = jax.vjp(g_forward, state.g_params, has_aux=True)

    def d_loss_fn(d_params):
        real_logits, bs = common.apply_model(d, d_params, state.d_batch_stats, real)
        fake_logits, bs = common.apply_model(d, d_params, bs, jax.lax.stop_gradient(fake))
        l_real = losses.real_loss(real_logits, kind)
        l_fake = losses.fake_loss(fake_logits, kind)
        aux = (bs, l_real, l_fake, jnp.mean(real_logits), jnp.mean(fake_logits))
        return l_real + l_fake, aux

    (d_loss, (d_bs, l_real, l_fake, d_real, d_fake)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_params, d_opt_state = common.apply_optimizer(d_tx, d_grads, state.d_opt_state,
                                                   state.d_params)

    def g_loss_of_fake(fake_images):
        logits, bs = common.apply_model(d, d_params, d_bs, fake_images)
        return losses.generator_loss(logits, kind), bs

    (g_loss, d_bs), d_fake_grad = jax.value_and_grad(g_loss_of_fake, has_aux=True)(fake)
    (g_grads,) = g_vjp(d_fake_grad)
    metrics = {"d_loss": d_loss, "d_loss_real": l_real, "d_loss_fake": l_fake, "g_loss": g_loss,
               "d_real": d_real, "d_fake": d_fake}
    g_params, g_opt_state = common.apply_optimizer(g_tx, g_grads, state.g_opt_state,
                                                   state.g_params)

    new = state.replace(g_params=g_params, g_batch_stats=g_bs, d_params=d_params,
                        d_batch_stats=d_bs, g_opt_state=g_opt_state, d_opt_state=d_opt_state)
    finite = common.tree_all_finite((metrics, d_grads, g_grads))
    return common.commit_step(state, new, metrics, finite)


def make_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
                    **kwargs):
    """``step(state, batch, key) -> (state, metrics)``; see ``common.make_train_step``."""
    return common.make_train_step(train_step, config, mesh, **kwargs)


def generate(config: ml_collections.ConfigDict, state: DCGANState, z: jax.Array, *,
             train: bool = False) -> jax.Array:
    """Samples ``[N, R, R, C]`` in [-1, 1] from latents ``z: [N, latent_dim]``, jitted.

    ``train=False`` uses BatchNorm's running averages; the reference's sample grids use train
    mode (``train=True``).
    """
    return common.jit_bound(_generate, config, bool(train))(state.g_params,
                                                             state.g_batch_stats, z)


def _generate(config, train, g_params, g_batch_stats, z):
    g, _ = build_models(config)
    return common.apply_model(g, g_params, g_batch_stats, z, train=train)[0]
