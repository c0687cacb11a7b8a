"""Tests of gencourse.vae against independent oracles: torch.distributions, Monte Carlo, exact
linear-Gaussian identities, autograd gradients and Jacobians."""
import math

import pytest
import torch
from torch import distributions as D

from gencourse import vae
from gencourse.data import N_LEVELS, load_digits
from gencourse.train import fit

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is much faster than two on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- small pure functions
def test_reparameterize_matches_definition_and_distribution():
    g = _gen()
    mu, log_var = torch.randn(3, 4, generator=g, dtype=DT), torch.randn(3, 4, generator=g, dtype=DT)
    eps = torch.randn(3, 4, generator=g, dtype=DT)
    z = vae.reparameterize(mu, log_var, eps)
    assert torch.allclose(z, mu + log_var.exp().sqrt() * eps)
    # a draw with many samples has the right mean and standard deviation
    zs = vae.sample_diag_gaussian(mu, log_var, n_samples=200_000, generator=g)  # (S, 3, 4)
    assert zs.shape == (200_000, 3, 4)
    assert torch.allclose(zs.mean(0), mu, atol=0.02 * log_var.exp().sqrt().max())
    assert torch.allclose(zs.std(0), log_var.exp().sqrt(), rtol=0.01)
    # differentiable in mu and log_var
    mu.requires_grad_(True)
    vae.reparameterize(mu, log_var, eps).sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))


