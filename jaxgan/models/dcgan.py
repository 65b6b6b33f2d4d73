"""DCGAN generator and discriminator (Radford et al. 2015; pytorch/examples dcgan) for any
power-of-two resolution R >= 16 and channel count; at R = 64 exactly the reference (G 3,576,704
and D 2,765,568 parameters with nz 100, ngf = ndf = 64)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.checks import check_images, check_latents, log2_int
from jaxgan.nn import Conv2d, ConvTranspose2d, Norm


class DCGANGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, R, R, channels) in [-1, 1] (tanh).

    ConvT(nz -> ngf * 2**(L-1), k4 s1 p0) to 4x4, BN, ReLU; L - 1 blocks of ConvT(k4 s2 p1)
    halving channels, BN, ReLU; ConvT(ngf -> channels, k4 s2 p1), tanh; L = log2(R) - 2.
    No biases. BatchNorm statistics in ``batch_stats``.
    """

    resolution: int = 64
    channels: int = 3
    latent_dim: int = 100
    ngf: int = 64
    impl: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        name = f"DCGANGenerator(resolution={self.resolution})"
        check_latents(z, name, self.latent_dim)
        n_up = log2_int(self.resolution, "DCGAN resolution", 16) - 2
        mult = 2 ** (n_up - 1)
        x = z[:, None, None, :]
        x = ConvTranspose2d(self.ngf * mult, 4, 1, 0, use_bias=False, impl=self.impl)(x)
        x = nn.relu(Norm("batch")(x, train))
        for _ in range(n_up - 1):
            mult //= 2
            x = ConvTranspose2d(self.ngf * mult, 4, 2, 1, use_bias=False, impl=self.impl)(x)
            x = nn.relu(Norm("batch")(x, train))
        x = ConvTranspose2d(self.channels, 4, 2, 1, use_bias=False, impl=self.impl)(x)
        return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
    """images (N, R, R, channels) in [-1, 1] -> logits (N,) (no sigmoid).

    Conv(channels -> ndf, k4 s2 p1), LReLU 0.2; log2(R) - 3 blocks of Conv(k4 s2 p1) doubling
    channels, BN, LReLU 0.2, down to 4x4; Conv(-> 1, k4 s1 p0). No biases.
    """

    resolution: int = 64
    channels: int = 3
    ndf: int = 64
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        n_down = log2_int(self.resolution, "DCGAN resolution", 16) - 2
        check_images(
            x, f"DCGANDiscriminator(resolution={self.resolution})",
            channels=self.channels, size=self.resolution,
        )
        x = Conv2d(self.ndf, 4, 2, 1, use_bias=False, impl=self.impl)(x)
        x = nn.leaky_relu(x, 0.2)
        mult = 1
        for _ in range(n_down - 1):
            mult *= 2
            x = Conv2d(self.ndf * mult, 4, 2, 1, use_bias=False, impl=self.impl)(x)
            x = nn.leaky_relu(Norm("batch")(x, train), 0.2)
        x = Conv2d(1, 4, 1, 0, use_bias=False, impl=self.impl)(x)
        return x.reshape(x.shape[0])
