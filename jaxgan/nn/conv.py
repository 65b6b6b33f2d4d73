"""Convolutions with PyTorch semantics and a choice of formulation per backend.

XLA's CPU convolutions have sharp corners (see DESIGN.md): the kernel gradient of a
transposed convolution (an lhs-dilated convolution) is two orders of magnitude slower than
PyTorch on a 2-core CPU. The functions here compute exactly the same thing in several ways:

* ``"xla"``: the plain XLA op (``lax.conv_general_dilated``; lhs dilation for transposed
  convolutions). The fast path on GPU and TPU.
* ``"im2col"``: explicit patches (``k*k`` shifted slices concatenated on channels) and one
  matmul. Forward and backward are slices, pads and dots, which XLA:CPU runs at matmul speed.

A transposed convolution is always rewritten in sub-pixel form (``s*s`` output phases computed
by one stride-1 convolution with ``s*s*out`` channels, then interleaved), unless
``impl="xla_dilated"`` asks for the lhs-dilated reference formulation. ``impl="auto"`` picks
per backend at trace time (:func:`default_impl`). All formulations are tested equal.

Layouts: activations NHWC; kernels HWIO ``(k, k, in, out)``. A transposed-convolution kernel
``w[t_y, t_x, i, o]`` has PyTorch's scatter meaning: input pixel ``i`` adds ``x[i] * w[t]`` to
output pixel ``i * stride - padding + t``. A PyTorch ``ConvTranspose2d.weight`` of shape
``(in, out, k, k)`` converts with ``w.transpose(2, 3, 0, 1)``; a ``Conv2d.weight``
``(out, in, k, k)`` with ``w.transpose(2, 3, 1, 0)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = int | Sequence[tuple[int, int]]

IMPLS = ("auto", "xla", "im2col")
TRANSPOSE_IMPLS = ("auto", "xla", "im2col", "xla_dilated")

_DN = ("NHWC", "HWIO", "NHWC")


# CPU thresholds (measured fwd+bwd, experiments/bench/conv.py and RESULTS.md): with at least
# this many matmul output columns the im2col matmul beats XLA:CPU's convolution ...
_MIN_IM2COL_OUT = 128
# ... and below it, im2col still wins while the patches are narrow (k*k*C_in at most this):
# e.g. the 3- or 6-channel first convs at 256x256 (K 48/96: 2.8x faster at batch 8), the 7x7
# stem on RGB (K 147) and 1x1 toRGB layers; with wide patches and thin outputs (U-Net/ResNet
# output convs, K 512..3136 to 3-12 columns, the PatchGAN's last conv) XLA's own conv wins.
_MAX_THIN_IM2COL_PATCH = 160


# Above this size the im2col patch matrix (kept for the backward pass, twice under a
# gradient penalty) costs more memory than it saves time: PGGAN's 128x128x128 3x3 convs at
# batch 16 (1.2 GB of patches each) exhausted 24 GiB (experiments/bench/RESULTS.md).
_MAX_IM2COL_PATCH_BYTES = 512 * 2**20


def default_impl(
    backend: str | None = None,
    out_features: int | None = None,
    patch_features: int | None = None,
    patch_bytes: int | None = None,
) -> str:
    """The convolution formulation chosen for a backend and layer shape (measured:
    experiments/bench/conv.py).

    Args:
      backend: "cpu", "gpu", "tpu" (default: ``jax.default_backend()``).
      out_features: matmul output columns (C_out; ``s*s*C_out`` for a sub-pixel transposed
        convolution).
      patch_features: matmul inner size ``k*k*C_in`` of the (sub-pixel) convolution.
      patch_bytes: size of the im2col patch matrix; above 512 MiB XLA's convolution is used.

    Returns:
      GPU/TPU: ``"xla"`` (cuDNN / the TPU convolution unit). CPU: ``"im2col"`` (XLA:CPU's own
      convolutions, and above all their gradients, are slow) unless the output is thin (< 128
      columns) *and* the patches are wide (> 160), where XLA's convolution wins.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "xla"
    if patch_bytes is not None and patch_bytes > _MAX_IM2COL_PATCH_BYTES:
        return "xla"
    if out_features is None or out_features >= _MIN_IM2COL_OUT:
        return "im2col"
    if patch_features is not None and patch_features <= _MAX_THIN_IM2COL_PATCH:
        return "im2col"
    return "xla"


