"""gencourse.grading and the autograder's outside-the-notebook verification, without nbgrader."""
import numpy as np
import pytest
import torch

import gencourse.mle
from gencourse import grading
from gencourse.grading import autograder


def wrong_variance(x):
    return x.mean(0), x.var(0)  # divides by N - 1


def test_every_registered_check_passes_an_independent_implementation():
    # the reference wrapped (so it is not recognised as gencourse's own) passes every check
    for name, spec in grading.registry().items():
        ref = grading.resolve_reference(spec, sealed=False)
        grading.check(name, lambda *a, _f=ref, **k: _f(*a, **k))


def test_wrong_answer_fails_with_an_actionable_message():
    with pytest.raises(grading.CheckFailed) as e:
        grading.check("a1.gaussian_mle", wrong_variance)
    msg = str(e.value)
    assert "gaussian_mle on cpu" in msg and "5 scalars" in msg and "expected" in msg and "largest error" in msg


def test_exceptions_shapes_and_types_are_reported():
    with pytest.raises(grading.CheckFailed, match="raised ZeroDivisionError"):
        grading.check("a1.entropy", lambda p: 1 / 0)
    with pytest.raises(grading.CheckFailed, match="shape"):
        grading.check("a1.entropy", lambda p: -(torch.xlogy(p, p)).sum(-1, keepdim=True))

    class AlwaysEqual:
        def __eq__(self, other):
            return True
    with pytest.raises(grading.CheckFailed, match="AlwaysEqual"):
        grading.check("a1.entropy", lambda p: AlwaysEqual())


def test_reference_is_sealed_against_patching(monkeypatch):
    monkeypatch.setattr(gencourse.mle, "gaussian_mle", wrong_variance)
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    with pytest.raises(grading.CheckFailed):
        grading.check("a1.gaussian_mle", wrong_variance)
    with pytest.raises(grading.CheckFailed, match="gencourse's own reference"):
        grading.check("a1.entropy", gencourse.mle.entropy)


def test_compare_outputs_edge_cases():
    a = np.array([1.0, np.inf, np.nan])
    assert grading.compare_outputs([a], [a.copy()], 1e-6, 1e-8) is None
    assert "differs" in grading.compare_outputs([a], [np.array([1.0, -np.inf, np.nan])], 1e-6, 1e-8)
    assert "NaN" not in (grading.compare_outputs([a], [np.array([1.1, np.inf, np.nan])], 1e-6, 1e-8) or "")
    assert "output(s)" in grading.compare_outputs([a], [a, a], 1e-6, 1e-8)


def test_fill_parameters_makes_modules_identical():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    grading.fill_parameters(a, seed=1), grading.fill_parameters(b, seed=1)
    x = torch.randn(4, 3)
    assert torch.equal(a(x), b(x))


def test_outside_verification_confirms_only_true_records(tmp_path, monkeypatch):
    monkeypatch.setenv(grading.EVIDENCE_ENV, str(tmp_path))
    assert "no result was recorded" in autograder.verify_check("a1.gaussian_mle", tmp_path)
    grading.check("a1.gaussian_mle", lambda x: (x.mean(0), ((x - x.mean(0)) ** 2).mean(0)))
    assert autograder.verify_check("a1.gaussian_mle", tmp_path) is None
    for f in tmp_path.glob("*.npz"):
        f.unlink()
    with pytest.raises(grading.CheckFailed):
        grading.check("a1.gaussian_mle", wrong_variance)
    assert "confirmed outside the notebook" in autograder.verify_check("a1.gaussian_mle", tmp_path)
    (next(tmp_path.glob("*.npz"))).write_bytes(b"not an npz")
    assert "unreadable" in autograder.verify_check("a1.gaussian_mle", tmp_path)


def test_check_call_pattern_finds_names():
    src = 'from gencourse.grading import check\ncheck("a1.forward_kl", forward_kl)\ncheck( \'a1.reverse_kl\', f)'
    assert autograder.CHECK_CALL.findall(src) == ["a1.forward_kl", "a1.reverse_kl"]
