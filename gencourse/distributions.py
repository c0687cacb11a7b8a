r"""Log-densities, samplers and KL divergences of the course's distributions, in ONE convention.

Convention:

* ``<name>_log_prob(x, params...)``: the value ``x`` FIRST, then the parameters (broadcastable
  with ``x``); natural logarithms (nats); the result is SUMMED over the last ``event_dims``
  dimensions, the dimensions of one event (default 1: an event is a vector, ``(..., D) -> (...)``).
  ``event_dims=0`` gives the per-dimension (elementwise) values.
* Everything in log space: logits, ``log_softmax``, ``softplus``; no probability is exponentiated
  and logged back.
* A diagonal Gaussian is parametrised by its **mean and log-variance** everywhere
  (``log_var = 2 log sigma``); a full-covariance one by its mean and covariance matrix.
* ``<name>_sample(params..., generator=None)`` draws with ``generator`` (pass
  ``torch.Generator(device).manual_seed(s)`` for reproducible draws).

.. math::
   \log \mathrm{Bern}(x; \sigma(l)) &= x\,l - \mathrm{softplus}(l), \qquad
   \log \mathrm{Cat}(x; \mathrm{softmax}(l)) = \mathrm{log\_softmax}(l)_x, \\
   \log \mathcal N(x; \mu, \sigma^2) &= -\tfrac12\big[\log 2\pi + \log\sigma^2 + (x-\mu)^2/\sigma^2\big], \\
   \mathrm{KL}\big(\mathcal N(\mu, \mathrm{diag}\,\sigma^2)\,\|\,\mathcal N(0, I)\big)
     &= \tfrac12 \textstyle\sum_j \big(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\big).

Used by: lecture 01_generative_models (:func:`gencourse.mle.normal_log_pdf` is the 1-D Gaussian of
this module; the Gaussian mixtures use :func:`multivariate_normal_log_prob`), 02_autoregressive (the output distributions of the autoregressive models, the
discretized logistic), 03_pixelcnn (categorical pixels), 04_vae (decoders, priors, the KL);
assignments a2_autoregressive (``chain_rule_log_likelihood`` is built on it) and a3_vae (its
helpers, re-exported by :mod:`gencourse.vae`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "LOG_2PI", "bernoulli_log_prob", "categorical_log_prob", "gaussian_log_prob", "multivariate_normal_log_prob",
    "standard_normal_log_prob",
    "discretized_logistic_log_prob", "discretized_logistic_mixture_log_prob", "discretized_gaussian_log_prob",
    "kl_diag_gaussians", "kl_diag_gaussian_standard_normal",
    "reparameterize", "bernoulli_sample", "categorical_sample", "gaussian_sample", "discretized_logistic_sample",
    "discretized_logistic_mixture_sample",
]

#: log(2 pi), the constant of every Gaussian log-density.
LOG_2PI = math.log(2 * math.pi)


def _sum_event(values: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Sum over the last ``event_dims`` dimensions (0: leave elementwise)."""
    if event_dims < 0:
        raise ValueError(f"event_dims must be >= 0, got {event_dims}")
    return values.sum(dim=tuple(range(-event_dims, 0))) if event_dims else values


def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
    """Tensors pass through unchanged; Python numbers become tensors of ``like``'s dtype and device."""
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------------------------
# Log-densities
# --------------------------------------------------------------------------------------------
def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor, *, event_dims: int = 1) -> torch.Tensor:
    r"""\log p(x) = x \log \pi + (1 - x) \log(1 - \pi) with \pi = sigmoid(logits).

    Computed stably as minus BCE-with-logits (\log \pi = -softplus(-l), \log(1 - \pi) = -softplus(l)).

    Args:
        x: binary values (float or integer 0/1), broadcastable with ``logits``.
        logits: real logits.

    Returns:
        The broadcast shape without its last ``event_dims`` dimensions.
    """
    x, logits = torch.broadcast_tensors(x.to(logits.dtype), logits)
    return _sum_event(-F.binary_cross_entropy_with_logits(logits, x, reduction="none"), event_dims)


