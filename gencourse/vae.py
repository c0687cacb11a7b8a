r"""Variational autoencoders: the evidence lower bound (ELBO), its pieces, and the IWAE bound.

A latent-variable model p(x, z) = p(x | z) p(z) with p(z) = N(0, I) has an intractable marginal
likelihood p(x) = \int p(x | z) p(z) dz. For any distribution q(z | x),

    \log p(x) = E_q[\log p(x | z)] - KL(q(z | x) || p(z)) + KL(q(z | x) || p(z | x)),

and the last term is >= 0, so the first two terms (the ELBO) bound \log p(x) from below, with
equality when q is the exact posterior. A VAE (Kingma & Welling, 2014) trains a decoder
p_\theta(x | z) and an *amortised* encoder q_\phi(z | x) = N(\mu_\phi(x), diag \sigma^2_\phi(x))
together by maximising the ELBO with the reparameterisation z = \mu + \sigma \odot \epsilon.
The importance-weighted bound (Burda et al., 2016)

    L_K(x) = E[\log \frac{1}{K} \sum_k p(x, z_k) / q(z_k | x)],   z_k ~ q(z | x),

satisfies L_1 = ELBO <= L_K <= L_{K+1} <= \log p(x) and tends to \log p(x) as K grows.

Everything here works per example: functions return ``(B,)`` (summed over pixels and latent
dimensions, never averaged); only :meth:`VAE.loss` takes a mean over the batch. All values are
in nats.

Contents:
    * pure functions: :func:`reparameterize`, :func:`sample_diag_gaussian`,
      :func:`kl_diag_gaussian_standard_normal`, :func:`gaussian_log_prob`,
      :func:`standard_normal_log_prob`, :func:`bernoulli_log_prob`, :func:`categorical_log_prob`,
      :func:`gaussian_mse_log_prob`, :func:`elbo`, :func:`elbo_from_samples`, :func:`iwae_bound`;
    * gradient estimators of E_q[f(z)]: :func:`score_function_grad`, :func:`reparam_grad`;
    * :class:`LinearGaussianModel`: a model where every quantity of the ELBO derivation is exact;
    * :class:`MaskedLinear`, :class:`MADE`, :class:`IAFStep`, :class:`IAFPosterior`: an inverse
      autoregressive flow posterior (Kingma et al., 2016);
    * :class:`MADEDecoder`: an autoregressive p(x | z) (a MADE given z), :class:`VampPrior`;
    * :class:`VAE`: MLP encoder and a Bernoulli, categorical, Gaussian or autoregressive (MADE or
      Gated PixelCNN, the PixelVAE of Gulrajani et al., 2017) decoder.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .autoregressive import MaskedLinear as _SettableMaskedLinear
from .autoregressive import made_degrees, made_masks
from .pixelcnn import GatedPixelCNN

__all__ = [
    "LOG_2PI", "reparameterize", "sample_diag_gaussian", "kl_diag_gaussian_standard_normal",
    "gaussian_log_prob", "standard_normal_log_prob", "bernoulli_log_prob", "categorical_log_prob",
    "gaussian_mse_log_prob", "elbo", "elbo_from_samples", "iwae_bound",
    "score_function_grad", "reparam_grad", "kl_gaussians",
    "LinearGaussianModel", "MaskedLinear", "MADE", "IAFStep", "IAFPosterior", "VAE",
    "MADEDecoder", "VampPrior", "DECODERS", "AUTOREGRESSIVE_DECODERS", "PRIORS",
]

#: log(2 pi), the constant of every Gaussian log-density.
LOG_2PI = math.log(2 * math.pi)
#: Decoder families the :class:`VAE` supports.
DECODERS = ("bernoulli", "categorical", "gaussian", "made", "pixelcnn")
#: Decoders whose p(x | z) is autoregressive: they read x, and sample one pixel at a time.
AUTOREGRESSIVE_DECODERS = ("made", "pixelcnn")
#: Priors p(z) the :class:`VAE` supports.
PRIORS = ("standard", "vamp")


# --------------------------------------------------------------------------------------------
# Pure functions (the assignment's hidden tests compare student code with these)
# --------------------------------------------------------------------------------------------
def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""z = \mu + \exp(\frac{1}{2} \log \sigma^2) \odot \epsilon.

    Args:
        mu: ``(..., H)`` posterior means.
        log_var: ``(..., H)`` posterior log-variances \log \sigma^2.
        eps: standard normal noise broadcastable with ``mu``, e.g. ``(B, H)`` or ``(S, B, H)``.

    Returns:
        ``z`` with the broadcast shape of the three inputs; differentiable in ``mu`` and ``log_var``.
    """
    return mu + torch.exp(0.5 * log_var) * eps


