"""Laplacian pyramid with the 5x5 binomial filter of PGGAN's sliced Wasserstein distance.

The filter, ``outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256``, is applied separably with
reflect-101 borders (numpy's ``mode='reflect'``, OpenCV's ``BORDER_DEFAULT``); ``pyr_down`` and
``pyr_up`` match OpenCV's ``pyrDown`` / ``pyrUp``. :func:`reconstruct_laplacian_pyramid` inverts
:func:`laplacian_pyramid` exactly up to float32 rounding. Inputs are NHWC floats of any range.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

#: 1-D binomial taps; the 2-D filter is ``np.outer(BINOMIAL_1D, BINOMIAL_1D)`` (sums to 1).
BINOMIAL_1D = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def _filter_axis(x: jax.Array, axis: int, gain: float) -> jax.Array:
    """Correlate ``x`` with the binomial taps (times ``gain``) along ``axis``, reflect-101 borders."""
    n = x.shape[axis]
    if n < 3:
        raise ValueError(
            f"binomial filtering needs at least 3 pixels along each spatial axis, got {n}: "
            "use fewer pyramid levels"
        )
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    xp = jnp.pad(x, pad, mode="reflect")  # reflect = reflect-101 (edge pixel not repeated)
    out = None
    for i, w in enumerate(BINOMIAL_1D * gain):
        term = float(w) * jax.lax.slice_in_dim(xp, i, i + n, axis=axis)
        out = term if out is None else out + term
    return out


def binomial_blur(x: jax.Array, gain: float = 1.0) -> jax.Array:
    """Filter NHWC ``x`` with the 5x5 binomial kernel times ``gain``; same shape out."""
    return _filter_axis(_filter_axis(x, 1, 1.0), 2, gain)


def pyr_down(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C): binomial filter then every 2nd pixel."""
    return binomial_blur(x)[:, ::2, ::2, :]


def pyr_up(x: jax.Array) -> jax.Array:
    """(N, h, w, C) -> (N, 2h, 2w, C): zero insertion then binomial filter with gain 4."""
    n, h, w, c = x.shape
    up = jnp.zeros((n, 2 * h, 2 * w, c), x.dtype).at[:, ::2, ::2, :].set(x)
    return binomial_blur(up, gain=4.0)


def max_pyramid_levels(height: int, width: int, min_size: int = 16) -> int:
    """Number of levels PGGAN uses: full resolution, then halvings while the size stays >= min_size."""
    levels, size = 0, min(height, width)
    while size >= min_size:
        levels += 1
        size //= 2
    return levels


def _check_levels(shape: tuple[int, ...], num_levels: int) -> None:
    if len(shape) != 4:
        raise ValueError(f"expected NHWC images, got shape {shape}")
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    f = 2 ** (num_levels - 1)
    h, w = shape[1], shape[2]
    if h % f or w % f:
        raise ValueError(
            f"a {num_levels}-level pyramid needs height and width divisible by {f}, got {h}x{w}: "
            "crop or resize the images, or use fewer levels"
        )
    if min(h, w) // f < 3:
        raise ValueError(
            f"{h}x{w} images are too small for {num_levels} levels (the last would be "
            f"{h // f}x{w // f}; at least 3x3 is needed)"
        )


@functools.partial(jax.jit, static_argnames="num_levels")
def laplacian_pyramid(images: jax.Array, num_levels: int) -> list[jax.Array]:
    """Laplacian pyramid (jitted) of (N, H, W, C) ``images``, H and W divisible by 2^(levels - 1).

    Returns ``num_levels`` float32 arrays, level ``i`` (N, H / 2^i, W / 2^i, C): band-pass levels
    (each minus the up-sampled next), then the low-pass image (one level: the images themselves).
    """
    images = jnp.asarray(images, jnp.float32)
    _check_levels(images.shape, num_levels)
    pyramid = [images]
    for _ in range(1, num_levels):
        down = pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - pyr_up(down)
        pyramid.append(down)
    return pyramid


@jax.jit
def reconstruct_laplacian_pyramid(pyramid: list[jax.Array]) -> jax.Array:
    """Inverse of :func:`laplacian_pyramid`: (N, H, W, C) float32 from the list of levels."""
    out = jnp.asarray(pyramid[-1], jnp.float32)
    for level in pyramid[-2::-1]:
        out = pyr_up(out) + level
    return out
