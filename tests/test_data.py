"""gencourse.data: the fixed digits split, exact toy densities (vs Monte Carlo and quadrature), IDX files."""
import gzip
import math
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_digits

from gencourse import data


def test_digits_split_is_fixed_and_in_dataset_order():
    sk = sk_digits()
    x, y = data.load_digits("all")
    assert x.shape == (1797, 64) and x.dtype == torch.int64 and int(x.max()) == 16
    sizes = {s: len(data.load_digits(s)[0]) for s in ("train", "val", "test")}
    assert sizes == {"train": 1000, "val": 350, "test": 447}
    xt, yt = data.load_digits("test")
    np.testing.assert_array_equal(xt.numpy(), sk.data[1350:].astype(np.int64))
    np.testing.assert_array_equal(yt.numpy(), sk.target[1350:])


def test_digits_kinds():
    lv, _ = data.load_digits("val")
    fl, _ = data.load_digits("val", kind="float")
    bi, _ = data.load_digits("val", kind="binary", image=True)
    torch.testing.assert_close(fl, lv.float() / 16)
    assert bi.shape == (350, 1, 8, 8) and set(bi.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(bi.flatten(1), (lv > 8).float())  # on when level/16 > 0.5
    s1, _ = data.load_digits("val", kind="stochastic", seed=1)
    s2, _ = data.load_digits("val", kind="stochastic", seed=1)
    s3, _ = data.load_digits("val", kind="stochastic", seed=2)
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)
    assert torch.all(s1[lv == 0] == 0) and torch.all(s1[lv == 16] == 1)
    with pytest.raises(ValueError, match="split"):
        data.load_digits("training")


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_mixture_density_normalises_and_matches_monte_carlo(name):
    dist = data.toy(name)
    x0, x1, y0, y1 = dist.bounds()
    h = float(dist.stds.min()) / 6
    xs, ys = torch.arange(x0, x1, h, dtype=torch.float64), torch.arange(y0, y1, h, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    assert float(dist.log_prob(pts).exp().sum() * h * h) == pytest.approx(1.0, abs=1e-4)
    s = dist.sample(100_000, seed=0)
    lp = dist.log_prob(s)
    mc, se = float(-lp.mean()), float(lp.std() / math.sqrt(len(lp)))
    assert dist.entropy() == pytest.approx(mc, abs=5 * se)


def test_mixture_log_prob_matches_torch_distributions():
    dist = data.ring(n_modes=5, std=0.3)
    D = torch.distributions
    ref = D.MixtureSameFamily(D.Categorical(probs=dist.weights),
                              D.Independent(D.Normal(dist.means, dist.stds[:, None].expand(5, 2)), 1))
    x = torch.randn(50, 2, dtype=torch.float64) * 2
    torch.testing.assert_close(dist.log_prob(x), ref.log_prob(x))


def test_samples_are_reproducible_and_sklearn_toys():
    assert torch.equal(data.ring().sample(10, seed=3), data.ring().sample(10, seed=3))
    for name in ("moons", "circles", "swissroll"):
        t = data.toy(name)
        x = t.sample(300, seed=0)
        assert x.shape == (300, 2) and x.dtype == torch.float32 and not t.has_density
        assert torch.equal(x, t.sample(300, seed=0))


def _write_idx(path, arr, code):
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def test_mnist_idx_and_npz_loader(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs, 0x08)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, 0x08)
    x, y = data.load_mnist(tmp_path, "test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x[:, 0].numpy(), imgs)
    np.testing.assert_array_equal(y.numpy(), labels)
    np.savez(tmp_path / "m.npz", x_train=imgs, y_train=labels, x_test=imgs[:2], y_test=labels[:2])
    assert data.load_mnist(tmp_path / "m.npz", "test")[0].shape == (2, 1, 28, 28)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        data.load_mnist(tmp_path, "train")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_idx(tmp_path / "bad")