def test_kl_closed_form_vs_torch_distributions_and_monte_carlo():
    g = _gen(1)
    mu = torch.randn(5, 3, generator=g, dtype=DT)
    log_var = torch.randn(5, 3, generator=g, dtype=DT)
    kl = vae.kl_diag_gaussian_standard_normal(mu, log_var)
    assert kl.shape == (5,)
    q = D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1)
    p = D.Independent(D.Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    assert torch.allclose(kl, D.kl_divergence(q, p), atol=1e-10)
    torch.manual_seed(0)
    z = q.sample((400_000,))  # (S, 5, 3)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S, 5)
    se = log_ratio.std(0) / math.sqrt(len(z))
    assert torch.all((kl - log_ratio.mean(0)).abs() < 5 * se)
    assert torch.all(vae.kl_diag_gaussian_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_gaussian_log_probs_vs_torch_distributions():
    g = _gen(2)
    x, m, lv = (torch.randn(4, 6, generator=g, dtype=DT) for _ in range(3))
    ref = D.Independent(D.Normal(m, (0.5 * lv).exp()), 1).log_prob(x)
    assert torch.allclose(vae.gaussian_log_prob(x, m, lv), ref)
    assert torch.allclose(vae.standard_normal_log_prob(x), D.Normal(0.0, 1.0).log_prob(x).sum(-1))
    sigma = 0.3
    ref = D.Independent(D.Normal(m, sigma), 1).log_prob(x)
    assert torch.allclose(vae.gaussian_mse_log_prob(x, m, sigma), ref)
    assert torch.allclose(vae.gaussian_log_prob(x, m, 2 * math.log(sigma)), ref)


def test_bernoulli_log_prob_vs_torch_distributions_and_is_stable():
    g = _gen(3)
    logits = 5 * torch.randn(7, 64, generator=g, dtype=DT)
    x = torch.bernoulli(torch.full((7, 64), 0.4, dtype=DT), generator=g)
    ref = D.Independent(D.Bernoulli(logits=logits), 1).log_prob(x)
    assert torch.allclose(vae.bernoulli_log_prob(x, logits), ref)
    big = torch.tensor([[200.0, -200.0]])
    assert torch.allclose(vae.bernoulli_log_prob(torch.tensor([[0.0, 1.0]]), big), torch.tensor([-400.0]))


def test_categorical_log_prob_vs_torch_distributions():
    g = _gen(4)
    logits = torch.randn(5, 64, N_LEVELS, generator=g, dtype=DT)
    x = torch.randint(0, N_LEVELS, (5, 64), generator=g)
    ref = D.Independent(D.Categorical(logits=logits), 1).log_prob(x)
    out = vae.categorical_log_prob(x, logits)
    assert out.shape == (5,)
    assert torch.allclose(out, ref)
    # leading sample dimension broadcasts against x
    logits_s = torch.randn(3, 5, 64, N_LEVELS, generator=g, dtype=DT)
    assert torch.allclose(vae.categorical_log_prob(x, logits_s)[1], vae.categorical_log_prob(x, logits_s[1]))


def test_elbo_and_iwae_functions():
    g = _gen(5)
    rec = torch.randn(4, 3, generator=g, dtype=DT)  # (S, B)
    mu, lv = torch.randn(3, 2, generator=g, dtype=DT), torch.randn(3, 2, generator=g, dtype=DT)
    out = vae.elbo(rec, mu, lv)
    assert torch.allclose(out, rec.mean(0) - vae.kl_diag_gaussian_standard_normal(mu, lv))
    assert torch.allclose(vae.elbo(rec[0], mu, lv), rec[0] - vae.kl_diag_gaussian_standard_normal(mu, lv))
    a, b, c = (torch.randn(6, 3, generator=g, dtype=DT) for _ in range(3))
    w = (a + b - c).exp()  # (K, B)
    assert torch.allclose(vae.iwae_bound(a, b, c), w.mean(0).log())
    assert torch.allclose(vae.iwae_bound(a[:1], b[:1], c[:1]), vae.elbo_from_samples(a[:1], b[:1], c[:1]))
    # Jensen: the K-sample bound is at least the average of the log weights
    assert torch.all(vae.iwae_bound(a, b, c) >= vae.elbo_from_samples(a, b, c) - 1e-12)
    # stable for very negative log weights
    assert torch.isfinite(vae.iwae_bound(a - 5000, b, c)).all()


# ---------------------------------------------------------------- linear-Gaussian identities
@pytest.fixture
def lg():
    return vae.LinearGaussianModel.random(data_dim=5, latent_dim=3, sigma=0.7, seed=0)


def test_linear_gaussian_marginal_and_posterior_vs_torch(lg):
    x = lg.sample(8, _gen(1)).detach()
    with torch.no_grad():
        ref = D.MultivariateNormal(lg.b, lg.marginal_cov()).log_prob(x)
        assert torch.allclose(lg.log_prob(x), ref, atol=1e-10)
        # Bayes: log p(z|x) = log p(x|z) + log p(z) - log p(x) at any z
        mean, cov = lg.posterior(x)
        z = torch.randn(8, 3, generator=_gen(2), dtype=DT)
        bayes = lg.log_likelihood(x, z) + vae.standard_normal_log_prob(z) - lg.log_prob(x)
        assert torch.allclose(D.MultivariateNormal(mean, cov).log_prob(z), bayes, atol=1e-9)


def _random_q(b, h, seed):
    g = _gen(seed)
    m = torch.randn(b, h, generator=g, dtype=DT)
    a = torch.randn(b, h, h, generator=g, dtype=DT)
    return m, a @ a.transpose(-1, -2) + 0.1 * torch.eye(h, dtype=DT)


def test_elbo_decomposition_identity(lg):
    x = lg.sample(6, _gen(3)).detach()
    with torch.no_grad():
        m, s = _random_q(6, 3, seed=4)
        log_px = lg.log_prob(x)
        bound = lg.elbo(x, m, s)
        gap = lg.kl_to_posterior(x, m, s)
        assert torch.allclose(log_px, bound + gap, atol=1e-5)  # log p(x) = ELBO + KL(q || p(z|x))
        assert torch.all(bound <= log_px)
        assert torch.all(gap > 0)
        post_m, post_s = lg.posterior(x)
        assert torch.allclose(lg.elbo(x, post_m, post_s), log_px, atol=1e-5)  # tight at the posterior


def test_linear_gaussian_closed_forms_vs_monte_carlo(lg):
    x = lg.sample(2, _gen(5)).detach()
    with torch.no_grad():
        m, s = _random_q(2, 3, seed=6)
        q = D.MultivariateNormal(m, s)
        torch.manual_seed(0)
        z = q.sample((200_000,))  # (S, 2, 3)
        mc_ll = lg.log_likelihood(x, z).mean(0)
        assert torch.allclose(lg.expected_log_likelihood(x, m, s), mc_ll, rtol=0.01)
        p = D.MultivariateNormal(torch.zeros(3, dtype=DT), torch.eye(3, dtype=DT))
        assert torch.allclose(lg.kl_to_prior(m, s), D.kl_divergence(q, p), atol=1e-9)


def test_iwae_increases_with_k_and_approaches_log_px(lg):
    """With a diagonal q that is not the posterior, E[L_K] rises with K towards log p(x)."""
    x = lg.sample(4, _gen(7)).detach()
    with torch.no_grad():
        post_m, post_s = lg.posterior(x)
        q_lv = torch.log(post_s.diagonal()).expand(4, 3)  # a mean-field q: right marginals, no correlations
        log_px = lg.log_prob(x)
        g = _gen(8)
        reps = 200
        means, ses = [], []
        for k in (1, 10, 100, 1000):
            z = vae.sample_diag_gaussian(post_m, q_lv, n_samples=k * reps, generator=g).reshape(reps, k, 4, 3)
            lb = vae.iwae_bound(lg.log_likelihood(x, z).transpose(0, 1),
                                vae.standard_normal_log_prob(z).transpose(0, 1),
                                vae.gaussian_log_prob(z, post_m, q_lv).transpose(0, 1))  # (reps, 4)
            means.append(lb.mean(0))
            ses.append(lb.std(0) / math.sqrt(reps))
        means, ses = torch.stack(means), torch.stack(ses)  # (4 values of K, B)
        assert torch.all(means[1:] >= means[:-1] - 4 * (ses[1:] + ses[:-1]))
        assert torch.all(means <= log_px + 4 * ses)
        gap_1, gap_1000 = log_px - means[0], log_px - means[-1]
        assert torch.all(gap_1 > 0.05)  # the mean-field ELBO is visibly loose
        assert torch.all(gap_1000 < 0.1 * gap_1)


# ---------------------------------------------------------------- gradient estimators
def _f(z):
    return (z ** 2).sum(-1) + torch.sin(3 * z).sum(-1)  # (S,)


def test_score_function_and_reparam_agree_with_exact_gradient():
    mu = torch.tensor([0.5, -1.0], dtype=DT)
    log_var = torch.tensor([0.2, -0.7], dtype=DT)
    # exact: E[z^2] = mu^2 + s^2, E[sin 3z] = sin(3 mu) exp(-9 s^2 / 2); differentiate with autograd
    mu_, lv_ = mu.clone().requires_grad_(True), log_var.clone().requires_grad_(True)
    s2 = lv_.exp()
    exact = (mu_ ** 2 + s2 + torch.sin(3 * mu_) * torch.exp(-4.5 * s2)).sum()
    g_mu, g_lv = torch.autograd.grad(exact, (mu_, lv_))
    eps = torch.randn(400_000, 2, generator=_gen(9), dtype=DT)
    sf_mu, sf_lv = vae.score_function_grad(_f, mu, log_var, eps)
    rp_mu, rp_lv = vae.reparam_grad(_f, mu, log_var, eps)
    assert sf_mu.shape == rp_lv.shape == (400_000, 2)
    n = len(eps)
    for est, ref in ((sf_mu, g_mu), (sf_lv, g_lv), (rp_mu, g_mu), (rp_lv, g_lv)):
        se = est.std(0) / math.sqrt(n)
        assert torch.all((est.mean(0) - ref).abs() < 5 * se + 1e-6)
    assert torch.all(rp_mu.var(0) < sf_mu.var(0))
    assert torch.all(rp_lv.var(0) < sf_lv.var(0))
    # a baseline keeps REINFORCE unbiased and lowers its variance here
    b_mu, _ = vae.score_function_grad(_f, mu, log_var, eps, baseline=float(_f(mu + 0 * eps[:1])))
    assert torch.all((b_mu.mean(0) - g_mu).abs() < 5 * b_mu.std(0) / math.sqrt(n))


def test_reparam_grad_matches_autograd_through_sampling():
    mu = torch.tensor([0.3, 0.1, -0.2], dtype=DT, requires_grad=True)
    log_var = torch.tensor([0.0, -1.0, 0.5], dtype=DT, requires_grad=True)
    eps = torch.randn(50, 3, generator=_gen(10), dtype=DT)
    _f(vae.reparameterize(mu, log_var, eps)).mean().backward()
    rp_mu, rp_lv = vae.reparam_grad(_f, mu.detach(), log_var.detach(), eps)
    assert torch.allclose(rp_mu.mean(0), mu.grad)
    assert torch.allclose(rp_lv.mean(0), log_var.grad)


def test_score_function_grad_matches_autograd_of_log_q():
    mu = torch.tensor([0.3, -0.4], dtype=DT, requires_grad=True)
    log_var = torch.tensor([0.6, -0.3], dtype=DT, requires_grad=True)
    eps = torch.randn(20, 2, generator=_gen(11), dtype=DT)
    z = (mu + (0.5 * log_var).exp() * eps).detach()
    log_q = D.Normal(mu, (0.5 * log_var).exp()).log_prob(z).sum(-1)  # (S,)
    (_f(z) * log_q).sum().backward()
    sf_mu, sf_lv = vae.score_function_grad(_f, mu.detach(), log_var.detach(), eps)
    assert torch.allclose(sf_mu.sum(0), mu.grad)
    assert torch.allclose(sf_lv.sum(0), log_var.grad)


# ---------------------------------------------------------------- IAF
def test_made_masks_are_autoregressive():
    torch.manual_seed(0)
    made = vae.MADE(5, hidden=16, n_hidden=2, n_outputs=2).double()
    jac = torch.autograd.functional.jacobian(lambda z: made(z), torch.randn(5, dtype=DT))  # (2, 5, 5)
    upper = torch.triu(torch.ones(5, 5, dtype=torch.bool))  # output i may only see inputs j < i
    assert torch.all(jac[:, upper] == 0)
    assert torch.any(jac[:, ~upper] != 0)


@pytest.mark.parametrize("context_dim", [0, 4])
def test_iaf_log_det_vs_autograd_jacobian(context_dim):
    torch.manual_seed(1)
    flow = vae.IAFPosterior(4, n_steps=3, hidden=12, context_dim=context_dim).double()
    for p in flow.parameters():  # move away from the near-identity initialisation
        p.data.add_(0.3 * torch.randn_like(p))
    ctx = torch.randn(3, context_dim, dtype=DT) if context_dim else None
    z = torch.randn(3, 4, dtype=DT)
    out, log_det = flow(z, ctx)
    assert out.shape == (3, 4) and log_det.shape == (3,)
    for i in range(3):
        c = None if ctx is None else ctx[i:i + 1]
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], c)[0][0], z[i])
        assert torch.allclose(torch.linalg.slogdet(jac)[1], log_det[i], atol=1e-10)
        assert abs(float(torch.linalg.det(jac))) > 0


