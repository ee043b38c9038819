"""LedgerRecorder's chained path (``index=``) and SeLaLabels' arguments against independent
references (issue 20, mutation testing of thermossl.torch).

The recorder's ``index=`` path hands the batch to ``thermossl.demon.Demon`` with the caller's
codes (or its reservoir's labels) chained per sample id. Its books are compared here, field by
field, with the numpy reference of tests/test_reference_ledger.py (which never calls thermossl):
a run over overlapping batches of ids, so that chaining changes the ledger, with codes given
with and without their potentials, temperature and charge error, and with labels from the
recorder's own reservoir.
"""
from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import thermossl.torch as tt  # noqa: E402
from thermossl import reservoirs  # noqa: E402
from thermossl.demon import LEDGER_FIELDS  # noqa: E402
from test_reference_ledger import T, SinkhornLabels, drifting_scores, reference_run  # noqa: E402

N_IDS, B, K = 30, 20, 6
FIELDS = [f for f in LEDGER_FIELDS if f != "t" and not f.startswith("res_")]


class CenteredLabels:
    """Reference labels with mu in the gauge mean_y mu_y = 0 and the charge error of the
    unweighted charges, sum_y |mean_i q_iy - 1/K| (what the recorder books for given codes)."""

    def __init__(self, inner, gauge=True, weighted=False):
        self.inner, self.T, self.gauge, self.weighted = inner, inner.T, gauge, weighted

    def __call__(self, E, w):
        q, mu, _ = self.inner(E, w)
        charges = w @ q if self.weighted else q.mean(axis=0)
        err = float(np.abs(charges - 1.0 / q.shape[1]).sum())
        return q, (mu - mu.mean()) if self.gauge else mu, err


def overlapping_cycles(seed, forbidden=False, steps=5):
    """Batches of B of N_IDS ids, overlapping from one cycle to the next, drifting scores."""
    rng = np.random.default_rng(seed)
    E_all = drifting_scores(rng, n=N_IDS, k=K, steps=steps + 1, forbidden=forbidden)
    cycles = []
    for t in range(steps):
        ids = np.sort(rng.choice(N_IDS, size=B, replace=False))
        cycles.append((ids, E_all[t][ids], None, E_all[t + 1][ids]))
    return cycles


def assert_rows_match(ledger, rows, rtol=1e-9, residuals=False):
    assert len(ledger) == len(rows)
    for got, want in zip(ledger, rows):
        for f in (f for f in FIELDS if f in want):
            g, x = float(got[f]), float(want[f])
            assert abs(g - x) <= rtol * max(abs(x), 1e-3), (got["t"], f, g, x)
        if residuals:  # THEORY.md's identities hold on the books: every residual near rounding
            for f in (f for f in LEDGER_FIELDS if f.startswith("res_")):
                assert abs(got[f]) <= 1e-9 and abs(want[f]) <= 1e-9, (got["t"], f, got[f], want[f])


def uniform(n):
    return np.full(n, 1.0 / n)


@pytest.mark.parametrize("forbidden", [False, True])
def test_given_codes_and_potentials_chained_by_id_match_the_reference(forbidden):
    """Codes, mu, T' and the charge error passed in: the books are the reference's for exactly
    those labels, chained per sample id. The recorder's own reservoir has another T', so a T'
    or codes not passed on would change the books."""
    Tl = 0.07
    cycles = overlapping_cycles(1, forbidden)
    ref = CenteredLabels(SinkhornLabels(Tl))
    rows, _, _, labels = reference_run(cycles, uniform(B), ref)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=0.5))
    for (ids, E, _, E_after), (q, mu), row in zip(cycles, labels, rows):
        errs = 0.01 * (row["t"] + 1)
        label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=ids,
                            mu=torch.from_numpy(mu), T_label=Tl, charge_err=errs)
        assert label.method == "given" and label.T == Tl
        np.testing.assert_array_equal(label.q, q)
        assert rec.recording
        rec.feedback(torch.from_numpy(-E_after))
        assert not rec.recording
        row["charge_err"] = errs  # the error passed in is booked as given
    assert_rows_match(rec.ledger, rows)
    # chaining mattered: the books of labels that start from the Gibbs state every cycle differ
    unchained, _, _, _ = reference_run(cycles, uniform(B), ref, chain=False)
    assert abs(unchained[-1]["U_start"] - rows[-1]["U_start"]) > 1e-3


