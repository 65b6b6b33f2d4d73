"""Sliced Wasserstein distance between two image sets, as PGGAN defines it (Karras et al. 2018).

The procedure of PGGAN's ``metrics/sliced_wasserstein.py`` (tkarras/progressive_growing_of_gans):

1. Images in [-1, 1] are mapped to [0, 255] (rounded by default, like PGGAN's uint8 images).
2. Each becomes a Laplacian pyramid (:mod:`jaxgan.metrics.pyramid`) down to 16x16, the last level
   low-pass (128x128: levels 128, 64, 32, 16).
3. Per image and level, 128 random 7x7 neighbourhoods (centres uniform in ``[3, size - 4]``) are
   flattened channel-major (C, 7, 7) into 147-D descriptors.
4. Per level and set, descriptors are normalised by that set's per-channel mean and population std.
5. For 4 repeats of 128 random unit directions (shared by both sets), the mean absolute difference
   of the sorted projections is taken and the repeats averaged. Reported x 1e3 per level
   (``swd_128``, ``swd_64``, ...) and as the average over levels (``swd_avg``).

Randomness is a pure function of a JAX key: the centres of stream image ``j`` at level ``l`` come
from ``fold_in(fold_in(key, l), j)`` (independent of the batch size), level ``l``'s directions from
``fold_in(key, l)`` of the distance's key. ``impl='auto'`` sorts with numpy on CPU (much faster than
XLA:CPU's sort) and with jitted JAX on GPU/TPU.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.metrics.pyramid import _check_levels, laplacian_pyramid, max_pyramid_levels

#: PGGAN's constants.
PATCH_SIZE = 7
DESCRIPTORS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_LEVEL_SIZE = 16


def to_pixel_range(images: jax.Array, quantize: bool = True) -> jax.Array:
    """Map images from [-1, 1] to [0, 255] float32 (clipped; rounded to integers if ``quantize``)."""
    x = jnp.clip((jnp.asarray(images, jnp.float32) + 1.0) * 127.5, 0.0, 255.0)
    return jnp.round(x) if quantize else x


def sample_centres(
    key: jax.Array,
    image_indices: jax.Array,
    height: int,
    width: int,
    num_per_image: int = DESCRIPTORS_PER_IMAGE,
    patch_size: int = PATCH_SIZE,
) -> tuple[jax.Array, jax.Array]:
    """Random neighbourhood centres for stream images ``image_indices`` (N,) of one level.

    ``key`` is the level's key (``fold_in(set_key, level)``); ``patch_size`` p is odd. Returns
    ``(ys, xs)``, each (N, num_per_image) int32 in ``[p // 2, size - 1 - p // 2]``.
    """
    half = patch_size // 2
    if height < patch_size or width < patch_size:
        raise ValueError(f"a {height}x{width} level is smaller than the {patch_size}x{patch_size} patch")

    def one(index):
        ky, kx = jax.random.split(jax.random.fold_in(key, index))
        ys = jax.random.randint(ky, (num_per_image,), half, height - half, jnp.int32)
        xs = jax.random.randint(kx, (num_per_image,), half, width - half, jnp.int32)
        return ys, xs

    return jax.vmap(one)(jnp.asarray(image_indices, jnp.int32))


def extract_descriptors(
    level: jax.Array, ys: jax.Array, xs: jax.Array, patch_size: int = PATCH_SIZE
) -> jax.Array:
    """Cut neighbourhoods at (N, P) centres ``ys, xs`` out of an (N, h, w, C) float32 level.

    Returns (N * P, C * patch_size**2) float32 descriptors, image-major, each flattened
    channel-major as (C, dy, dx) like PGGAN's NCHW descriptors.
    """
    half = patch_size // 2
    offs = jnp.arange(-half, half + 1)
    n, p = ys.shape
    c = level.shape[-1]

    def one(img, y, x):
        rows = (y[:, None] + offs[None, :])[:, :, None]  # (P, k, 1)
        cols = (x[:, None] + offs[None, :])[:, None, :]  # (P, 1, k)
        return img[rows, cols]  # (P, k, k, C)

    patches = jax.vmap(one)(level, ys, xs)  # (N, P, k, k, C)
    patches = jnp.transpose(patches, (0, 1, 4, 2, 3))
    return patches.reshape(n * p, c * patch_size * patch_size)


@functools.partial(
    jax.jit, static_argnames=("num_levels", "num_per_image", "patch_size", "quantize")
)
def batch_descriptors(
    images: jax.Array,
    key: jax.Array,
    first_index: jax.Array | int = 0,
    *,
    num_levels: int,
    num_per_image: int = DESCRIPTORS_PER_IMAGE,
    patch_size: int = PATCH_SIZE,
    quantize: bool = True,
) -> list[jax.Array]:
    """SWD descriptors (jitted) of one (N, H, W, C) float batch in [-1, 1].

    ``key`` is the set's key, ``first_index`` the stream index of ``images[0]``; PGGAN's
    ``num_levels`` is :func:`max_pyramid_levels`. Returns one (N * num_per_image,
    C * patch_size**2) float32 array per level.
    """
    pyramid = laplacian_pyramid(to_pixel_range(images, quantize), num_levels)
    idx = first_index + jnp.arange(images.shape[0])
    out = []
    for lvl, level in enumerate(pyramid):
        ys, xs = sample_centres(
            jax.random.fold_in(key, lvl), idx, level.shape[1], level.shape[2], num_per_image,
            patch_size,
        )
        out.append(extract_descriptors(level, ys, xs, patch_size))
    return out


def sample_directions(
    key: jax.Array, dim: int, repeats: int = DIR_REPEATS, per_repeat: int = DIRS_PER_REPEAT
) -> jax.Array:
    """Random unit projection directions: (repeats, dim, per_repeat) float32, unit-norm columns."""
    d = jax.random.normal(key, (repeats, dim, per_repeat), jnp.float32)
    return d / jnp.sqrt(jnp.sum(jnp.square(d), axis=1, keepdims=True))


def descriptor_stats(desc: np.ndarray, num_channels: int, chunk: int = 65536):
    """Per-channel ``(mean, std)``, each (C,) float64, of (M, C * k * k) descriptors."""
    m, d = desc.shape
    k2 = d // num_channels
    s = np.zeros(num_channels)
    for i in range(0, m, chunk):
        blk = np.asarray(desc[i : i + chunk], np.float64).reshape(-1, num_channels, k2)
        s += blk.sum(axis=(0, 2))
    cnt = m * k2
    mean = s / cnt
    # Two passes: the one-pass variance formula cancels badly on the low-pass level.
    ss = np.zeros(num_channels)
    for i in range(0, m, chunk):
        blk = np.asarray(desc[i : i + chunk], np.float64).reshape(-1, num_channels, k2)
        ss += np.square(blk - mean[None, :, None]).sum(axis=(0, 2))
    var = ss / cnt
    return mean, np.sqrt(var)


def _normalize_chunk(blk: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    c = mean.shape[0]
    k2 = blk.shape[1] // c
    m = np.repeat(mean, k2).astype(np.float32)
    s = np.repeat(std, k2).astype(np.float32)
    return (blk - m) / s


def _sort_rows(x: np.ndarray, pool: ThreadPoolExecutor | None, workers: int) -> None:
    """Sort each row of the (rows, M) array in place (numpy releases the GIL while sorting)."""
    if pool is None:
        x.sort(axis=1)
        return
    step = max(1, x.shape[0] // (4 * workers))
    list(pool.map(lambda i: x[i : i + step].sort(axis=1), range(0, x.shape[0], step)))


def _swd_numpy(a, b, directions, num_channels, normalize, chunk=65536, num_threads=None):
    m = a.shape[0]
    if num_threads is None:
        num_threads = min(os.cpu_count() or 1, 8)
    pool = ThreadPoolExecutor(num_threads) if num_threads > 1 and m >= 65536 else None
    repeats, _, per = directions.shape
    stats = []
    for x in (a, b):
        if normalize:
            stats.append(descriptor_stats(x, num_channels))
        else:
            stats.append((np.zeros(num_channels), np.ones(num_channels)))
    results = []
    # Two (per, m) projection buffers, reused across repeats (re-allocating costs page faults).
    buffers = (np.empty((per, m), np.float32), np.empty((per, m), np.float32))
    for r in range(repeats):
        dirs_t = np.ascontiguousarray(np.asarray(directions[r], np.float32).T)  # (per, dim)
        for x, (mean, std), proj in zip((a, b), stats, buffers):
            for i in range(0, m, chunk):
                blk = _normalize_chunk(np.asarray(x[i : i + chunk], np.float32), mean, std)
                np.matmul(dirs_t, blk.T, out=proj[:, i : i + chunk])
            _sort_rows(proj, pool, num_threads)
        total = 0.0
        pa, pb = buffers
        for j in range(0, per, 8):
            total += float(np.abs(pa[j : j + 8] - pb[j : j + 8]).sum(dtype=np.float64))
        results.append(total / (m * per))
    if pool is not None:
        pool.shutdown()
    return float(np.mean(results))


@functools.partial(jax.jit, static_argnames=("num_channels", "normalize", "dir_chunk"))
def _swd_jax(a, b, directions, *, num_channels, normalize, dir_chunk):
    def norm(x):
        if not normalize:
            return x
        v = x.reshape(x.shape[0], num_channels, -1)
        mean = jnp.mean(v, axis=(0, 2), keepdims=True)
        std = jnp.sqrt(jnp.mean(jnp.square(v - mean), axis=(0, 2), keepdims=True))
        return ((v - mean) / std).reshape(x.shape)

    a, b = norm(a), norm(b)
    repeats, dim, per = directions.shape
    dirs = directions.reshape(repeats, dim, per // dir_chunk, dir_chunk)
    dirs = jnp.moveaxis(dirs, 2, 1).reshape(repeats * (per // dir_chunk), dim, dir_chunk)

    def one(d):
        pa = jnp.sort(jnp.dot(d.T, a.T, precision="highest"), axis=1)
        pb = jnp.sort(jnp.dot(d.T, b.T, precision="highest"), axis=1)
        return jnp.mean(jnp.abs(pa - pb), axis=1)  # (dir_chunk,)

    dists = jax.lax.map(one, dirs).reshape(repeats, per)
    return jnp.mean(jnp.mean(dists, axis=1))


def sliced_wasserstein(
    desc_a: np.ndarray | jax.Array,
    desc_b: np.ndarray | jax.Array,
    directions: np.ndarray | jax.Array,
    *,
    num_channels: int = 3,
    normalize: bool = True,
    impl: str = "auto",
    num_threads: int | None = None,
) -> float:
    """Sliced Wasserstein distance between two equally large descriptor sets (not scaled by 1e3).

    Args:
      desc_a, desc_b: (M, D) float32 descriptors, D = num_channels * k * k, channel-major.
      directions: (repeats, D, per_repeat), unit-norm (see :func:`sample_directions`).
      normalize: first normalise each set by its own per-channel mean and std (PGGAN does).
      impl: ``'numpy'`` (fast on CPU), ``'jax'`` (jitted, for GPU/TPU) or ``'auto'``.
      num_threads: the numpy path's sorting threads (default min(cpu_count, 8)); that path also
        holds two (per_repeat, M) float32 projection buffers.

    Returns:
      mean over repeats of mean_{directions, descriptors} |sort(A d) - sort(B d)|.
    """
    if desc_a.ndim != 2 or desc_a.shape != desc_b.shape:
        raise ValueError(
            "the two descriptor sets must have the same (count, dim) shape, got "
            f"{desc_a.shape} and {desc_b.shape}: feed the same number of images to both sides"
        )
    if directions.ndim != 3 or directions.shape[1] != desc_a.shape[1]:
        raise ValueError(
            f"directions must be (repeats, {desc_a.shape[1]}, per_repeat), got {directions.shape}"
        )
    if desc_a.shape[1] % num_channels:
        raise ValueError(f"descriptor dim {desc_a.shape[1]} is not divisible by {num_channels}")
    if impl == "auto":
        impl = "numpy" if jax.default_backend() == "cpu" else "jax"
    if impl == "numpy":
        return _swd_numpy(
            np.asarray(desc_a), np.asarray(desc_b), np.asarray(directions), num_channels, normalize,
            num_threads=num_threads,
        )
    if impl == "jax":
        per = directions.shape[2]
        dir_chunk = math.gcd(per, 32)
        return float(
            _swd_jax(
                jnp.asarray(desc_a), jnp.asarray(desc_b), jnp.asarray(directions),
                num_channels=num_channels, normalize=normalize, dir_chunk=dir_chunk,
            )
        )
    raise ValueError(f"impl must be 'auto', 'numpy' or 'jax', got {impl!r}")


class SWDAccumulator:
    """Streams (H, W, C) image batches into per-level SWD descriptors (the images are not kept).

    ``key`` is this set's (use different keys for the real and the generated set); ``capacity``,
    if given, preallocates storage for that many images (more raise an error); ``num_levels``
    defaults to PGGAN's (down to 16x16). Host memory: ``num_levels * num_images * num_per_image *
    C * patch_size**2 * 4`` bytes (4.6 GiB for 16,384 RGB images at 128x128).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        key: jax.Array,
        *,
        capacity: int | None = None,
        num_levels: int | None = None,
        num_per_image: int = DESCRIPTORS_PER_IMAGE,
        patch_size: int = PATCH_SIZE,
        quantize: bool = True,
    ):
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {tuple(image_shape)}")
        h, w, c = (int(s) for s in image_shape)
        if num_levels is None:
            num_levels = max_pyramid_levels(h, w, MIN_LEVEL_SIZE)
            if num_levels == 0:
                raise ValueError(
                    f"SWD needs images of at least {MIN_LEVEL_SIZE}x{MIN_LEVEL_SIZE}, got {h}x{w}"
                )
        _check_levels((1, h, w, c), num_levels)
        if min(h, w) // 2 ** (num_levels - 1) < patch_size:
            raise ValueError(
                f"the last pyramid level ({h >> (num_levels - 1)}x{w >> (num_levels - 1)}) is "
                f"smaller than the {patch_size}x{patch_size} descriptor: use fewer levels"
            )
        self.image_shape = (h, w, c)
        self.key = key
        self.num_levels = num_levels
        self.num_per_image = num_per_image
        self.patch_size = patch_size
        self.quantize = quantize
        self.capacity = capacity
        self.dim = c * patch_size * patch_size
        self.num_images = 0
        self._batch: int | None = None
        if capacity is not None:
            rows = capacity * num_per_image
            self._levels = [np.empty((rows, self.dim), np.float32) for _ in range(num_levels)]
        else:
            self._chunks: list[list[np.ndarray]] = [[] for _ in range(num_levels)]

    @property
    def resolutions(self) -> list[int]:
        """Height of each pyramid level, e.g. [128, 64, 32, 16]."""
        return [self.image_shape[0] >> i for i in range(self.num_levels)]

    def update(self, images: jax.Array | np.ndarray) -> None:
        """Add a batch of (N, H, W, C) float images in [-1, 1]."""
        chex.assert_rank(images, 4)
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got "
                f"{tuple(images.shape)}"
            )
        n = images.shape[0]
        if n == 0:
            return
        if self.capacity is not None and self.num_images + n > self.capacity:
            raise ValueError(
                f"SWDAccumulator was sized for {self.capacity} images; got {self.num_images + n}"
            )
        # A smaller (last) batch is zero-padded to the first batch's size: one compilation.
        if self._batch is None:
            self._batch = n
        if n < self._batch:
            images = np.concatenate(
                [np.asarray(images), np.zeros((self._batch - n, *self.image_shape), np.float32)]
            )
        descs = batch_descriptors(
            images, self.key, jnp.int32(self.num_images), num_levels=self.num_levels,
            num_per_image=self.num_per_image, patch_size=self.patch_size, quantize=self.quantize,
        )
        r0 = self.num_images * self.num_per_image
        for lvl, d in enumerate(descs):
            d = np.asarray(d)[: n * self.num_per_image]
            if self.capacity is not None:
                self._levels[lvl][r0 : r0 + d.shape[0]] = d
            else:
                self._chunks[lvl].append(d)
        self.num_images += n

    def level(self, lvl: int) -> np.ndarray:
        """(num_images * num_per_image, dim) float32 descriptors of level ``lvl`` (0 = finest)."""
        if self.capacity is not None:
            return self._levels[lvl][: self.num_images * self.num_per_image]
        chunks = self._chunks[lvl]
        if len(chunks) > 1:
            chunks[:] = [np.concatenate(chunks, axis=0)]
        return chunks[0] if chunks else np.empty((0, self.dim), np.float32)

    def release(self, lvl: int) -> None:
        """Free the storage of level ``lvl``."""
        if self.capacity is not None:
            self._levels[lvl] = np.empty((0, self.dim), np.float32)
        else:
            self._chunks[lvl] = []


