"""Which CPU formulation ``impl="auto"`` picks for a layer shape (CPU backend only); the
thresholds, tuned on forward plus both gradients with experiments/bench/conv.py, each say why.
"""

from __future__ import annotations

import jax.numpy as jnp

# Thinner outputs are too small a matmul to pay for im2col's patches: col2im or XLA's conv.
THIN_OUT = 16
# Narrow patches (RGB first convs, 1x1 toRGB): XLA's conv wins below these rows (N x pixels) ...
MAX_NARROW_PATCH = 160
MIN_NARROW_IM2COL_ROWS = 32768
# ... or below these when strided im2col builds them in space-to-depth form (wider slices).
MIN_NARROW_S2D_ROWS = 16384
# Wider patches: XLA's conv for few rows over large images (patch copies outweigh the matmul) ...
MIN_IM2COL_ROWS = 8192
MIN_XLA_PIXELS = 256
# ... and at any rows for kernels of fewer weights (patch x output channels): too small a matmul.
MIN_IM2COL_WEIGHTS = 16384
# Larger patches: the lean conv, which keeps none at any derivative order; below, it is slower.
MAX_IM2COL_PATCH_BYTES = 512 * 2**20
# Winograd from this many matmul rows (fewer do not amortize the tile transforms) ...
MIN_WINOGRAD_ROWS = 2048
# ... fewer for 4-wide kernels (after space-to-depth), whose products it cuts most ...
MIN_WINOGRAD_ROWS_4WIDE = 900
# ... transposed convs from inputs this large, whose sub-pixel window grid fills whole tiles ...
MIN_WINOGRAD_T_IN_PIXELS = 64
# ... and kernels of this many weights (patch x output channels); fewer gain nothing.
MIN_WINOGRAD_WEIGHTS = 16384
# Strided Winograd convs this small take their input gradient by im2col (rounded up to whole
# tiles it would compute several times the blocks needed), and so pay from fewer rows.
MAX_WINOGRAD_DX_PIXELS = 16
MIN_WINOGRAD_ROWS_SMALL_STRIDED = 1024


def use_winograd(
    kernel: int | None = None,
    stride: int = 1,
    out_features: int | None = None,
    patch_features: int | None = None,
    rows: int | None = None,
    pixels: int | None = None,
    dtype: jnp.dtype | None = None,
) -> bool:
    """Whether a CPU convolution runs by Winograd: float32 or wider (in bfloat16 the tile
    transforms would round the amplified tile values to 8 bits), kernels 2 to 4 wide after the
    space-to-depth rewrite (``ceil(kernel / stride)``), outputs of at least ``THIN_OUT``
    channels, wide patches, enough kernel weights and matmul rows (the thresholds above)."""
    if kernel is None or rows is None:
        return False
    if dtype is not None and jnp.finfo(dtype).bits < 32:
        return False
    blocks = -(-kernel // stride)  # kernel width after space-to-depth
    if blocks not in (2, 3, 4):
        return False
    if out_features is not None and out_features < THIN_OUT:
        return False
    if patch_features is not None and patch_features <= MAX_NARROW_PATCH:
        return False
    if (patch_features is not None and out_features is not None
            and patch_features * out_features < MIN_WINOGRAD_WEIGHTS):
        return False
    if blocks == 4:
        return rows >= MIN_WINOGRAD_ROWS_4WIDE
    if stride > 1 and pixels is not None and pixels <= MAX_WINOGRAD_DX_PIXELS:
        return rows >= MIN_WINOGRAD_ROWS_SMALL_STRIDED
    return rows >= MIN_WINOGRAD_ROWS


def narrow_space_to_depth(kernel: int, stride: int, patch_features: int) -> bool:
    """Whether im2col builds a strided conv's patches in space-to-depth form: the kernel a
    multiple of the stride and wider than it (no 1x1 block kernels), the patch narrow (the RGB
    first convs), so ``(k/s)^2`` slices of ``s*s*C`` channels replace ``k*k`` slices of ``C``."""
    return (stride > 1 and kernel % stride == 0 and kernel > stride
            and patch_features <= MAX_NARROW_PATCH)


def conv_impl(
    out_features: int | None = None,
    patch_features: int | None = None,
    rows: int | None = None,
    pixels: int | None = None,
    kernel: int | None = None,
    stride: int = 1,
    dtype: jnp.dtype | None = None,
) -> str:
    """The CPU formulation of a convolution by the thresholds above (arguments as
    :func:`jaxgan.nn.conv.default_impl`)."""
    if rows is None:
        return "im2col"
    if use_winograd(kernel, stride, out_features, patch_features, rows, pixels, dtype):
        return "winograd"
    if patch_features is not None and patch_features <= MAX_NARROW_PATCH:
        s2d = kernel is not None and narrow_space_to_depth(kernel, stride, patch_features)
        return "im2col" if rows >= (MIN_NARROW_S2D_ROWS if s2d else MIN_NARROW_IM2COL_ROWS) \
            else "xla"
    if out_features is not None and out_features < THIN_OUT:
        return "col2im" if rows < MIN_NARROW_IM2COL_ROWS else "xla"
    if rows < MIN_IM2COL_ROWS and (pixels is None or pixels >= MIN_XLA_PIXELS):
        return "xla"
    if (patch_features is not None and out_features is not None
            and patch_features * out_features < MIN_IM2COL_WEIGHTS):
        return "xla"
    return "im2col"


def transpose_impl(
    kernel: int = 4,
    stride: int = 2,
    out_channels: int | None = None,
    in_pixels: int | None = None,
    in_channels: int | None = None,
    batch: int | None = None,
    dtype: jnp.dtype | None = None,
) -> str | None:
    """The CPU formulation of a transposed convolution, or None for the sub-pixel form with its
    stride-1 conv chosen by :func:`conv_impl`. ``"col2im"`` also when the kernel is not a
    multiple of the stride (the sub-pixel kernel would be part zeros) or the input has no more
    pixels than the kernel has taps (DCGAN's 1x1 -> 4x4)."""
    if out_channels is not None and out_channels < THIN_OUT:
        return "col2im"
    kk = -(-kernel // stride)
    if (in_pixels is not None and in_pixels >= MIN_WINOGRAD_T_IN_PIXELS
            and in_channels is not None and batch is not None):
        side = round(in_pixels ** 0.5) + kk  # sub-pixel windows per side (square inputs)
        if use_winograd(kk, 1, stride * stride * (out_channels or THIN_OUT),
                        kk * kk * in_channels, batch * side * side, dtype=dtype):
            return "winograd"
    if kernel % stride or (in_pixels is not None and in_pixels <= kernel * kernel):
        return "col2im"
    return None
