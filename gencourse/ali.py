r"""Adversarially learned inference (ALI, Dumoulin et al., 2017; BiGAN, Donahue et al., 2017).

A GAN has no encoder: nothing maps an x back to its z. ALI learns one by playing the GAN game on
**joint pairs** (x, z). Two joints are compared:

* the **encoder joint** q(x, z) = p_data(x)\, q(z \mid x): take a data point, encode it;
* the **decoder joint** p(x, z) = p(z)\, p(x \mid z): draw z from the prior, decode it.

One discriminator D(x, z) = \sigma(\ell(x, z)) sees both and is trained to call encoder pairs
"real" (label 1) and decoder pairs "fake" (label 0):

.. math:: \min_{G, E} \max_D\; E_{q(x, z)}[\log D(x, z)] + E_{p(x, z)}[\log(1 - D(x, z))].

For fixed encoder and decoder the optimal discriminator is D^* = q / (q + p) on the joint space and
the value is -\log 4 + 2\,\mathrm{JSD}(q(x, z) \| p(x, z)), exactly the GAN result one level up
(:func:`gaussian_joints` and :func:`joint_js` compute it on a 1-D/1-D toy). At the optimum the two
joints agree, and then (for deterministic maps) E and G invert each other: x = G(E(x)).

This module adds only what is new; the rest is the GAN's. :class:`ALI` subclasses
:class:`gencourse.gan.GAN` and overrides its three hooks: what the discriminator compares (pairs),
the loss of the generating side (encoder and decoder together, labels swapped, the non-saturating
form) and the parameters its optimizer steps (both networks). :meth:`GAN.train_step` and
:meth:`GAN.fit` stay the only places that decide what is detached and which optimizer steps: in the
discriminator step neither the encoder's z nor the decoder's x carries a graph.

Here the encoder is stochastic, q(z \mid x) = N(\mu(x), \mathrm{diag}\,\sigma(x)^2) sampled by
reparameterisation (``stochastic=False``: z = \mu(x)), and the decoder deterministic (BiGAN's
generator x = G(z)); the discriminator reads the concatenation [x, z] (:func:`joint`).

Used by: lecture 09_evaluation, assignment a7_ali.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from .gan import GAN, _Squeeze, discriminator_loss, js_divergence
from .nn import mlp

__all__ = ["joint", "ALI", "mlp_ali", "gaussian_joints", "joint_js"]


def joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The discriminator's input for pairs: ``[x flattened, z]``, shape ``(B, D + Z)``."""
    return torch.cat([x.flatten(1), z], dim=1)


class ALI(GAN):
    r"""An encoder, a decoder (the generator) and a discriminator on joint pairs.

    Args:
        encoder: ``x (B, ...) -> (B, 2Z)``, the mean and log standard deviation of q(z | x)
            (``stochastic=False``: ``(B, Z)``, z itself).
        decoder: ``z (B, Z) -> x (B, ...)``.
        discriminator: ``[x, z] (B, D + Z) -> (B,)`` logits.
        noise_dim: ``Z``, the latent size (prior N(0, I)).
        saturating: the minimax form of the generating side's loss (default: non-saturating, labels
            swapped).

    ``sample(n, *, generator=None)`` decodes prior draws (the GAN's); :meth:`encode` and
    :meth:`reconstruct` use the encoder; :meth:`fit` and :meth:`train_step` are the GAN's.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, discriminator: nn.Module, noise_dim: int, *,
                 saturating: bool = False, stochastic: bool = True):
        super().__init__(decoder, discriminator, noise_dim, "gan", saturating=saturating)
        self.encoder, self.stochastic = encoder, stochastic

    def encode(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None,
               mean: bool = False) -> torch.Tensor:
        """z ~ q(z | x) by reparameterisation (``mean=True``: the mean mu(x))."""
        h = self.encoder(x)
        if not self.stochastic:
            return h
        mu, log_std = h.chunk(2, dim=-1)
        if mean:
            return mu
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + log_std.exp() * eps

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None,
                    mean: bool = True) -> torch.Tensor:
        """x -> z -> G(z): the decoder applied to the encoding (the mean by default)."""
        return self.generator(self.encode(x, generator=generator, mean=mean))

    def discriminator_inputs(self, real: torch.Tensor, z: torch.Tensor, *,
                             generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder pairs ``[x, z ~ q(z | x)]`` and decoder pairs ``[G(z), z]`` for prior draws ``z``."""
        return joint(real, self.encode(real, generator=generator)), joint(self.generator(z), z)

    def players_loss(self, real_in: torch.Tensor, fake_in: torch.Tensor) -> torch.Tensor:
        """The encoder's and decoder's loss: the discriminator's with the labels swapped (non-saturating;
        the saturating form is minus the discriminator's loss)."""
        real_logits, fake_logits = self.discriminator(real_in), self.discriminator(fake_in)
        if self.saturating:
            return -discriminator_loss(real_logits, fake_logits)
        return discriminator_loss(fake_logits, real_logits)

    def generator_parameters(self):
        return [*self.encoder.parameters(), *self.generator.parameters()]


