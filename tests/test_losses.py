"""jaxgan.losses against closed-form values (numpy, float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import losses

RNG = np.random.default_rng(0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def logits():
    real = RNG.normal(size=(4, 5, 5, 1)).astype(np.float32) * 3
    fake = RNG.normal(size=(4, 5, 5, 1)).astype(np.float32) * 3
    return real, fake


def test_vanilla_is_bce_with_logits(logits):
    real, fake = logits
    r, f = real.astype(np.float64), fake.astype(np.float64)
    np.testing.assert_allclose(
        losses.real_loss(real, "vanilla"), np.mean(-np.log(_sigmoid(r))), rtol=1e-6)
    np.testing.assert_allclose(
        losses.fake_loss(fake, "vanilla"), np.mean(-np.log(1 - _sigmoid(f))), rtol=1e-6)
    # non-saturating generator loss: target 1 on fakes
    np.testing.assert_allclose(
        losses.generator_loss(fake, "vanilla"), np.mean(-np.log(_sigmoid(f))), rtol=1e-6)
    # stable for large logits (no inf from log(sigmoid))
    assert np.isfinite(losses.real_loss(jnp.array([-200.0, 200.0]), "vanilla"))


def test_lsgan_wgan_hinge(logits):
    real, fake = logits
    r, f = real.astype(np.float64), fake.astype(np.float64)
    cases = {
        "lsgan": (np.mean((r - 1) ** 2), np.mean(f ** 2), np.mean((f - 1) ** 2)),
        "wgan": (-np.mean(r), np.mean(f), -np.mean(f)),
        "hinge": (np.mean(np.maximum(0, 1 - r)), np.mean(np.maximum(0, 1 + f)), -np.mean(f)),
    }
    for kind, (want_real, want_fake, want_g) in cases.items():
        np.testing.assert_allclose(losses.real_loss(real, kind), want_real, rtol=1e-5)
        np.testing.assert_allclose(losses.fake_loss(fake, kind), want_fake, rtol=1e-5)
        np.testing.assert_allclose(losses.generator_loss(fake, kind), want_g, rtol=1e-5)


def test_discriminator_loss_scale_and_per_patch_mean(logits):
    real, fake = logits
    full = losses.discriminator_loss(real, fake, "lsgan")
    half = losses.discriminator_loss(real, fake, "lsgan", scale=0.5)
    np.testing.assert_allclose(half, 0.5 * full, rtol=1e-7)
    np.testing.assert_allclose(
        full, losses.real_loss(real, "lsgan") + losses.fake_loss(fake, "lsgan"), rtol=1e-7)
    # per-patch targets: a map and its flattening give the same loss (mean over all patches)
    np.testing.assert_allclose(
        losses.real_loss(real, "vanilla"), losses.real_loss(real.reshape(-1), "vanilla"),
        rtol=1e-6)


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="lsgan"):
        losses.generator_loss(jnp.zeros(3), "wasserstein")


def test_gradient_penalty_linear_critic_is_analytic():
    """D(x) = <w, x>: grad = w everywhere, penalty = weight * (||w|| - target)^2."""
    w = RNG.normal(size=(8, 8, 3)).astype(np.float32) * 0.1
    real = jnp.asarray(RNG.uniform(-1, 1, size=(6, 8, 8, 3)), jnp.float32)
    fake = jnp.asarray(RNG.uniform(-1, 1, size=(6, 8, 8, 3)), jnp.float32)

    def critic(x):
        return jnp.einsum("nhwc,hwc->n", x, w)

    norm = np.linalg.norm(w.astype(np.float64))
    for weight, target in [(10.0, 1.0), (3.0, 0.5), (1.0, 750.0)]:
        gp = losses.gradient_penalty(critic, real, fake, jax.random.key(1),
                                     weight=weight, target=target)
        np.testing.assert_allclose(gp, weight * (norm - target) ** 2, rtol=2e-6)


def test_gradient_penalty_quadratic_critic_is_analytic():
    """D(x) = sum(a * x^2) per sample: grad = 2 a x_hat, a per-sample norm that depends on x_hat.

    With real == fake, x_hat = real whatever u is. With real != fake, the interpolation
    weights are one U(0, 1) draw per sample from the given key (the documented contract),
    which the test reproduces.
    """
    a = RNG.uniform(0.1, 1.0, size=(4, 4, 2)).astype(np.float32)
    real = RNG.uniform(-1, 1, size=(5, 4, 4, 2)).astype(np.float32)
    fake = RNG.uniform(-1, 1, size=(5, 4, 4, 2)).astype(np.float32)

    def critic(x):
        return jnp.sum(a * x * x, axis=(1, 2, 3))

    def expected(x_hat):
        g = 2 * a.astype(np.float64) * x_hat
        norms = np.sqrt(np.sum(g.reshape(len(g), -1) ** 2, axis=1))
        return 10.0 * np.mean((norms - 1.0) ** 2)

    key = jax.random.key(7)
    gp_same = losses.gradient_penalty(critic, real, real, key)
    np.testing.assert_allclose(gp_same, expected(real.astype(np.float64)), rtol=2e-6)

    u = np.asarray(jax.random.uniform(key, (5,), jnp.float32), np.float64).reshape(5, 1, 1, 1)
    x_hat = real.astype(np.float64) + u * (fake.astype(np.float64) - real)
    gp = losses.gradient_penalty(critic, real, fake, key)
    np.testing.assert_allclose(gp, expected(x_hat), rtol=2e-6)
    # the interpolates really vary with the key
    assert not np.isclose(gp, losses.gradient_penalty(critic, real, fake, jax.random.key(8)))


def test_gradient_penalty_zero_gradient_is_finite_and_differentiable():
    """A critic that ignores its input: norm 0, penalty weight * target^2, no NaN gradients."""
    x = jnp.ones((3, 2, 2, 1))

    def penalty(scale):
        return losses.gradient_penalty(lambda y: scale * 0.0 * jnp.sum(y, axis=(1, 2, 3)),
                                       x, -x, jax.random.key(0))

    np.testing.assert_allclose(penalty(1.0), 10.0, rtol=1e-7)
    assert np.isfinite(jax.grad(penalty)(1.0))


def test_gradient_penalty_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        losses.gradient_penalty(lambda x: x.sum(), jnp.zeros((2, 4)), jnp.zeros((2, 5)),
                                jax.random.key(0))


def test_drift_l1_cycle_identity():
    s = RNG.normal(size=(7,)).astype(np.float32)
    np.testing.assert_allclose(losses.drift_penalty(s), 0.001 * np.mean(s.astype(np.float64) ** 2),
                               rtol=1e-6)
    a = RNG.uniform(-1, 1, size=(2, 4, 4, 3)).astype(np.float32)
    b = RNG.uniform(-1, 1, size=(2, 4, 4, 3)).astype(np.float32)
    l1 = np.mean(np.abs(a.astype(np.float64) - b))
    np.testing.assert_allclose(losses.l1_loss(a, b), l1, rtol=1e-6)
    np.testing.assert_allclose(losses.cycle_loss(a, b), 10 * l1, rtol=1e-6)
    # identity: L1 * lambda * 0.5 (the reference's lambda_identity)
    np.testing.assert_allclose(losses.identity_loss(a, b), 5 * l1, rtol=1e-6)
    np.testing.assert_allclose(losses.identity_loss(a, b, 7.0, 0.1), 0.7 * l1, rtol=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        losses.l1_loss(a, b[:1])
