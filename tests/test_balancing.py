"""Sinkhorn self-label balancing (THEORY.md §3): SwAV's published algorithm, POT, GGE identities,
convergence, warm starts, stability and bad input."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from helpers import EPS32, EPS64, LAYOUTS, backend, with_layout  # noqa: F401 (backend: a fixture)
from helpers import stand_in_device, warning_frames_as_without_mutmut  # noqa: F401 (a fixture)

ot = pytest.importorskip("ot", reason="POT is part of the test extra: pip install '.[test]'")

inf = np.inf


def swav_distributed_sinkhorn(scores, epsilon=0.05, iterations=3):
    """SwAV's published `distributed_sinkhorn` (Caron et al. 2020), single process, in numpy.

    Q = exp(scores / eps)^T (K x B), normalised to total mass 1; then per iteration the
    prototype rows are normalised to 1/K and the sample columns to 1/B; finally Q * B, transposed.
    """
    Q = np.exp(scores / epsilon).T
    B = Q.shape[1]
    K = Q.shape[0]
    Q /= np.sum(Q)
    for _ in range(iterations):
        Q /= np.sum(Q, axis=1, keepdims=True)
        Q /= K
        Q /= np.sum(Q, axis=0, keepdims=True)
        Q /= B
    Q *= B
    return Q.T


def cosine_scores(rng, n, k, d=16):
    x = rng.normal(size=(n, d))
    p = rng.normal(size=(k, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return x @ p.T


def random_simplex(rng, n, low=0.2):
    v = rng.uniform(low, 1.0, size=n)
    return v / v.sum()


def charges(q, w):
    return w @ np.asarray(q, np.float64)


def solve(backend, E, T, **kwargs):
    """thermossl.sinkhorn on `backend`'s copy of E; the result's arrays on the host."""
    res = thermossl.sinkhorn(backend(E), T, **kwargs)
    arrays = {f: None if getattr(res, f) is None else backend.host(getattr(res, f)) for f in ("q", "f", "mu", "charges")}
    return SimpleNamespace(**arrays, n_iter=res.n_iter, err=res.err, converged=res.converged)


# ----------------------------------------------------------------------------- SwAV
@pytest.mark.parametrize("n,k", [(256, 30), (1000, 300), (7, 3)])
def test_swav_codes_float64(backend, n, k):
    scores = cosine_scores(np.random.default_rng(n), n, k)
    ref = swav_distributed_sinkhorn(scores)
    result = solve(backend, -scores, 0.05, n_iter=3)
    assert result.n_iter == 3
    assert_allclose(result.q, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n,k", [(256, 30), (1000, 300), (4096, 3000)])
def test_swav_codes_float32(backend, n, k):
    scores = cosine_scores(np.random.default_rng(n + 1), n, k).astype(np.float32)
    ref = swav_distributed_sinkhorn(scores.astype(np.float64))
    result = solve(backend, -scores, 0.05, n_iter=3)
    assert result.q.dtype == np.float32
    q = result.q.astype(np.float64)
    row_max = ref.max(axis=1, keepdims=True)
    # 1e-6 relative on every code that carries weight (>= 1e-3 of its row's largest), and 1e-6
    # of the row's largest code everywhere. Codes far below that (exp(-40) at |E|/T' = 20) are
    # limited by float32 rounding of their exp argument, |t| 2^-24 ~ 2.4e-6 relative.
    carries_weight = ref >= 1e-3 * row_max
    assert np.max(np.abs(q - ref)[carries_weight] / ref[carries_weight]) <= 1e-6
    assert np.max(np.abs(q - ref) / row_max) <= 1e-6
    # ... which is closer than the published algorithm itself gets when run in float32.
    published_in_float32 = swav_distributed_sinkhorn(scores.copy())
    assert np.max(np.abs(q - ref) / row_max) < np.max(np.abs(published_in_float32 - ref) / row_max)


# ----------------------------------------------------------------------------- POT
@pytest.mark.parametrize("n_iter", [1, 3, 25])
def test_plan_equals_pot_sinkhorn_log_iteration_by_iteration(n_iter):
    rng = np.random.default_rng(n_iter)
    n, k = 120, 17
    M = rng.uniform(0, 1, size=(n, k))
    # POT starts from u = 0 where u = log a + f/reg: a constant f (THEORY.md's start) exactly
    # when a is uniform, so the iterates coincide for uniform a and any b. (Converged plans
    # coincide for any marginals: next test.)
    a, b = np.full(n, 1.0 / n), random_simplex(rng, k)
    reg = 0.07
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=n_iter, stopThr=0.0)
    result = thermossl.sinkhorn(M, reg, w=a, c=b, n_iter=n_iter)
    assert_allclose(a[:, None] * result.q, ref, rtol=1e-10, atol=1e-300)


def test_converged_plan_equals_pot_and_compat_wrapper():
    rng = np.random.default_rng(2)
    n, k = 200, 23
    M = rng.normal(size=(n, k))
    a, b = random_simplex(rng, n) * 3.0, random_simplex(rng, k) * 3.0  # POT allows any equal mass
    ref, ref_log = ot.sinkhorn(a, b, M, 0.2, method="sinkhorn_log", stopThr=1e-13, numItermax=100000, log=True)
    plan, info = thermossl.compat.pot_sinkhorn(a, b, M, 0.2, stopThr=1e-13, numItermax=100000, log=True)
    assert_allclose(plan, ref, rtol=1e-9, atol=1e-14)
    assert_allclose(plan.sum(axis=1), a, rtol=1e-12)
    assert_allclose(plan.sum(axis=0), b, atol=1e-12)
    rebuilt = np.exp(info["log_u"][:, None] - M / 0.2 + info["log_v"][None, :])
    assert_allclose(rebuilt, plan, rtol=1e-10)
    assert set(ref_log) <= set(info)
    assert_allclose(thermossl.compat.pot_sinkhorn([], [], M, 0.2, stopThr=1e-12), ot.sinkhorn([], [], M, 0.2, method="sinkhorn_log", stopThr=1e-12), rtol=1e-8, atol=1e-15)
    # Unequal masses: POT iterates anyway (and warns); so does the drop-in (tests/test_compat_pot.py).
    with pytest.warns(UserWarning, match="did not converge"):
        unequal = thermossl.compat.pot_sinkhorn(a, b * 2, M, 0.2, numItermax=50)
    with pytest.warns(UserWarning, match="did not converge"):
        assert_allclose(unequal, ot.sinkhorn(a, b * 2, M, 0.2, method="sinkhorn_log", numItermax=50), rtol=1e-9)
    with pytest.warns(UserWarning, match="did not converge"):
        thermossl.compat.pot_sinkhorn(a, b, M, 0.01, numItermax=2)


# ----------------------------------------------------------------------------- identities
def grand_potential(q, E, mu, T, w):
    """Phi_mu[q] = U[q] - sum_y mu_y N_y[q] - T S[q] (float64, 0 log 0 = 0, 0 * inf = 0)."""
    q = np.asarray(q, np.float64)
    U = w @ np.where(q > 0, q * np.where(q > 0, E, 0), 0).sum(axis=1)
    N = charges(q, w)
    S = -w @ np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0).sum(axis=1)
    return U - mu @ N - T * S


@pytest.mark.parametrize("n_iter", [None, 1, 3])
def test_identities_GGE1_and_GGE2(n_iter):
    rng = np.random.default_rng(10)
    n, k, T = 150, 12, 0.3
    E = rng.normal(size=(n, k))
    E[rng.random((n, k)) < 0.1] = inf
    E[np.arange(n), rng.integers(0, k, n)] = rng.normal(size=n)  # one allowed state per row
    w, c = random_simplex(rng, n), random_simplex(rng, k)
    res = thermossl.sinkhorn(E, T, w=w, c=c, n_iter=n_iter, tol=1e-12, max_iter=10000)
    q_star, f, mu = res.q, res.f, res.mu
    scale = np.abs(E[np.isfinite(E)]).max() + 1.0
    phi_star = grand_potential(q_star, E, mu, T, w)
    assert phi_star == pytest.approx(w @ f, abs=1e-12 * scale)  # (GGE1)
    for trial in range(5):  # (GGE2) for arbitrary row-stochastic q on the allowed states
        q = sp.softmax(rng.normal(size=(n, k)) * (trial + 1), axis=1)
        q[np.isinf(E)] = 0.0
        q /= q.sum(axis=1, keepdims=True)
        d = w @ np.where(q > 0, q * (np.log(np.where(q > 0, q, 1)) - np.log(np.where(q > 0, q_star, 1))), 0).sum(axis=1)
        assert grand_potential(q, E, mu, T, w) - phi_star == pytest.approx(T * d, abs=1e-12 * scale)
        assert d >= 0
    assert c @ mu == pytest.approx(0.0, abs=1e-12 * (np.abs(mu).max() + 1))  # the gauge


# ----------------------------------------------------------------------------- convergence
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_exact_and_converged_to_tolerance(backend, dtype, layout):
    rng = np.random.default_rng(3)
    n, k = 300, 40
    E = -cosine_scores(rng, n, k).astype(dtype)
    w, c = random_simplex(rng, n), random_simplex(rng, k)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    res = solve(backend, with_layout(E, layout), 1 / 25, w=w, c=c, tol=tol)
    assert res.converged and res.err <= tol
    eps = EPS32 if dtype == np.float32 else EPS64
    assert_allclose(res.q.sum(axis=1), 1.0, rtol=0, atol=4 * k * eps)
    assert np.abs(charges(res.q, w) - c).sum() <= tol * 1.01 + 8 * k * eps
    same = solve(backend, E, 1 / 25, w=w, c=c, tol=tol)  # layout does not change the answer
    assert_allclose(res.q, same.q, rtol=0, atol=4 * eps)
    fixed = solve(backend, with_layout(E, layout), 0.05, n_iter=4)
    assert_allclose(fixed.q.sum(axis=1), 1.0, rtol=0, atol=4 * k * eps)
    assert fixed.err == pytest.approx(np.abs(charges(fixed.q, np.full(n, 1 / n)) - 1 / k).sum(), rel=1e-3 if dtype == np.float32 else 1e-9)


def test_f_is_the_row_potential(backend):
    rng = np.random.default_rng(4)
    E = rng.normal(size=(50, 9))
    res = solve(backend, E, 0.5)
    assert_allclose(res.f, -0.5 * sp.logsumexp((res.mu - E) / 0.5, axis=1), rtol=1e-12)
    assert_allclose(res.q, np.exp((res.f[:, None] + res.mu[None, :] - E) / 0.5), rtol=1e-10)


def test_warm_start_needs_fewer_iterations(backend):
    rng = np.random.default_rng(5)
    n, k = 2000, 100
    E = -cosine_scores(rng, n, k)
    first = solve(backend, E, 1 / 25, tol=1e-8)
    E2 = E + 1e-3 * rng.normal(size=E.shape)  # the next step's slightly moved energies
    cold = solve(backend, E2, 1 / 25, tol=1e-8)
    warm = solve(backend, E2, 1 / 25, tol=1e-8, mu0=first.mu)
    assert warm.converged and cold.converged
    assert warm.n_iter < cold.n_iter
    assert_allclose(warm.q, cold.q, atol=1e-7)
    again = solve(backend, E2, 1 / 25, tol=1e-8, mu0=warm.mu)
    assert again.n_iter == 0 and again.converged  # a converged mu needs no iteration


def test_not_converged_warns_and_says_so():
    rng = np.random.default_rng(6)
    E = -cosine_scores(rng, 500, 50)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = thermossl.sinkhorn(E, 1e-3, tol=1e-12, max_iter=3)
    assert not res.converged and res.n_iter == 3 and res.err > 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = thermossl.sinkhorn(E, 0.05, n_iter=3)  # a fixed count is a choice, not a failure
    assert fixed.converged == (fixed.err <= 1e-6)


# ----------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [1e-3, 1e-2])
def test_cold_reservoir_and_large_energies_stay_finite(dtype, T):
    rng = np.random.default_rng(7)
    E = (rng.uniform(-1, 1, size=(200, 30)) * 1e3).astype(dtype)
    E[rng.random(E.shape) < 0.05] = inf
    E[np.arange(200), rng.integers(0, 30, 200)] = rng.uniform(-1e3, 1e3, 200)
    res = thermossl.sinkhorn(E, T, n_iter=50)
    assert np.all(np.isfinite(res.q)) and np.all(np.isfinite(res.mu)) and np.all(np.isfinite(res.f))
    assert_array_equal(res.q[np.isinf(E)], 0.0)
    assert_allclose(res.q.sum(axis=1), 1.0, atol=1e-5 if dtype == np.float32 else 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res_tol = thermossl.sinkhorn(E, T, tol=1e-3 if dtype == np.float32 else 1e-8, max_iter=20000)
    assert np.all(np.isfinite(res_tol.q)) and np.all(np.isfinite(res_tol.mu))


def test_underflowing_charge_takes_the_exact_update():
    # Column 0 costs 50 more than the rest for every sample: at T' = 1e-3 its charge is
    # exp(-5e4), zero in double, yet the balanced state gives it its share.
    rng = np.random.default_rng(8)
    E = rng.uniform(0, 1, size=(400, 8))
    E[:, 0] += 50.0
    res = thermossl.sinkhorn(E, 1e-3, tol=1e-9, max_iter=5000)
    assert res.converged
    assert_allclose(charges(res.q, np.full(400, 1 / 400)), 1 / 8, atol=1e-9)


def test_forbidden_states_get_zero_labels(backend):
    rng = np.random.default_rng(9)
    E = rng.normal(size=(60, 6))
    E[:30, 0] = inf
    E[30:, 1] = inf
    res = solve(backend, E, 0.1, tol=1e-10)
    assert_array_equal(res.q[:30, 0], 0.0)
    assert_array_equal(res.q[30:, 1], 0.0)
    assert res.converged


# ----------------------------------------------------------------------------- bad input
E_OK = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, 0.2]])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"E": np.array([[inf, inf, inf], [0.0, 1.0, 2.0]])}, ValueError, r"every state of row 0 is forbidden"),
        ({"E": np.array([[inf, 0.0, 1.0], [inf, 2.0, 3.0]])}, ValueError, r"infeasible: state 0"),
        ({"E": np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])}, ValueError, r"E contains NaN \(row 0\)"),
        ({"E": np.array([[0.0, 1.0, 1.0], [0.0, -inf, 2.0]])}, ValueError, r"E contains -inf"),
        ({"E": np.zeros(3)}, ValueError, r"E must be a 2-D"),
        ({"E": np.zeros((0, 3))}, ValueError, r"E must have at least one sample"),
        ({"E": np.array([["a", "b"]])}, TypeError, r"^E "),
        ({"T": 0.0}, ValueError, r"^T must be finite and > 0"),
        ({"T": -1.0}, ValueError, r"^T must be finite and > 0"),
        ({"T": np.nan}, ValueError, r"^T must be finite and > 0"),
        ({"w": np.array([0.5, 0.6])}, ValueError, r"w must sum to 1"),
        ({"w": np.array([1.5, -0.5])}, ValueError, r"w must be >= 0"),
        ({"w": np.array([np.inf, 0.0])}, ValueError, r"w must be finite"),
        ({"w": np.array([0.5, 0.25, 0.25])}, ValueError, r"w must have shape \(2,\)"),
        ({"c": np.array([0.5, 0.5])}, ValueError, r"c must have shape \(3,\)"),
        ({"c": np.array([1.5, -0.5, 0.0])}, ValueError, r"c must be >= 0"),
        ({"c": np.array([0.5, 0.5, 0.5])}, ValueError, r"c must sum to 1"),
        ({"c": np.array([0.5, np.nan, 0.5])}, ValueError, r"c must be finite"),
        ({"mu0": np.zeros(2)}, ValueError, r"mu0 must have shape \(3,\)"),
        ({"mu0": np.array([0.0, inf, 0.0])}, ValueError, r"mu0 must be finite"),
        ({"n_iter": 0}, ValueError, r"n_iter must be >= 1"),
        ({"n_iter": 2.5}, TypeError, r"n_iter must be an int"),
        ({"max_iter": 0}, ValueError, r"max_iter must be >= 1"),
        ({"tol": 0.0}, ValueError, r"tol must be finite and > 0"),
        ({"tol": "x"}, TypeError, r"tol must be a real number"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, match):
    args = {"E": E_OK, "T": 0.1}
    args.update(kwargs)
    E, T = args.pop("E"), args.pop("T")
    with pytest.raises(error, match=match):
        thermossl.sinkhorn(E, T, **args)


def test_inputs_are_not_modified_and_result_is_frozen():
    rng = np.random.default_rng(11)
    E = rng.normal(size=(40, 5))
    w, c, mu0 = random_simplex(rng, 40), random_simplex(rng, 5), rng.normal(size=5)
    copies = [x.copy() for x in (E, w, c, mu0)]
    for x in (E, w, c, mu0):
        x.flags.writeable = False
    res = thermossl.sinkhorn(E, 0.2, w=w, c=c, mu0=mu0, return_q=False)
    assert res.q is None
    for x, copy in zip((E, w, c, mu0), copies):
        assert_array_equal(x, copy)
    with pytest.raises(AttributeError):
        res.n_iter = 5


# ----------------------------------------------------------------------------- over-relaxation
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_over_relaxation_reaches_the_same_labels_in_fewer_iterations(dtype):
    rng = np.random.default_rng(21)
    E = rng.normal(size=(2000, 50)).astype(dtype)  # T' = 0.02: a slowly converging problem
    tol = 1e-9 if dtype == np.float64 else 1e-5
    plain = thermossl.sinkhorn(E, 0.02, tol=tol, max_iter=100000)
    auto = thermossl.sinkhorn(E, 0.02, tol=tol, max_iter=100000, relaxation="auto")
    fixed = thermossl.sinkhorn(E, 0.02, tol=tol, max_iter=100000, relaxation=1.5)
    assert plain.converged and auto.converged and fixed.converged
    assert auto.n_iter < 0.7 * plain.n_iter and fixed.n_iter < plain.n_iter
    # One solution (the GGE is unique): the labels agree to the accuracy the tolerance allows.
    atol = 1e-7 if dtype == np.float64 else 5e-4
    assert_allclose(auto.q, plain.q, atol=atol)
    assert_allclose(fixed.q, plain.q, atol=atol)
    assert_allclose(auto.q.sum(axis=1), 1.0, rtol=10 * np.finfo(dtype).eps * 50)
    assert abs(float(auto.mu @ np.full(50, 1 / 50))) < 1e-6  # the gauge holds


def test_over_relaxation_arguments():
    E = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="relaxation must be in"):
        thermossl.sinkhorn(E, 0.1, relaxation=2.0)
    with pytest.raises(ValueError, match="relaxation must be in"):
        thermossl.sinkhorn(E, 0.1, relaxation=0.0)
    with pytest.raises(ValueError, match="'auto'"):
        thermossl.sinkhorn(E, 0.1, relaxation="fast")
    with pytest.raises(ValueError, match="tolerance mode"):
        thermossl.sinkhorn(E, 0.1, n_iter=3, relaxation="auto")
    with pytest.raises(TypeError, match="relaxation"):
        thermossl.sinkhorn(E, 0.1, relaxation=True)
    # A fixed omega in fixed-iteration mode is the relaxed iteration, done exactly n_iter times.
    res = thermossl.sinkhorn(E, 0.1, n_iter=4, relaxation=1.3)
    assert res.n_iter == 4
    assert_allclose(res.q.sum(axis=1), 1.0, rtol=1e-14)


# ----------------------------------------------------------------------------- float32 lanes
@pytest.mark.parametrize("T", [1e-3, 0.05, 1.0, 1e3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("forbidden", [False, True])
def test_float32_lanes_agree_with_float64(T, weighted, forbidden):
    # float32 runs the fused pass (and, for uniform w, the cold column pass) in float lanes;
    # float64 in double lanes. Same energies (float32-representable), same iterations.
    rng = np.random.default_rng(11)
    n, k = 300, 40
    E = (-cosine_scores(rng, n, k) + rng.uniform(-3, 3, size=k)).astype(np.float32)  # shifted columns: mu spreads
    if forbidden:
        E[rng.random(E.shape) < 0.1] = inf
        E[np.arange(n), rng.integers(0, k, n)] = 0.5
    w = random_simplex(rng, n) if weighted else None
    r32 = thermossl.sinkhorn(E, T, w=w, n_iter=5)
    r64 = thermossl.sinkhorn(E.astype(np.float64), T, w=w, n_iter=5)
    q32, q64 = r32.q.astype(np.float64), r64.q
    assert np.all(np.isfinite(q32))
    if forbidden:
        assert_array_equal(r32.q[np.isinf(E)], 0.0)
    row_max = q64.max(axis=1, keepdims=True)
    # float32 rounding of |x - max| (up to 87) and of the charges, amplified by the
    # mu-updates at a cold reservoir
    assert np.max(np.abs(q32 - q64) / row_max) <= (1e-4 if T < 0.01 else 2e-5)
    assert_allclose(r32.q.sum(axis=1), 1.0, atol=1e-5)
    assert_allclose(r32.charges, r64.charges, rtol=1e-4, atol=1e-7)
    # warm start at the float64 potentials: iteration 0 is a fused pass in float lanes
    warm = thermossl.sinkhorn(E, T, w=w, mu0=r64.mu.astype(np.float32), n_iter=1)
    assert np.all(np.isfinite(warm.q))


def test_float32_lanes_report_bad_rows():
    E = np.zeros((64, 600), dtype=np.float32)
    E[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        thermossl.sinkhorn(E, 0.05, n_iter=3)
    E[7, 3] = 0.0
    E[9, :] = inf
    with pytest.raises(ValueError, match="every state of row 9"):
        thermossl.sinkhorn(E, 0.05, n_iter=3)
    E[9, :] = 0.0
    E[:, 5] = inf
    with pytest.raises(ValueError, match="infeasible: state 5"):
        thermossl.sinkhorn(E, 0.05, n_iter=3)


@pytest.mark.parametrize("offset", [0.0, 0.5, 3.0])
def test_float32_scaled_form_equals_log_domain(offset):
    # Fixed iterations with q take the scaled form (K = exp(x - row max) once, then no exp);
    # without q, the log-domain passes. Column offsets spread mu: 0.5/T' = 10 stays in the
    # scaled form, 3/T' = 60 exceeds its guard and falls back mid-run. Same state either way.
    rng = np.random.default_rng(12)
    E = (-cosine_scores(rng, 700, 90) + rng.uniform(-offset, offset, size=90)).astype(np.float32)
    E[rng.random(E.shape) < 0.05] = inf
    with_q = thermossl.sinkhorn(E, 0.05, n_iter=3)
    without_q = thermossl.sinkhorn(E, 0.05, n_iter=3, return_q=False)
    assert_allclose(with_q.f, without_q.f, rtol=1e-6, atol=1e-6)
    assert_allclose(with_q.mu, without_q.mu, rtol=0, atol=1e-6)
    assert_allclose(with_q.charges, without_q.charges, rtol=1e-5)
    assert with_q.err == pytest.approx(without_q.err, rel=1e-3, abs=1e-7)
    assert_array_equal(with_q.q[np.isinf(E)], 0.0)
    assert_allclose(with_q.q.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("row_offset", [1.0, 3.0, 6.0])
def test_float32_scaled_form_with_spread_rows_equals_log_domain(row_offset):
    # Rows shifted apart: the row maxima m_i = -min_y E_iy / T' spread over ~2 row_offset / T'
    # (40, 120, 240 at T' = 0.05). The scaled form's cold start adds rows more than 40 below the
    # running max in double; beyond a spread of 200 it falls back to the log-domain passes.
    # Same state either way, and the same as float64.
    rng = np.random.default_rng(13)
    n, k = 300, 10
    E = (-cosine_scores(rng, n, k) + rng.uniform(-row_offset, row_offset, size=(n, 1))).astype(np.float32)
    with_q = thermossl.sinkhorn(E, 0.05, n_iter=3)
    without_q = thermossl.sinkhorn(E, 0.05, n_iter=3, return_q=False)
    r64 = thermossl.sinkhorn(E.astype(np.float64), 0.05, n_iter=3)
    assert_allclose(with_q.f, without_q.f, rtol=1e-6, atol=1e-6)
    assert_allclose(with_q.mu, without_q.mu, rtol=0, atol=1e-6)
    assert_allclose(with_q.charges, without_q.charges, rtol=1e-5)
    assert_allclose(with_q.charges, r64.charges, rtol=1e-5)
    assert np.max(np.abs(with_q.q - r64.q)) <= 2e-5
    assert_allclose(with_q.q.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("n_iter", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_float32_cold_start_with_skewed_columns_matches_float64(n_iter, weighted):
    # Wide normal energies at T' = 0.05: row maxima ~90 units apart and columns whose sums fall
    # e^100 apart, so K = exp(x - row max) underflows in float for terms that dominate some
    # column. The scaled form's cold start must not keep that mu (it redoes the column pass).
    rng = np.random.default_rng(1)
    for _ in range(12):
        n, k = int(rng.integers(5, 60)), int(rng.integers(2, 300))
        E = (rng.standard_normal((n, k)) * rng.uniform(0.5, 3)).astype(np.float32)
        w = rng.uniform(0.5, 1.5, n)
        w /= w.sum()
        a = thermossl.sinkhorn(E, 0.05, w=w if weighted else None, n_iter=n_iter)
        b = thermossl.sinkhorn(E.astype(np.float64), 0.05, w=w if weighted else None, n_iter=n_iter)
        assert np.max(np.abs(a.q - b.q)) <= 1e-4


def test_bad_rows_and_states_are_named(backend):
    rng = np.random.default_rng(11)
    E = rng.normal(size=(20, 5))
    E[:, 3] = inf
    with pytest.raises(ValueError, match="infeasible: state 3"):
        thermossl.sinkhorn(backend(E), 0.1, n_iter=3)
    E = rng.normal(size=(20, 5))
    E[7, :] = inf
    with pytest.raises(ValueError, match="every state of row 7 is forbidden"):
        thermossl.sinkhorn(backend(E), 0.1, n_iter=3)
    E = rng.normal(size=(20, 5))
    E[9, 2] = np.nan
    with pytest.raises(ValueError, match=r"E contains NaN \(row 9\)"):
        thermossl.sinkhorn(backend(E), 0.1, tol=1e-6)


# ----------------------------------------------------------------------------- device routing
# sinkhorn's device branch (a CUDA device array for E) run on the CPU: torch CPU tensors stand in
# for device arrays and tests/test_backends.py's stand-in `_cuda` runs the kernels with the CPU
# core, so a device result must equal the numpy result bitwise (mutation testing reaches these
# lines only this way on a machine without a GPU).
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", [{"n_iter": 4}, {"tol": 1e-5, "max_iter": 500}])
def test_device_sinkhorn_with_device_w_c_mu0_gives_the_cpu_result(stand_in_device, dtype, mode):
    torch = stand_in_device
    rng = np.random.default_rng(31)
    E = (-cosine_scores(rng, 60, 6)).astype(dtype)
    w, c = random_simplex(rng, 60), random_simplex(rng, 6)
    mu0 = rng.normal(scale=0.05, size=6)
    ref = thermossl.sinkhorn(E, 0.1, w=w, c=c, mu0=mu0, **mode)
    assert ref.n_iter > 0
    for as_device in (False, True):  # w, c, mu0 as host arrays and as device arrays
        wrap = torch.from_numpy if as_device else (lambda x: x)
        res = thermossl.sinkhorn(torch.from_numpy(E), 0.1, w=wrap(w), c=wrap(c), mu0=wrap(mu0), **mode)
        for field in ("q", "f", "mu"):
            value = getattr(res, field)
            assert isinstance(value, torch.Tensor) and value.dtype == torch.from_numpy(E).dtype, field
            assert_array_equal(value.numpy(), getattr(ref, field))
        assert res.charges.dtype == torch.float64
        assert_array_equal(res.charges.numpy(), ref.charges)
        assert (res.n_iter, res.err, res.converged) == (ref.n_iter, ref.err, ref.converged)
        assert_allclose(res.charges.numpy(), c, atol=2e-5 if "tol" in mode else 0.2)
    # (compared with the CPU's return_q=False run: in float32 that one's mu may differ from the
    # return_q=True run's in the last bit)
    no_q = thermossl.sinkhorn(torch.from_numpy(E), 0.1, w=w, c=c, mu0=mu0, return_q=False, **mode)
    ref_no_q = thermossl.sinkhorn(E, 0.1, w=w, c=c, mu0=mu0, return_q=False, **mode)
    assert no_q.q is None and ref_no_q.q is None
    assert_array_equal(no_q.mu.numpy(), ref_no_q.mu)
    assert_array_equal(no_q.f.numpy(), ref_no_q.f)


def test_device_sinkhorn_rejects_zero_weights_and_empty_states(stand_in_device):
    # The device solver takes no zero weights or empty states (the CPU one does): a clear error.
    torch = stand_in_device
    rng = np.random.default_rng(32)
    E = -cosine_scores(rng, 20, 4)
    w = np.full(20, 1 / 19)
    w[5] = 0.0
    c = np.array([0.5, 0.0, 0.25, 0.25])
    for kwargs, name in (({"w": w}, "w"), ({"c": c}, "c"), ({"w": torch.from_numpy(w)}, "w")):
        assert thermossl.sinkhorn(E, 0.1, n_iter=3, **{k: np.asarray(v) for k, v in kwargs.items()}).q is not None
        with pytest.raises(ValueError, match=f"^{name} must be finite and > 0"):
            thermossl.sinkhorn(torch.from_numpy(E), 0.1, n_iter=3, **kwargs)


def test_device_sinkhorn_not_converged_warns_at_the_callers_line(stand_in_device):
    torch = stand_in_device
    E = -cosine_scores(np.random.default_rng(6), 200, 20)
    for energies in (E, torch.from_numpy(E)):
        with pytest.warns(RuntimeWarning, match="did not converge") as record, warning_frames_as_without_mutmut():
            res = thermossl.sinkhorn(energies, 1e-3, tol=1e-12, max_iter=3)
        assert not res.converged and res.n_iter == 3
        assert [r.filename for r in record] == [__file__]


# ----------------------------------------------------------------------------- empty states
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", [{"n_iter": 3}, {"tol": 1e-5}])
def test_empty_states_are_the_reduced_problem_with_minus_inf_potentials(dtype, mode):
    # States with target c_y = 0 are solved as the problem without them (warm start included),
    # then filled in: mu_y = -inf, q_iy = 0, N_y = 0, in the kernel dtype.
    rng = np.random.default_rng(33)
    E = (-cosine_scores(rng, 50, 6)).astype(dtype)
    c = np.array([0.3, 0.0, 0.2, 0.25, 0.0, 0.25])
    solved = np.flatnonzero(c > 0)
    mu0 = np.array([0.05, -np.inf, -0.02, 0.01, 7.0, 0.0])  # -inf and any value where c_y = 0
    res = thermossl.sinkhorn(E, 0.1, c=c, mu0=mu0, **mode)
    ref = thermossl.sinkhorn(np.ascontiguousarray(E[:, solved]), 0.1, c=c[solved], mu0=mu0[solved], **mode)
    cold = thermossl.sinkhorn(np.ascontiguousarray(E[:, solved]), 0.1, c=c[solved], **mode)
    assert not np.array_equal(ref.mu, cold.mu)  # the warm start matters on these data
    assert res.mu.dtype == dtype and res.q.dtype == dtype and res.charges.dtype == np.float64
    assert res.mu.shape == (6,) and res.q.shape == (50, 6)
    assert_array_equal(res.mu[[1, 4]], [-np.inf, -np.inf])
    assert_array_equal(res.mu[solved], ref.mu)
    assert_array_equal(res.q[:, [1, 4]], 0.0)
    assert_array_equal(res.q[:, solved], ref.q)
    assert_array_equal(res.charges, np.insert(ref.charges, [1, 3], 0.0))
    assert_array_equal(res.f, ref.f)
    assert (res.n_iter, res.err, res.converged) == (ref.n_iter, ref.err, ref.converged)
    no_q = thermossl.sinkhorn(E, 0.1, c=c, mu0=mu0, return_q=False, **mode)
    assert no_q.q is None and no_q.mu.dtype == dtype


def test_empty_states_errors_name_the_original_state():
    E = np.random.default_rng(34).normal(size=(6, 4))
    E[:, 3] = np.inf  # state 3 forbidden everywhere; the solver sees it as its state 2
    with pytest.raises(ValueError, match=r"^infeasible: state 3 is forbidden .* c\[3\] > 0$"):
        thermossl.sinkhorn(E, 0.1, c=[0.5, 0.0, 0.25, 0.25], n_iter=3)


def test_warm_start_validation_with_and_without_empty_states():
    E = np.random.default_rng(35).normal(size=(8, 4))
    c_empty = np.array([0.5, 0.0, 0.25, 0.25])
    ok = thermossl.sinkhorn(E, 0.5, c=c_empty, mu0=[0.0, -np.inf, 0.1, -0.1], n_iter=2)
    assert ok.mu[1] == -np.inf and np.all(np.isfinite(ok.mu[[0, 2, 3]]))
    plain = "mu0 must be finite"
    empty = "mu0 must be finite (except, as -inf, on states with target charge c_y = 0)"
    cases = [
        ({"mu0": [0.0, np.inf, 0.1, -0.1]}, plain),  # c = None: every state used
        ({"mu0": [0.0, np.nan, 0.1, -0.1]}, plain),
        ({"mu0": [0.0, -np.inf, 0.1, -0.1], "c": [0.25] * 4}, plain),
        ({"mu0": [-np.inf, -np.inf, 0.1, -0.1], "c": c_empty}, empty),  # -inf on a used state
        ({"mu0": [0.0, np.nan, 0.1, -0.1], "c": c_empty}, empty),  # NaN even on an empty state
        ({"mu0": [0.0, 0.0, np.inf, 0.0], "c": c_empty}, empty),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as info:
            thermossl.sinkhorn(E, 0.5, n_iter=2, **kwargs)
        assert str(info.value) == message, kwargs
