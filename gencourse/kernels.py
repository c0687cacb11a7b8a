r"""Distances, kernels, kernel density estimation and the maximum mean discrepancy.

* **Distances** between the rows of ``x (N, D)`` and ``y (M, D)`` (:func:`pairwise_distances`):
  Euclidean, Minkowski :math:`(\sum_i |x_i - y_i|^p)^{1/p}` and Mahalanobis
  :math:`\sqrt{(x - y)^T \Sigma^{-1} (x - y)}`; each is a metric (non-negative, zero exactly on the
  diagonal, symmetric, triangle inequality; Minkowski needs :math:`p \ge 1`).
* **Affinities** (large for similar points): correlation, cosine :math:`x^T y / (\|x\| \|y\|)` and the
  Gaussian kernel :math:`k(x, y) = \exp(-\|x - y\|^2 / (2 h^2))` with bandwidth ``h``
  (:func:`gaussian_kernel`; several bandwidths give the sum of their kernels).
* **Kernels as inner products**: :math:`k(x, y) = \langle \phi(x), \phi(y) \rangle`. The polynomial
  kernel :math:`(x^T y + c)^2` has an explicit finite feature map (:func:`polynomial_features`, exact);
  the Gaussian kernel an infinite one, approximated by random Fourier features
  (:func:`random_fourier_features`, Rahimi & Recht 2007): :math:`\phi(x) = \sqrt{2/R}\cos(W x + b)`,
  :math:`W \sim \mathcal N(0, h^{-2} I)`, :math:`b \sim U[0, 2\pi]`.
* **Kernel density estimation**: :math:`\log p_h(x) = \log \frac1N \sum_j \mathcal N(x; x_j, h^2 I)`
  (:func:`kde_log_prob`, in log space with ``logsumexp``), bandwidth by Scott's / Silverman's rule
  of thumb or by held-out likelihood (:func:`select_bandwidth`); :class:`KernelDensity` is the model.
* **Maximum mean discrepancy** (Gretton et al., 2012) between distributions P and Q,
  :math:`\mathrm{MMD}^2 = E\,k(x, x') + E\,k(y, y') - 2 E\,k(x, y)`, estimated from samples by
  :func:`mmd2`: the biased estimate (V-statistic, all pairs including :math:`i = j`, always
  :math:`\ge 0`) or the unbiased one (U-statistic, without the diagonal terms); the two-sample test
  :func:`mmd_permutation_test` with a permutation null and the p-value :math:`(1 + \#\{b: T_b \ge T\}) / (1 + B)`.
* **MMD nets** (generative moment matching networks; Li et al., 2015, Dziugaite et al., 2015):
  :class:`MMDNet`, a generator trained by minimising :math:`\mathrm{MMD}^2` between a batch of its
  samples and a batch of data.

Used by: lecture 06_kernels, assignment a5_kernels, :func:`gencourse.metrics.mmd_to_data`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from .nn import mlp

__all__ = [
    "pairwise_distances", "squared_distances", "correlation_affinity", "cosine_affinity", "gaussian_kernel",
    "median_bandwidth", "polynomial_kernel", "polynomial_features", "random_fourier_features",
    "kde_log_prob", "scott_bandwidth", "silverman_bandwidth", "select_bandwidth", "KernelDensity",
    "mmd2", "mmd_permutation_test", "MMDNet",
]

Bandwidths = Union[float, Sequence[float], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Distances and affinities
# --------------------------------------------------------------------------------------------
def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""\|x_i - y_j\|^2 for rows ``x (N, D)``, ``y (M, D)``: ``(N, M)``, exact (no ``|x|^2 + |y|^2 - 2 x^T y``
    cancellation), clamped at 0."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def pairwise_distances(x: torch.Tensor, y: Optional[torch.Tensor] = None, metric: str = "euclidean", *,
                       p: float = 2.0, cov: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Distances between the rows of ``x (N, D)`` and ``y (M, D)`` (default ``y = x``): ``(N, M)``.

    Args:
        metric: ``"euclidean"``, ``"minkowski"`` (order ``p >= 1``; 1 is the city-block distance)
            or ``"mahalanobis"`` (with the covariance ``cov (D, D)``, positive definite; default the
            sample covariance of ``x``).
    """
    y = x if y is None else y
    if metric == "euclidean":
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "minkowski":
        if p < 1:
            raise ValueError(f"Minkowski distance needs p >= 1 (p < 1 breaks the triangle inequality), got {p}")
        return torch.cdist(x, y, p=p, compute_mode="donot_use_mm_for_euclid_dist")  # exact for p = 2 too
    if metric == "mahalanobis":
        cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1]) if cov is None else cov
        chol = torch.linalg.cholesky(cov)  # Sigma = L L^T, so (x-y)^T Sigma^{-1} (x-y) = |L^{-1}(x-y)|^2
        white = lambda v: torch.linalg.solve_triangular(chol, v.T, upper=False).T  # noqa: E731
        return torch.cdist(white(x), white(y), compute_mode="donot_use_mm_for_euclid_dist")
    raise ValueError(f"metric must be 'euclidean', 'minkowski' or 'mahalanobis', got {metric!r}")


