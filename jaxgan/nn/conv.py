"""Convolutions with PyTorch semantics and a choice of formulation (``impl``) per backend.

:func:`conv2d` and :func:`conv_transpose2d` compute exactly the same thing under every
``impl`` (tests/test_conv.py); the names say how:

* ``"xla"``: XLA's own op, ``lax.conv_general_dilated`` (for a transposed convolution, with
  lhs dilation: what ``lax.conv_transpose`` lowers to). cuDNN / the TPU convolution unit.
* CPU formulations (:mod:`jaxgan.nn.cpu`), for XLA:CPU, whose own convolutions are slow in
  places: ``"im2col"`` (patches @ kernel), ``"col2im"`` (matmul on the input's pixels, then
  the tap outputs overlap-added), ``"winograd"`` (Winograd's minimal filtering, tile chosen
  per pass; ``"winograd2"`` / ``"winograd3"`` / ``"winograd4"`` fix it). For a transposed
  convolution ``"col2im"`` is the scatter by overlap-add, ``"subpixel"`` the sub-pixel form
  (``s*s`` output phases from one stride-1 convolution by XLA's op, then interleaved), and
  ``"im2col"`` / ``"winograd*"`` the sub-pixel form with that stride-1 formulation.
* ``"auto"`` (the default): ``"xla"`` on GPU and TPU; on CPU the measured per-layer rules of
  :mod:`jaxgan.nn.cpu.rules`, picked at trace time (:func:`default_impl`,
  :func:`default_transpose_impl`).

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
    """The formulation ``impl="auto"`` picks for a convolution.

    Args:
      backend: "cpu", "gpu", "tpu" (default: ``jax.default_backend()``).
      out_features: output channels (matmul columns).
      patch_features: matmul inner size ``k*k*C_in``.
      rows: matmul rows, batch x output pixels.
      pixels: output pixels per image.
      kernel, stride: the kernel size and stride (for the Winograd choice).
      dtype: the activations' dtype (no Winograd below 32 bits; None: float32).

    Returns:
      GPU/TPU: ``"xla"``. CPU: :func:`jaxgan.nn.cpu.rules.conv_impl`'s choice.
    """
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
    """The formulation ``impl="auto"`` picks for a transposed convolution.

    GPU/TPU: ``"xla"`` (XLA's own transposed convolution). CPU:
    :func:`jaxgan.nn.cpu.rules.transpose_impl`'s choice, or None for the sub-pixel form with
    its stride-1 convolution's formulation left to :func:`default_impl` (its ``"xla"`` is
    then ``"subpixel"``).
    """
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

    Args:
      x: (N, H, W, C_in) activations.
      w: (k_h, k_w, C_in, C_out) kernel.
      stride: the same stride on both spatial axes.
      padding: an int (all sides) or ((top, bottom), (left, right)).
      impl: one of :data:`IMPLS` (see the module docstring).
    Returns:
      (N, H_out, W_out, C_out) with H_out = (H + top + bottom - k_h) // stride + 1.
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

    Args:
      x: (N, H, W, C_in).
      w: (k, k, C_in, C_out) scatter kernel (see the module docstring).
      stride, padding, output_padding: as PyTorch (``0 <= output_padding < stride``).
      impl: one of :data:`TRANSPOSE_IMPLS`: "auto", "xla" (XLA's lhs-dilated convolution),
        "subpixel", "im2col", "winograd*" (the sub-pixel form with that stride-1
        formulation) or "col2im" (tap outputs overlap-added).
    Returns:
      (N, H_out, W_out, C_out), H_out = (H - 1) * stride - 2 * padding + k + output_padding.
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
