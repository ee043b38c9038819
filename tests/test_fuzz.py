"""Fuzz suite (issue 14): Hypothesis properties over every public function.

Each property draws arguments, valid or hostile (nan, inf, huge and tiny values, wrong shapes,
wrong types, bools for counts, zero weights, every dtype layout numpy offers), and asserts one of
two outcomes: the result equals an independent numpy/scipy reference (to the dtype's rounding),
or a ValueError/TypeError whose message names the offending argument. Never a crash, a hang, a
silent NaN or another exception type.

Bounded for CI: THERMOSSL_FUZZ_EXAMPLES examples per property (default 25); a long local run:
    THERMOSSL_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose

import thermossl
from thermossl import compat, demon, thermo

EXAMPLES = int(os.environ.get("THERMOSSL_FUZZ_EXAMPLES", "25"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

FLOATS = (np.float32, np.float64)


def rtol(dtype) -> float:
    return 2e-4 if np.dtype(dtype).itemsize == 4 else 1e-9


# ----------------------------------------------------------------------------- strategies
def tame_matrices(min_rows=1, min_cols=1, max_side=6, lo=-30.0, hi=30.0):
    """Finite energies of moderate range (reference comparisons), float32 or float64."""
    return st.sampled_from(FLOATS).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=min_rows, max_side=max_side).filter(
                lambda s: s[1] >= min_cols
            ),
            elements=st.floats(lo, hi, width=32),
        )
    )


HOSTILE_FLOATS = st.one_of(
    st.floats(-1e3, 1e3, width=32),
    st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 3e9, -3e9, 1e-300, 5e-324]),
)


def hostile_matrices(max_side=5):
    """Matrices that may hold nan, +-inf, huge and subnormal values, of any float dtype/layout."""
    base = st.sampled_from(FLOATS).flatmap(
        lambda dt: hnp.arrays(
            dt, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=max_side), elements=HOSTILE_FLOATS
        )
    )
    return st.tuples(base, st.sampled_from(["C", "F", "big-endian", "field", "metadata", "reversed"])).map(
        lambda t: relayout(*t)
    )


def relayout(a: np.ndarray, how: str) -> np.ndarray:
    """The same values in another valid numpy representation."""
    if how == "F":
        return np.asfortranarray(a)
    if how == "big-endian":
        return a.astype(a.dtype.newbyteorder(">"))
    if how == "field":  # a field of a structured array: odd strides
        rec = np.zeros(a.shape, dtype=[("x", a.dtype), ("pad", np.int8)])
        rec["x"] = a
        return rec["x"]
    if how == "metadata":
        return a.astype(np.dtype(a.dtype.str, metadata={"unit": "energy"}))
    if how == "reversed":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    return a


TEMPERATURES = st.floats(0.05, 20.0)
HOSTILE_TEMPERATURES = st.one_of(
    TEMPERATURES,
    st.sampled_from([0.0, -1.0, np.nan, np.inf, 5e-309, 1e-39, 1e300, True, "1", None, np.float32(0.5), 2]),
)


def row_stochastic(rng: np.random.Generator, shape, dtype):
    q = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    return q.astype(dtype)


def names_argument(exc: Exception, names) -> bool:
    message = str(exc)
    return any(re.search(rf"(^|\W){re.escape(name)}(\W|$)", message) for name in names)


def outcome(fn, names):
    """fn() or the exception it raised, which must be a ValueError/TypeError naming one of names."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn()
    except (ValueError, TypeError) as exc:
        assert names_argument(exc, names), f"{type(exc).__name__} does not name {names}: {exc}"
        return exc


# ----------------------------------------------------------------------------- references
def ref_log_partition(E, T, mu=None):
    x = -np.asarray(E, np.float64) / T
    if mu is not None:
        x = x + np.asarray(mu, np.float64) / T
    return sp.logsumexp(x, axis=1)


def ref_gibbs(E, T):
    return sp.softmax(-np.asarray(E, np.float64) / T, axis=1)


