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
    # The same samples every step (index= where Demon.measure takes sample ids: issue 15).
    same = {"index": np.arange(scores.shape[1])}
    for t in range(len(scores) - 1):
        demon.measure(-scores[t], **same)
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



# ---------------------------------------------------------------------------------------------
# Runs with the codes used in training, teacher scores, chosen array names (issue 15, item 4)


def softmax_rows(x):
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def xlogy(x, y):
    out = np.zeros_like(x)
    nz = x > 0
    out[nz] = x[nz] * np.log(y[nz])
    return out


def books_by_numpy(scores, codes, T, teacher=None):
    """The ledger of a replay with recorded labels, from the definitions (THEORY.md §2, §4, §5)
    in plain numpy, weights 1/N: per cycle t, labels q_t = codes[t] measured on E_m (the
    teacher's energies, or the student's), chained from q_{t-1} (from the Gibbs state of E_m at T
    in the first cycle), work on the student's energies from step t to t + 1."""
    n = scores.shape[1]
    rows = []
    q_prev = None
    for t in range(len(scores) - 1):
        E, E_next = -scores[t], -scores[t + 1]
        E_m = E if teacher is None else -teacher[t]
        q = codes[t]
        if q_prev is None:
            q_prev = softmax_rows(-E_m / T)
        log_p = np.log(softmax_rows(-E / T))
        log_p_next = np.log(softmax_rows(-E_next / T))
        lse = lambda x: np.log(np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)) + x.max(axis=1)  # noqa: E731
        F, F_next = -T * lse(-E / T).mean(), -T * lse(-E_next / T).mean()
        charges = q.mean(axis=0)
        S_q = -xlogy(q, q).sum() / n
        rows.append({
            "Q": (E_m * (q - q_prev)).sum() / n,
            "W": (q * (E_next - E)).sum() / n,
            "dU": ((E_m * q).sum() - (E_m * q_prev).sum() + (q * E_next).sum() - (q * E).sum()) / n,
            "L_before": -(q * log_p).sum() / n,
            "L_after": -(q * log_p_next).sum() / n,
            "D_before": (xlogy(q, q) - q * log_p).sum() / n,
            "D_after": (xlogy(q, q) - q * log_p_next).sum() / n,
            "F_before": F, "F_after": F_next,
            "S_q": S_q,
            "I": -xlogy(charges, charges).sum() - S_q,
            "charge_err": np.abs(charges - 1.0 / q.shape[1]).sum(),
        })
        q_prev = q
    return rows


def recorded_run(seed=1, steps=6, n=40, k=4, hard=False):
    """Scores drifting toward the codes a training run used (soft codes, or one-hot ones)."""
    rng = np.random.default_rng(seed)
    scores = training_scores(seed, steps, n, k)
    if hard:
        codes = np.eye(k)[rng.integers(0, k, size=(steps, n))]
    else:
        codes = softmax_rows(rng.normal(size=(steps * n, k)) / 0.3).reshape(steps, n, k)
    return scores, codes


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("with_teacher", [False, True])
def test_a_replay_of_recorded_codes_matches_numpy(hard, with_teacher):
    scores, codes = recorded_run(hard=hard)
    rng = np.random.default_rng(5)
    teacher = scores[:-1] + 0.1 * rng.normal(size=scores[:-1].shape) if with_teacher else None
    T = 0.2
    result = analysis.analyze(scores, T, codes=codes[:-1], teacher=teacher)
    assert result.labels == "given" and len(result.ledger) == len(scores) - 1
    expected = books_by_numpy(scores, codes, T, teacher)
    for row, ref in zip(result.ledger, expected):
        for name, value in ref.items():
            assert math.isclose(row[name], value, rel_tol=1e-11, abs_tol=1e-13), (name, row[name], value)
        # Quantities of a reservoir that recorded codes do not have: nan, not a fake value.
        for name in analysis.GIVEN_LABELS_NAN_FIELDS:
            assert math.isnan(row[name]), name
        # The identities that hold for any label state still close.
        for name in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4"):
            assert abs(row[name]) < 1e-13, (name, row[name])
    summary = analysis.summarize(result.ledger, T)
    assert math.isnan(summary["Sigma"]) and math.isnan(summary["max_abs_res_E2"])
    assert summary["D2_every_cycle"]
    text = analysis.format_summary(summary)
    assert "Sigma = n/a" in text and "E2 n/a" in text
    analysis.check_books(result.ledger, result.nan_fields, result.work_per_sample)
    with pytest.raises(ValueError, match="Sigma = nan in cycle 0"):
        analysis.check_books(result.ledger)  # nan is refused where it is not by definition


