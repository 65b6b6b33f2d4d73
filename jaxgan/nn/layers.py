"""Layers shared by the models: reference initializers and norms, PyTorch-semantics conv
modules, equalized-learning-rate layers, PixelNorm, minibatch stddev, resampling (NHWC)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.nn.conv import Padding, conv2d, conv_transpose2d

Initializer = Callable[..., jax.Array]

def normal_init(stddev: float, mean: float = 0.0) -> Initializer:
    """N(mean, stddev**2) initializer drawn flat and reshaped: ``nn.initializers.normal``'s
    distribution, much faster to compile on XLA:CPU than a 4-D draw."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        size = math.prod(shape)
        return (mean + stddev * jax.random.normal(key, (size,), dtype)).reshape(shape)

    return init


#: The pix2pix/CycleGAN/DCGAN weight initializer: N(0, 0.02).
conv_init: Initializer = normal_init(0.02)

#: The references' BatchNorm scale init: N(1, 0.02).
bn_scale_init: Initializer = normal_init(0.02, mean=1.0)


NORMS = ("batch", "instance", "none")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return norm


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """PyTorch's default ``InstanceNorm2d`` (no affine): each (sample, channel) of (N, H, W, C)
    over H, W, biased variance; computed in float32, returned in x's dtype."""
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(y, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axis=(1, 2), keepdims=True)
    return ((y - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class BatchNorm(nn.Module):
    """PyTorch's ``BatchNorm2d`` (affine, ``momentum=0.1``, ``eps=1e-5``) on the last axis.

    In training it normalises with the batch mean and *biased* variance over all axes but the
    last and, where ``batch_stats`` is mutable, updates the running statistics as PyTorch:
    ``mean <- 0.9 mean + 0.1 batch_mean``, ``var <- 0.9 var + 0.1 batch_var * n / (n - 1)``
    (n = N*H*W; the biased 0 at n = 1). ``flax.linen.BatchNorm`` stores the biased variance,
    so its ``train=False`` outputs would not match PyTorch's. Otherwise flax's forward
    (float32 statistics, output in the dtype of x and the parameters) and variable names:
    ``params`` ``scale`` (N(1, 0.02)), ``bias`` (0); ``batch_stats`` ``mean`` (0), ``var`` (1).
    """

    use_running_average: bool = False
    momentum: float = 0.1
    epsilon: float = 1e-5
    scale_init: Initializer = bn_scale_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = (x.shape[-1],)
        axes = tuple(range(x.ndim - 1))
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                                features)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32),
                               features)
        scale = self.param("scale", self.scale_init, features, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            mean = jnp.mean(xf, axes)
            var = jnp.maximum(0.0, jnp.mean(jnp.square(xf), axes) - jnp.square(mean))
            if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
                n = math.prod(x.shape[:-1])
                unbiased = var * (n / (n - 1)) if n > 1 else var
                m = self.momentum
                ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
                ra_var.value = (1.0 - m) * ra_var.value + m * unbiased
        y = x - mean
        y = y * (jax.lax.rsqrt(var + self.epsilon) * scale)
        y = y + bias
        return y.astype(jnp.result_type(x, scale, bias))


class Norm(nn.Module):
    """``batch`` (:class:`BatchNorm` named ``bn``; batch statistics when ``train``),
    ``instance`` (no affine parameters) or ``none``."""

    kind: str = "batch"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if self.kind == "batch":
            return BatchNorm(use_running_average=not train, name="bn")(x)
        if self.kind == "instance":
            return instance_norm(x)
        if self.kind == "none":
            return x
        raise ValueError(f"unknown norm {self.kind!r}; choose one of {', '.join(NORMS)}")


def _kernel(module: nn.Module, shape: tuple[int, ...], init: Initializer, x: jax.Array) -> jax.Array:
    """Declare (or fetch) a kernel, first checking a loaded kernel fits the input's channels."""
    if x.ndim != 4:
        raise ValueError(f"{module.name}: expected an NHWC input of rank 4, got shape {x.shape}")
    if module.has_variable("params", "kernel"):
        loaded = module.get_variable("params", "kernel")
        if loaded.shape[-2] != x.shape[-1]:
            raise ValueError(
                f"{module.name}: input has {x.shape[-1]} channels but the loaded parameters "
                f"expect {loaded.shape[-2]}: expected input shape (N, H, W, {loaded.shape[-2]}), "
                f"got {tuple(x.shape)}"
            )
    return module.param("kernel", init, shape)


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` (zero padding) in NHWC. Kernel (k, k, C_in, features) ~ N(0, 0.02).
    ``impl`` as :func:`jaxgan.nn.conv.conv2d`; forcing ``"winograd3"`` / ``"winograd4"`` on a
    7x7 kernel (``"auto"`` never does) costs float32 precision."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: Padding = 0
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: Initializer = conv_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        w = _kernel(self, (k, k, x.shape[-1], self.features), self.kernel_init, x)
        y = conv2d(x, w, stride=self.stride, padding=self.padding, impl=self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` in NHWC, exact (:func:`jaxgan.nn.conv.conv_transpose2d`).
    Kernel (k, k, C_in, features) ~ N(0, 0.02), scatter semantics."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: Initializer = conv_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        w = _kernel(self, (k, k, x.shape[-1], self.features), self.kernel_init, x)
        y = conv_transpose2d(
            x,
            w,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            impl=self.impl,
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """``nn.ReflectionPad2d(pad)`` on NHWC (mirror without repeating the edge)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


# ----------------------------------------------------------------------------------------------
# PGGAN pieces


class EqualizedConv(nn.Module):
    """PGGAN's equalized-learning-rate conv (same padding, stride 1): kernel (k, k, C_in,
    features) ~ N(0, 1), scaled at runtime by ``gain / sqrt(k * k * C_in)``; bias 0, unscaled.
    """

    features: int
    kernel_size: int = 3
    gain: float = math.sqrt(2.0)
    use_bias: bool = True
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        fan_in = k * k * x.shape[-1]
        w = _kernel(self, (k, k, x.shape[-1], self.features), normal_init(1.0), x)
        w = w * (self.gain / math.sqrt(fan_in))
        y = conv2d(x, w, stride=1, padding=k // 2, impl=self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class EqualizedDense(nn.Module):
    """Dense layer with the equalized learning rate: kernel (in, features) ~ N(0, 1), scaled at
    runtime by ``gain / sqrt(in)``; bias zero, unscaled."""

    features: int
    gain: float = math.sqrt(2.0)
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        if self.has_variable("params", "kernel"):
            loaded = self.get_variable("params", "kernel")
            if loaded.shape[0] != fan_in:
                raise ValueError(
                    f"{self.name}: input has {fan_in} features but the loaded parameters "
                    f"expect {loaded.shape[0]}"
                )
        w = self.param("kernel", normal_init(1.0), (fan_in, self.features))
        y = x @ (w * (self.gain / math.sqrt(fan_in)))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """PixelNorm: ``x * rsqrt(mean(x**2 over the last axis) + eps)``, per pixel (or latent);
    computed in float32, returned in x's dtype."""
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return (y * jax.lax.rsqrt(jnp.mean(jnp.square(y), axis=-1, keepdims=True) + eps)
            ).astype(x.dtype)


def minibatch_stddev(x: jax.Array, group_size: int = 4, eps: float = 1e-8) -> jax.Array:
    """Append PGGAN's minibatch-stddev feature map: (N, H, W, C) -> (N, H, W, C + 1).

    Groups of G = min(group_size, N) with the reference's *strided* grouping (sample n in
    group ``n mod (N / G)``); per group the mean over H, W, C of sqrt(biased variance + eps),
    tiled as the extra channel. ValueError when N is not divisible by G (as the reference).
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if g < 1 or n % g:
        raise ValueError(
            f"minibatch stddev: batch size {n} must be divisible by the group size {g} "
            f"(min(group_size={group_size}, N)); use a batch size that is a multiple of {g}"
        )
    m = n // g
    y = x.reshape(g, m, h, w, c).astype(jnp.float32)  # y[i, j] = x[i * m + j]: group j
    y = y - jnp.mean(y, axis=0, keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + eps)  # (m, h, w, c)
    s = jnp.mean(std, axis=(1, 2, 3))  # (m,)
    feat = jnp.tile(s, g).astype(x.dtype)  # sample i*m + j gets s[j]
    feat = jnp.broadcast_to(feat[:, None, None, None], (n, h, w, 1))
    return jnp.concatenate([x, feat], axis=-1)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling. (N, H, W, C) -> (N, 2H, 2W, C)."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def downsample_avg_2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling, stride 2. (N, H, W, C) -> (N, H/2, W/2, C); H, W must be even."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"downsample_avg_2x needs even H and W, got shape {x.shape}")
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def lerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
    """``(1 - t) * a + t * b``: exactly ``a`` at t = 0 and exactly ``b`` at t = 1."""
    return (1.0 - t) * a + t * b
