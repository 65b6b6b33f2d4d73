"""What pix2pix and CycleGAN share ([CG] pytorch-CycleGAN-and-pix2pix): base options, network
overrides, the scheduled Adam pair, the ``{"A", "B"}`` batch check, state_dict loading and
``translate``; one module, so that neither train module reaches into the other.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgan.train import common

__all__ = [
    "base_config",
    "check_batch",
    "create_models",
    "discriminator_kwargs",
    "generator_kwargs",
    "learning_rate_metric",
    "learning_rate_schedule",
    "load_torch_network",
    "optimizers",
    "translate",
]

#: A network as the model registry builds it: ``(registry name, overrides)``.
Network = tuple[str, dict[str, Any]]


def base_config(*, generator: str, norm: str, use_dropout: bool,
                constant_steps: int, decay_steps: int) -> ml_collections.ConfigDict:
    """The options pix2pix and CycleGAN share ([CG] base options): 256x256 3 -> 3 channel
    images, batch 1, load 286 + random flip, Adam and the constant-then-decay schedule."""
    c = ml_collections.ConfigDict()
    c.image_size = 256
    c.in_channels = 3
    c.out_channels = 3
    c.batch_size = 1
    c.seed = 0
    c.data = ml_collections.ConfigDict({"load_size": 286, "random_flip": True})
    c.model = ml_collections.ConfigDict({
        "generator": generator, "num_downs": ml_collections.FieldReference(None, field_type=int),
        "n_blocks": ml_collections.FieldReference(None, field_type=int),
        "discriminator": "basic", "n_layers_d": 3,
        "ngf": 64, "ndf": 64, "norm": norm, "use_dropout": use_dropout, "impl": "auto",
        "dtype": "float32"})
    c.optimizer = ml_collections.ConfigDict(
        {"learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, "eps": 1e-8})
    c.schedule = ml_collections.ConfigDict(
        {"constant_steps": constant_steps, "decay_steps": decay_steps})
    c.num_steps = c.schedule.get_ref("constant_steps") + c.schedule.get_ref("decay_steps")
    return c


def generator_kwargs(model_cfg: ml_collections.ConfigDict, in_ch: int, out_ch: int
                     ) -> dict[str, Any]:
    """Registry overrides of ``model_cfg.generator`` mapping ``in_ch`` to ``out_ch``
    channels; ``num_downs`` (U-Net) / ``n_blocks`` (ResNet) only where not None."""
    mc = model_cfg
    kw = {"in_channels": in_ch, "out_channels": out_ch, "ngf": mc.ngf, "norm": mc.norm,
          "use_dropout": mc.use_dropout, "impl": mc.impl}
    if mc.generator.startswith("unet") and mc.get("num_downs") is not None:
        kw["num_downs"] = mc.num_downs
    if mc.generator.startswith("resnet") and mc.get("n_blocks") is not None:
        kw["n_blocks"] = mc.n_blocks
    return kw


def discriminator_kwargs(model_cfg: ml_collections.ConfigDict, in_ch: int) -> dict[str, Any]:
    """Registry overrides of ``model_cfg.discriminator`` on ``in_ch``-channel inputs."""
    mc = model_cfg
    kw = {"in_channels": in_ch, "ndf": mc.ndf, "norm": mc.norm, "impl": mc.impl}
    if mc.discriminator == "n_layers":
        kw["n_layers"] = mc.n_layers_d
    return kw


def create_models(config: ml_collections.ConfigDict, networks: dict[str, Network]
                  ) -> dict[str, nn.Module]:
    """``{name: module}`` from the registry, in ``config.model.dtype``."""
    from jaxgan import models

    return common.in_compute_dtype(
        config, {k: models.create(name, **kw) for k, (name, kw) in networks.items()})


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """:func:`common.linear_decay_schedule` of ``config.optimizer`` and ``config.schedule``."""
    return common.linear_decay_schedule(config.optimizer.learning_rate,
                                        config.schedule.constant_steps,
                                        config.schedule.decay_steps)


def optimizers(config: ml_collections.ConfigDict
               ) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(G's, D's) Adam on :func:`learning_rate_schedule`; the same objects for equal configs."""
    return common.adam_pair(config, learning_rate_schedule)


def check_batch(family: str, config: ml_collections.ConfigDict, batch: Any, *,
                same_batch_size: bool = True) -> int:
    """Check ``{"A": float32[N, S, S, in_channels], "B": float32[N, S, S, out_channels]}``
    (S = ``config.image_size``; A's and B's N may differ without ``same_batch_size``);
    returns A's N. Raises as :func:`jaxgan.train.common.check_image_batch`."""
    s = config.image_size
    return common.check_image_batch(family, batch, {"A": (None, s, s, config.in_channels),
                                                    "B": (None, s, s, config.out_channels)},
                                    same_batch_size=same_batch_size)


def learning_rate_metric(config: ml_collections.ConfigDict, opt_state: Any) -> jax.Array:
    """float32 scalar: the learning rate of the step ``opt_state`` (before the update) takes."""
    return jnp.asarray(learning_rate_schedule(config)(common.optimizer_count(opt_state)),
                       jnp.float32)


def load_torch_network(what: str, source: Any, network: Network, params: Any,
                       batch_stats: Any) -> tuple[Any, Any]:
    """``(params, batch_stats)`` of ``network`` from a PyTorch state_dict (path or mapping);
    ``source`` None or '' keeps the given ones."""
    if source is None or (isinstance(source, str) and not source):
        return params, batch_stats
    name, kw = network
    return common.load_torch_variables(what, source, name, params, batch_stats, **kw)


def translate(family: str, config: ml_collections.ConfigDict, params: Any, batch_stats: Any,
              images: jax.Array, in_ch: int, out_ch: int, *, train: bool,
              key: jax.Array | None) -> jax.Array:
    """``G(images)``: ``[N, H, W, out_ch]`` from ``[N, H, W, in_ch]``, jitted.

    ``train``: batch statistics and dropout with ``key`` (needed with ``model.use_dropout``).
    """
    if train and config.model.use_dropout and key is None:
        raise ValueError(f"{family}.translate: train=True with dropout needs a PRNG key")
    return common.jit_bound(_translate, config, in_ch, out_ch, bool(train))(
        params, batch_stats, images, key if train else None)


def _translate(config, in_ch, out_ch, train, params, batch_stats, images, key):
    network = (config.model.generator, generator_kwargs(config.model, in_ch, out_ch))
    g = create_models(config, {"g": network})["g"]
    return common.apply_model(g, params, batch_stats, images, train=train, dropout_key=key)[0]
