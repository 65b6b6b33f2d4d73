"""Tests for jaxgan.metrics: Laplacian pyramid, PGGAN's SWD, MS-SSIM and the diversity measure.

The references here are written independently in plain numpy/scipy, following the formulas in
REFERENCE.md and Wang et al. 2003 (not the library's code paths).
"""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from skimage import data
from skimage.metrics import structural_similarity

from jaxgan import metrics

# ---------------------------------------------------------------- helpers


def _crops(image: np.ndarray, n: int, size: int, seed: int) -> np.ndarray:
    """n random size x size crops of a uint8 HWC photo, as float32 in [-1, 1]."""
    rng = np.random.RandomState(seed)
    h, w = image.shape[:2]
    ys = rng.randint(0, h - size + 1, n)
    xs = rng.randint(0, w - size + 1, n)
    out = np.stack([image[y : y + size, x : x + size] for y, x in zip(ys, xs)])
    return out.astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def coffee():
    return data.coffee()


_FILTER = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float32) / 256.0


def _np_down(x):  # NHWC, scipy 'mirror' is reflect-101
    return ndi.convolve(x, _FILTER[None, :, :, None], mode="mirror")[:, ::2, ::2]


def _np_up(x):
    n, h, w, c = x.shape
    z = np.zeros((n, 2 * h, 2 * w, c), np.float32)
    z[:, ::2, ::2] = x
    return ndi.convolve(z, 4.0 * _FILTER[None, :, :, None], mode="mirror")


def _np_pyramid(x, levels):
    pyr = [x.astype(np.float32)]
    for _ in range(1, levels):
        pyr.append(_np_down(pyr[-1]))
        pyr[-2] = pyr[-2] - _np_up(pyr[-1])
    return pyr


