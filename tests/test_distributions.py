"""gencourse.distributions against torch.distributions, CDF differences and Monte Carlo: one
convention (x first, summed over event_dims, nats), every density and sampler."""
import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from gencourse import distributions as dist
from gencourse.data import N_LEVELS

DT = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- log-densities
def test_gaussian_log_probs_vs_torch_distributions():
    g = _gen(2)
    x, m, lv = (torch.randn(4, 6, generator=g, dtype=DT) for _ in range(3))
    ref = D.Independent(D.Normal(m, (0.5 * lv).exp()), 1).log_prob(x)
    torch.testing.assert_close(dist.gaussian_log_prob(x, m, lv), ref)
    torch.testing.assert_close(dist.gaussian_log_prob(x, m, lv, event_dims=0), D.Normal(m, (0.5 * lv).exp()).log_prob(x))
    torch.testing.assert_close(dist.gaussian_log_prob(x, m, lv, event_dims=2), ref.sum())
    torch.testing.assert_close(dist.standard_normal_log_prob(x), D.Normal(0.0, 1.0).log_prob(x).sum(-1))
    sigma = 0.3  # a shared, fixed variance given as a number
    ref = D.Independent(D.Normal(m, sigma), 1).log_prob(x)
    torch.testing.assert_close(dist.gaussian_log_prob(x, m, 2 * math.log(sigma)), ref)
    assert dist.LOG_2PI == pytest.approx(math.log(2 * math.pi))


def test_multivariate_normal_log_prob_vs_torch_distributions():
    g = _gen(7)
    x = torch.randn(9, 3, generator=g, dtype=DT)
    mean = torch.randn(4, 3, generator=g, dtype=DT)
    a = torch.randn(4, 3, 3, generator=g, dtype=DT)
    cov = a @ a.transpose(-1, -2) + 0.1 * torch.eye(3, dtype=DT)
    out = dist.multivariate_normal_log_prob(x, mean, cov)
    assert out.shape == (4, 9)  # every point under every Gaussian
    torch.testing.assert_close(out, D.MultivariateNormal(mean[:, None], cov[:, None]).log_prob(x))
    torch.testing.assert_close(dist.multivariate_normal_log_prob(x, mean[0], cov[0]), out[0])


def test_bernoulli_log_prob_vs_torch_distributions_and_is_stable():
    g = _gen(3)
    logits = 5 * torch.randn(7, 64, generator=g, dtype=DT)
    x = torch.bernoulli(torch.full((7, 64), 0.4, dtype=DT), generator=g)
    ref = D.Independent(D.Bernoulli(logits=logits), 1).log_prob(x)
    torch.testing.assert_close(dist.bernoulli_log_prob(x, logits), ref)
    torch.testing.assert_close(dist.bernoulli_log_prob(x, logits, event_dims=0), D.Bernoulli(logits=logits).log_prob(x))
    big = torch.tensor([[200.0, -200.0]])
    torch.testing.assert_close(dist.bernoulli_log_prob(torch.tensor([[0.0, 1.0]]), big), torch.tensor([-400.0]))
    # x broadcasts against a leading sample dimension of the logits
    logits_s = torch.randn(3, 7, 64, generator=g, dtype=DT)
    torch.testing.assert_close(dist.bernoulli_log_prob(x, logits_s)[2], dist.bernoulli_log_prob(x, logits_s[2]))


def test_categorical_log_prob_vs_torch_distributions():
    g = _gen(4)
    logits = torch.randn(5, 64, N_LEVELS, generator=g, dtype=DT)
    x = torch.randint(0, N_LEVELS, (5, 64), generator=g)
    ref = D.Independent(D.Categorical(logits=logits), 1).log_prob(x)
    out = dist.categorical_log_prob(x, logits)
    assert out.shape == (5,)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(dist.categorical_log_prob(x, logits, event_dims=0), D.Categorical(logits=logits).log_prob(x))
    # leading sample dimension broadcasts against x
    logits_s = torch.randn(3, 5, 64, N_LEVELS, generator=g, dtype=DT)
    torch.testing.assert_close(dist.categorical_log_prob(x, logits_s)[1], dist.categorical_log_prob(x, logits_s[1]))


