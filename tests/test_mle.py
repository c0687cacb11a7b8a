"""gencourse.mle against independent oracles: torch.distributions, scipy, scikit-learn, Monte Carlo."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from sklearn.mixture import GaussianMixture

from gencourse import mle

D = torch.distributions


def test_entropy_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 7, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(5, 7, generator=g, dtype=torch.float64), -1)
    cp, cq = D.Categorical(probs=p), D.Categorical(probs=q)
    torch.testing.assert_close(mle.entropy(p), cp.entropy())
    torch.testing.assert_close(mle.kl_divergence(p, q), D.kl_divergence(cp, cq))
    torch.testing.assert_close(mle.cross_entropy(p, q), mle.entropy(p) + mle.kl_divergence(p, q))


def test_zero_probabilities():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert mle.entropy(p) == pytest.approx(math.log(2))
    assert mle.kl_divergence(p, q) == pytest.approx(math.log(2))
    assert mle.kl_divergence(q, p) == float("inf")


def test_gaussian_mle_maximises_likelihood():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 + 1
    mean, var = mle.gaussian_mle(x)
    ll = D.Normal(mean, var.sqrt()).log_prob(x).sum()
    for dm, dv in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert D.Normal(mean + dm, (var + dv).sqrt()).log_prob(x).sum() < ll
    np.testing.assert_allclose(var.numpy(), np.var(x.numpy(), axis=0, ddof=0))


def test_poisson_mle_and_map_match_numerical_optimum():
    k = torch.tensor([0, 2, 3, 1, 4, 2, 2, 5])
    lam = mle.poisson_mle(k)
    best = optimize.minimize_scalar(lambda r: -stats.poisson.logpmf(k.numpy(), r).sum(), bounds=(0.01, 20), method="bounded")
    assert float(lam) == pytest.approx(best.x, abs=1e-4)
    a, b = 3.0, 2.0  # Gamma(shape a, rate b) prior
    post = lambda r: -(stats.poisson.logpmf(k.numpy(), r).sum() + stats.gamma.logpdf(r, a, scale=1 / b))
    best = optimize.minimize_scalar(post, bounds=(0.01, 20), method="bounded")
    assert float(mle.poisson_map(k, a, b)) == pytest.approx(best.x, abs=1e-4)


def test_gaussian_map_mean_is_posterior_mode():
    x = torch.tensor([2.0, 2.5, 3.5], dtype=torch.float64)
    post = lambda m: -(stats.norm.logpdf(x.numpy(), m, 1.0).sum() + stats.norm.logpdf(m, 0.0, 0.5))
    best = optimize.minimize_scalar(post)
    assert float(mle.gaussian_map_mean(x, 1.0, 0.0, 0.25)) == pytest.approx(best.x, abs=1e-5)


def test_quadrature_kl_matches_scipy_and_closed_form():
    x = torch.linspace(-20, 20, 8001, dtype=torch.float64)
    lp, lq = mle.normal_log_pdf(x, 0.0, 1.0), mle.normal_log_pdf(x, 1.0, 2.0)
    closed = math.log(2.0) + (1 + 1) / (2 * 4) - 0.5  # KL(N(0,1) || N(1,4))
    assert float(mle.forward_kl(lp, lq, x)) == pytest.approx(closed, abs=1e-7)
    f = lambda t: stats.norm.pdf(t, 1, 2) * (stats.norm.logpdf(t, 1, 2) - stats.norm.logpdf(t, 0, 1))
    assert float(mle.reverse_kl(lp, lq, x)) == pytest.approx(integrate.quad(f, -30, 30)[0], abs=1e-6)


def test_forward_kl_covers_reverse_kl_seeks_modes():
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    lp = mle.mixture_1d_log_pdf(x, [0.6, 0.4], [-2.5, 2.5], [0.6, 0.6])
    mus, sigmas = torch.linspace(-4, 4, 161, dtype=torch.float64), torch.linspace(0.2, 4, 77, dtype=torch.float64)
    mu_f, s_f = mle.fit_gaussian_kl(lp, x, "forward", mus, sigmas)
    # forward KL optimum = moment matching of the mixture
    mean = 0.6 * -2.5 + 0.4 * 2.5
    var = 0.6 ** 2 * 0 + 0.36 + 0.6 * 2.5 ** 2 + 0.4 * 2.5 ** 2 - mean ** 2
    assert float(mu_f) == pytest.approx(mean, abs=0.05)
    assert float(s_f) == pytest.approx(math.sqrt(var), abs=0.05)
    mu_r, s_r = mle.fit_gaussian_kl(lp, x, "reverse", mus, sigmas)
    assert float(mu_r) == pytest.approx(-2.5, abs=0.05) and float(s_r) == pytest.approx(0.6, abs=0.05)


def test_gmm_log_prob_and_em_match_sklearn():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([0, 0], 0.5, (150, 2)), rng.normal([3, 1], [1.0, 0.3], (100, 2))])
    w0, m0 = np.array([0.5, 0.5]), x[[0, 200]]
    c0 = np.stack([np.eye(2), np.eye(2)])
    gm = GaussianMixture(2, covariance_type="full", weights_init=w0, means_init=m0,
                         precisions_init=np.linalg.inv(c0), max_iter=1, tol=0, reg_covar=1e-6).fit(x)
    xt = torch.from_numpy(x)
    w, m, c = mle.em_step(xt, torch.from_numpy(w0), torch.from_numpy(m0), torch.from_numpy(c0))
    np.testing.assert_allclose(w.numpy(), gm.weights_, rtol=1e-8)
    np.testing.assert_allclose(m.numpy(), gm.means_, rtol=1e-8)
    np.testing.assert_allclose(c.numpy(), gm.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mle.gmm_log_prob(xt, w, m, c).numpy(), gm.score_samples(x), rtol=1e-9)


def test_em_never_decreases_likelihood_and_recovers_mixture():
    from gencourse.data import ring

    target = ring(n_modes=4, std=0.3)
    x = target.sample(2000, seed=3).double()
    fits = [mle.fit_gmm(x, 4, iters=200, seed=s) for s in range(5)]  # EM finds local optima: restart
    fit = max(fits, key=lambda f: f.log_likelihood[-1])
    assert all(b >= a - 1e-9 for a, b in zip(fit.log_likelihood, fit.log_likelihood[1:]))
    # a good fit reaches the entropy bound: mean log-likelihood ~ -H(p_data)
    test = target.sample(20000, seed=4).double()
    assert float(fit.log_prob(test).mean()) == pytest.approx(-target.entropy(), abs=0.05)