def categorical_log_prob(x: torch.Tensor, logits: torch.Tensor, *, event_dims: int = 1) -> torch.Tensor:
    r"""\log p(x) = \log softmax(logits)[x] for integer values with ``K`` categories.

    Args:
        x: integer values in ``0..K-1``, shape ``S``.
        logits: ``(..., K)``, ``...`` broadcastable with ``S`` (e.g. ``x (B, D)`` and logits
            ``(n_samples, B, D, K)``).

    Returns:
        The broadcast shape of ``x`` and ``logits[..., 0]`` without its last ``event_dims`` dimensions.
    """
    log_p = F.log_softmax(logits, dim=-1)  # (..., K)
    shape = torch.broadcast_shapes(x.shape, log_p.shape[:-1])
    idx = x.long().expand(shape).unsqueeze(-1)  # (..., 1)
    return _sum_event(log_p.expand(*shape, log_p.shape[-1]).gather(-1, idx).squeeze(-1), event_dims)


def gaussian_log_prob(x: torch.Tensor, mean, log_var, *, event_dims: int = 1) -> torch.Tensor:
    r"""\log N(x; m, \sigma^2) = -\frac{1}{2} [\log 2\pi + \log \sigma^2 + (x - m)^2 / \sigma^2], a DENSITY.

    Args:
        x: values; mean, log_var: broadcastable with ``x`` (tensors or Python numbers: a scalar
            ``log_var`` is a variance shared by every dimension).

    Returns:
        The broadcast shape without its last ``event_dims`` dimensions (a diagonal Gaussian over
        those dimensions).
    """
    mean, log_var = _as_tensor(mean, x), _as_tensor(log_var, x)
    per_dim = -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * torch.exp(-log_var))
    return _sum_event(per_dim, event_dims)


def multivariate_normal_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    r"""\log N(x; m, \Sigma) = -\frac{1}{2}[D \log 2\pi + \log|\Sigma| + (x - m)^T \Sigma^{-1} (x - m)], full covariance.

    Through the Cholesky factor \Sigma = L L^T: \log|\Sigma| = 2 \sum_i \log L_{ii} and the
    Mahalanobis term is ||L^{-1}(x - m)||^2 (one triangular solve for all points at once).

    Args:
        x: ``N`` points ``(N, D)``.
        mean, cov: a batch of Gaussians, ``(..., D)`` and ``(..., D, D)`` positive definite.

    Returns:
        ``(..., N)``: the log-density of every point under every Gaussian of the batch.
    """
    chol = torch.linalg.cholesky(cov)  # (..., D, D)
    diff = (x - mean.unsqueeze(-2)).transpose(-1, -2)  # (..., D, N)
    white = torch.linalg.solve_triangular(chol, diff, upper=False)  # (..., D, N): L^{-1} (x - m)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (...)
    return -0.5 * ((white ** 2).sum(-2) + log_det[..., None] + x.shape[-1] * LOG_2PI)