# ---------------------------------------------------------------- the VAE model
@pytest.mark.parametrize("decoder,kind", [("bernoulli", "binary"), ("categorical", "levels"), ("gaussian", "float")])
def test_vae_shapes_and_bounds(decoder, kind):
    torch.manual_seed(0)
    x, _ = load_digits("val", kind)
    x = x[:20]
    model = vae.VAE(decoder=decoder, latent_dim=4, hidden=(32,))
    with torch.no_grad():
        assert model.elbo(x).shape == (20,)
        mu, log_var = model.encode(x)
        assert mu.shape == log_var.shape == (20, 4)
        assert model.reconstruct(x).shape == (20, 64)
        s = model.sample(6, _gen(0))
        assert s.shape == (6, 64)
        if decoder == "categorical":
            assert s.dtype == torch.int64 and int(s.min()) >= 0 and int(s.max()) < N_LEVELS
        if decoder == "bernoulli":
            assert set(s.unique().tolist()) <= {0.0, 1.0}
        # averaged over noise, ELBO <= IWAE_10 <= IWAE_100
        torch.manual_seed(1)
        e = torch.stack([model.elbo(x) for _ in range(50)]).mean()
        i10 = torch.stack([model.iwae(x, 10) for _ in range(20)]).mean()
        i100 = model.iwae(x, 100).mean()
        assert e < i10 < i100 + 0.5
    loss = model.loss(x)
    assert loss.dim() == 0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vae_elbo_matches_manual_computation():
    torch.manual_seed(2)
    model = vae.VAE(decoder="categorical", latent_dim=3, hidden=(16,))
    x, _ = load_digits("val")
    x = x[:5]
    with torch.no_grad():
        mu, log_var = model.encode(x)
        torch.manual_seed(3)
        got = model.elbo(x)
        torch.manual_seed(3)
        eps = torch.randn(1, 5, 3)
        z = mu + (0.5 * log_var).exp() * eps
        logits = model.decode(z)[0]  # (5, 64, 17)
        rec = D.Independent(D.Categorical(logits=logits), 1).log_prob(x)
        q = D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1)
        p = D.Independent(D.Normal(torch.zeros(3), torch.ones(3)), 1)
        assert torch.allclose(got, rec - D.kl_divergence(q, p), atol=1e-4)