def swd_from_accumulators(
    acc_a: SWDAccumulator,
    acc_b: SWDAccumulator,
    key: jax.Array,
    *,
    dir_repeats: int = DIR_REPEATS,
    dirs_per_repeat: int = DIRS_PER_REPEAT,
    impl: str = "auto",
    release: bool = False,
) -> dict[str, float]:
    """``{'swd_<res>': ..., 'swd_avg': ...}``: SWD x 1e3 per level and their average between two
    accumulators of the same image shape and number of images; ``key`` draws the directions.

    ``release`` frees each level's descriptors once used (lower peak memory; the accumulators are
    unusable afterwards).
    """
    if acc_a.image_shape != acc_b.image_shape or acc_a.num_levels != acc_b.num_levels:
        raise ValueError(
            f"SWD sets differ in image shape/levels: {acc_a.image_shape}/{acc_a.num_levels} vs "
            f"{acc_b.image_shape}/{acc_b.num_levels}"
        )
    if acc_a.num_images != acc_b.num_images or acc_a.num_images == 0:
        raise ValueError(
            f"SWD needs the same, non-zero number of images on both sides, got {acc_a.num_images} "
            f"and {acc_b.num_images}"
        )
    out = {}
    dists = []
    for lvl, res in enumerate(acc_a.resolutions):
        dirs = sample_directions(
            jax.random.fold_in(key, lvl), acc_a.dim, dir_repeats, dirs_per_repeat
        )
        d = sliced_wasserstein(
            acc_a.level(lvl), acc_b.level(lvl), dirs, num_channels=acc_a.image_shape[2], impl=impl
        )
        if release:
            acc_a.release(lvl)
            acc_b.release(lvl)
        out[f"swd_{res}"] = d * 1e3
        dists.append(d * 1e3)
    out["swd_avg"] = float(np.mean(dists))
    return out


def sliced_wasserstein_distance(
    images_a: jax.Array | np.ndarray,
    images_b: jax.Array | np.ndarray,
    key: jax.Array,
    *,
    batch_size: int = 256,
    impl: str = "auto",
    **accumulator_kwargs,
) -> dict[str, float]:
    """SWD (x 1e3 per level and average) between two in-memory (N, H, W, C) sets in [-1, 1];
    ``key`` is split into the two sets' descriptor keys and the directions' key."""
    chex.assert_rank([images_a, images_b], 4)
    chex.assert_equal_shape([images_a, images_b])
    ka, kb, kd = jax.random.split(key, 3)
    accs = []
    for images, k in ((images_a, ka), (images_b, kb)):
        acc = SWDAccumulator(
            images.shape[1:], k, capacity=images.shape[0], **accumulator_kwargs
        )
        for i in range(0, images.shape[0], batch_size):
            acc.update(images[i : i + batch_size])
        accs.append(acc)
    return swd_from_accumulators(accs[0], accs[1], kd, impl=impl, release=True)
