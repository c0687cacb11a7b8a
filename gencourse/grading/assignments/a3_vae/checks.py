r"""Hidden checks of assignment 3 (variational autoencoders).

The student-facing functions keep the signatures of the assignment, which differ from
``gencourse.vae`` in two places: the ELBO takes decoder logits (the Bernoulli reconstruction term
is part of the item), and the linear-Gaussian pieces take ``(W, b, sigma)`` instead of a model
object. The thin adapters below express those signatures with the reference code of
:mod:`gencourse.vae`; they are imported relatively, so the sealed copy stays sealed.

The cases and call adapters run inside the student's kernel while grading, where the adapters and
the reference code behind them (``LinearGaussianModel.posterior`` and ``kl_gaussians`` included) are
hidden. Edge cases: one sample, one example, one dimension, log-weights of different examples
thousands of nats apart (a max over the whole batch underflows), float32 logits of +-200.

**The score-function estimator** ``score_function_grad(f, mu, log_var, n_samples, baseline,
generator)`` is random: it is graded by its distribution. Each row of ``mu`` and ``log_var`` is
repeated 100 000 times, the estimator runs once on them (a seeded generator given, the global
generators seeded too) with ``f(z) = |z - a|^2`` (a per row), and the mean and the standard deviation
of the 100 000 estimates of each row are compared with the reference's own. The tolerance (0.21 +
0.14 |expected|) is at least seven standard errors of the difference of two such estimates (measured
over 16 seeds; the spread of the log-variance estimates, whose distribution has heavy tails, needs
the most), so any correct way of drawing the noise passes, while a missing term of the score, a
baseline that uses the sample's own value (biased), a leave-one-out mean divided by S instead of
S - 1 (unbiased, but a larger variance), or the reparameterisation gradient instead (unbiased, far
smaller variance) fail.
"""
import math

import torch
from torch import nn

from ...spec import Case, Check, CheckFailed, fill_parameters, seeded

from ....vae import LinearGaussianModel, bernoulli_log_prob, elbo, make_vae
from ....vae import score_function_grad as _library_score

F64 = torch.float64
COPIES = 100_000  # copies of each row in the distribution check of score_function_grad

__all__ = ["CHECKS", "bernoulli_elbo", "linear_gaussian_posterior", "linear_gaussian_elbo", "AssignmentVAE",
           "score_function_estimate"]


