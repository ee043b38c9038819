"""thermossl.compat.pot_sinkhorn against POT itself (ot.sinkhorn(..., method="sinkhorn_log")),
run side by side on the same arguments: plans, logs, warnings and printed output equal."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from thermossl.compat import pot_sinkhorn
from helpers import warning_frames_as_without_mutmut

ot = pytest.importorskip("ot")  # a test dependency (pyproject [test]); CI installs it


def run(fn, *args, **kwargs):
    """(result, [(category, message)], stdout-less) with every warning recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [(w.category, str(w.message)) for w in caught]


def pot(a, b, M, reg, **kwargs):
    return ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", **kwargs)


def assert_same_log(mine, ref, rtol, atol):
    assert set(mine) == set(ref)
    assert mine["niter"] == ref["niter"]
    assert isinstance(mine["err"], list) and len(mine["err"]) == len(ref["err"])
    assert_allclose(np.array(mine["err"], dtype=float), np.array(ref["err"], dtype=float), rtol=1e-6, atol=100 * atol)
    for key in ("log_u", "log_v"):
        finite = np.isfinite(ref[key])
        assert_array_equal(np.isfinite(mine[key]), finite)
        assert_array_equal(mine[key][~finite], ref[key][~finite])
        assert_allclose(mine[key][finite], ref[key][finite], rtol=rtol, atol=atol * 1e3)
    for key in ("u", "v"):
        assert_allclose(mine[key], ref[key], rtol=rtol * 1e3, atol=0)


def random_problem(rng):
    """Arguments of one random POT call: sizes, costs, marginals with zero bins and masses != 1,
    regularisation, iteration budget and threshold (including ones that change the result)."""
    n, m = (int(v) for v in rng.integers(1, 25, size=2))
    M = rng.uniform(0, 1, (n, m)) if rng.random() < 0.5 else rng.normal(size=(n, m)) ** 2
    reg = float(10 ** rng.uniform(-1.5, 0.3))
    mass = float(rng.choice([1.0, 1.0, 0.3, 7.0]))

    def histogram(length):
        kind = rng.integers(0, 4)
        if kind == 0:
            return []  # POT: uniform
        h = rng.uniform(0.05, 1.0, length)
        if kind == 1 and length > 1:  # zero-mass bins
            h[rng.random(length) < 0.3] = 0.0
            if not h.any():
                h[0] = 1.0
        return h / h.sum() * mass

    a, b = histogram(n), histogram(m)
    if isinstance(a, list) and not isinstance(b, list):
        b = b / mass  # POT's empty a is uniform with mass 1
    if isinstance(b, list) and not isinstance(a, list):
        a = a / mass
    if rng.random() < 0.08 and not isinstance(a, list):
        a = a * 1.5  # unequal masses: POT iterates anyway (and does not converge)
    kwargs = {
        "numItermax": int(rng.choice([1, 2, 9, 10, 11, 12, 37, 200, 1000])),
        "stopThr": float(rng.choice([0.0, 1e-9, 1e-6, 1e-3, 1e-1])),
    }
    if rng.random() < 0.2:
        kwargs["warmstart"] = (rng.normal(size=n), rng.normal(size=m))
    return a, b, M, reg, kwargs


N_PROBLEMS = int(os.environ.get("THERMOSSL_POT_PROBLEMS", "300"))  # fewer for mutation runs


def test_random_problems_plans_logs_warnings_equal():
    rng = np.random.default_rng(2026)
    counts = {"problems": 0, "plans": 0, "logs": 0, "warnings": 0, "stopped_early": 0, "zero_bins": 0}
    for _ in range(N_PROBLEMS):
        a, b, M, reg, kwargs = random_problem(rng)
        (ref, ref_log), ref_warn = run(pot, a, b, M, reg, log=True, **kwargs)
        (plan, info), my_warn = run(pot_sinkhorn, a, b, M, reg, log=True, **kwargs)
        counts["problems"] += 1
        assert plan.dtype == ref.dtype and plan.shape == ref.shape
        assert_allclose(plan, ref, rtol=1e-9, atol=1e-15)
        counts["plans"] += 1
        assert_same_log(info, ref_log, rtol=1e-9, atol=1e-14)
        counts["logs"] += 1
        assert my_warn == ref_warn
        counts["warnings"] += 1
        counts["stopped_early"] += ref_log["niter"] + 1 < kwargs["numItermax"]
        counts["zero_bins"] += bool(np.any(np.asarray(a) == 0) or np.any(np.asarray(b) == 0))
    print("POT comparison:", counts)
    # The sample exercises what it claims to: early stops and zero-mass bins both occur.
    assert counts["stopped_early"] > N_PROBLEMS // 15 and counts["zero_bins"] > N_PROBLEMS // 15