@pytest.mark.parametrize("forbidden", [False, True])
def test_given_codes_alone_get_their_potentials_estimated_and_the_reservoirs_temperature(forbidden):
    """Codes only: mu is estimated from the codes, mu_y = mean_i (T' log q_iy + E_iy) over the
    allowed states in the gauge mean_y mu_y = 0 (exact for a GGE of the scores without forbidden
    states), T' is the reservoir's, and the charge error that of the codes' unweighted charges."""
    Tl = 0.08
    cycles = overlapping_cycles(2, forbidden)
    ref = CenteredLabels(SinkhornLabels(Tl, n_iter=4))  # not balanced: a charge error to book
    rows, _, _, labels = reference_run(cycles, uniform(B), ref)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl))
    for (ids, E, _, E_after), (q, mu), row in zip(cycles, labels, rows):
        label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=ids)
        if forbidden:
            # the estimate over each state's allowed samples (a forbidden state, E = inf, q = 0,
            # does not enter its column's mean)
            allowed = np.isfinite(E)
            terms = np.where(allowed, Tl * np.log(np.where(allowed, q, 1.0)) + np.where(allowed, E, 0.0), 0.0)
            estimate = terms.sum(axis=0) / allowed.sum(axis=0)
            estimate = estimate - estimate.mean()
            assert np.abs(estimate - mu).max() > 1e-4  # not the exact mu here
            # the booked Sigma and mu summary follow the estimate
            N_prev = uniform(B) @ row["_q_prev"]
            row["Sigma"] += float((estimate - mu) @ (row["_N"] - N_prev)) / Tl
            mu = estimate
            row["mu_min"], row["mu_max"], row["mu_mean"] = mu.min(), mu.max(), mu.mean()
        np.testing.assert_allclose(label.mu, mu, rtol=0, atol=1e-9)
        np.testing.assert_allclose(label.charges, q.mean(axis=0), rtol=1e-14)
        rec.feedback(torch.from_numpy(-E_after))
    assert min(r["charge_err"] for r in rows) > 1e-6
    assert_rows_match(rec.ledger, rows)


def test_given_codes_chained_by_id_book_the_weighted_charges():
    """With fixed sample weights, given codes on the index= path book the charges sum_i w_i q_iy
    and their charge error, as the path without index= does (both against numpy)."""
    Tl = 0.08
    w = weights(True)
    cycles = overlapping_cycles(4)
    _, _, _, labels = reference_run(cycles, w, CenteredLabels(SinkhornLabels(Tl, n_iter=2), weighted=True))
    chained = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl), w=w)
    fused = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl), w=w)
    for (ids, E, _, E_after), (q, _) in zip(cycles, labels):
        want = w @ q
        assert np.abs(want - q.mean(axis=0)).sum() > 1e-4  # the weights matter here
        by_id = chained.measure(torch.from_numpy(-E), torch.from_numpy(q), index=ids)
        by_batch = fused.measure(torch.from_numpy(-E), torch.from_numpy(q))
        np.testing.assert_allclose(by_id.charges, want, rtol=1e-13)
        np.testing.assert_allclose(by_batch.charges, want, rtol=1e-12)
        err = float(np.abs(want - 1.0 / K).sum())
        assert by_id.charge_err == pytest.approx(err, rel=1e-12)
        assert float(by_batch.charge_err) == pytest.approx(err, rel=1e-12)
        chained.feedback(torch.from_numpy(-E_after))
        fused.feedback(torch.from_numpy(-E_after))
    booked = [r["charge_err"] for r in chained.ledger]
    np.testing.assert_allclose(booked, [r["charge_err"] for r in fused.ledger], rtol=1e-12)