def test_vae_with_iaf_iwae_and_training_improves():
    torch.manual_seed(0)
    x, _ = load_digits("train", "binary")
    xv, _ = load_digits("val", "binary")
    model = vae.VAE(decoder="bernoulli", latent_dim=4, hidden=(64,), iaf_steps=2, iaf_hidden=16)
    with torch.no_grad():
        before = -model.elbo(xv).mean()
    fit(model, x[:500], epochs=15, lr=3e-3, progress=False)
    with torch.no_grad():
        torch.manual_seed(1)
        after = -model.elbo(xv, n_samples=10).mean()
        iw = -model.log_prob_estimate(xv[:100], k=200).mean()
        el = -model.elbo(xv[:100], n_samples=200).mean()
    assert after < before - 10
    assert iw <= el + 0.05  # the IWAE bound is the tighter one
    assert 0 <= model.active_units(xv) <= 4
    assert model.kl_per_dimension(xv).shape == (4,)


def test_iwae_training_loss_is_minus_the_mean_bound():
    torch.manual_seed(0)
    x, _ = load_digits("val", "binary")
    x = x[:8]
    model = vae.VAE(decoder="bernoulli", latent_dim=3, hidden=(16,), train_k=5)
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    mu, log_var = model.encode(x)
    z = vae.reparameterize(mu, log_var, torch.randn(5, 8, 3))
    q = D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1)
    log_w = (D.Independent(D.Bernoulli(logits=model.decode(z)), 1).log_prob(x)
             + D.Independent(D.Normal(torch.zeros(3), 1.0), 1).log_prob(z) - q.log_prob(z))  # (5, 8)
    assert torch.allclose(loss, -(torch.logsumexp(log_w, 0) - math.log(5)).mean(), atol=1e-4)