def mlp_ali(data_dim: int = 2, noise_dim: int = 2, hidden: int = 128, depth: int = 3, *, stochastic: bool = True,
            output: Optional[str] = None, **kwargs) -> ALI:
    """MLP encoder, decoder and joint discriminator (ReLU, leaky ReLU in the discriminator) for flat
    data of ``data_dim``; ``output="sigmoid"`` squashes the decoder into (0, 1) (digits)."""
    encoder = mlp([data_dim, *[hidden] * depth, (2 if stochastic else 1) * noise_dim])
    decoder = mlp([noise_dim, *[hidden] * depth, data_dim])
    if output == "sigmoid":
        decoder = nn.Sequential(decoder, nn.Sigmoid())
    elif output is not None:
        raise ValueError(f"output must be None or 'sigmoid', got {output!r}")
    disc = _Squeeze(mlp([data_dim + noise_dim, *[hidden] * depth, 1], activation=lambda: nn.LeakyReLU(0.2)))
    return ALI(encoder, decoder, disc, noise_dim, stochastic=stochastic, **kwargs)


# --------------------------------------------------------------------------------------------
# The 1-D/1-D toy where both joints are Gaussians
# --------------------------------------------------------------------------------------------
def gaussian_joints(a: float, s: float, b: float, t: float) -> tuple[MultivariateNormal, MultivariateNormal]:
    r"""Data x ~ N(0, 1), prior z ~ N(0, 1), a linear-Gaussian encoder q(z | x) = N(a x, s^2) and
    decoder p(x | z) = N(b z, t^2). Returns the encoder joint q(x, z) = N(0, [[1, a], [a, a^2 + s^2]])
    and the decoder joint p(x, z) = N(0, [[b^2 + t^2, b], [b, 1]]) over (x, z). They are equal when
    a = b, s^2 = t^2 = 1 - a^2: then the encoder is the decoder's exact posterior."""
    q = MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                           torch.tensor([[1.0, a], [a, a * a + s * s]], dtype=torch.float64))
    p = MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                           torch.tensor([[b * b + t * t, b], [b, 1.0]], dtype=torch.float64))
    return q, p


def joint_js(q: MultivariateNormal, p: MultivariateNormal, lim: float = 8.0, n: int = 801) -> torch.Tensor:
    r"""JSD(q \| p) between two 2-D densities by the rectangle rule on [-lim, lim]^2 (``n`` points a
    side): what the ideal joint discriminator measures, C = -\log 4 + 2\,\mathrm{JSD}."""
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xz = torch.stack(torch.meshgrid(g, g, indexing="ij"), dim=-1).reshape(-1, 2)
    cell = float(g[1] - g[0]) ** 2
    return js_divergence(q.log_prob(xz), p.log_prob(xz), cell)
