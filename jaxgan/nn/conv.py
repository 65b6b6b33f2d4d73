"""Convolutions with PyTorch semantics and a choice of formulation per backend.

XLA's CPU convolutions have sharp corners (see DESIGN.md): the kernel gradient of a
transposed convolution (an lhs-dilated convolution) is two orders of magnitude slower than
PyTorch on a 2-core CPU. The functions here compute exactly the same thing in several ways:

* ``"xla"``: the plain XLA op (``lax.conv_general_dilated``; lhs dilation for transposed
  convolutions). The fast path on GPU and TPU.
* ``"im2col"``: explicit patches (``k*k`` shifted slices concatenated on channels) and one
  matmul. Forward and backward are slices, pads and dots, which XLA:CPU runs at matmul speed.
* ``"col2im"``: the matmul first, on the input's pixels (``C_in -> k*k*C_out``), then the
  ``k*k`` tap outputs shifted and added (the col2im overlap-add). No patch matrix; its
  gradients are two well-shaped matmuls. Fast where the output is thin (toRGB-like layers,
  the PatchGAN's 1-channel head) and for transposed convolutions whose taps the sub-pixel
  form would pad with zeros (kernel 3, stride 2).
* ``"winograd"``: Winograd's minimal filtering F(m x m, r x r) (:mod:`jaxgan.nn.winograd`),
  with a strided convolution first rewritten as a stride-1 one over s x s blocks
  (space-to-depth: kernel 4 stride 2 becomes a 2x2 kernel). Each pass (forward, input
  gradient, kernel gradient) picks its tile m for its output's size
  (:func:`jaxgan.nn.winograd.choose_tile`): F(4x4) on even sizes, F(3x3) on odd ones such
  as a strided conv's 17 x 17 input gradient. 2.25x (F2) to 4x (F4) fewer multiply-adds for
  3x3 kernels, 1.8x to 2.8x for 2x2; the gradients' own derivatives are Winograd too.
  ``"winograd2"``, ``"winograd3"``, ``"winograd4"``: the same with one fixed tile.

A transposed convolution is always rewritten in sub-pixel form (``s*s`` output phases computed
by one stride-1 convolution with ``s*s*out`` channels, then interleaved) unless
``impl="col2im"`` (scatter by overlap-add) or ``impl="xla_dilated"`` (the lhs-dilated
reference formulation) is asked for. ``impl="auto"`` picks per backend and layer shape at
trace time (:func:`default_impl`, :func:`default_transpose_impl`). All formulations are
tested equal.

Layouts: activations NHWC; kernels HWIO ``(k, k, in, out)``. A transposed-convolution kernel
``w[t_y, t_x, i, o]`` has PyTorch's scatter meaning: input pixel ``i`` adds ``x[i] * w[t]`` to
output pixel ``i * stride - padding + t``. A PyTorch ``ConvTranspose2d.weight`` of shape
``(in, out, k, k)`` converts with ``w.transpose(2, 3, 0, 1)``; a ``Conv2d.weight``
``(out, in, k, k)`` with ``w.transpose(2, 3, 1, 0)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxgan.nn.winograd import Pad, depth_to_space, matmul, padded_size, winograd_conv

Padding = int | Sequence[tuple[int, int]]

WINOGRAD_IMPLS = ("winograd", "winograd2", "winograd3", "winograd4")
IMPLS = ("auto", "xla", "im2col", "col2im", *WINOGRAD_IMPLS)
TRANSPOSE_IMPLS = ("auto", "xla", "im2col", "col2im", *WINOGRAD_IMPLS, "xla_dilated")

_DN = ("NHWC", "HWIO", "NHWC")


# CPU rule, from fwd + both gradients per layer on an idle machine (experiments/bench/conv.py,
# RESULTS.md). Outputs thinner than this many columns: col2im under 32768 rows (the
# PatchGAN's 512 -> 1 head: 20 ms XLA, 2.4 ms col2im), XLA's conv above (the ResNet's 7x7
# 64 -> 3 output conv at 256x256: 0.084 s XLA, 0.19 s col2im, 0.96 s im2col) ...
_THIN_OUT = 16
# ... patches at most this wide (RGB first convs, the 7x7 stem on RGB, 1x1 toRGB) count as
# narrow: im2col pays from 32768 matmul rows (batch x output pixels) up (the U-Net's first
# conv: 3.4 ms XLA vs 7.2 ms im2col at batch 1, 84 vs 57 ms at batch 8) ...
_MAX_NARROW_PATCH = 160
_MIN_NARROW_IM2COL_ROWS = 32768
# ... from 16384 when strided with a kernel a multiple of the stride (im2col then builds its
# patches in space-to-depth form: the 4x4 stride-2 first convs at 256x256, batch 1, fwd +
# both gradients, interleaved, memory held: U-Net 3 -> 64 4.4-4.8 ms XLA, 3.8 ms; PatchGAN
# 6 -> 64 7.2-7.6 ms XLA, 5.9 ms).
_MIN_NARROW_S2D_ROWS = 16384
# ... wider patches: im2col, except XLA's own convolution for few rows (< 8192) over large
# images (>= 256 output pixels), where the patch copies cost more than the matmul saves: the
# batch-1 ResNet blocks at 64x64 (M = 4096) take 0.076 s with XLA's conv and 0.113 s with
# im2col, PGGAN's 16x16 convs at batch 16 0.31 s and 0.37 s; at batch 64 over 8x8..10x10
# (DCGAN) im2col is as fast or faster (sub-pixel 8 -> 16: 0.10 s against 0.14 s).
_MIN_IM2COL_ROWS = 8192
_MIN_XLA_PIXELS = 256
# Above this size the im2col conv runs as :func:`_lean_conv`, whose derivatives (of any order)
# keep only activations and kernels, never patches: PGGAN's 128x128 3x3 convs at batch 16
# have 1.2-2.4 GB of patches each. jax.checkpoint does not do this under the gradient
# penalty's double backward (the step's XLA temp buffer: 19.7 GiB plain, 19.4 with
# checkpoint, 11.2 lean); below the cap the lean form is ~6% slower (pggan32_b16).
_MAX_IM2COL_PATCH_BYTES = 512 * 2**20
# Winograd (see use_winograd) from this many matmul rows, 4-wide kernels (after
# space-to-depth: the PatchGAN's 4x4 stride-1 conv) from this many (its 961 rows at batch 1:
# the pix2pix256_b1 step 0.773 -> 0.638-0.642 s, cyclegan256_b1 8.85 -> 8.51 s, in
# interleaved A/Bs with freed memory kept; 0.773 -> 0.671 s without); transposed convs from
# 8x8 inputs (DCGAN's 8 -> 16 sub-pixel conv at batch 64: a 9 x 9 window grid, whose F(3x3)
# tiles fit it exactly, made the dcgan64 step 1.09 -> 0.98 s; its 4 -> 8 conv in Winograd
# made no gain). The tile size is the winograd module's choice per pass (choose_tile).
_MIN_WINOGRAD_ROWS = 2048
_MIN_WINOGRAD_ROWS_4WIDE = 900
_MIN_WINOGRAD_T_IN_PIXELS = 64
# ... and only for layers whose kernel has at least this many weights (patch width x output
# channels): with few channels the tile transforms cost what the saved products do (3x3,
# 64 -> 64 at 32x32, batch 16: 0.045 s XLA, 0.051 s F4; the DCGAN CPU default's 32 -> 64
# stride-2 conv, 32768 weights, made that 1,500-step run 2 min 17 s -> 2 min 48 s).
_MIN_WINOGRAD_WEIGHTS = 65536
# A strided Winograd conv with at most this many output pixels per image takes its input
# gradient by im2col (in space-to-depth form): the input gradient's output (the input,
# ho + 1 blocks a side) rounds up to whole tiles, so F(2x2) computes 81 blocks' worth for 25
# there. DCGAN's D 8 -> 4 (256 -> 512) at batch 64, fwd / input grad / kernel grad in ms,
# interleaved with the memory held: im2col 24.2-25.9 / 25.6-25.7 / 30.9-35.2, Winograd F2
# 21.5-21.7 / 40.3-41.0 / 20.7-21.3, its input gradient by im2col 22.7-22.9. With that,
# Winograd pays for such convs from 1024 rows.
_MAX_WINOGRAD_DX_PIXELS = 16
_MIN_WINOGRAD_ROWS_SMALL_STRIDED = 1024


def use_winograd(
    backend: str | None = None,
    kernel: int | None = None,
    stride: int = 1,
    out_features: int | None = None,
    patch_features: int | None = None,
    rows: int | None = None,
    pixels: int | None = None,
    dtype: jnp.dtype | None = None,
) -> bool:
    """Whether ``impl="auto"`` computes a convolution by Winograd (``"winograd"``).

    CPU and float32 (or float64) only (GPU/TPU keep their own convolutions; in bfloat16 the tile
    transforms would round the amplified tile values to 8 bits): kernels 2 to 4 wide after the
    space-to-depth rewrite (``ceil(kernel / stride)``: 3x3 and 4x4 stride 1, 4x4 and 3x3
    stride 2, the sub-pixel form of a kernel-4 stride-2 transposed conv), outputs at least 16
    channels wide, patches wider than 160, at least 65536 kernel weights (patch width x
    output channels) and 2048 matmul rows (batch x output pixels; 900 for 4-wide kernels;
    1024 for strided convs of at most 16 output ``pixels`` per image, whose input gradient
    is then im2col's: DCGAN's D 8 -> 4 at batch 64). Measured per layer
    (experiments/bench/conv.py, RESULTS.md), fwd + both gradients:
    PGGAN's 32x32 512-channel conv at batch 16 1.57 s (im2col) -> 0.64 s (F4), the PatchGAN's
    4x4 stride-1 conv at batch 8 0.67 s (XLA) -> 0.29 s (F4), the U-Net's 32 -> 16 conv at
    batch 8 (2048 rows) 0.185 s (XLA) -> 0.136 s (F2); torch 1.21, 0.48 and 0.126 s.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu" or kernel is None or rows is None:
        return False
    if dtype is not None and jnp.finfo(dtype).bits < 32:
        return False
    blocks = -(-kernel // stride)  # kernel width after space-to-depth
    if blocks not in (2, 3, 4):
        return False
    if out_features is not None and out_features < _THIN_OUT:
        return False
    if patch_features is not None and patch_features <= _MAX_NARROW_PATCH:
        return False
    if (patch_features is not None and out_features is not None
            and patch_features * out_features < _MIN_WINOGRAD_WEIGHTS):
        return False
    if blocks == 4:
        return rows >= _MIN_WINOGRAD_ROWS_4WIDE
    if stride > 1 and pixels is not None and pixels <= _MAX_WINOGRAD_DX_PIXELS:
        return rows >= _MIN_WINOGRAD_ROWS_SMALL_STRIDED
    return rows >= _MIN_WINOGRAD_ROWS


def default_impl(
    backend: str | None = None,
    out_features: int | None = None,
    patch_features: int | None = None,
    rows: int | None = None,
    pixels: int | None = None,
    kernel: int | None = None,
    stride: int = 1,
    dtype: jnp.dtype | None = None,
) -> str:
    """The formulation ``impl="auto"`` picks for a convolution (measured per layer shape:
    experiments/bench/conv.py).

    Args:
      backend: "cpu", "gpu", "tpu" (default: ``jax.default_backend()``).
      out_features: output channels (matmul columns).
      patch_features: matmul inner size ``k*k*C_in``.
      rows: matmul rows, batch x output pixels.
      pixels: output pixels per image.
      kernel, stride: the kernel size and stride (for the Winograd choice).
      dtype: the activations' dtype (no Winograd below 32 bits; None: float32).

    Returns:
      GPU/TPU: ``"xla"`` (cuDNN / the TPU convolution unit). CPU: ``"winograd"`` where
      :func:`use_winograd` says so; else narrow patches (<= 160):
      ``"im2col"`` from 32768 rows (16384 when strided with a kernel a multiple of the
      stride, in space-to-depth form), else ``"xla"``; thin outputs (< 16 channels):
      ``"col2im"`` under 32768 rows, else ``"xla"``; wider: ``"xla"`` under 8192 rows over
      at least 256 output pixels per image, else ``"im2col"``.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "xla"
    if rows is None:
        return "im2col"
    if use_winograd(backend, kernel, stride, out_features, patch_features, rows, pixels, dtype):
        return "winograd"
    if patch_features is not None and patch_features <= _MAX_NARROW_PATCH:
        s2d = kernel is not None and _narrow_space_to_depth(kernel, stride, patch_features)
        return "im2col" if rows >= (_MIN_NARROW_S2D_ROWS if s2d else _MIN_NARROW_IM2COL_ROWS) \
            else "xla"
    if out_features is not None and out_features < _THIN_OUT:
        return "col2im" if rows < _MIN_NARROW_IM2COL_ROWS else "xla"
    if rows < _MIN_IM2COL_ROWS and (pixels is None or pixels >= _MIN_XLA_PIXELS):
        return "xla"
    return "im2col"


def default_transpose_impl(
    backend: str | None = None,
    kernel: int = 4,
    stride: int = 2,
    out_channels: int | None = None,
    in_pixels: int | None = None,
    in_channels: int | None = None,
    batch: int | None = None,
    dtype: jnp.dtype | None = None,
) -> str | None:
    """The formulation ``impl="auto"`` picks for a transposed convolution, or None to leave it
    to :func:`default_impl` for the sub-pixel form's stride-1 convolution.

    CPU: ``"col2im"`` when the output is thin (< 16 channels); Winograd for the sub-pixel
    form's convolution (kernel ``ceil(k / s)``) from 8x8 inputs when :func:`use_winograd`
    says so; else ``"col2im"`` when the kernel is not a multiple of the stride (the
    sub-pixel kernel would be part zeros: kernel 3 stride 2 does 16 taps for 9) or when the
    input has no more pixels than the kernel has taps (DCGAN's 1x1 -> 4x4 first layer).
    GPU/TPU: ``"xla"``.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "xla"
    if out_channels is not None and out_channels < _THIN_OUT:
        return "col2im"
    kk = -(-kernel // stride)
    if (in_pixels is not None and in_pixels >= _MIN_WINOGRAD_T_IN_PIXELS
            and in_channels is not None and batch is not None):
        side = round(in_pixels ** 0.5) + kk  # sub-pixel windows per side (square inputs)
        if use_winograd(backend, kk, 1, stride * stride * (out_channels or _THIN_OUT),
                        kk * kk * in_channels, batch * side * side, dtype=dtype):
            return "winograd"
    if kernel % stride or (in_pixels is not None and in_pixels <= kernel * kernel):
        return "col2im"
    return None


def _resolve(
    impl: str,
    allowed: Sequence[str],
    out_features: int | None = None,
    patch_features: int | None = None,
    rows: int | None = None,
    pixels: int | None = None,
    kernel: int | None = None,
    stride: int = 1,
    dtype: jnp.dtype | None = None,
) -> str:
    if impl not in allowed:
        raise ValueError(f"unknown convolution impl {impl!r}; choose one of {', '.join(allowed)}")
    if impl == "auto":
        return default_impl(out_features=out_features, patch_features=patch_features, rows=rows,
                            pixels=pixels, kernel=kernel, stride=stride, dtype=dtype)
    return impl


def _pairs(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    (a, b), (c, d) = padding
    return ((int(a), int(b)), (int(c), int(d)))


def _narrow_space_to_depth(kernel: int, stride: int, patch_features: int) -> bool:
    """Whether im2col builds a conv's patches in space-to-depth form: strided, a kernel a
    multiple of the stride (and wider: no 1x1 block kernels), a narrow patch (<= 160)."""
    return (stride > 1 and kernel % stride == 0 and kernel > stride
            and patch_features <= _MAX_NARROW_PATCH)


def _im2col_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """VALID cross-correlation as patches @ kernel. x: (N, H, W, C), w: (kh, kw, C, O).

    A strided conv with a narrow patch (an RGB first conv) whose kernel is a multiple of
    the stride builds its patches in space-to-depth form (:func:`_space_to_depth`): the
    same columns from s*s times fewer, s*s times wider slices. Kernel 4 stride 2 on RGB
    (DCGAN's D at batch 64, fwd / input grad / kernel grad): 5.4 / 6.4 / 12.7 ms -> 4.6 /
    3.3 / 5.4 ms; the U-Net's 256x256 first conv at batch 8: 38.6 -> 29.8 ms in all.
    """
    kh, kw, c, o = w.shape
    if kh == kw and _narrow_space_to_depth(kh, stride, kh * kw * c):
        xb, wb = _space_to_depth(x, w, stride)
        return _im2col_conv(xb, wb, 1)
    n, h, wd, _ = x.shape
    ho = (h - kh) // stride + 1
    wo = (wd - kw) // stride + 1
    if kh == 1 and kw == 1:
        patches = x[:, : (ho - 1) * stride + 1 : stride, : (wo - 1) * stride + 1 : stride, :]
    else:
        cols = [
            x[:, dy : dy + (ho - 1) * stride + 1 : stride, dx : dx + (wo - 1) * stride + 1 : stride, :]
            for dy in range(kh)
            for dx in range(kw)
        ]
        patches = jnp.concatenate(cols, axis=-1)
    out = matmul(patches.reshape(n * ho * wo, kh * kw * c), w.reshape(kh * kw * c, o))
    return out.reshape(n, ho, wo, o)


def _tap_outputs(x: jax.Array, w: jax.Array) -> list[list[jax.Array]]:
    """Every kernel tap applied to every input pixel, one matmul: ``taps[t_y][t_x]`` is the
    (N, H, W, O) output of tap (t_y, t_x) for (N, H, W, C) inputs, in float32 (or wider) so
    that the caller sums the taps before rounding to a bfloat16 input's dtype.

    The taps are cut apart with ``lax.split``, whose transpose is a concatenate: the
    backward gathers each tap's output gradient in one pass. Slicing them out instead made
    the gradient a sum of k*k zero-padded copies (a select per tap for every element): the
    DCGAN 64 -> 3 output layer's input gradient took 28 ms, against 5 ms in PyTorch.
    """
    kh, kw, c, o = w.shape
    n, h, wd, _ = x.shape
    z = matmul(x.reshape(n * h * wd, c), w.transpose(2, 0, 1, 3).reshape(c, kh * kw * o),
               out_dtype=jnp.promote_types(x.dtype, jnp.float32))
    parts = lax.split(z.reshape(n, h, wd, kh * kw, o), [1] * (kh * kw), axis=3)
    return [[parts[ty * kw + tx].reshape(n, h, wd, o) for tx in range(kw)] for ty in range(kh)]


def _col2im_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """VALID cross-correlation as tap outputs, shifted and summed: y[p] = sum_t z_t[p*s + t]."""
    kh, kw = w.shape[:2]
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    z = _tap_outputs(x, w)
    y = None
    for ty in range(kh):
        for tx in range(kw):
            part = z[ty][tx][:, ty : ty + (ho - 1) * stride + 1 : stride,
                             tx : tx + (wo - 1) * stride + 1 : stride, :]
            y = part if y is None else y + part
    return y.astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _lean_conv(x: jax.Array, w: jax.Array, stride: int, form: str = "im2col") -> jax.Array:
    """VALID cross-correlation (im2col or col2im form) whose derivatives are again lean convs.

    The JVP of a conv is ``conv(dx, w) + conv(x, dw)``; computing the first term in im2col form
    (patches of the tangent) and the second in col2im form (``x @ dw`` on input pixels) makes
    reverse mode keep only ``x`` and ``w``: the patch matrix is a temporary of each pass, never
    a residual, at any order of differentiation (the WGAN-GP penalty's double backward
    included). Exact: the same sums as :func:`_im2col_conv` in another order.
    """
    return _im2col_conv(x, w, stride) if form == "im2col" else _col2im_conv(x, w, stride)


@functools.partial(_lean_conv.defjvp, symbolic_zeros=True)
def _lean_conv_jvp(stride, form, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = _lean_conv(x, w, stride, form)
    parts = []
    if not isinstance(dx, SymbolicZero):
        parts.append(_lean_conv(dx, w, stride, "im2col"))
    if not isinstance(dw, SymbolicZero):
        parts.append(_lean_conv(x, dw, stride, "col2im"))
    return y, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(y)


def conv2d(
    x: jax.Array, w: jax.Array, *, stride: int = 1, padding: Padding = 0, impl: str = "auto"
) -> jax.Array:
    """Cross-correlation with zero padding, as ``torch.nn.functional.conv2d``.

    Args:
      x: (N, H, W, C_in) activations.
      w: (k_h, k_w, C_in, C_out) kernel.
      stride: the same stride on both spatial axes.
      padding: an int (all sides) or ((top, bottom), (left, right)).
      impl: "auto", "xla", "im2col" or "col2im".
    Returns:
      (N, H_out, W_out, C_out) with H_out = (H + top + bottom - k_h) // stride + 1.
    """
    pad = _pairs(padding)
    rows = x.shape[0] * (
        (x.shape[1] + sum(pad[0]) - w.shape[0]) // stride + 1) * (
        (x.shape[2] + sum(pad[1]) - w.shape[1]) // stride + 1)
    impl = _resolve(impl, IMPLS, w.shape[-1], w.shape[0] * w.shape[1] * w.shape[2], rows,
                    rows // x.shape[0], kernel=max(w.shape[:2]), stride=stride, dtype=x.dtype)
    if impl == "xla":
        if jax.default_backend() == "cpu" and not any(p for pair in pad for p in pair):
            # XLA:CPU runs convolutions without any padding on a path ~3x slower (3x3 256 ->
            # 256 at 66x66: 0.077 s against 0.028 s): one zero row below, cropped off, takes
            # the fast path (ResNet blocks after a reflection pad, sub-pixel convolutions).
            ho = (x.shape[1] - w.shape[0]) // stride + 1
            y = lax.conv_general_dilated(
                x, w, (stride, stride), ((0, 1), (0, 0)), dimension_numbers=_DN)
            return y[:, :ho]
        return lax.conv_general_dilated(
            x, w, (stride, stride), pad, dimension_numbers=_DN
        )
    if impl in WINOGRAD_IMPLS:
        return _winograd_strided(x, w, stride, int(impl[len("winograd"):] or 0) or None, pad)
    if any(p for pair in pad for p in pair):
        x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    if impl == "col2im":
        return _col2im_conv(x, w, stride)
    if rows * w.shape[0] * w.shape[1] * w.shape[2] * x.dtype.itemsize > _MAX_IM2COL_PATCH_BYTES:
        return _lean_conv(x, w, stride)
    return _im2col_conv(x, w, stride)


def _space_to_depth(x: jax.Array, w: jax.Array, stride: int) -> tuple[jax.Array, jax.Array]:
    """A VALID strided cross-correlation as a stride-1 one, exactly: ``(x_blocks, w_blocks)``.

    With stride s, output pixel o reads input rows s*o + t, t = s*J + d: block o + J, phase d.
    So the input is cut into s x s blocks (channels become (d_y, d_x, C)), the kernel, padded
    with zeros to a multiple of s, into (ceil(k/s), ceil(k/s), s*s*C, O)
    (:func:`_kernel_to_depth`), and the convolution is stride 1 over blocks: kernel 4 stride
    2 becomes a 2x2 convolution.
    """
    k, _, c, _ = w.shape
    n, h, wd, _ = x.shape
    s, kb = stride, -(-k // stride)
    ho, wo = (h - k) // s + 1, (wd - k) // s + 1
    hb, wb = ho + kb - 1, wo + kb - 1  # blocks read
    xb = lax.pad(x, jnp.zeros((), x.dtype),
                 ((0, 0, 0), (0, s * hb - h, 0), (0, s * wb - wd, 0), (0, 0, 0)))
    xb = xb.reshape(n, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hb, wb, s * s * c)
    return xb, _kernel_to_depth(w, stride)


def _kernel_to_depth(w: jax.Array, stride: int) -> jax.Array:
    """The kernel of :func:`_space_to_depth`'s stride-1 form, (ceil(k/s), ceil(k/s), s*s*C, O)."""
    k, _, c, o = w.shape
    s, kb = stride, -(-k // stride)
    wb = jnp.pad(w, ((0, kb * s - k), (0, kb * s - k), (0, 0), (0, 0)))
    return wb.reshape(kb, s, kb, s, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(kb, kb, s * s * c, o)


def _winograd_strided(x: jax.Array, w: jax.Array, stride: int, tile: int | None,
                      pad: Pad) -> jax.Array:
    """Cross-correlation of ``x`` zero-padded by ``pad`` by Winograd F(tile, r) (None: chosen
    per pass), which reads ``x`` in place (the padded copy is never written out); a strided
    one in space-to-depth form, with its input gradient by im2col when the output is small
    (:data:`_MAX_WINOGRAD_DX_PIXELS`)."""
    if stride == 1:
        return winograd_conv(x, w, tile, 1, pad)
    k = w.shape[0]
    h, wd = padded_size(x, pad)
    out_pixels = ((h - k) // stride + 1) * ((wd - k) // stride + 1)
    if out_pixels <= _MAX_WINOGRAD_DX_PIXELS:
        return _winograd_im2col_dx(x, w, stride, tile, pad)
    return _winograd_blocked(x, w, stride, tile, pad)


def _winograd_blocked(x: jax.Array, w: jax.Array, stride: int, tile: int | None,
                      pad: Pad) -> jax.Array:
    """A strided conv as Winograd over the space-to-depth form of ``x`` (zero-padded by
    ``pad``), which the tile transforms read from ``x`` in place (``winograd_conv``'s
    ``block``): neither the padded nor the blocked input is written out. DCGAN's D at batch
    64, input transform with the blocking before it: 32 -> 16 9.6 -> 6.4 ms, 16 -> 8 4.3 ->
    1.9 ms, 8 -> 4 2.1 -> 0.8 ms (bit-identical)."""
    k = w.shape[0]
    h, wd = padded_size(x, pad)
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    # x is read in whole blocks (zero-padded): one more output row or column than the conv
    # has where a last partial block is not needed.
    return winograd_conv(x, _kernel_to_depth(w, stride), tile, stride, pad)[:, :ho, :wo]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _winograd_im2col_dx(x: jax.Array, w: jax.Array, stride: int, tile: int | None,
                        pad: Pad) -> jax.Array:
    """A strided conv by Winograd (forward, kernel gradient) whose input gradient is
    im2col's, in space-to-depth form. Differentiable again (the gradient penalty)."""
    return _winograd_blocked(x, w, stride, tile, pad)


def _winograd_im2col_dx_fwd(x, w, stride, tile, pad):
    return _winograd_im2col_dx(x, w, stride, tile, pad), (x, w)


def _winograd_im2col_dx_bwd(stride, tile, pad, res, dy):
    x, w = res
    # Each vjp's forward is dead code (only its linear transpose is used): XLA drops it.
    _, input_vjp = jax.vjp(
        lambda x: _im2col_conv(*_space_to_depth(jnp.pad(x, ((0, 0),) + pad + ((0, 0),)), w,
                                                stride), 1), x)
    _, kernel_vjp = jax.vjp(lambda w: _winograd_blocked(x, w, stride, tile, pad), w)
    return input_vjp(dy)[0], kernel_vjp(dy)[0]


_winograd_im2col_dx.defvjp(_winograd_im2col_dx_fwd, _winograd_im2col_dx_bwd)


def conv_transpose_output_size(
    size: int, kernel: int, stride: int, padding: int, output_padding: int
) -> int:
    """PyTorch's ConvTranspose2d output size: (size - 1) * stride - 2 * padding + kernel + op."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _check_transpose_args(kernel: int, stride: int, padding: int, output_padding: int) -> None:
    if stride < 1 or padding < 0 or kernel < 1:
        raise ValueError(f"bad transposed conv: kernel={kernel} stride={stride} padding={padding}")
    if not 0 <= output_padding < stride:
        raise ValueError(
            f"output_padding={output_padding} must be in [0, stride={stride}) (as in PyTorch)"
        )


def _subpixel_kernel(w: jax.Array, stride: int) -> jax.Array:
    """Rearrange a (k, k, I, O) scatter kernel into the (K, K, I, s*s*O) sub-pixel kernel.

    K = ceil(k / s). Phase (b_y, b_x) of the output is a stride-1 correlation of the input with
    taps w[b + (K - 1 - u) * s] (zero where that index is >= k).
    """
    k, _, i, o = w.shape
    s = stride
    kk = -(-k // s)
    wp = jnp.pad(w, ((0, kk * s - k), (0, kk * s - k), (0, 0), (0, 0)))
    wp = wp.reshape(kk, s, kk, s, i, o)  # (j_y, b_y, j_x, b_x, I, O), t = j * s + b
    wp = wp[::-1, :, ::-1, :, :, :]  # u = K - 1 - j
    wp = wp.transpose(0, 2, 4, 1, 3, 5)  # (u_y, u_x, I, b_y, b_x, O)
    return wp.reshape(kk, kk, i, s * s * o)


def _col2im_transpose(
    x: jax.Array, w: jax.Array, stride: int, padding: int, ho: int, wo: int
) -> jax.Array:
    """The scatter definition: tap t of input pixel i lands on output i * s - padding + t.

    Each tap's outputs are spread out by interior padding (s - 1 zeros between pixels), moved
    to their offset (a negative edge pad crops) and summed; XLA fuses the sum into one pass.
    """
    k = w.shape[0]
    _, h, wd, _ = x.shape
    z = _tap_outputs(x, w)
    span_h, span_w = (h - 1) * stride + 1, (wd - 1) * stride + 1
    zero = jnp.zeros((), z[0][0].dtype)
    y = None
    for ty in range(k):
        for tx in range(k):
            lo_y, lo_x = ty - padding, tx - padding
            part = lax.pad(z[ty][tx], zero, (
                (0, 0, 0),
                (lo_y, ho - lo_y - span_h, stride - 1),
                (lo_x, wo - lo_x - span_w, stride - 1),
                (0, 0, 0)))
            y = part if y is None else y + part
    return y.astype(x.dtype)


def conv_transpose2d(
    x: jax.Array,
    w: jax.Array,
    *,
    stride: int,
    padding: int = 0,
    output_padding: int = 0,
    impl: str = "auto",
) -> jax.Array:
    """Transposed convolution with PyTorch ``ConvTranspose2d`` semantics, exact.

    Args:
      x: (N, H, W, C_in).
      w: (k, k, C_in, C_out) scatter kernel (see the module docstring).
      stride, padding, output_padding: as PyTorch (``0 <= output_padding < stride``).
      impl: "auto", "xla", "im2col" (sub-pixel form whose stride-1 convolution uses that
        formulation), "col2im" (tap outputs overlap-added) or "xla_dilated" (the lhs-dilated
        reference formulation).
    Returns:
      (N, H_out, W_out, C_out), H_out = (H - 1) * stride - 2 * padding + k + output_padding.
    """
    k = w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"square kernels only, got {w.shape[:2]}")
    _check_transpose_args(k, stride, padding, output_padding)
    kk = -(-k // stride)
    if impl == "auto":
        impl = default_transpose_impl(kernel=k, stride=stride, out_channels=w.shape[-1],
                                      in_pixels=x.shape[1] * x.shape[2],
                                      in_channels=w.shape[2], batch=x.shape[0],
                                      dtype=x.dtype) or "auto"
    pixels = (x.shape[1] + kk) * (x.shape[2] + kk)  # sub-pixel windows (upper bound)
    impl = _resolve(impl, TRANSPOSE_IMPLS, stride * stride * w.shape[-1], kk * kk * w.shape[2],
                    x.shape[0] * pixels, pixels, dtype=x.dtype)
    _, h, wd, _ = x.shape
    ho = conv_transpose_output_size(h, k, stride, padding, output_padding)
    wo = conv_transpose_output_size(wd, k, stride, padding, output_padding)
    if impl == "col2im":
        return _col2im_transpose(x, w, stride, padding, ho, wo)
    if impl == "xla_dilated":
        lo, hi = k - 1 - padding, k - 1 - padding + output_padding
        return lax.conv_general_dilated(
            x,
            w[::-1, ::-1],
            (1, 1),
            ((lo, hi), (lo, hi)),
            lhs_dilation=(stride, stride),
            dimension_numbers=_DN,
        )
    s = stride
    wsub = _subpixel_kernel(w, s)

    # Output q = o + padding = a * s + b needs window x[a - K + 1 .. a], a in [a_lo, a_hi].
    def span(size_out: int, size_in: int) -> tuple[int, int, int]:
        a_lo = padding // s
        a_hi = (size_out - 1 + padding) // s
        return a_lo, kk - 1 - a_lo, a_hi - (size_in - 1)

    a_lo_y, pad_top, pad_bottom = span(ho, h)
    a_lo_x, pad_left, pad_right = span(wo, wd)
    sub_impl = impl if impl == "xla" or impl in WINOGRAD_IMPLS else "im2col"
    if sub_impl in WINOGRAD_IMPLS and min(pad_top, pad_bottom, pad_left, pad_right) >= 0:
        # Winograd reads x padded in place, without a padded copy. (Not XLA's conv: with
        # the padding inside, XLA:CPU's kernel gradients of pix2pix's inner up-convs took
        # 1.4-1.5 s each and the step 3.6 s instead of 0.65 s.)
        z = conv2d(x, wsub, stride=1, padding=((pad_top, pad_bottom), (pad_left, pad_right)),
                   impl=sub_impl)
    else:  # negative pads (large `padding`) crop; lax.pad does both
        xp = lax.pad(
            x,
            jnp.zeros((), x.dtype),
            ((0, 0, 0), (pad_top, pad_bottom, 0), (pad_left, pad_right, 0), (0, 0, 0)),
        )
        z = conv2d(xp, wsub, stride=1, padding=0, impl=sub_impl)
    z = depth_to_space(z, s, z.shape[1] * s, z.shape[2] * s)  # the s*s phases interleaved
    oy = padding - a_lo_y * s
    ox = padding - a_lo_x * s
    return z[:, oy : oy + ho, ox : ox + wo, :]
