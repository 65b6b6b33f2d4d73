"""Fréchet and Kernel Inception Distance on any (N, D) features, in host float64 numpy.

With Inception-v3 pool3 features (:mod:`jaxgan.metrics.inception`) these are FID (Heusel et al.
2017) and KID (Bińkowski et al. 2018).

* FID = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)) with unbiased (ddof=1)
  covariances, as pytorch-fid; the trace is sum sqrt(eig(R S_b R)), R = S_a^(1/2), a symmetric
  PSD eigenproblem, so no complex parts appear (rounding's negative eigenvalues are clipped to 0).
* KID = unbiased squared MMD with the kernel k(x, y) = (x.y / D + 1)^3, averaged over random
  subsets (default 100 of 1000, drawn without replacement within a subset).
"""
from __future__ import annotations

import numpy as np


class FeatureStats:
    """Streaming float64 mean and covariance of (N, D) features; ``keep_features`` keeps them."""

    def __init__(self, dim: int, keep_features: bool = False):
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim)
        self._m2 = np.zeros((dim, dim))
        self._features: list[np.ndarray] | None = [] if keep_features else None

    def update(self, features: np.ndarray) -> None:
        """Add a batch of (n, D) features."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) features, got {f.shape}")
        n = f.shape[0]
        if n == 0:
            return
        mean_b = f.mean(axis=0)
        c = f - mean_b
        m2_b = c.T @ c
        delta = mean_b - self.mean
        total = self.count + n
        self._m2 += m2_b + np.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total
        if self._features is not None:
            self._features.append(np.asarray(features, np.float32))

    @property
    def cov(self) -> np.ndarray:
        """(D, D) unbiased sample covariance."""
        if self.count < 2:
            raise ValueError("a covariance needs at least 2 feature vectors")
        return self._m2 / (self.count - 1)

    @property
    def features(self) -> np.ndarray:
        """(N, D) float32 features seen so far (only with ``keep_features=True``)."""
        if self._features is None:
            raise ValueError("FeatureStats was created with keep_features=False")
        if len(self._features) > 1:
            self._features[:] = [np.concatenate(self._features, axis=0)]
        return self._features[0] if self._features else np.empty((0, self.dim), np.float32)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu_a, sigma_a) and N(mu_b, sigma_b).

    Means are (D,), covariances (D, D) symmetric PSD; the result is >= 0 up to rounding.
    """
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sa, sb = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
    d = mu_a.shape[0]
    if mu_b.shape != (d,) or sa.shape != (d, d) or sb.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu {mu_a.shape}/{mu_b.shape}, sigma {sa.shape}/{sb.shape}"
        )
    r = _sqrt_psd(sa)
    m = r @ sb @ r
    tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None)))
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * tr_sqrt)


def _fid_low_rank(fa: np.ndarray, fb: np.ndarray) -> float:
    """Exact FID from the features, cheap when N < D: for centred A (n_a, D) and B (n_b, D),
    tr((S_a S_b)^(1/2)) is the nuclear norm of B A^T over sqrt((n_a - 1)(n_b - 1)).
    """
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    na, nb = fa.shape[0], fb.shape[0]
    mu_a, mu_b = fa.mean(axis=0), fb.mean(axis=0)
    a, b = fa - mu_a, fb - mu_b
    tr_sqrt = np.sum(np.linalg.svd(b @ a.T, compute_uv=False)) / np.sqrt((na - 1) * (nb - 1))
    diff = mu_a - mu_b
    return float(
        diff @ diff + np.sum(a * a) / (na - 1) + np.sum(b * b) / (nb - 1) - 2.0 * tr_sqrt
    )


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two :class:`FeatureStats` (exact low-rank route when both kept their
    features and hold fewer vectors than dimensions)."""
    if (
        a._features is not None and b._features is not None
        and min(a.count, b.count) < a.dim
    ):
        return _fid_low_rank(a.features, b.features)
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between (N_a, D) and (N_b, D) feature sets (exact low-rank route when N < D)."""
    fa, fb = np.asarray(features_a), np.asarray(features_b)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"expected (N, D) feature sets of one D, got {fa.shape} and {fb.shape}")
    if min(fa.shape[0], fb.shape[0]) < 2:
        raise ValueError("FID needs at least 2 feature vectors per set")
    if min(fa.shape[0], fb.shape[0]) < fa.shape[1]:
        return _fid_low_rank(fa, fb)
    stats = []
    for f in (fa, fb):
        s = FeatureStats(f.shape[1])
        s.update(f)
        stats.append(s)
    return fid_from_stats(*stats)


def polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD^2 between (m, D) ``x`` and (n, D) ``y`` with k(a, b) = (a.b / D + 1)^degree."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples per set")
    kxx = (x @ x.T / d + 1.0) ** degree
    kyy = (y @ y.T / d + 1.0) ** degree
    kxy = (x @ y.T / d + 1.0) ** degree
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kernel_inception_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID ``(mean, std)`` of the unbiased polynomial MMD^2 over ``num_subsets`` random subsets.

    Features are (N_a, D), (N_b, D); ``subset_size`` is clipped to min(N_a, N_b); ``seed`` is
    numpy's, for the subsets.
    """
    fa, fb = np.asarray(features_a), np.asarray(features_b)
    size = min(subset_size, fa.shape[0], fb.shape[0])
    rng = np.random.RandomState(seed)
    vals = [
        polynomial_mmd2_unbiased(
            fa[rng.choice(fa.shape[0], size, replace=False)],
            fb[rng.choice(fb.shape[0], size, replace=False)],
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals))
