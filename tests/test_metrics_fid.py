"""FID/KID math on known Gaussians and the Inception-v3 feature extractor on random weights.

No real Inception weights are available offline, so nothing here is a calibrated FID value.
"""
import chex
import jax
import numpy as np
import pytest
import scipy.linalg

from jaxgan import metrics


def _random_spd(rng, d):
    a = rng.randn(d, d)
    return a @ a.T / d + 0.1 * np.eye(d)


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert metrics.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # diagonal (commuting) covariances: |dm|^2 + sum (sqrt(a) - sqrt(b))^2, also after rotation
    rng = np.random.RandomState(0)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    m1, m2 = rng.randn(6), rng.randn(6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected)
    q, _ = np.linalg.qr(rng.randn(6, 6))
    sa, sb = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert metrics.frechet_distance(m1, sa, m2, sb) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_general_covariances_and_properties():
    rng = np.random.RandomState(1)
    d = 20
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    m1, m2 = rng.randn(d), rng.randn(d)
    # independent route: scipy's general (Schur) matrix square root of the non-symmetric product
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    got = metrics.frechet_distance(m1, s1, m2, s2)
    assert got == pytest.approx(ref, rel=1e-8)
    assert got == pytest.approx(metrics.frechet_distance(m2, s2, m1, s1), rel=1e-9)  # symmetric
    assert abs(metrics.frechet_distance(m1, s1, m1, s1)) < 1e-9
    # rank-deficient covariances (fewer samples than dimensions) stay finite and >= 0, and the
    # low-rank route from the features equals the covariance route
    x, y = rng.randn(5, d), rng.randn(7, d) * 2 + 1
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    assert 0 <= metrics.frechet_distance(m1, cx, m2, s2) < np.inf
    via_cov = metrics.frechet_distance(x.mean(0), cx, y.mean(0), cy)
    assert metrics.fid_from_features(x, y) == pytest.approx(via_cov, rel=1e-7)
    with pytest.raises(ValueError, match="shapes"):
        metrics.frechet_distance(m1, s1, m2[:3], s2)


def test_fid_of_samples_approaches_the_gaussians_closed_form():
    rng = np.random.RandomState(2)
    d, n = 4, 200_000
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    a, b = np.array([1.0, 2.0, 0.5, 1.5]), np.array([1.0, 0.5, 0.5, 3.0])
    x = m1 + rng.randn(n, d) * np.sqrt(a)
    y = m2 + rng.randn(n, d) * np.sqrt(b)
    closed = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.fid_from_features(x, y) == pytest.approx(closed, abs=0.02)