@pytest.mark.parametrize("numItermax", [1, 3, 10, 11, 25, 100])
def test_non_uniform_a_same_start_at_any_numItermax(numItermax):
    rng = np.random.default_rng(numItermax)
    n, m = 40, 9
    M = rng.uniform(0, 1, (n, m))
    a = rng.uniform(0.01, 1, n); a /= a.sum()  # noqa: E702
    b = rng.uniform(0.01, 1, m); b /= b.sum()  # noqa: E702
    ref, _ = run(pot, a, b, M, 0.03, numItermax=numItermax, stopThr=0.0)
    plan, _ = run(pot_sinkhorn, a, b, M, 0.03, numItermax=numItermax, stopThr=0.0)
    assert_allclose(plan, ref, rtol=1e-10, atol=1e-300)


def test_stopThr_changes_the_result_as_in_pot():
    rng = np.random.default_rng(7)
    M = rng.uniform(0, 1, (30, 8))
    a, b = np.full(30, 1 / 30), rng.dirichlet(np.ones(8))
    loose, loose_log = pot_sinkhorn(a, b, M, 0.02, stopThr=1e-2, log=True)
    tight, tight_log = pot_sinkhorn(a, b, M, 0.02, stopThr=1e-12, numItermax=100000, log=True)
    assert loose_log["niter"] < tight_log["niter"]
    assert np.abs(loose - tight).max() > 1e-6
    ref_loose, ref_log = pot(a, b, M, 0.02, stopThr=1e-2, log=True)
    assert loose_log["niter"] == ref_log["niter"]
    assert_allclose(loose, ref_loose, rtol=1e-10, atol=1e-300)


def test_zero_mass_bins_give_zero_rows_and_columns():
    rng = np.random.default_rng(3)
    M = rng.uniform(0, 1, (6, 5))
    a = np.array([0.2, 0.0, 0.3, 0.5, 0.0, 0.0])
    b = np.array([0.0, 0.4, 0.6, 0.0, 0.0])
    (ref, ref_log), ref_warn = run(pot, a, b, M, 0.1, log=True)
    (plan, info), my_warn = run(pot_sinkhorn, a, b, M, 0.1, log=True)
    assert np.all(plan[a == 0] == 0) and np.all(plan[:, b == 0] == 0)
    assert_allclose(plan, ref, rtol=1e-10, atol=1e-300)
    assert_same_log(info, ref_log, rtol=1e-9, atol=1e-14)
    assert my_warn == ref_warn  # numpy's divide-by-zero warnings of log a, log b included
    assert any(issubclass(c, RuntimeWarning) for c, _ in ref_warn)


def test_stopThr_zero_runs_numItermax_and_warns():
    rng = np.random.default_rng(4)
    M = rng.uniform(0, 1, (10, 4))
    (ref, ref_log), ref_warn = run(pot, [], [], M, 0.5, stopThr=0.0, numItermax=50, log=True)
    (plan, info), my_warn = run(pot_sinkhorn, [], [], M, 0.5, stopThr=0.0, numItermax=50, log=True)
    assert info["niter"] == ref_log["niter"] == 49 and len(info["err"]) == 5
    assert my_warn == ref_warn and len(my_warn) == 1 and my_warn[0][0] is UserWarning
    assert_allclose(plan, ref, rtol=1e-12, atol=1e-300)


