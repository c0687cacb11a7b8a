"""Tests of gencourse.vae against independent oracles: torch.distributions, Monte Carlo, exact
linear-Gaussian identities, autograd gradients, enumeration. (The densities, KL and samplers it
re-exports are tested in test_distributions.py, the IAF in test_flows.py.)"""
import math

import pytest
import torch
from torch import distributions as D

from gencourse import distributions, vae
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
def test_assignment_names_are_the_shared_distributions():
    """The assignment imports these from gencourse.vae; they are the one implementation in distributions."""
    for name in ("reparameterize", "kl_diag_gaussian_standard_normal", "gaussian_log_prob",
                 "standard_normal_log_prob", "bernoulli_log_prob", "categorical_log_prob"):
        assert getattr(vae, name) is getattr(distributions, name), name
    x, logits = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, -1.0]])  # x first, summed over pixels
    torch.testing.assert_close(vae.bernoulli_log_prob(x, logits), D.Bernoulli(logits=logits).log_prob(x).sum(-1))


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
    x = lg.sample(8, generator=_gen(1)).detach()
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
    x = lg.sample(6, generator=_gen(3)).detach()
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
    x = lg.sample(2, generator=_gen(5)).detach()
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
    x = lg.sample(4, generator=_gen(7)).detach()
    with torch.no_grad():
        post_m, post_s = lg.posterior(x)
        q_lv = torch.log(post_s.diagonal()).expand(4, 3)  # a mean-field q: right marginals, no correlations
        log_px = lg.log_prob(x)
        g = _gen(8)
        reps = 200
        means, ses = [], []
        for k in (1, 10, 100, 1000):
            z = distributions.gaussian_sample(post_m, q_lv, n_samples=k * reps, generator=g).reshape(reps, k, 4, 3)
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


# ---------------------------------------------------------------- the VAE model
@pytest.mark.parametrize("decoder,kind", [("bernoulli", "binary"), ("categorical", "levels"), ("gaussian", "float")])
def test_vae_shapes_and_bounds(decoder, kind):
    torch.manual_seed(0)
    x, _ = load_digits("val", kind)
    x = x[:20]
    model = vae.make_vae(decoder, latent_dim=4, hidden=(32,))
    with torch.no_grad():
        assert model.elbo(x).shape == (20,)
        mu, log_var = model.encode(x)
        assert mu.shape == log_var.shape == (20, 4)
        assert model.reconstruct(x).shape == (20, 64)
        s = model.sample(6, generator=_gen(0))
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
    model = vae.make_vae("categorical", latent_dim=3, hidden=(16,))
    x, _ = load_digits("val")
    x = x[:5]
    with torch.no_grad():
        mu, log_var = model.encode(x)
        torch.manual_seed(3)
        got = model.elbo(x)
        torch.manual_seed(3)
        eps = torch.randn(1, 5, 3)
        z = mu + (0.5 * log_var).exp() * eps
        logits = model.decoder.logits(z)[0]  # (5, 64, 17)
        rec = D.Independent(D.Categorical(logits=logits), 1).log_prob(x)
        q = D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1)
        p = D.Independent(D.Normal(torch.zeros(3), torch.ones(3)), 1)
        assert torch.allclose(got, rec - D.kl_divergence(q, p), atol=1e-4)


def test_vae_with_iaf_iwae_and_training_improves():
    torch.manual_seed(0)
    x, _ = load_digits("train", "binary")
    xv, _ = load_digits("val", "binary")
    model = vae.make_vae("bernoulli", latent_dim=4, hidden=(64,), iaf_steps=2, iaf_hidden=16)
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
    model = vae.make_vae("bernoulli", latent_dim=3, hidden=(16,), train_k=5)
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    mu, log_var = model.encode(x)
    z = vae.reparameterize(mu, log_var, torch.randn(5, 8, 3))
    q = D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1)
    log_w = (D.Independent(D.Bernoulli(logits=model.decoder.logits(z)), 1).log_prob(x)
             + D.Independent(D.Normal(torch.zeros(3), 1.0), 1).log_prob(z) - q.log_prob(z))  # (5, 8)
    assert torch.allclose(loss, -(torch.logsumexp(log_w, 0) - math.log(5)).mean(), atol=1e-4)


