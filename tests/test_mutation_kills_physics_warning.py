"""The not-converged warning of Sinkhorn's tolerance mode, to the letter (issue 20, mutation testing):
its gauge-rounding form (the solver met ``tol`` but the gauge shift rounds the potentials beyond it),
reached by an input whose potentials are ~1e12 T, and where every form points: at the user's line,
for ``sinkhorn``, ``SinkhornReservoir.assign`` and ``Demon.measure`` alike."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import thermossl
from thermossl import demon, reservoirs
from helpers import warning_frames_as_without_mutmut

GAUGE_TEXT = ("sinkhorn: charge error {err:.3e} > tol={tol:g} in the returned state after {iterations} iterations: "
              "at |mu|/T up to {scale:.3g} the gauge sum_y c_y mu_y = 0 rounds the potentials beyond the "
              "tolerance in {dtype}")
LIMIT_TEXT = "sinkhorn did not converge in max_iter={limit} iterations: charge error {err:.3e} > tol={tol:g}"


def far_apart_states(scale: float, dtype) -> np.ndarray:
    """Energies whose third state lies ``scale`` above the others: the balanced potentials are
    ~scale apart, so at |mu|/T ~ 1e12 the double-precision gauge shift rounds mu by ~1e-4 T."""
    E = np.array([[0.5, 0.0, 2.0], [-0.25, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    E[:, 2] *= scale
    return E.astype(dtype)


def recorded(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught, warning_frames_as_without_mutmut():
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, caught


def true_charge_error(q, c=None) -> float:
    """sum_y |N_y - c_y| of the returned labels, in numpy (uniform weights)."""
    q = np.asarray(q, dtype=np.float64)
    c = np.full(q.shape[1], 1 / q.shape[1]) if c is None else c
    return float(np.abs(q.mean(axis=0) - c).sum())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T", [1.0, 0.5])
def test_gauge_rounding_warning_names_the_error_iterations_scale_and_dtype(dtype, T):
    E = far_apart_states(1e12, dtype)
    result, caught = recorded(thermossl.sinkhorn, E, T, tol=1e-6, max_iter=1000)
    # The state given back misses tol although the loop stopped early: the gauge form, not max_iter's.
    assert not result.converged and 0 < result.n_iter < 1000
    err = true_charge_error(result.q)
    assert err > 1e-6 and result.err == pytest.approx(err, rel=1e-3 if dtype == np.float32 else 1e-9)
    assert result.mu.dtype == dtype and result.q.dtype == dtype
    scale = float(np.abs(result.mu.astype(np.float64)).max()) / T
    assert scale > 1e12
    expected = GAUGE_TEXT.format(err=result.err, tol=1e-6, iterations=result.n_iter, scale=scale,
                                 dtype=np.dtype(dtype).name)
    assert [(w.category, str(w.message), w.filename) for w in caught] == [(RuntimeWarning, expected, __file__)]


def test_gauge_rounding_with_an_empty_state_reports_the_finite_potentials_only():
    # An empty state (c_y = 0) has mu_y = -inf in the result: the scale is that of the finite ones.
    E = np.hstack([far_apart_states(1e12, np.float64), np.zeros((4, 1))])
    c = np.array([1 / 3, 1 / 3, 1 / 3, 0.0])
    result, caught = recorded(thermossl.sinkhorn, E, 1.0, c=c, tol=1e-6)
    assert np.isneginf(result.mu[3]) and np.all(result.q[:, 3] == 0)
    assert not result.converged and 0 < result.n_iter < 1000
    assert result.err == pytest.approx(true_charge_error(result.q, c), rel=1e-9)
    scale = float(np.abs(result.mu[:3]).max())
    expected = GAUGE_TEXT.format(err=result.err, tol=1e-6, iterations=result.n_iter, scale=scale, dtype="float64")
    assert [str(w.message) for w in caught] == [expected]


def test_iteration_limit_warning_is_not_the_gauge_form():
    E = far_apart_states(1e12, np.float64)
    result, caught = recorded(thermossl.sinkhorn, E, 1.0, tol=1e-6, max_iter=3)
    assert result.n_iter == 3 and not result.converged
    assert [str(w.message) for w in caught] == [LIMIT_TEXT.format(limit=3, err=result.err, tol=1e-6)]


# ------------------------------------------------------------------- where the warning points
def reservoir_warning(call, E, **reservoir_options):
    """(label state, [(message, filename, line)]) of one reservoir call made by ``call``."""
    reservoir = reservoirs.SinkhornReservoir(**reservoir_options)
    with warnings.catch_warnings(record=True) as caught, warning_frames_as_without_mutmut():
        warnings.simplefilter("always")
        label, line = call(reservoir, E)
    return label, [(str(w.message), w.filename, w.lineno) for w in caught], line


def by_assign(reservoir, E):
    import inspect
    line = inspect.currentframe().f_lineno + 1
    return reservoir.assign(E), line


def by_demon(reservoir, E):
    import inspect
    d = demon.Demon(1.0, reservoir)
    line = inspect.currentframe().f_lineno + 1
    return d.measure(E), line


@pytest.mark.parametrize("call", [by_assign, by_demon])
def test_reservoir_warnings_point_at_the_users_line(call):
    E = far_apart_states(1e12, np.float64)
    # max_iter hit
    label, caught, line = reservoir_warning(call, E, T=1.0, tol=1e-6, max_iter=2)
    assert not label.converged and label.n_iter == 2
    assert caught == [(LIMIT_TEXT.format(limit=2, err=label.charge_err, tol=1e-6), __file__, line)]
    # the gauge form
    label, caught, line = reservoir_warning(call, E, T=1.0, tol=1e-6)
    assert not label.converged and 0 < label.n_iter < 1000
    scale = float(np.abs(label.mu).max())
    assert caught == [(GAUGE_TEXT.format(err=label.charge_err, tol=1e-6, iterations=label.n_iter, scale=scale,
                                         dtype="float64"), __file__, line)]
    assert label.charge_err == pytest.approx(true_charge_error(label.q), rel=1e-9)


def test_sinkhorn_warning_points_at_the_users_line():
    import inspect
    E = far_apart_states(1e12, np.float64)
    with warnings.catch_warnings(record=True) as caught, warning_frames_as_without_mutmut():
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        thermossl.sinkhorn(E, 1.0, tol=1e-6, max_iter=2)
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


def test_fixed_iterations_never_warn():
    E = far_apart_states(1e12, np.float64)
    result, caught = recorded(thermossl.sinkhorn, E, 1.0, n_iter=2)
    assert not result.converged and caught == []
    label, caught, _ = reservoir_warning(by_assign, E, T=1.0, n_iter=2)
    assert not label.converged and caught == []
