"""A correct solution of a8_diffusion written differently from the instructor's: it must keep full marks.

Each ``# %% <grade_id>`` section replaces the solution cell with that grade id in a simulated
submission (see :func:`gencourse.grading.simulate.build_submission`); the imports above the first
section are the notebook's own. alpha_bar comes from a cumulative sum of logs; the posterior is the
product of the two Gaussians in precision form (step 1 handled apart); the loss goes through
``F.mse_loss`` with a sum; the step goes through the predicted data and the student's own posterior,
and draws its noise from the global generator (``randn_like``) instead of the one it is given.
"""

import torch
import torch.nn.functional as F


# %% q_sample
def q_sample(x0, t, betas, eps):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, each example at its own step t (B,)."""
    log_alpha_bar = torch.cumsum(torch.log1p(-betas), dim=0)
    ab = torch.exp(log_alpha_bar).index_select(0, t)[:, None]
    return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * eps


# %% q_posterior
def q_posterior(x0, xt, t, betas):
    """Mean (B, D) and variance (B, 1) of q(x_(t-1) | x_t, x_0), each example at its own step t (B,)."""
    alpha_bar = torch.exp(torch.cumsum(torch.log1p(-betas), dim=0))
    alpha, beta = (1 - betas)[t][:, None], betas[t][:, None]
    prev = alpha_bar[t - 1][:, None]
    first = (t == 1)[:, None]
    prior_var = torch.where(first, torch.ones_like(prev), 1 - prev)  # step 1 is handled apart below
    precision = alpha / beta + 1 / prior_var  # q(x_t | x_(t-1)) times q(x_(t-1) | x_0), in precision form
    var = 1 / precision
    mean = var * (alpha.sqrt() / beta * xt + prev.sqrt() / prior_var * x0)
    return torch.where(first, x0, mean), torch.where(first, torch.zeros_like(var), var)


# %% loss
def diffusion_loss(denoiser, x0, t, eps, betas):
    """mean over the batch of |eps - eps_theta(x_t, t)|^2 (summed over the dimensions), x_t from q_sample."""
    predicted = denoiser(q_sample(x0, t, betas, eps), t)
    return F.mse_loss(predicted, eps, reduction="sum") / x0.shape[0]


# %% step
def ddpm_step(denoiser, xt, t, betas, generator=None):
    """x_(t-1) = mu_theta(x_t, t) + sqrt(beta_t) z for the batch xt (B, D) at step t (an int); no noise at t = 1."""
    steps = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
    alpha_bar_t = torch.prod(1 - betas[1:t + 1])
    x0_hat = (xt - torch.sqrt(1 - alpha_bar_t) * denoiser(xt, steps)) / torch.sqrt(alpha_bar_t)
    mean, _ = q_posterior(x0_hat, xt, steps, betas)  # the posterior mean at the predicted data
    if t > 1:
        mean = mean + torch.sqrt(betas[t]) * torch.randn_like(xt)
    return mean