def test_feature_stats_streaming_equals_batch():
    rng = np.random.RandomState(3)
    f = rng.randn(103, 7) * 3 + 100.0  # large offset: the merge must not cancel catastrophically
    s = metrics.FeatureStats(7, keep_features=True)
    for i in range(0, 103, 10):
        s.update(f[i : i + 10])
    assert s.count == 103
    np.testing.assert_allclose(s.mean, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(f, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(s.features, f.astype(np.float32))
    with pytest.raises(ValueError, match="features"):
        s.update(np.zeros((2, 6)))


# ---------------------------------------------------------------- KID


def test_kid_equals_brute_force_unbiased_mmd():
    rng = np.random.RandomState(4)
    x, y = rng.randn(9, 5), rng.randn(7, 5) + 0.3
    k = lambda a, b: (a @ b / 5 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    yy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    xy = sum(k(x[i], y[j]) for i in range(9) for j in range(7)) / (9 * 7)
    assert metrics.polynomial_mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_about_zero_for_one_distribution_and_positive_otherwise():
    rng = np.random.RandomState(5)
    d = 16
    x, y, z = rng.randn(600, d), rng.randn(600, d), rng.randn(600, d) * 1.3 + 0.2
    same, same_std = metrics.kernel_inception_distance(x, y, num_subsets=20, subset_size=300)
    diff, _ = metrics.kernel_inception_distance(x, z, num_subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3
    assert diff > 10 * abs(same) and diff > 5 * same_std
    # unbiased: the mean over many independent same-distribution draws is close to 0
    draws = [
        metrics.polynomial_mmd2_unbiased(rng.randn(50, d), rng.randn(50, d)) for _ in range(200)
    ]
    assert abs(np.mean(draws)) < 3 * np.std(draws) / np.sqrt(200)


# ---------------------------------------------------------------- Inception-v3


def test_inception_weight_names_and_parameter_count():
    shapes = metrics.inception_weight_shapes()
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    trainable = sum(
        int(np.prod(s)) for k, s in shapes.items() if not k.endswith(("running_mean", "running_var"))
    )
    # torchvision lists 27,161,264 parameters for inception_v3 with the 1000-way fc
    # (2,049,000) and the AuxLogits head (3,326,696): the pool3 backbone is the rest.
    assert trainable == 27_161_264 - 2_049_000 - 3_326_696


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    sd = metrics.random_inception_state_dict(seed=0)
    sd["fc.weight"] = np.zeros((1008, 2048), np.float32)  # extra entries are ignored
    path = tmp_path_factory.mktemp("inception") / "inception.npz"
    np.savez(path, **sd)
    return sd, str(path)


def test_inception_features_from_npz_file(weights):
    sd, path = weights
    extractor = metrics.load_inception(path, resize=False, batch_size=4)
    x = np.random.RandomState(0).uniform(-1, 1, (4, 75, 75, 3)).astype(np.float32)
    f = extractor(x)
    chex.assert_shape(f, (4, metrics.inception.FEATURE_DIM))
    assert np.all(np.isfinite(f)) and np.all(f >= 0)  # means of ReLU outputs
    assert np.std(f[0] - f[1]) > 0  # different images, different features
    np.testing.assert_allclose(extractor(x[:1]), f[:1], rtol=1e-4, atol=1e-5)  # batching
    # the loaded variables round-trip to the same torch-layout arrays
    back = metrics.state_dict_from_variables(extractor.variables)
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k])
    # FID of a set with itself is 0; against other images it is positive
    y = np.random.RandomState(1).uniform(-1, 1, (4, 75, 75, 3)).astype(np.float32) * 0.2
    other = metrics.fid_from_features(f, extractor(y))
    assert other > 0
    assert abs(metrics.fid_from_features(f, f)) < 1e-4 * other


def test_inception_weight_file_errors(tmp_path):
    sd = metrics.random_inception_state_dict(seed=0)
    del sd["Mixed_5b.branch1x1.conv.weight"]
    with pytest.raises(ValueError, match="lacks 1 of"):
        metrics.variables_from_state_dict(sd)
    sd = metrics.random_inception_state_dict(seed=0)
    sd["Conv2d_1a_3x3.conv.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="shapes do not match"):
        metrics.variables_from_state_dict(sd)
    with pytest.raises(FileNotFoundError, match="user-supplied weights"):
        metrics.load_inception(str(tmp_path / "missing.npz"))


def test_inception_architecture_variants_have_the_same_weights():
    # pytorch-fid's FID variant differs from torchvision's only in pooling, not in parameters
    assert metrics.inception_weight_shapes(True) == metrics.inception_weight_shapes(False)
    out = jax.eval_shape(
        metrics.InceptionV3Features(fid_variant=False).init, jax.random.key(0),
        jax.ShapeDtypeStruct((2, 299, 299, 3), np.float32),
    )
    assert out["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"].shape == (1, 1, 2048, 192)


def test_evaluate_generator_fid_and_kid(weights):
    _, path = weights
    extractor = metrics.load_inception(path, resize=False, batch_size=4)  # same compiled shape
    rng = np.random.RandomState(7)
    reals = [rng.uniform(-1, 1, (3, 75, 75, 3)).astype(np.float32) for _ in range(3)]

    def sample_fn(key, n):
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        return np.random.RandomState(seed).uniform(-0.2, 0.2, (n, 75, 75, 3)).astype(np.float32)

    key = jax.random.key(0)
    out = metrics.evaluate_generator(
        sample_fn, iter(reals), metrics=("fid", "kid"), num_images=6, key=key, batch_size=4,
        inception=extractor, kid_subsets=3, kid_subset_size=4,
    )
    assert set(out) == {"fid", "kid", "kid_std"}
    # the same numbers from the features directly
    k_sample = jax.random.split(key, 4)[0]
    fake = np.concatenate([sample_fn(jax.random.fold_in(k_sample, i), n) for i, n in ((0, 4), (1, 2))])
    real = np.concatenate(reals)[:6]
    f_real, f_fake = extractor(real), extractor(fake)
    assert out["fid"] == pytest.approx(metrics.fid_from_features(f_real, f_fake), rel=1e-4)
    kid = metrics.kernel_inception_distance(f_real, f_fake, num_subsets=3, subset_size=4)
    assert out["kid"] == pytest.approx(kid[0], rel=1e-4, abs=1e-9)
    assert out["fid"] > 0
