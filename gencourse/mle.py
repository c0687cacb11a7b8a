r"""Maximum likelihood, information and divergences (lecture 01).

Fitting a model :math:`p_\theta` to data by maximum likelihood minimises the forward KL divergence
from the data distribution:

.. math:: \arg\max_\theta E_{p_\text{data}}[\log p_\theta(x)] = \arg\min_\theta KL(p_\text{data} \| p_\theta),

because :math:`KL(p_\text{data} \| p_\theta) = -H(p_\text{data}) - E_{p_\text{data}}[\log p_\theta(x)]` and
the entropy :math:`H(p_\text{data})` does not depend on :math:`\theta`. Everything here works on any device and in any float dtype;
logarithms are natural (nats). Log-densities come from :mod:`gencourse.distributions`.

Used by: lecture 01_generative_models; assignment a1_maximum_likelihood (``entropy``,
``kl_divergence``, ``gaussian_mle``, ``poisson_mle``, ``forward_kl``, ``reverse_kl``,
``fit_gaussian_kl``, ``gmm_log_prob`` and ``em_step`` are graded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .distributions import gaussian_log_prob, multivariate_normal_log_prob

__all__ = [
    "entropy", "kl_divergence", "cross_entropy",
    "gaussian_mle", "poisson_mle", "gaussian_map_mean", "poisson_map",
    "normal_log_pdf", "mixture_1d_log_pdf", "trapezoid", "forward_kl", "reverse_kl", "fit_gaussian_kl",
    "gmm_log_prob", "gmm_responsibilities", "em_step", "GMMFit", "fit_gmm",
]

# --------------------------------------------------------------------------------------------
# Information and divergences between discrete distributions
# --------------------------------------------------------------------------------------------
def entropy(p: torch.Tensor) -> torch.Tensor:
    r"""H(p) = -\sum_i p_i \log p_i in nats, over the last dimension, with 0 \log 0 = 0.

    Args:
        p: probabilities ``(..., K)`` summing to 1 over the last dimension.
    Returns:
        ``(...)``.
    """
    return -torch.xlogy(p, p).sum(-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r"""KL(p || q) = \sum_i p_i (\log p_i - \log q_i) in nats, over the last dimension.

    Terms with p_i = 0 contribute 0; a term with p_i > 0 and q_i = 0 makes the divergence +inf.

    Args:
        p, q: probabilities ``(..., K)`` (broadcastable).
    Returns:
        ``(...)``.
    """
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)


def cross_entropy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r"""H(p, q) = -\sum_i p_i \log q_i = H(p) + KL(p || q), over the last dimension."""
    return -torch.xlogy(p, q).sum(-1)


# --------------------------------------------------------------------------------------------
# Parametric maximum likelihood and MAP
# --------------------------------------------------------------------------------------------
def gaussian_mle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Maximum-likelihood mean and variance of a Gaussian, per column.

    \hat\mu = \frac1N \sum_n x_n, \quad \hat\sigma^2 = \frac1N \sum_n (x_n - \hat\mu)^2

    (the ML variance divides by N, not N - 1: it is biased).

    Args:
        x: samples ``(N,)`` or ``(N, D)``.
    Returns:
        ``(mean, var)``, each ``()`` or ``(D,)``.
    """
    mean = x.mean(0)
    var = ((x - mean) ** 2).mean(0)
    return mean, var


def poisson_mle(k: torch.Tensor) -> torch.Tensor:
    r"""Maximum-likelihood rate of a Poisson: \hat\lambda = \frac1N \sum_n k_n, per column of ``k`` ``(N, ...)``."""
    return k.float().mean(0) if not k.is_floating_point() else k.mean(0)


def gaussian_map_mean(x: torch.Tensor, var: float, prior_mean: float, prior_var: float) -> torch.Tensor:
    r"""MAP estimate of a Gaussian mean with known variance and a Gaussian prior N(m_0, s_0^2).

    \hat\mu_{MAP} = \frac{m_0 / s_0^2 + \sum_n x_n / \sigma^2}{1 / s_0^2 + N / \sigma^2}

    Args:
        x: samples ``(N,)`` or ``(N, D)``.
    """
    n = x.shape[0]
    return (prior_mean / prior_var + x.sum(0) / var) / (1.0 / prior_var + n / var)