# ---------------------------------------------------------------- autoregressive (MADE) decoder
def _tiny_made_vae(prior="standard", seed=0, dtype=DT):
    """4 pixels with 3 levels; float64 for the decoder identities (the encoder reads float32 inputs)."""
    torch.manual_seed(seed)
    model = vae.VAE(data_dim=4, latent_dim=2, hidden=(8,), decoder="made", n_levels=3, made_hidden=(6,),
                    prior=prior, n_pseudo=3).to(dtype)
    for p in model.parameters():  # move away from the initialisation so that every path matters
        p.data.add_(0.3 * torch.randn_like(p))
    return model


def test_made_decoder_normalises_by_enumeration():
    """sum_x p(x | z) over all 3^4 = 81 images equals 1 for fixed z, and each conditional is a distribution."""
    model = _tiny_made_vae()
    grid = torch.cartesian_prod(*[torch.arange(3)] * 4)  # (81, 4) every configuration
    z = torch.randn(2, 1, 2, generator=_gen(0), dtype=DT).expand(2, 81, 2)  # two fixed latents
    with torch.no_grad():
        log_p = model.log_likelihood(grid, z)  # (2, 81)
        assert torch.allclose(torch.logsumexp(log_p, -1), torch.zeros(2, dtype=DT), atol=1e-10)
        assert torch.all(log_p.std(-1) > 0.1)  # not the uniform distribution
        # p(x | z) really depends on z, and the logits equal an independent per-pixel softmax sum
        logits = model.decode(z, grid)  # (2, 81, 4, 3)
        ref = D.Independent(D.Categorical(logits=logits), 1).log_prob(grid)
        assert torch.allclose(log_p, ref)
        assert (log_p[0] - log_p[1]).abs().max() > 1e-3


