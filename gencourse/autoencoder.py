r"""Autoencoders: an encoder z = f(x) through a bottleneck, a decoder \hat x = g(z), trained on

    L(x) = ||x - g(f(x))||^2   (squared error summed over pixels; the MSE up to a factor D).

* A **linear** autoencoder with this loss learns the same subspace as PCA (Baldi & Hornik, 1989):
  at the optimum the decoder's columns span the top-H principal subspace, though not necessarily
  the principal axes themselves (any invertible mixing of the code is as good).
* A **denoising** autoencoder (Vincent et al., 2008) sees a corrupted input \tilde x = x + \sigma \epsilon
  and must reconstruct the clean x: L(x) = ||x - g(f(\tilde x))||^2.
* Decoding *random* codes rarely gives data-like images: nothing in the loss makes the codes of
  the data fill a known region. :func:`random_latents` draws such codes;
  :mod:`gencourse.metrics` (the digit classifier, nearest-neighbour distances) measures the result.

Functions return per-example values ``(B,)``; only ``loss`` averages over the batch.

Used by: lecture 04_vae (autoencoders before the VAE: PCA, denoising, random codes).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .nn import mlp

__all__ = ["Autoencoder", "DenoisingAutoencoder", "principal_angles", "pca_basis", "random_latents"]


class Autoencoder(nn.Module):
    r"""z = f(x) \in R^H,  \hat x = g(z);  loss = mean_B ||x - \hat x||^2.

    Args:
        data_dim: D (64 for the digits, as floats in [0, 1]).
        latent_dim: H, the bottleneck.
        hidden: hidden widths of the encoder (the decoder mirrors them); ``()`` for a single
            affine map each way.
        linear: no nonlinearities at all (a linear autoencoder, comparable with PCA).
    """

    def __init__(self, data_dim: int = 64, latent_dim: int = 2, hidden: tuple[int, ...] = (128,),
                 linear: bool = False):
        super().__init__()
        act = None if linear else nn.LeakyReLU
        hidden = list(hidden)
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.encoder = mlp([data_dim, *hidden, latent_dim], act)
        self.decoder = mlp([latent_dim, *hidden[::-1], data_dim], act)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D) -> (B, H)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, H) -> (B, D)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction g(f(x)), ``(B, D)``."""
        return self.decode(self.encode(x))

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        r"""||x - g(f(x))||^2 summed over pixels, ``(B,)``."""
        return ((x - self(x)) ** 2).sum(-1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of :meth:`reconstruction_error`."""
        return self.reconstruction_error(x).mean()


class DenoisingAutoencoder(Autoencoder):
    r"""The loss :math:`\operatorname{mean}_B \|x - g(f(x + \sigma \epsilon))\|^2`, :math:`\epsilon \sim N(0, I)`
    fresh at every call.

    The other arguments are those of :class:`Autoencoder`.

    Args:
        noise_std: :math:`\sigma` of the Gaussian corruption (in the data's units).
    """

    def __init__(self, data_dim: int = 64, latent_dim: int = 2, hidden: tuple[int, ...] = (128,),
                 linear: bool = False, noise_std: float = 0.3):
        super().__init__(data_dim, latent_dim, hidden, linear)
        self.noise_std = noise_std

    def corrupt(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""\tilde x = x + \sigma \epsilon, ``(B, D)``."""
        return x + self.noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def denoising_error(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""||x - g(f(\tilde x))||^2, ``(B,)``."""
        return ((x - self(self.corrupt(x, generator))) ** 2).sum(-1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.denoising_error(x).mean()


def pca_basis(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The top-k principal directions ``(D, k)`` (orthonormal columns) and the data mean ``(D,)``.

    From the SVD of the centred data X - \bar x = U S V^T: the first k columns of V.
    """
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return vh[:k].T, mean


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Principal angles (radians, ascending) between the column spaces of ``a (D, k)`` and ``b (D, m)``.

    With orthonormal bases Q_a, Q_b, the cosines of the angles are the singular values of
    Q_a^T Q_b. All angles are 0 exactly when the two subspaces coincide.
    """
    qa, _ = torch.linalg.qr(a.double())
    qb, _ = torch.linalg.qr(b.double())
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(-1.0, 1.0)  # descending cosines
    return torch.arccos(cos)


def random_latents(z: torch.Tensor, n: int, generator: Optional[torch.Generator] = None,
                   how: str = "box") -> torch.Tensor:
    r"""``n`` random codes ``(n, H)`` "near" the codes ``z (N, H)`` of the training data.

    ``how="box"``: uniform in the bounding box of ``z`` (per-dimension min to max);
    ``how="gaussian"``: from N(mean(z), diag var(z)), a Gaussian fitted to the codes.
    Either way nothing guarantees that such codes decode to data-like images: that is the
    point of the demonstration.
    """
    z = z.detach()
    if how == "box":
        lo, hi = z.min(0).values, z.max(0).values
        u = torch.rand(n, z.shape[1], generator=generator, dtype=z.dtype, device=z.device)
        return lo + (hi - lo) * u
    if how == "gaussian":
        eps = torch.randn(n, z.shape[1], generator=generator, dtype=z.dtype, device=z.device)
        return z.mean(0) + z.std(0) * eps
    raise ValueError(f"how must be 'box' or 'gaussian', got {how!r}")
