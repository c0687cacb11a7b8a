r"""Measures of generative models: likelihood in bits per dimension and sample-quality probes.

* :func:`bits_per_dim`: a negative log-likelihood in nats per example turned into bits per
  dimension, :math:`\mathrm{nll} / (D \ln 2)`, the unit that compares models across image sizes.
* :func:`nearest_neighbour_distance`: how far samples lie from the training set (a model that
  memorises has samples at distance 0).
* :class:`DigitClassifier`: a logistic-regression digit classifier used as a cheap quality probe
  (its confidence is high on real digits and lower on blurry or off-manifold images).

* :func:`mmd_to_data`: the kernel MMD between samples and held-out data (any family that samples).
* :func:`modes_covered`: modes of a 2-D toy mixture that samples reach, and the share near a mode.
* :func:`inception_score`: from the class probabilities of the digit classifier.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two sets of features;
  :func:`digit_features`: the digit classifier's logits, the features the course uses for it (an
  FID with a small classifier in place of Inception).

Used by: lectures 03_pixelcnn (bits per dimension; the classifier checks class-conditional
samples), 04_vae (the classifier probe and nearest-neighbour distances), 07_gans (inception
score, mode coverage), 08_wgan and 09_evaluation (every score, and their failure cases);
assignments a2_autoregressive (``bits_per_dim`` is graded; :mod:`gencourse.pixelcnn` re-exports
it) and a7_ali (the inception score and the Fréchet distance are graded); ``benchmarks/``.
"""
from __future__ import annotations

import math

import torch

from .kernels import median_bandwidth, mmd2

__all__ = ["bits_per_dim", "nearest_neighbour_distance", "mmd_to_data", "modes_covered", "inception_score",
           "frechet_distance", "digit_features", "DigitClassifier"]


def bits_per_dim(nll_nats, n_dims: int):
    r"""Negative log-likelihood per dimension in bits: ``nll / (D ln 2)`` (a number or a tensor)."""
    return nll_nats / (n_dims * math.log(2))


def nearest_neighbour_distance(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    r"""\min_j ||x_i - r_j||_2 for each row of ``x (N, D)`` against ``reference (M, D)``: ``(N,)``."""
    dist = torch.cdist(x.float(), reference.float(), compute_mode="donot_use_mm_for_euclid_dist")  # (N, M)
    return dist.min(1).values


def mmd_to_data(samples: torch.Tensor, reference: torch.Tensor, bandwidth=None) -> float:
    r"""Unbiased MMD^2 between a model's samples ``(N, D)`` and held-out data ``(M, D)`` (flattened),
    with a Gaussian kernel whose bandwidths are 0.5, 1 and 2 times the median distance within the
    held-out data unless given (:func:`gencourse.kernels.mmd2`). 0 in expectation when the model
    matches the data; compare with the floor MMD^2 between two real samples of the same sizes."""
    x = samples.reshape(len(samples), -1).double()
    y = reference.reshape(len(reference), -1).double()
    if bandwidth is None:
        h = median_bandwidth(y)
        bandwidth = [0.5 * h, h, 2 * h]
    return float(mmd2(x, y, bandwidth, unbiased=True))


def modes_covered(samples: torch.Tensor, mixture, min_fraction: float = 0.02, n_stds: float = 3.0) -> tuple[int, float]:
    """Mode coverage of a 2-D toy mixture (:class:`gencourse.data.GaussianMixture2D`): how many modes
    hold at least ``min_fraction`` of the samples within ``n_stds`` standard deviations, and the share
    of samples that lie that close to some mode (the "high-quality" share)."""
    fractions = mixture.mode_fractions(samples, n_stds)
    return int((fractions >= min_fraction).sum()), float(fractions.sum())


def inception_score(probs: torch.Tensor) -> float:
    r"""IS = \exp\big(E_x\, \mathrm{KL}(p(y \mid x) \| p(y))\big) from class probabilities ``(N, C)``
    of a classifier on N samples, with p(y) their mean: between 1 (every sample the same class
    mix) and C (confident, evenly spread classes). The course uses :class:`DigitClassifier`."""
    p_yx = probs.double()
    p_y = p_yx.mean(0)
    kl = (p_yx * (torch.log(p_yx.clamp_min(1e-300)) - torch.log(p_y.clamp_min(1e-300)))).sum(1)  # (N,)
    return float(torch.exp(kl.mean()))


class DigitClassifier:
    """A logistic-regression digit classifier (scikit-learn) on the course's training digits.

    Used as a cheap sample-quality probe: the mean confidence (max class probability) of real
    digits is high, that of blurry or off-manifold images is lower.

    Args:
        kind: the :func:`gencourse.data.load_digits` kind it is trained on (``"float"``:
            intensities in [0, 1]; ``"levels"``: integers 0..16; ``"binary"``); feed it images
            in the same units, flat ``(N, 64)`` or as images ``(N, 1, 8, 8)``.
    """

    def __init__(self, kind: str = "float", seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        from .data import load_digits

        x, y = load_digits("train", kind)
        self.model = LogisticRegression(max_iter=2000, random_state=seed).fit(x.numpy(), y.numpy())

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, 10)``."""
        return torch.from_numpy(self.model.predict_proba(x.detach().reshape(len(x), -1).float().cpu().numpy()))

    def confidence(self, x: torch.Tensor) -> torch.Tensor:
        """Max class probability per image, ``(N,)``."""
        return self.predict_proba(x).max(1).values

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of the images ``x`` classified as their labels ``y``."""
        return float((self.predict_proba(x).argmax(1) == y.cpu()).float().mean())


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    r"""The Fréchet (2-Wasserstein) distance between the Gaussians fitted to features ``a (N, D)`` and
    ``b (M, D)``:

    .. math:: \|\mu_a - \mu_b\|^2 + \mathrm{Tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a \Sigma_b)^{1/2}\big)

    (sample means, unbiased covariances), in float64. The trace of the matrix square root is taken as
    \sum_i \sqrt{\lambda_i} over the eigenvalues of the symmetric PSD matrix
    \Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2} (similar to \Sigma_a \Sigma_b, so with the same
    eigenvalues), negative round-off clipped to 0: no complex square roots. Symmetric in ``a`` and
    ``b``, 0 for identical feature sets; FID is this on Inception features, the course uses
    :func:`digit_features`."""
    a = a.detach().reshape(len(a), -1).double().cpu()
    b = b.detach().reshape(len(b), -1).double().cpu()
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two feature sets (N, D) with N >= 2 and the same D, got {tuple(a.shape)}, {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])

    def sym_sqrt(m: torch.Tensor) -> torch.Tensor:
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp_min(0).sqrt()) @ v.T

    root_a = sym_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * eig.sqrt().sum()
    return max(float(value), 0.0)


def digit_features(classifier: DigitClassifier, x: torch.Tensor) -> torch.Tensor:
    """The features the course feeds :func:`frechet_distance` for digits: the logits (decision
    function) of a :class:`DigitClassifier` on images ``x`` (flat ``(N, 64)`` or ``(N, 1, 8, 8)``, in
    the classifier's units): ``(N, 10)`` float64."""
    flat = x.detach().reshape(len(x), -1).float().cpu().numpy()
    return torch.from_numpy(classifier.model.decision_function(flat)).double()