def sample_diag_gaussian(mu: torch.Tensor, log_var: torch.Tensor, n_samples: Optional[int] = None,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""z = \mu + \sigma \odot \epsilon with \epsilon ~ N(0, I) drawn from ``generator``.

    Returns ``(B, H)`` when ``n_samples`` is None, else ``(n_samples, B, H)``.
    """
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return reparameterize(mu, log_var, eps)


def kl_diag_gaussian_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    r"""KL(N(\mu, diag \sigma^2) || N(0, I)) = \frac{1}{2} \sum_j (\mu_j^2 + \sigma_j^2 - \log \sigma_j^2 - 1).

    Args:
        mu, log_var: ``(..., H)``.

    Returns:
        ``(...)``: the KL in nats summed over the ``H`` latent dimensions (``(B,)`` for ``(B, H)``).
    """
    return 0.5 * (mu ** 2 + torch.exp(log_var) - log_var - 1.0).sum(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor | float) -> torch.Tensor:
    r"""\log N(x; m, diag \sigma^2) = -\frac{1}{2} \sum_d [\log 2\pi + \log \sigma_d^2 + (x_d - m_d)^2 / \sigma_d^2].

    Args:
        x, mean: ``(..., D)``, broadcastable.
        log_var: ``(..., D)`` or a scalar (shared variance).

    Returns:
        ``(...)``: summed over the last dimension.
    """
    log_var = torch.as_tensor(log_var, dtype=mean.dtype, device=mean.device)
    per_dim = -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * torch.exp(-log_var))  # (..., D)
    return per_dim.sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    r"""\log N(z; 0, I) = -\frac{1}{2} \sum_j (z_j^2 + \log 2\pi); ``(..., H) -> (...)``."""
    return -0.5 * (z ** 2 + LOG_2PI).sum(-1)


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r"""\log p(x | z) = \sum_d [x_d \log \pi_d + (1 - x_d) \log(1 - \pi_d)], \pi_d = sigmoid(logit_d).

    Computed stably as -BCE-with-logits (\log \pi = -softplus(-l), \log(1 - \pi) = -softplus(l)).

    Args:
        x: ``(..., D)`` binary pixels (float 0/1).
        logits: ``(..., D)`` decoder logits, broadcastable with ``x``.

    Returns:
        ``(...)``: summed over pixels.
    """
    x, logits = torch.broadcast_tensors(x.to(logits.dtype), logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def categorical_log_prob(x_levels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    r"""\log p(x | z) = \sum_d \log softmax(logits_d)[x_d] for pixels with L intensity levels.

    Args:
        x_levels: ``(..., D)`` integer levels in ``0..L-1`` (17 for the digits).
        logits: ``(..., D, L)`` decoder logits, broadcastable with ``x_levels`` in the leading dims.

    Returns:
        ``(...)``: summed over pixels.
    """
    log_p = F.log_softmax(logits, dim=-1)  # (..., D, L)
    idx = x_levels.long().unsqueeze(-1).expand(*log_p.shape[:-1], 1)  # (..., D, 1)
    return log_p.gather(-1, idx).squeeze(-1).sum(-1)


def gaussian_mse_log_prob(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""\log N(x; m, \sigma^2 I) = -\frac{1}{2\sigma^2} ||x - m||^2 - \frac{D}{2} \log(2\pi\sigma^2).

    The Gaussian decoder with a fixed variance: maximising it is minimising the squared error, the
    autoencoder's MSE loss, with 1 / (2 \sigma^2) playing the role of a weight against the KL.

    Args:
        x, mean: ``(..., D)``; sigma: the fixed standard deviation.

    Returns:
        ``(...)``: summed over the last dimension.
    """
    d = x.shape[-1]
    sq = ((x - mean) ** 2).sum(-1)  # (...)
    return -0.5 * sq / sigma ** 2 - 0.5 * d * math.log(2 * math.pi * sigma ** 2)


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
    r"""REINFORCE: \nabla_\lambda E_q[f(z)] = E_q[(f(z) - b) \nabla_\lambda \log q_\lambda(z)].

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
    r"""Reparameterisation: \nabla_\lambda E_q[f(z)] = E_\epsilon[\nabla_\lambda f(\mu + \sigma \epsilon)].

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
        chol = torch.linalg.cholesky(self.marginal_cov())  # (D, D)
        diff = (x - self.b).T  # (D, B)
        white = torch.linalg.solve_triangular(chol, diff, upper=False)  # (D, B)
        logdet = 2 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (self.data_dim * LOG_2PI + logdet + (white ** 2).sum(0))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(x | z) = \log N(x; W z + b, \sigma^2 I); ``x (B, D)``, ``z (..., B, H) -> (..., B)``."""
        return gaussian_mse_log_prob(x, z @ self.W.T + self.b, self.sigma)

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

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` draws ``(n, D)`` of x by ancestral sampling z ~ p(z), x ~ p(x | z)."""
        kw = dict(generator=generator, dtype=self.W.dtype, device=self.W.device)
        z = torch.randn(n, self.latent_dim, **kw)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, self.data_dim, **kw)