def test_teacher_scores_are_measured_by_the_reservoir():
    scores, _ = recorded_run()
    teacher = scores[:-1][::-1].copy()
    result = analysis.analyze(scores, 0.1, "swav", teacher=teacher)
    demon = Demon(0.1, swav())
    same = {"index": np.arange(scores.shape[1])}
    for t in range(len(scores) - 1):
        demon.measure(-teacher[t], **same)
        demon.feedback(-scores[t + 1], E_before=-scores[t])
    assert_array_equal(result.ledger.to_numpy(), demon.ledger.to_numpy())
    W = [(swav().assign(-teacher[t]).q * (scores[t] - scores[t + 1])).sum() / scores.shape[1]
         for t in range(len(scores) - 1)]
    assert_allclose(result.ledger.column("W"), W, rtol=1e-12)


def test_codes_and_a_reservoir_exclude_each_other_and_shapes_are_checked():
    scores, codes = recorded_run()
    with pytest.raises(ValueError, match="not both"):
        analysis.analyze(scores, 0.1, "sela", codes=codes[:-1])
    with pytest.raises(ValueError, match="codes must have shape"):
        analysis.analyze(scores, 0.1, codes=codes)
    with pytest.raises(ValueError, match="teacher must have shape"):
        analysis.analyze(scores, 0.1, teacher=scores)


def test_load_run_reads_codes_teacher_and_chosen_keys(tmp_path):
    scores, codes = recorded_run(steps=12)
    teacher = scores + 1.0
    path = tmp_path / "run.npz"
    # Numbered codes (all steps, the last unused), stacked teacher without the last step.
    np.savez(path, logits=scores, teacher=teacher[:-1].astype(np.float32),
             **{f"codes_{t}": c.astype(np.float32) for t, c in enumerate(codes)})
    run = analysis.load_run(path, scores_key="logits")
    assert_array_equal(run.scores, scores)
    assert run.steps == tuple(range(12))
    assert run.codes.dtype == np.float64 and run.codes.shape == (11,) + scores.shape[1:]
    assert_allclose(run.codes, codes[:-1], rtol=1e-6)
    assert_allclose(run.codes.sum(axis=2), 1.0, rtol=0, atol=1e-15)  # renormalised in float64
    assert_array_equal(run.teacher, teacher[:-1].astype(np.float32))
    assert run.keys == {"scores": "logits", "codes": "codes", "teacher": "teacher"}
    # Other names; hard codes as booleans; a key of None is not read.
    np.savez(path, s=scores, labels=codes.argmax(axis=2)[..., None] == np.arange(codes.shape[2]))
    run = analysis.load_run(path, scores_key="s", codes_key="labels")
    assert_array_equal(run.codes, np.eye(codes.shape[2])[codes.argmax(axis=2)][:-1])
    assert analysis.load_run(path, scores_key="s", codes_key=None).codes is None
    # The codes' steps follow numbered scores' steps, with gaps.
    np.savez(path, **{f"scores_{t}": scores[i] for i, t in enumerate((0, 5, 10))},
             **{f"codes_{t}": codes[i] for i, t in enumerate((0, 5))})
    run = analysis.load_run(path)
    assert run.steps == (0, 5, 10) and run.codes.shape[0] == 2