# ---------------------------------------------------------------- autoregressive (MADE) decoder
def _tiny_made_vae(prior="standard", seed=0, dtype=DT):
    """4 pixels with 3 levels; float64 for the decoder identities (the encoder reads float32 inputs)."""
    torch.manual_seed(seed)
    model = vae.make_vae("made", data_dim=4, latent_dim=2, hidden=(8,), n_levels=3, made_hidden=(6,),
                         prior=prior, n_pseudo=3 if prior == "vamp" else None).to(dtype)
    for p in model.parameters():  # move away from the initialisation so that every path matters
        p.data.add_(0.3 * torch.randn_like(p))
    return model


def test_made_decoder_normalises_by_enumeration():
    """sum_x p(x | z) over all 3^4 = 81 images equals 1 for fixed z, and each conditional is a distribution."""
    model = _tiny_made_vae()
    grid = torch.cartesian_prod(*[torch.arange(3)] * 4)  # (81, 4) every configuration
    z = torch.randn(2, 1, 2, generator=_gen(0), dtype=DT).expand(2, 81, 2)  # two fixed latents
    with torch.no_grad():
        log_p = model.decoder.log_prob(grid, z)  # (2, 81)
        assert torch.allclose(torch.logsumexp(log_p, -1), torch.zeros(2, dtype=DT), atol=1e-10)
        assert torch.all(log_p.std(-1) > 0.1)  # not the uniform distribution
        # p(x | z) really depends on z, and the logits equal an independent per-pixel softmax sum
        logits = model.decoder.logits(grid, z)  # (2, 81, 4, 3)
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
        return dec.logits(x_float * (dec.n_levels - 1), z)  # (16, 5)

    x = torch.rand(16, dtype=DT)
    jac = torch.autograd.functional.jacobian(logits_of_x, x)  # (16 pixels, 5 levels, 16 inputs)
    dep = jac.abs().sum(1) > 0  # (d, j): does pixel d's conditional depend on x_j?
    later_or_self = torch.triu(torch.ones(16, 16, dtype=torch.bool))
    assert not dep[later_or_self].any()
    assert dep[~later_or_self].any()
    assert dep[1:, 0].all()  # every later pixel sees the first one (through the hidden layer)


def test_made_vae_sampling_is_sequential_and_valid():
    model = _tiny_made_vae(prior="vamp")
    s = model.sample(500, generator=_gen(2))
    assert s.shape == (500, 4) and s.dtype == torch.int64
    assert int(s.min()) >= 0 and int(s.max()) < 3
    # samples for one fixed z follow p(x | z): compare frequencies with the enumerated probabilities
    z = torch.zeros(1, 2, dtype=DT)
    xs = model.decoder.sample(z.expand(20_000, 2), generator=_gen(3))  # (20000, 4)
    grid = torch.cartesian_prod(*[torch.arange(3)] * 4)
    with torch.no_grad():
        probs = model.decoder.log_prob(grid, z.expand(81, 2)).exp()  # (81,)
    codes = (xs * torch.tensor([27, 9, 3, 1])).sum(-1)  # index into the grid's (lexicographic) order
    freq = torch.bincount(codes, minlength=81).double() / len(xs)
    se = (probs * (1 - probs) / len(xs)).sqrt()
    assert torch.all((freq - probs).abs() < 5 * se + 1e-3)
    rec = model.reconstruct(torch.tensor([[0, 1, 2, 1]]))  # a draw at z = mu(x): the mean is intractable
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


def test_default_vae_has_only_the_parts_it_uses_and_options_are_checked():
    """The default VAE has an MLP encoder and decoder and nothing else; options that do not apply raise."""
    model = vae.make_vae()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["encoder.net.0.weight", "encoder.net.0.bias", "encoder.net.2.weight", "encoder.net.2.bias",
                     "encoder.out.weight", "encoder.out.bias", "decoder.net.0.weight", "decoder.net.0.bias",
                     "decoder.net.2.weight", "decoder.net.2.bias", "decoder.net.4.weight", "decoder.net.4.bias"]
    assert isinstance(model.prior, vae.StandardNormalPrior) and model.encoder.iaf is None
    for bad in (dict(prior="flat"), dict(decoder="poisson"), dict(decoder="categorical", sigma=0.1),
                dict(decoder="bernoulli", n_levels=17), dict(decoder="gaussian", made_hidden=(64,)),
                dict(decoder="made", pixelcnn_layers=3), dict(n_pseudo=10), dict(iaf_hidden=32),
                dict(train_k=5, beta=2.0)):
        with pytest.raises(ValueError):
            vae.make_vae(**bad)


