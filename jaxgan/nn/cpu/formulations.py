"""The CPU formulations of convolutions and transposed convolutions (:mod:`jaxgan.nn.cpu`).

Each computes exactly what XLA's own op does, as slices, pads and matmuls that XLA:CPU runs at
matmul speed. :func:`conv2d` and :func:`conv_transpose2d` dispatch by impl name; each
formulation traces inside a ``jaxgan_cpu_<name>`` named scope, so its lowered ops say where
they come from.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxgan.nn.cpu import rules
from jaxgan.nn.cpu.winograd import Pad, depth_to_space, matmul, padded_size, winograd_conv

WINOGRAD_IMPLS = ("winograd", "winograd2", "winograd3", "winograd4")
CONV_IMPLS = ("im2col", "col2im", *WINOGRAD_IMPLS)
TRANSPOSE_IMPLS = ("subpixel", "im2col", "col2im", *WINOGRAD_IMPLS)
SCOPE = "jaxgan_cpu"

_DN = ("NHWC", "HWIO", "NHWC")


def _scoped(name: str):
    """Trace the decorated function inside the named scope ``jaxgan_cpu_<name>``."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with jax.named_scope(f"{SCOPE}_{name}"):
                return fn(*args, **kwargs)

        return inner

    return wrap


def xla_conv(x: jax.Array, w: jax.Array, stride: int, pad: Pad) -> jax.Array:
    """XLA's own convolution; on XLA:CPU an unpadded one gets one zero row below, cropped off,
    as XLA:CPU runs convolutions without any padding on a much slower path."""
    if jax.default_backend() == "cpu" and not any(p for pair in pad for p in pair):
        ho = (x.shape[1] - w.shape[0]) // stride + 1
        y = lax.conv_general_dilated(x, w, (stride, stride), ((0, 1), (0, 0)),
                                     dimension_numbers=_DN)
        return y[:, :ho]
    return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=_DN)


@_scoped("im2col")
def _im2col_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """VALID cross-correlation as patches @ kernel; x: (N, H, W, C), w: (kh, kw, C, O). Narrow
    strided patches (kernel a multiple of the stride) are built in space-to-depth form: s*s
    times fewer, wider slices, which XLA:CPU copies faster."""
    kh, kw, c, o = w.shape
    if kh == kw and rules.narrow_space_to_depth(kh, stride, kh * kw * c):
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


@_scoped("col2im")
def _tap_outputs(x: jax.Array, w: jax.Array) -> list[list[jax.Array]]:
    """Every kernel tap on every input pixel, one matmul: ``taps[t_y][t_x]`` is the (N, H, W,
    O) output of tap (t_y, t_x), in float32 (or wider) so callers sum before rounding.

    Cut apart by ``lax.split``, whose transpose is one concatenate (slices would make the
    gradient a sum of k*k zero-padded copies).
    """
    kh, kw, c, o = w.shape
    n, h, wd, _ = x.shape
    z = matmul(x.reshape(n * h * wd, c), w.transpose(2, 0, 1, 3).reshape(c, kh * kw * o),
               out_dtype=jnp.promote_types(x.dtype, jnp.float32))
    parts = lax.split(z.reshape(n, h, wd, kh * kw, o), [1] * (kh * kw), axis=3)
    return [[parts[ty * kw + tx].reshape(n, h, wd, o) for tx in range(kw)] for ty in range(kh)]


@_scoped("col2im")
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

    The JVP ``conv(dx, w) + conv(x, dw)`` takes its first term in im2col form and its second
    in col2im form (``x @ dw`` on input pixels), so reverse mode keeps only ``x`` and ``w``,
    never patches, at any order (the WGAN-GP double backward; jax.checkpoint does not).
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


