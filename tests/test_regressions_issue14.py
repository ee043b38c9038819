"""Every reproducer of issue 14 (an audit as a hostile user), as a regression test.

The interrupt reproducer is tests/test_interrupt.py; the POT drop-in reproducers (zero-mass bins,
stopThr=0, warn/verbose/warmstart, the stopping rule, niter, log_u/log_v, err as a list, errors
naming M, reg, a, b) are tests/test_compat_pot.py."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose

import thermossl
from thermossl import compat, demon, thermo


# ----------------------------------------------------------------------------- never lie
@pytest.mark.parametrize("n_iter", [1, 2, 3, None])
def test_float32_huge_range_is_not_nan(n_iter):
    # Was [[nan, nan]] (n_iter=1) and "E contains -inf ... (row -1)" (n_iter=3).
    E = np.array([[-3007702673.0, 1809854141.0]], np.float32)
    result = thermossl.sinkhorn(E, 1.0, n_iter=n_iter)
    assert_allclose(result.q, [[0.5, 0.5]], rtol=1e-6)
    assert result.err == 0.0 and np.all(np.isfinite(result.f)) and np.all(np.isfinite(result.mu))


def test_float32_random_inputs_at_e9_range_are_right():
    # Was: 5-62% of random float32 inputs with |E/T| of 3e8-3e9 gave NaN or a bogus error.
    rng = np.random.default_rng(5)
    for trial in range(200):
        n, k = rng.integers(1, 9, size=2)
        E = (rng.uniform(-1, 1, (n, k)) * 10 ** rng.uniform(8.5, 9.5)).astype(np.float32)
        kwargs = {"n_iter": int(rng.integers(1, 4))} if trial % 2 else {"tol": 1e-3}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = thermossl.sinkhorn(E, 1.0, **kwargs)
        q = result.q.astype(np.float64)
        assert np.all(np.isfinite(q))
        assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
        assert result.err == pytest.approx(np.abs(q.mean(axis=0) - 1.0 / k).sum(), abs=1e-5)


def test_float64_extreme_energy_never_reports_a_false_convergence():
    # Was: converged=True with q's charge error 26x to 1.7e6x tol (one energy at -1e10..-1e15).
    rng = np.random.default_rng(3)
    false_claims = converged = 0
    for _ in range(300):
        n, k = rng.integers(1, 12, size=2)
        E = rng.standard_normal((n, k))
        E[rng.integers(0, n), rng.integers(0, k)] = -(10.0 ** rng.uniform(10, 15))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                result = thermossl.sinkhorn(E, 1.0, tol=1e-6)
            except ValueError:
                continue
        true_err = np.abs(result.q.mean(axis=0) - 1.0 / k).sum()
        assert result.err == pytest.approx(true_err, abs=1e-12)
        converged += result.converged
        false_claims += result.converged and true_err > 1e-6
    assert false_claims == 0 and converged > 50


def test_not_converged_after_the_gauge_warns_with_the_reason():
    E = np.array([[-1e14, 0.3, 0.1], [0.2, -0.4, 0.5], [0.1, 0.7, -0.2], [0.0, 0.1, 0.9]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = thermossl.sinkhorn(E, 1.0, tol=1e-6)
    true_err = np.abs(result.q.mean(axis=0) - 1 / 3).sum()
    assert result.err == pytest.approx(true_err, abs=1e-12)
    assert result.converged == (true_err <= 1e-6)
    if not result.converged:
        assert any("charge error" in str(w.message) for w in caught)


def test_zero_weight_samples_and_zero_target_states_are_legal():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(6, 4))
    w = np.array([0.3, 0.0, 0.2, 0.0, 0.5, 0.0])
    c = np.array([0.5, 0.0, 0.5, 0.0])
    result = thermossl.sinkhorn(E, 0.5, w=w, c=c, tol=1e-10)
    assert result.converged and np.all(result.q[:, c == 0] == 0) and np.all(np.isneginf(result.mu[c == 0]))
    assert_allclose(w @ result.q, c, atol=1e-10)
    # A weightless sample is labelled by the GGE at the solved mu.
    mu = result.mu[c > 0]
    assert_allclose(result.q[1, c > 0], sp.softmax((mu - E[1, c > 0]) / 0.5), rtol=1e-12)
    assert thermo.loss(result.q, E, 1.0, w=w) >= 0


# ----------------------------------------------------------------------------- inputs
def test_inf_in_q_is_refused():
    E = np.array([[0.0, 1.0], [2.0, 0.5]])
    with pytest.raises(ValueError, match=r"^q contains NaN or inf"):
        thermossl.cross_entropy(np.array([[np.inf, 0.0], [0.3, 0.7]]), E, 1.0, grad=True)
    with pytest.raises(ValueError, match=r"^q "):
        thermo.loss(np.array([[np.inf, 0.0], [0.3, 0.7]]), E, 1.0)


def test_booleans_are_not_counts():
    E = np.zeros((2, 2))
    with pytest.raises(TypeError, match="n_iter"):
        thermossl.sinkhorn(E, 1.0, n_iter=True)
    with pytest.raises(TypeError, match="max_iter"):
        thermossl.sinkhorn(E, 1.0, max_iter=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(">f8"),
        lambda a: a.astype(">f4"),
        lambda a: a.astype(np.dtype("f8", metadata={"unit": "nats"})),
        lambda a: (lambda r: (r.__setitem__("x", a), r["x"])[1])(np.zeros(a.shape, [("x", "f8"), ("tag", "i1")])),
    ],
    ids=["big-endian-f8", "big-endian-f4", "metadata", "structured-field"],
)
def test_valid_arrays_are_accepted(make):
    E = np.array([[0.0, 1.0, 2.0], [1.5, -0.5, 0.25]])
    arr = make(E)
    rtol = 1e-6 if arr.dtype.itemsize == 4 else 1e-14
    assert_allclose(thermossl.log_partition(arr, 0.7), sp.logsumexp(-E / 0.7, axis=1), rtol=rtol)
    assert_allclose(thermossl.logsumexp(arr, axis=1), sp.logsumexp(E, axis=1), rtol=rtol)
    assert_allclose(thermossl.sinkhorn(arr, 1.0, n_iter=3).q, thermossl.sinkhorn(E.astype(arr.dtype.newbyteorder("=")), 1.0, n_iter=3).q)
    assert thermo.free_energy(arr, 1.0) == pytest.approx(thermo.free_energy(E, 1.0), rel=rtol)


def test_subnormal_T_gives_an_error_naming_T():
    # Was: "E contains NaN".
    with pytest.raises(ValueError, match=r"^T=5e-309 is too small"):
        thermossl.log_partition(np.zeros((1, 2)), 5e-309)
    assert np.isfinite(thermossl.log_partition(np.zeros((1, 2)), 1e-300)).all()


def test_float32_tiny_T_gives_an_error_not_nan_gradients():
    E = np.array([[0.0, 1.0], [2.0, 0.5]], np.float32)
    q = np.full((2, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"^T=1e-39 is too small for float32"):
        thermossl.cross_entropy(q, E, 1e-39, grad=True)
    with pytest.raises(ValueError, match=r"^T=1e-39 is too small for float32"):
        thermossl.entropy_grad(E, 1e-39)
    # float64 data at the same T is fine.
    loss, grad = thermossl.cross_entropy(q.astype(np.float64), E.astype(np.float64), 1e-39, grad=True)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(loss))


def test_float32_mu_does_not_degrade_a_float64_result():
    # Was 999.99994 (mu / T rounded in float32) instead of 1000.
    mu = np.array([100.0], np.float32)
    value = thermossl.log_partition(np.zeros((1, 1)), 0.1, mu=mu)[0]
    assert value == pytest.approx(100.0 / 0.1, rel=1e-15)
    assert thermo.ledger_rows(np.ones((1, 1)), np.zeros((1, 1)), 0.1, mu=mu)[0]["log_z"][0] == pytest.approx(1000.0, rel=1e-15)


def test_demon_feedback_errors_name_E_after():
    d = demon.Demon(1.0, thermossl.reservoirs.swav())
    E = np.random.default_rng(0).normal(size=(6, 3))
    d.measure(E)
    bad = E.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^E_after contains NaN"):
        d.feedback(bad)
    with pytest.raises(ValueError, match=r"^E_before contains NaN"):
        d.feedback(E, E_before=bad)


def test_empty_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"^E must have at least one sample"):
        thermo.free_energy(np.zeros((0, 3)), 1.0)
    with pytest.raises(ValueError, match=r"^M must have at least one row"):
        compat.pot_sinkhorn([], [], np.zeros((0, 0)), 1.0)
    from thermossl.ssl import train

    with pytest.raises(ValueError, match=r"^X must have at least one feature"):
        train(np.zeros((20, 0)), epochs=1)


def test_count_overflow_is_a_fast_clear_error():
    # Was: pybind11's overflow TypeError formatting every argument (uninitialised outputs
    # included), 4 ms per call.
    E = np.zeros((300, 300))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"^n_iter must be <= 2\*\*62"):
        thermossl.sinkhorn(E, 1.0, n_iter=10**30)
    assert time.perf_counter() - start < 0.05
    # A limit that large means "no limit": clamped, and the run converges long before it.
    assert thermossl.sinkhorn(E, 1.0, max_iter=10**30).converged
    plan = compat.pot_sinkhorn([], [], np.ones((2, 2)), 1.0, numItermax=10**30)
    assert_allclose(plan, 0.25)
