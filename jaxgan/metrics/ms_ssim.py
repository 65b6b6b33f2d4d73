"""Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) and PGGAN's MS-SSIM diversity measure.

Definition (as Wang's ``msssim.m``): at each of 5 scales, with an 11x11 Gaussian window (sigma 1.5,
"valid" filtering), the contrast-structure term ``cs = (2 s_xy + C2) / (s_x^2 + s_y^2 + C2)``, and
at the last scale also the luminance term; ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = 255``.
Between scales both images are 2x2 average-pooled (an odd size first padded by repeating the last
row/column, like MATLAB's 'symmetric'). Then

    MS-SSIM = prod_{j=1..4} mean(cs_j) ** w_j  *  mean(ssim_5) ** w_5,
    w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),

each mean over the valid map and the channels of one pair. Images in [-1, 1] are mapped to
[0, 255] (rounded by default, like uint8). Negative means are clipped to 0 before the powers, as
``tf.image.ssim_multiscale`` does (else NaN).

Images below 176x176 (the coarsest scale needs 11 pixels) follow ``small_images``:

* ``'shrink_filter'`` (default, as PGGAN's ``ms_ssim.py``): keep 5 scales; a scale of size
  ``s < 11`` uses an s x s window, sigma ``1.5 * s / 11`` (32x32: windows 11, 11, 8, 4, 2).
* ``'fewer_scales'``: only the first K scales of size >= 11, their weights renormalised to sum to
  1, the K-th giving the full SSIM (32x32 -> 2 scales, 128x128 -> 4); under 11 pixels: an error.

Diversity (PGGAN, Odena et al.): mean MS-SSIM over random pairs of generated images; lower is more
diverse.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.metrics.swd import to_pixel_range

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MAX_VAL = 255.0


def gaussian_window_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps (size,) float64; even sizes are centred between two taps."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
    """Separable 'valid' correlation of NHWC ``x`` with ``outer(taps, taps)``, per channel (as
    shifted slices: XLA:CPU runs them faster than a depthwise ``conv_general_dilated``)."""
    k = len(taps)
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    y = sum(float(t) * x[:, i : i + h] for i, t in enumerate(taps))
    return sum(float(t) * y[:, :, i : i + w] for i, t in enumerate(taps))


def _downsample(x: jax.Array) -> jax.Array:
    """2x2 box filter and subsample; odd sizes padded by repeating the last row/column."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ssim_and_cs(
    x: jax.Array,
    y: jax.Array,
    *,
    max_val: float = MAX_VAL,
    filter_size: int = FILTER_SIZE,
    filter_sigma: float = FILTER_SIGMA,
) -> tuple[jax.Array, jax.Array]:
    """Single-scale ``(ssim, cs)`` of (N, H, W, C) float32 pairs in [0, max_val], each (N,).

    Each is the mean over the valid map and the channels; the window shrinks to
    min(filter_size, H, W), its sigma scaled alike.
    """
    size = min(filter_size, x.shape[1], x.shape[2])
    sigma = size * filter_sigma / filter_size
    taps = gaussian_window_1d(size, sigma)
    c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
    c = x.shape[-1]
    stats = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), taps)
    mu_x, mu_y, e_xx, e_yy, e_xy = (stats[..., i * c : (i + 1) * c] for i in range(5))
    s_xx = e_xx - mu_x * mu_x
    s_yy = e_yy - mu_y * mu_y
    s_xy = e_xy - mu_x * mu_y
    cs_map = (2.0 * s_xy + c2) / (s_xx + s_yy + c2)
    lum = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    axes = (1, 2, 3)
    return jnp.mean(lum * cs_map, axis=axes), jnp.mean(cs_map, axis=axes)


def ms_ssim_plan(
    height: int, width: int, small_images: str = "shrink_filter", num_scales: int = 5,
    filter_size: int = FILTER_SIZE,
) -> tuple[int, tuple[float, ...]]:
    """Number of scales and weights used for ``height`` x ``width`` images (see module doc)."""
    weights = MS_SSIM_WEIGHTS[:num_scales]
    if small_images == "shrink_filter":
        if min(height, width) < 2 ** (num_scales - 1):
            raise ValueError(
                f"{height}x{width} images are too small for {num_scales} scales (need at least "
                f"{2 ** (num_scales - 1)} pixels)"
            )
        return num_scales, tuple(weights)
    if small_images == "fewer_scales":
        k, s = 0, min(height, width)
        while k < num_scales and s >= filter_size:
            k, s = k + 1, (s + 1) // 2
        if k == 0:
            raise ValueError(
                f"{height}x{width} images are smaller than the {filter_size}x{filter_size} window"
            )
        if k == num_scales:
            return k, tuple(weights)
        total = sum(weights[:k])
        return k, tuple(w / total for w in weights[:k])
    raise ValueError(
        f"small_images must be 'shrink_filter' or 'fewer_scales', got {small_images!r}"
    )