# ----------------------------------------------------------------------------- scipy-compatible
@fuzz
@given(hostile_matrices(), st.sampled_from([None, 0, 1, -1, (0, 1)]))
def test_logsumexp_softmax_log_softmax_follow_scipy(a, axis):
    a64 = np.asarray(a, np.float64)
    with np.errstate(all="ignore"):
        for mine, ref in (
            (thermossl.logsumexp(a, axis=axis), sp.logsumexp(a64, axis=axis)),
            (thermossl.softmax(a, axis=axis), sp.softmax(a64, axis=axis)),
            (thermossl.log_softmax(a, axis=axis), sp.log_softmax(a64, axis=axis)),
        ):
            ref = np.asarray(ref)
            mine = np.asarray(mine, np.float64)
            assert mine.shape == ref.shape
            same_class = (np.isnan(mine) == np.isnan(ref)) & (np.isinf(mine) == np.isinf(ref))
            assert same_class.all()
            finite = np.isfinite(ref)
            # float32 input: the reference from the float32 values in float64; a result that
            # overflows float32 where float64 does not is the dtype's limit, not an error.
            fits = finite & (np.abs(ref) < np.finfo(a.dtype).max / 2)
            assert_allclose(mine[fits], ref[fits], rtol=rtol(a.dtype), atol=rtol(a.dtype) * 1e-3)


@fuzz
@given(st.one_of(st.just("abc"), st.just([1 + 2j]), st.just(np.array(["x"])), st.just(object())))
def test_special_functions_refuse_non_numeric_input_naming_it(bad):
    for fn, name in ((thermossl.logsumexp, "a"), (thermossl.softmax, "x"), (thermossl.log_softmax, "x")):
        result = outcome(lambda: fn(bad), [name])
        assert isinstance(result, (ValueError, TypeError))


