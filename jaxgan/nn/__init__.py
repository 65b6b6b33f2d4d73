"""Building blocks: convolutions with PyTorch semantics, equalized-LR layers, norms, resampling."""

from jaxgan.nn.conv import (
    conv2d,
    conv_transpose2d,
    conv_transpose_output_size,
    default_impl,
)
from jaxgan.nn.layers import (
    NORMS,
    Conv2d,
    ConvTranspose2d,
    EqualizedConv,
    EqualizedDense,
    Norm,
    bn_scale_init,
    check_norm,
    conv_init,
    downsample_avg_2x,
    instance_norm,
    lerp,
    minibatch_stddev,
    pixel_norm,
    reflect_pad,
    upsample_nearest_2x,
)

__all__ = [
    "NORMS",
    "Conv2d",
    "ConvTranspose2d",
    "EqualizedConv",
    "EqualizedDense",
    "Norm",
    "bn_scale_init",
    "check_norm",
    "conv2d",
    "conv_init",
    "conv_transpose2d",
    "conv_transpose_output_size",
    "default_impl",
    "downsample_avg_2x",
    "instance_norm",
    "lerp",
    "minibatch_stddev",
    "pixel_norm",
    "reflect_pad",
    "upsample_nearest_2x",
]
