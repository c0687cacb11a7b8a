r"""Data sets of the course. Nothing here ever downloads anything.

* **Digits**: scikit-learn's bundled 8x8 handwritten digits (1797 images, 17 intensity levels
  0..16). One fixed split is used by everything in the course, in the data set's own order:
  the first 1000 images for training, the next 350 for validation, the remaining 447 for test
  (the split of Tomczak's *intro_dgm*, so numbers can be compared with it).
* **2-D toys**: Gaussian mixtures with an exact ``log_prob`` and entropy (a ring of 8 and a 5x5
  grid), plus moons, circles and a swiss roll from scikit-learn (samples only).
* **MNIST-style files**: IDX (optionally gzipped) or ``.npz`` files, read from a path the user gives.

The 2-D toys are data, not models: their ``sample(n, seed=0)`` is a reproducible draw of a data set.

Used by: every lecture (01_generative_models, 02_autoregressive, 03_pixelcnn, 04_vae) and every
assignment (a1_maximum_likelihood, a2_autoregressive, a3_vae).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SPLITS", "N_LEVELS", "BINARY_THRESHOLD", "load_digits", "digits_levels",
    "GaussianMixture2D", "ring", "grid", "toy", "TOYS",
    "read_idx", "load_mnist",
]

#: The course's fixed split of the 1797 digits, in the data set's own order.
SPLITS = {"train": slice(0, 1000), "val": slice(1000, 1350), "test": slice(1350, 1797)}
#: Intensity levels of the 8x8 digits: integers 0..16.
N_LEVELS = 17
#: A pixel of a binarized digit is on when its intensity in [0, 1] is strictly above this.
BINARY_THRESHOLD = 0.5
KINDS = ("levels", "float", "binary", "stochastic")


def digits_levels() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as integer levels ``(1797, 64)`` (int64, 0..16) and labels ``(1797,)``."""
    from sklearn.datasets import load_digits as _sk_load_digits  # bundled with scikit-learn

    bunch = _sk_load_digits()
    x = torch.from_numpy(bunch.data.astype(np.int64))
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return x, y


def load_digits(split: str = "train", kind: str = "levels", image: bool = False,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of the 8x8 digits.

    Args:
        split: ``"train"`` (1000 images), ``"val"`` (350), ``"test"`` (447) or ``"all"``.
        kind: ``"levels"``: int64 in 0..16; ``"float"``: float32 ``level / 16`` in [0, 1];
            ``"binary"``: float32 0/1, on when ``level / 16 > 0.5``; ``"stochastic"``: float32 0/1
            drawn as Bernoulli(level / 16) with the generator seeded by ``seed``.
        image: return ``(N, 1, 8, 8)`` instead of ``(N, 64)``.
        seed: seed of the stochastic binarization (ignored by the other kinds).

    Returns:
        ``(x, y)``: images and their integer labels ``(N,)``.
    """
    if split != "all" and split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)} or 'all', got {split!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    x, y = digits_levels()
    if split != "all":
        x, y = x[SPLITS[split]], y[SPLITS[split]]
    if kind == "float":
        x = x.float() / (N_LEVELS - 1)
    elif kind == "binary":
        x = (x.float() / (N_LEVELS - 1) > BINARY_THRESHOLD).float()
    elif kind == "stochastic":
        gen = torch.Generator().manual_seed(seed)
        x = torch.bernoulli(x.float() / (N_LEVELS - 1), generator=gen)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return x, y


# --------------------------------------------------------------------------------------------
# 2-D toy distributions
# --------------------------------------------------------------------------------------------
@dataclass
class GaussianMixture2D:
    r"""An isotropic Gaussian mixture in 2-D with an exact density.

    p(x) = \sum_k \pi_k N(x; \mu_k, \sigma_k^2 I)

    Args:
        weights: ``(K,)`` mixing weights, summing to 1.
        means: ``(K, 2)`` component means.
        stds: ``(K,)`` component standard deviations.
    """

    weights: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor
    name: str = "mixture"

    has_density = True

    def __post_init__(self):
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.stds = torch.as_tensor(self.stds, dtype=torch.float64).expand(len(self.weights)).clone()
        if not torch.isclose(self.weights.sum(), torch.tensor(1.0, dtype=torch.float64)):
            raise ValueError("mixture weights must sum to 1")

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples ``(n, 2)`` float32, reproducible from ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        k = torch.multinomial(self.weights, n, replacement=True, generator=gen)  # (n,)
        eps = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * eps).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density ``(N,)`` in nats of points ``x`` ``(N, 2)``."""
        x = torch.as_tensor(x, dtype=torch.float64)
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # (N, K)
        var = self.stds ** 2  # (K,)
        log_comp = -0.5 * sq / var - torch.log(2 * math.pi * var)  # 2-D normal, (N, K)
        return torch.logsumexp(torch.log(self.weights) + log_comp, dim=1)

    def mode_fractions(self, x: torch.Tensor, n_stds: float = 3.0) -> torch.Tensor:
        """The fraction of the points ``x (N, 2)`` that lie within ``n_stds`` standard deviations of
        each mode (each point counted at its nearest mode): ``(K,)``, summing to the share of points
        near some mode."""
        dist = torch.cdist(torch.as_tensor(x, dtype=torch.float64), self.means)  # (N, K)
        nearest = dist.argmin(1)
        near = dist.min(1).values < n_stds * self.stds[nearest]
        return torch.bincount(nearest[near], minlength=len(self.means)).double() / len(x)

    def bounds(self, margin: float = 8.0) -> tuple[float, float, float, float]:
        """A box ``(x0, x1, y0, y1)`` holding all but a negligible mass of the density."""
        s = float(self.stds.max()) * margin
        lo, hi = self.means.min(0).values - s, self.means.max(0).values + s
        return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])

    def entropy(self, points_per_std: int = 12) -> float:
        r"""Differential entropy H = -\int p log p in nats, by quadrature on a fine grid.

        There is no closed form for a mixture; the integrand is smooth and the grid resolves the
        narrowest component with ``points_per_std`` points per standard deviation, which gives
        about six correct digits.
        """
        x0, x1, y0, y1 = self.bounds()
        h = float(self.stds.min()) / points_per_std
        xs = torch.arange(x0, x1 + h, h, dtype=torch.float64)
        ys = torch.arange(y0, y1 + h, h, dtype=torch.float64)
        total = torch.zeros((), dtype=torch.float64)
        for chunk in ys.split(256):  # rows of the grid, to bound memory
            pts = torch.stack(torch.meshgrid(xs, chunk, indexing="xy"), -1).reshape(-1, 2)
            lp = self.log_prob(pts)
            total += (torch.exp(lp) * lp).sum()
        return float(-total * h * h)