def _resolve(
    impl: str,
    allowed: Sequence[str],
    out_features: int | None = None,
    patch_features: int | None = None,
    patch_rows: int | None = None,
    itemsize: int = 4,
) -> str:
    if impl not in allowed:
        raise ValueError(f"unknown convolution impl {impl!r}; choose one of {', '.join(allowed)}")
    if impl == "auto":
        size = None if patch_rows is None else patch_rows * (patch_features or 0) * itemsize
        return default_impl(out_features=out_features, patch_features=patch_features,
                            patch_bytes=size)
    return impl


def _pairs(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    (a, b), (c, d) = padding
    return ((int(a), int(b)), (int(c), int(d)))


def _im2col_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """VALID cross-correlation as patches @ kernel. x: (N, H, W, C), w: (kh, kw, C, O)."""
    kh, kw, c, o = w.shape
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
    out = jnp.dot(patches.reshape(n * ho * wo, kh * kw * c), w.reshape(kh * kw * c, o))
    return out.reshape(n, ho, wo, o)


def conv2d(
    x: jax.Array, w: jax.Array, *, stride: int = 1, padding: Padding = 0, impl: str = "auto"
) -> jax.Array:
    """Cross-correlation with zero padding, as ``torch.nn.functional.conv2d``.

    Args:
      x: (N, H, W, C_in) activations.
      w: (k_h, k_w, C_in, C_out) kernel.
      stride: the same stride on both spatial axes.
      padding: an int (all sides) or ((top, bottom), (left, right)).
      impl: "auto", "xla" or "im2col".
    Returns:
      (N, H_out, W_out, C_out) with H_out = (H + top + bottom - k_h) // stride + 1.
    """
    pad = _pairs(padding)
    rows = x.shape[0] * (
        (x.shape[1] + sum(pad[0]) - w.shape[0]) // stride + 1) * (
        (x.shape[2] + sum(pad[1]) - w.shape[1]) // stride + 1)
    impl = _resolve(impl, IMPLS, w.shape[-1], w.shape[0] * w.shape[1] * w.shape[2], rows,
                    x.dtype.itemsize)
    if impl == "xla":
        return lax.conv_general_dilated(
            x, w, (stride, stride), pad, dimension_numbers=_DN
        )
    if any(p for pair in pad for p in pair):
        x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    return _im2col_conv(x, w, stride)


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
        formulation) or "xla_dilated" (the lhs-dilated reference formulation).
    Returns:
      (N, H_out, W_out, C_out), H_out = (H - 1) * stride - 2 * padding + k + output_padding.
    """
    k = w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"square kernels only, got {w.shape[:2]}")
    _check_transpose_args(k, stride, padding, output_padding)
    kk = -(-k // stride)
    rows = x.shape[0] * (x.shape[1] + kk) * (x.shape[2] + kk)  # sub-pixel windows (upper bound)
    impl = _resolve(impl, TRANSPOSE_IMPLS, stride * stride * w.shape[-1], kk * kk * w.shape[2],
                    rows, x.dtype.itemsize)
    n, h, wd, _ = x.shape
    ho = conv_transpose_output_size(h, k, stride, padding, output_padding)
    wo = conv_transpose_output_size(wd, k, stride, padding, output_padding)
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
    # Negative pads (large `padding`) crop; lax.pad handles both.
    xp = lax.pad(
        x,
        jnp.zeros((), x.dtype),
        ((0, 0, 0), (pad_top, pad_bottom, 0), (pad_left, pad_right, 0), (0, 0, 0)),
    )
    z = conv2d(xp, wsub, stride=1, padding=0, impl="xla" if impl == "xla" else "im2col")
    na, nb = z.shape[1], z.shape[2]
    z = z.reshape(n, na, nb, s, s, -1).transpose(0, 1, 3, 2, 4, 5).reshape(n, na * s, nb * s, -1)
    oy = padding - a_lo_y * s
    ox = padding - a_lo_x * s
    return z[:, oy : oy + ho, ox : ox + wo, :]
