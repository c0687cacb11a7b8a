"""gencourse.kernels against independent oracles: SciPy's distances, scikit-learn's kernels and
KernelDensity, NumPy's correlation, a naive double loop for MMD^2, repeated draws for the unbiased
estimator and for the permutation test's level and power, Monte Carlo for the feature maps."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist as scipy_cdist
from scipy.special import logsumexp
from scipy.stats import binom
from sklearn.metrics.pairwise import cosine_similarity, rbf_kernel
from sklearn.neighbors import KernelDensity as SkKernelDensity

from gencourse import data, kernels, metrics
from gencourse.train import fit

DT = torch.float64


def _points(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ---------------------------------------------------------------- distances
METRICS = [("euclidean", {}), ("minkowski", {"p": 1.0}), ("minkowski", {"p": 3.0}), ("mahalanobis", {})]


@pytest.mark.parametrize("metric,kw", METRICS, ids=["euclidean", "cityblock", "minkowski3", "mahalanobis"])
def test_distances_match_scipy(metric, kw):
    x, y = _points(7, 3, 0), _points(5, 3, 1)
    cov = torch.cov(x.T) + 0.1 * torch.eye(3, dtype=DT)
    ours = kernels.pairwise_distances(x, y, metric, cov=cov if metric == "mahalanobis" else None, **kw)
    if metric == "mahalanobis":
        ref = scipy_cdist(x.numpy(), y.numpy(), "mahalanobis", VI=torch.linalg.inv(cov).numpy())
    elif metric == "minkowski":
        ref = scipy_cdist(x.numpy(), y.numpy(), "minkowski", p=kw["p"])
    else:
        ref = scipy_cdist(x.numpy(), y.numpy(), "euclidean")
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("metric,kw", METRICS, ids=["euclidean", "cityblock", "minkowski3", "mahalanobis"])
def test_distance_axioms(metric, kw):
    x = _points(9, 3, 2)
    d = kernels.pairwise_distances(x, metric=metric, **kw)
    assert (d >= 0).all() and torch.allclose(d.diagonal(), torch.zeros(9, dtype=DT), atol=1e-7)
    off = d + torch.eye(9, dtype=DT)
    assert (off > 0).all()  # distinct points are at positive distance
    torch.testing.assert_close(d, d.T)
    for i, j, k in itertools.permutations(range(9), 3):
        assert d[i, k] <= d[i, j] + d[j, k] + 1e-12


def test_minkowski_below_one_is_refused():
    """p < 1 breaks the triangle inequality: (0,0)-(1,1) is longer than via (1,0)."""
    with pytest.raises(ValueError, match="p >= 1"):
        kernels.pairwise_distances(_points(3, 2), metric="minkowski", p=0.5)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=DT)
    d = torch.cdist(x, x, p=0.5)
    assert d[0, 2] > d[0, 1] + d[1, 2]


def test_affinities_match_numpy_and_sklearn():
    x, y = _points(6, 4, 3), _points(5, 4, 4)
    np.testing.assert_allclose(kernels.cosine_affinity(x, y).numpy(), cosine_similarity(x.numpy(), y.numpy()), rtol=1e-12)
    corr = np.corrcoef(np.concatenate([x.numpy(), y.numpy()]))[:6, 6:]
    np.testing.assert_allclose(kernels.correlation_affinity(x, y).numpy(), corr, rtol=1e-10)
    for h in (0.5, 2.0):
        np.testing.assert_allclose(kernels.gaussian_kernel(x, y, h).numpy(),
                                   rbf_kernel(x.numpy(), y.numpy(), gamma=1 / (2 * h * h)), rtol=1e-10)
    both = kernels.gaussian_kernel(x, y, [0.5, 2.0])
    torch.testing.assert_close(both, kernels.gaussian_kernel(x, y, 0.5) + kernels.gaussian_kernel(x, y, 2.0))


# ---------------------------------------------------------------- kernels as inner products
def test_polynomial_feature_map_gram_equals_the_kernel():
    x, y = _points(6, 3, 5), _points(4, 3, 6)
    phi_x, phi_y = kernels.polynomial_features(x, c=0.7), kernels.polynomial_features(y, c=0.7)
    torch.testing.assert_close(phi_x @ phi_y.T, kernels.polynomial_kernel(x, y, c=0.7), rtol=1e-12, atol=1e-12)


def test_random_fourier_features_approach_the_gaussian_kernel():
    x = _points(20, 2, 7)
    exact = kernels.gaussian_kernel(x, bandwidth=1.3)
    errors = []
    for r in (50, 500, 20000):
        phi = kernels.random_fourier_features(x, r, 1.3, generator=torch.Generator().manual_seed(0))
        errors.append(float((phi @ phi.T - exact).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors


# ---------------------------------------------------------------- KDE
@pytest.mark.parametrize("d", [1, 2, 5])
def test_kde_log_density_matches_sklearn_and_scipy(d):
    """scikit-learn's KernelDensity where its tree bounds are exact (1-D, 2-D); in 5-D its trees
    underflow for far queries (off by 10+ nats), so the oracle there is SciPy's logsumexp by brute force."""
    train, query = _points(300, d, 8), _points(50, d, 9) * 1.5
    for h in (0.2, 0.7):
        ours = kernels.kde_log_prob(query, train, h, chunk=7).numpy()
        d2 = ((query[:, None] - train[None]) ** 2).sum(-1).numpy()
        brute = logsumexp(-d2 / (2 * h * h), axis=1) - math.log(300) - 0.5 * d * math.log(2 * math.pi * h * h)
        np.testing.assert_allclose(ours, brute, rtol=1e-10, atol=1e-10)
        if d <= 2:
            ref = SkKernelDensity(kernel="gaussian", bandwidth=h).fit(train.numpy()).score_samples(query.numpy())
            np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_kde_is_finite_far_from_the_data():
    """Log space: a query 60 bandwidths away still has a finite log-density (a naive sum of exp underflows)."""
    train = _points(100, 2, 10)
    lp = kernels.kde_log_prob(torch.tensor([[30.0, 0.0]], dtype=DT), train, 0.5)
    assert torch.isfinite(lp).all()
    naive = torch.log(torch.exp(-((train - torch.tensor([30.0, 0.0], dtype=DT)) ** 2).sum(1) / 0.5).mean())
    assert not torch.isfinite(naive)