@functools.partial(jax.jit, static_argnames=("quantize", "small_images"))
def ms_ssim(
    images_a: jax.Array,
    images_b: jax.Array,
    *,
    quantize: bool = True,
    small_images: str = "shrink_filter",
) -> jax.Array:
    """MS-SSIM (jitted) of (N, H, W, C) float pairs in [-1, 1]: (N,) float32 in [0, 1], 1 if equal.

    ``quantize`` rounds after mapping to [0, 255]; ``small_images``: see the module docstring.
    """
    chex.assert_rank([images_a, images_b], 4)
    chex.assert_equal_shape([images_a, images_b])
    x, y = to_pixel_range(images_a, quantize), to_pixel_range(images_b, quantize)
    levels, weights = ms_ssim_plan(x.shape[1], x.shape[2], small_images)
    result = jnp.ones(x.shape[0], jnp.float32)
    for i in range(levels):
        ssim, cs = ssim_and_cs(x, y)
        term = ssim if i == levels - 1 else cs
        result = result * jnp.maximum(term, 0.0) ** weights[i]
        if i < levels - 1:
            x, y = _downsample(x), _downsample(y)
    return result


def _padded_ms_ssim(a: np.ndarray, b: np.ndarray, **kwargs) -> np.ndarray:
    """:func:`ms_ssim` on host pairs, zero-padded to a power-of-two count (few compilations)."""
    n = a.shape[0]
    size = 1 << (n - 1).bit_length()
    if size > n:
        pad = np.zeros((size - n, *a.shape[1:]), np.float32)
        a, b = np.concatenate([a, pad]), np.concatenate([b, pad])
    return np.asarray(ms_ssim(a, b, **kwargs))[:n]


class MSSSIMDiversity:
    """Streaming mean MS-SSIM over pairs of consecutive images (PGGAN's diversity measure).

    Feed batches of independent samples; images 0-1, 2-3, ... of the stream form the pairs (an odd
    image at the end of a batch is paired with the first of the next).
    """

    def __init__(self, *, quantize: bool = True, small_images: str = "shrink_filter"):
        self.quantize = quantize
        self.small_images = small_images
        self.total = 0.0
        self.count = 0
        self._carry: np.ndarray | None = None

    def update(self, images: jax.Array | np.ndarray) -> None:
        """Add (N, H, W, C) images in [-1, 1]."""
        chex.assert_rank(images, 4)
        images = np.asarray(images, np.float32)
        if self._carry is not None:
            images = np.concatenate([self._carry, images], axis=0)
            self._carry = None
        if images.shape[0] % 2:
            self._carry = images[-1:]
            images = images[:-1]
        pairs = images.shape[0] // 2
        if pairs == 0:
            return
        scores = _padded_ms_ssim(
            images[0::2], images[1::2], quantize=self.quantize, small_images=self.small_images
        )
        self.total += float(np.sum(scores, dtype=np.float64))
        self.count += pairs

    def result(self) -> float:
        """Mean MS-SSIM over the pairs seen so far."""
        if self.count == 0:
            raise ValueError("MS-SSIM diversity needs at least one pair (two images)")
        return self.total / self.count


def ms_ssim_diversity(
    images: jax.Array | np.ndarray,
    key: jax.Array,
    num_pairs: int | None = None,
    *,
    batch_size: int = 256,
    **kwargs,
) -> float:
    """Mean MS-SSIM over ``num_pairs`` (default N // 2) random pairs, drawn from ``key``, of
    distinct images of (N, H, W, C) ``images``; ``kwargs`` go to :func:`ms_ssim`."""
    chex.assert_rank(images, 4)
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"MS-SSIM diversity needs at least 2 images, got {n}")
    num_pairs = n // 2 if num_pairs is None else num_pairs
    ka, kb = jax.random.split(key)
    i = np.asarray(jax.random.randint(ka, (num_pairs,), 0, n))
    j = (i + np.asarray(jax.random.randint(kb, (num_pairs,), 1, n))) % n  # j != i
    images = np.asarray(images, np.float32)
    total = 0.0
    for s in range(0, num_pairs, batch_size):
        a, b = images[i[s : s + batch_size]], images[j[s : s + batch_size]]
        total += float(np.sum(_padded_ms_ssim(a, b, **kwargs), dtype=np.float64))
    return total / num_pairs