def test_vae_is_a_composition_of_its_parts():
    """VAE(encoder, decoder, prior) from hand-built parts: the bound uses exactly those parts."""
    torch.manual_seed(0)
    enc = vae.GaussianEncoder(10, 3, (12,))
    dec = vae.BernoulliDecoder(10, 3, (12,))
    model = vae.VAE(enc, dec)
    x = (torch.rand(4, 10) > 0.5).float()
    torch.manual_seed(1)
    got = model.elbo(x)
    torch.manual_seed(1)
    mu, log_var = enc(x)
    z = mu + (0.5 * log_var).exp() * torch.randn(1, 4, 3)
    ref = D.Independent(D.Bernoulli(logits=dec.logits(z[0])), 1).log_prob(x) - vae.kl_diag_gaussian_standard_normal(mu, log_var)
    torch.testing.assert_close(got, ref)
    assert model.sample(5, generator=_gen(0)).shape == (5, 10)


@pytest.mark.parametrize("iaf_steps", [0, 2])
def test_encoder_log_prob_matches_the_density_of_its_samples(iaf_steps):
    """log q(z | x) returned with a sample equals encoder.log_prob at that z (for IAF: through its inverse)."""
    torch.manual_seed(0)
    enc = vae.GaussianEncoder(6, 3, (8,), iaf_steps=iaf_steps, iaf_hidden=8).double()
    for p in enc.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    x = torch.rand(4, 6, dtype=DT)
    z, log_q = enc.sample(x, 5, generator=_gen(1))
    assert z.shape == (5, 4, 3) and log_q.shape == (5, 4)
    torch.testing.assert_close(enc.log_prob(z, x), log_q)
    if iaf_steps == 0:
        mu, log_var = enc(x)
        torch.testing.assert_close(log_q, D.Independent(D.Normal(mu, (0.5 * log_var).exp()), 1).log_prob(z))


# ---------------------------------------------------------------- PixelCNN decoder (PixelVAE)
def _tiny_pixel_vae(seed=0):
    """Binary 3x3 images: 2^9 = 512 configurations to enumerate."""
    torch.manual_seed(seed)
    model = vae.make_vae("pixelcnn", data_dim=9, latent_dim=2, hidden=(8,), n_levels=2,
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
        log_p = model.decoder.log_prob(grid, z)  # (2, 512)
        ref = torch.stack([model.decoder.pixelcnn.log_prob(grid, context=zk) for zk in z])  # the PixelCNN's own
    assert torch.allclose(torch.logsumexp(log_p, -1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(log_p, ref, atol=1e-5)
    assert (log_p[0] - log_p[1]).abs().max() > 1e-3
    s = model.sample(7, generator=_gen(1))
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


def test_logistic_mixture_decoder_mean_log_prob_and_samples_agree():
    """The decoder's E[x | z] (a sum over the levels) against the average of its samples, and its
    log p(x | z) against the mixture's per-pixel log-probabilities summed."""
    from gencourse.distributions import discretized_logistic_mixture_log_prob

    torch.manual_seed(0)
    dec = vae.LogisticMixtureDecoder(6, 2, 17, 3, (16,))
    z = torch.randn(1, 2)
    with torch.no_grad():
        draws = dec.sample(z.expand(40_000, 2), generator=torch.Generator().manual_seed(1)).double()
        mean = dec.mean(z)[0].double()
        x = torch.randint(0, 17, (5, 6), generator=torch.Generator().manual_seed(2))
        logits, mu, log_scale = dec.parameters_of(z.expand(5, 2))
        expected = discretized_logistic_mixture_log_prob(x, logits, mu, log_scale, 17, event_dims=0).sum(-1)
        torch.testing.assert_close(dec.log_prob(x, z.expand(5, 2)), expected)
    se = draws.std(0) / 200
    assert torch.all((draws.mean(0) - mean).abs() < 5 * se + 1e-6), (draws.mean(0), mean)
    assert draws.min() >= 0 and draws.max() <= 16
