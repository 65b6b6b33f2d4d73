"""Winograd minimal-filtering convolution F(m x m, r x r), forward and every derivative.

A stride-1 VALID cross-correlation with an ``r x r`` kernel computes each ``m x m`` output
tile from an ``n x n`` input tile (``n = m + r - 1``); transformed, it is ``n*n`` matmuls
``(tiles, C_in) @ (C_in, C_out)`` of elementwise products: F(2x2, 3x3) does 16 products per 4
outputs instead of 36, F(2x2, 2x2) (kernel 4 stride 2 in space-to-depth form) 9 instead of 16.
Each tile transform is two separable passes (rows, columns) of strided-slice sums, one fusion
each.

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (per tile; g kernel, d input tile)

The matrices come from Cook-Toom interpolation at 0, 1, -1, 2, -2, 1/2, -1/2, ... and
infinity (exact rationals, :func:`winograd_matrices`): exact in real arithmetic; in float32
larger tiles round more. Hand-written derivatives (``jax.custom_vjp``) are Winograd too: the
input gradient correlates the padded output gradient with the flipped kernel, the kernel
gradient is ``n*n`` matmuls over tiles, both custom-VJP functions of the same primitives, so
every order (the WGAN-GP double backward) stays in this form. The traced bodies are jitted on
their static arguments, so equal shapes trace once (their names mark Winograd in lowered
text). NHWC activations, HWIO kernels.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2),
           Fraction(-1, 2), Fraction(3), Fraction(-3))


def _inverse(rows: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact inverse of a small square matrix of Fractions (Gauss-Jordan)."""
    n = len(rows)
    a = [list(r) + [Fraction(int(i == j)) for j in range(n)] for i, r in enumerate(rows)]
    for col in range(n):
        piv = next(i for i in range(col, n) if a[i][col] != 0)
        a[col], a[piv] = a[piv], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for i in range(n):
            if i != col and a[i][col] != 0:
                f = a[i][col]
                a[i] = [v - f * u for v, u in zip(a[i], a[col])]
    return [r[n:] for r in a]