def test_discretized_logistic_normalizes_and_matches_cdf_differences():
    K = 17
    levels = torch.arange(K, dtype=DT)
    g = _gen(2)
    mean = torch.cat([torch.rand(50, generator=g, dtype=DT) * 30 - 7, torch.tensor([-500.0, 500.0, 8.0], dtype=DT)])
    log_scale = torch.cat([torch.rand(50, generator=g, dtype=DT) * 6 - 4, torch.tensor([-5.0, -5.0, -6.9], dtype=DT)])
    lp = dist.discretized_logistic_log_prob(levels[None, :], mean[:, None], log_scale[:, None], K, event_dims=0)  # (53, K)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(len(mean), dtype=DT))
    # oracle: differences of the logistic CDF (torch.distributions) for the moderate cases
    base = D.TransformedDistribution(D.Uniform(torch.zeros(()), torch.ones(())),
                                     [D.transforms.SigmoidTransform().inv])  # standard logistic
    s = log_scale[:50, None].exp()
    cdf = lambda t: base.cdf(((t - mean[:50, None]) / s).float()).double()  # noqa: E731
    up = torch.where(levels == K - 1, torch.ones(()), cdf(levels + 0.5))
    lo = torch.where(levels == 0, torch.zeros(()), cdf(levels - 0.5))
    torch.testing.assert_close(lp[:50].exp(), up - lo, atol=1e-6, rtol=0)
    # the default sums over the last dimension
    torch.testing.assert_close(dist.discretized_logistic_log_prob(levels[None, :], mean[:, None], log_scale[:, None], K),
                               lp.sum(-1))



def test_discretized_logistic_mixture_against_scipy_and_its_components():
    """P(k) = sum_m pi_m [F_m(k + 1/2) - F_m(k - 1/2)] with the end bins extended, F_m the logistic CDF
    (SciPy); M = 1 is the single discretized logistic; the probabilities of the levels sum to 1."""
    from scipy.stats import logistic

    K, M = 17, 3
    g = _gen(7)
    logits = torch.randn(20, M, generator=g, dtype=DT) * 2
    mean = torch.rand(20, M, generator=g, dtype=DT) * 22 - 3
    log_scale = torch.rand(20, M, generator=g, dtype=DT) * 4 - 3
    levels = torch.arange(K)
    lp = dist.discretized_logistic_mixture_log_prob(levels[:, None], logits[None], mean[None], log_scale[None], K,
                                                    event_dims=0)  # (K, 20)
    torch.testing.assert_close(lp.exp().sum(0), torch.ones(20, dtype=DT))
    k, mu, s = levels[:, None, None].double().numpy(), mean[None].numpy(), log_scale[None].exp().numpy()
    upper = np.where(k == K - 1, 1.0, logistic.cdf(k + 0.5, mu, s))
    lower = np.where(k == 0, 0.0, logistic.cdf(k - 0.5, mu, s))
    expected = ((upper - lower) * torch.softmax(logits, -1)[None].numpy()).sum(-1)  # (K, 20)
    np.testing.assert_allclose(lp.exp().numpy(), expected, atol=1e-12, rtol=1e-9)
    one = dist.discretized_logistic_mixture_log_prob(levels[:, None], logits[None, :, :1], mean[None, :, :1],
                                                     log_scale[None, :, :1], K, event_dims=0)
    torch.testing.assert_close(one, dist.discretized_logistic_log_prob(levels[:, None], mean[None, :, 0],
                                                                       log_scale[None, :, 0], K, event_dims=0))
    x = torch.randint(0, K, (4, 20), generator=g)  # the default sums over the last dimension
    torch.testing.assert_close(dist.discretized_logistic_mixture_log_prob(x, logits, mean, log_scale, K),
                               dist.discretized_logistic_mixture_log_prob(x, logits, mean, log_scale, K,
                                                                          event_dims=0).sum(-1))


def test_discretized_logistic_mixture_sampler_by_its_frequencies():
    n, K = 200_000, 17
    logits, mean, log_scale = torch.tensor([0.3, -0.5, 1.0]), torch.tensor([1.0, 8.2, 14.5]), torch.tensor([0.1, -0.7, 0.4])
    draws = dist.discretized_logistic_mixture_sample(logits.expand(n, 3), mean.expand(n, 3), log_scale.expand(n, 3), K,
                                                     _gen(3))
    assert draws.dtype == torch.int64 and draws.shape == (n,)
    freq = torch.bincount(draws, minlength=K).double() / n
    probs = dist.discretized_logistic_mixture_log_prob(torch.arange(K), logits.expand(K, 3), mean.expand(K, 3),
                                                       log_scale.expand(K, 3), K, event_dims=0).exp().double()
    assert torch.all((freq - probs).abs() < 5 * (probs * (1 - probs) / n).sqrt() + 1e-4)
    assert torch.equal(draws[:50], dist.discretized_logistic_mixture_sample(
        logits.expand(n, 3), mean.expand(n, 3), log_scale.expand(n, 3), K, _gen(3))[:50])

