"""thermossl.analysis: the saved-run format, replaying it through a demon, the ledger summary."""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from thermossl import analysis
from thermossl.demon import Demon, Ledger
from thermossl.reservoirs import sela, swav


def training_scores(seed=0, steps=6, n=50, k=5):
    """Scores of a fixed probe batch drifting toward a clustering, as a training run saves them."""
    rng = np.random.default_rng(seed)
    s = rng.normal(scale=0.3, size=(n, k))
    target = np.eye(k)[rng.integers(0, k, size=n)]
    out = [s]
    for _ in range(steps - 1):
        s = s + 0.1 * (target - s) + 0.02 * rng.normal(size=(n, k))
        out.append(s)
    return np.stack(out)


def test_both_npz_forms_load_in_step_order(tmp_path):
    scores = training_scores(steps=12)
    np.savez(tmp_path / "stacked.npz", scores=scores)
    # Numbered arrays are ordered by their integer suffix, not by name (scores_10 after scores_9).
    np.savez(tmp_path / "numbered.npz", **{f"scores_{t}": s for t, s in enumerate(scores)})
    for name in ("stacked.npz", "numbered.npz"):
        loaded, weights = analysis.load_scores(tmp_path / name)
        assert_array_equal(loaded, scores)
        assert weights is None
    w = np.full(scores.shape[1], 1.0 / scores.shape[1])
    np.savez(tmp_path / "weighted.npz", scores=scores, weights=w)
    assert_array_equal(analysis.load_scores(tmp_path / "weighted.npz")[1], w)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"scores": np.zeros((3, 4))}, "3-D"),
        ({"scores": np.zeros((1, 4, 3))}, "at least 2 steps"),
        ({"scores_0": np.zeros((4, 3)), "scores_1": np.zeros((5, 3))}, "'scores_1' must be 2-D of the shape"),
        ({"logits": np.zeros((2, 4, 3))}, "no 'scores'"),
        ({"scores": np.full((2, 4, 3), np.nan)}, "finite"),
        ({"scores": np.zeros((2, 4, 3)), "weights": np.ones(3)}, "'weights' must have shape"),
        ({"scores": np.array([[["a", "b"]], [["c", "d"]]])}, "real numbers"),
        ({"scores": np.zeros((2, 4, 3)), "scores_0": np.zeros((4, 3))}, "both"),
    ],
)
def test_malformed_runs_are_rejected_naming_the_file(tmp_path, arrays, message):
    path = tmp_path / "run.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as info:
        analysis.load_scores(path)
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        analysis.load_scores(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="readable"):
        analysis.load_scores(junk)
    objects = tmp_path / "objects.npz"
    np.savez(objects, scores=np.array([None, None], dtype=object))
    with pytest.raises(ValueError):  # pickled objects are refused (allow_pickle=False)
        analysis.load_scores(objects)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="not an .npz"):
        analysis.load_scores(single)


def test_analyze_is_a_demon_replay_and_the_books_close():
    scores = training_scores()
    result = analysis.analyze(scores, T=0.1, reservoir="sela")
    demon = Demon(0.1, sela())
    for t in range(len(scores) - 1):
        demon.measure(-scores[t], index=np.arange(scores.shape[1]))
        demon.feedback(-scores[t + 1])
    assert_array_equal(result.ledger.to_numpy(), demon.ledger.to_numpy())
    assert_array_equal(result.work_per_sample, demon.work_per_sample)
    assert result.work_cycle == len(scores) - 2
    summary = analysis.summarize(result.ledger, 0.1)
    assert summary["cycles"] == len(scores) - 1
    assert summary["D2_every_cycle"] and summary["D2_held"] == summary["cycles"]
    assert summary["max_abs_res_first_law"] < 1e-13 and summary["max_abs_res_D1"] < 1e-13
    assert math.isclose(summary["W"], sum(r["W"] for r in result.ledger), rel_tol=1e-12)
    assert summary["W"] < 0  # the scores move toward the labels: work is extracted
    text = analysis.format_summary(summary)
    assert "D2" in text and f"{summary['cycles']} cycles" in text


def test_summary_reports_a_broken_bound():
    scores = training_scores()
    rows = list(analysis.analyze(scores, T=0.1, reservoir=swav()).ledger)
    rows[2]["W_ext"] = rows[2]["W_ext"] + 10.0  # more work than the measurement made available
    summary = analysis.summarize(Ledger(rows), 0.1)
    assert not summary["D2_every_cycle"] and summary["D2_held"] == len(rows) - 1


def test_analyze_and_summarize_validate():
    with pytest.raises(ValueError, match="reservoir"):
        analysis.analyze(training_scores(), reservoir="byol")
    with pytest.raises(ValueError, match="steps >= 2"):
        analysis.analyze(training_scores()[:1])
    with pytest.raises(ValueError, match="T must be"):
        analysis.analyze(training_scores(), T=-1.0)
    with pytest.raises(ValueError, match="empty"):
        analysis.summarize(Ledger(), 0.1)