def cosine_affinity(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""x_i^T y_j / (\|x_i\| \|y_j\|), in [-1, 1]: ``(N, M)``."""
    y = x if y is None else y
    return (x / x.norm(dim=1, keepdim=True)) @ (y / y.norm(dim=1, keepdim=True)).T


def correlation_affinity(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Pearson correlation between rows (each row centred over its own features, then cosine): ``(N, M)``."""
    y = x if y is None else y
    return cosine_affinity(x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True))


def _bandwidths(bandwidth: Bandwidths, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(bandwidth, dtype=like.dtype, device=like.device).reshape(-1)  # (H,)


def gaussian_kernel(x: torch.Tensor, y: Optional[torch.Tensor] = None, bandwidth: Bandwidths = 1.0) -> torch.Tensor:
    r"""k(x, y) = \sum_h \exp(-\|x - y\|^2 / (2 h^2)) over the given bandwidths (one: the Gaussian
    kernel itself, values in (0, 1]): ``(N, M)``."""
    y = x if y is None else y
    d2 = squared_distances(x, y)
    h = _bandwidths(bandwidth, d2)
    return sum(torch.exp(-d2 / (2 * h_i * h_i)) for h_i in h)  # one (N, M) map per bandwidth: fast backward


def median_bandwidth(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> float:
    """The median heuristic: the median distance between distinct points of ``x`` and ``y`` pooled."""
    z = x if y is None else torch.cat([x, y])
    d = pairwise_distances(z)
    return float(d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)].median())


def polynomial_kernel(x: torch.Tensor, y: Optional[torch.Tensor] = None, c: float = 1.0) -> torch.Tensor:
    r"""k(x, y) = (x^T y + c)^2: ``(N, M)``."""
    y = x if y is None else y
    return (x @ y.T + c) ** 2