def test_warn_false_and_verbose_output_equal(capsys):
    rng = np.random.default_rng(5)
    M = rng.uniform(0, 1, (12, 7))
    ref, ref_warn = run(pot, [], [], M, 0.01, numItermax=421, verbose=True, warn=False)
    ref_out = capsys.readouterr().out
    plan, my_warn = run(pot_sinkhorn, [], [], M, 0.01, numItermax=421, verbose=True, warn=False)
    my_out = capsys.readouterr().out
    assert ref_warn == my_warn == []
    assert my_out.splitlines()[:3] == ref_out.splitlines()[:3]
    assert len(my_out.splitlines()) == len(ref_out.splitlines()) == 43 + 3 * 2
    # The printed errors agree to the 7 digits printed, but for the last one or two at 1e-16.
    for mine, theirs in zip(my_out.splitlines(), ref_out.splitlines()):
        if "|" in mine and mine.split("|")[0].strip().isdigit():
            assert mine.split("|")[0] == theirs.split("|")[0]
            assert float(mine.split("|")[1]) == pytest.approx(float(theirs.split("|")[1]), rel=1e-6, abs=1e-15)
        else:
            assert mine == theirs
    assert_allclose(plan, ref, rtol=1e-10, atol=1e-300)


def test_warmstart_as_in_pot():
    rng = np.random.default_rng(6)
    M = rng.uniform(0, 1, (15, 6))
    a, b = rng.dirichlet(np.ones(15)), rng.dirichlet(np.ones(6))
    _, first = pot(a, b, M, 0.05, numItermax=20, log=True, warn=False)
    start = (first["log_u"], first["log_v"])
    ref, ref_log = pot(a, b, M, 0.05, numItermax=30, log=True, warmstart=start, warn=False)
    plan, info = pot_sinkhorn(a, b, M, 0.05, numItermax=30, log=True, warmstart=start, warn=False)
    assert_allclose(plan, ref, rtol=1e-10, atol=1e-300)
    assert_same_log(info, ref_log, rtol=1e-9, atol=1e-14)


def test_float32_like_pot():
    rng = np.random.default_rng(8)
    M = rng.uniform(0, 1, (20, 5)).astype(np.float32)
    a = np.full(20, 1 / 20, np.float32)
    b = rng.dirichlet(np.ones(5)).astype(np.float32)
    (ref, ref_log), ref_warn = run(pot, a, b, M, 0.1, numItermax=40, log=True)
    (plan, info), my_warn = run(pot_sinkhorn, a, b, M, 0.1, numItermax=40, log=True)
    assert plan.dtype == ref.dtype == np.float32
    assert_allclose(plan, ref, rtol=2e-4, atol=1e-7)
    assert info["niter"] == ref_log["niter"] and my_warn == ref_warn


def test_unequal_masses_run_as_in_pot():
    rng = np.random.default_rng(9)
    M = rng.uniform(0, 1, (8, 6))
    a, b = rng.dirichlet(np.ones(8)) * 2.0, rng.dirichlet(np.ones(6))
    (ref, ref_log), ref_warn = run(pot, a, b, M, 0.3, numItermax=100, log=True)
    (plan, info), my_warn = run(pot_sinkhorn, a, b, M, 0.3, numItermax=100, log=True)
    assert_allclose(plan, ref, rtol=1e-9, atol=1e-300)
    assert_same_log(info, ref_log, rtol=1e-9, atol=1e-14)
    assert my_warn == ref_warn and len(my_warn) == 1