# --------------------------------------------------------------------------------------------
# Inverse autoregressive flow posterior (Kingma et al., 2016), with its own MADE
# --------------------------------------------------------------------------------------------
class MaskedLinear(nn.Linear):
    r"""y = (M \odot W) x + b: a linear layer whose weight is multiplied by a fixed 0/1 mask ``(out, in)``."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.mask * self.weight, self.bias)


class MADE(nn.Module):
    r"""Masked autoencoder (Germain et al., 2015): output block k, dimension i depends on z_{<i} only.

    Degrees: input i has degree i (1..H); hidden units get degrees in 1..H-1; a hidden unit of
    degree m sees inputs of degree <= m; output i sees hidden units of degree < i. An optional
    context vector (e.g. from the encoder) enters the first hidden layer unmasked.

    Args:
        dim: H, the number of autoregressive variables.
        hidden: width of the hidden layers.
        n_hidden: number of hidden layers.
        n_outputs: outputs per variable (2 for an IAF step: shift and gate).
        context_dim: size of the context (0 for none).
    Returns (forward): ``(B, n_outputs, H)``.
    """

    def __init__(self, dim: int, hidden: int = 64, n_hidden: int = 1, n_outputs: int = 2,
                 context_dim: int = 0):
        super().__init__()
        self.dim, self.n_outputs = dim, n_outputs
        in_deg = torch.arange(1, dim + 1)
        max_hidden_deg = max(dim - 1, 1)
        layers, prev = [], in_deg
        for _ in range(n_hidden):
            deg = torch.arange(hidden) % max_hidden_deg + 1  # (hidden,)
            layers.append(MaskedLinear(len(prev), hidden, (deg[:, None] >= prev[None, :]).float()))
            prev = deg
        out_deg = in_deg.repeat(n_outputs)  # (n_outputs * H,)
        self.hidden_layers = nn.ModuleList(layers)
        self.out = MaskedLinear(len(prev), n_outputs * dim, (out_deg[:, None] > prev[None, :]).float())
        self.context = nn.Linear(context_dim, hidden, bias=False) if context_dim > 0 and n_hidden > 0 else None

    def forward(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = z
        for i, layer in enumerate(self.hidden_layers):
            h = layer(h)
            if i == 0 and self.context is not None and context is not None:
                h = h + self.context(context)
            h = F.elu(h)
        return self.out(h).reshape(*z.shape[:-1], self.n_outputs, self.dim)  # (B, n_outputs, H)


class IAFStep(nn.Module):
    r"""One IAF step z' = g \odot z + (1 - g) \odot m,  g = sigmoid(s + GATE_BIAS), (m, s) = MADE(z, h).

    Because m_i and s_i depend on z_{<i} only, the Jacobian dz'/dz is triangular with diagonal g,
    so \log|\det dz'/dz| = \sum_i \log g_i. This is the numerically stable "LSTM-type" update of
    Kingma et al. (2016); the gate bias starts the step close to the identity.
    Direction: forward maps a posterior sample z_{t-1} to z_t and returns \log|\det dz_t/dz_{t-1}|.
    """

    GATE_BIAS = 2.0

    def __init__(self, dim: int, hidden: int = 64, context_dim: int = 0):
        super().__init__()
        self.made = MADE(dim, hidden, n_hidden=1, n_outputs=2, context_dim=context_dim)

    def forward(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.made(z, context)  # (..., 2, H)
        m, s = out[..., 0, :], out[..., 1, :]
        log_gate = F.logsigmoid(s + self.GATE_BIAS)  # (..., H)
        gate = torch.exp(log_gate)
        return gate * z + (1 - gate) * m, log_gate.sum(-1)


class IAFPosterior(nn.Module):
    r"""q(z_T | x): z_0 ~ N(\mu(x), diag \sigma^2(x)), z_t = f_t(z_{t-1}; h(x)),
    \log q(z_T | x) = \log N(z_0; \mu, \sigma^2) - \sum_t \log|\det dz_t / dz_{t-1}|.

    The order of the variables is reversed between steps (a permutation, |det| = 1), so that
    every variable gets to depend on every other one.
    """

    def __init__(self, dim: int, n_steps: int = 2, hidden: int = 64, context_dim: int = 0):
        super().__init__()
        self.steps = nn.ModuleList(IAFStep(dim, hidden, context_dim) for _ in range(n_steps))

    def forward(self, z: torch.Tensor, context: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z (..., H)`` -> ``(z_T (..., H), log_det (...))`` with log_det = \\sum_t \\log|\\det J_t|."""
        log_det = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for i, step in enumerate(self.steps):
            if i > 0:
                z = z.flip(-1)
            z, ld = step(z, context)
            log_det = log_det + ld
        return z, log_det


