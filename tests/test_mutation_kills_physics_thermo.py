"""The unweighted sums of thermo's public functions (issue 20, mutation testing, physics group).

With uniform weights a ledger sum is the mean of the per-row sums, computed as numpy's mean (one
summation, one division). On rows that are exact integers the summation is exact, so the result is
the exact mean rounded once: float(Fraction(sum, N)). Dividing each row by N before summing (the
path kept for rows whose sum overflows) rounds N + 1 times and can land an ulp or more away; these
tests pin the single rounding (the survivors thermo.reduce 9 and 10 took that path for finite sums).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from thermossl import thermo


def one_hot_on_integers(rows, k, rng):
    """Labels q (one-hot) and integer energies E (N, K) whose row energies sum_y q_iy E_iy are
    exactly `rows`: the kernel's per-row sums are then exact."""
    n = rows.size
    E = rng.integers(-9, 10, size=(n, k)).astype(np.float64)
    states = rng.integers(0, k, size=n)
    E[np.arange(n), states] = rows
    q = np.zeros((n, k))
    q[np.arange(n), states] = 1.0
    return q, E


def test_the_uniform_energy_of_integer_rows_is_their_exact_mean_rounded_once():
    rng = np.random.default_rng(20)
    # a case where summing rows / N is 4 ulps off: -15.599999999999996 for -15.6
    rows = np.array([13.0, 1.0, -24.0, -20.0, -46.0, -43.0, -49.0, -33.0, 31.0, 14.0])
    cases = [rows] + [rng.integers(-50, 50, size=int(rng.integers(3, 40))).astype(np.float64) for _ in range(40)]
    for rows in cases:
        q, E = one_hot_on_integers(rows, 3, rng)
        exact = float(Fraction(int(rows.sum()), rows.size))
        assert thermo.energy(q, E) == exact, rows.tolist()


def test_the_first_case_tells_the_two_roundings_apart():
    """The reference case above is one where the two orders of rounding differ (so the test above
    can fail)."""
    rows = np.array([13.0, 1.0, -24.0, -20.0, -46.0, -43.0, -49.0, -33.0, 31.0, 14.0])
    assert float(np.sum(rows / rows.size)) != float(Fraction(int(rows.sum()), rows.size))


@pytest.mark.parametrize("N", [3, 7, 10, 31])
def test_the_uniform_energy_of_float_rows_matches_numpy_to_rounding(N):
    """Non-integer rows: the mean of the per-row energies against numpy's sums."""
    rng = np.random.default_rng(N)
    q = rng.uniform(0.05, 1.0, size=(N, 5))
    q /= q.sum(axis=1, keepdims=True)
    E = rng.normal(size=(N, 5))
    assert thermo.energy(q, E) == pytest.approx(float(np.mean((q * E).sum(axis=1))), rel=1e-14, abs=1e-15)
