"""Convolutions with PyTorch semantics and a choice of formulation (``impl``) per backend.

Every ``impl`` computes exactly the same result:

* ``"xla"``: XLA's own ``lax.conv_general_dilated`` (lhs-dilated for a transposed conv).
* CPU formulations (:mod:`jaxgan.nn.cpu`): ``"im2col"`` (patches @ kernel), ``"col2im"``
  (matmul on the input's pixels, tap outputs overlap-added), ``"winograd"`` (tile chosen per
  pass; ``"winograd2"`` / ``"winograd3"`` / ``"winograd4"`` fix it). For a transposed conv
  ``"subpixel"`` computes the ``s*s`` output phases by one stride-1 XLA conv, interleaved, and
  ``"im2col"`` / ``"winograd*"`` do the sub-pixel form with that stride-1 formulation.
* ``"auto"`` (default): ``"xla"`` on GPU and TPU; on CPU the per-layer rules of
  :mod:`jaxgan.nn.cpu.rules`, picked at trace time.

Layouts: activations NHWC, kernels HWIO ``(k, k, in, out)``. A transposed-conv kernel
``w[t_y, t_x, i, o]`` scatters as PyTorch's: input pixel ``i`` adds ``x[i] * w[t]`` to output
pixel ``i * stride - padding + t``. PyTorch weights convert with ``w.transpose(2, 3, 0, 1)``
(``ConvTranspose2d``, ``(in, out, k, k)``) and ``w.transpose(2, 3, 1, 0)`` (``Conv2d``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxgan.nn.cpu import formulations as _forms
from jaxgan.nn.cpu import rules as _rules

Padding = int | Sequence[tuple[int, int]]

IMPLS = ("auto", "xla", *_forms.CONV_IMPLS)
TRANSPOSE_IMPLS = ("auto", "xla", *_forms.TRANSPOSE_IMPLS)

_DN = ("NHWC", "HWIO", "NHWC")


def _backend(backend: str | None) -> str:
    return backend or jax.default_backend()


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
    """Whether ``impl="auto"`` computes a convolution by Winograd (``"winograd"``): on CPU only,
    per :func:`jaxgan.nn.cpu.rules.use_winograd`; never on GPU or TPU."""
    if _backend(backend) != "cpu":
        return False
    return _rules.use_winograd(kernel, stride, out_features, patch_features, rows, pixels, dtype)


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
    """The formulation ``impl="auto"`` picks for a convolution: ``"xla"`` on GPU/TPU, else
    :func:`jaxgan.nn.cpu.rules.conv_impl`'s choice from the matmul's ``out_features`` (C_out),
    ``patch_features`` (``k*k*C_in``) and ``rows`` (batch x output pixels), the output
    ``pixels`` per image, ``kernel``, ``stride`` and ``dtype`` (no Winograd below 32 bits)."""
    if _backend(backend) != "cpu":
        return "xla"
    return _rules.conv_impl(out_features, patch_features, rows, pixels, kernel, stride, dtype)


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
    """The formulation ``impl="auto"`` picks for a transposed convolution: ``"xla"`` on
    GPU/TPU, else :func:`jaxgan.nn.cpu.rules.transpose_impl`'s choice, where None means the
    sub-pixel form with its stride-1 conv left to :func:`default_impl` (``"xla"`` there:
    ``"subpixel"``)."""
    if _backend(backend) != "cpu":
        return "xla"
    return _rules.transpose_impl(kernel, stride, out_channels, in_pixels, in_channels, batch,
                                 dtype)


def _check_impl(impl: str, allowed: Sequence[str]) -> None:
    if impl not in allowed:
        raise ValueError(f"unknown convolution impl {impl!r}; choose one of {', '.join(allowed)}")


def _pairs(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    (a, b), (c, d) = padding
    return ((int(a), int(b)), (int(c), int(d)))


def conv2d(
    x: jax.Array, w: jax.Array, *, stride: int = 1, padding: Padding = 0, impl: str = "auto"
) -> jax.Array:
    """Cross-correlation with zero padding, as ``torch.nn.functional.conv2d``.

    x: (N, H, W, C_in), w: (k_h, k_w, C_in, C_out), ``padding`` an int (all sides) or
    ((top, bottom), (left, right)), ``impl`` one of :data:`IMPLS`. Returns (N, H_out, W_out,
    C_out), H_out = (H + top + bottom - k_h) // stride + 1.
    """
    _check_impl(impl, IMPLS)
    pad = _pairs(padding)
    if impl == "auto":
        rows = x.shape[0] * (
            (x.shape[1] + sum(pad[0]) - w.shape[0]) // stride + 1) * (
            (x.shape[2] + sum(pad[1]) - w.shape[1]) // stride + 1)
        impl = default_impl(out_features=w.shape[-1],
                            patch_features=w.shape[0] * w.shape[1] * w.shape[2], rows=rows,
                            pixels=rows // x.shape[0], kernel=max(w.shape[:2]), stride=stride,
                            dtype=x.dtype)
    if impl == "xla" and jax.default_backend() != "cpu":
        return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=_DN)
    return _forms.conv2d(x, w, stride, pad, impl)


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


def _auto_transpose_impl(x: jax.Array, w: jax.Array, stride: int) -> str:
    """What ``impl="auto"`` resolves to for this transposed convolution (a full impl name)."""
    k = w.shape[0]
    impl = default_transpose_impl(kernel=k, stride=stride, out_channels=w.shape[-1],
                                  in_pixels=x.shape[1] * x.shape[2], in_channels=w.shape[2],
                                  batch=x.shape[0], dtype=x.dtype)
    if impl is not None:
        return impl
    kk = -(-k // stride)
    pixels = (x.shape[1] + kk) * (x.shape[2] + kk)  # sub-pixel windows (upper bound)
    sub = default_impl(out_features=stride * stride * w.shape[-1],
                       patch_features=kk * kk * w.shape[2], rows=x.shape[0] * pixels,
                       pixels=pixels, dtype=x.dtype)
    return "subpixel" if sub == "xla" else sub


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

    x: (N, H, W, C_in), w: (k, k, C_in, C_out) scatter kernel (see the module docstring),
    ``0 <= output_padding < stride``, ``impl`` one of :data:`TRANSPOSE_IMPLS` (``"col2im"``
    overlap-adds the tap outputs). Returns (N, H_out, W_out, C_out),
    H_out = (H - 1) * stride - 2 * padding + k + output_padding.
    """
    k = w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"square kernels only, got {w.shape[:2]}")
    _check_transpose_args(k, stride, padding, output_padding)
    _check_impl(impl, TRANSPOSE_IMPLS)
    if impl == "auto":
        impl = _auto_transpose_impl(x, w, stride)
    if impl == "xla":
        lo, hi = k - 1 - padding, k - 1 - padding + output_padding
        return lax.conv_general_dilated(
            x, w[::-1, ::-1], (1, 1), ((lo, hi), (lo, hi)), lhs_dilation=(stride, stride),
            dimension_numbers=_DN)
    ho = conv_transpose_output_size(x.shape[1], k, stride, padding, output_padding)
    wo = conv_transpose_output_size(x.shape[2], k, stride, padding, output_padding)
    return _forms.conv_transpose2d(x, w, stride, padding, ho, wo, impl)
