r"""Variational autoencoders: the evidence lower bound (ELBO), its pieces, and the IWAE bound.

A latent-variable model p(x, z) = p(x | z) p(z) has an intractable marginal likelihood
p(x) = \int p(x | z) p(z) dz. For any distribution q(z | x),

    \log p(x) = E_q[\log p(x | z)] - KL(q(z | x) || p(z)) + KL(q(z | x) || p(z | x)),

and the last term is >= 0, so the first two terms (the ELBO) bound \log p(x) from below, with
equality when q is the exact posterior. A VAE (Kingma & Welling, 2014) trains a decoder
:math:`p_\theta(x \mid z)` and an *amortised* encoder :math:`q_\phi(z \mid x) = N(\mu_\phi(x), \operatorname{diag} \sigma^2_\phi(x))`
together by maximising the ELBO with the reparameterisation z = \mu + \sigma \odot \epsilon.
The importance-weighted bound (Burda et al., 2016)

    L_K(x) = E[\log \frac{1}{K} \sum_k p(x, z_k) / q(z_k | x)],   z_k ~ q(z | x),

satisfies L_1 = ELBO <= L_K <= L_{K+1} <= \log p(x) and tends to \log p(x) as K grows.

Everything here works per example: functions return ``(B,)`` (summed over pixels and latent
dimensions, never averaged); only :meth:`VAE.loss` takes a mean over the batch. All values are
in nats.

Contents:
    * pure functions: :func:`elbo`, :func:`elbo_from_samples`, :func:`iwae_bound`, and from
      :mod:`gencourse.distributions` (re-exported: the assignment imports them from here)
      :func:`reparameterize`, :func:`kl_diag_gaussian_standard_normal`, :func:`gaussian_log_prob`,
      :func:`standard_normal_log_prob`, :func:`bernoulli_log_prob`, :func:`categorical_log_prob`;
    * gradient estimators of E_q[f(z)]: :func:`score_function_grad`, :func:`reparam_grad`;
    * :class:`LinearGaussianModel`: a model where every quantity of the ELBO derivation is exact;
    * the parts of a VAE, each with its own ``log_prob`` and ``sample``: the encoder
      :class:`GaussianEncoder` (optionally with an IAF posterior, :mod:`gencourse.flows`), the
      decoders p(x | z) :class:`BernoulliDecoder`, :class:`CategoricalDecoder`,
      :class:`GaussianDecoder`, :class:`MADEDecoder` and :class:`PixelCNNDecoder` (autoregressive;
      the latter is the PixelVAE of Gulrajani et al., 2017), the priors p(z)
      :class:`StandardNormalPrior` and :class:`VampPrior`;
    * :class:`VAE` ``(encoder, decoder, prior)`` and the factory :func:`make_vae`.

Used by: lecture 04_vae; assignment a3_vae (``reparameterize``, ``kl_diag_gaussian_standard_normal``,
``elbo``, ``iwae_bound``, :class:`LinearGaussianModel` and the Bernoulli VAE are graded; the
notebook imports ``LinearGaussianModel, gaussian_log_prob, reparam_grad,
score_function_grad, standard_normal_log_prob`` from here).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .distributions import (bernoulli_log_prob, bernoulli_sample, categorical_log_prob, categorical_sample,
                            discretized_logistic_mixture_log_prob, discretized_logistic_mixture_sample,
                            gaussian_log_prob, gaussian_sample, kl_diag_gaussian_standard_normal,
                            multivariate_normal_log_prob, reparameterize, standard_normal_log_prob)
from .flows import IAFPosterior
from .nn import MADENet, MaskedLinear, made_masks, mlp
from .pixelcnn import GatedPixelCNN

__all__ = [
    "reparameterize", "kl_diag_gaussian_standard_normal", "gaussian_log_prob", "standard_normal_log_prob",
    "bernoulli_log_prob", "categorical_log_prob", "elbo", "elbo_from_samples", "iwae_bound",
    "score_function_grad", "reparam_grad", "kl_gaussians", "LinearGaussianModel",
    "GaussianEncoder", "BernoulliDecoder", "CategoricalDecoder", "LogisticMixtureDecoder", "GaussianDecoder", "MADEDecoder",
    "PixelCNNDecoder", "StandardNormalPrior", "VampPrior", "VAE", "make_vae", "DECODERS", "PRIORS",
]

#: The hidden nonlinearity of the VAE's MLPs.
_ACT = partial(nn.LeakyReLU, 0.1)


# --------------------------------------------------------------------------------------------
# Pure functions (the assignment's hidden tests compare student code with these)
# --------------------------------------------------------------------------------------------
def elbo(log_p_x_given_z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""ELBO(x) = E_q[\log p(x | z)] - KL(N(\mu, diag \sigma^2) || N(0, I)), the KL in closed form.

    Args:
        log_p_x_given_z: ``(B,)`` one-sample estimate of the reconstruction term \log p(x | z),
            z ~ q(z | x), or ``(S, B)`` for ``S`` samples (averaged over ``S``).
        mu, log_var: ``(B, H)`` the diagonal-Gaussian posterior q(z | x).

    Returns:
        ``(B,)`` per-example ELBO in nats (pixels summed, not averaged).
    """
    rec = log_p_x_given_z if log_p_x_given_z.dim() == 1 else log_p_x_given_z.mean(0)  # (B,)
    return rec - kl_diag_gaussian_standard_normal(mu, log_var)


