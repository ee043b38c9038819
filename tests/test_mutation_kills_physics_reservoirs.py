"""Reservoirs and demon.step to the letter, found by mutation testing (issue 20): the exact errors
of their public entry points (each names its argument), the sample weights that ``assign`` passes
on (against numpy references of weighted Sinkhorn and weighted DINO centering), and the weights a
reservoir written elsewhere (implementing ``assign`` only) receives from the demon."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from thermossl import demon, reservoirs
from thermossl.reservoirs import LabelState


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


E32 = np.zeros((3, 2))
Q32 = np.full((3, 2), 0.5)


# ----------------------------------------------------------------------------- demon.step
@pytest.mark.parametrize("args, message", [
    ((E32, np.zeros(3), E32, Q32), "q must be a 2-D array of shape (N, K), got ndim=1"),
    ((np.zeros((2, 2)), Q32, E32, Q32), "E_before must have shape (3, 2), got (2, 2)"),
    ((E32, Q32, np.zeros((2, 2)), Q32), "E_after must have shape (3, 2), got (2, 2)"),
    ((E32, Q32, E32, np.full((2, 2), 0.5)), "q_after must have shape (3, 2), got (2, 2)"),
    ((E32, Q32, np.zeros(6), Q32), "E_after must be a 2-D array of shape (N, K), got ndim=1"),
    ((E32, Q32, E32, np.full(6, 0.5)), "q_after must be a 2-D array of shape (N, K), got ndim=1"),
])
def test_step_errors_name_the_argument(args, message):
    raises_exactly(ValueError, message, demon.step, *args)


# ----------------------------------------------------------------------------- reservoir errors
@pytest.mark.parametrize("make", [lambda: reservoirs.SinkhornReservoir(0.5), lambda: reservoirs.CenteringReservoir(0.5)])
def test_assign_errors_name_the_argument(make):
    raises_exactly(ValueError, "w must have shape (3,) (one value per sample), got (2,)", make().assign, E32,
                   np.ones(2) / 2)
    raises_exactly(ValueError, "w must be >= 0 everywhere (a distribution), got -0.1 at index 2", make().assign, E32,
                   np.array([0.5, 0.6, -0.1]))
    raises_exactly(ValueError, "E must be a 2-D array of shape (N, K), got ndim=1", make().assign, np.zeros(3))
    # K = N: a w of the length of a row of E would pass a check against the wrong axis.
    raises_exactly(ValueError, "w must have shape (2,) (one value per sample), got (3,)", make().assign,
                   np.zeros((2, 3)), np.ones(3) / 3)


def test_sinkhorn_reservoir_target_errors_name_c():
    raises_exactly(ValueError, "c must have shape (3,) (one value per state), got (2,)",
                   reservoirs.SinkhornReservoir(0.5, c=[0.5, 0.5]).assign, np.zeros((3, 3)))
    raises_exactly(ValueError, "c must sum to 1, got 1.1", reservoirs.SinkhornReservoir(0.5, c=[0.5, 0.6]).assign,
                   np.zeros((3, 2)))


@pytest.mark.parametrize("momentum, name", [("x", "str"), (True, "bool"), (np.bool_(False), "bool"), (None, "NoneType")])
def test_centering_momentum_must_be_a_real_number(momentum, name):
    raises_exactly(TypeError, f"momentum must be a real number, got {name}", reservoirs.CenteringReservoir, 0.5,
                   momentum=momentum)


# ----------------------------------------------------------------------------- weights passed on
def numpy_sinkhorn(E, T, w, c, tol=1e-13, max_iter=100000):
    """Weighted log-domain Sinkhorn in numpy: q_iy = exp((f_i + mu_y - E_iy)/T), rows sum to 1,
    sum_i w_i q_iy = c_y."""
    mu = np.zeros(E.shape[1])
    for _ in range(max_iter):
        a = (mu - E) / T
        f = -T * np.logaddexp.reduce(a, axis=1)
        log_q = (f[:, None] + mu - E) / T
        charges = w @ np.exp(log_q)
        if np.abs(charges - c).sum() <= tol:
            break
        mu = mu + T * (np.log(c) - np.log(charges))
    return np.exp(log_q)


def test_sinkhorn_reservoir_balances_the_weighted_charges():
    rng = np.random.default_rng(20)
    E = rng.normal(size=(12, 4))
    w = rng.dirichlet(np.ones(12))
    c = rng.dirichlet(np.ones(4))
    label = reservoirs.SinkhornReservoir(0.7, tol=1e-12, max_iter=100000, c=c).assign(E, w)
    assert label.converged
    assert_allclose(w @ label.q, c, atol=1e-11)
    assert_allclose(label.charges, c, atol=1e-11)
    assert_allclose(label.q, numpy_sinkhorn(E, 0.7, w, c), rtol=1e-8, atol=1e-12)


def test_centering_reservoir_moves_the_center_by_the_weighted_mean():
    rng = np.random.default_rng(21)
    E1, E2 = rng.normal(size=(10, 5)), rng.normal(size=(10, 5))
    w = rng.dirichlet(np.ones(10))
    T, m = 0.3, 0.8
    for dtype in (np.float64, np.float32):
        reservoir = reservoirs.CenteringReservoir(T, momentum=m)
        # float32: the weighted mean is summed in float32 (cancellation: absolute, not relative, error)
        close = {"rtol": 0, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-15}
        first = reservoir.assign(E1.astype(dtype), w)
        s1 = -E1.astype(dtype).astype(np.float64)
        assert_allclose(first.q, np.exp(s1 / T) / np.exp(s1 / T).sum(axis=1, keepdims=True), rtol=1e-5 if dtype == np.float32 else 1e-12)
        assert_allclose(first.charges, w @ first.q.astype(np.float64), rtol=1e-5 if dtype == np.float32 else 1e-12)
        center = (1 - m) * (w @ s1)  # C <- m * 0 + (1 - m) * sum_i w_i s_i
        assert_allclose(reservoir.center, center, **close)
        second = reservoir.assign(E2.astype(dtype), w)
        s2 = -E2.astype(dtype).astype(np.float64)
        ref = np.exp((s2 - center) / T)
        assert_allclose(second.q, ref / ref.sum(axis=1, keepdims=True), rtol=1e-5 if dtype == np.float32 else 1e-12)
        assert_allclose(second.mu, -center, **close)
        assert_allclose(reservoir.center, m * center + (1 - m) * (w @ s2), **close)


class _RecordingReservoir(reservoirs.Reservoir):
    """A reservoir written elsewhere: ``assign`` only (Gibbs labels at T); records its weights."""

    def __init__(self, T):
        self.T = T
        self.weights = []

    def assign(self, E, w=None) -> LabelState:
        self.weights.append(None if w is None else np.array(w))
        E = np.asarray(E, dtype=np.float64)
        q = np.exp(-(E - E.min(axis=1, keepdims=True)) / self.T)
        q /= q.sum(axis=1, keepdims=True)
        charges = q.mean(axis=0) if w is None else w @ q
        return LabelState(q=q, mu=np.zeros(E.shape[1]), charges=charges,
                          charge_err=float(np.abs(charges - 1 / E.shape[1]).sum()), T=self.T, method="gibbs")


def test_a_reservoir_with_assign_only_receives_the_demons_weights():
    rng = np.random.default_rng(22)
    E = rng.normal(size=(6, 3))
    w = rng.dirichlet(np.ones(6))
    reservoir = _RecordingReservoir(0.5)
    d = demon.Demon(0.5, reservoir, w=w)
    d.measure(E)
    assert len(reservoir.weights) == 1 and reservoir.weights[0] is not None
    assert_allclose(reservoir.weights[0], w, rtol=1e-15)