@_scoped("space_to_depth")
def _space_to_depth(x: jax.Array, w: jax.Array, stride: int) -> tuple[jax.Array, jax.Array]:
    """A VALID strided cross-correlation as a stride-1 one, exactly: ``(x_blocks, w_blocks)``.

    With stride s, output o reads input rows s*o + t, t = s*J + d: block o + J, phase d. So
    the input is cut into s x s blocks (channels (d_y, d_x, C)), the zero-padded kernel too
    (:func:`kernel_to_depth`), and the conv is stride 1 over blocks: k4 s2 becomes 2x2.
    """
    k, _, c, _ = w.shape
    n, h, wd, _ = x.shape
    s, kb = stride, -(-k // stride)
    ho, wo = (h - k) // s + 1, (wd - k) // s + 1
    hb, wb = ho + kb - 1, wo + kb - 1  # blocks read
    xb = lax.pad(x, jnp.zeros((), x.dtype),
                 ((0, 0, 0), (0, s * hb - h, 0), (0, s * wb - wd, 0), (0, 0, 0)))
    xb = xb.reshape(n, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hb, wb, s * s * c)
    return xb, kernel_to_depth(w, stride)


@_scoped("space_to_depth")
def kernel_to_depth(w: jax.Array, stride: int) -> jax.Array:
    """The kernel of :func:`_space_to_depth`'s stride-1 form, (ceil(k/s), ceil(k/s), s*s*C, O)."""
    k, _, c, o = w.shape
    s, kb = stride, -(-k // stride)
    wb = jnp.pad(w, ((0, kb * s - k), (0, kb * s - k), (0, 0), (0, 0)))
    return wb.reshape(kb, s, kb, s, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(kb, kb, s * s * c, o)


@_scoped("winograd")
def _winograd_strided(x: jax.Array, w: jax.Array, stride: int, tile: int | None,
                      pad: Pad) -> jax.Array:
    """Cross-correlation of ``x`` zero-padded (read in place) by ``pad``, by Winograd F(tile,
    r) (None: per pass); strided in space-to-depth form, with the input gradient by im2col
    for small outputs (:data:`rules.MAX_WINOGRAD_DX_PIXELS`)."""
    if stride == 1:
        return winograd_conv(x, w, tile, 1, pad)
    k = w.shape[0]
    h, wd = padded_size(x, pad)
    out_pixels = ((h - k) // stride + 1) * ((wd - k) // stride + 1)
    if out_pixels <= rules.MAX_WINOGRAD_DX_PIXELS:
        return _winograd_im2col_dx(x, w, stride, tile, pad)
    return _winograd_blocked(x, w, stride, tile, pad)


def _winograd_blocked(x: jax.Array, w: jax.Array, stride: int, tile: int | None,
                      pad: Pad) -> jax.Array:
    """A strided conv as Winograd over the space-to-depth form of ``x`` (zero-padded by
    ``pad``), which the tile transforms read from ``x`` in place (``winograd_conv``'s
    ``block``): neither the padded nor the blocked input is written out."""
    k = w.shape[0]
    h, wd = padded_size(x, pad)
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    # Whole blocks may give one more output row or column than the conv has.
    return winograd_conv(x, kernel_to_depth(w, stride), tile, stride, pad)[:, :ho, :wo]


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


def _tile_of(impl: str) -> int | None:
    """The fixed Winograd tile of ``"winograd<m>"``; None for ``"winograd"`` (per pass)."""
    return int(impl[len("winograd"):] or 0) or None


def conv2d(x: jax.Array, w: jax.Array, stride: int, pad: Pad, impl: str) -> jax.Array:
    """Cross-correlation of ``x`` zero-padded by ``pad`` in CPU formulation ``impl`` (one of
    :data:`CONV_IMPLS`, or ``"xla"`` for :func:`xla_conv`)."""
    if impl == "xla":
        return xla_conv(x, w, stride, pad)
    if impl in WINOGRAD_IMPLS:
        return _winograd_strided(x, w, stride, _tile_of(impl), pad)
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown CPU convolution impl {impl!r}")
    if any(p for pair in pad for p in pair):
        x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    if impl == "col2im":
        return _col2im_conv(x, w, stride)
    n, h, wd, _ = x.shape
    rows = n * ((h - w.shape[0]) // stride + 1) * ((wd - w.shape[1]) // stride + 1)
    if (rows * w.shape[0] * w.shape[1] * w.shape[2] * x.dtype.itemsize
            > rules.MAX_IM2COL_PATCH_BYTES):
        return _lean_conv(x, w, stride)
    return _im2col_conv(x, w, stride)


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


@_scoped("col2im")
def _col2im_transpose(
    x: jax.Array, w: jax.Array, stride: int, padding: int, ho: int, wo: int
) -> jax.Array:
    """The scatter definition, tap t of input pixel i landing on output i * s - padding + t:
    each tap's outputs spread by interior padding (s - 1 zeros), moved to their offset (a
    negative edge pad crops) and summed, which XLA fuses into one pass."""
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


@_scoped("subpixel")
def _subpixel_transpose(x: jax.Array, w: jax.Array, stride: int, padding: int, ho: int,
                        wo: int, sub_impl: str) -> jax.Array:
    """The transposed conv in sub-pixel form: its ``s*s`` output phases computed by one
    stride-1 convolution (formulation ``sub_impl``) with ``s*s*C_out`` channels, then
    interleaved (depth-to-space) and cropped."""
    k = w.shape[0]
    s = stride
    kk = -(-k // s)
    _, h, wd, _ = x.shape
    wsub = _subpixel_kernel(w, s)

    # Output q = o + padding = a * s + b needs window x[a - K + 1 .. a], a in [a_lo, a_hi].
    def span(size_out: int, size_in: int) -> tuple[int, int, int]:
        a_lo = padding // s
        a_hi = (size_out - 1 + padding) // s
        return a_lo, kk - 1 - a_lo, a_hi - (size_in - 1)

    a_lo_y, pad_top, pad_bottom = span(ho, h)
    a_lo_x, pad_left, pad_right = span(wo, wd)
    if sub_impl in WINOGRAD_IMPLS and min(pad_top, pad_bottom, pad_left, pad_right) >= 0:
        # Winograd reads the padding in place (XLA:CPU's padded convs have slow kernel grads).
        z = conv2d(x, wsub, 1, ((pad_top, pad_bottom), (pad_left, pad_right)), sub_impl)
    else:  # negative pads (large `padding`) crop; lax.pad does both
        xp = lax.pad(
            x,
            jnp.zeros((), x.dtype),
            ((0, 0, 0), (pad_top, pad_bottom, 0), (pad_left, pad_right, 0), (0, 0, 0)),
        )
        z = conv2d(xp, wsub, 1, ((0, 0), (0, 0)), sub_impl)
    z = depth_to_space(z, s, z.shape[1] * s, z.shape[2] * s)  # the s*s phases interleaved
    oy = padding - a_lo_y * s
    ox = padding - a_lo_x * s
    return z[:, oy : oy + ho, ox : ox + wo, :]


def conv_transpose2d(x: jax.Array, w: jax.Array, stride: int, padding: int, ho: int, wo: int,
                     impl: str) -> jax.Array:
    """The (ho, wo) transposed convolution (scatter kernel ``w``) in CPU formulation ``impl``:
    ``"col2im"`` overlap-adds the tap outputs; ``"subpixel"`` is the sub-pixel form with XLA's
    stride-1 convolution, ``"im2col"`` and ``"winograd*"`` the sub-pixel form with theirs."""
    if impl == "col2im":
        return _col2im_transpose(x, w, stride, padding, ho, wo)
    if impl not in TRANSPOSE_IMPLS:
        raise ValueError(f"unknown CPU transposed convolution impl {impl!r}")
    sub_impl = "xla" if impl == "subpixel" else impl
    return _subpixel_transpose(x, w, stride, padding, ho, wo, sub_impl)