@pytest.mark.parametrize(
    "arrays, kwargs, message",
    [
        ({"logits": np.zeros((2, 4, 3)), "w": np.ones(4) / 4}, {}, r"no 'scores' or 'scores_<t>' arrays \(keys found: 'logits', 'w'\)"),
        ({"scores": np.zeros((2, 4, 3))}, {"require": ("codes",)}, r"no 'codes' or 'codes_<t>' arrays \(keys found: 'scores'\)"),
        ({"scores": np.zeros((2, 4, 3))}, {"codes_key": "q", "require": ("codes",)}, "no 'q' or 'q_<t>'"),
        ({"scores_1": np.zeros((4, 3)), "scores_01": np.zeros((4, 3))}, {}, "'scores_01' and 'scores_1' both give step 1"),
        ({"scores": np.zeros((3, 4, 3)), "codes_0": np.eye(3)[[0] * 4], "codes_00": np.eye(3)[[1] * 4]}, {}, "ambiguous"),
        ({"scores": np.zeros((3, 4, 3)), "codes": np.full((2, 4, 3), 0.5)}, {}, r"rows summing to 1 \(step 0, row 0 sums to 1.5\)"),
        ({"scores": np.zeros((3, 4, 3)), "codes": -np.eye(3)[np.zeros((2, 4), int)]}, {}, "finite and >= 0"),
        ({"scores": np.zeros((3, 4, 3)), "codes": np.full((2, 4, 3), np.nan)}, {}, "finite and >= 0"),
        ({"scores": np.zeros((3, 4, 3)), "codes": np.full((1, 4, 3), 1 / 3)}, {}, "must have the steps of the scores"),
        ({"scores": np.zeros((3, 4, 3)), "codes": np.full((2, 5, 3), 1 / 3)}, {}, r"\(N, K\) = \(4, 3\) per step"),
        ({"scores": np.zeros((3, 4, 3)), "codes": np.full((2, 4), 1 / 3)}, {}, "'codes' must be 3-D"),
        ({"scores_0": np.zeros((4, 3)), "scores_1": np.zeros((4, 3)), "codes_1": np.full((4, 3), 1 / 3)}, {}, r"got \(1,\)"),
        ({"scores": np.zeros((3, 4, 3)), "teacher": np.full((3, 4, 3), np.inf)}, {}, "teacher's scores .* finite"),
        ({"scores": np.zeros((3, 4, 3), bool)}, {}, "real numbers"),
        ({"scores": np.zeros((3, 4, 3), np.complex128)}, {}, "real numbers"),
        ({"scores": np.zeros((3, 4, 3)), "weights": np.array(["a", "b", "c", "d"])}, {}, "'weights' must hold real numbers"),
        ({"scores": np.zeros((2, 100, 100))}, {"max_bytes": 100_000}, "more than the limit"),
    ] + ([({"scores": np.zeros((3, 4, 3), np.longdouble)}, {}, "extended precision")]  # where long double is
         if np.dtype(np.longdouble).itemsize > 8 else []),
)
def test_load_run_refuses_naming_the_file_and_array(tmp_path, arrays, kwargs, message):
    path = tmp_path / "run.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as info:
        analysis.load_run(path, **kwargs)
    assert str(info.value).startswith(str(path))


def lying_npz(path, shape, key="scores", dtype="<f8", data=b"\0" * 64, compress=False):
    """An .npz whose member's .npy header declares `shape` but stores only `data`."""
    import io
    import zipfile

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    buffer.write(data)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr(f"{key}.npy", buffer.getvalue())


@pytest.mark.parametrize("compress", [False, True])
def test_sizes_are_checked_from_the_header_before_loading(tmp_path, compress, monkeypatch):
    path = tmp_path / "huge.npz"
    lying_npz(path, (3, 100_000, 100_000), compress=compress)
    loaded = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: loaded.append(a))
    with pytest.raises(ValueError, match=r"declares shape \(3, 100000, 100000\) float64 \(223.5 GiB\) but the file stores 64 bytes") as info:
        analysis.load_run(path)
    assert str(path) in str(info.value) and not loaded  # refused from the header: no data read
    # A declared size that the file does hold but the memory budget does not allow.
    np.savez_compressed(path, scores=np.zeros((2, 300, 300)))
    with pytest.raises(ValueError, match=r"declare 1.4 MiB .* more than the limit of 1000.0 KiB"):
        analysis.load_run(path, max_bytes=1000 * 1024)
    assert not loaded


def test_headers_that_are_not_arrays(tmp_path):
    import zipfile

    path = tmp_path / "run.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scores.npy", b"not an npy file")
    with pytest.raises(ValueError, match="'scores' is not a stored numpy array"):
        analysis.load_run(path)
    lying_npz(path, (2, 3, 4), dtype="|O")
    with pytest.raises(ValueError, match="Python objects"):
        analysis.load_run(path)
    lying_npz(path, (2, 3, 4), data=b"\0" * (8 * 24 + 8))  # more data than declared
    with pytest.raises(ValueError, match="stores 200 bytes"):
        analysis.load_run(path)


def test_check_books_refuses_values_out_of_range():
    scores = training_scores()
    ok = analysis.analyze(scores, 0.1, "swav")
    analysis.check_books(ok.ledger, work_per_sample=ok.work_per_sample)
    huge = analysis.analyze(scores * 1e250, 0.1, "swav")
    with pytest.raises(ValueError, match=r"out of range: \w+ = .*e\+2\d\d in cycle 0 .*within ±1e\+200"):
        analysis.check_books(huge.ledger)
    rows = list(ok.ledger)
    rows[2]["W"] = math.inf
    with pytest.raises(ValueError, match="W = inf in cycle 2"):
        analysis.check_books(Ledger(rows))
    with pytest.raises(ValueError, match="work of sample 3 is nan"):
        analysis.check_books(ok.ledger, work_per_sample=np.where(np.arange(50) == 3, np.nan, 0.0))

