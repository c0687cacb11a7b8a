"""gencourse.metrics against brute force and definitions: bits per dimension, nearest-neighbour
distances, and the digit classifier as a sensible quality probe."""
import math

import pytest
import torch

from gencourse.data import load_digits
from gencourse.metrics import DigitClassifier, bits_per_dim, nearest_neighbour_distance


def test_bits_per_dim():
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert bits_per_dim(torch.tensor(100.0), 64).item() == pytest.approx(100 / 64 / math.log(2))
    torch.testing.assert_close(bits_per_dim(torch.tensor([0.0, 2 * math.log(2)]), 2), torch.tensor([0.0, 1.0]))


def test_nearest_neighbours_vs_brute_force():
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(7, 5, generator=g), torch.randn(30, 5, generator=g)
    brute = torch.tensor([min(float(torch.norm(xi - r)) for r in ref) for xi in x])
    torch.testing.assert_close(nearest_neighbour_distance(x, ref), brute, atol=1e-5, rtol=0)
    assert torch.all(nearest_neighbour_distance(ref[:4], ref) == 0)


def test_digit_classifier_is_a_sensible_probe():
    clf = DigitClassifier()
    xt, yt = load_digits("test", "float")
    assert clf.accuracy(xt, yt) > 0.85
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(300, 64, generator=g)
    assert clf.confidence(xt).mean() > clf.confidence(noise).mean() + 0.1
    probs = clf.predict_proba(xt)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(xt), dtype=probs.dtype))
    levels = DigitClassifier(kind="levels")  # images (N, 1, 8, 8) of levels are fine too
    xl, yl = load_digits("test", "levels", image=True)
    assert levels.accuracy(xl, yl) > 0.85


def test_inception_score_against_its_entropy_form_and_its_extremes():
    from gencourse.metrics import inception_score

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(50, 10, generator=gen, dtype=torch.float64), 1)

    def entropy(p):
        return -(p * torch.log(p)).sum(-1)

    expected = float(torch.exp(entropy(probs.mean(0)) - entropy(probs).mean()))  # H(p(y)) - E H(p(y|x))
    assert inception_score(probs) == pytest.approx(expected, rel=1e-12)
    assert inception_score(torch.eye(10, dtype=torch.float64).repeat(3, 1)) == pytest.approx(10.0)  # confident, even
    assert inception_score(torch.full((7, 10), 0.1, dtype=torch.float64)) == pytest.approx(1.0)  # no information


def test_modes_covered_counts_modes_and_the_near_share():
    from gencourse import data
    from gencourse.metrics import modes_covered

    toy = data.ring()
    assert modes_covered(toy.sample(4000, 0), toy) == (8, pytest.approx(0.99, abs=0.01))
    one_mode = toy.means[:1].float() + 0.05 * torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    assert modes_covered(one_mode, toy) == (1, pytest.approx(1.0))
    far = torch.zeros(100, 2)  # the empty centre of the ring: near no mode
    assert modes_covered(far, toy) == (0, 0.0)
    fractions = toy.mode_fractions(toy.sample(8000, 2))
    assert fractions.shape == (8,) and torch.allclose(fractions, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.02)