def _np_swd(images_a, images_b, key, per_image=128):
    """PGGAN's SWD in plain numpy with the library's documented key scheme for the randomness."""
    ka, kb, kd = jax.random.split(key, 3)
    n, h, _, c = images_a.shape
    levels = int(np.log2(h // 16)) + 1
    pyrs = []
    for imgs in (images_a, images_b):
        px = np.round(np.clip((imgs + 1.0) * 127.5, 0, 255)).astype(np.float32)
        pyrs.append(_np_pyramid(px, levels))
    dists = []
    for lvl in range(levels):
        descs = []
        for pyr, k in zip(pyrs, (ka, kb)):
            level = pyr[lvl]
            ys, xs = metrics.sample_centres(
                jax.random.fold_in(k, lvl), np.arange(n), level.shape[1], level.shape[2], per_image
            )
            ys, xs = np.asarray(ys), np.asarray(xs)
            assert ys.min() >= 3 and ys.max() <= level.shape[1] - 4
            d = np.empty((n * per_image, c, 7, 7), np.float32)
            for i in range(n):
                for p in range(per_image):
                    patch = level[i, ys[i, p] - 3 : ys[i, p] + 4, xs[i, p] - 3 : xs[i, p] + 4]
                    d[i * per_image + p] = patch.transpose(2, 0, 1)
            d = (d - d.mean(axis=(0, 2, 3), keepdims=True)) / d.std(axis=(0, 2, 3), keepdims=True)
            descs.append(d.reshape(d.shape[0], -1))
        dirs = np.asarray(metrics.sample_directions(jax.random.fold_in(kd, lvl), c * 49))
        reps = []
        for r in range(dirs.shape[0]):
            pa = np.sort(descs[0] @ dirs[r], axis=0)
            pb = np.sort(descs[1] @ dirs[r], axis=0)
            reps.append(np.mean(np.abs(pa - pb)))
        dists.append(np.mean(reps) * 1e3)
    return dists


# ---------------------------------------------------------------- pyramid


def test_laplacian_pyramid_reconstructs_exactly_and_matches_scipy():
    x = np.random.RandomState(0).uniform(0, 255, (3, 64, 48, 3)).astype(np.float32)
    pyr = metrics.laplacian_pyramid(x, 3)
    assert [p.shape for p in pyr] == [(3, 64, 48, 3), (3, 32, 24, 3), (3, 16, 12, 3)]
    rec = np.asarray(metrics.reconstruct_laplacian_pyramid(pyr))
    np.testing.assert_allclose(rec, x, rtol=0, atol=255 * 4e-7)
    for mine, ref in zip(pyr, _np_pyramid(x, 3)):
        np.testing.assert_allclose(np.asarray(mine), ref, rtol=0, atol=2e-4)
    # band-pass levels of a constant image vanish; the low-pass keeps the constant
    const = metrics.laplacian_pyramid(np.full((1, 32, 32, 1), 7.0, np.float32), 2)
    np.testing.assert_allclose(np.asarray(const[0]), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(const[1]), 7.0, atol=1e-5)


def test_pyramid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        metrics.laplacian_pyramid(np.zeros((1, 36, 32, 3), np.float32), 4)
    assert metrics.max_pyramid_levels(128, 128) == 4
    assert metrics.max_pyramid_levels(32, 32) == 2


# ---------------------------------------------------------------- SWD


def test_descriptors_layout_and_centres():
    level = jnp.asarray(np.random.RandomState(1).randn(2, 16, 20, 3).astype(np.float32))
    ys, xs = metrics.sample_centres(jax.random.key(3), jnp.arange(2), 16, 20, 500)
    chex.assert_shape([ys, xs], (2, 500))
    assert int(ys.min()) == 3 and int(ys.max()) == 12  # [3, size - 4], both ends drawn
    assert int(xs.min()) == 3 and int(xs.max()) == 16
    d = np.asarray(metrics.extract_descriptors(level, ys, xs))
    chex.assert_shape(d, (1000, 147))
    i, p = 1, 17
    y, x = int(ys[i, p]), int(xs[i, p])
    ref = np.asarray(level)[i, y - 3 : y + 4, x - 3 : x + 4].transpose(2, 0, 1).ravel()
    np.testing.assert_array_equal(d[i * 500 + p], ref)


def test_directions_are_unit():
    d = metrics.sample_directions(jax.random.key(0), 147)
    chex.assert_shape(d, (4, 147, 128))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(d), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("impl", ["numpy", "jax"])
def test_swd_matches_plain_numpy_reference(astronaut, coffee, impl):
    a = _crops(astronaut, 16, 32, seed=0)
    b = _crops(coffee, 16, 32, seed=1)
    key = jax.random.key(42)
    got = metrics.sliced_wasserstein_distance(a, b, key, batch_size=16, impl=impl)
    ref = _np_swd(a, b, key)
    assert set(got) == {"swd_32", "swd_16", "swd_avg"}
    np.testing.assert_allclose([got["swd_32"], got["swd_16"]], ref, rtol=2e-4)
    np.testing.assert_allclose(got["swd_avg"], np.mean(ref), rtol=2e-4)


def test_swd_descriptors_do_not_depend_on_batch_size(astronaut):
    imgs = _crops(astronaut, 24, 32, seed=3)
    key = jax.random.key(5)
    accs = []
    for bs in (16, 24):  # 16 + 8 (zero-padded to 16), and one batch of 24
        acc = metrics.SWDAccumulator(imgs.shape[1:], key, capacity=24 if bs == 24 else None)
        for i in range(0, 24, bs):
            acc.update(imgs[i : i + bs])
        accs.append(acc)
    for lvl in range(2):
        np.testing.assert_array_equal(accs[0].level(lvl), accs[1].level(lvl))


def _swd_sets(a, b, key):
    """SWD with the same descriptor key for both sets (common random numbers)."""
    accs = []
    for imgs in (a, b):
        acc = metrics.SWDAccumulator(imgs.shape[1:], key, capacity=imgs.shape[0])
        for i in range(0, imgs.shape[0], 16):
            acc.update(imgs[i : i + 16])
        accs.append(acc)
    return metrics.swd_from_accumulators(*accs, jax.random.key(1))


def test_swd_same_set_zero_different_sets_positive(astronaut, coffee):
    a1 = _crops(astronaut, 64, 32, seed=10)
    a2 = _crops(astronaut, 64, 32, seed=11)
    b = _crops(coffee, 64, 32, seed=12)
    key = jax.random.key(0)
    same = _swd_sets(a1, a1, key)
    assert all(v == 0.0 for v in same.values()), same
    # independent descriptor draws of the same images, and a second sample of the same photo,
    # are far closer than a different photo
    resampled = metrics.sliced_wasserstein_distance(a1, a1, key, batch_size=16)["swd_avg"]
    same_photo = metrics.sliced_wasserstein_distance(a1, a2, key, batch_size=16)["swd_avg"]
    other_photo = metrics.sliced_wasserstein_distance(a1, b, key, batch_size=16)["swd_avg"]
    assert resampled > 0.0
    assert other_photo > 1.5 * same_photo, (same_photo, other_photo)
    assert other_photo > 5.0 * resampled, (resampled, other_photo)


def test_swd_grows_with_noise_and_blur(astronaut):
    a = _crops(astronaut, 32, 32, seed=20)
    key = jax.random.key(7)
    noise = np.random.RandomState(0).randn(*a.shape).astype(np.float32)
    by_noise = [_swd_sets(a, np.clip(a + s * noise, -1, 1), key) for s in (0.0, 0.05, 0.15, 0.4)]
    by_blur = [
        _swd_sets(a, ndi.gaussian_filter(a, (0, s, s, 0), mode="reflect"), key)
        for s in (0.0, 0.6, 1.5)
    ]
    for series in (by_noise, by_blur):
        avg = [r["swd_avg"] for r in series]
        assert avg[0] == 0.0
        assert all(x < y for x, y in itertools.pairwise(avg)), avg
        fine = [r["swd_32"] for r in series]  # the finest level sees noise and blur directly
        assert all(x < y for x, y in itertools.pairwise(fine)), fine


def test_swd_errors_name_the_problem(astronaut):
    key = jax.random.key(0)
    a = metrics.SWDAccumulator((32, 32, 3), key)
    b = metrics.SWDAccumulator((32, 32, 3), key)
    a.update(_crops(astronaut, 16, 32, 0))
    b.update(_crops(astronaut, 8, 32, 1))
    with pytest.raises(ValueError, match="same, non-zero number of images"):
        metrics.swd_from_accumulators(a, b, key)
    with pytest.raises(ValueError, match="expected images of shape"):
        a.update(np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="at least 16x16"):
        metrics.SWDAccumulator((8, 8, 3), key)


# ---------------------------------------------------------------- MS-SSIM


def _np_ssim_cs(x, y, size=11, sigma=1.5):
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    win = np.outer(g, g) / np.outer(g, g).sum()

    def filt(z):
        return np.stack(
            [scipy.signal.fftconvolve(z[..., ch], win, mode="valid") for ch in range(z.shape[-1])],
            -1,
        )

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs
    return ssim.mean(), cs.mean()


def _np_ms_ssim(x, y):
    w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    out = 1.0
    for i in range(5):
        ssim, cs = _np_ssim_cs(x, y)
        out *= (ssim if i == 4 else cs) ** w[i]
        h, wd = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:h, :wd].reshape(h // 2, 2, wd // 2, 2, -1).mean((1, 3))
        y = y[:h, :wd].reshape(h // 2, 2, wd // 2, 2, -1).mean((1, 3))
    return out


def test_ssim_matches_skimage(astronaut):
    x = astronaut[100:164, 200:280].astype(np.float64)
    y = np.clip(x + np.random.RandomState(0).randn(*x.shape) * 20, 0, 255)
    ssim, _ = metrics.ssim_and_cs(jnp.asarray(x[None], jnp.float32), jnp.asarray(y[None], jnp.float32))
    ref = structural_similarity(
        x, y, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    np.testing.assert_allclose(float(ssim[0]), ref, rtol=1e-4)


def test_ms_ssim_matches_numpy_definition_at_full_size(astronaut):
    a = _crops(astronaut, 2, 176, seed=30)
    noise = np.random.RandomState(2).randn(*a.shape).astype(np.float32)
    b = np.clip(a + 0.3 * noise, -1, 1)
    got = np.asarray(metrics.ms_ssim(a, b))
    chex.assert_shape(got, (2,))
    for i in range(2):
        x, y = (np.round((z[i] + 1) * 127.5).astype(np.float64) for z in (a, b))
        np.testing.assert_allclose(got[i], _np_ms_ssim(x, y), rtol=1e-4)
    # 176x176 needs no special handling, so both small-image policies agree
    np.testing.assert_allclose(
        got, np.asarray(metrics.ms_ssim(a, b, small_images="fewer_scales")), rtol=1e-6
    )
    # unrelated images can have a negative mean contrast-structure term: clipped to 0, not NaN
    c = _crops(astronaut, 2, 176, seed=31)
    x0, y0 = (np.round((z[0] + 1) * 127.5).astype(np.float64) for z in (a, c))
    unrelated = np.asarray(metrics.ms_ssim(a, c))
    assert np.all(np.isfinite(unrelated)) and np.all(unrelated >= 0)
    if min(_np_ssim_cs(x0, y0)[1], 1.0) < 0:
        assert unrelated[0] == 0.0


@pytest.mark.parametrize("size,policy", [(128, "shrink_filter"), (32, "shrink_filter"),
                                         (32, "fewer_scales")])
def test_ms_ssim_identity_is_one_and_falls_with_noise(astronaut, size, policy):
    a = jnp.asarray(_crops(astronaut, 4, size, seed=40))
    np.testing.assert_allclose(np.asarray(metrics.ms_ssim(a, a, small_images=policy)), 1.0,
                               atol=1e-5)
    noise = jnp.asarray(np.random.RandomState(1).randn(*a.shape).astype(np.float32))
    scores = [
        np.asarray(metrics.ms_ssim(a, jnp.clip(a + s * noise, -1, 1), small_images=policy))
        for s in (0.02, 0.1, 0.3, 1.0)
    ]
    for hi, lo in itertools.pairwise(scores):
        assert np.all(hi > lo), scores
    assert np.all(scores[0] < 1.0) and np.all(scores[-1] < scores[0] - 0.2)


def test_ms_ssim_small_image_plans():
    assert metrics.ms_ssim_plan(256, 256) == (5, metrics.MS_SSIM_WEIGHTS)
    k, w = metrics.ms_ssim_plan(32, 32, "fewer_scales")
    assert k == 2 and abs(sum(w) - 1) < 1e-12 and w[0] / w[1] == pytest.approx(0.0448 / 0.2856)
    assert metrics.ms_ssim_plan(128, 128, "fewer_scales")[0] == 4
    with pytest.raises(ValueError, match="too small"):
        metrics.ms_ssim_plan(8, 8)
    with pytest.raises(ValueError, match="small_images"):
        metrics.ms_ssim_plan(64, 64, "bogus")


def test_ms_ssim_diversity_streaming(astronaut):
    imgs = _crops(astronaut, 9, 32, seed=50)
    div = metrics.MSSSIMDiversity()
    for s in range(0, 9, 3):  # odd batch sizes carry an image over
        div.update(imgs[s : s + 3])
    assert div.count == 4
    direct = np.asarray(metrics.ms_ssim(imgs[0:8:2], imgs[1:8:2]))
    np.testing.assert_allclose(div.result(), direct.mean(), rtol=1e-5)
    # a collapsed generator (all images identical) has diversity score 1; noise is diverse
    collapsed = np.repeat(imgs[:1], 8, axis=0)
    assert metrics.ms_ssim_diversity(collapsed, jax.random.key(0)) == pytest.approx(1.0, abs=1e-5)
    noise = np.random.RandomState(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    assert metrics.ms_ssim_diversity(noise, jax.random.key(0), num_pairs=6) < 0.2
    with pytest.raises(ValueError, match="at least one pair"):
        metrics.MSSSIMDiversity().result()


# ---------------------------------------------------------------- evaluate_generator


def _sampler(photo, size=32):
    def sample_fn(key, n):
        return _crops(photo, n, size, int(jax.random.randint(key, (), 0, 2**31 - 1)))

    return sample_fn


def _reals(photo, batch=24, size=32):
    return (_crops(photo, batch, size, 1000 + i) for i in range(1000))


def test_evaluate_generator_streams_swd_and_ms_ssim(astronaut, coffee):
    key = jax.random.key(3)
    kw = {"num_images": 40, "key": key, "batch_size": 16}
    good = metrics.evaluate_generator(_sampler(astronaut), _reals(astronaut), **kw)
    assert set(good) == {"swd_32", "swd_16", "swd_avg", "ms_ssim_diversity",
                         "ms_ssim_diversity_real"}
    assert all(isinstance(v, float) for v in good.values())
    # same key, same numbers
    assert metrics.evaluate_generator(_sampler(astronaut), _reals(astronaut), **kw) == good
    # a generator of the wrong photo is further from the reals
    bad = metrics.evaluate_generator(_sampler(coffee), _reals(astronaut), **kw)
    assert bad["swd_avg"] > 1.5 * good["swd_avg"]
    # the documented key scheme reproduces the SWD from the lower-level API
    k_sample, k_real, k_fake, k_dirs = jax.random.split(key, 4)
    fake = np.concatenate(
        [_sampler(astronaut)(jax.random.fold_in(k_sample, i), n) for i, n in enumerate((16, 16, 8))]
    )
    real = np.concatenate([_crops(astronaut, 24, 32, 1000 + i) for i in range(2)])[:40]
    accs = []
    for imgs, k in ((real, k_real), (fake, k_fake)):
        acc = metrics.SWDAccumulator((32, 32, 3), k)
        for i in range(0, 40, 16):
            acc.update(imgs[i : i + 16])
        accs.append(acc)
    direct = metrics.swd_from_accumulators(*accs, k_dirs)
    for name, value in direct.items():
        assert good[name] == pytest.approx(value, rel=1e-6)
    pair_scores = [  # the batches evaluate_generator saw: 8, 8 and 4 pairs
        np.asarray(metrics.ms_ssim(fake[i : i + 16 : 2], fake[i + 1 : i + 16 : 2]))
        for i in (0, 16, 32)
    ]
    assert good["ms_ssim_diversity"] == pytest.approx(
        float(np.mean(np.concatenate(pair_scores))), rel=1e-5
    )
    # a collapsed generator has MS-SSIM diversity 1; only MS-SSIM needs no real images
    collapsed = metrics.evaluate_generator(
        lambda k, n: np.repeat(real[:1], n, axis=0), None, metrics=("ms_ssim",), num_images=8,
        key=key, batch_size=8,
    )
    assert collapsed == {"ms_ssim_diversity": pytest.approx(1.0, abs=1e-5)}


def test_evaluate_generator_errors_name_the_problem(astronaut):
    key = jax.random.key(0)
    sample = _sampler(astronaut)
    with pytest.raises(ValueError, match="yielded only 24 images"):
        metrics.evaluate_generator(sample, iter([_crops(astronaut, 24, 32, 0)]), num_images=32,
                                   key=key, batch_size=16)
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\]"):
        metrics.evaluate_generator(lambda k, n: sample(k, n) * 127.5 + 127.5, _reals(astronaut),
                                   num_images=16, key=key, batch_size=16)
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.evaluate_generator(sample, _reals(astronaut), metrics=("is",), num_images=16,
                                   key=key)
    with pytest.raises(ValueError, match="need real_batches"):
        metrics.evaluate_generator(sample, None, num_images=16, key=key)
    with pytest.raises(ValueError, match="Inception-v3 weights"):
        metrics.evaluate_generator(sample, _reals(astronaut), metrics=("fid",), num_images=16,
                                   key=key)
    with pytest.raises(ValueError, match="real images have shape"):
        metrics.evaluate_generator(sample, _reals(astronaut, size=64), num_images=16, key=key,
                                   batch_size=16)