# ---------------------------------------------------------------- KL
def test_kl_closed_form_vs_torch_distributions_and_monte_carlo():
    g = _gen(1)
    mu = torch.randn(5, 3, generator=g, dtype=DT)
    log_var = torch.randn(5, 3, generator=g, dtype=DT)
    kl = dist.kl_diag_gaussian_standard_normal(mu, log_var)
    assert kl.shape == (5,)
    q = D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1)
    p = D.Independent(D.Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    torch.testing.assert_close(kl, D.kl_divergence(q, p), atol=1e-10, rtol=0)
    torch.testing.assert_close(dist.kl_diag_gaussian_standard_normal(mu, log_var, event_dims=0),
                               D.kl_divergence(q.base_dist, p.base_dist))
    torch.manual_seed(0)
    z = q.sample((400_000,))  # (S, 5, 3)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S, 5)
    se = log_ratio.std(0) / math.sqrt(len(z))
    assert torch.all((kl - log_ratio.mean(0)).abs() < 5 * se)
    assert torch.all(dist.kl_diag_gaussian_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


# ---------------------------------------------------------------- samplers
def test_reparameterize_matches_definition_and_distribution():
    g = _gen()
    mu, log_var = torch.randn(3, 4, generator=g, dtype=DT), torch.randn(3, 4, generator=g, dtype=DT)
    eps = torch.randn(3, 4, generator=g, dtype=DT)
    z = dist.reparameterize(mu, log_var, eps)
    torch.testing.assert_close(z, mu + log_var.exp().sqrt() * eps)
    # many draws have the right mean and standard deviation
    zs = dist.gaussian_sample(mu, log_var, n_samples=200_000, generator=g)  # (S, 3, 4)
    assert zs.shape == (200_000, 3, 4)
    assert torch.allclose(zs.mean(0), mu, atol=0.02 * log_var.exp().sqrt().max())
    assert torch.allclose(zs.std(0), log_var.exp().sqrt(), rtol=0.01)
    # differentiable in mu and log_var
    mu.requires_grad_(True)
    dist.reparameterize(mu, log_var, eps).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))


def test_discrete_samplers_follow_their_log_probs():
    g = _gen(5)
    n = 40_000
    logits = torch.tensor([0.3, -1.2, 2.0, 0.0])
    draws = dist.categorical_sample(logits.expand(n, 4), g)
    assert draws.shape == (n,) and draws.dtype == torch.int64
    freq = torch.bincount(draws, minlength=4).double() / n
    probs = dist.categorical_log_prob(torch.arange(4), logits.expand(4, 4), event_dims=0).exp().double()
    assert torch.all((freq - probs).abs() < 5 * (probs * (1 - probs) / n).sqrt())
    b = dist.bernoulli_sample(torch.full((n,), 0.7), g)
    p1 = dist.bernoulli_log_prob(torch.ones(()), torch.tensor(0.7), event_dims=0).exp()
    assert set(b.unique().tolist()) <= {0.0, 1.0} and abs(b.mean() - p1) < 5 * math.sqrt(p1 * (1 - p1) / n)
    mean, log_scale = torch.full((n,), 6.3), torch.full((n,), 0.2)
    levels = dist.discretized_logistic_sample(mean, log_scale, N_LEVELS, g)
    freq = torch.bincount(levels, minlength=N_LEVELS).double() / n
    probs = dist.discretized_logistic_log_prob(torch.arange(N_LEVELS), mean[:N_LEVELS], log_scale[:N_LEVELS],
                                               N_LEVELS, event_dims=0).exp().double()
    assert torch.all((freq - probs).abs() < 5 * (probs * (1 - probs) / n).sqrt() + 1e-3)


def test_samplers_are_reproducible_from_a_generator():
    logits = torch.randn(6, 5, generator=_gen(6))
    for draw in (lambda g: dist.categorical_sample(logits, g), lambda g: dist.bernoulli_sample(logits, g),
                 lambda g: dist.gaussian_sample(logits, logits, generator=g),
                 lambda g: dist.discretized_logistic_sample(logits, logits, 4, g)):
        assert torch.equal(draw(_gen(1)), draw(_gen(1)))
        assert not torch.equal(draw(_gen(1)), draw(_gen(2)))
