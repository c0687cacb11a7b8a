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
