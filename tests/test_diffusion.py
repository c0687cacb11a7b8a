"""Diffusion models (gencourse.diffusion) against independent oracles.

* the closed form q(x_t | x_0) against the t-fold composition of the one-step kernels (exact moment
  recursion and Monte Carlo);
* the posterior q(x_{t-1} | x_t, x_0) against Gaussian conditioning through the precision matrix
  of torch.distributions' joint;
* the bound on 1-D Gaussian data with the optimal (linear) noise predictor against its expectation
  derived here by hand, below the exact log-likelihood and tight as T grows (and, with the
  posterior variance, not tight);
* on discrete levels, the bound against the likelihood by brute-force quadrature over the latents;
* DDIM with every step and eta = 1 against DDPM (the same draws), and sampling with the exact noise
  predictor against the data distribution.
"""
import math

import pytest
import torch
from scipy import stats
from torch import nn

from gencourse import diffusion as dif
from gencourse.data import ring
from gencourse.distributions import discretized_gaussian_log_prob, kl_diag_gaussians
from gencourse.metrics import modes_covered
from gencourse.train import fit

M, S = 0.5, 0.7  # the 1-D Gaussian data N(M, S^2)


class OptimalLinear(nn.Module):
    """E[eps | x_t] for data N(M, S^2): the best noise predictor there is, linear in x_t."""

    def __init__(self, alpha_bar: torch.Tensor):
        super().__init__()
        self.register_buffer("ab", alpha_bar.double())

    def forward(self, xt, t):
        ab = self.ab[t].reshape(-1, 1).to(xt.dtype)
        return (1 - ab).sqrt() * (xt - ab.sqrt() * M) / (ab * S * S + 1 - ab)


def _gaussian_model(T, reverse_var="beta"):
    model = dif.DDPM(nn.Identity(), 1, T=T, reverse_var=reverse_var).double()
    model.denoiser = OptimalLinear(dif.cosine_schedule(T).neg().add(1).cumprod(0))
    return model


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- schedules and the forward process
def test_schedules():
    lin = dif.linear_schedule(1000)
    assert lin.shape == (1001,) and lin[0] == 0 and lin[1] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    for T in (10, 100, 1000):
        betas = dif.cosine_schedule(T)
        assert betas[0] == 0 and ((betas[1:] > 0) & (betas[1:] <= 0.2)).all()  # clipped at 0.2 ...
        if T >= 100:  # ... and still (almost) pure noise at the end of the course's chains (not of 10 steps)
            assert float((1 - betas).prod()) < 0.003
    # unclipped, the cosine schedule is one process cut into T steps: alpha_bar at the same fraction of T agrees
    ab10 = (1 - dif.cosine_schedule(10, max_beta=0.999)).cumprod(0)
    ab100 = (1 - dif.cosine_schedule(100, max_beta=0.999)).cumprod(0)
    torch.testing.assert_close(ab10[:10], ab100[:100:10])
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(ab100[37]) == pytest.approx(f(0.37) / f(0.0), rel=1e-12)


