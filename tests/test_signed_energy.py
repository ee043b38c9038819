"""The Sinkhorn kernel's signed scale (SinkhornOptions::energy_sign, issue 13): a matrix of scores
s read with energy_sign=-1 is the problem of the energies E = -s, solved without a negated copy.
Every path of the solver (float lanes, the scaled exp-once form, the cold-start column pass, the
double lanes, warm starts, weights) is compared with the same solver on the explicit -s, at every
SIMD level this CPU has, and with an independent numpy Sinkhorn in float64."""
from __future__ import annotations

import numpy as np
import pytest

from thermossl import _core


def solve(a, T, sign, fixed=0, return_q=True, w=None, mu0=None, tol=1e-6, max_iter=300):
    n, k = a.shape
    dt = a.dtype
    f = np.empty(n, dt)
    mu = np.empty(k, dt)
    q = np.empty((n, k), dt) if return_q else None
    charges = np.empty(k)
    report = _core.sinkhorn(a, T, w, None, mu0, fixed, tol, max_iter, f, mu, q, charges, energy_sign=sign)
    return report, f, mu, q, charges


def numpy_sinkhorn(E, T, n_iter):
    """SwAV's iteration in float64 from a constant f: mu-update (columns), then f-update (rows)."""
    n, k = E.shape
    x = -E / T
    log_w = np.full(n, -np.log(n))
    f_over_T = np.zeros(n)
    for _ in range(n_iter):
        col = x + (log_w + f_over_T)[:, None]
        m = col.max(0)
        mu_over_T = np.log(1.0 / k) - (m + np.log(np.exp(col - m).sum(0)))
        row = x + mu_over_T
        m = row.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(row - m).sum(1))
        f_over_T = -lse
    return np.exp(x + mu_over_T + f_over_T[:, None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["fixed_q", "fixed", "tolerance_q", "tolerance", "warm", "weighted"])
def test_scores_with_negative_sign_equal_the_negated_energies(simd_level, dtype, mode):
    rng = np.random.default_rng(7)
    s = (3.0 * rng.normal(size=(257, 67))).astype(dtype)
    kwargs = {}
    if mode.startswith("fixed"):
        kwargs = dict(fixed=3, return_q=mode == "fixed_q")
    elif mode == "tolerance":
        kwargs = dict(return_q=False)
    elif mode == "warm":
        kwargs = dict(mu0=(0.1 * rng.normal(size=67)).astype(dtype))
    elif mode == "weighted":
        w = rng.uniform(0.5, 1.5, size=257)
        kwargs = dict(w=(w / w.sum()).astype(dtype))
    T = 0.5
    r_s, f_s, mu_s, q_s, c_s = solve(s, T, -1.0, **kwargs)
    r_e, f_e, mu_e, q_e, c_e = solve(np.ascontiguousarray(-s), T, 1.0, **kwargs)
    assert r_s == r_e
    # Same arithmetic on the same values: equal to the bit.
    np.testing.assert_array_equal(f_s, f_e)
    np.testing.assert_array_equal(mu_s, mu_e)
    np.testing.assert_array_equal(c_s, c_e)
    if q_s is not None:
        np.testing.assert_array_equal(q_s, q_e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_scores_match_a_numpy_sinkhorn(simd_level, dtype):
    rng = np.random.default_rng(3)
    s = (2.0 * rng.normal(size=(300, 40))).astype(dtype)
    strided = np.asfortranarray(s)  # any strides: the tile reader packs them
    for a in (s, strided):
        _, _, _, q, _ = solve(a, 0.05, -1.0, fixed=3)
        ref = numpy_sinkhorn(-s.astype(np.float64), 0.05, 3)
        bound = 2e-5 if dtype == np.float32 else 1e-12
        assert np.max(np.abs(q - ref)) <= bound * max(1.0, np.max(ref))


def test_infinite_scores_are_named_as_energies():
    s = np.zeros((4, 3))
    s[2, 1] = np.inf  # E = -inf: an infinite score
    report = solve(s, 1.0, -1.0)[0]
    assert (report[3], report[4]) == (3, 2)
    s = np.zeros((4, 3))
    s[1, :] = -np.inf  # E = +inf everywhere on row 1: forbidden row
    report = solve(s, 1.0, -1.0)[0]
    assert (report[3], report[4]) == (2, 1)
    s = np.zeros((4, 3))
    s[:, 0] = -np.inf  # a state forbidden for every sample, with a positive target
    assert solve(s, 1.0, -1.0)[0][3] == 4


def test_energy_sign_is_validated():
    with pytest.raises(ValueError, match="energy_sign must be 1 or -1"):
        solve(np.zeros((2, 2)), 1.0, 0.5)
