"""Progressive GAN generator and discriminator (Karras et al. 2017) [PG].

One parameter tree serves the whole growth: ``init``, at any stage, creates the layers of all
resolutions up to ``resolution`` (every toRGB / fromRGB too). ``stage`` is a static Python int
(s -> 4 * 2**s); ``alpha``, the newest block's fade-in weight, a traced float32 in [0, 1], so
changing it never recompiles. A block at resolution R has ``min(fmap_base // (R // 2),
fmap_max)`` channels (4..32 -> 512, ..., 1024 -> 16 with the paper's 8192 / 512). All layers
use the equalized learning rate, gain sqrt(2) except G toRGB (1), D last dense (1), G first
dense (sqrt(2) / 4).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.checks import check_images, check_latents, log2_int
from jaxgan.nn import (
    EqualizedConv,
    EqualizedDense,
    downsample_avg_2x,
    lerp,
    minibatch_stddev,
    pixel_norm,
    upsample_nearest_2x,
)


def _lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.2)


def num_stages(resolution: int) -> int:
    """Number of stages up to ``resolution`` (4 -> 1, 1024 -> 9)."""
    return log2_int(resolution, "PGGAN resolution", 4) - 1


def stage_resolution(stage: int) -> int:
    """Image side at a stage: 4 * 2**stage."""
    return 4 * 2**stage


def _nf(res: int, fmap_base: int, fmap_max: int) -> int:
    return min(fmap_base // (res // 2), fmap_max)


def _check_stage(stage: int, resolution: int, model: str) -> None:
    if not isinstance(stage, int) or not 0 <= stage < num_stages(resolution):
        raise ValueError(
            f"{model}: stage must be a static Python int in [0, {num_stages(resolution) - 1}] "
            f"(0 -> 4x4, {num_stages(resolution) - 1} -> {resolution}x{resolution}), got {stage!r}"
        )


class PGGANGenerator(nn.Module):
    """latents (N, latent_dim) -> images (N, 4 * 2**stage, 4 * 2**stage, channels), linear out.

    Latents are PixelNormed first. 4x4 block: dense -> 4*4*nf (bias per channel after the
    reshape), LReLU, PixelNorm, conv3x3, LReLU, PixelNorm. Each higher block: nearest 2x up,
    2 x [conv3x3, LReLU, PixelNorm]. toRGB: 1x1 conv, gain 1. During a fade (stage > 0):
    ``lerp(upsample(toRGB_prev(h_prev)), toRGB(h), alpha)``.
    """

    resolution: int = 1024
    channels: int = 3
    latent_dim: int = 512
    fmap_base: int = 8192
    fmap_max: int = 512
    impl: str = "auto"

    def setup(self) -> None:
        n = num_stages(self.resolution)
        nf = [_nf(stage_resolution(s), self.fmap_base, self.fmap_max) for s in range(n)]
        self.nf = nf
        self.dense = EqualizedDense(16 * nf[0], gain=math.sqrt(2) / 4, use_bias=False)
        self.dense_bias = self.param("dense_bias", nn.initializers.zeros, (nf[0],))
        self.convs = [
            [EqualizedConv(nf[s], 3, impl=self.impl) for _ in range(1 if s == 0 else 2)]
            for s in range(n)
        ]
        self.to_rgb = [EqualizedConv(self.channels, 1, gain=1.0, impl=self.impl) for _ in range(n)]

    def _block(self, h: jax.Array, s: int) -> jax.Array:
        if s > 0:
            h = upsample_nearest_2x(h)
        for conv in self.convs[s]:
            h = pixel_norm(_lrelu(conv(h)))
        return h

    def features(self, z: jax.Array, stage: int) -> tuple[jax.Array, jax.Array]:
        """The trunk: (h_prev, h), the features of blocks ``stage - 1`` and ``stage`` (h_prev
        is h at stage 0); z: (N, latent_dim), h: (N, 4 * 2**stage, same, nf(stage))."""
        x = pixel_norm(z)
        h = self.dense(x).reshape(z.shape[0], 4, 4, self.nf[0]) + self.dense_bias
        h = self._block(pixel_norm(_lrelu(h)), 0)
        prev = h
        for s in range(1, stage + 1):
            prev, h = h, self._block(h, s)
        return prev, h

    def __call__(self, z: jax.Array, stage: int, alpha: jax.Array | float = 1.0) -> jax.Array:
        check_latents(z, f"PGGANGenerator(resolution={self.resolution})", self.latent_dim)
        _check_stage(stage, self.resolution, "PGGANGenerator")
        prev, h = self.features(z, stage)
        img = self.to_rgb[stage](h)
        if stage > 0:
            skip = upsample_nearest_2x(self.to_rgb[stage - 1](prev))
            img = lerp(skip, img, jnp.asarray(alpha, img.dtype))
        if self.is_initializing():
            self._create_unused(z.dtype, stage)
        return img

    def _create_unused(self, dtype: jnp.dtype, stage: int) -> None:
        """At init, create the layers the chosen stage does not use, on tiny dummy inputs."""
        for s in range(len(self.nf)):
            if s > stage:
                self._block(jnp.zeros((1, 2, 2, self.nf[s - 1]), dtype), s)
            if s < stage - 1 or s > stage:
                self.to_rgb[s](jnp.zeros((1, 1, 1, self.nf[s]), dtype))


class PGGANDiscriminator(nn.Module):
    """images (N, 4 * 2**stage, same, channels) -> scores (N,), linear.

    fromRGB: 1x1 conv + LReLU. Each block above 4x4: conv3x3, conv3x3 (to the next lower
    resolution's width), 2x2 average pool, LReLU after each conv. During a fade the block's
    output is ``lerp(fromRGB_prev(downsample(x)), block(fromRGB(x)), alpha)``. 4x4 block:
    minibatch stddev (+1 channel), conv3x3, dense 16*nf -> nf, dense -> 1 (gain 1).
    """

    resolution: int = 1024
    channels: int = 3
    fmap_base: int = 8192
    fmap_max: int = 512
    mbstd_group_size: int = 4
    impl: str = "auto"

    def setup(self) -> None:
        n = num_stages(self.resolution)
        nf = [_nf(stage_resolution(s), self.fmap_base, self.fmap_max) for s in range(n)]
        self.nf = nf
        self.from_rgb = [EqualizedConv(nf[s], 1, impl=self.impl) for s in range(n)]
        self.convs = [
            [EqualizedConv(nf[s], 3, impl=self.impl), EqualizedConv(nf[s - 1], 3, impl=self.impl)]
            for s in range(1, n)
        ]
        self.final_conv = EqualizedConv(nf[0], 3, impl=self.impl)
        self.final_dense = EqualizedDense(nf[0])
        self.out = EqualizedDense(1, gain=1.0)

    def _block(self, h: jax.Array, s: int) -> jax.Array:
        for conv in self.convs[s - 1]:
            h = _lrelu(conv(h))
        return downsample_avg_2x(h)

    def __call__(self, x: jax.Array, stage: int, alpha: jax.Array | float = 1.0) -> jax.Array:
        _check_stage(stage, self.resolution, "PGGANDiscriminator")
        res = stage_resolution(stage)
        check_images(
            x, f"PGGANDiscriminator(stage={stage})", channels=self.channels, size=res
        )
        h = _lrelu(self.from_rgb[stage](x))
        if stage > 0:
            h = self._block(h, stage)
            skip = _lrelu(self.from_rgb[stage - 1](downsample_avg_2x(x)))
            h = lerp(skip, h, jnp.asarray(alpha, h.dtype))
            for s in range(stage - 1, 0, -1):
                h = self._block(h, s)
        out = self.head(h)
        if self.is_initializing():
            self._create_unused(x.dtype, stage)
        return out

    def head(self, h: jax.Array) -> jax.Array:
        """The 4x4 block: (N, 4, 4, nf(0)) features -> (N,) scores."""
        h = minibatch_stddev(h, self.mbstd_group_size)
        h = _lrelu(self.final_conv(h))
        h = _lrelu(self.final_dense(h.reshape(h.shape[0], -1)))
        return self.out(h)[:, 0]

    def _create_unused(self, dtype: jnp.dtype, stage: int) -> None:
        for s in range(len(self.nf)):
            if s > stage:
                self._block(jnp.zeros((1, 2, 2, self.nf[s]), dtype), s)
            if s < stage - 1 or s > stage:
                self.from_rgb[s](jnp.zeros((1, 1, 1, self.channels), dtype))