@pytest.mark.parametrize("window", [None, 1])
def test_made_decoder_is_autoregressive_by_input_gradients(window):
    """d logits_d / d x_j = 0 for every j >= d (pixel d sees only earlier pixels), != 0 for some j < d."""
    torch.manual_seed(1)
    dec = vae.MADEDecoder(16, 3, n_levels=5, hidden=(32,), context_hidden=(8,), direct_window=window).double()
    z = torch.randn(3, dtype=DT)

    def logits_of_x(x_float):  # the decoder divides levels by L - 1; feed floats to get gradients
        return dec(x_float * (dec.n_levels - 1), z)  # (16, 5)

    x = torch.rand(16, dtype=DT)
    jac = torch.autograd.functional.jacobian(logits_of_x, x)  # (16 pixels, 5 levels, 16 inputs)
    dep = jac.abs().sum(1) > 0  # (d, j): does pixel d's conditional depend on x_j?
    later_or_self = torch.triu(torch.ones(16, 16, dtype=torch.bool))
    assert not dep[later_or_self].any()
    assert dep[~later_or_self].any()
    assert dep[1:, 0].all()  # every later pixel sees the first one (through the hidden layer)


def test_made_vae_sampling_is_sequential_and_valid():
    model = _tiny_made_vae(prior="vamp")
    s = model.sample(500, _gen(2))
    assert s.shape == (500, 4) and s.dtype == torch.int64
    assert int(s.min()) >= 0 and int(s.max()) < 3
    # samples for one fixed z follow p(x | z): compare frequencies with the enumerated probabilities
    z = torch.zeros(1, 2, dtype=DT)
    xs = model.sample_from_latent(z.expand(20_000, 2), _gen(3))  # (20000, 4)
    grid = torch.cartesian_prod(*[torch.arange(3)] * 4)
    with torch.no_grad():
        probs = model.log_likelihood(grid, z.expand(81, 2)).exp()  # (81,)
    codes = (xs * torch.tensor([27, 9, 3, 1])).sum(-1)  # index into the grid's (lexicographic) order
    freq = torch.bincount(codes, minlength=81).double() / len(xs)
    se = (probs * (1 - probs) / len(xs)).sqrt()
    assert torch.all((freq - probs).abs() < 5 * se + 1e-3)
    rec = model.float().reconstruct(torch.tensor([[0, 1, 2, 1]]))  # the encoder reads float32 inputs
    assert rec.shape == (1, 4) and torch.all(rec == rec.round())