# --------------------------------------------------------------------------------------------
# The VAE
# --------------------------------------------------------------------------------------------
def _mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.1))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# An autoregressive decoder and a learned prior (VLAE / PixelVAE-style, VampPrior)
# --------------------------------------------------------------------------------------------
class MADEDecoder(nn.Module):
    r"""Autoregressive p(x | z) = \prod_{d=1}^{D} Cat(x_d; softmax(\ell_d(x_{<d}, z))): a MADE given z.

    A context c = g(z) (an unmasked MLP of the latent) enters three additive paths to the logits of
    pixel d (raster order; VLAE of Chen et al., 2017, PixelVAE of Gulrajani et al., 2017, with a
    MADE of Germain et al., 2015, in place of a PixelCNN):

        h^{(1)} = act((M^{(1)} \odot W^{(1)}) \tilde x + V c),  h^{(l)} = act((M^{(l)} \odot W^{(l)}) h^{(l-1)}),
        \ell_d = [U c]_d + [(M^{out} \odot W^{out}) h^{(L)}]_d + [(M^{dir} \odot A) \tilde x]_d + b_d,

    with \tilde x = x / (L - 1). ``U c`` is the plain categorical VAE decoder (global shape from z),
    the masked MLP adds the dependence between pixels, and ``A`` is a masked direct connection
    (an FVSBN: pixel d regresses on pixels d' < d). The masks (:func:`gencourse.autoregressive.made_degrees`,
    ``made_masks``) let \ell_d see x_{<d} only, so each factor is a normalised conditional and
    \log p(x | z) = \sum_d \log softmax(\ell_d)[x_d] is exact: the ELBO and IWAE stay valid bounds.
    Sampling is sequential: D passes, one pixel each.

    Args:
        data_dim: D; latent_dim: H; n_levels: L.
        hidden: widths of the masked hidden layers.
        context_hidden: widths of the context MLP z -> c (its last entry is the size of c).
        dropout: dropout on the hidden units (training only).
        direct_window: if set, the direct connection A sees only earlier pixels within this many
            rows and columns of pixel d (a local, PixelCNN-like prior; images must be square).

    Forward: ``x (B, D)`` integer levels and ``z (..., B, H)`` -> logits ``(..., B, D, L)``.
    """

    def __init__(self, data_dim: int, latent_dim: int, n_levels: int, hidden: tuple[int, ...] = (128,),
                 context_hidden: tuple[int, ...] = (256,), dropout: float = 0.0,
                 direct_window: Optional[int] = None):
        super().__init__()
        self.data_dim, self.n_levels = data_dim, n_levels
        hidden, context_hidden = list(hidden), list(context_hidden)
        n_out = data_dim * n_levels
        self.context = nn.Sequential(_mlp([latent_dim, *context_hidden], dropout), nn.LeakyReLU(0.1),
                                     nn.Dropout(dropout))  # z -> c
        c_dim = context_hidden[-1]
        self.global_out = nn.Linear(c_dim, n_out)  # U c + b
        self.context_in = nn.Linear(c_dim, hidden[0], bias=False)  # V c
        sizes = [data_dim, *hidden]
        self.masked = nn.ModuleList(_SettableMaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = _SettableMaskedLinear(hidden[-1], n_out, bias=False)
        self.direct = _SettableMaskedLinear(data_dim, n_out, bias=False)
        degrees = made_degrees(data_dim, hidden)  # natural (raster) order, evenly spread degrees
        degrees[-1] = degrees[-1].repeat(n_levels)  # output unit l * D + d has the degree of pixel d
        for layer, mask in zip([*self.masked, self.head], made_masks(degrees)):
            layer.set_mask(mask)
        direct_mask = made_masks([degrees[0], degrees[-1]])[0]  # (L * D, D): strictly earlier pixels
        if direct_window is not None:  # and only those within ``direct_window`` rows/columns (square images)
            side = math.isqrt(data_dim)
            r, col = torch.arange(data_dim) // side, torch.arange(data_dim) % side
            near = ((r[:, None] - r[None, :]).abs() <= direct_window) & ((col[:, None] - col[None, :]).abs() <= direct_window)
            direct_mask = direct_mask * near.float().repeat(n_levels, 1)
        self.direct.set_mask(direct_mask)
        self.act, self.drop = nn.LeakyReLU(0.1), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x_in = x.to(z.dtype) / (self.n_levels - 1)  # (B, D) in [0, 1]
        c = self.context(z)  # (..., B, C)
        h = self.drop(self.act(self.masked[0](x_in) + self.context_in(c)))  # x's part computed once for all z
        for layer in self.masked[1:]:
            h = self.drop(self.act(layer(h)))  # (..., B, Hl)
        out = self.global_out(c) + self.head(h) + self.direct(x_in)  # (..., B, L * D), unit l * D + d
        return out.unflatten(-1, (self.n_levels, self.data_dim)).transpose(-1, -2)  # (..., B, D, L)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: Optional[torch.Generator] = None,
               mode: bool = False) -> torch.Tensor:
        """x ~ p(x | z) ``(n, D)`` int64, one pixel at a time; ``mode=True`` takes each conditional's argmax."""
        x = torch.zeros(z.shape[0], self.data_dim, dtype=torch.long, device=z.device)
        for d in range(self.data_dim):
            logits = self(x, z)[:, d]  # (n, L): depends on x_{<d} only
            if mode:
                x[:, d] = logits.argmax(-1)
            else:
                x[:, d] = torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        return x