def standard_normal_log_prob(z: torch.Tensor, *, event_dims: int = 1) -> torch.Tensor:
    r"""\log N(z; 0, I) = -\frac{1}{2} \sum_j (z_j^2 + \log 2\pi)."""
    return _sum_event(-0.5 * (z ** 2 + LOG_2PI), event_dims)


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate everywhere (Maechler's two branches)."""
    a = a.clamp_max(-1e-30)
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _discretized_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, n_levels: int,
                          log_cdf, event_dims: int) -> torch.Tensor:
    """The binning shared by the discretized logistic and Gaussian: ``log_cdf`` is the standard
    distribution's log-CDF (symmetric about 0)."""
    x = x.to(mean.dtype)
    inv_s = torch.exp(-log_scale)
    upper = (x + 0.5 - mean) * inv_s  # standardised upper bin edge
    lower = (x - 0.5 - mean) * inv_s  # standardised lower bin edge
    # Interior bins: log(F(u) - F(l)). Left of the mean use log F(u) + log(1 - F(l)/F(u));
    # right of it the mirror image F(-l) - F(-u).
    right = (upper + lower) > 0
    a_hi = torch.where(right, -lower, upper)
    a_lo = torch.where(right, -upper, lower)
    lc_hi, lc_lo = log_cdf(a_hi), log_cdf(a_lo)
    log_mid = lc_hi + _log1mexp(lc_lo - lc_hi)
    log_first = log_cdf(upper)  # P(x <= 0.5)
    log_last = log_cdf(-lower)  # P(x > K - 1.5)
    out = torch.where(x <= 0, log_first, torch.where(x >= n_levels - 1, log_last, log_mid))
    return _sum_event(out, event_dims)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, n_levels: int,
                                  *, event_dims: int = 1) -> torch.Tensor:
    r"""Probability of integer level ``x`` under a logistic binned to ``n_levels`` levels.

    .. math:: P(x = k) = \sigma\!\left(\tfrac{k + 1/2 - \mu}{s}\right)
                        - \sigma\!\left(\tfrac{k - 1/2 - \mu}{s}\right),

    with the first bin extended to :math:`-\infty` and the last to :math:`+\infty`, so the
    probabilities of the levels ``0..K-1`` sum to exactly 1 (the sum telescopes).

    Args:
        x: integer levels in ``0..n_levels-1``.
        mean, log_scale: logistic location and log-scale :math:`\log s` in LEVEL units,
            broadcastable with ``x``.
        n_levels: ``K``.

    Returns:
        Log-probabilities in nats summed over the last ``event_dims`` dimensions. The difference
        of sigmoids is taken in log space on the side of the mean where it does not cancel.
    """
    return _discretized_log_prob(x, mean, log_scale, n_levels, F.logsigmoid, event_dims)


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, n_levels: int,
                                  *, event_dims: int = 1) -> torch.Tensor:
    r"""Probability of integer level ``x`` under a Gaussian binned to ``n_levels`` levels (the
    decoder :math:`p(x_0 \mid x_1)` of a diffusion model on discrete data, Ho et al. 2020):

    .. math:: P(x = k) = \Phi\!\left(\tfrac{k + 1/2 - \mu}{s}\right) - \Phi\!\left(\tfrac{k - 1/2 - \mu}{s}\right),

    end bins extended to :math:`\pm\infty`; ``mean`` and ``log_scale`` (:math:`\log s`) in LEVEL
    units, as in :func:`discretized_logistic_log_prob`.
    """
    return _discretized_log_prob(x, mean, log_scale, n_levels, torch.special.log_ndtr, event_dims)


def discretized_logistic_mixture_log_prob(x: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor,
                                          log_scale: torch.Tensor, n_levels: int, *, event_dims: int = 1) -> torch.Tensor:
    r"""A mixture of ``M`` discretized logistics (PixelCNN++'s output distribution, here per value):

    .. math:: P(x = k) = \sum_m \pi_m\, P_{\text{logistic}}(x = k; \mu_m, s_m),
              \quad \pi = \mathrm{softmax}(\text{logits}),

    each component as in :func:`discretized_logistic_log_prob` (level units, end bins extended).

    Args:
        x: integer levels, shape ``S``; logits, mean, log_scale: ``(..., M)`` with ``...``
            broadcastable with ``S``.

    Returns:
        Log-probabilities in nats summed over the last ``event_dims`` dimensions of the broadcast shape.
    """
    per = discretized_logistic_log_prob(x.unsqueeze(-1), mean, log_scale, n_levels, event_dims=0)  # (..., M)
    return _sum_event(torch.logsumexp(per + F.log_softmax(logits, dim=-1), dim=-1), event_dims)