@pytest.mark.parametrize("prior", ["standard", "vamp"])
def test_made_vae_elbo_below_iwae_increasing_in_k(prior):
    """Averaged over the noise, ELBO <= L_10 <= L_100 <= L_5000 (Burda et al.) on a tiny model."""
    model = _tiny_made_vae(prior, seed=4, dtype=torch.float32)
    x = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 0, 2]])
    torch.manual_seed(5)
    with torch.no_grad():
        e = torch.stack([model.elbo(x) for _ in range(400)])  # (400, 3)
        i10 = torch.stack([model.iwae(x, 10) for _ in range(200)])
        i100 = torch.stack([model.iwae(x, 100) for _ in range(50)])
        i5000 = model.iwae(x, 5000)
    means = [t.mean(0) for t in (e, i10, i100)]
    ses = [t.std(0) / math.sqrt(len(t)) for t in (e, i10, i100)]
    for (m0, s0), (m1, s1) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert torch.all(m0 < m1 + 4 * (s0 + s1))
    assert means[0].sum() < means[2].sum() - 0.1  # the ELBO is visibly looser than L_100 overall
    assert torch.all(means[2] < i5000 + 0.05)
    # the model is trainable end to end
    loss = model.loss(x)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_default_vae_unchanged_by_the_new_options():
    """The default VAE has exactly the parameters it had before the MADE decoder and VampPrior."""
    model = vae.VAE()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                     "enc_out.weight", "enc_out.bias", "decoder.0.weight", "decoder.0.bias",
                     "decoder.2.weight", "decoder.2.bias", "decoder.4.weight", "decoder.4.bias"]
    with pytest.raises(ValueError):
        vae.VAE(prior="flat")


# ---------------------------------------------------------------- PixelCNN decoder (PixelVAE)
def _tiny_pixel_vae(seed=0):
    """Binary 3x3 images: 2^9 = 512 configurations to enumerate."""
    torch.manual_seed(seed)
    model = vae.VAE(data_dim=9, latent_dim=2, hidden=(8,), decoder="pixelcnn", n_levels=2,
                    pixelcnn_channels=4, pixelcnn_layers=2, pixelcnn_dropout=0.0)
    for p in model.parameters():  # move away from the initialisation so that every path matters
        p.data.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_pixelcnn_decoder_normalises_by_enumeration_and_sees_z():
    """sum_x p(x | z) over all 512 binary 3x3 images equals 1 for fixed z; p(x | z) depends on z."""
    model = _tiny_pixel_vae()
    grid = torch.cartesian_prod(*[torch.arange(2)] * 9)  # (512, 9)
    z = torch.randn(2, 1, 2, generator=_gen(0)).expand(2, 512, 2)  # two fixed latents
    with torch.no_grad():
        log_p = model.log_likelihood(grid, z)  # (2, 512)
        ref = torch.stack([model.decoder.log_prob(grid, context=zk) for zk in z])  # the PixelCNN's own
    assert torch.allclose(torch.logsumexp(log_p, -1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(log_p, ref, atol=1e-5)
    assert (log_p[0] - log_p[1]).abs().max() > 1e-3
    s = model.sample(7, _gen(1))
    assert s.shape == (7, 9) and s.dtype == torch.int64 and set(s.unique().tolist()) <= {0, 1}


def test_pixelcnn_vae_elbo_below_iwae():
    """Averaged over the noise, ELBO <= L_10 <= L_1000 (Burda et al.); the loss trains every part."""
    model = _tiny_pixel_vae(seed=3)
    x = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0, 1, 1, 1]])
    torch.manual_seed(4)
    with torch.no_grad():
        e = torch.stack([model.elbo(x) for _ in range(400)])  # (400, 2)
        i10 = torch.stack([model.iwae(x, 10) for _ in range(100)])
        i1000 = model.iwae(x, 1000)
    se = lambda t: t.std(0) / math.sqrt(len(t))  # noqa: E731
    assert torch.all(e.mean(0) < i10.mean(0) + 4 * (se(e) + se(i10)))
    assert torch.all(i10.mean(0) < i1000 + 4 * se(i10) + 0.02)
    assert e.mean(0).sum() < i1000.sum() - 0.05  # the ELBO is visibly looser
    model.train().loss(x).backward()
    assert all(p.grad is not None for p in model.parameters())
