"""A correct solution of a3_vae written differently from the instructor's: it must keep full marks.

Each ``# %% <grade_id>`` section replaces the solution cell with that grade id in a simulated
submission (see :func:`gencourse.grading.simulate.build_submission`); the imports above the first
section are the notebook's own.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


# %% reparameterize
def reparameterize(mu, log_var, eps):
    std = torch.sqrt(torch.exp(log_var))
    return torch.addcmul(mu, std, eps)


# %% kl_standard_normal
def kl_standard_normal(mu, log_var):
    var = log_var.exp()
    return torch.sum(mu.pow(2) + var - 1 - log_var, dim=-1) / 2


# %% elbo
def elbo(x, logits, mu, log_var):
    log_lik = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)  # (S, B, D)
    reconstruction = log_lik.sum(dim=2).mean(dim=0)
    kl = 0.5 * torch.sum(mu * mu + torch.exp(log_var) - 1 - log_var, dim=1)
    return reconstruction - kl


# %% lg_posterior
def linear_gaussian_posterior(x, W, b, sigma):
    h = W.shape[1]
    precision = torch.eye(h, dtype=W.dtype, device=W.device) + W.T @ W / sigma ** 2
    chol = torch.linalg.cholesky(precision)
    cov = torch.cholesky_inverse(chol)
    mean = torch.cholesky_solve(W.T @ (x - b).T / sigma ** 2, chol).T
    return mean, cov


# %% lg_elbo
def linear_gaussian_elbo(x, W, b, sigma, q_mean, q_cov):
    D, H = W.shape
    mean_x = torch.einsum("dh,bh->bd", W, q_mean) + b
    sq_err = ((x - mean_x) ** 2).sum(1) + (q_cov * (W.T @ W)).sum((-2, -1))  # tr(S W^T W), S symmetric
    rec = -sq_err / (2 * sigma ** 2) - D / 2 * (math.log(2 * math.pi) + 2 * math.log(sigma))
    logdet = torch.linalg.slogdet(q_cov)[1]
    tr = torch.einsum("...ii->...", q_cov)
    kl = (tr + (q_mean * q_mean).sum(1) - H - logdet) / 2
    return rec - kl


# %% iwae_bound
def iwae_bound(log_p_x_given_z, log_p_z, log_q_z):
    log_w = log_p_x_given_z + log_p_z - log_q_z
    top = log_w.max(dim=0).values
    return top + torch.log(torch.exp(log_w - top).mean(dim=0))


# %% vae
class VAE(nn.Module):
    def __init__(self, data_dim=64, latent_dim=8, hidden=128):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(data_dim, hidden), nn.LeakyReLU(0.1))
        self.enc_out = nn.Linear(hidden, 2 * latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, data_dim))

    def encode(self, x):
        out = self.enc_out(self.encoder(x))
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def decode(self, z):
        hidden = F.leaky_relu(self.decoder[0](z), negative_slope=0.1)
        return self.decoder[2](hidden)

    def elbo(self, x, n_samples=1):
        mu, log_var = self.encode(x)
        eps = torch.randn(n_samples, *mu.shape, dtype=mu.dtype, device=mu.device)
        return elbo(x, self.decode(reparameterize(mu, log_var, eps)), mu, log_var)

    def loss(self, x):
        return -self.elbo(x).mean()


# %% score_function_grad
def score_function_grad(f, mu, log_var, n_samples, baseline=False, generator=None):
    # a surrogate loss: autograd differentiates log q at fixed samples, weighted by the (centred) values of f
    noise = torch.randn(mu.shape[0], n_samples, mu.shape[1], generator=generator, dtype=mu.dtype,
                        device=mu.device).transpose(0, 1)  # (S, B, H), drawn in another order
    with torch.enable_grad():
        m = mu.detach().requires_grad_(True)
        lv = log_var.detach().requires_grad_(True)
        std = torch.exp(lv / 2)
        z = (m + std * noise).detach()  # the samples, held fixed
        log_q = torch.distributions.Normal(m, std).log_prob(z).sum(-1)  # (S, B)
        with torch.no_grad():
            weights = f(z)
            if baseline:
                others = torch.stack([torch.cat([weights[:s], weights[s + 1:]]).mean(0) for s in range(n_samples)])
                weights = weights - others
        grads = torch.autograd.grad((weights * log_q).mean(0).sum(), (m, lv))
    return grads[0], grads[1]
