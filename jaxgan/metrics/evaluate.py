"""One streaming pass over generated and real images computing the chosen metrics."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import chex
import jax
import numpy as np

from jaxgan import checks
from jaxgan.metrics.fid import FeatureStats, fid_from_stats, kernel_inception_distance
from jaxgan.metrics.inception import FEATURE_DIM, InceptionFeatureExtractor, load_inception
from jaxgan.metrics.ms_ssim import MSSSIMDiversity
from jaxgan.metrics.swd import SWDAccumulator, swd_from_accumulators

KNOWN_METRICS = ("swd", "ms_ssim", "fid", "kid")
_NEEDS_REALS = {"swd", "fid", "kid"}


def _check_batch(images, n_expected: int | None, what: str) -> np.ndarray:
    """Validate a batch (NHWC float in [-1, 1], finite) and return it as host float32."""
    images = np.asarray(images)
    checks.check_images(images, what, num=n_expected)
    images = images.astype(np.float32, copy=False)
    lo, hi = float(images.min()), float(images.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{what} contain NaN or inf values")
    if lo < -1.5 or hi > 1.5:
        raise ValueError(
            f"{what} must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}] (images in [0, 1] or "
            "[0, 255] must be rescaled first)"
        )
    return images


def _rebatch(batches: Iterable, size: int, limit: int):
    """Yield host batches of exactly ``size`` images (the last may be smaller), ``limit`` in all."""
    buf: list[np.ndarray] = []
    have = done = 0
    for batch in batches:
        if done >= limit:
            return
        batch = _check_batch(batch, None, "real images")
        buf.append(batch)
        have += batch.shape[0]
        while have >= size and done < limit:
            cat = np.concatenate(buf, axis=0) if len(buf) > 1 else buf[0]
            take = min(size, limit - done)
            yield cat[:take]
            done += take
            buf, have = [cat[take:]], cat.shape[0] - take
    if have and done < limit:
        cat = np.concatenate(buf, axis=0)
        yield cat[: limit - done]


def evaluate_generator(
    sample_fn: Callable[[jax.Array, int], jax.Array | np.ndarray],
    real_batches: Iterable[jax.Array | np.ndarray] | None,
    *,
    metrics: Sequence[str] = ("swd", "ms_ssim"),
    num_images: int,
    key: jax.Array,
    batch_size: int = 64,
    inception: str | InceptionFeatureExtractor | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> dict[str, float]:
    """Evaluate a generator against real images, streaming (images are never all held at once).

    Args:
      sample_fn: ``sample_fn(key, n) -> (n, H, W, C)`` float images in [-1, 1]; batch i gets
        ``fold_in(sample_key, i)``, so the result is deterministic in ``key``.
      real_batches: real (b, H, W, C) float batches in [-1, 1]; the first ``num_images`` images
        are used (error if fewer). May be None when only ``'ms_ssim'`` is requested.
      metrics: any of ``'swd'``, ``'ms_ssim'`` (diversity), ``'fid'``, ``'kid'`` (the last two
        need ``inception``: an ``.npz`` weight file or an :class:`InceptionFeatureExtractor`).
      num_images: images per side (PGGAN's SWD uses 16,384; MS-SSIM scores num_images // 2 pairs).
      batch_size: generated images per ``sample_fn`` call; must be even (MS-SSIM pairs).

    Returns:
      ``swd_<res>`` per pyramid level (x 1e3) and ``swd_avg``; ``ms_ssim_diversity`` (and
      ``ms_ssim_diversity_real`` given real batches); ``fid``; ``kid`` and ``kid_std``.

    Host memory per side: SWD's descriptors (see :class:`SWDAccumulator`), FID a 2048x2048
    float64 covariance, KID 8 KiB of features per image.
    """
    metrics = tuple(metrics)
    unknown = sorted(set(metrics) - set(KNOWN_METRICS))
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown}; choose from {KNOWN_METRICS}")
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2, got {num_images}")
    if batch_size < 2 or batch_size % 2:
        raise ValueError(f"batch_size must be even and >= 2 (MS-SSIM pairs), got {batch_size}")
    needs_reals = bool(_NEEDS_REALS & set(metrics))
    if needs_reals and real_batches is None:
        raise ValueError(f"metrics {sorted(_NEEDS_REALS & set(metrics))} need real_batches")
    extractor = None
    if {"fid", "kid"} & set(metrics):
        if inception is None:
            raise ValueError(
                "FID/KID need Inception-v3 weights: pass inception='path/to/weights.npz' "
                "(see jaxgan.metrics.inception for the file format)"
            )
        extractor = (
            inception if isinstance(inception, InceptionFeatureExtractor)
            else load_inception(inception)
        )

    k_sample, k_real, k_fake, k_dirs = jax.random.split(key, 4)
    # KID needs the features; below 2048 images FID's exact, cheaper low-rank route uses them too.
    keep = "kid" in metrics or num_images < FEATURE_DIM
    sides = {}
    for side, k in (("fake", k_fake), ("real", k_real)):
        sides[side] = {
            "key": k,
            "swd": None,
            "ms": MSSSIMDiversity() if "ms_ssim" in metrics else None,
            "feat": FeatureStats(FEATURE_DIM, keep_features=keep) if extractor else None,
        }

    def feed(side: dict, images: np.ndarray) -> None:
        if "swd" in metrics:
            if side["swd"] is None:
                side["swd"] = SWDAccumulator(images.shape[1:], side["key"], capacity=num_images)
            side["swd"].update(images)
        if side["ms"] is not None:
            side["ms"].update(images)
        if side["feat"] is not None:
            side["feat"].update(extractor(images))

    shape = None
    done = 0
    i = 0
    while done < num_images:
        n = min(batch_size, num_images - done)
        images = _check_batch(sample_fn(jax.random.fold_in(k_sample, i), n), n, "sample_fn images")
        shape = images.shape[1:] if shape is None else shape
        chex.assert_shape(images, (n, *shape))
        feed(sides["fake"], images)
        done, i = done + n, i + 1

    if real_batches is not None:
        done = 0
        for batch in _rebatch(real_batches, batch_size, num_images):
            if tuple(batch.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"real images have shape {tuple(batch.shape[1:])}, generated ones {tuple(shape)}"
                )
            feed(sides["real"], batch)
            done += batch.shape[0]
        if done < num_images:
            raise ValueError(
                f"real_batches yielded only {done} images, {num_images} are needed: lower "
                "num_images or repeat the dataset"
            )

    out: dict[str, float] = {}
    if "swd" in metrics:
        out.update(
            swd_from_accumulators(
                sides["real"]["swd"], sides["fake"]["swd"], k_dirs, release=True
            )
        )
    if "ms_ssim" in metrics:
        out["ms_ssim_diversity"] = sides["fake"]["ms"].result()
        if real_batches is not None:
            out["ms_ssim_diversity_real"] = sides["real"]["ms"].result()
    if "fid" in metrics:
        out["fid"] = fid_from_stats(sides["real"]["feat"], sides["fake"]["feat"])
    if "kid" in metrics:
        kid, kid_std = kernel_inception_distance(
            sides["real"]["feat"].features, sides["fake"]["feat"].features,
            num_subsets=kid_subsets, subset_size=kid_subset_size,
        )
        out["kid"], out["kid_std"] = kid, kid_std
    return {k: float(v) for k, v in out.items()}