M22 = np.ones((2, 2))
ERROR_CASES = [
    # (args, kwargs, exception, the whole message, anchored at its start)
    (([], [], np.zeros((0, 3)), 1.0), {}, ValueError, r"^M must have at least one row and one column, got shape \(0, 3\)$"),
    (([], [], np.zeros((3, 0)), 1.0), {}, ValueError, r"^M must have at least one row and one column"),
    (([], [], np.zeros(3), 1.0), {}, ValueError, r"^M must be a 2-D cost matrix, got ndim=1$"),
    (([], [], np.array([[0.0, np.nan]]), 1.0), {}, ValueError, r"^M contains NaN \(row 0\)$"),
    (([], [], np.array([[0.0, -np.inf]]), 1.0), {}, ValueError, r"^M contains -inf or M/reg overflows \(row 0\)$"),
    (([], [], np.array([[0.0, 1.0], [2.0, -np.inf]]), 1.0), {}, ValueError, r"^M contains -inf or M/reg overflows \(row 1\)$"),
    (([0.5, 0.5], [0.5, 0.5], np.array([[0.0, np.inf], [0.0, np.inf]]), 1.0), {}, ValueError,
     r"^M: column 1 has b > 0 but \+inf cost from every row with a > 0$"),
    (([0.5, 0.5], [0.5, 0.5], np.array([[0.0, np.inf], [np.inf, np.inf]]), 1.0), {}, ValueError,
     r"^M: every cost of row 1 with b > 0 is \+inf; the row's mass cannot move$"),
    (([], [], M22, 0.0), {}, ValueError, r"^reg must be finite and > 0"),
    (([], [], M22, -1.0), {}, ValueError, r"^reg must be finite and > 0"),
    (([], [], M22, "x"), {}, TypeError, r"^reg must be a real number"),
    (([0.5, -0.5], [], M22, 1.0), {}, ValueError, r"^a must be >= 0 \(a histogram\), got a negative entry at 1$"),
    (([0.0, 1.5, -0.5], [], np.ones((3, 2)), 1.0), {}, ValueError, r"^a must be >= 0 \(a histogram\), got a negative entry at 2$"),
    (([0.5], [], M22, 1.0), {}, ValueError, r"^a must be a 1-D histogram of length 2 .*got shape \(1,\)$"),
    ((np.full((2, 1), 0.5), [], M22, 1.0), {}, ValueError, r"^a must be a 1-D histogram of length 2"),
    (([0.0, 0.0], [], M22, 1.0), {}, ValueError, r"^a must have a positive total mass$"),
    (([], [np.nan, 1.0], M22, 1.0), {}, ValueError, r"^b must be finite$"),
    (([], M22, M22, 1.0), {}, ValueError, r"^b must be a 1-D histogram of length 2 \(several histograms, a 2-D b, are not supported\)"),
    (([], [], M22, 1.0), {"numItermax": True}, TypeError, r"^numItermax must be an int"),
    (([], [], M22, 1.0), {"numItermax": -1}, ValueError, r"^numItermax must be >= 0"),
    (([], [], M22, 1.0), {"numItermax": 0, "log": True}, ValueError, r"^numItermax must be >= 1 with log=True"),
    (([], [], M22, 1.0), {"stopThr": -1.0}, ValueError, r"^stopThr must be >= 0"),
    (([], [], M22, 1.0), {"stopThr": float("nan")}, ValueError, r"^stopThr must be >= 0"),
    (([], [], M22, 1.0), {"warmstart": (np.zeros(3), np.zeros(2))}, ValueError, r"^warmstart\[0\] must have shape \(2,\), got \(3,\)$"),
    (([], [], M22, 1.0), {"warmstart": (np.zeros(2), np.zeros(3))}, ValueError, r"^warmstart\[1\] must have shape \(2,\), got \(3,\)$"),
    (([], [], M22, 1.0), {"warmstart": (np.array([np.nan, 0.0]), np.zeros(2))}, ValueError, r"^warmstart\[0\] must be < \+inf and not NaN$"),
    (([], [], M22, 1.0), {"warmstart": (np.zeros(2), np.array([np.inf, 0.0]))}, ValueError, r"^warmstart\[1\] must be < \+inf"),
    (([], [], M22, 1.0), {"warmstart": (np.array(["x", "y"]), np.zeros(2))}, TypeError, r"^warmstart\[0\] must be a real"),
    (([], [], M22, 1.0), {"warmstart": (np.zeros(2), np.array(["x", "y"]))}, TypeError, r"^warmstart\[1\] must be a real"),
    (([], [], M22, 1.0), {"warmstart": 5}, TypeError, r"^warmstart must be a pair \(u, v\) of log-scaling vectors, or None$"),
    (([], ["b"], M22, 1.0), {}, TypeError, r"^b must be a real"),
    ((["a"], [], M22, 1.0), {}, TypeError, r"^a must be a real"),
    (([], [], np.array([["M"]]), 1.0), {}, TypeError, r"^M must be a real"),
]


