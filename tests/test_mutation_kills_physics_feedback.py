"""The "before" fields of a cycle's feedback (issue 20, mutation testing, physics group).

F_before, D_before, L_before, S_p and U_p are those of the labels against the Gibbs state of the
energies the work is counted from: the measured energies (their rows are kept from the
measurement), or E_before when given (SwAV's swapped prediction), weighted by the demon's fixed
sample weights either way.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

from thermossl import reservoirs
from thermossl.demon import Demon

BEFORE = ("F_before", "D_before", "L_before", "S_p")


def test_the_before_fields_with_E_before_are_weighted_by_the_demons_weights():
    """feedback(E_after, E_before=Eb) with fixed weights w: F_before = -T sum_i w_i log Z_i(Eb),
    L_before = sum_i w_i sum_y q_iy (E_b,iy / T + log Z_i) (numpy). (The survivor Demon.feedback
    55, which passes w=None to the row pass of E_before, is equivalent: the rows do not depend
    on w, only the discarded charges do; the weights enter in the sums, checked here.)"""
    rng = np.random.default_rng(11)
    n, k, T = 30, 6, 0.3
    w = rng.uniform(0.05, 1.0, n) ** 3
    w /= w.sum()
    Ea, Eb = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    d = Demon(T, reservoirs.sela(tol=1e-8), w=w)
    q = d.measure(Ea).q
    row = d.feedback(0.8 * Eb, E_before=Eb)
    log_z = sp.logsumexp(-Eb / T, axis=1)
    assert row["F_before"] == pytest.approx(-T * float(w @ log_z), rel=1e-12)
    L = float(w @ (q * (Eb / T + log_z[:, None])).sum(axis=1))
    assert row["L_before"] == pytest.approx(L, rel=1e-12)
    uniform = -T * float(log_z.mean())
    assert abs(uniform - row["F_before"]) > 1e-3 * abs(uniform)


def test_the_before_fields_do_not_depend_on_the_dtype_of_E_after():
    """A float32 cycle's before fields are the measurement's (float32 rows), whatever the dtype
    of the energies after: two demons, one given float32 E_after, one its float64 copy, book the
    same before fields bit for bit (the survivor Demon.feedback 47 recomputed them in the dtype
    of E_after, i.e. in float64 here)."""
    rng = np.random.default_rng(12)
    n, k, T = 50, 8, 0.2
    E = rng.normal(size=(n, k)).astype(np.float32)
    E_after = (0.7 * E).astype(np.float32)
    rows = []
    for after in (E_after, E_after.astype(np.float64)):
        d = Demon(T, reservoirs.sela(tol=1e-4))
        d.measure(E)
        rows.append(d.feedback(after))
    for field in BEFORE:
        assert rows[0][field] == rows[1][field], field
    # the same fields computed from float64 energies differ (so the check above can fail)
    d = Demon(T, reservoirs.sela(tol=1e-4))
    d.measure(E)
    wide = d.feedback(E_after.astype(np.float64), E_before=E.astype(np.float64))
    assert any(wide[f] != rows[0][f] for f in BEFORE)
