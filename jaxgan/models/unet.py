"""The pix2pix U-Net generator (``unet_128``: 7 downs, ``unet_256``: 8 downs) [CG].

Level i of ``num_downs`` (0 = outermost) has (outer, inner) channels (out, ngf), (ngf, 2ngf),
(2ngf, 4ngf), (4ngf, 8ngf), then (8ngf, 8ngf). A non-outermost level maps x to
``concat([leaky_relu(x, 0.2), up(...)])``: the reference's in-place LeakyReLU makes the skip
carry the *activated* input. Convs are biased only with InstanceNorm (as the reference: not
with ``none``), except the outermost up-conv, always biased. Dropout 0.5 after the up-norm
of the ``num_downs - 5`` levels between the 4th and the innermost.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.checks import check_images
from jaxgan.nn import Conv2d, ConvTranspose2d, Norm, check_norm


class UNetGenerator(nn.Module):
    """images (N, H, W, in_channels) -> (N, H, W, out_channels) in [-1, 1] (tanh).

    H and W must be multiples of 2**num_downs (256 for ``unet_256``). With ``use_dropout`` and
    ``train=True`` it needs the ``dropout`` rng stream.
    """

    num_downs: int = 8
    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64
    norm: str = "batch"
    use_dropout: bool = True
    impl: str = "auto"

    def _channels(self) -> list[tuple[int, int]]:
        g = self.ngf
        chans = [(self.out_channels, g), (g, 2 * g), (2 * g, 4 * g), (4 * g, 8 * g)]
        chans += [(8 * g, 8 * g)] * (self.num_downs - 4)
        return chans

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if self.num_downs < 5:
            raise ValueError(f"UNetGenerator needs num_downs >= 5, got {self.num_downs}")
        norm = check_norm(self.norm)
        check_images(
            x, f"UNetGenerator(num_downs={self.num_downs})",
            channels=self.in_channels, divisor=2**self.num_downs,
        )
        use_bias = norm == "instance"
        chans = self._channels()
        last = self.num_downs - 1

        def level(h: jax.Array, i: int) -> jax.Array:
            outer, inner = chans[i]
            if i == 0:
                y = Conv2d(inner, 4, 2, 1, use_bias=use_bias, impl=self.impl, name="down0")(h)
                y = level(y, 1)
                y = ConvTranspose2d(outer, 4, 2, 1, use_bias=True, impl=self.impl, name="up0")(
                    nn.relu(y)
                )
                return jnp.tanh(y)
            a = nn.leaky_relu(h, 0.2)
            y = Conv2d(inner, 4, 2, 1, use_bias=use_bias, impl=self.impl, name=f"down{i}")(a)
            if i < last:
                y = Norm(norm, name=f"down_norm{i}")(y, train)
                y = level(y, i + 1)
            y = ConvTranspose2d(outer, 4, 2, 1, use_bias=use_bias, impl=self.impl, name=f"up{i}")(
                nn.relu(y)
            )
            y = Norm(norm, name=f"up_norm{i}")(y, train)
            if self.use_dropout and 4 <= i < last:
                y = nn.Dropout(0.5, deterministic=not train)(y)
            return jnp.concatenate([a, y], axis=-1)

        return level(x, 0)
