"""compat.pot_sinkhorn's overflow error without a row (issue 20, mutation testing, compat group).

The solver reports an overflow with no row when a column's log-sum-exp over the rows overflows
but no single row does: every cost finite, -M/reg near the float limit, and a warm start whose
row scalings u push u_i - M_iy/reg past it. The message then names no row; with an infinite
cost it names the row.
"""
from __future__ import annotations

import numpy as np
import pytest

from thermossl import compat


def message_of(*args, **kwargs):
    with pytest.raises(ValueError) as info:
        compat.pot_sinkhorn(*args, **kwargs)
    return str(info.value)


def test_an_overflow_in_a_column_sum_names_no_row():
    a, b = np.full(3, 1 / 3), np.full(2, 0.5)
    M = np.full((3, 2), -1e308)  # finite: -M/reg = 1e308 is finite in every row
    warm = (np.full(3, 1e308), np.zeros(2))  # u_i - M_iy/reg = 2e308 overflows in the column sums
    assert message_of(a, b, M, 1.0, warmstart=warm) == "M contains -inf or M/reg overflows"
    # without the warm start the same costs solve (no overflow anywhere)
    plan = compat.pot_sinkhorn(a, b, M, 1.0)
    np.testing.assert_allclose(plan.sum(axis=1), a, rtol=1e-12)


def test_an_infinite_cost_names_its_row():
    a, b = np.full(3, 1 / 3), np.full(2, 0.5)
    M = np.zeros((3, 2))
    M[2, 1] = -np.inf
    assert message_of(a, b, M, 1.0) == "M contains -inf or M/reg overflows (row 2)"