def test_held_out_bandwidth_beats_too_small_and_too_large():
    toy = data.ring()
    train, val, test = toy.sample(500, 0).double(), toy.sample(500, 1).double(), toy.sample(2000, 2).double()
    candidates = [0.01, 0.03, 0.05, 0.08, 0.12, 0.2, 0.4, 1.0]
    best, scores = kernels.select_bandwidth(train, val, candidates)
    assert 0.03 <= best <= 0.2 and scores.argmax() not in (0, len(candidates) - 1)
    nll = {h: float(-kernels.kde_log_prob(test, train, h).mean()) for h in (0.01, best, 1.0)}
    assert nll[best] < nll[0.01] and nll[best] < nll[1.0]
    assert nll[best] > toy.entropy()  # the entropy is the floor of the expected NLL
    for rule in (kernels.scott_bandwidth, kernels.silverman_bandwidth):
        assert 0.05 < rule(train) < 2.0


def test_kernel_density_model_samples_the_mixture():
    centres = _points(50, 2, 11)
    kde = kernels.KernelDensity(centres, 0.3)
    s = kde.sample(40000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.mean(0), centres.mean(0), atol=0.03, rtol=0)
    cov = torch.cov(centres.T, correction=0) + 0.09 * torch.eye(2, dtype=DT)
    torch.testing.assert_close(torch.cov(s.T), cov, atol=0.04, rtol=0)


# ---------------------------------------------------------------- MMD
def _naive_mmd2(x, y, hs, unbiased):
    def k(a, b):
        return sum(math.exp(-float(((a - b) ** 2).sum()) / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    if unbiased:
        kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    else:
        kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n)) / n ** 2
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd2_equals_a_naive_double_loop(unbiased):
    x, y = _points(8, 3, 12), _points(6, 3, 13) + 0.5
    hs = [0.5, 1.0, 3.0]
    assert float(kernels.mmd2(x, y, hs, unbiased=unbiased)) == pytest.approx(_naive_mmd2(x, y, hs, unbiased), abs=1e-12)


def test_unbiased_mmd2_has_mean_zero_under_the_null_and_the_biased_one_does_not():
    gen = torch.Generator().manual_seed(14)
    draws = [(torch.randn(20, 2, generator=gen, dtype=DT), torch.randn(20, 2, generator=gen, dtype=DT))
             for _ in range(400)]
    unb = torch.tensor([float(kernels.mmd2(a, b, 1.0, unbiased=True)) for a, b in draws])
    bia = torch.tensor([float(kernels.mmd2(a, b, 1.0)) for a, b in draws])
    se = float(unb.std()) / math.sqrt(len(unb))
    assert abs(float(unb.mean())) < 3 * se
    assert (bia >= 0).all() and float(bia.mean()) > 10 * se  # the V-statistic's diagonal bias


