"""A correct solution of a6_gans written differently from the instructor's: it must keep full marks.

Each ``# %% <grade_id>`` section replaces the solution cell with that grade id in a simulated
submission (see :func:`gencourse.grading.simulate.build_submission`); the imports above the first
section are the notebook's own. The losses go through ``binary_cross_entropy_with_logits`` and
``logsigmoid``; the penalty draws its weights in the shape ``(B, 1, ...)`` directly and passes
``grad_outputs`` instead of summing the scores (the hidden checks look at its distribution, so a
different random stream must pass); the step generates its fakes under ``torch.no_grad`` and
freezes the discriminator during the generator step; the loop draws the noise before the batches.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


# %% d_loss
def discriminator_loss(real_logits, fake_logits):
    """-V from logits: binary cross-entropy, real labelled 1, fake labelled 0 (a 0-d tensor)."""
    on_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    on_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return on_real + on_fake


# %% g_loss
def generator_loss(fake_logits, saturating=False):
    """The generator's loss from the discriminator's logits on fakes: E log(1 - D) or -E log D (a 0-d tensor)."""
    if not saturating:
        return -F.logsigmoid(fake_logits).mean()
    return F.logsigmoid(-fake_logits).mean()  # log(1 - sigmoid(l)) = log sigmoid(-l)


# %% d_star
def optimal_discriminator(log_p_data, log_p_model):
    """D*(x) = p_data / (p_data + p_model), elementwise from the log-densities."""
    return torch.exp(log_p_data - torch.logaddexp(log_p_data, log_p_model))


# %% js
def js_divergence(log_p, log_q, cell):
    """JSD(p || q) in nats, by the rectangle rule on a grid of cells of volume `cell` (a 0-d tensor)."""
    log_half_mix = torch.logaddexp(log_p, log_q) - math.log(2.0)
    total = torch.zeros((), dtype=log_p.dtype, device=log_p.device)
    for log_a in (log_p, log_q):
        inside = torch.isfinite(log_a)  # 0 log 0 = 0 where the density vanishes
        total = total + (log_a[inside].exp() * (log_a[inside] - log_half_mix[inside])).sum()
    return total * cell / 2


# %% penalty
def gradient_penalty(critic, real, fake, generator=None):
    """E[(|grad f(x_hat)| - 1)^2] on random interpolates x_hat between real and fake (a 0-d tensor)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    weight = torch.rand(shape, generator=generator, dtype=torch.float64).to(real)
    mixed = torch.lerp(fake, real, weight).detach()  # fake + weight (real - fake)
    mixed.requires_grad_(True)
    scores = critic(mixed)
    slopes, = torch.autograd.grad(scores, mixed, grad_outputs=torch.ones_like(scores), create_graph=True)
    per_sample = torch.linalg.vector_norm(slopes.reshape(len(slopes), -1), dim=1)
    return torch.square(per_sample - 1.0).mean()


# %% training
def make_generator(noise_dim=2, hidden=128, data_dim=2):
    """An MLP from noise (B, noise_dim) to points (B, data_dim) (given)."""
    return nn.Sequential(nn.Linear(noise_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, data_dim))


def make_discriminator(hidden=128, data_dim=2):
    """An MLP from points (B, data_dim) to logits (B,) (given)."""
    return nn.Sequential(nn.Linear(data_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, 1), nn.Flatten(0))


def train_step(generator, discriminator, reals, noises, opt_g, opt_d):
    """k = len(reals) discriminator steps on detached fakes, then one non-saturating generator step."""
    last_d = None
    for i, batch in enumerate(reals):
        with torch.no_grad():
            generated = generator(noises[i])
        loss_d = discriminator_loss(discriminator(batch), discriminator(generated))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        last_d = float(loss_d)
    for p in discriminator.parameters():
        p.requires_grad_(False)
    try:
        loss_g = generator_loss(discriminator(generator(noises[-1])), saturating=False)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    finally:
        for p in discriminator.parameters():
            p.requires_grad_(True)
    return last_d, float(loss_g)


def train_gan(generator, discriminator, data, steps, batch_size, k, lr, seed=0):
    """Adam on both players for a fixed number of steps; returns the (d_loss, g_loss) of every step."""
    rng = torch.Generator().manual_seed(seed)
    adam = dict(lr=lr, betas=(0.5, 0.999))
    players = (torch.optim.Adam(generator.parameters(), **adam), torch.optim.Adam(discriminator.parameters(), **adam))
    width = generator[0].in_features

    def one_round():
        noise_stack = torch.randn(k + 1, batch_size, width, generator=rng)
        rows = torch.randint(0, data.shape[0], (k, batch_size), generator=rng)
        return train_step(generator, discriminator, list(data[rows].unbind(0)), list(noise_stack.unbind(0)), *players)

    return [one_round() for _ in range(steps)]