def ring(n_modes: int = 8, radius: float = 2.0, std: float = 0.2) -> GaussianMixture2D:
    """Equal-weight modes evenly spaced on a circle (the classic GAN mode-collapse toy)."""
    angles = torch.arange(n_modes, dtype=torch.float64) * 2 * math.pi / n_modes
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    return GaussianMixture2D(torch.full((n_modes,), 1.0 / n_modes), means, torch.tensor(std), "ring")


def grid(side: int = 5, spacing: float = 1.0, std: float = 0.1) -> GaussianMixture2D:
    """Equal-weight modes on a ``side x side`` grid centred at the origin."""
    c = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    means = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1).reshape(-1, 2)
    k = side * side
    return GaussianMixture2D(torch.full((k,), 1.0 / k), means, torch.tensor(std), "grid")


@dataclass
class _SklearnToy:
    """A 2-D toy from scikit-learn's generators: samples only, no tractable density."""

    name: str
    noise: float
    has_density = False

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        from sklearn import datasets

        if self.name == "moons":
            x, _ = datasets.make_moons(n, noise=self.noise, random_state=seed)
        elif self.name == "circles":
            x, _ = datasets.make_circles(n, noise=self.noise, factor=0.5, random_state=seed)
        else:  # swiss roll: keep the two coordinates that show the spiral, scaled to about [-1.5, 1.5]
            x3, _ = datasets.make_swiss_roll(n, noise=self.noise, random_state=seed)
            x = x3[:, [0, 2]] / 8.0
        return torch.from_numpy(x.astype(np.float32))


TOYS = ("ring", "grid", "moons", "circles", "swissroll")


def toy(name: str, **kwargs):
    """A 2-D toy distribution by name; every one has ``sample(n, seed)``.

    ``ring`` and ``grid`` are :class:`GaussianMixture2D` with exact ``log_prob`` and ``entropy``;
    ``moons``, ``circles`` and ``swissroll`` come from scikit-learn (``noise`` keyword).
    """
    if name == "ring":
        return ring(**kwargs)
    if name == "grid":
        return grid(**kwargs)
    if name in ("moons", "circles", "swissroll"):
        default_noise = {"moons": 0.05, "circles": 0.05, "swissroll": 0.5}[name]
        return _SklearnToy(name, kwargs.get("noise", default_noise))
    raise ValueError(f"unknown toy {name!r}; choose one of {TOYS}")


# --------------------------------------------------------------------------------------------
# MNIST-style files from a user-given path
# --------------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the format of MNIST and Fashion-MNIST), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but the file holds {data.size} values")
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(
        f"no {stem}[.gz] in {folder}. gencourse never downloads data: put the MNIST or "
        "Fashion-MNIST IDX files there yourself, or pass the path of an .npz file")


def load_mnist(path: str | os.PathLike, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-style images ``(N, 1, H, W)`` uint8 and labels ``(N,)`` int64 from a local path.

    ``path`` is either a folder with the four standard IDX files (gzipped or not) or an ``.npz``
    file with ``x_train, y_train, x_test, y_test`` (the layout of ``keras.datasets.mnist``).
    """
    if split not in _MNIST_NAMES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (gencourse never downloads data)")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            missing = {f"x_{split}", f"y_{split}"} - set(f.files)
            if missing:
                raise KeyError(f"{path} lacks {sorted(missing)}; it has {sorted(f.files)}")
            x, y = f[f"x_{split}"], f[f"y_{split}"]
    else:
        img_name, lab_name = _MNIST_NAMES[split]
        x, y = read_idx(_find(path, img_name)), read_idx(_find(path, lab_name))
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8)).unsqueeze(1), \
        torch.from_numpy(np.asarray(y, dtype=np.int64))
