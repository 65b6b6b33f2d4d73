"""PatchGAN discriminators (``basic`` = 3 layers, any ``n_layers``, and the 1x1 ``pixel`` D) and
their receptive fields [CG]."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxgan.checks import check_images
from jaxgan.nn import Conv2d, Norm, check_norm


def patch_layer_specs(n_layers: int) -> list[tuple[int, int]]:
    """(kernel, stride) of the convolutions of an NLayer D, input to output."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    return [(4, 2)] * n_layers + [(4, 1), (4, 1)] if n_layers else [(4, 2), (4, 1), (4, 1)]


class PatchDiscriminator(nn.Module):
    """images (N, H, W, in_channels) -> logits map (N, h, w, 1), no sigmoid.

    Conv k4 s2 p1 (bias) + LReLU 0.2; for n in 1..n_layers-1: conv k4 s2 p1 with
    ndf * min(2**n, 8) channels, norm, LReLU; conv k4 **s1** p1 with ndf * min(2**n_layers, 8),
    norm, LReLU; conv k4 s1 p1 -> 1 (bias). (n_layers = 0: one s2 conv, then the two s1 convs.)
    """

    in_channels: int = 3
    n_layers: int = 3
    ndf: int = 64
    norm: str = "batch"
    impl: str = "auto"

    def layer_specs(self) -> list[tuple[int, int]]:
        return patch_layer_specs(self.n_layers)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = check_norm(self.norm)
        check_images(x, f"PatchDiscriminator(n_layers={self.n_layers})", channels=self.in_channels)
        need = min_input_size(self.layer_specs())
        if x.shape[1] < need or x.shape[2] < need:
            raise ValueError(
                f"PatchDiscriminator(n_layers={self.n_layers}): input must be at least "
                f"{need}x{need}, e.g. shape (N, {need}, {need}, {self.in_channels}); "
                f"got {tuple(x.shape)}"
            )
        use_bias = norm == "instance"
        y = nn.leaky_relu(Conv2d(self.ndf, 4, 2, 1, impl=self.impl)(x), 0.2)
        for n in range(1, self.n_layers):
            y = Conv2d(self.ndf * min(2**n, 8), 4, 2, 1, use_bias=use_bias, impl=self.impl)(y)
            y = nn.leaky_relu(Norm(norm)(y, train), 0.2)
        mult = min(2**self.n_layers, 8)
        y = Conv2d(self.ndf * mult, 4, 1, 1, use_bias=use_bias, impl=self.impl)(y)
        y = nn.leaky_relu(Norm(norm)(y, train), 0.2)
        return Conv2d(1, 4, 1, 1, impl=self.impl)(y)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: (N, H, W, in_channels) -> logits (N, H, W, 1).

    Conv1x1 -> ndf (bias), LReLU 0.2, conv1x1 -> 2ndf, norm, LReLU 0.2, conv1x1 -> 1; the last
    two are biased only with InstanceNorm (as the reference).
    """

    in_channels: int = 3
    ndf: int = 64
    norm: str = "batch"
    impl: str = "auto"

    def layer_specs(self) -> list[tuple[int, int]]:
        return [(1, 1)] * 3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        norm = check_norm(self.norm)
        check_images(x, "PixelDiscriminator", channels=self.in_channels)
        use_bias = norm == "instance"
        y = nn.leaky_relu(Conv2d(self.ndf, 1, impl=self.impl)(x), 0.2)
        y = Conv2d(2 * self.ndf, 1, use_bias=use_bias, impl=self.impl)(y)
        y = nn.leaky_relu(Norm(norm)(y, train), 0.2)
        return Conv2d(1, 1, use_bias=use_bias, impl=self.impl)(y)


Spec = PatchDiscriminator | PixelDiscriminator | int | str | Sequence[tuple[int, int]]


_NAMED = {"pixel": [(1, 1)] * 3, "basic": patch_layer_specs(3)}


def _specs(d: Spec) -> list[tuple[int, int]]:
    if isinstance(d, (PatchDiscriminator, PixelDiscriminator)):
        return d.layer_specs()
    if isinstance(d, int):
        return patch_layer_specs(d)
    if isinstance(d, str):
        if d not in _NAMED:
            raise ValueError(f"unknown discriminator {d!r}: use 'basic', 'pixel' or an int")
        return _NAMED[d]
    return [(int(k), int(s)) for k, s in d]


def receptive_field(d: Spec) -> int:
    """Receptive field (pixels) of one output logit, ``rf = (rf - 1) * stride + kernel`` from
    the output back. ``d``: a PatchDiscriminator / PixelDiscriminator, ``"basic"``,
    ``"pixel"``, an ``n_layers`` int, or (kernel, stride) pairs from input to output."""
    rf = 1
    for k, s in reversed(_specs(d)):
        rf = (rf - 1) * s + k
    return rf


def min_input_size(specs: Sequence[tuple[int, int]], padding: int = 1) -> int:
    """Smallest square input giving at least a 1x1 output for k4 convs with the given padding."""
    size = 1
    for k, s in reversed(specs):
        size = max((size - 1) * s + k - 2 * padding, 1)
    return size


def output_size(d: Spec, size: int) -> int:
    """Side of the logit map for a square input of side ``size`` (padding 1 for k4, 0 for k1)."""
    for k, s in _specs(d):
        p = 1 if k == 4 else 0
        size = (size + 2 * p - k) // s + 1
    return size
