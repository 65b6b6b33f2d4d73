"""The CycleGAN ResNet generator (``resnet_6blocks`` / ``resnet_9blocks``) [CG]."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.checks import check_images
from jaxgan.nn import Conv2d, ConvTranspose2d, Norm, check_norm, reflect_pad


class ResnetBlock(nn.Module):
    """x + [reflect-pad 1, conv3x3, norm, ReLU, (dropout 0.5), reflect-pad 1, conv3x3, norm](x)."""

    features: int
    norm: str = "instance"
    use_dropout: bool = False
    use_bias: bool = True
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        y = Conv2d(self.features, 3, use_bias=self.use_bias, impl=self.impl)(reflect_pad(x, 1))
        y = nn.relu(Norm(self.norm)(y, train))
        if self.use_dropout:
            y = nn.Dropout(0.5, deterministic=not train)(y)
        y = Conv2d(self.features, 3, use_bias=self.use_bias, impl=self.impl)(reflect_pad(y, 1))
        return x + Norm(self.norm)(y, train)


class ResnetGenerator(nn.Module):
    """images (N, H, W, in_channels) -> (N, H, W, out_channels) in [-1, 1] (tanh).

    Reflect-pad 3, conv7x7 (ngf), norm, ReLU; 2 x [conv3x3 s2 p1 doubling, norm, ReLU];
    ``n_blocks`` residual blocks at 4ngf; 2 x [ConvT(k3 s2 p1 op1) halving, norm, ReLU];
    reflect-pad 3, conv7x7 with bias, tanh. Convs before a norm are biased only with
    InstanceNorm (as the reference). H and W must be multiples of 4.
    """

    n_blocks: int = 9
    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64
    norm: str = "instance"
    use_dropout: bool = False
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = check_norm(self.norm)
        check_images(
            x, f"ResnetGenerator(n_blocks={self.n_blocks})", channels=self.in_channels, divisor=4
        )
        use_bias = norm == "instance"
        g = self.ngf
        y = Conv2d(g, 7, use_bias=use_bias, impl=self.impl)(reflect_pad(x, 3))
        y = nn.relu(Norm(norm)(y, train))
        for mult in (1, 2):
            y = Conv2d(g * mult * 2, 3, 2, 1, use_bias=use_bias, impl=self.impl)(y)
            y = nn.relu(Norm(norm)(y, train))
        for _ in range(self.n_blocks):
            y = ResnetBlock(4 * g, norm, self.use_dropout, use_bias, self.impl)(y, train)
        for mult in (4, 2):
            y = ConvTranspose2d(g * mult // 2, 3, 2, 1, 1, use_bias=use_bias, impl=self.impl)(y)
            y = nn.relu(Norm(norm)(y, train))
        y = Conv2d(self.out_channels, 7, use_bias=True, impl=self.impl)(reflect_pad(y, 3))
        return jnp.tanh(y)