# ----------------------------------------------------------------------------- gibbs
@fuzz
@given(tame_matrices(), TEMPERATURES, st.booleans())
def test_gibbs_family_equals_scipy(E, T, with_mu):
    rng = np.random.default_rng(E.size)
    mu = rng.normal(size=E.shape[1]).astype(E.dtype) if with_mu else None
    r = rtol(E.dtype)
    assert_allclose(thermossl.log_partition(E, T, mu=mu), ref_log_partition(E, T, mu), rtol=r, atol=r)
    p = ref_gibbs(E, T)
    assert_allclose(thermossl.gibbs(E, T), p, rtol=r * 10, atol=r * 1e-3)
    assert_allclose(thermossl.column_log_partition(E, T), sp.logsumexp(-E.astype(np.float64) / T, axis=0), rtol=r, atol=r)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    assert_allclose(thermossl.gibbs_entropy(E, T), entropy, rtol=r * 10, atol=r * 10)
    q = row_stochastic(rng, E.shape, E.dtype)
    loss, grad = thermossl.cross_entropy(q, E, T, grad=True)
    log_p = sp.log_softmax(-E.astype(np.float64) / T, axis=1)  # not log(p): p may underflow
    ref_loss = -np.sum(q.astype(np.float64) * log_p, axis=1)
    assert_allclose(loss, ref_loss, rtol=r * 10, atol=r * 10)
    assert_allclose(grad, (q - p) / T, rtol=r * 10, atol=r * 10 / T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(p > 0, np.log(p), 0.0)
    ref_grad = p * (log_p + entropy[:, None]) / T
    assert_allclose(thermossl.entropy_grad(E, T), ref_grad, rtol=r * 100, atol=r * 100 / T)


@fuzz
@given(hostile_matrices(), HOSTILE_TEMPERATURES)
def test_gibbs_family_on_hostile_input(E, T):
    """Hostile E or T: the reference's answer, or an error naming E or T, never a silent NaN."""
    for fn in (thermossl.log_partition, thermossl.gibbs, thermossl.gibbs_entropy, thermossl.entropy_grad):
        result = outcome(lambda: fn(E, T), ["E", "T"])
        if isinstance(result, Exception):
            continue
        assert not np.isnan(result).any(), f"{fn.__name__} returned NaN without an error"
        if fn is thermossl.log_partition:
            with np.errstate(all="ignore"):
                ref = ref_log_partition(E, float(T))
            fits = np.isfinite(ref) & (np.abs(ref) < np.finfo(E.dtype).max / 2)
            assert_allclose(result[fits], ref[fits], rtol=rtol(E.dtype), atol=rtol(E.dtype))


@fuzz
@given(tame_matrices(), st.sampled_from([np.nan, np.inf, -1.0, 2.0]), st.integers(0, 100))
def test_cross_entropy_refuses_bad_labels_naming_q(E, bad, seed):
    rng = np.random.default_rng(seed)
    q = row_stochastic(rng, E.shape, np.float64)
    i, j = rng.integers(0, E.shape[0]), rng.integers(0, E.shape[1])
    q[i, j] = bad
    result = outcome(lambda: thermossl.cross_entropy(q, E, 1.0, grad=True), ["q"])
    if not isinstance(result, Exception):  # a finite q (even not a distribution) is legal here
        assert np.isfinite(bad)
        assert np.all(np.isfinite(result[1]))


# ----------------------------------------------------------------------------- sinkhorn
def ref_sinkhorn_fixed(E, T, w, c, n_iter):
    """THEORY.md §3's iteration in float64 numpy: constant-f start, mu-update then f-update."""
    E = np.asarray(E, np.float64)
    log_w, log_c = np.log(w), np.log(c)
    f = np.zeros(E.shape[0])
    for _ in range(n_iter):
        mu = T * (log_c - sp.logsumexp(log_w[:, None] + (f[:, None] - E) / T, axis=0))
        f = -T * sp.logsumexp((mu[None, :] - E) / T, axis=1)
    return np.exp((f[:, None] + mu[None, :] - E) / T)


@fuzz
@given(tame_matrices(lo=-3, hi=3), st.floats(0.1, 5.0), st.integers(1, 5), st.booleans())
def test_sinkhorn_fixed_iterations_equal_numpy(E, T, n_iter, weighted):
    rng = np.random.default_rng(E.size + n_iter)
    n, k = E.shape
    w = rng.dirichlet(np.ones(n)) if weighted else np.full(n, 1.0 / n)
    c = rng.dirichlet(np.ones(k)) if weighted else np.full(k, 1.0 / k)
    result = thermossl.sinkhorn(E, T, w=w if weighted else None, c=c if weighted else None, n_iter=n_iter)
    ref = ref_sinkhorn_fixed(E, T, w, c, n_iter)
    assert_allclose(result.q, ref, rtol=rtol(E.dtype) * 20, atol=rtol(E.dtype) * 1e-2)
    charges = w @ result.q.astype(np.float64)
    assert result.err == pytest.approx(np.abs(charges - c).sum(), abs=rtol(E.dtype) * 10)


@fuzz
@given(hostile_matrices(), HOSTILE_TEMPERATURES, st.sampled_from([None, 1, 3]), st.sampled_from([1e-3, 1e-6]))
def test_sinkhorn_never_lies(E, T, n_iter, tol):
    """Any E and T: an error naming E or T, or a row-stochastic q whose own charge error is the
    reported err, and converged exactly when that err meets tol."""
    # (a state forbidden in every row is infeasible against its target: that error names c[y])
    result = outcome(lambda: thermossl.sinkhorn(E, T, n_iter=n_iter, tol=tol, max_iter=300), ["E", "T", "c"])
    if isinstance(result, Exception):
        return
    q = result.q.astype(np.float64)
    assert np.all(np.isfinite(q)) and np.all(q >= 0)
    slack = 1e-4 if E.dtype.itemsize == 4 else 1e-10
    assert_allclose(q.sum(axis=1), 1.0, atol=slack * 10)
    true_err = np.abs(q.mean(axis=0) - 1.0 / E.shape[1]).sum()
    assert result.err == pytest.approx(true_err, abs=slack * E.shape[1] * 10)
    if n_iter is None:
        assert result.converged == (result.err <= tol)


@fuzz
@given(
    st.sampled_from(
        [
            ("n_iter", True), ("n_iter", 0), ("n_iter", 1.5), ("n_iter", "3"), ("max_iter", False),
            ("max_iter", 0), ("tol", 0.0), ("tol", np.nan), ("tol", "x"), ("w", [0.5, 0.6]),
            ("w", [np.inf, 0.0]), ("w", [-0.5, 1.5]), ("c", [1.0]), ("c", [np.nan, 1.0]),
            ("mu0", [np.nan, 0.0]), ("mu0", [0.0]), ("relaxation", 2.5), ("relaxation", "fast"),
            ("E", np.zeros((0, 2))), ("E", np.zeros(3)), ("E", [[1 + 1j, 0]]), ("T", 0.0), ("T", True),
        ]
    )
)
def test_sinkhorn_refuses_bad_arguments_naming_them(bad):
    name, value = bad
    args = {"E": np.array([[0.0, 1.0], [1.0, 0.0]]), "T": 0.5}
    args[name] = value
    E, T = args.pop("E"), args.pop("T")
    result = outcome(lambda: thermossl.sinkhorn(E, T, **args), [name])
    assert isinstance(result, Exception), f"{name}={value!r} accepted"


@fuzz
@given(tame_matrices(min_rows=2, min_cols=2, lo=-2, hi=2), st.integers(0, 1000))
def test_sinkhorn_zero_weights_and_targets_are_legal(E, seed):
    rng = np.random.default_rng(seed)
    n, k = E.shape
    w = rng.dirichlet(np.ones(n))
    c = rng.dirichlet(np.ones(k))
    w[rng.integers(0, n)] = 0.0
    c[rng.integers(0, k)] = 0.0
    w, c = w / w.sum(), c / c.sum()
    result = thermossl.sinkhorn(E, 1.0, w=w, c=c, tol=1e-5, max_iter=5000)
    q = result.q.astype(np.float64)
    assert np.all(q[:, c == 0] == 0) and np.all(np.isneginf(result.mu[c == 0]))
    assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
    if result.converged:
        assert np.abs(w @ q - c).sum() <= 1e-5 + 1e-6
    # The samples of positive weight alone give the same solution.
    alone = thermossl.sinkhorn(E[w > 0][:, c > 0], 1.0, w=w[w > 0], c=c[c > 0], tol=1e-5, max_iter=5000)
    assert_allclose(q[w > 0][:, c > 0], alone.q, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- thermo, demon
@fuzz
@given(tame_matrices(lo=-5, hi=5), TEMPERATURES, st.booleans())
def test_state_functions_equal_numpy(E, T, weighted):
    rng = np.random.default_rng(E.size)
    n, k = E.shape
    q = row_stochastic(rng, E.shape, E.dtype)
    w = rng.dirichlet(np.ones(n)) if weighted else np.full(n, 1.0 / n)
    wa = w if weighted else None
    E64, q64 = E.astype(np.float64), q.astype(np.float64)
    log_p = sp.log_softmax(-E64 / T, axis=1)
    log_z = ref_log_partition(E, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        qlogq = np.where(q64 > 0, q64 * np.log(q64), 0.0)
        S_q = -np.sum(w[:, None] * qlogq)
        D = np.sum(w[:, None] * np.where(q64 > 0, q64 * (np.log(q64) - log_p), 0.0))
        L = -np.sum(w[:, None] * q64 * log_p)
    N = w @ q64
    r = rtol(E.dtype) * 100
    scale = 1 + np.abs(E64).max()
    assert thermo.energy(q, E, wa) == pytest.approx(np.sum(w[:, None] * q64 * E64), rel=r, abs=r * scale)
    assert thermo.free_energy(E, T, wa) == pytest.approx(-T * w @ log_z, rel=r, abs=r * scale)
    assert thermo.entropy(q, wa) == pytest.approx(S_q, rel=r, abs=r)
    assert thermo.relative_entropy(q, E, T, wa) == pytest.approx(D, rel=r, abs=r * scale / T)
    assert thermo.loss(q, E, T, wa) == pytest.approx(L, rel=r, abs=r * scale / T)
    assert_allclose(thermo.charges(q, wa), N, rtol=r, atol=r)
    H_N = -np.sum(np.where(N > 0, N * np.log(np.where(N > 0, N, 1)), 0.0))
    assert thermo.information(q, wa) == pytest.approx(H_N - S_q, rel=r, abs=r)


@fuzz
@given(tame_matrices(lo=-5, hi=5), st.booleans())
def test_strokes_equal_numpy(E, weighted):
    rng = np.random.default_rng(E.size + 1)
    n = E.shape[0]
    E2 = E + rng.normal(size=E.shape).astype(E.dtype)
    q, q2 = row_stochastic(rng, E.shape, E.dtype), row_stochastic(rng, E.shape, E.dtype)
    w = rng.dirichlet(np.ones(n)) if weighted else np.full(n, 1.0 / n)
    wa = w if weighted else None
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    r = rtol(E.dtype) * 100
    scale = 1 + np.abs(f64(E)).max() + np.abs(f64(E2)).max()
    W = np.sum(w[:, None] * f64(q) * (f64(E2) - f64(E)))
    Q = np.sum(w[:, None] * f64(E2) * (f64(q2) - f64(q)))
    assert demon.adiabatic(q, E, E2, wa).W == pytest.approx(W, rel=r, abs=r * scale)
    assert demon.isochoric(E2, q, q2, wa).Q == pytest.approx(Q, rel=r, abs=r * scale)
    step = demon.step(E, q, E2, q2, wa)
    assert step.W == pytest.approx(W, rel=r, abs=r * scale) and step.Q == pytest.approx(Q, rel=r, abs=r * scale)


@fuzz
@given(hostile_matrices(), st.sampled_from(["q", "E", "w", "T"]))
def test_state_functions_on_hostile_input_name_the_argument(E, which):
    n, k = E.shape
    q = np.full((n, k), 1.0 / k)
    w, T = None, 1.0
    if which == "q":
        q, E = E, np.zeros((n, k))
    elif which == "w":
        w = np.asarray(E[:, 0], np.float64)
        E = np.zeros((n, k))
    elif which == "T":
        T = float(np.asarray(E).flat[0])
        E = np.zeros((n, k))
    for fn, args in (
        (thermo.loss, (q, E, T, w)),
        (thermo.relative_entropy, (q, E, T, w)),
        (thermo.free_energy, (E, T, w)),
        (thermo.entropy, (q, w)),
        (thermo.charges, (q, w)),
    ):
        result = outcome(lambda: fn(*args), [which])
        if not isinstance(result, Exception):
            assert not np.any(np.isnan(result)), f"{fn.__name__} returned NaN for hostile {which}"


def test_demon_feedback_errors_name_E_after():
    d = demon.Demon(1.0, thermossl.reservoirs.swav())
    E = np.random.default_rng(0).normal(size=(6, 3))
    d.measure(E)
    with pytest.raises(ValueError, match=r"^E_after contains NaN"):
        d.feedback(np.full_like(E, np.nan))


# ----------------------------------------------------------------------------- compat
@fuzz
@given(tame_matrices(lo=0, hi=2), st.floats(0.05, 2.0), st.integers(1, 60), st.sampled_from([0.0, 1e-9, 1e-3]))
def test_pot_sinkhorn_equals_pot(M, reg, numItermax, stopThr):
    ot = pytest.importorskip("ot")
    M = M.astype(np.float64)
    rng = np.random.default_rng(M.size + numItermax)
    a = rng.dirichlet(np.ones(M.shape[0]))
    b = rng.dirichlet(np.ones(M.shape[1]))
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref, ref_log = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=numItermax, stopThr=stopThr, log=True)
    with warnings.catch_warnings(record=True) as mine:
        warnings.simplefilter("always")
        plan, info = compat.pot_sinkhorn(a, b, M, reg, numItermax=numItermax, stopThr=stopThr, log=True)
    assert_allclose(plan, ref, rtol=1e-9, atol=1e-300)
    assert info["niter"] == ref_log["niter"] and len(info["err"]) == len(ref_log["err"])
    assert [str(w.message) for w in mine] == [str(w.message) for w in theirs]


@fuzz
@given(hostile_matrices(), HOSTILE_TEMPERATURES)
def test_pot_sinkhorn_hostile_input_names_M_or_reg(M, reg):
    result = outcome(lambda: compat.pot_sinkhorn([], [], M, reg, numItermax=20, warn=False), ["M", "reg"])
    if not isinstance(result, Exception):
        assert np.all(np.isfinite(result)) and np.all(result >= 0)


# ----------------------------------------------------------------------------- State, reservoirs, demon
@fuzz
@given(tame_matrices(lo=-5, hi=5), TEMPERATURES)
def test_state_equals_the_separate_functions_and_closes_G1_to_G4(E, T):
    rng = np.random.default_rng(E.size + 2)
    q = row_stochastic(rng, E.shape, E.dtype)
    s = thermo.State(E, T, q)
    r = rtol(E.dtype) * 100
    scale = 1 + float(np.abs(E.astype(np.float64)).max())
    assert s.U == pytest.approx(thermo.energy(q, E), rel=r, abs=r * scale)
    assert s.F == pytest.approx(thermo.free_energy(E, T), rel=r, abs=r * scale)
    assert s.S == pytest.approx(thermo.entropy(q), rel=r, abs=r)
    assert s.L == pytest.approx(thermo.loss(q, E, T), rel=r, abs=r * scale / T)
    assert s.F == pytest.approx(s.U_p - T * s.S_p, rel=r, abs=r * scale)  # G1
    assert s.L == pytest.approx(s.S + s.D, rel=r, abs=r * scale / T)  # G2
    assert s.F_T - s.F == pytest.approx(T * s.D, rel=r, abs=r * scale)  # G3
    assert s.D >= -r * scale / T


@fuzz
@given(tame_matrices(lo=-2, hi=2), st.floats(0.05, 2.0), st.integers(1, 4))
def test_sinkhorn_reservoir_is_sinkhorn(E, T, n_iter):
    state = thermossl.reservoirs.SinkhornReservoir(T, n_iter=n_iter, warm_start=False).assign(E)
    ref = ref_sinkhorn_fixed(E, T, np.full(E.shape[0], 1 / E.shape[0]), np.full(E.shape[1], 1 / E.shape[1]), n_iter)
    assert_allclose(state.q, ref, rtol=rtol(E.dtype) * 20, atol=rtol(E.dtype) * 1e-2)


@fuzz
@given(tame_matrices(lo=-5, hi=5), st.floats(0.02, 2.0), st.floats(0.0, 0.99))
def test_centering_reservoir_is_a_shifted_softmax(E, T, momentum):
    reservoir = thermossl.reservoirs.CenteringReservoir(T, momentum=momentum)
    first = reservoir.assign(E)
    assert_allclose(first.q, ref_gibbs(E, T), rtol=rtol(E.dtype) * 10, atol=rtol(E.dtype) * 1e-2)
    center = (1 - momentum) * -E.astype(np.float64).mean(axis=0)
    second = reservoir.assign(E)
    ref = sp.softmax((-E.astype(np.float64) - center) / T, axis=1)  # mu = -C
    assert_allclose(second.q, ref, rtol=rtol(E.dtype) * 10, atol=rtol(E.dtype) * 1e-2)


@fuzz
@given(st.sampled_from([True, "0.5", -0.1, 1.0, np.nan, None]))
def test_centering_momentum_refused_naming_it(momentum):
    result = outcome(lambda: thermossl.reservoirs.CenteringReservoir(0.1, momentum=momentum), ["momentum"])
    assert isinstance(result, Exception)


@fuzz
@given(tame_matrices(min_rows=2, min_cols=2, lo=-3, hi=3), st.floats(0.1, 2.0), st.integers(0, 1000))
def test_demon_cycle_books_close(E, T, seed):
    rng = np.random.default_rng(seed)
    d = demon.Demon(T, thermossl.reservoirs.swav())
    d.measure(E)
    row = d.feedback(E + rng.normal(scale=0.1, size=E.shape).astype(E.dtype))
    scale = 1 + float(np.abs(E.astype(np.float64)).max())
    tol_ = rtol(E.dtype) * 1e3 * scale / T
    for field in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4"):
        assert abs(row[field]) <= tol_, (field, row[field])
