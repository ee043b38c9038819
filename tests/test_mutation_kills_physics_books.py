"""analyze's arguments and result, check_books' limits, summarize's D2 tolerance and
format_summary's text (issue 20, mutation testing, physics group), against values computed here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from thermossl import analysis, demon


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


def run(rng, steps=3, n=6, k=3, dtype=np.float64):
    scores = rng.normal(size=(steps, n, k)).astype(dtype)
    codes = rng.uniform(0.1, 1.0, size=(steps - 1, n, k))
    codes = (codes / codes.sum(axis=2, keepdims=True)).astype(dtype)
    return scores, codes


# ----------------------------------------------------------------------------- analyze
def test_codes_and_a_reservoir_together_are_refused():
    scores, codes = run(np.random.default_rng(0))
    raises_exactly(ValueError, "give codes (recorded labels) or a reservoir, not both",
                   analysis.analyze, scores, reservoir="swav", codes=codes)


def test_the_result_says_where_the_labels_came_from():
    scores, codes = run(np.random.default_rng(1))
    assert analysis.analyze(scores, T=0.2).labels == "reservoir"
    assert analysis.analyze(scores, T=0.2, codes=codes).labels == "given"


def test_float32_codes_are_replayed_in_float64():
    """float32 scores and codes: the books are float64 sums of the float32 values (the codes are
    taken as float64), U_measured = mean_i sum_y q_iy E_iy to 1e-13, not float32 sums (~1e-7)."""
    scores, codes = run(np.random.default_rng(2), n=50, k=7, dtype=np.float32)
    ledger = analysis.analyze(scores, T=0.2, codes=codes).ledger
    for t, row in enumerate(ledger):
        q = codes[t].astype(np.float64)
        E = -scores[t].astype(np.float64)
        assert row["U_measured"] == pytest.approx(float((q * E).sum(axis=1).mean()), rel=1e-13, abs=1e-15)
        E_next = -scores[t + 1].astype(np.float64)
        assert row["W"] == pytest.approx(float((q * (E_next - E)).sum(axis=1).mean()), rel=1e-12, abs=1e-15)


# ----------------------------------------------------------------------------- check_books
def one_row_ledger(**values):
    row = dict.fromkeys(demon.LEDGER_FIELDS, 0.5)
    row["t"] = 0
    row.update(values)
    return demon.Ledger([row])


def test_a_value_of_exactly_the_largest_magnitude_is_allowed():
    largest = 1e10
    analysis.check_books(one_row_ledger(W=-largest), largest=largest)
    above = float(np.nextafter(largest, np.inf))
    raises_exactly(ValueError, "the books are out of range: W = -1e+10 in cycle 0 (ledger values must be finite "
                   "and within ±1e+10)", analysis.check_books, one_row_ledger(W=-above), largest=largest)


def test_a_work_of_exactly_the_largest_magnitude_is_allowed():
    largest = 1e10
    ledger = one_row_ledger()
    analysis.check_books(ledger, work_per_sample=[0.0, largest, -largest], largest=largest)
    above = float(np.nextafter(largest, np.inf))
    raises_exactly(ValueError, "the books are out of range: the work of sample 1 is 1e+10 (it must be finite and "
                   "within ±1e+10)", analysis.check_books, ledger, work_per_sample=[0.0, above], largest=largest)


def test_float32_work_is_compared_with_the_limit_in_float64():
    """A float32 work of 1e10 exceeds a limit of 1e10 - 1 (which float32 would round up to 1e10)."""
    largest = 1e10 - 1
    assert np.float32(largest) == np.float32(1e10)
    with pytest.raises(ValueError, match="the work of sample 0 is 1e"):
        analysis.check_books(one_row_ledger(), work_per_sample=np.array([1e10], np.float32), largest=largest)


# ----------------------------------------------------------------------------- summarize
def test_a_cycle_exactly_at_the_d2_tolerance_counts_as_held():
    """D2 holds when W_ext + dF - T D <= 1e-12 of the scale |T D| + |dF| + |W_ext| (+1e-300):
    a cycle with D = dF = 0 and W_ext = 1e-12 (W_ext + 1e-300) exactly (a subnormal, found by
    iterating that equation) is on the boundary and held; one ulp more is not."""
    w_ext = 0.0
    for _ in range(5):
        w_ext = 1e-12 * (abs(w_ext) + 1e-300)
    assert -w_ext == -1e-12 * (abs(w_ext) + 1e-300)  # exactly on the boundary
    rows = [dict(r, D_before=0.0, dF=0.0, W_ext=w) for r, w in
            zip(one_row_ledger(), [w_ext])]
    assert analysis.summarize(demon.Ledger(rows), 1.0)["D2_held"] == 1
    rows[0]["W_ext"] = float(np.nextafter(w_ext, np.inf))
    assert analysis.summarize(demon.Ledger(rows), 1.0)["D2_held"] == 0


# ----------------------------------------------------------------------------- format_summary
def designed_summary(**changes):
    s = {
        "cycles": 4, "W": -0.25, "Q": 0.125, "dU": -0.5, "W_ext": 0.25, "Sigma": 0.0625, "W_ext_bound": 1.5,
        "D2_held": 3, "D2_every_cycle": False, "L_first": 1.75, "L_last": 0.875, "I_mean": 0.375,
        "charge_err_last": 0.00125, "eta_median": 0.4375,
        "max_abs_res_first_law": 1.5e-15, "max_abs_res_D1": 2.5e-14, "max_abs_res_G1": 3.5e-13,
        "max_abs_res_G2": 4.5e-12, "max_abs_res_G4": 5.5e-11, "max_abs_res_E2": 6.5e-10,
    }
    s.update(changes)
    return s


EXPECTED = """\
ledger: 4 cycles
  work W = -0.250000   extracted W_ext = +0.250000   (bound sum T D - dF = +1.500000)
  heat Q = +0.125000   dU = -0.500000   entropy production Sigma = 0.062500
  loss 1.7500 -> 0.8750   mean information I = 0.3750 nats   last charge error 1.25e-03
  D2 (W_ext + dF <= T D) held in 3/4 cycles   median efficiency eta = 0.438
  largest residuals: first law 1.5e-15, D1 2.5e-14, G1 3.5e-13, G2 4.5e-12, G4 5.5e-11, E2 6.5e-10"""


def test_format_summary_text():
    assert analysis.format_summary(designed_summary()) == EXPECTED


def test_format_summary_reads_nan_as_n_a_and_writes_infinities_in_lower_case():
    text = analysis.format_summary(designed_summary(Sigma=math.nan, eta_median=math.nan, max_abs_res_E2=math.nan))
    assert "entropy production Sigma = n/a" in text and "median efficiency eta = n/a" in text
    assert text.endswith("E2 n/a")
    text = analysis.format_summary(designed_summary(Sigma=math.inf, eta_median=-math.inf, max_abs_res_E2=math.inf))
    assert "entropy production Sigma = inf\n" in text and "median efficiency eta = -inf\n" in text
    assert text.endswith("E2 inf")
