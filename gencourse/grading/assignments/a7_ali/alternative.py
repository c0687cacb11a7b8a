"""A correct solution of a7_ali written differently from the instructor's: it must keep full marks.

Each ``# %% <grade_id>`` section replaces the solution cell with that grade id in a simulated
submission (see :func:`gencourse.grading.simulate.build_submission`); the imports above the first
section are the notebook's own. The joint loss goes through ``binary_cross_entropy_with_logits`` on
one stacked batch of logits per side; the step builds its detached pairs under ``torch.no_grad`` and
writes the swapped labels out; the inception score is exp of the entropy of the marginal minus the
mean entropy (the same mutual information); the Fréchet distance uses SciPy's general matrix square
root and keeps its real part.
"""
import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn


# %% joint_loss
def joint_discriminator_loss(discriminator, x, z_hat, x_tilde, z):
    """Binary cross-entropy of the joint discriminator: encoder pairs [x, z_hat] labelled 1, decoder pairs
    [x_tilde, z] labelled 0 (a 0-d tensor)."""
    real = discriminator(torch.cat((x, z_hat), 1))
    fake = discriminator(torch.cat((x_tilde, z), 1))
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


# %% step
def make_encoder(data_dim=1, latent_dim=1, hidden=64):
    """x (B, data_dim) -> z (B, latent_dim) (given)."""
    return nn.Sequential(nn.Linear(data_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, latent_dim))


def make_decoder(latent_dim=1, data_dim=1, hidden=64):
    """z (B, latent_dim) -> x (B, data_dim) (given)."""
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, data_dim))


def make_discriminator(data_dim=1, latent_dim=1, hidden=64):
    """pairs (B, data_dim + latent_dim) -> logits (B,) (given)."""
    return nn.Sequential(nn.Linear(data_dim + latent_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                         nn.LeakyReLU(0.2), nn.Linear(hidden, 1), nn.Flatten(0))


def train_step(encoder, decoder, discriminator, x, z_d, z_g, opt_d, opt_g):
    """One discriminator step on detached pairs, then one encoder-decoder step with the labels swapped."""
    with torch.no_grad():
        codes, fakes = encoder(x), decoder(z_d)
    for p in discriminator.parameters():
        p.grad = None
    loss_d = joint_discriminator_loss(discriminator, x, codes, fakes, z_d)
    loss_d.backward()
    opt_d.step()

    logits_enc = discriminator(torch.cat((x, encoder(x)), 1))
    logits_dec = discriminator(torch.cat((decoder(z_g), z_g), 1))
    loss_g = (F.binary_cross_entropy_with_logits(logits_enc, torch.zeros_like(logits_enc))
              + F.binary_cross_entropy_with_logits(logits_dec, torch.ones_like(logits_dec)))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return float(loss_d.detach()), float(loss_g.detach())


# %% inception
def inception_score(probs):
    """exp(mean_i KL(p(y | x_i) || p(y))) with p(y) the mean of the rows, from class probabilities (N, C)."""
    p = probs.detach().cpu().double().numpy()

    def entropy(q):
        safe = np.where(q > 0, q, 1.0)
        return -(q * np.log(safe)).sum(axis=-1)

    return float(np.exp(entropy(p.mean(axis=0)) - entropy(p).mean()))


# %% frechet
def frechet_distance(a, b):
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to features a (N, K), b (M, K)."""
    fa, fb = a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()
    mean_gap = fa.mean(axis=0) - fb.mean(axis=0)
    sa, sb = np.atleast_2d(np.cov(fa, rowvar=False)), np.atleast_2d(np.cov(fb, rowvar=False))
    root = scipy.linalg.sqrtm(sa @ sb)
    value = mean_gap @ mean_gap + np.trace(sa) + np.trace(sb) - 2 * np.trace(root).real
    return max(float(value), 0.0)

