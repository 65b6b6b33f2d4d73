"""GAN losses, the WGAN gradient penalty, the PGGAN drift term and the image losses.

All adversarial losses take *logits* (raw discriminator outputs, no sigmoid) of any shape:
``[N]`` scores (DCGAN, PGGAN) or ``[N, h, w, 1]`` PatchGAN maps. As in the reference
implementations the targets are per prediction (per patch), and every loss is the mean
over the whole array, so a 30x30 map counts each patch equally.

Kinds (``kind`` argument of :func:`generator_loss` / :func:`discriminator_loss`):

* ``'vanilla'``: binary cross-entropy with logits, real target 1, fake target 0
  (the generator uses the non-saturating form, target 1 on fakes).
* ``'lsgan'``: mean squared error to 1 (real) and 0 (fake).
* ``'wgan'``: critic ``mean(fake) - mean(real)``, generator ``-mean(fake)``; combine it with
  :func:`gradient_penalty` (and :func:`drift_penalty`) for WGAN-GP.
* ``'hinge'``: critic ``mean(relu(1 - real)) + mean(relu(1 + fake))``, generator ``-mean(fake)``.

The pix2pix/CycleGAN reference halves its discriminator loss (``0.5 * (real + fake)``);
DCGAN and PGGAN do not. :func:`discriminator_loss` takes that factor as ``scale``.
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
    """Adversarial generator loss on the discriminator's predictions for fakes (scalar).

    ``vanilla``: non-saturating BCE with target 1; ``lsgan``: MSE to 1; ``wgan`` and
    ``hinge``: ``-mean(fake)``.
    """
    _check_kind(kind)
    if kind in ("wgan", "hinge"):
        return -jnp.mean(_f32(fake_logits))
    return real_loss(fake_logits, kind)


def discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, kind: GanKind, *, scale: float = 1.0
) -> jax.Array:
    """``scale * (real_loss(real) + fake_loss(fake))`` (scalar float32).

    Use ``scale=0.5`` for pix2pix/CycleGAN (the reference halves D's loss), 1.0 for DCGAN
    and PGGAN.
    """
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

    The interpolates are ``x_hat = real + u * (fake - real)`` with one ``u ~ U(0, 1)`` per
    sample. The gradient is ``jax.grad`` of ``sum(critic(x_hat))`` with respect to the
    interpolates, which is the per-sample gradient whenever the critic treats samples
    independently (the same construction as the PGGAN reference, which also sums the
    scores; with minibatch-stddev the cross-sample terms are included, as there).
    Unlike the PGGAN reference, the penalty is not divided by ``target**2``: with the
    default target 1 the two agree.

    Args:
      critic: maps images ``[N, ...]`` to scores ``[N]`` (or any shape; they are summed).
      real: real images ``[N, H, W, C]`` (any rank >= 1 with the batch first).
      fake: generated images, same shape as ``real`` (gradients through it are stopped).
      key: PRNG key for the interpolation weights.
      weight: lambda, 10 in the papers.
      target: the gradient-norm target (1; PGGAN's ``wgan_target``).
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
    """CycleGAN identity loss ``L1(G(y), y) * cycle_weight * identity_weight``.

    ``mapped`` is the generator applied to an image already in its target domain; the
    reference scales the L1 by the cycle lambda of that domain and ``lambda_identity``.
    """
    return cycle_weight * identity_weight * l1_loss(mapped, original)