def _rejections(shift, reps, n=25, perms=99, alpha=0.05, seed=15):
    gen = torch.Generator().manual_seed(seed)
    p_values = []
    for _ in range(reps):
        x = torch.randn(n, 2, generator=gen, dtype=DT)
        y = torch.randn(n, 2, generator=gen, dtype=DT) + torch.tensor([shift, 0.0], dtype=DT)
        p_values.append(kernels.mmd_permutation_test(x, y, 1.0, n_permutations=perms, generator=gen)[1])
    p_values = torch.tensor(p_values, dtype=DT)
    return int((p_values <= alpha).sum()), p_values


def test_permutation_test_holds_its_level():
    """Under the null the rejection rate at alpha = 0.05 is within the binomial 99.9 % interval, and
    no p-value is below 1 / (B + 1) (the +1 correction)."""
    reps = 300
    k, p_values = _rejections(0.0, reps)
    lo, hi = binom.ppf(0.0005, reps, 0.05), binom.ppf(0.9995, reps, 0.05)
    assert lo <= k <= hi, (k, lo, hi)
    assert float(p_values.min()) >= 1 / 100
    # p-values are (discrete) uniform: about a quarter fall below 0.25
    assert abs(float((p_values <= 0.25).float().mean()) - 0.25) < 0.1


def test_permutation_test_has_power_against_a_shift():
    k, _ = _rejections(1.5, 40, n=40, seed=16)
    assert k >= 36, k  # power >= 0.9 at a shift of 1.5 standard deviations, n = 40
    k_small, _ = _rejections(0.5, 40, n=40, seed=16)
    assert k_small < k  # and less against a smaller shift


def test_permutation_statistics_reuse_one_gram_matrix_correctly():
    """The observed statistic equals mmd2 on the same data; every null draw is a relabelled mmd2."""
    x, y = _points(10, 2, 17), _points(12, 2, 18)
    t, p, null = kernels.mmd_permutation_test(x, y, 0.8, n_permutations=20, generator=torch.Generator().manual_seed(0))
    assert t == pytest.approx(float(kernels.mmd2(x, y, 0.8, unbiased=True)))
    perm = torch.randperm(22, generator=torch.Generator().manual_seed(0))
    z = torch.cat([x, y])[perm]
    assert float(null[0]) == pytest.approx(float(kernels.mmd2(z[:10], z[10:], 0.8, unbiased=True)))
    assert 0 < p <= 1 and len(null) == 20


# ---------------------------------------------------------------- MMD nets and the metric
def test_mmd_net_reduces_mmd_to_held_out_data():
    toy = data.ring()
    x, held = toy.sample(2000, 0), toy.sample(1000, 1)
    torch.manual_seed(0)
    net = MMD = kernels.MMDNet(2, noise_dim=4, hidden=(64, 64), bandwidths=(0.1, 0.3, 1.0, 3.0))
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    before = metrics.mmd_to_data(net.sample(1000, generator=gen()), held)
    fit(MMD, x, epochs=60, batch_size=256, lr=2e-3, progress=False)
    after = metrics.mmd_to_data(net.sample(1000, generator=gen()), held)
    floor = abs(metrics.mmd_to_data(toy.sample(1000, 3), held))
    assert after < 0.1 * before, (before, after)
    assert after < 0.02 + 10 * floor


def test_mmd_to_data_is_near_zero_for_the_same_distribution():
    toy = data.grid()
    same = metrics.mmd_to_data(toy.sample(500, 0), toy.sample(500, 1))
    other = metrics.mmd_to_data(data.ring().sample(500, 0), toy.sample(500, 1))
    assert abs(same) < 0.01 < other


def test_minkowski_two_is_exact_for_large_coordinates():
    """No |x|^2 + |y|^2 - 2 x^T y cancellation: 30 float32 points near (1000, -1000)."""
    x = torch.tensor([1000.0, -1000.0]) + 0.01 * torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
    exact = scipy_cdist(x.double().numpy(), x.double().numpy())
    ours = kernels.pairwise_distances(x, metric="minkowski", p=2.0).double().numpy()
    np.testing.assert_allclose(ours, exact, atol=1e-4)