@functools.cache
def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of F(m, r) as float64 arrays of shapes (m, n), (n, r), (n, n).

    Derived from linear convolution by Toom-Cook at ``n - 1`` finite points and infinity:
    ``s = V^-1 [(E_r g) * (E_m h)]`` with ``E_k`` the evaluation matrices; the correlation
    ``y = T_g^T d`` is its transpose, so ``A^T = E_m^T``, ``G = E_r`` and ``B^T = V^-T``.
    For every ``d`` (length n) and ``g`` (length r):
    ``A^T ((G g) * (B^T d)) == [sum_k d[i + k] g[k] for i in range(m)]``.
    """
    n = m + r - 1
    if m < 1 or r < 1 or n - 1 > len(_POINTS):
        raise ValueError(f"F({m}, {r}) needs {n - 1} interpolation points; at most "
                         f"{len(_POINTS)} are defined")
    pts = _POINTS[: n - 1]

    def evaluation(k: int) -> list[list[Fraction]]:
        return [[p**j for j in range(k)] for p in pts] + [[Fraction(0)] * (k - 1) + [Fraction(1)]]

    v_inv = _inverse(evaluation(n))
    at = np.array(evaluation(m), dtype=object).T
    g = np.array(evaluation(r), dtype=object)
    bt = np.array(v_inv, dtype=object).T
    return at.astype(np.float64), g.astype(np.float64), bt.astype(np.float64)


Pad = tuple[tuple[int, int], tuple[int, int]]
_NO_PAD: Pad = ((0, 0), (0, 0))


def _check_pad(pad: Pad) -> Pad:
    """``pad`` as a hashable ((top, bottom), (left, right)) of non-negative ints."""
    (top, bottom), (left, right) = pad
    pad = ((int(top), int(bottom)), (int(left), int(right)))
    if min(pad[0] + pad[1]) < 0:
        raise ValueError(f"winograd_conv: padding must be >= 0, got {pad}; crop the input "
                         "first")
    return pad


def _combine(coefs, parts):
    """sum_i coefs[i] * parts[i], skipping zero coefficients (constants fold into the fusion)."""
    out = None
    for c, p in zip(coefs, parts):
        c = float(c)
        if c == 0.0:
            continue
        term = p if c == 1.0 else (-p if c == -1.0 else p * jnp.asarray(c, p.dtype))
        out = term if out is None else out + term
    if out is None:
        out = jnp.zeros_like(parts[0])
    return out


def dot_general(a: jax.Array, b: jax.Array, dims, out_dtype=None) -> jax.Array:
    """``lax.dot_general``; low-precision operands accumulate in float32 and round once to
    ``out_dtype`` (default: the operands' dtype), as cuDNN and oneDNN do; backward products
    then run in float32."""
    out_dtype = a.dtype if out_dtype is None else jnp.dtype(out_dtype)
    if jnp.finfo(a.dtype).bits >= 32:
        return lax.dot_general(a, b, dims).astype(out_dtype)
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32).astype(out_dtype)


def matmul(a: jax.Array, b: jax.Array, out_dtype=None) -> jax.Array:
    """``a @ b`` for 2-D operands, accumulated as :func:`dot_general` does."""
    return dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), out_dtype)


_TILE_CHOICES = (2, 3, 4, 5)
_MIN_TILE_ROWS = 256


def choose_tile(batch: int, ho: int, wo: int, r: int) -> int:
    """The output tile m of F(m x m, r x r) of least cost for an ``ho x wo`` output.

    Cost: ``ceil(ho/m) * ceil(wo/m)`` tiles of ``n*n`` products (cut tiles waste the rest, so
    odd sizes pick small tiles), weighted by ``1 + 0.1 (n - 5)`` as larger tiles' transforms
    read more slices. m > 2 needs ``batch`` x tiles >= ``_MIN_TILE_ROWS`` matmul rows, m = 5
    needs r = 2; m = 2 is the fallback, and ties go to the smaller tile (less rounding).
    """
    best, best_cost = 2, None
    for m in _TILE_CHOICES:
        n = m + r - 1
        if m == 5 and r != 2:
            continue
        tiles = -(-ho // m) * -(-wo // m)
        if m > 2 and batch * tiles < _MIN_TILE_ROWS:
            continue
        cost = tiles * n * n * (1.0 + 0.1 * (n - 5))
        if best_cost is None or cost < best_cost - 1e-9:
            best, best_cost = m, cost
    return best


def _tile(m: int | None, batch: int, ho: int, wo: int, r: int) -> int:
    return choose_tile(batch, ho, wo, r) if m is None else m


def _tiles(h: int, w: int, m: int, r: int) -> tuple[int, int, int, int]:
    ho, wo = h - r + 1, w - r + 1
    return ho, wo, -(-ho // m), -(-wo // m)


def _strided(x: jax.Array, axis: int, start: int, count: int, step: int,
             lo: int = 0) -> jax.Array:
    """Entries ``start + i * step`` (i < count) along ``axis`` of ``x`` zero-padded by ``lo``
    in front and as needed behind: a slice of ``x`` plus zeros, so a consumer fusion reads
    ``x`` and the padded copy is never written out."""
    size = x.shape[axis]
    first = max(0, -(-(lo - start) // step))  # first entry inside x
    last = min(count - 1, (lo + size - 1 - start) // step)  # last entry inside x
    if last < first:
        shape = list(x.shape)
        shape[axis] = count
        return jnp.zeros(shape, x.dtype)
    part = lax.slice_in_dim(x, start + first * step - lo, start + last * step - lo + 1, step,
                            axis)
    if first == 0 and last == count - 1:
        return part
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (first, count - 1 - last, 0)
    return lax.pad(part, jnp.zeros((), x.dtype), config)


def _transform(x: jax.Array, mat: np.ndarray, axis: int, count: int, step: int,
               out_axis: int, block: int = 1, lo: int = 0) -> jax.Array:
    """``out[a] = sum_u mat[a, u] * x[start u, stride step, count entries along axis]``,
    stacked as a new axis at ``out_axis``: one fusion, zero coefficients skipped.

    With ``block`` s > 1, ``x`` is read as its space-to-depth form along ``axis``: ``u`` steps
    whole blocks of s entries and each phase's sum is stacked at axis -2. ``x`` reads as
    zero-padded by ``lo`` in front and as far as needed behind (:func:`_strided`)."""
    parts = [[_strided(x, axis, block * u + p, count, block * step, lo)
              for u in range(mat.shape[1])] for p in range(block)]
    rows = []
    for row in mat:
        phases = [_combine(row, phase) for phase in parts]
        rows.append(phases[0] if block == 1 else jnp.stack(phases, axis=-2))
    return jnp.stack(rows, axis=out_axis)


def _tile_transform(x: jax.Array, mat: np.ndarray, m: int, th: int, tw: int,
                    block: int = 1, top: int = 0, left: int = 0) -> jax.Array:
    """``mat d mat^T`` of the th x tw tiles (stride m) of ``x`` zero-padded by ``top`` rows
    and ``left`` columns in front (and as needed behind), or of its space-to-depth form with
    ``block`` s > 1: a rows pass, then a columns pass; (n*n, N*th*tw, s*s*C), ordered (b, a)
    (column, row), channels (phase y, phase x, C)."""
    rows = _transform(x, mat, 1, th, m, 0, block, top)  # (a, N, th, W, [py,] C)
    v = _transform(rows, mat, 3, tw, m, 0, block, left)  # (b, a, N, th, tw, [py, px,] C)
    return v.reshape(mat.shape[0] ** 2, x.shape[0] * th * tw, block * block * x.shape[-1])


def _blocks(size: int, block: int) -> int:
    """Blocks a side of the space-to-depth form (zero-padded to whole blocks)."""
    return -(-size // block)


def padded_size(x: jax.Array, pad: Pad) -> tuple[int, int]:
    """Height and width of (N, H, W, C) ``x`` zero-padded by ((top, bottom), (left, right))."""
    (top, bottom), (left, right) = pad
    return x.shape[1] + top + bottom, x.shape[2] + left + right


def _input_transform(x: jax.Array, m: int, r: int, block: int, pad: Pad) -> jax.Array:
    """``B^T d B`` of every input tile of ``x`` zero-padded by ``pad`` (of its space-to-depth
    form with ``block`` s > 1), (n*n, N*th*tw, s*s*C), ordered (b, a) (column, row)."""
    h, w = padded_size(x, pad)
    _, _, th, tw = _tiles(_blocks(h, block), _blocks(w, block), m, r)
    return _tile_transform(x, winograd_matrices(m, r)[2], m, th, tw, block, pad[0][0],
                           pad[1][0])


def _kernel_transform_matrix(m: int, r: int) -> np.ndarray:
    """``G g G^T`` as one (n*n, r*r) matrix: ``kron(G, G)`` with its rows, (a, b), taken in
    the (b, a) order of the tile products, so neither the transformed kernel nor the kernel
    gradient's products (which use its transpose) need a transpose of their own."""
    n = m + r - 1
    g = winograd_matrices(m, r)[1]
    return np.kron(g, g).reshape(n, n, r * r).transpose(1, 0, 2).reshape(n * n, r * r)


def _kernel_transform(w: jax.Array, m: int) -> jax.Array:
    """``G g G^T`` as (n*n, C_in, C_out), ordered (b, a) like the input transform."""
    r, _, c, o = w.shape
    mat = jnp.asarray(_kernel_transform_matrix(m, r), w.dtype)
    return matmul(mat, w.reshape(r * r, c * o)).reshape(-1, c, o)


def _output_transform(prods: jax.Array, m: int, r: int, nb: int, th: int, tw: int) -> jax.Array:
    """``A^T M A`` of every tile, interleaved into (N, th*m, tw*m, O). prods: (b, a, T, O)."""
    n = m + r - 1
    at = winograd_matrices(m, r)[0]
    o = prods.shape[-1]
    prods = prods.reshape(n, n, nb, th, tw, o)
    yp = jnp.stack([_combine(at[p], [prods[:, a] for a in range(n)]) for p in range(m)])
    yq = jnp.stack([_combine(at[q], [yp[:, b] for b in range(n)]) for q in range(m)])
    # yq: (q, p, N, th, tw, O) -> (N, th, p, tw, q, O)
    return yq.transpose(2, 3, 1, 4, 0, 5).reshape(nb, th * m, tw * m, o)


def _output_grad_transform(dy: jax.Array, m: int, r: int, th: int, tw: int) -> jax.Array:
    """``A dY A^T`` of every output tile (the transpose of the output transform), (b, a, T, O)."""
    return _tile_transform(dy, winograd_matrices(m, r)[0].T, m, th, tw)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _winograd_forward(x: jax.Array, w: jax.Array, m: int | None, block: int,
                      pad: Pad) -> jax.Array:
    r = w.shape[0]
    nb, _, _, c = x.shape
    h, wd = padded_size(x, pad)
    if w.shape[2] != block * block * c:
        raise ValueError(
            f"winograd_conv: the kernel has {w.shape[2]} input channels but the input's "
            f"space-to-depth form (block {block}) has {block * block * c}: pass a kernel of "
            f"shape (r, r, {block * block * c}, C_out)")
    hb, wb = _blocks(h, block), _blocks(wd, block)
    m = _tile(m, nb, hb - r + 1, wb - r + 1, r)
    ho, wo, th, tw = _tiles(hb, wb, m, r)
    v = _input_transform(x, m, r, block, pad)
    u = _kernel_transform(w, m)
    prods = dot_general(v, u, (((2,), (1,)), ((0,), (0,))))  # (n*n, T, O)
    return _output_transform(prods, m, r, nb, th, tw)[:, :ho, :wo]


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _winograd_weight_grad(x: jax.Array, dy: jax.Array, m: int | None, r: int, block: int,
                          pad: Pad) -> jax.Array:
    m = _tile(m, dy.shape[0], dy.shape[1], dy.shape[2], r)
    n = m + r - 1
    c, o = block * block * x.shape[-1], dy.shape[-1]
    h, w = padded_size(x, pad)
    _, _, th, tw = _tiles(_blocks(h, block), _blocks(w, block), m, r)
    v = _input_transform(x, m, r, block, pad)
    dm = _output_grad_transform(dy, m, r, th, tw)
    du = dot_general(v, dm, (((1,), (1,)), ((0,), (0,))))  # (b, a) x (C, O)
    mat = jnp.asarray(_kernel_transform_matrix(m, r).T, x.dtype)  # (k, l) x (b, a)
    return matmul(mat, du.reshape(n * n, c * o)).reshape(r, r, c, o)


def _flip(w: jax.Array) -> jax.Array:
    """The kernel of the input gradient: spatially flipped, in/out swapped."""
    return w[::-1, ::-1].transpose(0, 1, 3, 2)


def depth_to_space(xb: jax.Array, block: int, h: int, w: int) -> jax.Array:
    """Depth-to-space: (N, hb, wb, s*s*C), channels (phase y, phase x, C), to the (N, h, w, C)
    it was cut from (padding to whole blocks cropped; h <= s*hb, w <= s*wb). Also interleaves
    the sub-pixel transposed conv's s*s output phases."""
    if block == 1:
        return xb
    n, hb, wb, cb = xb.shape
    c = cb // (block * block)
    x = xb.reshape(n, hb, wb, block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, hb * block, wb * block, c)[:, :h, :w]


@functools.partial(jax.jit, static_argnums=(2, 3, 5))
def _winograd_transposed(dy: jax.Array, w: jax.Array, m: int | None, block: int,
                         x: jax.Array, pad: Pad) -> jax.Array:
    """The adjoint of ``winograd_conv(., w, m, block, pad)`` applied to ``dy``, in ``x``'s
    shape: the full correlation of ``dy`` with the flipped, in/out-swapped kernel (itself a
    Winograd conv, reading ``dy`` padded in place), back from space-to-depth form to the
    padded input, the padding cropped off."""
    r = w.shape[0]
    full = ((r - 1, r - 1), (r - 1, r - 1))
    h, wd = padded_size(x, pad)
    dxp = depth_to_space(winograd_conv(dy, _flip(w), m, 1, full), block, h, wd)
    (top, _), (left, _) = pad
    return dxp[:, top:top + x.shape[1], left:left + x.shape[2]]


def winograd_conv(x: jax.Array, w: jax.Array, m: int | None = None, block: int = 1,
                  pad: Pad = _NO_PAD) -> jax.Array:
    """Stride-1 VALID cross-correlation by Winograd F(m x m, r x r) of ``x`` zero-padded by
    ``pad``, or of its space-to-depth form.

    Args:
      x: (N, H, W, C_in); w: (r, r, C_in, C_out), with ``block`` s > 1 (r, r, s*s*C_in, C_out).
      m: output tile (larger: fewer multiplies, more rounding); None: :func:`choose_tile` per
        convolution of the forward and backward passes.
      block: s > 1 convolves the space-to-depth form of ``x``: zero-padded to whole s x s
        blocks, each one pixel of s*s*C_in channels ordered (row phase, column phase, C_in).
      pad: ((top, bottom), (left, right)) zero padding (>= 0), applied before blocking.
        Blocks and padding are read in place, never written out; the input gradient comes
        back in ``x``'s shape.
    Returns:
      (N, Hb - r + 1, Wb - r + 1, C_out), Hb = ceil((H + top + bottom) / s): the padded (and
      blocked) input's ``lax.conv_general_dilated(., w, (1, 1), 'VALID')`` up to rounding.
    """
    return _conv(x, w, m, block, _check_pad(pad))


# The conv and its kernel gradient: custom-VJP functions whose derivatives are each other;
# ``pad`` arrives checked (hashable: a static argument of the jitted bodies).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x: jax.Array, w: jax.Array, m: int | None, block: int, pad: Pad) -> jax.Array:
    return _winograd_forward(x, w, m, block, pad)


def _conv_fwd(x, w, m, block, pad):
    return _winograd_forward(x, w, m, block, pad), (x, w)


def _conv_bwd(m, block, pad, res, dy):
    x, w = res
    return (_winograd_transposed(dy, w, m, block, x, pad), _kgrad(x, dy, m, block, pad))


_conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _kgrad(x: jax.Array, dy: jax.Array, m: int | None, block: int, pad: Pad) -> jax.Array:
    r = _blocks(padded_size(x, pad)[0], block) - dy.shape[1] + 1
    return _winograd_weight_grad(x, dy, m, r, block, pad)


def _kgrad_fwd(x, dy, m, block, pad):
    return _kgrad(x, dy, m, block, pad), (x, dy)


def _kgrad_bwd(m, block, pad, res, dw):
    x, dy = res
    # linear in x: d/dx <dw, kgrad(x, dy)> = the transposed correlation of dy with dw;
    # linear in dy: the correlation of x with dw.
    return (_winograd_transposed(dy, dw, m, block, x, pad), _conv(x, dw, m, block, pad))


_kgrad.defvjp(_kgrad_fwd, _kgrad_bwd)
