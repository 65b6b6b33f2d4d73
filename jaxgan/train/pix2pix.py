"""pix2pix training (Isola et al. 2017; [CG] pytorch-CycleGAN-and-pix2pix).

Per step, as the reference: ``fake_B = G(A)`` in train mode; D update on ``concat(A, B)`` and
detached ``concat(A, fake_B)``, loss ``0.5 * (real + fake)``; then G update through the
*updated* D with ``GAN + l1_weight * L1(fake_B, B)``. The learning rate is constant, then
decays linearly (in optimizer steps). The direction (AtoB/BtoA) is the data pipeline's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from jaxgan import losses
from jaxgan.train import common, image_to_image
from jaxgan.train.image_to_image import learning_rate_schedule

__all__ = [
    "Pix2PixState",
    "build_models",
    "create_state",
    "default_config",
    "init_from_torch",
    "learning_rate_schedule",
    "make_train_step",
    "train_step",
    "translate",
]


def default_config() -> ml_collections.ConfigDict:
    """The reference defaults ([CG]: junyanz/pytorch-CycleGAN-and-pix2pix's options).

    Fields:
      image_size S: training crop size. in_channels / out_channels: of A (the condition) and
        B (the target). batch_size: global batch. num_steps: constant + decay steps.
      data.load_size, data.random_flip: the reference's resize-then-random-crop and flip.
      model.generator: 'unet_256', 'unet_128', 'resnet_6blocks' or 'resnet_9blocks';
        model.num_downs / model.n_blocks: None = the name's value, else an override.
      model.discriminator: 'basic' (70x70 PatchGAN), 'n_layers' (model.n_layers_d), 'pixel'.
      model.impl, model.dtype: as in :func:`jaxgan.train.dcgan.default_config`.
      loss.l1_weight: lambda_L1. loss.d_scale: the reference's halving of D's loss.
      schedule.constant_steps / decay_steps: the reference's 100 + 100 epochs, in steps
        (100 epochs of the 400 facades pairs at batch 1).
      init.torch_G / init.torch_D: reference state_dicts (``latest_net_G.pth``) a new run
        starts from (:func:`init_from_torch`); '' = the reference init.
    """
    c = image_to_image.base_config(generator="unet_256", norm="batch", use_dropout=True,
                                   constant_steps=40_000, decay_steps=40_000)
    c.loss = ml_collections.ConfigDict({"gan": "vanilla", "l1_weight": 100.0, "d_scale": 0.5})
    c.init = ml_collections.ConfigDict({"torch_G": "", "torch_D": ""})
    return c


class Pix2PixState(struct.PyTreeNode):
    """step (int32 scalar); G and D params, batch stats (``{}`` without BatchNorm) and Adam
    states (which count the schedule's steps)."""

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    g_opt_state: Any
    d_opt_state: Any


def _networks(config: ml_collections.ConfigDict) -> dict[str, image_to_image.Network]:
    """``{'g': A -> B generator, 'd': discriminator on concat(A, B)}``."""
    mc, a_ch, b_ch = config.model, config.in_channels, config.out_channels
    return {"g": (mc.generator, image_to_image.generator_kwargs(mc, a_ch, b_ch)),
            "d": (mc.discriminator, image_to_image.discriminator_kwargs(mc, a_ch + b_ch))}


def build_models(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """(generator A->B, discriminator on concat(A, B)) from the model registry."""
    nets = image_to_image.create_models(config, _networks(config))
    return nets["g"], nets["d"]


def create_state(config: ml_collections.ConfigDict, key: jax.Array) -> Pix2PixState:
    """Initialise G, D (reference init) and their optimizers, jitted per config."""
    return common.jit_init(_init, config)(key)


def _init(config: ml_collections.ConfigDict, key: jax.Array) -> Pix2PixState:
    g, d = build_models(config)
    g_tx, d_tx = image_to_image.optimizers(config)
    kg, kd = jax.random.split(key)
    s = config.image_size
    a = jnp.zeros((1, s, s, config.in_channels), jnp.float32)
    ab = jnp.zeros((1, s, s, config.in_channels + config.out_channels), jnp.float32)
    g_params, g_bs = common.init_variables(g, kg, a, train=False)
    d_params, d_bs = common.init_variables(d, kd, ab, train=False)
    return Pix2PixState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params, g_batch_stats=g_bs, d_params=d_params, d_batch_stats=d_bs,
        g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params))


def init_from_torch(config: ml_collections.ConfigDict, state: Pix2PixState, *,
                    g: Any = None, d: Any = None) -> Pix2PixState:
    """``state`` with G and/or D from PyTorch reference state_dicts, for fine-tuning.

    ``g`` / ``d``: a ``.pth`` path or mapping; None = ``config.init.torch_G`` / ``torch_D``
    ('' or absent: keep the state's). Parameters and BatchNorm statistics are replaced; Adam
    states and ``step`` are kept. ValueError for a file not of ``config.model``'s architecture.
    """
    init = config.get("init") or {}
    g = init.get("torch_G") if g is None else g
    d = init.get("torch_D") if d is None else d
    nets = _networks(config)
    g_params, g_bs = image_to_image.load_torch_network(
        "init.torch_G", g, nets["g"], state.g_params, state.g_batch_stats)
    d_params, d_bs = image_to_image.load_torch_network(
        "init.torch_D", d, nets["d"], state.d_params, state.d_batch_stats)
    return state.replace(g_params=g_params, g_batch_stats=g_bs, d_params=d_params,
                         d_batch_stats=d_bs)


def train_step(config: ml_collections.ConfigDict, state: Pix2PixState, batch: dict,
               key: jax.Array) -> tuple[Pix2PixState, dict[str, jax.Array]]:
    """One fused D-then-G update; pure. Prefer :func:`make_train_step`.

    ``batch``: ``{"A": float32[N, S, S, in_channels], "B": float32[N, S, S, out_channels]}``;
    dropout uses ``fold_in(key, state.step)``. Metrics: float32 ``d_loss, d_loss_real,
    d_loss_fake, g_loss, g_gan, g_l1`` (unweighted), ``learning_rate`` and bool ``finite``;
    when any loss or gradient is not finite, only ``step`` advances.
    """
    image_to_image.check_batch("pix2pix", config, batch)
    common.check_key("pix2pix", key)
    g, d = build_models(config)
    g_tx, d_tx = image_to_image.optimizers(config)
    kind, d_scale = config.loss.gan, config.loss.d_scale
    real_a, real_b = batch["A"], batch["B"]
    dropout_key = jax.random.fold_in(key, state.step)

    def g_forward(g_params):
        return common.apply_model(g, g_params, state.g_batch_stats, real_a, train=True,
                                  dropout_key=dropout_key)

    fake_b, g_vjp, g_bs = jax.vjp(g_forward, state.g_params, has_aux=True)

    def d_loss_fn(d_params):
        fake_ab = jnp.concatenate([real_a, jax.lax.stop_gradient(fake_b)], axis=-1)
        real_ab = jnp.concatenate([real_a, real_b], axis=-1)
        fake_logits, bs = common.apply_model(d, d_params, state.d_batch_stats, fake_ab)
        real_logits, bs = common.apply_model(d, d_params, bs, real_ab)
        l_fake = losses.fake_loss(fake_logits, kind)
        l_real = losses.real_loss(real_logits, kind)
        return d_scale * (l_real + l_fake), (bs, l_real, l_fake)

    (d_loss, (d_bs, l_real, l_fake)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)
    d_params, d_opt_state = common.apply_optimizer(d_tx, d_grads, state.d_opt_state,
                                                   state.d_params)

    def g_loss_of_fake(fake):
        logits, bs = common.apply_model(d, d_params, d_bs,
                                        jnp.concatenate([real_a, fake], axis=-1))
        gan = losses.generator_loss(logits, kind)
        l1 = losses.l1_loss(fake, real_b)
        return gan + config.loss.l1_weight * l1, (bs, gan, l1)

    (g_loss, (d_bs, g_gan, g_l1)), fake_grad = jax.value_and_grad(
        g_loss_of_fake, has_aux=True)(fake_b)
    (g_grads,) = g_vjp(fake_grad)
    metrics = {"d_loss": d_loss, "d_loss_real": l_real, "d_loss_fake": l_fake, "g_loss": g_loss,
               "g_gan": g_gan, "g_l1": g_l1}
    g_params, g_opt_state = common.apply_optimizer(g_tx, g_grads, state.g_opt_state,
                                                   state.g_params)

    new = state.replace(g_params=g_params, g_batch_stats=g_bs, d_params=d_params,
                        d_batch_stats=d_bs, g_opt_state=g_opt_state, d_opt_state=d_opt_state)
    finite = common.tree_all_finite((metrics, d_grads, g_grads))
    new, metrics = common.commit_step(state, new, metrics, finite)
    metrics["learning_rate"] = image_to_image.learning_rate_metric(config, state.g_opt_state)
    return new, metrics


def make_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
                    **kwargs):
    """``step(state, batch, key) -> (state, metrics)``; see ``common.make_train_step``."""
    return common.make_train_step(train_step, config, mesh, **kwargs)


def translate(config: ml_collections.ConfigDict, state: Pix2PixState, a: jax.Array, *,
              train: bool = False, key: jax.Array | None = None) -> jax.Array:
    """G(A): ``[N, S, S, out_channels]`` in [-1, 1], jitted. The reference's test script keeps
    train mode unless ``--eval``: pass ``train=True`` and a dropout ``key`` to match it."""
    return image_to_image.translate("pix2pix", config, state.g_params, state.g_batch_stats, a,
                                    config.in_channels, config.out_channels, train=train,
                                    key=key)