def polynomial_features(x: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    r"""The explicit feature map of :func:`polynomial_kernel`: \phi(x) = (x_i x_j\ (\text{all } i, j),\
    \sqrt{2c}\, x_i,\ c), so that \phi(x)^T \phi(y) = (x^T y + c)^2 exactly: ``(N, D^2 + D + 1)``."""
    outer = (x[:, :, None] * x[:, None, :]).flatten(1)  # (N, D^2)
    const = torch.full((len(x), 1), c, dtype=x.dtype, device=x.device)
    return torch.cat([outer, math.sqrt(2 * c) * x, const], 1)


def random_fourier_features(x: torch.Tensor, n_features: int, bandwidth: float, *,
                            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""\phi(x) = \sqrt{2/R} \cos(W x + b), W_{r} \sim N(0, h^{-2} I), b_r \sim U[0, 2\pi]: ``(N, R)``.
    E[\phi(x)^T \phi(y)] = \exp(-\|x - y\|^2 / (2h^2)) (Bochner's theorem); the error shrinks as
    1/\sqrt{R}. Pass the same seeded ``generator`` state to map two sets with the same features."""
    d = x.shape[1]
    w = torch.randn(d, n_features, generator=generator, dtype=x.dtype, device=x.device) / bandwidth
    b = torch.rand(n_features, generator=generator, dtype=x.dtype, device=x.device) * 2 * math.pi
    return math.sqrt(2.0 / n_features) * torch.cos(x @ w + b)


# --------------------------------------------------------------------------------------------
# Kernel density estimation
# --------------------------------------------------------------------------------------------
def kde_log_prob(x: torch.Tensor, data: torch.Tensor, bandwidth: float, *, chunk: int = 1024) -> torch.Tensor:
    r"""\log p_h(x) = \log \frac1N \sum_j N(x; x_j, h^2 I)
    = \mathrm{logsumexp}_j\!\left(-\frac{\|x - x_j\|^2}{2h^2}\right) - \log N - \frac D2 \log(2\pi h^2).

    ``x (M, D)``, ``data (N, D)`` -> ``(M,)`` in nats (queries in chunks of ``chunk`` rows)."""
    n, d = data.shape
    const = -math.log(n) - 0.5 * d * math.log(2 * math.pi * bandwidth ** 2)
    out = [torch.logsumexp(-squared_distances(part, data) / (2 * bandwidth ** 2), dim=1) for part in x.split(chunk)]
    return torch.cat(out) + const


def scott_bandwidth(data: torch.Tensor) -> float:
    r"""Scott's rule for an isotropic Gaussian kernel: h = \bar\sigma\, N^{-1/(D+4)}, \bar\sigma the
    mean standard deviation of the coordinates."""
    n, d = data.shape
    return float(data.std(0).mean()) * n ** (-1.0 / (d + 4))


def silverman_bandwidth(data: torch.Tensor) -> float:
    r"""Silverman's rule: h = \bar\sigma\, \left(\frac{4}{(D+2) N}\right)^{1/(D+4)} (optimal for Gaussian data)."""
    n, d = data.shape
    return float(data.std(0).mean()) * (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


def select_bandwidth(train: torch.Tensor, val: torch.Tensor, candidates: Sequence[float]) -> tuple[float, torch.Tensor]:
    """The candidate bandwidth with the highest mean held-out log-likelihood of ``val`` under the KDE of
    ``train``; returns ``(best, scores (len(candidates),))``."""
    scores = torch.stack([kde_log_prob(val, train, float(h)).mean() for h in candidates])
    return float(candidates[int(scores.argmax())]), scores


class KernelDensity(nn.Module):
    r"""A Gaussian KDE as a model: ``log_prob`` is :func:`kde_log_prob`; ``sample`` picks a data
    point uniformly and adds N(0, h^2 I) noise (exactly a draw from the mixture).

    Args:
        data: ``(N, D)`` the kernel centres (stored as a buffer); bandwidth: ``h``.
    """

    def __init__(self, data: torch.Tensor, bandwidth: float):
        super().__init__()
        self.register_buffer("data", data.clone())
        self.bandwidth = float(bandwidth)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return kde_log_prob(x.to(self.data.dtype), self.data, self.bandwidth)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        idx = torch.randint(len(self.data), (n,), generator=generator, device=self.data.device)
        noise = torch.randn(n, self.data.shape[1], generator=generator, dtype=self.data.dtype, device=self.data.device)
        return self.data[idx] + self.bandwidth * noise


# --------------------------------------------------------------------------------------------
# Maximum mean discrepancy
# --------------------------------------------------------------------------------------------
def _mmd2_from_gram(k: torch.Tensor, n: int, unbiased: bool) -> torch.Tensor:
    """MMD^2 from the Gram matrix of the pooled sample (the first ``n`` rows are x)."""
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    m = len(k) - n
    if unbiased:  # U-statistic: the i = j terms k(x_i, x_i) are left out
        return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                - 2 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: Bandwidths = 1.0, *, unbiased: bool = False) -> torch.Tensor:
    r"""The squared maximum mean discrepancy between samples ``x (N, D)`` and ``y (M, D)`` with the
    Gaussian kernel (a sum over several bandwidths if given), a scalar:

    .. math::
        \widehat{\mathrm{MMD}}^2_b = \frac{1}{N^2}\sum_{i,j} k(x_i, x_j) + \frac{1}{M^2}\sum_{i,j} k(y_i, y_j)
            - \frac{2}{NM}\sum_{i,j} k(x_i, y_j) \quad (\text{biased}, \ge 0),

    and with ``unbiased=True`` the first two sums run over :math:`i \ne j` divided by
    :math:`N(N-1)` and :math:`M(M-1)` (unbiased, can be negative)."""
    return _mmd2_from_gram(gaussian_kernel(torch.cat([x, y]), bandwidth=bandwidth), len(x), unbiased)


def mmd_permutation_test(x: torch.Tensor, y: torch.Tensor, bandwidth: Bandwidths = 1.0, *,
                         n_permutations: int = 200, unbiased: bool = True,
                         generator: Optional[torch.Generator] = None) -> tuple[float, float, torch.Tensor]:
    r"""Two-sample test of H_0: P = Q with the statistic T = \widehat{\mathrm{MMD}}^2 and a permutation null.

    Under H_0 the pooled sample is exchangeable, so relabelling it at random gives draws T_b of T's
    null distribution; the p-value counts the observed statistic as one of them,
    :math:`p = (1 + \#\{b : T_b \ge T\}) / (1 + B)`, which keeps the test's level at most
    :math:`\alpha` for any B. The Gram matrix is computed once; each permutation re-indexes it.

    Returns ``(T, p_value, null (B,))``.
    """
    n = len(x)
    k = gaussian_kernel(torch.cat([x, y]), bandwidth=bandwidth)
    observed = _mmd2_from_gram(k, n, unbiased)
    null = torch.empty(n_permutations, dtype=k.dtype)
    for b in range(n_permutations):
        perm = torch.randperm(len(k), generator=generator).to(k.device)  # a new relabelling each time
        null[b] = _mmd2_from_gram(k[perm][:, perm], n, unbiased)
    p_value = (1 + int((null >= observed.cpu()).sum())) / (1 + n_permutations)
    return float(observed), p_value, null


# --------------------------------------------------------------------------------------------
# MMD nets
# --------------------------------------------------------------------------------------------
class MMDNet(nn.Module):
    r"""A generative moment matching network: :math:`x = g_\theta(\epsilon),\ \epsilon \sim N(0, I)`, trained by
    minimising the (biased) MMD^2 between a batch of its samples and a batch of data,

    .. math:: \mathcal L(\theta) = \widehat{\mathrm{MMD}}^2_b\big(\{g_\theta(\epsilon_i)\}_{i=1}^B, \{x_j\}_{j=1}^B\big)

    with a sum of Gaussian kernels over several bandwidths (one kernel of the wrong scale sees no
    difference). No discriminator, no adversarial game: the kernel is the fixed critic.

    Args:
        data_dim: ``D``; noise_dim: size of \epsilon; hidden: MLP widths.
        bandwidths: the kernel bandwidths, in the data's units.
        output: ``"linear"`` (real-valued data) or ``"sigmoid"`` (data in [0, 1], e.g. digits / 16).
    """

    def __init__(self, data_dim: int, noise_dim: int = 8, hidden: Sequence[int] = (128, 128),
                 bandwidths: Sequence[float] = (0.1, 0.3, 1.0, 3.0), output: str = "linear"):
        super().__init__()
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output must be 'linear' or 'sigmoid', got {output!r}")
        self.noise_dim, self.output = noise_dim, output
        self.generator = mlp([noise_dim, *hidden, data_dim])
        self.register_buffer("bandwidths", torch.as_tensor(bandwidths, dtype=torch.get_default_dtype()))

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        out = self.generator(eps)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def _noise(self, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        w = self.generator[0].weight
        return torch.randn(n, self.noise_dim, generator=generator, dtype=w.dtype, device=w.device)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        with torch.no_grad():
            return self(self._noise(n, generator))

    def loss(self, x: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """MMD^2 between ``len(x)`` fresh samples (noise drawn with ``generator``) and the data batch ``x``."""
        fake = self(self._noise(len(x), generator))
        return mmd2(fake, x.to(fake.dtype).reshape(len(x), -1), self.bandwidths)