def test_chained_labels_from_the_recorders_reservoir_match_the_reference():
    """No codes: the recorder's reservoir labels every batch (Sinkhorn to tolerance), chained per
    id, cycle after cycle — the same books as the reference's."""
    Tl = 0.1
    cycles = overlapping_cycles(3)
    rows, _, _, labels = reference_run(cycles, uniform(B), SinkhornLabels(Tl))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=Tl, tol=1e-13))
    for (ids, E, _, E_after), (q, _) in zip(cycles, labels):
        label = rec.measure(torch.from_numpy(-E), index=ids)
        assert label.method != "given"
        np.testing.assert_allclose(label.q, q, rtol=0, atol=1e-10)
        rec.feedback(torch.from_numpy(-E_after))
    for row in rows:  # the reservoir's own error at its stop, not the reference's
        row.pop("charge_err")
    assert_rows_match(rec.ledger, rows)
    assert all(0 <= r["charge_err"] <= 1e-13 for r in rec.ledger)


def test_a_failed_chained_measurement_leaves_no_codes_behind():
    """Codes handed over for a measurement that fails (a bad index) are not used by the next one."""
    Tl = 0.1
    cycles = overlapping_cycles(4, steps=2)
    rows, _, _, labels = reference_run(cycles, uniform(B), SinkhornLabels(Tl))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=Tl, tol=1e-13))
    ids, E, _, E_after = cycles[0]
    wrong = torch.from_numpy(np.full_like(E, 1.0 / K))
    with pytest.raises(ValueError, match="index"):
        rec.measure(torch.from_numpy(-E), wrong, index=ids[:-1])
    assert not rec.recording and len(rec.ledger) == 0
    for (ids, E, _, E_after), (q, _) in zip(cycles, labels):
        label = rec.measure(torch.from_numpy(-E), index=ids)
        np.testing.assert_allclose(label.q, q, rtol=0, atol=1e-10)
        rec.feedback(torch.from_numpy(-E_after))
    assert len(rec.ledger) == 2


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros((B, K)), TypeError, "scores must be a torch.Tensor, got ndarray"),
    (torch.zeros(B), ValueError, r"scores must be 2-D \(batch, prototypes\), got ndim=1"),
])
def test_chained_measurement_names_the_scores(bad, error, message):
    rec = tt.LedgerRecorder(T=T)
    with pytest.raises(error, match=f"^{message}$"):
        rec.measure(bad, index=np.arange(B))


def test_reset_starts_new_books_and_forgets_the_chained_labels():
    """reset(): empty ledger, step count 0, nothing pending; the next chained measurement starts
    from the Gibbs state (its books equal a fresh recorder's)."""
    Tl = 0.1
    cycles = overlapping_cycles(5, steps=3)
    fresh_rows, _, _, _ = reference_run(cycles[1:], uniform(B), SinkhornLabels(Tl))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=Tl, tol=1e-13), every=1)
    ids, E, _, E_after = cycles[0]
    rec.measure(torch.from_numpy(-E), index=ids)
    rec.feedback(torch.from_numpy(-E_after))
    rec.measure(torch.from_numpy(-cycles[1][1]), index=cycles[1][0])  # pending when reset
    assert repr(rec) == f"LedgerRecorder(T={T:g}, every=1, cycles=1)"
    rec.reset()
    assert rec.steps == 0 and not rec.recording and len(rec.ledger) == 0
    assert rec.work_per_sample is None and rec.heat_per_sample is None
    assert repr(rec) == f"LedgerRecorder(T={T:g}, every=1, cycles=0)"
    for ids, E, _, E_after in cycles[1:]:
        rec.measure(torch.from_numpy(-E), index=ids)
        rec.feedback(torch.from_numpy(-E_after))
    for row in fresh_rows:
        row.pop("charge_err")
    assert_rows_match(rec.ledger, fresh_rows)


# ----------------------------------------------------------------------------- the fused path
def weights(weighted):
    if not weighted:
        return None
    w = np.random.default_rng(7).uniform(0.2, 1.8, B)
    return w / w.sum()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("given", ["codes", "codes+mu", "codes+mu+log_z"])