def elbo_from_samples(log_p_x_given_z: torch.Tensor, log_p_z: torch.Tensor,
                      log_q_z: torch.Tensor) -> torch.Tensor:
    r"""ELBO(x) \approx \frac{1}{S} \sum_s [\log p(x | z_s) + \log p(z_s) - \log q(z_s | x)].

    The Monte Carlo ELBO, for posteriors whose KL has no closed form (e.g. an IAF).

    Args:
        log_p_x_given_z, log_p_z, log_q_z: ``(S, B)`` evaluated at the samples z_s ~ q(z | x).

    Returns:
        ``(B,)``.
    """
    return (log_p_x_given_z + log_p_z - log_q_z).mean(0)


def iwae_bound(log_p_x_given_z: torch.Tensor, log_p_z: torch.Tensor, log_q_z: torch.Tensor) -> torch.Tensor:
    r"""L_K(x) = \log \frac{1}{K} \sum_k w_k,  \log w_k = \log p(x | z_k) + \log p(z_k) - \log q(z_k | x).

    Computed in log space: logsumexp_k(\log w_k) - \log K.

    Args:
        log_p_x_given_z, log_p_z, log_q_z: ``(K, B)`` at K samples z_k ~ q(z | x) per example.

    Returns:
        ``(B,)`` the importance-weighted bound (K = 1 gives a one-sample ELBO estimate).
    """
    log_w = log_p_x_given_z + log_p_z - log_q_z  # (K, B)
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


