"""CycleGAN training (Zhu et al. 2017; [CG] pytorch-CycleGAN-and-pix2pix).

Names: ``g_ab`` maps domain A to B (the reference's G_A), ``g_ba`` B to A (G_B); ``d_a``
judges domain A (the reference's D_B), ``d_b`` domain B (D_A).

Per step, as the reference: G update (both generators, one Adam) on the GAN, cycle and
identity losses against the pre-update discriminators; then D update (both, one Adam), each
``0.5 * (real + fake)`` with the fakes from a 50-image history pool (:func:`pool_query`),
kept as arrays in the state. Batches are unaligned.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from jaxgan import losses
from jaxgan.train import common, image_to_image
from jaxgan.train.image_to_image import learning_rate_schedule

__all__ = [
    "CycleGANState",
    "build_models",
    "create_state",
    "default_config",
    "init_from_torch",
    "learning_rate_schedule",
    "make_train_step",
    "pool_query",
    "train_step",
    "translate",
]


def default_config() -> ml_collections.ConfigDict:
    """The reference defaults ([CG]: junyanz/pytorch-CycleGAN-and-pix2pix's options).

    Shared fields as :func:`jaxgan.train.pix2pix.default_config` (A, B: the two domains), plus:
      loss.lambda_a / loss.lambda_b: cycle weights (A->B->A, B->A->B).
      loss.lambda_identity: 0 disables the identity terms. loss.d_scale: halves each D loss.
      pool_size: fake history per domain (0 disables the pool).
      schedule.constant_steps / decay_steps: 100 + 100 epochs of horse2zebra at batch 1.
      init.torch_G_A / _G_B / _D_A / _D_B: reference state_dicts (``latest_net_G_A.pth``, ...)
        a new run starts from (:func:`init_from_torch`; names as :data:`TORCH_NAMES`).
    """
    c = image_to_image.base_config(generator="resnet_9blocks", norm="instance",
                                   use_dropout=False, constant_steps=133_400,
                                   decay_steps=133_400)
    c.pool_size = 50
    c.loss = ml_collections.ConfigDict({
        "gan": "lsgan", "lambda_a": 10.0, "lambda_b": 10.0, "lambda_identity": 0.5, "d_scale": 0.5})
    c.init = ml_collections.ConfigDict(
        {"torch_G_A": "", "torch_G_B": "", "torch_D_A": "", "torch_D_B": ""})
    return c


#: The reference's network names (``config.init.torch_<name>``) -> jaxgan's networks.
TORCH_NAMES = {"G_A": "g_ab", "G_B": "g_ba", "D_A": "d_b", "D_B": "d_a"}


class CycleGANState(struct.PyTreeNode):
    """step (int32); ``g_params = {'g_ab', 'g_ba'}``, ``d_params = {'d_a', 'd_b'}``, their
    batch stats and Adam states; the fake pools ``pool_a: float32[pool_size, S, S,
    in_channels]``, ``pool_b: [pool_size, S, S, out_channels]`` and their int32 fill counts."""

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    g_opt_state: Any
    d_opt_state: Any
    pool_a: jax.Array
    pool_a_count: jax.Array
    pool_b: jax.Array
    pool_b_count: jax.Array


def _networks(config: ml_collections.ConfigDict) -> dict[str, image_to_image.Network]:
    """``{'g_ab', 'g_ba', 'd_a', 'd_b'}``: (registry name, overrides) of each network."""
    mc, a_ch, b_ch = config.model, config.in_channels, config.out_channels
    g_kw, d_kw = image_to_image.generator_kwargs, image_to_image.discriminator_kwargs
    return {"g_ab": (mc.generator, g_kw(mc, a_ch, b_ch)),
            "g_ba": (mc.generator, g_kw(mc, b_ch, a_ch)),
            "d_a": (mc.discriminator, d_kw(mc, a_ch)),
            "d_b": (mc.discriminator, d_kw(mc, b_ch))}


def build_models(config: ml_collections.ConfigDict) -> dict:
    """``{'g_ab', 'g_ba', 'd_a', 'd_b'}`` modules from the model registry."""
    return image_to_image.create_models(config, _networks(config))


def _check_config(config) -> None:
    if config.loss.lambda_identity > 0 and config.in_channels != config.out_channels:
        raise ValueError(
            "cyclegan: the identity loss needs in_channels == out_channels (got "
            f"{config.in_channels} and {config.out_channels}); set loss.lambda_identity=0")
    if config.pool_size < 0:
        raise ValueError(f"cyclegan: pool_size must be >= 0; got {config.pool_size}")


def create_state(config: ml_collections.ConfigDict, key: jax.Array) -> CycleGANState:
    """Initialise all four networks, their optimizers and empty pools, jitted per config."""
    _check_config(config)
    return common.jit_init(_init, config)(key)


def _init(config: ml_collections.ConfigDict, key: jax.Array) -> CycleGANState:
    nets = build_models(config)
    g_tx, d_tx = image_to_image.optimizers(config)
    s, a_ch, b_ch = config.image_size, config.in_channels, config.out_channels
    img = {"a": jnp.zeros((1, s, s, a_ch), jnp.float32),
           "b": jnp.zeros((1, s, s, b_ch), jnp.float32)}
    inputs = {"g_ab": img["a"], "g_ba": img["b"], "d_a": img["a"], "d_b": img["b"]}
    keys = dict(zip(inputs, jax.random.split(key, 4), strict=True))
    params, stats = {}, {}
    for name, x in inputs.items():
        params[name], stats[name] = common.init_variables(nets[name], keys[name], x, train=False)
    g_params = {k: params[k] for k in ("g_ab", "g_ba")}
    d_params = {k: params[k] for k in ("d_a", "d_b")}
    return CycleGANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params, g_batch_stats={k: stats[k] for k in ("g_ab", "g_ba")},
        d_params=d_params, d_batch_stats={k: stats[k] for k in ("d_a", "d_b")},
        g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
        pool_a=jnp.zeros((config.pool_size, s, s, a_ch), jnp.float32),
        pool_a_count=jnp.zeros((), jnp.int32),
        pool_b=jnp.zeros((config.pool_size, s, s, b_ch), jnp.float32),
        pool_b_count=jnp.zeros((), jnp.int32),
    )


def init_from_torch(config: ml_collections.ConfigDict, state: CycleGANState,
                    **files: Any) -> CycleGANState:
    """``state`` with networks from PyTorch reference state_dicts, for fine-tuning.

    ``files``: ``G_A=``, ``G_B=``, ``D_A=``, ``D_B=`` (:data:`TORCH_NAMES`), each a ``.pth``
    path or mapping; those not given are ``config.init.torch_<name>`` ('' or absent: keep the
    state's). Adam states, pools and ``step`` are kept. ValueError for an unknown name or a
    file not of ``config.model``'s architecture.
    """
    unknown = sorted(set(files) - set(TORCH_NAMES))
    if unknown:
        raise ValueError(f"cyclegan.init_from_torch: unknown network(s) {unknown}; the "
                         f"reference's are {', '.join(TORCH_NAMES)}")
    init = config.get("init") or {}
    nets = _networks(config)
    g_params, g_stats = dict(state.g_params), dict(state.g_batch_stats)
    d_params, d_stats = dict(state.d_params), dict(state.d_batch_stats)
    for ref, net in TORCH_NAMES.items():
        params, stats = (g_params, g_stats) if net.startswith("g") else (d_params, d_stats)
        params[net], stats[net] = image_to_image.load_torch_network(
            f"init.torch_{ref}", files.get(ref, init.get(f"torch_{ref}")), nets[net],
            params[net], stats[net])
    return state.replace(g_params=g_params, g_batch_stats=g_stats, d_params=d_params,
                         d_batch_stats=d_stats)


def pool_query(pool: jax.Array, count: jax.Array, images: jax.Array, key: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The reference's ImagePool.query, functional: returns ``(images_for_d, pool, count)``.

    ``pool``: ``[P, H, W, C]``, the first ``count`` valid (P = 0 disables it). While it is not
    full each new fake (``images``, in order) is stored and used; afterwards, per image, with
    probability 0.5 a random stored fake is returned and replaced by the new one.
    """
    size = pool.shape[0]
    if size == 0:
        return images, pool, count

    def one(carry, xs):
        pool, count = carry
        image, k = xs
        k_coin, k_slot = jax.random.split(k)
        filling = count < size
        swap = jnp.logical_and(~filling, jax.random.uniform(k_coin) > 0.5)
        slot = jnp.where(filling, count, jax.random.randint(k_slot, (), 0, size))
        stored = pool[slot]
        out = jnp.where(swap, stored, image)
        pool = jnp.where(jnp.logical_or(filling, swap), pool.at[slot].set(image), pool)
        return (pool, count + filling.astype(count.dtype)), out

    keys = jax.random.split(key, images.shape[0])
    (pool, count), out = jax.lax.scan(one, (pool, count), (images, keys))
    return out, pool, count


def train_step(config: ml_collections.ConfigDict, state: CycleGANState, batch: dict,
               key: jax.Array) -> tuple[CycleGANState, dict[str, jax.Array]]:
    """One fused G-then-D update; pure. Prefer :func:`make_train_step`.

    ``batch``: ``{"A": float32[N, S, S, in_channels], "B": float32[N, S, S, out_channels]}``;
    pools and dropout use ``fold_in(key, state.step)``. Metrics: float32 ``g_loss, g_gan_ab,
    g_gan_ba, cycle_a, cycle_b, identity_a, identity_b`` (weighted), ``d_loss, d_a_loss,
    d_b_loss``, ``learning_rate`` and bool ``finite``; when any loss or gradient is not
    finite, only ``step`` advances (pools kept).
    """
    _check_config(config)
    image_to_image.check_batch("cyclegan", config, batch, same_batch_size=False)
    common.check_key("cyclegan", key)
    nets = build_models(config)
    g_tx, d_tx = image_to_image.optimizers(config)
    lc = config.loss
    kind = lc.gan
    real_a, real_b = batch["A"], batch["B"]
    k_step = jax.random.fold_in(key, state.step)
    k_pool_a, k_pool_b, k_drop = jax.random.split(k_step, 3)
    k_drop = k_drop if config.model.use_dropout else None

    def g(name, params, stats, x, k=None):
        return common.apply_model(nets[name], params[name], stats[name], x, train=True,
                                  dropout_key=k)

    def d_apply(name, d_params, d_stats, x):
        return common.apply_model(nets[name], d_params[name], d_stats[name], x)

    def g_loss_fn(g_params):
        stats = dict(state.g_batch_stats)
        ks = [None] * 6 if k_drop is None else list(jax.random.split(k_drop, 6))
        fake_b, stats["g_ab"] = g("g_ab", g_params, stats, real_a, ks[0])
        rec_a, stats["g_ba"] = g("g_ba", g_params, stats, fake_b, ks[1])
        fake_a, stats["g_ba"] = g("g_ba", g_params, stats, real_b, ks[2])
        rec_b, stats["g_ab"] = g("g_ab", g_params, stats, fake_a, ks[3])
        d_stats = dict(state.d_batch_stats)
        logits_b, d_stats["d_b"] = d_apply("d_b", state.d_params, d_stats, fake_b)
        logits_a, d_stats["d_a"] = d_apply("d_a", state.d_params, d_stats, fake_a)
        terms = {
            "g_gan_ab": losses.generator_loss(logits_b, kind),
            "g_gan_ba": losses.generator_loss(logits_a, kind),
            "cycle_a": losses.cycle_loss(rec_a, real_a, lc.lambda_a),
            "cycle_b": losses.cycle_loss(rec_b, real_b, lc.lambda_b),
        }
        if lc.lambda_identity > 0:
            idt_b, stats["g_ab"] = g("g_ab", g_params, stats, real_b, ks[4])
            idt_a, stats["g_ba"] = g("g_ba", g_params, stats, real_a, ks[5])
            terms["identity_b"] = losses.identity_loss(idt_b, real_b, lc.lambda_b,
                                                       lc.lambda_identity)
            terms["identity_a"] = losses.identity_loss(idt_a, real_a, lc.lambda_a,
                                                       lc.lambda_identity)
        else:
            terms["identity_a"] = terms["identity_b"] = jnp.zeros((), jnp.float32)
        total = sum(terms.values())
        return total, (stats, d_stats, terms, fake_a, fake_b)

    (g_loss, (g_bs, d_bs, g_terms, fake_a, fake_b)), g_grads = jax.value_and_grad(
        g_loss_fn, has_aux=True)(state.g_params)

    fake_a = jax.lax.stop_gradient(fake_a)
    fake_b = jax.lax.stop_gradient(fake_b)
    pooled_a, pool_a, pool_a_count = pool_query(state.pool_a, state.pool_a_count, fake_a,
                                                k_pool_a)
    pooled_b, pool_b, pool_b_count = pool_query(state.pool_b, state.pool_b_count, fake_b,
                                                k_pool_b)

    def d_loss_fn(d_params):
        stats = dict(d_bs)
        real_logits, stats["d_a"] = d_apply("d_a", d_params, stats, real_a)
        fake_logits, stats["d_a"] = d_apply("d_a", d_params, stats, pooled_a)
        d_a_loss = losses.discriminator_loss(real_logits, fake_logits, kind, scale=lc.d_scale)
        real_logits, stats["d_b"] = d_apply("d_b", d_params, stats, real_b)
        fake_logits, stats["d_b"] = d_apply("d_b", d_params, stats, pooled_b)
        d_b_loss = losses.discriminator_loss(real_logits, fake_logits, kind, scale=lc.d_scale)
        return d_a_loss + d_b_loss, (stats, d_a_loss, d_b_loss)

    (d_loss, (d_bs, d_a_loss, d_b_loss)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(state.d_params)

    metrics = dict(g_loss=g_loss, **g_terms, d_loss=d_loss, d_a_loss=d_a_loss,
                   d_b_loss=d_b_loss)
    g_params, g_opt_state = common.apply_optimizer(g_tx, g_grads, state.g_opt_state,
                                                   state.g_params)
    d_params, d_opt_state = common.apply_optimizer(d_tx, d_grads, state.d_opt_state,
                                                   state.d_params)
    new = state.replace(g_params=g_params, g_batch_stats=g_bs, d_params=d_params,
                        d_batch_stats=d_bs, g_opt_state=g_opt_state, d_opt_state=d_opt_state,
                        pool_a=pool_a, pool_a_count=pool_a_count,
                        pool_b=pool_b, pool_b_count=pool_b_count)
    finite = common.tree_all_finite((metrics, g_grads, d_grads))
    new, metrics = common.commit_step(state, new, metrics, finite)
    metrics["learning_rate"] = image_to_image.learning_rate_metric(config, state.g_opt_state)
    return new, metrics


def make_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
                    **kwargs):
    """``step(state, batch, key) -> (state, metrics)``; see ``common.make_train_step``."""
    _check_config(config)
    return common.make_train_step(train_step, config, mesh, **kwargs)


def translate(config: ml_collections.ConfigDict, state: CycleGANState, images: jax.Array,
              direction: str = "AtoB", *, train: bool = False,
              key: jax.Array | None = None) -> jax.Array:
    """Map images ``[N, S, S, C]`` with ``g_ab`` (``'AtoB'``) or ``g_ba`` (``'BtoA'``), jitted.
    ``train=True`` (dropout with ``key``) matches the reference's test without ``--eval``."""
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction must be 'AtoB' or 'BtoA'; got {direction!r}")
    name = "g_ab" if direction == "AtoB" else "g_ba"
    channels = (config.in_channels, config.out_channels)
    in_ch, out_ch = channels if name == "g_ab" else channels[::-1]
    return image_to_image.translate("cyclegan", config, state.g_params[name],
                                    state.g_batch_stats[name], images, in_ch, out_ch,
                                    train=train, key=key)