class VampPrior(nn.Module):
    r"""p(z) = \frac{1}{K} \sum_{k=1}^{K} q(z | u_k): the VampPrior (Tomczak & Welling, 2018).

    The K pseudo-inputs u_k are learned parameters in the encoder's input space (pixels in [0, 1],
    through a sigmoid); the components are the encoder's Gaussians at them, so the prior follows
    the aggregate posterior. \log p(z) = logsumexp_k \log N(z; \mu(u_k), \sigma^2(u_k)) - \log K.

    Args:
        n_pseudo: K; data_dim: D; encode: maps ``(K, D)`` floats to ``(mu, log_var)``, each ``(K, H)``.
    """

    def __init__(self, n_pseudo: int, data_dim: int):
        super().__init__()
        self.pseudo_logits = nn.Parameter(0.5 * torch.randn(n_pseudo, data_dim))  # (K, D)

    def components(self, encode: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of the K components, each ``(K, H)``."""
        return encode(torch.sigmoid(self.pseudo_logits))

    def log_prob(self, z: torch.Tensor, encode: Callable) -> torch.Tensor:
        r"""\log p(z), ``(..., H) -> (...)``."""
        mu, log_var = self.components(encode)  # (K, H)
        log_comp = gaussian_log_prob(z.unsqueeze(-2), mu, log_var)  # (..., K)
        return torch.logsumexp(log_comp, -1) - math.log(mu.shape[0])

    def sample(self, n: int, encode: Callable, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(n, H)``: pick a component uniformly, then z ~ q(z | u_k)."""
        mu, log_var = self.components(encode)
        k = torch.randint(mu.shape[0], (n,), generator=generator, device=mu.device)
        eps = torch.randn(n, mu.shape[1], generator=generator, dtype=mu.dtype, device=mu.device)
        return reparameterize(mu[k], log_var[k], eps)


class VAE(nn.Module):
    r"""A VAE with an MLP encoder q(z | x) = N(\mu(x), diag \sigma^2(x)) and prior p(z) = N(0, I).

    ELBO(x) = E_{q(z|x)}[\log p(x | z)] - KL(q(z | x) || p(z)),  ``elbo(x) -> (B,)`` in nats.

    Decoders p(x | z):
        * ``"bernoulli"``: x in {0, 1}^D (float), logits ``(B, D)``;
        * ``"categorical"``: x in {0..L-1}^D (int64 levels, L = ``n_levels``), logits ``(B, D, L)``;
        * ``"gaussian"``: x real (float), mean ``(B, D)``, fixed std ``sigma`` (the MSE link);
        * ``"made"``: x in {0..L-1}^D, autoregressive p(x | z) = \prod_d p(x_d | x_{<d}, z)
          (:class:`MADEDecoder`); \log p(x | z) is exact, so ``elbo`` and ``iwae`` remain bounds on
          \log p(x); :meth:`sample` draws the pixels one at a time (D decoder passes);
        * ``"pixelcnn"``: the PixelVAE (Gulrajani et al., 2017): x in {0..L-1}^D on a square image,
          p(x | z) = \prod_{ij} p(x_{ij} | x_{<ij}, z) a :class:`gencourse.pixelcnn.GatedPixelCNN`
          whose gated layers add a linear projection of z as a bias (``context=z``); \log p(x | z)
          is exact, sampling is sequential (the PixelCNN's fast sampler). A decoder this strong
          can model x without z: expect few active units (posterior collapse); the bounds stay valid.

    Priors p(z): ``"standard"`` N(0, I) (closed-form KL) or ``"vamp"`` (:class:`VampPrior`, KL by
    Monte Carlo: \log q(z | x) - \log p(z) at the reparameterised sample).

    Args:
        data_dim: D (64 for the digits).
        latent_dim: H.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        decoder: one of :data:`DECODERS`.
        n_levels: L for the categorical decoder.
        sigma: fixed std of the Gaussian decoder.
        beta: weight of the KL term in :meth:`loss` only (beta-VAE; 1 is the ELBO). ``elbo`` and
            ``iwae`` are always the unweighted bounds.
        iaf_steps: number of IAF steps on top of the Gaussian posterior (0: plain VAE). With IAF
            the KL has no closed form and the ELBO is estimated by Monte Carlo.
        train_k: samples per example in :meth:`loss`: 1 trains on the ELBO (a VAE), K > 1 on the
            IWAE bound L_K (an IWAE; ``beta`` is then ignored).
        dropout: dropout rate between hidden layers (a regulariser for the 1000 training digits;
            inactive in ``eval()`` mode, which :func:`gencourse.train.fit` sets at the end).
        prior: one of :data:`PRIORS`; n_pseudo: number of VampPrior pseudo-inputs.
        made_hidden, made_window: masked hidden widths and direct-connection window of the
            ``"made"`` decoder (its context MLP mirrors ``hidden``; ``dropout`` applies to it too).
        pixelcnn_channels, pixelcnn_layers, pixelcnn_dropout: width, number of gated layers and
            dropout of the ``"pixelcnn"`` decoder (``dropout`` then applies to the encoder only).
    """

    def __init__(self, data_dim: int = 64, latent_dim: int = 16, hidden: tuple[int, ...] = (256, 256),
                 decoder: str = "categorical", n_levels: int = 17, sigma: float = 0.1,
                 beta: float = 1.0, iaf_steps: int = 0, iaf_hidden: int = 64, dropout: float = 0.0,
                 train_k: int = 1, prior: str = "standard", n_pseudo: int = 100,
                 made_hidden: tuple[int, ...] = (128,), made_window: Optional[int] = None,
                 pixelcnn_channels: int = 32, pixelcnn_layers: int = 6, pixelcnn_dropout: float = 0.3):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        self.data_dim, self.latent_dim, self.decoder_kind = data_dim, latent_dim, decoder
        self.n_levels, self.sigma, self.beta, self.train_k = n_levels, sigma, beta, train_k
        hidden = list(hidden)
        self.encoder = _mlp([data_dim, *hidden], dropout)
        self.enc_act = nn.LeakyReLU(0.1)
        self.enc_out = nn.Linear(hidden[-1], 2 * latent_dim)  # mean and log-variance
        out_dim = data_dim * n_levels if decoder == "categorical" else data_dim
        if decoder == "made":  # context MLP z -> c(z) mirrors the encoder, then the masked network
            self.decoder = MADEDecoder(data_dim, latent_dim, n_levels, made_hidden, tuple(hidden[::-1]), dropout,
                                       made_window)
        elif decoder == "pixelcnn":  # z enters every gated layer as a bias
            side = math.isqrt(data_dim)
            if side * side != data_dim:
                raise ValueError(f"the pixelcnn decoder needs square images, got data_dim={data_dim}")
            self.image_shape = (side, side)
            self.decoder = GatedPixelCNN(n_levels, pixelcnn_channels, pixelcnn_layers, image_shape=self.image_shape,
                                         dropout=pixelcnn_dropout, context_dim=latent_dim)
        else:
            self.decoder = _mlp([latent_dim, *hidden[::-1], out_dim], dropout)
        self.iaf = IAFPosterior(latent_dim, iaf_steps, iaf_hidden, hidden[-1]) if iaf_steps > 0 else None
        self.prior_kind = prior
        if prior == "vamp":  # registered last: the standard model's parameters keep their order
            self.vamp = VampPrior(n_pseudo, data_dim)

    # ---- encoder -------------------------------------------------------------------------
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's float input in [0, 1] (levels are divided by L - 1)."""
        if self.decoder_kind in ("categorical", *AUTOREGRESSIVE_DECODERS):
            return x.float() / (self.n_levels - 1)
        return x.float()

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._encode_input(self._input(x))

    def _encode_input(self, x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.enc_act(self.encoder(x_in))  # (B, hidden)
        mu, log_var = self.enc_out(h).chunk(2, dim=-1)  # (B, H) each
        return mu, log_var, h

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x)'s Gaussian part: ``(mu, log_var)``, each ``(B, H)``."""
        mu, log_var, _ = self._encode(x)
        return mu, log_var

    def posterior_sample(self, x: torch.Tensor, n_samples: int = 1,
                         generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Samples z ~ q(z | x) ``(S, B, H)`` and their log-density \log q(z | x) ``(S, B)``."""
        mu, log_var, h = self._encode(x)
        eps = torch.randn(n_samples, *mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = reparameterize(mu, log_var, eps)  # (S, B, H)
        log_q = gaussian_log_prob(z, mu, log_var)  # (S, B)
        if self.iaf is not None:
            z, log_det = self.iaf(z, h.expand(n_samples, *h.shape))
            log_q = log_q - log_det
        return z, log_q

    # ---- prior ---------------------------------------------------------------------------
    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(z), ``(..., H) -> (...)``: N(0, I) or the VampPrior."""
        if self.prior_kind == "vamp":
            return self.vamp.log_prob(z, lambda u: self._encode_input(u)[:2])
        return standard_normal_log_prob(z)

    def prior_sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(n, H)`` draws z ~ p(z)."""
        p = next(self.parameters())
        if self.prior_kind == "vamp":
            return self.vamp.sample(n, lambda u: self._encode_input(u)[:2], generator)
        return torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device=p.device)

    # ---- decoder -------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Decoder output: logits ``(..., D)`` (Bernoulli), ``(..., D, L)`` (categorical) or means ``(..., D)``.

        The ``"made"`` and ``"pixelcnn"`` decoders' logits ``(..., B, D, L)`` are those of the
        conditionals p(x_d | x_{<d}, z) and need the image ``x (B, D)`` they condition on.
        """
        if self.decoder_kind in AUTOREGRESSIVE_DECODERS and x is None:
            raise ValueError("the autoregressive decoder needs x: decode(z, x)")
        if self.decoder_kind == "made":
            return self.decoder(x, z)
        if self.decoder_kind == "pixelcnn":
            lead = z.shape[:-1]  # (..., B)
            x_all = x.expand(*lead, self.data_dim).reshape(-1, self.data_dim)  # (N, D), N = prod(lead)
            logits = self.decoder.logits(x_all, context=z.reshape(-1, self.latent_dim))  # (N, L, side, side)
            return logits.flatten(2).transpose(1, 2).reshape(*lead, self.data_dim, self.n_levels)
        out = self.decoder(z)
        if self.decoder_kind == "categorical":
            return out.reshape(*z.shape[:-1], self.data_dim, self.n_levels)
        return out

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r"""\log p(x | z) summed over pixels: ``x (B, D)``, ``z (..., B, H) -> (..., B)``."""
        out = self.decode(z, x) if self.decoder_kind in AUTOREGRESSIVE_DECODERS else self.decode(z)
        if self.decoder_kind == "bernoulli":
            return bernoulli_log_prob(x, out)
        if self.decoder_kind in ("categorical", *AUTOREGRESSIVE_DECODERS):
            return categorical_log_prob(x, out)  # autoregressive: \sum_d \log p(x_d | x_{<d}, z), exact
        return gaussian_mse_log_prob(x, out, self.sigma)

    def mean_image(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> the mean of p(x | z) in the data's units ``(..., D)`` (levels for categorical)."""
        if self.decoder_kind == "bernoulli":
            return torch.sigmoid(out)
        if self.decoder_kind in ("categorical", *AUTOREGRESSIVE_DECODERS):  # autoregressive: means of the conditionals
            levels = torch.arange(self.n_levels, dtype=out.dtype, device=out.device)
            return (F.softmax(out, -1) * levels).sum(-1)
        return out

    # ---- bounds --------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, n_samples: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        r"""(E_q[\log p(x | z)], KL(q || p(z))), each ``(B,)``; the KL is exact for a Gaussian q and the
        N(0, I) prior, a Monte Carlo estimate \log q(z | x) - \log p(z) with IAF or the VampPrior."""
        if self.iaf is None and self.prior_kind == "standard":
            mu, log_var = self.encode(x)
            eps = torch.randn(n_samples, *mu.shape, dtype=mu.dtype, device=mu.device)
            z = reparameterize(mu, log_var, eps)  # (S, B, H)
            return self.log_likelihood(x, z).mean(0), kl_diag_gaussian_standard_normal(mu, log_var)
        z, log_q = self.posterior_sample(x, n_samples)
        return self.log_likelihood(x, z).mean(0), (log_q - self.prior_log_prob(z)).mean(0)

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        r"""ELBO(x) = E_q[\log p(x | z)] - KL(q(z | x) || p(z)), ``(B,)`` (``n_samples`` MC samples)."""
        rec, kl = self.elbo_terms(x, n_samples)
        return rec - kl

    def iwae_terms(self, x: torch.Tensor, k: int) -> torch.Tensor:
        r"""Log weights \log p(x | z_k) + \log p(z_k) - \log q(z_k | x) at z_k ~ q(z | x), ``(K, B)``."""
        z, log_q = self.posterior_sample(x, k)  # (K, B, H), (K, B)
        return self.log_likelihood(x, z) + self.prior_log_prob(z) - log_q

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""-mean_B(E_q[\log p(x | z)] - \beta KL), one reparameterised sample per example
        (or -mean_B L_K(x) when ``train_k`` > 1)."""
        if self.train_k > 1:
            log_w = self.iwae_terms(x, self.train_k)  # (K, B)
            return -(torch.logsumexp(log_w, 0) - math.log(self.train_k)).mean()
        rec, kl = self.elbo_terms(x)
        return -(rec - self.beta * kl).mean()

    @torch.no_grad()
    def iwae(self, x: torch.Tensor, k: int = 100, chunk: int = 250) -> torch.Tensor:
        r"""IWAE bound L_K(x) ``(B,)`` (Burda et al. 2016), evaluated in chunks of ``chunk`` samples."""
        log_ws = [self.iwae_terms(x, min(chunk, k - start)) for start in range(0, k, chunk)]
        log_w = torch.cat(log_ws, 0)  # (K, B)
        return torch.logsumexp(log_w, 0) - math.log(k)

    def log_prob_estimate(self, x: torch.Tensor, k: int = 1000, batch_size: int = 100) -> torch.Tensor:
        r"""\log p(x) \approx L_K(x), ``(B,)``, over minibatches of ``batch_size`` examples."""
        return torch.cat([self.iwae(x[i:i + batch_size], k) for i in range(0, len(x), batch_size)])

    # ---- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, mean: bool = False) -> torch.Tensor:
        """Ancestral samples z ~ p(z), x ~ p(x | z): ``(n, D)``; ``mean=True`` returns the decoder mean
        (for the ``"made"`` decoder: the sequential mode, see :meth:`sample_from_latent`)."""
        if self.prior_kind == "standard":
            p = next(self.parameters())
            z = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device=p.device)
        else:
            z = self.prior_sample(n, generator)
        return self.sample_from_latent(z, generator, mean)

    @torch.no_grad()
    def sample_from_latent(self, z: torch.Tensor, generator: Optional[torch.Generator] = None,
                           mean: bool = False) -> torch.Tensor:
        """Decode given latents ``(n, H)`` to data ``(n, D)``: a draw from p(x | z), or its mean.

        The ``"made"`` decoder draws the pixels one at a time (D passes); its mean is intractable,
        so ``mean=True`` gives instead the image whose every pixel is the most likely level given the
        pixels before it (a greedy approximation of the mode). The ``"pixelcnn"`` decoder draws the
        pixels one at a time with the PixelCNN's fast sampler; it has no ``mean=True``.
        """
        if self.decoder_kind == "made":
            return self.decoder.sample(z, generator, mode=mean)
        if self.decoder_kind == "pixelcnn":
            if mean:
                raise ValueError("the pixelcnn decoder has no tractable mean: use mean=False")
            return self.decoder.sample(len(z), generator=generator, context=z).reshape(len(z), self.data_dim)
        out = self.decode(z)
        if mean:
            return self.mean_image(out)
        if self.decoder_kind == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out), generator=generator)
        if self.decoder_kind == "categorical":
            probs = F.softmax(out, -1).reshape(-1, self.n_levels)  # (n * D, L)
            return torch.multinomial(probs, 1, generator=generator).reshape(z.shape[0], self.data_dim)
        return out + self.sigma * torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder mean at the posterior mean z = \\mu(x): ``(B, D)`` in the data's units
        (``"pixelcnn"``: a draw from p(x | z = \\mu(x)), its mean being intractable)."""
        mu, _ = self.encode(x)
        if self.decoder_kind == "pixelcnn":
            return self.sample_from_latent(mu)
        if self.decoder_kind == "made":
            return self.decoder.sample(mu, mode=True).to(mu.dtype)
        return self.mean_image(self.decode(mu))

    # ---- diagnostics ---------------------------------------------------------------------
    @torch.no_grad()
    def kl_per_dimension(self, x: torch.Tensor) -> torch.Tensor:
        r"""Mean over x of KL(q(z_j | x) || N(0, 1)) for each latent dimension j, ``(H,)`` (Gaussian part)."""
        mu, log_var = self.encode(x)
        return (0.5 * (mu ** 2 + torch.exp(log_var) - log_var - 1.0)).mean(0)

    @torch.no_grad()
    def active_units(self, x: torch.Tensor, threshold: float = 1e-2) -> int:
        r"""Number of latent units with Cov_x(E_q[z_j | x]) > ``threshold`` (Burda et al., 2016)."""
        mu, _ = self.encode(x)
        return int((mu.var(0) > threshold).sum())
