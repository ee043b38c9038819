"""compat.pot_sinkhorn's dtypes and warnings, found by mutation testing (issue 20): the dtype it
computes in (numpy's promotion of M, a and b, as POT's), the uniform histograms in M's dtype, the
plan of numItermax=0 in the dtype POT gives, and numpy's overflow warning there as in POT.

References: POT itself (ot.sinkhorn(..., method="sinkhorn_log")) on the same arguments, or, for
mixed dtypes, on the arguments promoted to the common dtype first (the documented promotion)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from thermossl.compat import pot_sinkhorn

ot = pytest.importorskip("ot")


def run(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [(w.category, str(w.message)) for w in caught]


def pot(a, b, M, reg, **kwargs):
    return ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", **kwargs)


def problem(seed=0, n=7, m=4):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, m)), rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))


MIXED = [  # (M, a, b) dtypes: the plan is float64 as soon as one of them is
    (np.float32, np.float64, np.float64),
    (np.float32, np.float64, np.float32),
    (np.float32, np.float32, np.float64),
    (np.float64, np.float32, np.float32),
]


@pytest.mark.parametrize("dtypes", MIXED, ids=lambda d: "-".join(np.dtype(t).name for t in d))
def test_mixed_dtypes_compute_in_float64_like_pot_on_promoted_inputs(dtypes):
    M, a, b = problem(1)
    M, a, b = (x.astype(t) for x, t in zip((M, a, b), dtypes))
    (plan, info), mine = run(pot_sinkhorn, a, b, M, 0.1, numItermax=60, stopThr=0.0, log=True)
    # The reference: POT on the same values promoted to float64 (what "computed in the promoted
    # dtype" means); float32 arithmetic anywhere would be ~1e-7 off.
    (ref, ref_log), theirs = run(pot, *(x.astype(np.float64) for x in (a, b, M)), 0.1, numItermax=60, stopThr=0.0,
                                 log=True)
    assert plan.dtype == np.float64 and info["log_u"].dtype == np.float64 and info["log_v"].dtype == np.float64
    assert_allclose(plan, ref, rtol=1e-11, atol=1e-300)
    assert_allclose(info["log_u"], ref_log["log_u"], rtol=1e-11, atol=1e-12)
    assert_allclose(info["log_v"], ref_log["log_v"], rtol=1e-11, atol=1e-12)
    assert_allclose(info["err"], ref_log["err"], rtol=1e-8, atol=1e-15)
    assert mine == theirs


@pytest.mark.parametrize("uniform", [[], None])
def test_uniform_histograms_take_the_dtype_of_float32_costs(uniform):
    M = problem(2)[0].astype(np.float32)
    (ref, ref_log), ref_warn = run(pot, [], [], M, 0.2, numItermax=40, log=True)
    (plan, info), my_warn = run(pot_sinkhorn, uniform, uniform, M, 0.2, numItermax=40, log=True)
    assert ref.dtype == np.float32 and plan.dtype == np.float32
    for key in ("log_u", "log_v", "u", "v"):
        assert info[key].dtype == ref_log[key].dtype == np.float32, key
    assert_allclose(plan, ref, rtol=2e-4, atol=1e-7)
    assert info["niter"] == ref_log["niter"] and my_warn == ref_warn


def test_float32_uniform_histograms_are_exactly_one_over_the_length_in_float32():
    # In float32, 1/7 rounds: the uniform a of a float32 M is float32(1/7), as POT's is, so the
    # row sums of the plan are float32(1/7) to float32 rounding, and log_u carries log(float32(1/7)).
    M = problem(3)[0].astype(np.float32)
    plan, info = pot_sinkhorn([], [], M, 0.3, numItermax=500, stopThr=1e-7, log=True, warn=False)
    _, ref_log = pot([], [], M, 0.3, numItermax=500, stopThr=1e-7, log=True, warn=False)
    assert_allclose(plan.sum(axis=1, dtype=np.float64), np.float32(1 / 7), rtol=1e-5)
    assert_allclose(info["log_u"], ref_log["log_u"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("warmstart", [None, "float32"])
def test_no_iteration_plan_is_float32_for_float32_arguments_as_in_pot(warmstart):
    M, a, b = (x.astype(np.float32) for x in problem(4))
    kwargs = {"numItermax": 0}
    if warmstart:
        rng = np.random.default_rng(5)
        kwargs["warmstart"] = (rng.normal(size=7).astype(np.float32), rng.normal(size=4).astype(np.float32))
    ref, ref_warn = run(pot, a, b, M, 0.25, **kwargs)
    plan, my_warn = run(pot_sinkhorn, a, b, M, 0.25, **kwargs)
    assert ref.dtype == np.float32 and plan.dtype == np.float32
    assert_allclose(plan, ref, rtol=1e-6)
    assert my_warn == ref_warn and [c for c, _ in my_warn] == [UserWarning]


@pytest.mark.parametrize("m_dtype, ab_dtype, start_dtype", [
    (np.float32, np.float64, None),        # a, b do not enter the plan: M's dtype, as POT's
    (np.float64, np.float32, None),
    (np.float32, np.float64, np.float32),
    (np.float32, np.float32, np.float64),  # the warm start does enter it
])
def test_no_iteration_plan_has_the_dtype_of_m_and_the_warm_start_as_in_pot(m_dtype, ab_dtype, start_dtype):
    M, a, b = problem(4)
    M, a, b = M.astype(m_dtype), a.astype(ab_dtype), b.astype(ab_dtype)
    kwargs = {"numItermax": 0}
    if start_dtype is not None:
        rng = np.random.default_rng(6)
        kwargs["warmstart"] = (rng.normal(size=7).astype(start_dtype), rng.normal(size=4).astype(start_dtype))
    ref, ref_warn = run(pot, a, b, M, 0.25, **kwargs)
    plan, my_warn = run(pot_sinkhorn, a, b, M, 0.25, **kwargs)
    assert plan.dtype == ref.dtype
    assert_allclose(plan, ref, rtol=1e-6 if ref.dtype == np.float32 else 1e-13)
    assert my_warn == ref_warn


def test_no_iteration_plan_overflow_warns_as_in_pot():
    # exp(-M / reg) beyond the largest double: numpy's overflow warning, which POT lets through.
    M = np.array([[-1000.0, 0.0], [0.0, -1000.0]])
    ref, ref_warn = run(pot, [], [], M, 0.5, numItermax=0)
    plan, my_warn = run(pot_sinkhorn, [], [], M, 0.5, numItermax=0)
    assert np.isposinf(ref[0, 0]) and np.isposinf(plan[0, 0]) and plan[0, 1] == ref[0, 1]
    assert (RuntimeWarning, "overflow encountered in exp") in ref_warn
    assert my_warn == ref_warn


def test_defaults_run_pots_iteration_budget_silently(capsys):
    # reg small enough that the default stopThr is not met in the default 1000 iterations: the
    # default budget shows in niter and the error count; the default verbose=False prints nothing.
    M = np.random.default_rng(12).uniform(0, 1, (9, 4))
    (ref, ref_log), ref_warn = run(pot, [], [], M, 0.0002, log=True)
    ref_out = capsys.readouterr().out
    (plan, info), my_warn = run(pot_sinkhorn, [], [], M, 0.0002, log=True)
    assert ref_log["niter"] == 999 and info["niter"] == 999 and len(info["err"]) == len(ref_log["err"]) == 100
    assert my_warn == ref_warn and UserWarning in [c for c, _ in my_warn]
    assert capsys.readouterr().out == ref_out == ""
    assert_allclose(plan, ref, rtol=1e-8, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_warmstart_of_another_dtype_runs_as_its_float64_values(dtype):
    M, a, b = problem(6, n=9, m=5)
    rng = np.random.default_rng(7)
    start = (rng.normal(size=9).astype(dtype), rng.normal(size=5).astype(dtype))
    plan, info = pot_sinkhorn(a, b, M, 0.05, numItermax=25, log=True, warn=False, warmstart=start)
    ref, ref_log = pot(a, b, M, 0.05, numItermax=25, log=True, warn=False,
                       warmstart=tuple(s.astype(np.float64) for s in start))
    assert_allclose(plan, ref, rtol=1e-10, atol=1e-300)
    assert_allclose(info["log_u"], ref_log["log_u"], rtol=1e-10, atol=1e-12)