@pytest.mark.parametrize("swapped", [False, True])
def test_fused_books_of_given_codes_match_the_reference(weighted, given, swapped):
    """Without index= the recorder keeps the books itself (fused passes, every batch starting from
    its Gibbs state at T): the same rows as the numpy reference without chaining, with fixed
    sample weights or uniform ones, codes with or without their (shifted) potentials and the
    log-partition function of their GGE, the work counted on another view or the measured one;
    the per-sample work and heat of the last cycle too."""
    Tl = 0.06
    w = weights(weighted)
    w_ref = uniform(B) if w is None else w
    rng = np.random.default_rng(8)
    cycles = overlapping_cycles(6)
    if swapped:
        cycles = [(ids, E, E + 0.05 * rng.normal(size=E.shape), E_a) for ids, E, _, E_a in cycles]
    inner = SinkhornLabels(Tl, n_iter=4) if given == "codes" else SinkhornLabels(Tl)
    ref = CenteredLabels(inner, weighted=True)
    rows, work, heat, labels = reference_run(cycles, w_ref, ref, chain=False)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl), w=w)
    for (ids, E, E_b, E_a), (q, mu) in zip(cycles, labels):
        kwargs = {}
        if given != "codes":
            kwargs["mu"] = torch.from_numpy(mu + 0.3)  # any gauge: the recorder centres mu
        if given == "codes+mu+log_z":
            # log Z of the GGE at the shifted mu; a wrong log Z would break the E2 identity
            kwargs["log_z_label"] = torch.from_numpy(log_partition(E, Tl, mu) + 0.3 / Tl)
        label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), **kwargs)
        np.testing.assert_allclose(label.mu, mu, rtol=0, atol=1e-9)
        np.testing.assert_allclose(label.charges, w_ref @ q, rtol=1e-12)
        assert label.T == Tl and label.method == "given"
        before = None if E_b is None else torch.from_numpy(-E_b)
        rec.feedback(torch.from_numpy(-E_a), before)
    assert_rows_match(rec.ledger, rows, residuals=True)
    np.testing.assert_allclose(rec.work_per_sample, work, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(rec.heat_per_sample, heat, rtol=1e-10, atol=1e-15)


def log_partition(E, temperature, mu):
    x = (mu - E) / temperature
    top = x.max(axis=1)
    return top + np.log(np.exp(x - top[:, None]).sum(axis=1))


@pytest.mark.parametrize("weighted", [False, True])
def test_fused_books_of_the_recorders_reservoir_match_the_reference(weighted):
    """No codes, no index: the reservoir labels each batch (SeLa to tolerance, with the fixed
    weights), the books are the reference's without chaining."""
    Tl = 0.1
    w = weights(weighted)
    w_ref = uniform(B) if w is None else w
    cycles = overlapping_cycles(9, steps=4)
    rows, work, _, labels = reference_run(cycles, w_ref, SinkhornLabels(Tl), chain=False)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=Tl, tol=1e-13), w=w)
    for (ids, E, _, E_a), (q, _) in zip(cycles, labels):
        label = rec.measure(torch.from_numpy(-E))
        np.testing.assert_allclose(label.q, q, rtol=0, atol=1e-10)
        rec.feedback(torch.from_numpy(-E_a))
    for row in rows:
        row.pop("charge_err")
    assert_rows_match(rec.ledger, rows, residuals=True)
    assert all(0 <= r["charge_err"] <= 1e-13 for r in rec.ledger)
    np.testing.assert_allclose(rec.work_per_sample, work, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("flush_every", [1, 2, 64])
def test_deferred_books_on_the_cpu_match_the_reference(flush_every):
    """deferred=True on the CPU: feedback returns None, the rows reach the ledger in batches of
    flush_every (and all of them when the ledger is read), equal to the reference's."""
    Tl = 0.06
    cycles = overlapping_cycles(10, steps=5)
    ref = CenteredLabels(SinkhornLabels(Tl, n_iter=4))
    rows, _, _, labels = reference_run(cycles, uniform(B), ref, chain=False)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl), deferred=True, flush_every=flush_every)
    for t, ((ids, E, _, E_a), (q, _)) in enumerate(zip(cycles, labels)):
        label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q))
        assert isinstance(label.mu, torch.Tensor) and isinstance(label.q, torch.Tensor)
        assert rec.feedback(torch.from_numpy(-E_a)) is None
        assert len(rec.demon.ledger) == (t + 1) // flush_every * flush_every
    assert_rows_match(rec.ledger, rows, residuals=True)