# --------------------------------------------------------------------------------------------
# Gradient estimators of E_q[f(z)] for a diagonal Gaussian q
# --------------------------------------------------------------------------------------------
def score_function_grad(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor,
                        log_var: torch.Tensor, eps: torch.Tensor, baseline: float = 0.0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""REINFORCE: :math:`\nabla_\lambda E_q[f(z)] = E_q[(f(z) - b) \nabla_\lambda \log q_\lambda(z)]`.

    For q = N(\mu, diag \sigma^2) and z = \mu + \sigma \epsilon:
    \partial \log q / \partial \mu = (z - \mu) / \sigma^2 = \epsilon / \sigma and
    \partial \log q / \partial \log \sigma^2 = \frac{1}{2}((z - \mu)^2 / \sigma^2 - 1) = \frac{1}{2}(\epsilon^2 - 1).
    Only values of f are used, never its gradient.

    Args:
        f: maps ``(S, H)`` points to ``(S,)`` values.
        mu, log_var: ``(H,)`` parameters of q.
        eps: ``(S, H)`` standard normal draws, z_s = \mu + \sigma \epsilon_s.
        baseline: a constant b subtracted from f (unbiased for any constant).

    Returns:
        ``(grad_mu, grad_log_var)``, each ``(S, H)``: one single-sample estimate per row; their
        mean over rows is the S-sample estimator, their variance over rows its per-sample variance.
    """
    with torch.no_grad():
        sigma = torch.exp(0.5 * log_var)  # (H,)
        z = mu + sigma * eps  # (S, H)
        fz = (f(z) - baseline).unsqueeze(-1)  # (S, 1)
        grad_mu = fz * eps / sigma  # (S, H)
        grad_log_var = fz * 0.5 * (eps ** 2 - 1.0)  # (S, H)
    return grad_mu, grad_log_var


def reparam_grad(f: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor,
                 log_var: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Reparameterisation: :math:`\nabla_\lambda E_q[f(z)] = E_\epsilon[\nabla_\lambda f(\mu + \sigma \epsilon)]`.

    By the chain rule, \partial f / \partial \mu = \nabla f(z) and
    \partial f / \partial \log \sigma^2 = \nabla f(z) \odot \frac{1}{2} \sigma \epsilon.
    Needs f to be differentiable (autograd gives \nabla f).

    Args and returns as :func:`score_function_grad`: per-sample estimates ``(S, H)`` each.
    """
    sigma = torch.exp(0.5 * log_var.detach())  # (H,)
    z = (mu.detach() + sigma * eps).requires_grad_(True)  # (S, H)
    with torch.enable_grad():
        (grad_z,) = torch.autograd.grad(f(z).sum(), z)  # rows are independent: (S, H)
    return grad_z, grad_z * 0.5 * sigma * eps


# --------------------------------------------------------------------------------------------
# The linear-Gaussian model: every term of the ELBO derivation in closed form
# --------------------------------------------------------------------------------------------
def _batch_matrix(cov: torch.Tensor, batch: int) -> torch.Tensor:
    return cov.expand(batch, *cov.shape[-2:]) if cov.dim() == 2 else cov


def kl_gaussians(m0: torch.Tensor, s0: torch.Tensor, m1: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    r"""KL(N(m_0, S_0) || N(m_1, S_1)) = \frac{1}{2}[tr(S_1^{-1} S_0) + (m_1 - m_0)^T S_1^{-1} (m_1 - m_0) - H + \log|S_1| - \log|S_0|].

    Args:
        m0, m1: ``(B, H)``; s0, s1: ``(H, H)`` or ``(B, H, H)`` covariances.

    Returns:
        ``(B,)``.
    """
    b, h = m0.shape
    s0, s1 = _batch_matrix(s0, b), _batch_matrix(s1, b)
    l1 = torch.linalg.cholesky(s1)  # (B, H, H)
    trace = torch.cholesky_solve(s0, l1).diagonal(dim1=-2, dim2=-1).sum(-1)  # (B,)
    diff = (m1 - m0).unsqueeze(-1)  # (B, H, 1)
    maha = (diff * torch.cholesky_solve(diff, l1)).sum((-2, -1))  # (B,)
    logdet1 = 2 * torch.log(l1.diagonal(dim1=-2, dim2=-1)).sum(-1)
    logdet0 = torch.linalg.slogdet(s0)[1]
    return 0.5 * (trace + maha - h + logdet1 - logdet0)




class LinearGaussianModel(nn.Module):
    r"""p(z) = N(0, I_H),  p(x | z) = N(W z + b, \sigma^2 I_D).

    Everything is exact: the marginal p(x) = N(b, W W^T + \sigma^2 I), the posterior
    p(z | x) = N(\Sigma W^T (x - b) / \sigma^2, \Sigma) with \Sigma = (I + W^T W / \sigma^2)^{-1},
    and for a Gaussian q(z) = N(m, S) the expected log-likelihood
    E_q[\log p(x | z)] = -\frac{D}{2} \log(2\pi\sigma^2) - \frac{1}{2\sigma^2}(||x - W m - b||^2 + tr(W S W^T)).
    This is probabilistic PCA (Tipping & Bishop, 1999). Use float64 for identities to 1e-5.

    Args:
        W: ``(D, H)`` loading matrix; b: ``(D,)`` offset; sigma: observation noise std.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, sigma: float):
        super().__init__()
        self.W = nn.Parameter(torch.as_tensor(W).clone())
        self.b = nn.Parameter(torch.as_tensor(b, dtype=self.W.dtype).clone())
        self.sigma = float(sigma)

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, sigma: float = 0.5, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> "LinearGaussianModel":
        """A model with standard normal ``W`` and ``b`` drawn from ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        W = torch.randn(data_dim, latent_dim, generator=gen, dtype=dtype)
        b = torch.randn(data_dim, generator=gen, dtype=dtype)
        return cls(W, b, sigma)

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    def marginal_cov(self) -> torch.Tensor:
        r"""W W^T + \sigma^2 I, ``(D, D)``."""
        eye = torch.eye(self.data_dim, dtype=self.W.dtype, device=self.W.device)
        return self.W @ self.W.T + self.sigma ** 2 * eye

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact \log p(x) = \log N(x; b, W W^T + \sigma^2 I), ``(B, D) -> (B,)``."""
        return multivariate_normal_log_prob(x, self.b, self.marginal_cov())

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(x | z) = \log N(x; W z + b, \sigma^2 I); ``x (B, D)``, ``z (..., B, H) -> (..., B)``."""
        return gaussian_log_prob(x, z @ self.W.T + self.b, 2 * math.log(self.sigma))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Exact p(z | x) = N(mean, cov): ``mean (B, H)`` and ``cov (H, H)`` (the same for every x)."""
        eye = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        precision = eye + self.W.T @ self.W / self.sigma ** 2  # (H, H)
        cov = torch.linalg.inv(precision)
        cov = 0.5 * (cov + cov.T)  # symmetric to rounding
        mean = (x - self.b) @ self.W @ cov / self.sigma ** 2  # (B, H)
        return mean, cov

    def expected_log_likelihood(self, x: torch.Tensor, q_mean: torch.Tensor, q_cov: torch.Tensor) -> torch.Tensor:
        r"""E_{N(z; m, S)}[\log p(x | z)] in closed form; ``q_cov`` ``(H, H)`` or ``(B, H, H)`` -> ``(B,)``."""
        resid = x - q_mean @ self.W.T - self.b  # (B, D)
        trace = torch.einsum("dh,...hk,dk->...", self.W, q_cov, self.W)  # tr(W S W^T): () or (B,)
        sq = (resid ** 2).sum(-1) + trace  # (B,)
        return -0.5 * sq / self.sigma ** 2 - 0.5 * self.data_dim * math.log(2 * math.pi * self.sigma ** 2)

    def kl_to_prior(self, q_mean: torch.Tensor, q_cov: torch.Tensor) -> torch.Tensor:
        r"""KL(N(m, S) || N(0, I)), ``(B,)``."""
        h = self.latent_dim
        eye = torch.eye(h, dtype=q_mean.dtype, device=q_mean.device)
        return kl_gaussians(q_mean, q_cov, torch.zeros_like(q_mean), eye)

    def elbo(self, x: torch.Tensor, q_mean: torch.Tensor, q_cov: torch.Tensor) -> torch.Tensor:
        r"""ELBO(q) = E_q[\log p(x | z)] - KL(q || p(z)) in closed form, ``(B,)``."""
        return self.expected_log_likelihood(x, q_mean, q_cov) - self.kl_to_prior(q_mean, q_cov)

    def kl_to_posterior(self, x: torch.Tensor, q_mean: torch.Tensor, q_cov: torch.Tensor) -> torch.Tensor:
        r"""KL(q(z) || p(z | x)) in closed form, ``(B,)``: the gap \log p(x) - ELBO(q)."""
        post_mean, post_cov = self.posterior(x)
        return kl_gaussians(q_mean, q_cov, post_mean, post_cov)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in nats per example (maximum likelihood = probabilistic PCA)."""
        return -self.log_prob(x).mean()

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` draws ``(n, D)`` of x by ancestral sampling z ~ p(z), x ~ p(x | z)."""
        kw = dict(generator=generator, dtype=self.W.dtype, device=self.W.device)
        z = torch.randn(n, self.latent_dim, **kw)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, self.data_dim, **kw)




# --------------------------------------------------------------------------------------------
# The encoder q(z | x)
# --------------------------------------------------------------------------------------------
class GaussianEncoder(nn.Module):
    r"""q(z | x) = N(\mu(x), diag \sigma^2(x)) from an MLP, optionally followed by an IAF.

    With ``iaf_steps = T > 0`` the Gaussian draw z_0 is pushed through T inverse autoregressive
    flow steps (:class:`gencourse.flows.IAFPosterior`, context: the MLP's last hidden features),

        \log q(z_T | x) = \log N(z_0; \mu(x), \sigma^2(x)) - \sum_t \log|\det dz_t / dz_{t-1}|.

    Args:
        data_dim: D; latent_dim: H.
        hidden: widths of the MLP's hidden layers (at least one).
        n_levels: when set, x holds integer levels and the network sees x / (n_levels - 1) in [0, 1].
        dropout: dropout rate between hidden layers.
        iaf_steps, iaf_hidden: number of IAF steps (0: a plain Gaussian q) and width of their MADEs.
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (256, 256), *,
                 n_levels: Optional[int] = None, dropout: float = 0.0, iaf_steps: int = 0, iaf_hidden: int = 64):
        super().__init__()
        hidden = list(hidden)
        self.data_dim, self.latent_dim, self.n_levels = data_dim, latent_dim, n_levels
        self.net = mlp([data_dim, *hidden], _ACT, dropout, final_activation=True)  # x -> features h
        self.out = nn.Linear(hidden[-1], 2 * latent_dim)  # mean and log-variance
        self.iaf = IAFPosterior(latent_dim, iaf_steps, iaf_hidden, hidden[-1]) if iaf_steps > 0 else None

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the network reads: ``x`` in [0, 1] (levels divided by L - 1) in the encoder's dtype."""
        u = x.to(self.out.weight.dtype)
        return u if self.n_levels is None else u / (self.n_levels - 1)

    def gaussian(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, log_var, h)`` at network inputs ``u (B, D)`` (already in [0, 1]): ``(B, H)``, ``(B, H)``,
        features ``(B, hidden[-1])``."""
        h = self.net(u)
        mu, log_var = self.out(h).chunk(2, dim=-1)
        return mu, log_var, h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian part of q(z | x): ``(mu, log_var)``, each ``(B, H)``."""
        mu, log_var, _ = self.gaussian(self.inputs(x))
        return mu, log_var

    def sample(self, x: torch.Tensor, n_samples: int = 1, *,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Reparameterised z ~ q(z | x) ``(S, B, H)`` and \log q(z | x) ``(S, B)``."""
        mu, log_var, h = self.gaussian(self.inputs(x))
        z = gaussian_sample(mu, log_var, n_samples, generator=generator)  # (S, B, H)
        log_q = gaussian_log_prob(z, mu, log_var)  # (S, B)
        if self.iaf is not None:
            z, log_det = self.iaf(z, h.expand(n_samples, *h.shape))
            log_q = log_q - log_det
        return z, log_q

    def log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""\log q(z | x) at given latents ``z (..., B, H)`` -> ``(..., B)`` (with IAF: through its inverse)."""
        mu, log_var, h = self.gaussian(self.inputs(x))
        if self.iaf is None:
            return gaussian_log_prob(z, mu, log_var)
        z0, log_det = self.iaf.inverse(z, h.expand(*z.shape[:-1], h.shape[-1]))
        return gaussian_log_prob(z0, mu, log_var) + log_det


# --------------------------------------------------------------------------------------------
# Decoders p(x | z): log_prob(x, z) -> (..., B) for x (B, D), z (..., B, H); sample(z) -> (n, D)
# --------------------------------------------------------------------------------------------
class BernoulliDecoder(nn.Module):
    r"""p(x | z) = \prod_d Bernoulli(x_d; sigmoid(\ell_d(z))) for binary x ``(B, D)`` (float 0/1).

    Args:
        data_dim: D; latent_dim: H; hidden: widths of the MLP z -> logits; dropout: between its layers.
    """

    has_mean = True

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0):
        super().__init__()
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.net = mlp([latent_dim, *hidden, data_dim], _ACT, dropout)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., H) -> (..., D)``."""
        return self.net(z)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(x | z) summed over pixels: ``(..., B)``."""
        return bernoulli_log_prob(x, self.logits(z))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x ~ p(x | z): ``(n, D)`` floats 0/1."""
        return bernoulli_sample(self.logits(z), generator)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] = sigmoid(logits), ``(..., D)``."""
        return torch.sigmoid(self.logits(z))


class CategoricalDecoder(nn.Module):
    r"""p(x | z) = \prod_d Cat(x_d; softmax(\ell_d(z))) for x ``(B, D)`` of integer levels ``0..L-1``.

    Args:
        data_dim: D; latent_dim: H; n_levels: L (17 for the digits); hidden, dropout: the MLP z -> logits.
    """

    has_mean = True

    def __init__(self, data_dim: int, latent_dim: int, n_levels: int = 17, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0):
        super().__init__()
        self.data_dim, self.latent_dim, self.n_levels = data_dim, latent_dim, n_levels
        self.net = mlp([latent_dim, *hidden, data_dim * n_levels], _ACT, dropout)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., H) -> (..., D, L)``."""
        return self.net(z).unflatten(-1, (self.data_dim, self.n_levels))

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(x | z) summed over pixels: ``(..., B)``."""
        return categorical_log_prob(x, self.logits(z))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x ~ p(x | z): ``(n, D)`` int64 levels."""
        return categorical_sample(self.logits(z), generator)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] in level units, ``(..., D)``."""
        levels = torch.arange(self.n_levels, dtype=z.dtype, device=z.device)
        return (F.softmax(self.logits(z), -1) * levels).sum(-1)


class LogisticMixtureDecoder(nn.Module):
    r"""p(x | z) = \prod_d \sum_m \pi_{dm}(z)\, \mathrm{DLogistic}(x_d; \mu_{dm}(z), s_{dm}(z)) for x ``(B, D)`` of
    integer levels ``0..L-1``: a factorised decoder whose per-pixel distribution is a mixture of ``M``
    discretized logistics (:func:`~gencourse.distributions.discretized_logistic_mixture_log_prob`).

    Three numbers per component instead of the categorical decoder's L logits per pixel, and a
    distribution that is smooth over neighbouring levels: on the 1000 training digits it overfits
    far less (``benchmarks/bench_vae.py``). The MLP's outputs live on [-1, 1] (level 0 at -1, level
    L-1 at +1) and are converted to level units; the log-scale is kept above -7 there.

    Args:
        data_dim: D; latent_dim: H; n_levels: L; n_mixtures: M; hidden, dropout: the MLP z -> parameters.
    """

    has_mean = True

    def __init__(self, data_dim: int, latent_dim: int, n_levels: int = 17, n_mixtures: int = 3,
                 hidden: Sequence[int] = (256, 256), dropout: float = 0.0):
        super().__init__()
        self.data_dim, self.latent_dim, self.n_levels, self.n_mixtures = data_dim, latent_dim, n_levels, n_mixtures
        self.net = mlp([latent_dim, *hidden, data_dim * 3 * n_mixtures], _ACT, dropout)

    def parameters_of(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture logits, means and log-scales in level units, each ``(..., D, M)``."""
        out = self.net(z).unflatten(-1, (self.data_dim, 3, self.n_mixtures))
        half = (self.n_levels - 1) / 2  # [-1, 1] -> [0, L - 1]
        mean = (out[..., 1, :] + 1) * half
        log_scale = out[..., 2, :].clamp_min(-7.0) + math.log(half)
        return out[..., 0, :], mean, log_scale

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(x | z) summed over pixels: ``(..., B)``."""
        return discretized_logistic_mixture_log_prob(x, *self.parameters_of(z), self.n_levels)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x ~ p(x | z): ``(n, D)`` int64 levels."""
        return discretized_logistic_mixture_sample(*self.parameters_of(z), self.n_levels, generator)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] in level units, ``(..., D)``, by summing over the L levels."""
        logits, mean, log_scale = self.parameters_of(z)
        levels = torch.arange(self.n_levels, device=z.device)
        shape = (self.n_levels,) + (1,) * mean.dim()
        log_p = discretized_logistic_mixture_log_prob(levels.view(shape[:-1]), logits, mean, log_scale, self.n_levels,
                                                      event_dims=0)  # (L, ..., D)
        return (log_p.exp() * levels.to(mean.dtype).view(shape[:-1])).sum(0)

class GaussianDecoder(nn.Module):
    r"""p(x | z) = N(x; m(z), \sigma^2 I) with a FIXED \sigma: maximising it is minimising the squared
    error, the autoencoder's loss, with 1 / (2 \sigma^2) weighting it against the KL.

    Args:
        data_dim: D; latent_dim: H; hidden, dropout: the MLP z -> m(z); sigma: the fixed standard deviation.
    """

    has_mean = True

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (256, 256), sigma: float = 0.1,
                 dropout: float = 0.0):
        super().__init__()
        self.data_dim, self.latent_dim, self.sigma = data_dim, latent_dim, float(sigma)
        self.log_var = 2 * math.log(self.sigma)
        self.net = mlp([latent_dim, *hidden, data_dim], _ACT, dropout)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """m(z), ``(..., D)``."""
        return self.net(z)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log N(x; m(z), \sigma^2 I) summed over pixels: ``(..., B)``."""
        return gaussian_log_prob(x, self.mean(z), self.log_var)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x = m(z) + \\sigma \\epsilon: ``(n, D)`` floats."""
        return gaussian_sample(self.mean(z), self.log_var, generator=generator)


class MADEDecoder(nn.Module):
    r"""Autoregressive p(x | z) = \prod_{d=1}^{D} Cat(x_d; softmax(\ell_d(x_{<d}, z))): a MADE given z.

    A context c = g(z) (an unmasked MLP of the latent) enters three additive paths to the logits of
    pixel d (raster order; VLAE of Chen et al., 2017, PixelVAE of Gulrajani et al., 2017, with a
    MADE of Germain et al., 2015, in place of a PixelCNN):

        h^{(1)} = act((M^{(1)} \odot W^{(1)}) \tilde x + V c),  h^{(l)} = act((M^{(l)} \odot W^{(l)}) h^{(l-1)}),
        \ell_d = [U c]_d + [(M^{out} \odot W^{out}) h^{(L)}]_d + [(M^{dir} \odot A) \tilde x]_d + b_d,

    with \tilde x = x / (L - 1). ``U c`` is the plain categorical VAE decoder (global shape from z),
    the masked MLP (:class:`gencourse.nn.MADENet` with context c) adds the dependence between
    pixels, and ``A`` is a masked direct connection (an FVSBN: pixel d regresses on pixels d' < d).
    The masks let \ell_d see x_{<d} only, so each factor is a normalised conditional and
    \log p(x | z) = \sum_d \log softmax(\ell_d)[x_d] is exact: the ELBO and IWAE stay valid bounds.
    Sampling is sequential: D passes, one pixel each; its mean is intractable (``has_mean = False``).

    Args:
        data_dim: D; latent_dim: H; n_levels: L.
        hidden: widths of the masked hidden layers.
        context_hidden: widths of the context MLP z -> c (its last entry is the size of c).
        dropout: dropout on the hidden units (training only).
        direct_window: if set, the direct connection A sees only earlier pixels within this many
            rows and columns of pixel d (a local, PixelCNN-like prior; images must be square).
    """

    has_mean = False

    def __init__(self, data_dim: int, latent_dim: int, n_levels: int = 17, hidden: Sequence[int] = (128,),
                 context_hidden: Sequence[int] = (256,), dropout: float = 0.0, direct_window: Optional[int] = None):
        super().__init__()
        self.data_dim, self.latent_dim, self.n_levels = data_dim, latent_dim, n_levels
        n_out = data_dim * n_levels
        self.context = nn.Sequential(*mlp([latent_dim, *context_hidden], _ACT, dropout, final_activation=True),
                                     nn.Dropout(dropout))  # z -> c
        c_dim = list(context_hidden)[-1]
        self.global_out = nn.Linear(c_dim, n_out)  # U c + b
        self.made = MADENet(data_dim, hidden, n_levels, context_dim=c_dim, activation=_ACT, dropout=dropout,
                            head_bias=False)  # natural (raster) order, evenly spread degrees
        self.direct = MaskedLinear(data_dim, n_out, bias=False)
        deg_in = torch.arange(1, data_dim + 1)
        direct_mask = made_masks([deg_in, deg_in.repeat(n_levels)])[0]  # (L * D, D): strictly earlier pixels
        if direct_window is not None:  # and only those within ``direct_window`` rows/columns (square images)
            side = math.isqrt(data_dim)
            r, col = torch.arange(data_dim) // side, torch.arange(data_dim) % side
            near = ((r[:, None] - r[None, :]).abs() <= direct_window) & ((col[:, None] - col[None, :]).abs() <= direct_window)
            direct_mask = direct_mask * near.float().repeat(n_levels, 1)
        self.direct.set_mask(direct_mask)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits of the conditionals, ``x (B, D)`` levels and ``z (..., B, H)`` -> ``(..., B, D, L)``."""
        x_in = x.to(z.dtype) / (self.n_levels - 1)  # (B, D) in [0, 1]
        c = self.context(z)  # (..., B, C)
        paths = self.global_out(c) + self.direct(x_in)  # (..., B, L * D), unit l * D + d
        return self.made(x_in, c) + paths.unflatten(-1, (self.n_levels, self.data_dim)).transpose(-1, -2)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\sum_d \log p(x_d | x_{<d}, z), exact: ``(..., B)``."""
        return categorical_log_prob(x, self.logits(x, z))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x ~ p(x | z) ``(n, D)`` int64, one pixel at a time."""
        x = torch.zeros(z.shape[0], self.data_dim, dtype=torch.long, device=z.device)
        for d in range(self.data_dim):
            x[:, d] = categorical_sample(self.logits(x, z)[:, d], generator)  # (n, L): depends on x_{<d} only
        return x


class PixelCNNDecoder(nn.Module):
    r"""The PixelVAE decoder (Gulrajani et al., 2017): p(x | z) = \prod_{ij} p(x_{ij} | x_{<ij}, z).

    A :class:`gencourse.pixelcnn.GatedPixelCNN` on the square image whose gated layers add a linear
    projection of z as a bias (``context=z``); \log p(x | z) is exact, sampling is sequential (the
    PixelCNN's fast sampler), the mean intractable (``has_mean = False``). A decoder this strong can
    model x without z: expect few active units (posterior collapse); the bounds stay valid.

    Args:
        data_dim: D (a square number); latent_dim: H; n_levels: L; channels, n_layers, dropout: the
            Gated PixelCNN's.
    """

    has_mean = False

    def __init__(self, data_dim: int, latent_dim: int, n_levels: int = 17, channels: int = 32, n_layers: int = 6,
                 dropout: float = 0.3):
        super().__init__()
        side = math.isqrt(data_dim)
        if side * side != data_dim:
            raise ValueError(f"the pixelcnn decoder needs square images, got data_dim={data_dim}")
        self.data_dim, self.latent_dim, self.n_levels = data_dim, latent_dim, n_levels
        self.pixelcnn = GatedPixelCNN(n_levels, channels, n_layers, image_shape=(side, side), dropout=dropout,
                                      context_dim=latent_dim)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\sum_{ij} \log p(x_{ij} | x_{<ij}, z), exact: ``x (B, D)``, ``z (..., B, H)`` -> ``(..., B)``."""
        lead = z.shape[:-1]  # (..., B)
        x_all = x.expand(*lead, self.data_dim).reshape(-1, self.data_dim)  # (N, D), N = prod(lead)
        return self.pixelcnn.log_prob(x_all, context=z.reshape(-1, self.latent_dim)).reshape(lead)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x ~ p(x | z) ``(n, D)`` int64, pixel by pixel."""
        return self.pixelcnn.sample(len(z), generator=generator, context=z).reshape(len(z), self.data_dim)


# --------------------------------------------------------------------------------------------
# Priors p(z): log_prob(z) -> (...) for z (..., H); sample(n) -> (n, H)
# --------------------------------------------------------------------------------------------
class StandardNormalPrior(nn.Module):
    r"""p(z) = N(0, I_H). (A buffer carries the dtype and device of its samples.)"""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r"""\log N(z; 0, I), ``(..., H) -> (...)``."""
        return standard_normal_log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(n, H)`` draws on the prior's device."""
        return torch.randn(n, self.latent_dim, generator=generator, dtype=self.loc.dtype, device=self.loc.device)


class VampPrior(nn.Module):
    r"""p(z) = \frac{1}{K} \sum_{k=1}^{K} q(z | u_k): the VampPrior (Tomczak & Welling, 2018).

    The K pseudo-inputs u_k are learned parameters in the encoder's input space (pixels in [0, 1],
    through a sigmoid); the components are the encoder's Gaussians at them (the encoder is shared
    with the VAE, not copied), so the prior follows the aggregate posterior.
    \log p(z) = logsumexp_k \log N(z; \mu(u_k), \sigma^2(u_k)) - \log K.

    Args:
        encoder: the VAE's :class:`GaussianEncoder`; n_pseudo: K.
    """

    def __init__(self, encoder: GaussianEncoder, n_pseudo: int = 100):
        super().__init__()
        self.encoder, self.latent_dim = encoder, encoder.latent_dim
        self.pseudo_logits = nn.Parameter(0.5 * torch.randn(n_pseudo, encoder.data_dim))  # (K, D)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of the K components, each ``(K, H)``."""
        mu, log_var, _ = self.encoder.gaussian(torch.sigmoid(self.pseudo_logits))
        return mu, log_var

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(z), ``(..., H) -> (...)``."""
        mu, log_var = self.components()  # (K, H)
        log_comp = gaussian_log_prob(z.unsqueeze(-2), mu, log_var)  # (..., K)
        return torch.logsumexp(log_comp, -1) - math.log(mu.shape[0])

    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(n, H)``: pick a component uniformly, then z ~ q(z | u_k)."""
        mu, log_var = self.components()
        k = torch.randint(mu.shape[0], (n,), generator=generator, device=mu.device)
        return gaussian_sample(mu[k], log_var[k], generator=generator)


# --------------------------------------------------------------------------------------------
# The VAE
# --------------------------------------------------------------------------------------------
class VAE(nn.Module):
    r"""A VAE made of an encoder q(z | x), a decoder p(x | z) and a prior p(z).

    ELBO(x) = E_{q(z|x)}[\log p(x | z)] - KL(q(z | x) || p(z)),  ``elbo(x) -> (B,)`` in nats. The KL
    is in closed form for a Gaussian q (no IAF) and the N(0, I) prior, else a Monte Carlo estimate
    \log q(z | x) - \log p(z) at the reparameterised sample. With an autoregressive decoder
    \log p(x | z) is still exact, so ``elbo`` and ``iwae`` remain bounds on \log p(x).

    Args:
        encoder: a :class:`GaussianEncoder`.
        decoder: any decoder of this module (``log_prob(x, z)``, ``sample(z)``, ``has_mean``).
        prior: :class:`StandardNormalPrior` (default) or :class:`VampPrior`.
        beta: weight of the KL term in :meth:`loss` only (beta-VAE; 1 is the ELBO). ``elbo`` and
            ``iwae`` are always the unweighted bounds.
        train_k: samples per example in :meth:`loss`: 1 trains on the ELBO (a VAE), K > 1 on the
            IWAE bound L_K (an IWAE; ``beta`` must then be 1).

    :func:`make_vae` builds the course's configurations in one line.
    """

    def __init__(self, encoder: GaussianEncoder, decoder: nn.Module, prior: Optional[nn.Module] = None, *,
                 beta: float = 1.0, train_k: int = 1):
        super().__init__()
        if train_k > 1 and beta != 1.0:
            raise ValueError("beta weights the KL of the ELBO; it does not apply to the IWAE loss (train_k > 1)")
        self.encoder, self.decoder = encoder, decoder
        self.prior = StandardNormalPrior(encoder.latent_dim) if prior is None else prior
        self.latent_dim, self.beta, self.train_k = encoder.latent_dim, beta, train_k

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x)'s Gaussian part: ``(mu, log_var)``, each ``(B, H)``."""
        return self.encoder(x)

    # ---- bounds --------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, n_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(E_q[\log p(x | z)], KL(q || p(z))), each ``(B,)``, with ``n_samples`` reparameterised samples."""
        if self.encoder.iaf is None and isinstance(self.prior, StandardNormalPrior):
            mu, log_var = self.encoder(x)
            z = gaussian_sample(mu, log_var, n_samples)  # (S, B, H)
            return self.decoder.log_prob(x, z).mean(0), kl_diag_gaussian_standard_normal(mu, log_var)
        z, log_q = self.encoder.sample(x, n_samples)
        return self.decoder.log_prob(x, z).mean(0), (log_q - self.prior.log_prob(z)).mean(0)

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        r"""ELBO(x) = E_q[\log p(x | z)] - KL(q(z | x) || p(z)), ``(B,)`` (``n_samples`` MC samples)."""
        rec, kl = self.elbo_terms(x, n_samples)
        return rec - kl

    def iwae_terms(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""(\log p(x | z_k), \log p(z_k), \log q(z_k | x)) at z_k ~ q(z | x), each ``(K, B)``."""
        z, log_q = self.encoder.sample(x, k)  # (K, B, H), (K, B)
        return self.decoder.log_prob(x, z), self.prior.log_prob(z), log_q

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""-mean_B(E_q[\log p(x | z)] - \beta KL), one reparameterised sample per example
        (or -mean_B L_K(x) when ``train_k`` > 1)."""
        if self.train_k > 1:
            return -iwae_bound(*self.iwae_terms(x, self.train_k)).mean()
        rec, kl = self.elbo_terms(x)
        return -(rec - self.beta * kl).mean()

    @torch.no_grad()
    def iwae(self, x: torch.Tensor, k: int = 100, chunk: int = 250) -> torch.Tensor:
        r"""IWAE bound L_K(x) ``(B,)`` (Burda et al. 2016), evaluated in chunks of ``chunk`` samples."""
        chunks = [self.iwae_terms(x, min(chunk, k - start)) for start in range(0, k, chunk)]
        return iwae_bound(*(torch.cat(terms, 0) for terms in zip(*chunks)))  # three (K, B) -> (B,)

    def log_prob_estimate(self, x: torch.Tensor, k: int = 1000, batch_size: int = 100) -> torch.Tensor:
        r"""\log p(x) \approx L_K(x), ``(B,)``, over minibatches of ``batch_size`` examples."""
        return torch.cat([self.iwae(x[i:i + batch_size], k) for i in range(0, len(x), batch_size)])

    # ---- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Ancestral samples z ~ p(z), x ~ p(x | z): ``(n, D)`` on the model's device."""
        return self.decoder.sample(self.prior.sample(n, generator=generator), generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""The decoder mean at the posterior mean z = \mu(x), ``(B, D)`` in the data's units; for a
        decoder without a tractable mean (autoregressive), a draw from p(x | z = \mu(x))."""
        mu, _ = self.encoder(x)
        return self.decoder.mean(mu) if self.decoder.has_mean else self.decoder.sample(mu, generator=generator)

    # ---- diagnostics ---------------------------------------------------------------------
    @torch.no_grad()
    def kl_per_dimension(self, x: torch.Tensor) -> torch.Tensor:
        r"""Mean over x of KL(q(z_j | x) || N(0, 1)) for each latent dimension j, ``(H,)`` (Gaussian part)."""
        mu, log_var = self.encoder(x)
        return kl_diag_gaussian_standard_normal(mu, log_var, event_dims=0).mean(0)

    @torch.no_grad()
    def active_units(self, x: torch.Tensor, threshold: float = 1e-2) -> int:
        r"""Number of latent units with Cov_x(E_q[z_j | x]) > ``threshold`` (Burda et al., 2016)."""
        mu, _ = self.encoder(x)
        return int((mu.var(0) > threshold).sum())


#: The decoders :func:`make_vae` builds and the options each one takes, with their defaults.
DECODER_OPTIONS = {
    "bernoulli": {},
    "categorical": {"n_levels": 17},
    "logistic": {"n_levels": 17, "n_mixtures": 3},
    "gaussian": {"sigma": 0.1},
    "made": {"n_levels": 17, "made_hidden": (128,), "made_window": None},
    "pixelcnn": {"n_levels": 17, "pixelcnn_channels": 32, "pixelcnn_layers": 6, "pixelcnn_dropout": 0.3},
}
DECODERS = tuple(DECODER_OPTIONS)
PRIORS = ("standard", "vamp")


def make_vae(decoder: str = "categorical", *, data_dim: int = 64, latent_dim: int = 16,
             hidden: Sequence[int] = (256, 256), dropout: float = 0.0, prior: str = "standard",
             n_pseudo: Optional[int] = None, iaf_steps: int = 0, iaf_hidden: Optional[int] = None,
             beta: float = 1.0, train_k: int = 1, **decoder_options) -> VAE:
    r"""The course's VAEs in one line: an MLP :class:`GaussianEncoder`, a decoder, a prior.

    Args:
        decoder: ``"bernoulli"`` (x in {0, 1}^D, float), ``"categorical"`` (integer levels), ``"logistic"``
            (integer levels, a mixture of discretized logistics per pixel: :class:`LogisticMixtureDecoder`),
            ``"gaussian"`` (real x, fixed std), ``"made"`` (:class:`MADEDecoder`) or ``"pixelcnn"``
            (:class:`PixelCNNDecoder`).
        data_dim: D; latent_dim: H.
        hidden: widths of the encoder's hidden layers; the MLP decoders (and the MADE decoder's
            context network) mirror them.
        dropout: between hidden layers of the encoder and of the MLP/MADE decoders (the
            ``"pixelcnn"`` decoder has its own ``pixelcnn_dropout``).
        prior: ``"standard"`` or ``"vamp"``; n_pseudo: VampPrior pseudo-inputs (default 100; vamp only).
        iaf_steps, iaf_hidden: IAF steps on the posterior (0: none) and their width (default 64; IAF only).
        beta, train_k: see :class:`VAE`.
        decoder_options: the chosen decoder's own options (:data:`DECODER_OPTIONS`): ``n_levels``
            (L, categorical, logistic, made, pixelcnn), ``n_mixtures`` (M, logistic), ``sigma`` (gaussian),
            ``made_hidden`` and ``made_window`` (the masked widths and direct-connection window of
            ``"made"``), ``pixelcnn_channels``,
            ``pixelcnn_layers`` and ``pixelcnn_dropout`` (``"pixelcnn"``).

    An option that does not apply to the chosen decoder, prior or posterior raises ``ValueError``.
    """
    if decoder not in DECODER_OPTIONS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    unknown = sorted(set(decoder_options) - set(DECODER_OPTIONS[decoder]))
    if unknown:
        takes = ", ".join(DECODER_OPTIONS[decoder]) or "no options"
        raise ValueError(f"{', '.join(unknown)}: not an option of the {decoder!r} decoder (it takes {takes})")
    if n_pseudo is not None and prior != "vamp":
        raise ValueError("n_pseudo sets the VampPrior's pseudo-inputs: it needs prior='vamp'")
    if iaf_hidden is not None and iaf_steps == 0:
        raise ValueError("iaf_hidden sets the width of the IAF steps: it needs iaf_steps > 0")
    opt = {**DECODER_OPTIONS[decoder], **decoder_options}
    hidden = tuple(hidden)
    encoder = GaussianEncoder(data_dim, latent_dim, hidden, n_levels=opt.get("n_levels"), dropout=dropout,
                              iaf_steps=iaf_steps, iaf_hidden=64 if iaf_hidden is None else iaf_hidden)
    mirror = hidden[::-1]
    if decoder == "bernoulli":
        dec = BernoulliDecoder(data_dim, latent_dim, mirror, dropout)
    elif decoder == "categorical":
        dec = CategoricalDecoder(data_dim, latent_dim, opt["n_levels"], mirror, dropout)
    elif decoder == "logistic":
        dec = LogisticMixtureDecoder(data_dim, latent_dim, opt["n_levels"], opt["n_mixtures"], mirror, dropout)
    elif decoder == "gaussian":
        dec = GaussianDecoder(data_dim, latent_dim, mirror, opt["sigma"], dropout)
    elif decoder == "made":
        dec = MADEDecoder(data_dim, latent_dim, opt["n_levels"], opt["made_hidden"], mirror, dropout, opt["made_window"])
    else:
        dec = PixelCNNDecoder(data_dim, latent_dim, opt["n_levels"], opt["pixelcnn_channels"], opt["pixelcnn_layers"],
                              opt["pixelcnn_dropout"])
    p_z = VampPrior(encoder, 100 if n_pseudo is None else n_pseudo) if prior == "vamp" else None
    return VAE(encoder, dec, p_z, beta=beta, train_k=train_k)
