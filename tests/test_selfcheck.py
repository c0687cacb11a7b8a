"""`gencourse check`: a student's summary of visible tests, per part, without hidden tests."""
from pathlib import Path

import nbformat
import pytest

from gencourse.grading import selfcheck, simulate

A1 = "a1_maximum_likelihood"

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, kind, mutations=()):
    release = nbformat.read(ROOT / "assignments" / A1 / f"{A1}.ipynb", as_version=4)
    source = nbformat.read(ROOT / "solutions" / A1 / f"{A1}.ipynb", as_version=4)
    nb = simulate.build_submission(release, source, kind, A1, mutations)
    path = tmp_path / f"{kind}.ipynb"
    nbformat.write(nb, path)
    return path


def test_untouched_release_is_not_attempted_and_buggy_part_fails(tmp_path, capsys):
    status = {gid: s for gid, _, s, _ in selfcheck.run_visible_tests(_write(tmp_path, "untouched"))}
    assert status["test_entropy"] == selfcheck.NOT_ATTEMPTED and status["written_kl"] == selfcheck.MANUAL
    path = _write(tmp_path, "mutation", ("unbiased_variance",))
    assert selfcheck.self_check(path) == 1
    out = capsys.readouterr().out
    assert "test_gaussian_mle" in out and "FAILED" in out and "divide by N, not N - 1" in out
    assert "check(" not in out  # hidden tests are not in the student's notebook


def test_complete_solution_passes_and_file_is_untouched(tmp_path):
    path = _write(tmp_path, "complete")
    before = path.read_bytes()
    assert selfcheck.self_check(path) == 0
    assert path.read_bytes() == before


def test_broken_notebook_gives_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ not json")
    assert selfcheck.self_check(bad) == 2
    assert "not a valid notebook" in capsys.readouterr().out
