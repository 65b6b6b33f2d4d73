"""GAN losses, the WGAN gradient penalty, the PGGAN drift term and the image losses.

Adversarial losses take *logits* (no sigmoid) of any shape, ``[N]`` scores or
``[N, h, w, 1]`` PatchGAN maps, with per-prediction targets and the mean over the whole
array, as the references. ``kind``:

* ``'vanilla'``: BCE with logits, real 1, fake 0 (generator: non-saturating, target 1).
* ``'lsgan'``: mean squared error to 1 (real) and 0 (fake).
* ``'wgan'``: critic ``mean(fake) - mean(real)``, generator ``-mean(fake)``; for WGAN-GP add
  :func:`gradient_penalty` (and :func:`drift_penalty`).
* ``'hinge'``: critic ``mean(relu(1 - real)) + mean(relu(1 + fake))``, generator ``-mean(fake)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "GAN_KINDS",
    "GanKind",
    "cycle_loss",
    "discriminator_loss",
    "drift_penalty",
    "fake_loss",
    "generator_loss",
    "gradient_penalty",
    "identity_loss",
    "l1_loss",
    "real_loss",
]

GanKind = Literal["vanilla", "lsgan", "wgan", "hinge"]
GAN_KINDS: tuple[str, ...] = ("vanilla", "lsgan", "wgan", "hinge")


def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss kind {kind!r}; expected one of {GAN_KINDS}")


def _f32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _term(logits: jax.Array, kind: GanKind, real: bool) -> jax.Array:
    _check_kind(kind)
    x, sign = _f32(logits), 1.0 if real else -1.0
    if kind == "vanilla":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(x, jnp.full_like(x, float(real))))
    if kind == "lsgan":
        return jnp.mean(jnp.square(x - float(real)))
    if kind == "wgan":
        return -sign * jnp.mean(x)
    return jnp.mean(jax.nn.relu(1.0 - sign * x))  # hinge


def real_loss(logits: jax.Array, kind: GanKind) -> jax.Array:
    """Discriminator loss term (scalar float32) for its outputs on real images, any shape
    (``[N]`` or ``[N, h, w, 1]``); ``kind`` one of :data:`GAN_KINDS`."""
    return _term(logits, kind, real=True)


def fake_loss(logits: jax.Array, kind: GanKind) -> jax.Array:
    """Discriminator loss term (scalar float32) for its outputs on generated images."""
    return _term(logits, kind, real=False)


def generator_loss(fake_logits: jax.Array, kind: GanKind) -> jax.Array:
    """Adversarial generator loss (scalar) on D's logits for fakes, per the module docstring."""
    _check_kind(kind)
    if kind in ("wgan", "hinge"):
        return -jnp.mean(_f32(fake_logits))
    return real_loss(fake_logits, kind)


def discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, kind: GanKind, *, scale: float = 1.0
) -> jax.Array:
    """``scale * (real_loss(real) + fake_loss(fake))`` (scalar float32): ``scale=0.5`` for
    pix2pix/CycleGAN (the reference halves D's loss), 1.0 for DCGAN and PGGAN."""
    return scale * (real_loss(real_logits, kind) + fake_loss(fake_logits, kind))


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    *,
    weight: float = 10.0,
    target: float = 1.0,
) -> jax.Array:
    """WGAN-GP penalty ``weight * mean_n (||grad_x D(x_hat_n)||_2 - target)^2`` (scalar).

    ``x_hat = real + u * (fake - real)`` for ``[N, H, W, C]`` images (any rank >= 1, batch
    first; gradients stopped), one ``u ~ U(0, 1)`` per sample from ``key``. The gradient is of
    ``sum(critic(x_hat))`` (scores of any shape), as in the PGGAN reference: per sample when
    the critic treats samples independently, minibatch stddev's cross-sample terms included.
    Unlike that reference it is not divided by ``target**2`` (PGGAN's ``wgan_target``; equal
    at the default 1). ``weight``: lambda, 10 in the papers.
    """
    real = jax.lax.stop_gradient(_f32(real))
    fake = jax.lax.stop_gradient(_f32(fake))
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty: real and fake must have the same shape; got {real.shape} "
            f"and {fake.shape}"
        )
    n = real.shape[0]
    # drawn flat (same values as drawing the broadcast shape; far cheaper to compile on CPU)
    u = jax.random.uniform(key, (n,), jnp.float32).reshape((n,) + (1,) * (real.ndim - 1))
    x_hat = real + u * (fake - real)
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
    flat = grads.reshape(n, -1)
    # safe_norm: gradient 0 instead of NaN where a per-sample gradient is exactly zero.
    norms = optax.safe_norm(flat, 0.0, axis=1)
    return weight * jnp.mean(jnp.square(norms - target))


def drift_penalty(real_scores: jax.Array, epsilon: float = 0.001) -> jax.Array:
    """PGGAN's drift term ``epsilon * mean(D(real)^2)`` keeping critic scores near 0."""
    return epsilon * jnp.mean(jnp.square(_f32(real_scores)))


def l1_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error over all elements (scalar float32)."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"l1_loss: shapes differ: prediction {prediction.shape}, target {target.shape}"
        )
    return jnp.mean(jnp.abs(_f32(prediction) - _f32(target)))


def cycle_loss(reconstructed: jax.Array, original: jax.Array, weight: float = 10.0) -> jax.Array:
    """CycleGAN cycle-consistency ``weight * L1(F(G(x)), x)`` (lambda_A/lambda_B = 10)."""
    return weight * l1_loss(reconstructed, original)


def identity_loss(
    mapped: jax.Array,
    original: jax.Array,
    cycle_weight: float = 10.0,
    identity_weight: float = 0.5,
) -> jax.Array:
    """CycleGAN identity loss ``L1(G(y), y) * cycle_weight * identity_weight``, ``mapped`` =
    G(y) for ``y`` in G's target domain (weights: that domain's cycle lambda, ``lambda_identity``).
    """
    return cycle_weight * identity_weight * l1_loss(mapped, original)
