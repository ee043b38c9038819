"""Strokes, the demon's cycles and ledger (THEORY.md §4-5): first law, E2, D1, D2, a real
training loop, reservoirs, and ledger export."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from thermossl import demon, reservoirs, thermo

inf = np.inf


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- strokes
def test_strokes_match_numpy_and_close_the_first_law():
    rng = np.random.default_rng(0)
    n, k = 80, 9
    E, E2 = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    E[3, 4] = E2[3, 4] = inf  # a forbidden state, in both
    q = sp.softmax(rng.normal(size=(n, k)), axis=1)
    q2 = sp.softmax(rng.normal(size=(n, k)), axis=1)
    q[3, 4] = q2[3, 4] = 0.0
    q /= q.sum(1, keepdims=True)
    q2 /= q2.sum(1, keepdims=True)
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    fin = np.isfinite(E)
    work = demon.adiabatic(q, E, E2, w)
    assert work.W == pytest.approx(w @ np.where(fin, q * (np.where(fin, E2, 0) - np.where(fin, E, 0)), 0).sum(1), rel=1e-13)
    assert work.Q == 0.0 and work.work_per_sample.sum() == pytest.approx(work.W, rel=1e-13)
    heat = demon.isochoric(E2, q, q2, w)
    assert heat.Q == pytest.approx(w @ np.where(fin, np.where(fin, E2, 0) * (q2 - q), 0).sum(1), rel=1e-12)
    general = demon.step(E, q, E2, q2, w)
    dU = thermo.energy(q2, E2, w) - thermo.energy(q, E, w)
    assert general.dU == pytest.approx(dU, abs=1e-14)  # first law: exact split
    assert general.W == pytest.approx(work.W, rel=1e-15) and general.Q == pytest.approx(heat.Q, rel=1e-15)


# ----------------------------------------------------------------------------- cycles
def run_cycles(reservoir, n_cycles=6, n=300, k=20, T=0.1, lr=0.5, seed=1, swap=False):
    rng = np.random.default_rng(seed)
    X = unit_rows(rng, n, 16)
    P = unit_rows(rng, k, 16)
    d = demon.Demon(T, reservoir)
    for _ in range(n_cycles):
        E = -(X @ P.T)
        E_b = -((X + 0.05 * rng.normal(size=X.shape)) @ P.T) if swap else None
        label = d.measure(E, index=np.arange(n))  # the same samples: their labels chain
        _, g = thermossl.cross_entropy(label.q, E if E_b is None else E_b, T, grad=True)
        grad_P = -(g / n).T @ X  # dL/dP with E = -X P^T
        P = P - lr * grad_P
        d.feedback(-(X @ P.T), E_before=E_b)
    return d


@pytest.mark.parametrize("make", [reservoirs.sela, reservoirs.swav, reservoirs.dino], ids=["sela", "swav", "dino"])
def test_books_close_every_cycle(make):
    d = run_cycles(make())
    table = d.ledger.to_numpy()
    assert len(table) == 6
    scale = np.max(np.abs(table["U_start"])) + np.max(np.abs(table["F_before"])) + 1.0
    for field in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4"):
        assert np.max(np.abs(table[field])) < 1e-10 * scale, field
    # E2: the measurement lands exactly on the GGE at its mu, so Sigma = D(q_prev || q_t) >= 0.
    assert np.max(np.abs(table["res_E2"])) < 1e-10 * (1 + np.max(np.abs(table["Sigma"])))
    assert np.all(table["Sigma"] >= -1e-12)
    # D2: W_ext + dF <= T D_before; efficiency <= 1.
    assert np.all(table["W_ext"] + table["dF"] <= 0.1 * table["D_before"] + 1e-12)
    assert np.all(table["eta"] <= 1.0)
    # Information identity and the totals.
    assert_allclose(table["I"], table["H_N"] - table["S_q"], atol=1e-12)
    totals = d.ledger.totals()
    assert totals["cycles"] == 6
    assert totals["dU"] == pytest.approx(totals["W"] + totals["Q"], abs=1e-12)
    assert totals["W_ext"] == pytest.approx(-totals["W"], abs=1e-15)


def test_swapped_prediction_books_close():
    d = run_cycles(reservoirs.swav(), swap=True, seed=3)
    table = d.ledger.to_numpy()
    assert np.max(np.abs(table["res_D1"])) < 1e-12
    assert np.max(np.abs(table["res_first_law"])) < 1e-12
    assert_allclose(d.work_per_sample.sum(), table["W"][-1], rtol=1e-12)
    assert_allclose(d.heat_per_sample.sum(), table["Q"][-1], rtol=1e-12)


def test_training_loop_loss_falls_exactly_when_extracted_work_beats_free_energy_change():
    # A linear model trained by gradient steps on the cross-entropy, using the gradient kernel;
    # step sizes from timid to reckless so that the loss both falls and rises.
    rng = np.random.default_rng(7)
    n, k, d_in, T = 256, 12, 8, 0.1
    X = rng.normal(size=(n, d_in))
    P = rng.normal(size=(k, d_in)) * 0.1
    dm = demon.Demon(T, reservoirs.swav())
    outcomes = []
    for lr in [0.05, 0.2, 1.0, 5.0, 30.0, 0.5, 60.0, 0.1]:
        E = -(X @ P.T)
        label = dm.measure(E, index=np.arange(n))
        _, grad_E = thermossl.cross_entropy(label.q, E, T, grad=True)  # per row (q - p)/T
        grad_P = -(grad_E / n).T @ X
        P = P - lr * grad_P
        row = dm.feedback(-(X @ P.T))
        falls = row["L_after"] < row["L_before"]
        assert falls == (row["W_ext"] + row["dF"] > 0)
        # ... and exactly: L' - L = -(W_ext + dF)/T
        assert row["L_after"] - row["L_before"] == pytest.approx(-(row["W_ext"] + row["dF"]) / T, abs=1e-10)
        outcomes.append(falls)
    assert any(outcomes) and not all(outcomes)  # both cases were exercised


def test_dino_centering_leaves_imbalance_sinkhorn_does_not():
    dino_books = run_cycles(reservoirs.dino(), n_cycles=8).ledger.to_numpy()
    sela_books = run_cycles(reservoirs.sela(tol=1e-8), n_cycles=8).ledger.to_numpy()
    assert np.all(dino_books["charge_err"] > 1e-3)
    assert np.all(sela_books["charge_err"] <= 1e-8)


def test_sinkhorn_reservoir_warm_starts_and_centering_updates():
    rng = np.random.default_rng(9)
    E = -(unit_rows(rng, 500, 16) @ unit_rows(rng, 30, 16).T)
    warm = reservoirs.sela(tol=1e-9)
    first = warm.assign(E)
    second = warm.assign(E + 1e-4 * rng.normal(size=E.shape))
    cold = reservoirs.sela(tol=1e-9, warm_start=False).assign(E + 1e-4 * rng.normal(size=E.shape))
    assert second.n_iter < cold.n_iter and first.converged and second.converged
    center = reservoirs.dino()
    lab = center.assign(E)
    assert_allclose(lab.mu, 0.0)  # the first call uses the initial center 0
    assert_allclose(center.center, 0.1 * (-E.mean(axis=0)), rtol=1e-12)
    lab2 = center.assign(E)
    assert_allclose(lab2.mu, -0.1 * (-E.mean(axis=0)), rtol=1e-12)
    assert_allclose(lab2.q, sp.softmax((-E - 0.1 * (-E.mean(axis=0))) / 0.04, axis=1), rtol=1e-10)
    assert_allclose(lab2.charges, lab2.q.mean(axis=0), rtol=1e-12)
    assert repr(reservoirs.swav()) == "SinkhornReservoir(T=0.05, n_iter=3, warm_start=False)"


# ----------------------------------------------------------------------------- ledger
def test_ledger_export_round_trips(tmp_path):
    d = run_cycles(reservoirs.swav(), n_cycles=4)
    ledger = d.ledger
    rows = list(ledger)
    ledger.to_csv(tmp_path / "ledger.csv")
    ledger.to_json(tmp_path / "ledger.json")
    for loaded in (demon.Ledger.from_csv(tmp_path / "ledger.csv"), demon.Ledger.from_json(tmp_path / "ledger.json")):
        assert len(loaded) == len(rows)
        for a, b in zip(loaded, rows):
            assert a.keys() == b.keys()
            for key in a:
                assert (a[key] == b[key]) or (math.isnan(a[key]) and math.isnan(b[key])), key
    table = ledger.to_numpy()
    assert table.dtype.names == demon.LEDGER_FIELDS
    assert table["t"].tolist() == [0, 1, 2, 3]
    required = "t W Q dU F_before F_after dF S_q S_p D_before D_after L_before L_after Sigma I H_N charge_err W_ext eta res_first_law res_D1".split()
    assert set(required) <= set(table.dtype.names)
    bad = dict(rows[0])
    bad["eta"] = math.nan
    nan_ledger = demon.Ledger([bad])
    nan_ledger.to_json(tmp_path / "nan.json")
    assert math.isnan(demon.Ledger.from_json(tmp_path / "nan.json")[0]["eta"])


def test_demon_misuse_raises():
    E = np.random.default_rng(0).normal(size=(10, 4))
    d = demon.Demon(0.1, reservoirs.swav())
    with pytest.raises(RuntimeError, match="before measure"):
        d.feedback(E)
    d.measure(E)
    with pytest.raises(RuntimeError, match="twice"):
        d.measure(E)
    with pytest.raises(ValueError, match="E_after must have shape"):
        d.feedback(E[:5])
    with pytest.raises(TypeError, match="reservoir"):
        demon.Demon(0.1, "sinkhorn")
    with pytest.raises(ValueError, match="momentum"):
        reservoirs.CenteringReservoir(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="must be finite for centering"):
        reservoirs.dino().assign(np.array([[0.0, inf], [1.0, 2.0]]))


# ----------------------------------------------------------------------------- books follow the samples
def _minibatch_run(batches, energies_of, explicit_q_before, T=0.1, lr=0.3):
    """Cycles over minibatches of sample ids; each measurement either by index (the demon's own
    chaining rule) or with q_before given explicitly by ``explicit_q_before(ids, E, last)``, where
    ``last`` maps a sample id to its labels of its last cycle (numpy reference bookkeeping)."""
    d = demon.Demon(T, reservoirs.swav())
    last = {}
    for ids in batches:
        E = energies_of(ids)
        if explicit_q_before is None:
            label = d.measure(E, index=ids)
        else:
            label = d.measure(E, q_before=explicit_q_before(ids, E, last))
        d.feedback(E - lr * (label.q - thermossl.gibbs(E, T)))
        for i, row in zip(ids, label.q):
            last[int(i)] = row.copy()
    return d.ledger.to_numpy()


def _energies(n=120, k=7, seed=5):
    table = np.random.default_rng(seed).normal(size=(n, k))
    return lambda ids: table[ids]


def _gibbs_start(ids, E, last):
    return sp.softmax(-E / 0.1, axis=1)


def _chain_start(ids, E, last):
    q = sp.softmax(-E / 0.1, axis=1)
    for r, i in enumerate(ids):
        if int(i) in last:
            q[r] = last[int(i)]
    return q


def test_changing_minibatches_start_from_gibbs_not_from_the_previous_batch():
    # Disjoint minibatches of one shape: nothing to chain. With index or without, Q and Sigma
    # equal the explicit q_before = gibbs(E, T) accounting — never the previous batch's labels.
    energies = _energies()
    batches = [np.arange(40 * j, 40 * (j + 1)) for j in range(3)]  # disjoint, same shape
    want = _minibatch_run(batches, energies, _gibbs_start)
    got_index = _minibatch_run(batches, energies, None)
    d = demon.Demon(0.1, reservoirs.swav())  # no index at all
    for ids in batches:
        E = energies(ids)
        label = d.measure(E)
        d.feedback(E - 0.3 * (label.q - thermossl.gibbs(E, 0.1)))
    for got in (got_index, d.ledger.to_numpy()):
        assert_allclose(got["Q"], want["Q"], rtol=1e-13, atol=1e-15)
        assert_allclose(got["Sigma"], want["Sigma"], rtol=1e-13, atol=1e-15)
        assert_allclose(got["U_start"], want["U_start"], rtol=1e-13, atol=1e-15)
    # ... and differ from chaining the previous batch's labels by position (the old behaviour).
    by_position = demon.Demon(0.1, reservoirs.swav())
    prev = None
    for ids in batches:
        E = energies(ids)
        label = by_position.measure(E, q_before=prev)
        by_position.feedback(E - 0.3 * (label.q - thermossl.gibbs(E, 0.1)))
        prev = label.q
    assert np.max(np.abs(by_position.ledger.column("Q")[1:] - want["Q"][1:])) > 1e-3


def test_no_index_never_chains_even_for_the_same_samples():
    energies = _energies()
    ids = np.arange(50)
    d = demon.Demon(0.1, reservoirs.swav())
    for _ in range(3):
        E = energies(ids)
        label = d.measure(E)
        d.feedback(E - 0.3 * (label.q - thermossl.gibbs(E, 0.1)))
    want = _minibatch_run([ids] * 3, energies, _gibbs_start)
    assert_allclose(d.ledger.column("Q"), want["Q"], rtol=1e-13, atol=1e-15)


def test_repeated_indices_chain_from_the_samples_last_labels():
    # The same ids in another order each cycle, and a batch size that changes: the demon's chain
    # equals explicit q_before = those samples' labels of their last cycle.
    rng = np.random.default_rng(1)
    energies = _energies(n=60)
    batches = [rng.permutation(60), rng.permutation(60), rng.permutation(60)[:45], rng.permutation(60)]
    want = _minibatch_run(batches, energies, _chain_start)
    got = _minibatch_run(batches, energies, None)
    for field in ("Q", "Sigma", "U_start", "res_E2", "W"):
        assert_allclose(got[field], want[field], rtol=1e-12, atol=1e-14, err_msg=field)
    # Chaining matters here: the Gibbs-start books differ.
    gibbs_books = _minibatch_run(batches, energies, _gibbs_start)
    assert np.max(np.abs(gibbs_books["Q"][1:] - want["Q"][1:])) > 1e-3
    # The chained books still close, and Sigma = D(q_prev || q_t) >= 0.
    assert np.max(np.abs(got["res_E2"])) < 1e-12 and np.all(got["Sigma"] >= -1e-12)


def test_partially_overlapping_ids_chain_only_the_samples_seen_before():
    rng = np.random.default_rng(2)
    energies = _energies(n=100)
    batches = [np.arange(0, 40), np.arange(20, 60), rng.permutation(np.arange(50, 100))[:35],
               np.concatenate((np.arange(90, 100), np.arange(0, 10)))]
    want = _minibatch_run(batches, energies, _chain_start)
    got = _minibatch_run(batches, energies, None)
    for field in ("Q", "Sigma", "U_start", "W", "res_E2"):
        assert_allclose(got[field], want[field], rtol=1e-12, atol=1e-14, err_msg=field)


def test_index_validation_and_reset():
    E = np.random.default_rng(0).normal(size=(6, 3))
    d = demon.Demon(0.1, reservoirs.swav())
    with pytest.raises(ValueError, match=r"index must have shape \(6,\)"):
        d.measure(E, index=np.arange(5))
    with pytest.raises(TypeError, match="index must be an array of integer"):
        d.measure(E, index=np.linspace(0, 1, 6))
    with pytest.raises(ValueError, match="index must not repeat"):
        d.measure(E, index=np.array([0, 1, 2, 3, 4, 4]))
    d.measure(E, index=np.arange(6))
    d.feedback(E)
    with pytest.raises(ValueError, match="call reset"):  # other number of states, same ids
        d.measure(np.zeros((6, 4)), index=np.arange(6))
    d.reset()
    label = d.measure(E, index=np.arange(6))  # after reset: from the Gibbs state again
    assert d._pending["U_start"] == pytest.approx(thermo.energy(thermossl.gibbs(E, 0.1), E), rel=1e-13)
    assert label.q.shape == (6, 3)
    index = np.arange(6)
    d.feedback(E)
    d.measure(E, index=index)
    assert_array_equal(index, np.arange(6))  # the caller's ids are not modified


def test_centering_batch_mean_dtypes_float32_scores():
    # DINO's center from float32 scores: the weighted batch mean is the float32 product w . E
    # (w cast to E's dtype: one pass, no float64 copy of E), the unweighted one numpy's mean
    # accumulated in float64; the center itself is float64. Checked bitwise against both and
    # against the other precision (which gives a different center on these data), so a change
    # of the accumulation dtype is caught.
    rng = np.random.default_rng(51)
    E = (3 + rng.normal(size=(257, 9))).astype(np.float32)
    w = rng.uniform(0.1, 2.0, 257)
    w /= w.sum()
    weighted = reservoirs.CenteringReservoir(0.1, momentum=0.5)
    weighted.assign(E, w)
    as_float32 = -(w.astype(np.float32) @ E).astype(np.float64)
    as_float64 = -(w @ E.astype(np.float64))
    assert weighted.center.dtype == np.float64
    assert_array_equal(weighted.center, 0.5 * as_float32)
    assert not np.array_equal(weighted.center, 0.5 * as_float64)
    assert_allclose(weighted.center, 0.5 * as_float64, rtol=1e-6)
    plain = reservoirs.CenteringReservoir(0.1, momentum=0.5)
    plain.assign(E)
    assert plain.center.dtype == np.float64
    assert_array_equal(plain.center, 0.5 * -E.mean(axis=0, dtype=np.float64))
    assert not np.array_equal(plain.center, 0.5 * -E.mean(axis=0).astype(np.float64))