# --------------------------------------------------------------------------------------------
# Adapters: the assignment's signatures on top of gencourse.vae
# --------------------------------------------------------------------------------------------
def bernoulli_elbo(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""ELBO(x) = \frac{1}{S} \sum_s \log p(x | z_s) - KL(q || N(0, I)); ``logits (S, B, D)`` -> ``(B,)``."""
    return elbo(bernoulli_log_prob(x, logits), mu, log_var)


def _model(W, b, sigma) -> LinearGaussianModel:
    """The reference model holding ``W`` and ``b`` themselves (not copies as parameters): differentiable in them."""
    model = LinearGaussianModel.__new__(LinearGaussianModel)
    nn.Module.__init__(model)
    model.W, model.b, model.sigma = W, b, float(sigma)
    return model


def linear_gaussian_posterior(x, W, b, sigma):
    r"""Exact p(z | x) of p(z) = N(0, I), p(x | z) = N(W z + b, \sigma^2 I): ``(mean (B, H), cov (H, H))``."""
    return _model(W, b, sigma).posterior(x)


def linear_gaussian_elbo(x, W, b, sigma, q_mean, q_cov):
    r"""ELBO(q) in closed form for q = N(q_mean, q_cov), ``(B,)``."""
    return _model(W, b, sigma).elbo(x, q_mean, q_cov)


class AssignmentVAE(nn.Module):
    """The assignment's VAE: one hidden layer of width ``hidden``, Bernoulli decoder, with the
    notebook's parameter names (``encoder``, ``enc_out``, ``decoder``) on top of gencourse.vae."""

    def __init__(self, data_dim: int = 64, latent_dim: int = 8, hidden: int = 128):
        super().__init__()
        vae = make_vae("bernoulli", data_dim=data_dim, latent_dim=latent_dim, hidden=(hidden,))
        self.encoder, self.enc_out, self.decoder = vae.encoder.net, vae.encoder.out, vae.decoder.net
        self.gaussian, self.bernoulli = vae.encoder, vae.decoder  # the same modules: each weight listed once

    def encode(self, x: torch.Tensor):
        return self.gaussian(x)  # (mu, log_var), each (B, latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.bernoulli.logits(z)  # (..., data_dim)


def score_function_estimate(f, mu, log_var, n_samples, baseline=False, generator=None):
    r"""The S-sample score-function estimate of \nabla_{\mu, \log\sigma^2} E_{N(\mu, \sigma^2)}[f(z)] per row.

    ``mu, log_var (B, H)``; ``f`` maps ``(S, B, H)`` to ``(S, B)``. With ``baseline`` each sample's
    f(z_s) is centred by the mean of f over the other S - 1 samples (leave-one-out: unbiased).
    Returns ``(grad_mu, grad_log_var)``, each ``(B, H)``.
    """
    eps = torch.randn(n_samples, *mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)  # (S, B, H)
    b = 0.0
    if baseline:
        with torch.no_grad():
            fz = f(mu + torch.exp(0.5 * log_var) * eps)  # (S, B)
            b = (fz.sum(0, keepdim=True) - fz) / (n_samples - 1)  # leave-one-out means (S, B)
    grad_mu, grad_log_var = _library_score(f, mu, log_var, eps, baseline=b)  # per sample (S, B, H)
    return grad_mu.mean(0), grad_log_var.mean(0)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def _posterior_params(gen, *shape, dtype=F64):
    mu = torch.randn(*shape, generator=gen, dtype=dtype) * 1.5
    log_var = torch.randn(*shape, generator=gen, dtype=dtype) * 1.5  # variances from about 0.01 to 100
    return mu, log_var


def _reparam_cases(gen):
    mu, lv = _posterior_params(gen, 6, 3)
    mu2, lv2 = _posterior_params(gen, 4, 5)
    mu3, lv3 = _posterior_params(gen, 8, 2, dtype=torch.float32)
    return [Case((mu, lv, torch.randn(6, 3, generator=gen, dtype=F64)), label="one sample per example (B, H)"),
            Case((mu2, lv2, torch.randn(7, 4, 5, generator=gen, dtype=F64)), label="7 samples per example (S, B, H)"),
            Case((mu3, lv3, torch.randn(8, 2, generator=gen, dtype=torch.float32)), label="float32")]


def _kl_cases(gen):
    mu, lv = _posterior_params(gen, 5, 4)
    mu2, lv2 = _posterior_params(gen, 3, 6, 2)
    zero = torch.zeros(3, 4, dtype=F64)
    return [Case((mu, lv), label="a batch of 5 posteriors in 4-D"),
            Case((mu2, lv2), label="extra batch dimensions (3, 6, 2)"),
            Case((zero, zero), label="q equal to the prior (KL = 0)"),
            Case((mu[:, :1], torch.full((5, 1), -6.0, dtype=F64)), label="narrow posteriors, log_var = -6")]


def _binary(gen, *shape, dtype=F64):
    return (torch.rand(*shape, generator=gen, dtype=dtype) > 0.5).to(dtype)


def _elbo_cases(gen):
    b, d, h = 4, 10, 3
    x = _binary(gen, b, d)
    mu, lv = _posterior_params(gen, b, h)
    x2 = _binary(gen, 3, 64, dtype=torch.float32)
    mu2, lv2 = _posterior_params(gen, 3, 2, dtype=torch.float32)
    x1 = _binary(gen, 1, 1)
    mu1, lv1 = _posterior_params(gen, 1, 1)
    return [Case((x, torch.randn(1, b, d, generator=gen, dtype=F64) * 3, mu, lv), label="S = 1 sample"),
            Case((x1, torch.randn(1, 1, 1, generator=gen, dtype=F64) * 3, mu1, lv1), label="S = B = D = H = 1"),
            Case((x, torch.randn(5, b, d, generator=gen, dtype=F64) * 3, mu, lv), label="S = 5 samples"),
            Case((x2, torch.randn(2, 3, 64, generator=gen) * 60, mu2, lv2),
                 label="float32 logits as large as +-200 (log sigmoid must be computed stably)")]


def _linear_gaussian(gen, d, h, sigma, b):
    W = torch.randn(d, h, generator=gen, dtype=F64)
    bias = torch.randn(d, generator=gen, dtype=F64) * 2
    x = torch.randn(b, d, generator=gen, dtype=F64) * 2 + bias
    return x, W, bias, sigma


def _lg_posterior_cases(gen):
    return [Case(_linear_gaussian(gen, 5, 2, 0.5, 4), label="D = 5, H = 2, sigma = 0.5"),
            Case(_linear_gaussian(gen, 3, 3, 2.0, 6), label="D = 3, H = 3, sigma = 2"),
            Case(_linear_gaussian(gen, 8, 1, 1.0, 1), label="D = 8, H = 1, one example")]


def _spd(gen, *batch, h):
    a = torch.randn(*batch, h, h, generator=gen, dtype=F64) * 0.5
    return a @ a.transpose(-1, -2) + 0.1 * torch.eye(h, dtype=F64)


def _lg_elbo_cases(gen):
    x, W, bias, sigma = _linear_gaussian(gen, 5, 2, 0.7, 4)
    m = torch.randn(4, 2, generator=gen, dtype=F64)
    x2, W2, bias2, sigma2 = _linear_gaussian(gen, 4, 3, 1.5, 3)
    m2 = torch.randn(3, 3, generator=gen, dtype=F64)
    # the exact posterior by conditioning the joint Gaussian of (z, x) (the graded posterior is hidden while grading)
    gain = torch.linalg.solve(W @ W.T + sigma ** 2 * torch.eye(5, dtype=F64), W).T  # W^T (W W^T + sigma^2 I)^-1
    post_mean, post_cov = (x - bias) @ gain.T, torch.eye(2, dtype=F64) - gain @ W
    return [Case((x, W, bias, sigma, m, _spd(gen, 4, h=2)), label="a full covariance per example (B, H, H)"),
            Case((x2, W2, bias2, sigma2, m2, _spd(gen, h=3)), label="one shared covariance (H, H)"),
            Case((x, W, bias, sigma, post_mean, post_cov), label="q = the exact posterior")]


def _iwae_cases(gen):
    def terms(k, b, scale, shift=0.0):  # shift moves log p(x | z), and so the log-weights
        log_px_z, log_pz, log_qz = (torch.randn(k, b, generator=gen, dtype=F64) * scale for _ in range(3))
        return log_px_z + shift, log_pz, log_qz
    return [Case(terms(10, 4, 2.0), label="K = 10 samples"),
            Case(terms(1, 3, 2.0), label="K = 1 sample (the bound is a one-sample ELBO)"),
            Case(terms(50, 2, 5.0, shift=-1200.0), label="K = 50, log-weights near -1200 (needs logsumexp)"),
            Case(terms(6, 3, 2.0, shift=torch.tensor([-1500.0, 0.0, 40.0], dtype=F64)),
                 label="K = 6, log-weights of the 3 examples near -1500, 0 and 40 (normalise per example)")]


def _vae_cases(gen):
    x = _binary(gen, 5, 10, dtype=torch.float32)
    x2 = _binary(gen, 3, 64, dtype=torch.float32)
    return [Case((x, torch.randn(5, 3, generator=gen)), dict(data_dim=10, latent_dim=3, hidden=7),
                 label="D = 10, H = 3, hidden 7, z (B, H)"),
            Case((x2, torch.randn(4, 3, 8, generator=gen)), dict(data_dim=64, latent_dim=8, hidden=32),
                 label="D = 64, H = 8, hidden 32, z (S, B, H) with S = 4")]


def _call_vae(cls, case):
    x, z = case.args
    model = fill_parameters(cls(**case.kwargs), seed=3, scale=0.4).to(x.device)
    mu, log_var = model.encode(x)
    return mu, log_var, model.decode(z)


def _score_cases(gen):
    def rows(*values, dtype=F64):
        return torch.tensor(values, dtype=dtype)
    log = math.log
    out = []
    for label, mu, var, a, n, baseline, dtype in (
            ("no baseline, one sample (S = 1)", ([0.5, -1.0], [0.0, 1.0]), ([0.5, 1.0], [0.7, 0.5]),
             ([1.0, 0.0], [-0.5, 1.5]), 1, False, F64),
            ("no baseline, S = 5", ([0.5, 0.3],), ([0.25, math.e ** 0.5],), ([2.0, -1.0],), 5, False, F64),
            ("leave-one-out baseline, S = 4", ([0.5, -1.0], [0.0, 1.0]), ([0.5, 1.0], [1.5, 0.5]),
             ([2.0, 0.0], [-1.0, 2.0]), 4, True, F64),
            ("leave-one-out baseline, S = 2, float32", ([0.5, -1.0],), ([0.5, math.e ** 0.3],), ([2.0, 1.0],), 2, True,
             torch.float32),
            ("leave-one-out baseline, S = 3, f far from its minimum (a large baseline)", ([0.0, 0.5],), ([0.5, 0.8],),
             ([4.0, -3.5],), 3, True, F64)):
        log_var = torch.tensor([[log(v) for v in r] for r in var], dtype=F64).to(dtype)
        out.append(Case((rows(*mu, dtype=dtype), log_var, rows(*a, dtype=dtype)),
                        dict(n_samples=n, baseline=baseline, seed=len(out)), label=label))
    return out


def _call_score(impl, case):
    """The mean and the standard deviation of COPIES estimates from each row: what every correct
    implementation shares, however it draws its noise."""
    mu, log_var, a = case.args
    rows, h = mu.shape
    mus, log_vars, targets = (t.repeat_interleave(COPIES, 0) for t in (mu, log_var, a))

    def f(z):  # (S, B, H) -> (S, B)
        return ((z - targets) ** 2).sum(-1)

    seed = case.kwargs["seed"]
    with seeded(2000 + seed, mus.device) as cpu_gen:
        gen = cpu_gen if mus.device.type == "cpu" else torch.Generator(mus.device).manual_seed(2001 + seed)
        out = impl(f, mus, log_vars, case.kwargs["n_samples"], baseline=case.kwargs["baseline"], generator=gen)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailed(f"it returned {type(out).__name__}; expected a pair (grad_mu, grad_log_var)")
    for name, g in zip(("grad_mu", "grad_log_var"), out):
        if not isinstance(g, torch.Tensor) or g.shape != mus.shape:
            raise CheckFailed(f"its {name} is {getattr(g, 'shape', type(g).__name__)}; expected one estimate per row "
                              f"of mu, of shape {tuple(mus.shape)}")
    g_mu, g_lv = (g.detach().reshape(rows, COPIES, h) for g in out)
    return g_mu.mean(1), g_lv.mean(1), g_mu.std(1), g_lv.std(1)


CHECKS = [
    Check("a3.reparameterize", "vae:reparameterize", _reparam_cases, what="reparameterize",
          rtol=1e-6, atol=1e-8),
    Check("a3.kl_standard_normal", "vae:kl_diag_gaussian_standard_normal", _kl_cases,
          what="kl_standard_normal", rtol=1e-6, atol=1e-8),
    Check("a3.elbo", "grading.assignments.a3_vae.checks:bernoulli_elbo", _elbo_cases, what="elbo", rtol=1e-5, atol=1e-6,
          grad=(1, 2, 3), hides=("vae:elbo",)),  # x is data
    Check("a3.linear_gaussian_posterior", "grading.assignments.a3_vae.checks:linear_gaussian_posterior", _lg_posterior_cases,
          what="linear_gaussian_posterior", rtol=1e-6, atol=1e-8, hides=("vae:LinearGaussianModel.posterior",),
          outputs=("posterior mean", "posterior covariance")),
    Check("a3.linear_gaussian_elbo", "grading.assignments.a3_vae.checks:linear_gaussian_elbo", _lg_elbo_cases,
          what="linear_gaussian_elbo", rtol=1e-6, atol=1e-7,
          hides=("vae:LinearGaussianModel.elbo", "vae:LinearGaussianModel.expected_log_likelihood",
                 "vae:LinearGaussianModel.kl_to_prior", "vae:kl_gaussians")),
    Check("a3.iwae_bound", "vae:iwae_bound", _iwae_cases, what="iwae_bound", rtol=1e-7, atol=1e-7),
    Check("a3.vae", "grading.assignments.a3_vae.checks:AssignmentVAE", _vae_cases, call=_call_vae,
          what="VAE (encode and decode)", rtol=1e-4, atol=1e-5, grad=(1,), hides=("vae:VAE",),  # x is data
          outputs=("encoder mean mu", "encoder log-variance log_var", "decoder output (logits)")),
    Check("a3.score_function_grad", "grading.assignments.a3_vae.checks:score_function_estimate", _score_cases,
          call=_call_score, what="score_function_grad", rtol=0.14, atol=0.21, grad=(), hides=("vae:score_function_grad",),
          outputs=("mean of the mu-gradient estimates", "mean of the log_var-gradient estimates",
                   "standard deviation of the mu-gradient estimates",
                   "standard deviation of the log_var-gradient estimates")),
]