@pytest.mark.parametrize("args, kwargs, exc, message", ERROR_CASES)
def test_errors_name_pots_arguments(args, kwargs, exc, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(exc, match=message):
            pot_sinkhorn(*args, **kwargs)


def test_defaults_are_pots():
    import inspect

    mine = inspect.signature(pot_sinkhorn).parameters
    theirs = inspect.signature(ot.bregman.sinkhorn_log).parameters
    for name in ("numItermax", "stopThr", "verbose", "log", "warn", "warmstart"):
        assert mine[name].default == theirs[name].default, name
    M = np.random.default_rng(12).uniform(0, 1, (9, 4))
    (ref, ref_log), _ = run(pot, [], [], M, 0.01, log=True)
    (plan, info), _ = run(pot_sinkhorn, [], [], M, 0.01, log=True)
    assert info["niter"] == ref_log["niter"] and len(info["err"]) == len(ref_log["err"])
    assert_allclose(plan, ref, rtol=1e-9, atol=1e-300)


def test_warnings_point_at_the_caller():
    import inspect

    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    for kwargs in ({"numItermax": 0}, {"numItermax": 2, "stopThr": 0.0}):
        with warnings.catch_warnings(record=True) as caught, warning_frames_as_without_mutmut():
            warnings.simplefilter("always")
            line = inspect.currentframe().f_lineno + 1
            pot_sinkhorn([], [], M, 0.5, **kwargs)
        assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


def test_empty_arrays_are_uniform_as_in_pot():
    M = np.random.default_rng(13).uniform(0, 1, (5, 3))
    ref = pot([], [], M, 0.3, stopThr=1e-12)
    for empty in ([], np.array([]), np.zeros((0,)), None):
        assert_allclose(pot_sinkhorn(empty, empty, M, 0.3, stopThr=1e-12), ref, rtol=1e-10, atol=1e-300)


def test_numItermax_zero_with_warmstart_as_in_pot():
    M = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.5]])
    start = (np.array([0.3, -0.2]), np.array([0.1, 0.4, -1.0]))
    ref, ref_warn = run(pot, [], [], M, 0.5, numItermax=0, warmstart=start)
    plan, my_warn = run(pot_sinkhorn, [], [], M, 0.5, numItermax=0, warmstart=start)
    assert_allclose(plan, ref, rtol=1e-15)
    assert my_warn == ref_warn


def test_forbidden_cells_where_mass_must_go():
    M = np.array([[0.0, np.inf], [np.inf, np.inf]])
    with pytest.raises(ValueError, match="M: every cost of row 1"):
        pot_sinkhorn([0.5, 0.5], [0.5, 0.5], M, 1.0)
    # ... also beside a row of zero mass (the rows kept for the solver are chosen then).
    M3 = np.array([[0.0, 1.0], [np.inf, np.inf], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"^M: every cost of row 1 with b > 0 is \+inf"):
        pot_sinkhorn([0.5, 0.5, 0.0], [0.5, 0.5], M3, 1.0)
    # A row of zero mass may have every cost infinite (it carries nothing): a zero row, u = -inf.
    plan, info = run(pot_sinkhorn, [1.0, 0.0], [1.0, 0.0], M, 1.0, log=True)[0]
    assert_allclose(plan, [[1.0, 0.0], [0.0, 0.0]])
    assert info["log_u"][1] == -np.inf and info["log_v"][1] == -np.inf and info["u"][1] == 0.0
    assert np.isfinite(info["log_u"][0]) and np.isfinite(info["log_v"][0])


def test_numItermax_zero_is_the_starting_plan():
    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    ref, ref_warn = run(pot, [], [], M, 0.5, numItermax=0)
    plan, my_warn = run(pot_sinkhorn, [], [], M, 0.5, numItermax=0)
    assert_allclose(plan, ref, rtol=1e-15)
    assert my_warn == ref_warn
    with pytest.raises(ValueError, match="numItermax"):
        pot_sinkhorn([], [], M, 0.5, numItermax=0, log=True)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(10)
    M = rng.uniform(0, 1, (5, 4))
    a, b = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(4))
    copies = [x.copy() for x in (a, b, M)]
    pot_sinkhorn(a, b, M, 0.1, log=True)
    for x, y in zip((a, b, M), copies):
        assert_array_equal(x, y)


def test_same_as_thermossl_sinkhorn_for_normalised_marginals():
    """The drop-in and the native API solve one problem: converged plans agree."""
    rng = np.random.default_rng(11)
    M = rng.normal(size=(50, 6))
    a, b = rng.dirichlet(np.ones(50)), rng.dirichlet(np.ones(6))
    plan = pot_sinkhorn(a, b, M, 0.3, stopThr=1e-13, numItermax=100000)
    native = thermossl.sinkhorn(M, 0.3, w=a, c=b, tol=1e-12, max_iter=100000)
    assert_allclose(plan, a[:, None] * native.q, rtol=1e-8, atol=1e-15)
