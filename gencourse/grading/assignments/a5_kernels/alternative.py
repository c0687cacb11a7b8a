"""A correct solution of a5_kernels written differently from the instructor's: it must keep full marks.

Each ``# %% <grade_id>`` section replaces the solution cell with that grade id in a simulated
submission (see :func:`gencourse.grading.simulate.build_submission`); the imports above the first
section are the notebook's own. The permutation test draws its relabellings as the ``argsort`` of
uniform numbers, a different random stream from ``randperm``: the hidden checks of the test look at
the distribution of its p-values, so it must pass all the same.
"""
import math

import torch
from torch import nn


# %% distances
def pairwise_distances(x, y, metric="euclidean", p=2.0, cov=None):
    """Distances between the rows of x (N, D) and y (M, D): (N, M), in the dtype of x."""
    delta = x.unsqueeze(1) - y.unsqueeze(0)
    if metric == "mahalanobis":
        flat = delta.reshape(-1, x.shape[1])
        whitened = torch.linalg.solve(cov, flat.T).T  # Sigma^{-1} (x_i - y_j), one row per pair
        return (flat * whitened).sum(dim=1).reshape(delta.shape[:2]).sqrt()
    if metric not in ("euclidean", "minkowski"):
        raise ValueError(f"metric must be euclidean, minkowski or mahalanobis, not {metric}")
    return torch.linalg.vector_norm(delta, ord=2.0 if metric == "euclidean" else float(p), dim=2)


# %% kernel
def gaussian_kernel(x, y, bandwidth=1.0):
    """k(x_i, y_j) = sum over the bandwidths h of exp(-|x_i - y_j|^2 / (2 h^2)): (N, M)."""
    widths = torch.as_tensor(bandwidth, dtype=x.dtype, device=x.device).reshape(-1)  # (H,)
    squared = torch.square(x.unsqueeze(1) - y.unsqueeze(0)).sum(dim=2, keepdim=True)  # (N, M, 1)
    return torch.exp(-0.5 * squared / widths.square()).sum(dim=2)


# %% kde
def kde_log_prob(x, data, bandwidth):
    """log p_h(x) for the queries x (M, D) under the Gaussian KDE of data (N, D): (M,) in nats."""
    bumps = torch.distributions.Normal(data, torch.full_like(data, bandwidth))  # one Gaussian per data point
    per_point = bumps.log_prob(x.unsqueeze(1)).sum(dim=2)  # (M, N): log N(x_i; x_j, h^2 I)
    return torch.logsumexp(per_point, dim=1) - math.log(data.shape[0])


# %% bandwidth
def select_bandwidth(train, val, candidates):
    """The candidate with the highest mean held-out log-density of val under the KDE of train, and the scores (K,)."""
    results = [(kde_log_prob(val, train, float(h)).mean(), float(h)) for h in candidates]
    scores = torch.stack([score for score, _ in results])
    _, best_h = max(results, key=lambda pair: float(pair[0]))
    return best_h, scores


# %% mmd
def mmd2(x, y, bandwidth=1.0, unbiased=False):
    """The squared MMD between the samples x (N, D) and y (M, D) with the Gaussian kernel: a 0-d tensor."""
    n, m = x.shape[0], y.shape[0]
    pooled = torch.cat([x, y])
    gram = gaussian_kernel(pooled, pooled, bandwidth)
    if unbiased:
        gram = gram - torch.diag_embed(torch.diagonal(gram))  # without the pairs of a point with itself
        pairs_x, pairs_y = n * (n - 1), m * (m - 1)
    else:
        pairs_x, pairs_y = n * n, m * m
    within_x, within_y, across = gram[:n, :n].sum(), gram[n:, n:].sum(), gram[:n, n:].sum()
    return within_x / pairs_x + within_y / pairs_y - 2.0 * across / (n * m)


# %% permutation
def mmd_permutation_test(x, y, bandwidth=1.0, n_permutations=200, unbiased=True, generator=None):
    """MMD^2 two-sample test: (statistic T, p-value (1 + #{T_b >= T}) / (1 + B), null draws T_b (B,))."""
    n, total = x.shape[0], x.shape[0] + y.shape[0]
    pooled = torch.cat([x, y])
    statistic = float(mmd2(x, y, bandwidth, unbiased=unbiased))
    null = torch.zeros(n_permutations, dtype=pooled.dtype)
    for b in range(n_permutations):
        order = torch.rand(total, generator=generator).argsort().to(pooled.device)  # a uniformly random relabelling
        relabelled = pooled.index_select(0, order)
        null[b] = float(mmd2(relabelled[:n], relabelled[n:], bandwidth, unbiased=unbiased))
    exceed = int(torch.count_nonzero(null >= statistic))
    return statistic, (exceed + 1) / (n_permutations + 1), null


# %% mmd_net
def make_generator(noise_dim=4, hidden=64, data_dim=2):
    """An MLP from noise (B, noise_dim) to points (B, data_dim) (given)."""
    return nn.Sequential(nn.Linear(noise_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, data_dim))


def mmd_net_step(generator, optimizer, batch, noise, bandwidths):
    """One step on the biased MMD^2 between generator(noise) and batch; returns the loss as a Python float."""
    generator.zero_grad(set_to_none=True)
    objective = mmd2(generator(noise), batch, bandwidths, unbiased=False)
    objective.backward()
    optimizer.step()
    return float(objective.detach())


def train_mmd_net(generator, data, steps, batch_size, bandwidths, lr, seed=0):
    """Adam for a fixed number of steps on random data batches and fresh noise; returns the losses."""
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(list(generator.parameters()), lr=lr)
    width = generator[0].in_features
    history = []
    while len(history) < steps:
        eps = torch.randn((batch_size, width), generator=rng)  # the noise first, then the rows
        rows = torch.randint(0, data.shape[0], (batch_size,), generator=rng)
        history.append(mmd_net_step(generator, opt, data.index_select(0, rows), eps, bandwidths))
    return history