# ----------------------------------------------------------------------------- SeLaLabels
@pytest.mark.parametrize("T_bad", [0, 0.0, -0.5, math.inf, math.nan, "0.1", None])
def test_sela_labels_refuse_a_temperature_that_is_not_finite_and_positive(T_bad):
    with pytest.raises(ValueError, match=rf"^T must be a finite number > 0, got {re.escape(repr(T_bad))}$"):
        tt.SeLaLabels(T=T_bad)


def test_sela_labels_stop_at_1000_iterations_by_default():
    """An unreachable tolerance: update() stops after max_iter = 1000 iterations, not converged."""
    g = torch.Generator().manual_seed(0)
    sela = tt.SeLaLabels(tol=1e-300, relaxation=1.0)
    sela.update(torch.randn(40, 6, generator=g, dtype=torch.float64) * 3)
    assert sela.n_iter == 1000 and not sela.converged and sela.err > 1e-300




LIMIT_TEXT = "sinkhorn did not converge in max_iter={limit} iterations: charge error {err:.3e} > tol={tol:g}"


def test_sela_labels_warn_at_the_callers_line_when_not_converged():
    """max_iter reached: a RuntimeWarning with the iteration limit, the charge error of the
    returned labels (numpy) and the tolerance, pointing at the line that called update()."""
    import warnings

    from helpers import warning_frames_as_without_mutmut

    g = torch.Generator().manual_seed(1)
    scores = torch.randn(40, 6, generator=g, dtype=torch.float64) * 3
    sela = tt.SeLaLabels(tol=1e-9, max_iter=7, relaxation=1.0)
    with warnings.catch_warnings(record=True) as caught, warning_frames_as_without_mutmut():
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        q = sela.update(scores)
    err = float(np.abs(q.numpy().mean(axis=0) - 1 / 6).sum())
    assert sela.n_iter == 7 and not sela.converged and sela.err == pytest.approx(err, rel=1e-9)
    assert [(str(w.message), w.category, w.filename, w.lineno) for w in caught] == [
        (LIMIT_TEXT.format(limit=7, err=sela.err, tol=1e-9), RuntimeWarning, __file__, line)]


def test_sela_labels_name_the_bad_row():
    scores = torch.randn(6, 4, dtype=torch.float64)
    scores[4, 1] = math.nan
    with pytest.raises(ValueError, match=r"^E contains NaN \(row 4\)"):
        tt.SeLaLabels().update(scores)


def test_float32_sela_labels_warm_start_from_their_own_potentials():
    """dtype=float32: the second update starts from the first's mu (kept as float64 numpy) and
    reaches the same labels as a cold float32 solve, in fewer iterations."""
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(300, 8, generator=g, dtype=torch.float64) * 2
    sela = tt.SeLaLabels(dtype=torch.float32, tol=1e-5)
    sela.update(scores)
    assert sela.q.dtype == torch.float32 and sela.mu.dtype == np.float64
    moved = scores * 1.001
    q_warm = sela.update(moved)
    warm_iterations = sela.n_iter
    cold = tt.SeLaLabels(dtype=torch.float32, tol=1e-5)
    q_cold = cold.update(moved)
    assert warm_iterations < cold.n_iter
    torch.testing.assert_close(q_warm, q_cold, rtol=0, atol=1e-3)
    ref = np.asarray(q_warm, dtype=np.float64)
    assert np.abs(ref.mean(axis=0) - 1 / 8).sum() <= 2e-5