# --------------------------------------------------------------------------------------------
# KL divergence
# --------------------------------------------------------------------------------------------
def kl_diag_gaussians(mean_q: torch.Tensor, log_var_q, mean_p: torch.Tensor, log_var_p, *,
                      event_dims: int = 1) -> torch.Tensor:
    r"""KL(N(\mu_q, diag \sigma_q^2) || N(\mu_p, diag \sigma_p^2))
    = \frac{1}{2} \sum_j \left(\log\frac{\sigma_{p,j}^2}{\sigma_{q,j}^2} + \frac{\sigma_{q,j}^2 + (\mu_{q,j} - \mu_{p,j})^2}{\sigma_{p,j}^2} - 1\right),
    in nats summed over the last ``event_dims`` dimensions; the arguments broadcast."""
    mean_q = torch.as_tensor(mean_q)
    log_var_q, log_var_p = _as_tensor(log_var_q, mean_q), _as_tensor(log_var_p, mean_q)
    per = 0.5 * (log_var_p - log_var_q + (torch.exp(log_var_q) + (mean_q - mean_p) ** 2) * torch.exp(-log_var_p) - 1.0)
    return _sum_event(per, event_dims)


def kl_diag_gaussian_standard_normal(mean: torch.Tensor, log_var: torch.Tensor, *, event_dims: int = 1) -> torch.Tensor:
    r"""KL(N(\mu, diag \sigma^2) || N(0, I)) = \frac{1}{2} \sum_j (\mu_j^2 + \sigma_j^2 - \log \sigma_j^2 - 1).

    Args:
        mean, log_var: ``(..., H)``.

    Returns:
        ``(...)``: the KL in nats summed over the latent dimensions (``event_dims=0``: per dimension).
    """
    return _sum_event(0.5 * (mean ** 2 + torch.exp(log_var) - log_var - 1.0), event_dims)


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------
def reparameterize(mu: torch.Tensor, log_var, eps: torch.Tensor) -> torch.Tensor:
    r"""z = \mu + \exp(\frac{1}{2} \log \sigma^2) \odot \epsilon.

    Args:
        mu: ``(..., H)`` means.
        log_var: ``(..., H)`` log-variances \log \sigma^2 (or a number).
        eps: standard normal noise broadcastable with ``mu``, e.g. ``(B, H)`` or ``(S, B, H)``.

    Returns:
        ``z`` with the broadcast shape of the three inputs; differentiable in ``mu`` and ``log_var``.
    """
    return mu + torch.exp(0.5 * _as_tensor(log_var, mu)) * eps


def gaussian_sample(mean: torch.Tensor, log_var, n_samples: Optional[int] = None,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""z = \mu + \sigma \odot \epsilon with \epsilon ~ N(0, I) drawn from ``generator``.

    Returns the shape of ``mean`` when ``n_samples`` is None, else ``(n_samples, *mean.shape)``.
    """
    shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
    eps = torch.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return reparameterize(mean, log_var, eps)


def bernoulli_sample(logits: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """0/1 draws of the logits' shape and dtype."""
    return torch.bernoulli(torch.sigmoid(logits), generator=generator)


def categorical_sample(logits: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Integer draws ``(...)`` (int64) from logits ``(..., K)``."""
    probs = torch.softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)  # (N, K)
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def discretized_logistic_sample(mean: torch.Tensor, log_scale: torch.Tensor, n_levels: int,
                                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Integer levels (int64) by the inverse logistic CDF, then the bin: exactly the discretized logistic."""
    u = torch.rand(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device).clamp(1e-6, 1 - 1e-6)
    z = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return z.round().clamp(0, n_levels - 1).long()


def discretized_logistic_mixture_sample(logits: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                        n_levels: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Integer levels ``(...)`` (int64): a component from ``softmax(logits)``, then its discretized logistic."""
    m = categorical_sample(logits, generator).unsqueeze(-1)  # (..., 1)
    return discretized_logistic_sample(mean.gather(-1, m).squeeze(-1), log_scale.gather(-1, m).squeeze(-1),
                                       n_levels, generator)
