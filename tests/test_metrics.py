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



def test_inception_score_of_the_course_classifier_on_real_constant_and_noise_digits():
    """Through the course's classifier: a constant generator scores exactly 1, held-out real digits
    (ten classes, about evenly used) score far above uniform noise. With the logistic regression's
    soft probabilities real digits reach about 6.6 of 10, not 10: the score also measures the
    classifier's confidence."""
    from gencourse.metrics import inception_score

    clf = DigitClassifier()
    x_val, _ = load_digits("val", "float")
    constant = x_val[:1].expand(200, 64)
    assert inception_score(clf.predict_proba(constant)) == pytest.approx(1.0, abs=1e-9)
    real = inception_score(clf.predict_proba(x_val))
    noise = inception_score(clf.predict_proba(torch.rand(len(x_val), 64, generator=torch.Generator().manual_seed(0))))
    assert 6.0 < real <= 10.0 and real > 3 * noise

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


def _frechet_reference(a, b):
    """An independent computation: NumPy moments and scipy.linalg.sqrtm of S_a S_b (real part)."""
    import numpy as np
    import scipy.linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * np.real(root)))


def test_frechet_distance_against_scipy_and_its_closed_form():
    from gencourse.metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    d = 6
    mix_a, mix_b = torch.randn(d, d, generator=g, dtype=torch.float64), torch.randn(d, d, generator=g, dtype=torch.float64)
    a = torch.randn(500, d, generator=g, dtype=torch.float64) @ mix_a.T + 1.0
    b = torch.randn(300, d, generator=g, dtype=torch.float64) @ (0.5 * mix_b).T - 0.5
    expected = _frechet_reference(a.numpy(), b.numpy())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8, abs=1e-10)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-10)  # symmetric
    assert frechet_distance(a.float(), b.float()) == pytest.approx(expected, rel=1e-4)  # float32 in, float64 inside
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)

    # two large samples of one Gaussian: ~0 (only the estimation error of the moments)
    cov_root = torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(50_000, d, generator=g, dtype=torch.float64) @ cov_root.T
    y = torch.randn(50_000, d, generator=g, dtype=torch.float64) @ cov_root.T
    scale = float(torch.trace(cov_root @ cov_root.T))
    assert frechet_distance(x, y) < 1e-2 * scale

    # two Gaussians with known moments: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}); diagonal
    # covariances give sum_i (sqrt(s_ai) - sqrt(s_bi))^2 for the trace term
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    closed = float((mu1 - mu2).pow(2).sum() + (var1.sqrt() - var2.sqrt()).pow(2).sum())  # 5 + 2 = 7
    n = 200_000
    x = mu1 + var1.sqrt() * torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = mu2 + var2.sqrt() * torch.randn(n, 3, generator=g, dtype=torch.float64)
    assert frechet_distance(x, y) == pytest.approx(closed, abs=0.05)
    # a non-diagonal pair in closed form, with samples whitened to hit the moments exactly
    s_a = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    s_b = torch.tensor([[1.0, -0.3], [-0.3, 0.5]], dtype=torch.float64)
    m_a, m_b = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64)

    def exact_moments(mean, cov, n=1000):
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        z = z - z.mean(0)
        z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # sample covariance exactly I
        return mean + z @ torch.linalg.cholesky(cov).T

    import numpy as np
    import scipy.linalg

    closed = float((m_a - m_b).pow(2).sum()
                   + np.trace(s_a.numpy() + s_b.numpy() - 2 * np.real(scipy.linalg.sqrtm(s_a.numpy() @ s_b.numpy()))))
    assert frechet_distance(exact_moments(m_a, s_a), exact_moments(m_b, s_b)) == pytest.approx(closed, rel=1e-9)
    with pytest.raises(ValueError):
        frechet_distance(torch.randn(5, 3), torch.randn(5, 4))


def test_digit_features_are_the_classifier_logits_and_separate_real_from_noise():
    from gencourse.metrics import digit_features, frechet_distance

    clf = DigitClassifier()
    xt, _ = load_digits("test", "float")
    feats = digit_features(clf, xt)
    assert feats.shape == (len(xt), 10) and feats.dtype == torch.float64
    torch.testing.assert_close(torch.softmax(feats, 1), clf.predict_proba(xt).double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(digit_features(clf, xt.reshape(-1, 1, 8, 8)), feats)  # images too
    xv, _ = load_digits("val", "float")
    noise = torch.rand(len(xt), 64, generator=torch.Generator().manual_seed(0))
    real_vs_real = frechet_distance(digit_features(clf, xv), feats)
    assert real_vs_real < frechet_distance(digit_features(clf, noise), feats) / 10