def test_closed_form_is_the_composition_of_the_one_step_kernels():
    betas = dif.cosine_schedule(50)
    alpha_bar = (1 - betas).cumprod(0)
    x0 = torch.tensor([[1.5, -0.3]], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros(())  # exact: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps
    gen = _gen()
    n = 200_000
    walk = x0.expand(n, 2).clone()
    for t in range(1, 51):
        mean, var = (1 - betas[t]).sqrt() * mean, (1 - betas[t]) * var + betas[t]
        walk = (1 - betas[t]).sqrt() * walk + betas[t].sqrt() * torch.randn(n, 2, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(mean, alpha_bar[t].sqrt() * x0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var, 1 - alpha_bar[t], rtol=1e-12, atol=1e-12)
        if t in (1, 10, 50):  # Monte Carlo: the walk's moments are those of q_sample's draws
            t_all = torch.full((n,), t)
            direct = dif.q_sample(x0.expand(n, 2), t_all, alpha_bar, torch.randn(n, 2, generator=gen, dtype=torch.float64))
            for sample in (walk, direct):
                se = float((1 - alpha_bar[t]).sqrt()) / math.sqrt(n)
                torch.testing.assert_close(sample.mean(0), (alpha_bar[t].sqrt() * x0)[0], atol=5 * se, rtol=0)
                torch.testing.assert_close(sample.var(0), (1 - alpha_bar[t]).expand(2), atol=0.01 * float(1 - alpha_bar[t]) + 1e-6, rtol=0)


def test_posterior_is_gaussian_conditioning():
    betas = dif.linear_schedule(200)
    alpha_bar = (1 - betas).cumprod(0)
    gen = _gen(1)
    t = torch.tensor([2, 17, 100, 200])
    x0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    xt = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    mean, var = dif.q_posterior(x0, xt, t, betas, alpha_bar)
    for b in range(4):
        a_prev, a_t, alpha = alpha_bar[t[b] - 1], alpha_bar[t[b]], 1 - betas[t[b]]
        cov = torch.tensor([[1 - a_prev, alpha.sqrt() * (1 - a_prev)],
                            [alpha.sqrt() * (1 - a_prev), 1 - a_t]], dtype=torch.float64)
        for d in range(3):  # joint of (x_{t-1}, x_t) given x_0, then condition on x_t via the precision
            joint = torch.distributions.MultivariateNormal(torch.stack([a_prev.sqrt(), a_t.sqrt()]) * x0[b, d], cov)
            lam = joint.precision_matrix
            cond_var = 1 / lam[0, 0]
            cond_mean = joint.mean[0] - cond_var * lam[0, 1] * (xt[b, d] - joint.mean[1])
            assert float(mean[b, d]) == pytest.approx(float(cond_mean), rel=1e-9, abs=1e-12)
            assert float(var[b, 0]) == pytest.approx(float(cond_var), rel=1e-9)


def test_reverse_mean_is_the_posterior_mean_at_the_predicted_data_and_the_kl_is_a_weighted_noise_error():
    betas = dif.cosine_schedule(100)
    alpha_bar = (1 - betas).cumprod(0)
    gen = _gen(2)
    t = torch.tensor([1, 5, 50, 100])
    x0, eps, eps_hat = (torch.randn(4, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    xt = dif.q_sample(x0, t, alpha_bar, eps)
    torch.testing.assert_close(dif.predicted_x0(xt, t, eps, alpha_bar), x0)  # the true noise gives the data back
    mu = dif.reverse_mean(xt, t, eps_hat, betas, alpha_bar)
    torch.testing.assert_close(mu, dif.q_posterior(dif.predicted_x0(xt, t, eps_hat, alpha_bar), xt, t, betas, alpha_bar)[0])
    # L_{t-1} with sigma_t^2 = beta_t: variance terms plus beta^2 / (2 beta alpha (1 - alpha_bar)) |eps - eps_hat|^2
    mean_q, var_q = dif.q_posterior(x0[1:], xt[1:], t[1:], betas, alpha_bar)  # t >= 2
    b, ab = betas[t[1:]][:, None], alpha_bar[t[1:]][:, None]
    kl = kl_diag_gaussians(mean_q, var_q.log(), mu[1:], b.log())
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mean_q, var_q.sqrt().expand_as(mean_q)),
                                                  torch.distributions.Normal(mu[1:], b.sqrt().expand_as(mean_q))).sum(1)
    torch.testing.assert_close(kl, reference)
    variance_part = 6 * 0.5 * (b.log() - var_q.log() + var_q / b - 1)[:, 0]  # the same in each of the 6 dimensions
    weighted = (b ** 2 / (2 * b * (1 - b) * (1 - ab)))[:, 0] * (eps - eps_hat)[1:].pow(2).sum(1)
    torch.testing.assert_close(kl, variance_part + weighted)


def test_kl_and_binned_gaussian_against_torch_and_scipy():
    gen = _gen(3)
    m1, m2, lv1, lv2 = (torch.randn(5, 4, generator=gen, dtype=torch.float64) for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                            torch.distributions.Normal(m2, (0.5 * lv2).exp())).sum(1)
    torch.testing.assert_close(kl_diag_gaussians(m1, lv1, m2, lv2), ref)
    K = 7
    levels = torch.arange(K, dtype=torch.float64)
    for mean, scale in [(2.3, 0.8), (-1.0, 0.3), (6.5, 2.0), (3.0, 1e-3)]:
        lp = discretized_gaussian_log_prob(levels, torch.tensor(mean, dtype=torch.float64),
                                           torch.tensor(math.log(scale), dtype=torch.float64), K, event_dims=0)
        edges = [-math.inf] + [k + 0.5 for k in range(K - 1)] + [math.inf]
        ref = [stats.norm.cdf(edges[k + 1], mean, scale) - stats.norm.cdf(edges[k], mean, scale) for k in range(K)]
        assert lp.exp().sum() == pytest.approx(1.0, abs=1e-12)
        for k in range(K):
            if ref[k] > 1e-300:
                assert float(lp[k]) == pytest.approx(math.log(ref[k]), rel=1e-8, abs=1e-10)


# ---------------------------------------------------------------- the bound
def _expected_negative_bound(T: int, reverse_var: str) -> float:
    """E over x_0 ~ N(M, S^2) and the forward draws of L_0 + sum L_{t-1} + L_T for the optimal linear
    predictor, derived by hand: each term is a quadratic in (x_0, eps) whose mean is closed form."""
    betas = dif.cosine_schedule(T)
    ab = (1 - betas).cumprod(0)
    total = 0.0
    for t in range(1, T + 1):
        b, a_t, a_prev = float(betas[t]), float(ab[t]), float(ab[t - 1])
        g = math.sqrt(1 - a_t) / (a_t * S * S + 1 - a_t)  # eps_hat = g (x_t - sqrt(a_t) M)
        p = (1 - b / math.sqrt(1 - a_t) * g) / math.sqrt(1 - b)  # mu_theta = p x_t + q
        q = b / math.sqrt(1 - a_t) * g * math.sqrt(a_t) * M / math.sqrt(1 - b)
        if t == 1:  # d = x_0 - mu_theta, decoder variance beta_1
            c_x0, c_xt, c, var = 1.0, -p, -q, b
        else:  # d = mu_tilde - mu_theta
            post = (1 - a_prev) / (1 - a_t) * b
            var = b if reverse_var == "beta" else post
            c_x0 = math.sqrt(a_prev) * b / (1 - a_t)
            c_xt, c = math.sqrt(1 - b) * (1 - a_prev) / (1 - a_t) - p, -q
        k = c_x0 + c_xt * math.sqrt(a_t)  # d = k x_0 + c_xt sqrt(1 - a_t) eps + c, x_0 = M + S u
        e_d2 = (k * M + c) ** 2 + (k * S) ** 2 + c_xt ** 2 * (1 - a_t)
        if t == 1:
            total += 0.5 * math.log(2 * math.pi * var) + e_d2 / (2 * var)
        else:
            total += 0.5 * (math.log(var / post) + post / var - 1) + e_d2 / (2 * var)
    a_T = float(ab[T])
    return total + 0.5 * (a_T * (M * M + S * S) + 1 - a_T - math.log(1 - a_T) - 1)


def test_the_bound_matches_its_derivation_lies_below_the_log_likelihood_and_tightens_with_T():
    entropy = 0.5 * math.log(2 * math.pi * math.e * S * S)  # E[-log p(x)] for N(M, S^2)
    gen = _gen(4)
    x = M + S * torch.randn(40_000, 1, generator=gen, dtype=torch.float64)
    model = _gaussian_model(30)
    neg = -model.elbo(x, generator=gen)
    se = float(neg.std()) / math.sqrt(len(x))
    assert float(neg.mean()) == pytest.approx(_expected_negative_bound(30, "beta"), abs=4 * se)
    gaps = [_expected_negative_bound(T, "beta") - entropy for T in (10, 30, 100, 300, 1000)]
    assert all(g > 0 for g in gaps)  # a bound: never above the log-likelihood
    assert all(a > 2 * b for a, b in zip(gaps, gaps[1:]))  # about 1/T
    assert gaps[-1] < 5e-4
    # the posterior variance beta~_t is too small near the data: the gap does not close
    assert _expected_negative_bound(1000, "posterior") - entropy > 0.3


def test_on_levels_the_bound_lies_below_the_likelihood_by_quadrature():
    """One dimension, 5 levels, T = 2, a fixed random denoiser: P(x_0) by quadrature over (x_1, x_2)."""
    K = 5
    torch.manual_seed(0)
    model = dif.DDPM(dif.MLPDenoiser(1, (16,), emb_dim=4), 1, T=2, schedule=torch.tensor([0.0, 0.05, 0.6]),
                     n_levels=K).double()
    grid = torch.linspace(-12, 12, 2401, dtype=torch.float64)
    h = float(grid[1] - grid[0])
    with torch.no_grad():
        # p(x_2) = N(0, 1); p(x_1 | x_2) = N(mu(x_2, 2), beta_2); P(x_0 | x_1) binned around mu(x_1, 1)
        x2 = grid[:, None]
        mu2 = dif.reverse_mean(x2, torch.full((len(grid),), 2), model.denoiser(x2, torch.full((len(grid),), 2)),
                               model.betas, model.alpha_bar)  # (G, 1)
        p_x1_given_x2 = torch.exp(-(grid[None, :] - mu2) ** 2 / (2 * 0.6)) / math.sqrt(2 * math.pi * 0.6)  # (G2, G1)
        p_x1 = (torch.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi))[:, None].mul(p_x1_given_x2).sum(0) * h  # (G1,)
        log_p_x0 = torch.stack([model.decoder_log_prob(torch.full((len(grid), 1), k), grid[:, None]) for k in range(K)])
        prob = (log_p_x0.exp() * p_x1).sum(1) * h  # (K,)
    assert float(prob.sum()) == pytest.approx(1.0, abs=1e-6)
    gen = _gen(5)
    for k in range(K):
        with torch.no_grad():
            bound = model.elbo(torch.full((20_000, 1), k), generator=gen)
        assert (bound <= 0).all()  # a bound on a probability
        se = float(bound.std()) / math.sqrt(len(bound))
        assert float(bound.mean()) < math.log(float(prob[k])) + 3 * se


def test_the_bound_terms_are_the_kl_terms_of_the_derivation():
    """Column by column, with the same draws: L_0 = -log N(x_0; mu_theta(x_1, 1), beta_1), the KLs
    by torch.distributions, and L_T against N(0, I) on a short schedule where alpha_bar_T is far from 0."""
    torch.manual_seed(0)
    T = 4
    betas = torch.tensor([0.0, 0.05, 0.1, 0.15, 0.2], dtype=torch.float64)
    model = dif.DDPM(dif.MLPDenoiser(3, (8,)), 3, T=T, schedule=betas).double()
    x0 = torch.randn(6, 3, generator=_gen(20), dtype=torch.float64)
    terms = model.bound_terms(x0, generator=_gen(21))
    assert terms.shape == (6, T + 1)
    betas, ab = model.betas, model.alpha_bar  # as stored (float32 values): alpha_bar = cumprod(1 - beta)
    torch.testing.assert_close(ab, (1 - betas).cumprod(0), rtol=1e-6, atol=0)
    gen = _gen(21)
    Normal, kl = torch.distributions.Normal, torch.distributions.kl_divergence
    with torch.no_grad():
        for t in range(1, T + 1):
            xt = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * torch.randn(6, 3, generator=gen, dtype=torch.float64)
            steps = torch.full((6,), t)
            mu = (xt - betas[t] / (1 - ab[t]).sqrt() * model.denoiser(xt, steps)) / (1 - betas[t]).sqrt()
            if t == 1:
                expected = -Normal(mu, betas[1].sqrt()).log_prob(x0).sum(1)
            else:
                post_mean = (ab[t - 1].sqrt() * betas[t] * x0 + (1 - betas[t]).sqrt() * (1 - ab[t - 1]) * xt) / (1 - ab[t])
                post_std = ((1 - ab[t - 1]) / (1 - ab[t]) * betas[t]).sqrt()
                expected = kl(Normal(post_mean, post_std), Normal(mu, betas[t].sqrt())).sum(1)
            torch.testing.assert_close(terms[:, t - 1], expected)
    prior = kl(Normal(ab[T].sqrt() * x0, (1 - ab[T]).sqrt()), Normal(0.0, 1.0)).sum(1)
    assert float(prior.min()) > 0.05
    torch.testing.assert_close(terms[:, T], prior)
    torch.testing.assert_close(model.elbo(x0, generator=_gen(21)), -terms.sum(1))


# ---------------------------------------------------------------- training and sampling
def test_the_loss_is_the_simplified_loss_at_the_drawn_steps():
    torch.manual_seed(0)
    model = dif.DDPM(dif.MLPDenoiser(3, (8,)), 3, T=40)
    x = torch.randn(16, 3, generator=_gen(6))
    loss = model.loss(x, generator=_gen(7))
    gen = _gen(7)
    t = torch.randint(1, 41, (16,), generator=gen)
    eps = torch.randn(16, 3, generator=gen)
    xt = model.alpha_bar[t, None].sqrt() * x + (1 - model.alpha_bar[t, None]).sqrt() * eps
    torch.testing.assert_close(loss, ((eps - model.denoiser(xt, t)) ** 2).sum(1).mean())


def test_ddim_with_every_step_and_eta_one_is_ddpm():
    torch.manual_seed(0)
    model = dif.DDPM(dif.MLPDenoiser(2, (16,)), 2, T=25, reverse_var="posterior")
    a = model.sample(300, generator=_gen(8))
    b = model.sample(300, generator=_gen(8), method="ddim", eta=1.0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    c = model.sample(300, generator=_gen(9), method="ddim", eta=1.0)  # the same distribution, other draws
    assert not torch.allclose(a, c)


def test_ddim_steps_and_determinism():
    assert dif.ddim_steps(100, 100) == list(range(100, 0, -1))
    for n in (1, 2, 10, 37):
        steps = dif.ddim_steps(100, n)
        assert steps[0] == 100 and len(steps) == n and steps == sorted(set(steps), reverse=True)
        assert n == 1 or steps[-1] == 1
    torch.manual_seed(0)
    model = dif.DDPM(dif.MLPDenoiser(2, (16,)), 2, T=50)
    x_T = torch.randn(10, 2, generator=_gen(10))
    a = model.sample(10, generator=_gen(11), method="ddim", n_steps=10, x_T=x_T)
    b = model.sample(10, generator=_gen(12), method="ddim", n_steps=10, x_T=x_T)
    torch.testing.assert_close(a, b)  # eta = 0: x_T decides everything


@pytest.mark.parametrize("method, n_steps", [("ddpm", None), ("ddim", None)])
def test_sampling_with_the_exact_noise_predictor_gives_the_data_distribution(method, n_steps):
    model = _gaussian_model(200)
    x = model.sample(20_000, generator=_gen(13), method=method, n_steps=n_steps)
    assert x.dtype == torch.float64
    assert float(x.mean()) == pytest.approx(M, abs=0.02)
    assert float(x.std()) == pytest.approx(S, rel=0.03)
    assert stats.kstest(x[:, 0].numpy(), "norm", args=(M, S)).pvalue > 1e-3


def test_a_short_training_run_learns_the_ring():
    torch.manual_seed(0)
    toy = ring()
    model = dif.DDPM(dif.MLPDenoiser(2, (128, 128)), 2, T=100)
    fit(model, toy.sample(4000, seed=0), epochs=60, batch_size=256, lr=2e-3, progress=False)
    samples = model.sample(2000, generator=_gen(14))
    modes, near = modes_covered(samples, toy)
    assert modes == 8 and near > 0.6


def test_ddim_with_fewer_steps_is_a_coarser_solution_of_the_same_flow():
    """eta = 0 follows a deterministic flow; fewer steps discretise it more coarsely (here the spread
    shrinks), and the error falls steadily as the steps grow."""
    model = _gaussian_model(200)
    errors = [abs(float(model.sample(20_000, generator=_gen(13), method="ddim", n_steps=n).std()) - S)
              for n in (5, 20, 50, 200)]
    assert all(a > b for a, b in zip(errors, errors[1:])) and errors[0] > 0.1 and errors[-1] < 0.01