def poisson_map(k: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    r"""MAP rate of a Poisson under a Gamma(\alpha, \beta) prior (shape, rate), \alpha \ge 1.

    \hat\lambda_{MAP} = \frac{\sum_n k_n + \alpha - 1}{N + \beta}
    """
    k = k if k.is_floating_point() else k.float()
    return (k.sum(0) + alpha - 1.0) / (k.shape[0] + beta)


# --------------------------------------------------------------------------------------------
# Forward vs reverse KL in 1-D, by quadrature on a grid
# --------------------------------------------------------------------------------------------
def normal_log_pdf(x: torch.Tensor, mu, sigma) -> torch.Tensor:
    r"""\log N(x; \mu, \sigma^2) elementwise, broadcasting ``x``, ``mu`` and the standard deviation ``sigma``.

    The 1-D density of the lecture's plots, parametrised by \sigma as on the blackboard: it is
    :func:`gencourse.distributions.gaussian_log_prob` with ``log_var = 2 log sigma`` and ``event_dims=0``.
    """
    log_var = 2 * torch.log(torch.as_tensor(sigma, dtype=x.dtype, device=x.device))
    return gaussian_log_prob(x, torch.as_tensor(mu, dtype=x.dtype, device=x.device), log_var, event_dims=0)


def mixture_1d_log_pdf(x: torch.Tensor, weights, means, stds) -> torch.Tensor:
    r"""\log \sum_k \pi_k N(x; \mu_k, \sigma_k^2) for a 1-D Gaussian mixture; ``x`` of any shape."""
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    m = torch.as_tensor(means, dtype=x.dtype, device=x.device)
    s = torch.as_tensor(stds, dtype=x.dtype, device=x.device)
    return torch.logsumexp(torch.log(w) + normal_log_pdf(x[..., None], m, s), dim=-1)


def trapezoid(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The trapezoidal rule over the last dimension of ``f`` on the 1-D grid ``x`` ``(G,)``."""
    dx = x[1:] - x[:-1]  # (G-1,)
    return (0.5 * (f[..., 1:] + f[..., :-1]) * dx).sum(-1)


def forward_kl(log_p: torch.Tensor, log_q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""KL(p || q) = \int p(x) (\log p(x) - \log q(x)) dx by the trapezoidal rule.

    This is the divergence maximum likelihood minimises (p is the data, q the model): it is large
    wherever p has mass that q misses, so the best q covers every mode of p.

    Args:
        log_p, log_q: log-densities on the grid, ``(..., G)`` (broadcastable: evaluate many q at once).
        x: the uniform grid ``(G,)``.
    Returns:
        ``(...)``.
    """
    return trapezoid(torch.exp(log_p) * (log_p - log_q), x)


def reverse_kl(log_p: torch.Tensor, log_q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""KL(q || p) = \int q(x) (\log q(x) - \log p(x)) dx by the trapezoidal rule.

    Large wherever q puts mass where p has little, so the best q sits on one mode of p.
    Same arguments as :func:`forward_kl`.
    """
    return trapezoid(torch.exp(log_q) * (log_q - log_p), x)


def fit_gaussian_kl(log_p: torch.Tensor, x: torch.Tensor, direction: str,
                    mus: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The Gaussian N(\mu, \sigma^2) closest to p in forward or reverse KL, by exhaustive search.

    Args:
        log_p: target log-density on the grid ``(G,)``.
        x: the uniform grid ``(G,)``.
        direction: ``"forward"`` (minimise KL(p || q), mode covering) or ``"reverse"``
            (minimise KL(q || p), mode seeking).
        mus, sigmas: candidate means ``(M,)`` and standard deviations ``(S,)``.
    Returns:
        ``(mu, sigma)``: the candidate pair with the smallest divergence (the first on ties, in
        row-major order of the ``(M, S)`` table).
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    log_q = normal_log_pdf(x, mus[:, None, None], sigmas[None, :, None])  # (M, S, G)
    kl = (forward_kl if direction == "forward" else reverse_kl)(log_p, log_q, x)  # (M, S)
    i = int(torch.argmin(kl))
    return mus[i // len(sigmas)], sigmas[i % len(sigmas)]


# --------------------------------------------------------------------------------------------
# Gaussian mixtures by maximum likelihood (EM)
# --------------------------------------------------------------------------------------------
def _component_log_probs(x: torch.Tensor, means: torch.Tensor, covs: torch.Tensor) -> torch.Tensor:
    r"""\log N(x_n; \mu_k, \Sigma_k) for every point and component, ``(N, K)``."""
    return multivariate_normal_log_prob(x, means, covs).T


def gmm_log_prob(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor) -> torch.Tensor:
    r"""\log p(x_n) = \log \sum_k \pi_k N(x_n; \mu_k, \Sigma_k), computed with logsumexp.

    Args:
        x: points ``(N, D)``; weights ``(K,)``; means ``(K, D)``; covs ``(K, D, D)`` positive definite.
    Returns:
        ``(N,)`` log-densities in nats.
    """
    return torch.logsumexp(torch.log(weights) + _component_log_probs(x, means, covs), dim=1)


def gmm_responsibilities(x, weights, means, covs) -> torch.Tensor:
    r"""E step: r_{nk} = \pi_k N(x_n; \mu_k, \Sigma_k) / \sum_j \pi_j N(x_n; \mu_j, \Sigma_j), ``(N, K)``."""
    joint = torch.log(weights) + _component_log_probs(x, means, covs)  # (N, K)
    return torch.softmax(joint, dim=1)


def em_step(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor,
            reg_covar: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One EM iteration for a full-covariance Gaussian mixture.

    E step: responsibilities r_{nk}. M step, with N_k = \sum_n r_{nk}:
    \pi_k = N_k / N, \quad \mu_k = \frac{1}{N_k}\sum_n r_{nk} x_n, \quad
    \Sigma_k = \frac{1}{N_k}\sum_n r_{nk}(x_n - \mu_k)(x_n - \mu_k)^T + \epsilon I

    (``reg_covar`` = \epsilon keeps the covariances invertible, as scikit-learn does).
    Each step never decreases the log-likelihood (up to the tiny \epsilon).

    Returns:
        New ``(weights (K,), means (K, D), covs (K, D, D))``.
    """
    r = gmm_responsibilities(x, weights, means, covs)  # (N, K)
    nk = r.sum(0)  # (K,)
    new_weights = nk / x.shape[0]
    new_means = (r.T @ x) / nk[:, None]  # (K, D)
    diff = x[None] - new_means[:, None]  # (K, N, D)
    new_covs = torch.einsum("nk,kni,knj->kij", r, diff, diff) / nk[:, None, None]
    new_covs = new_covs + reg_covar * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return new_weights, new_means, new_covs


@dataclass
class GMMFit:
    """A fitted mixture and the mean training log-likelihood after each EM step."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    log_likelihood: list

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)`` log-densities of points ``(N, D)``."""
        return gmm_log_prob(x.to(self.means.dtype), self.weights, self.means, self.covs)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""``n`` points ``(n, D)``: a component k ~ Cat(\pi), then x = \mu_k + L_k \epsilon (L_k L_k^T = \Sigma_k)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, dtype=self.means.dtype,
                          device=self.means.device)
        return self.means[k] + (torch.linalg.cholesky(self.covs)[k] @ eps)[..., 0]


def fit_gmm(x: torch.Tensor, k: int, iters: int = 100, seed: int = 0, tol: float = 1e-8,
            reg_covar: float = 1e-6) -> GMMFit:
    """Fit a ``k``-component mixture to ``x`` ``(N, D)`` by EM.

    Initialisation: means at ``k`` distinct data points drawn with ``seed``, every covariance the
    data covariance, equal weights. Stops after ``iters`` steps or when the mean log-likelihood
    improves by less than ``tol``.
    """
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=gen)[:k].to(x.device)
    means = x[idx].clone()
    d = x.shape[1]
    cov = torch.cov(x.T).reshape(d, d) + reg_covar * torch.eye(d, dtype=x.dtype, device=x.device)
    covs = cov.expand(k, d, d).clone()
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype, device=x.device)
    trace = []
    for _ in range(iters):
        weights, means, covs = em_step(x, weights, means, covs, reg_covar)
        trace.append(float(gmm_log_prob(x, weights, means, covs).mean()))
        if len(trace) > 1 and trace[-1] - trace[-2] < tol:
            break
    return GMMFit(weights, means, covs, trace)
