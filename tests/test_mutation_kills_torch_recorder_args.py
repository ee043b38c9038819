"""LedgerRecorder's and SeLaLabels' argument handling: messages, dtypes of codes and potentials,
the initial state (issue 20, mutation testing of thermossl.torch). Values against numpy."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import thermossl.torch as tt  # noqa: E402
from thermossl import reservoirs  # noqa: E402
from test_reference_ledger import T, SinkhornLabels, reference_run  # noqa: E402
from test_mutation_kills_torch_recorder import FIELDS, B, K, overlapping_cycles  # noqa: E402


def exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


def gge(E, Tl, mu):
    x = (mu - E) / Tl
    x = x - x.max(axis=1, keepdims=True)
    p = np.exp(x)
    return p / p.sum(axis=1, keepdims=True)


def estimate(q, E, Tl):
    """The documented estimate of mu from codes: mean_i (T' log q_iy + E_iy) over the finite
    terms (0 where a state has none), in the gauge mean_y mu_y = 0 (float64 numpy)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = Tl * np.log(q.astype(np.float64)) + E
    finite = np.isfinite(terms)
    count = finite.sum(axis=0)
    mu = np.where(count > 0, np.where(finite, terms, 0.0).sum(axis=0) / np.maximum(count, 1), 0.0)
    return mu - mu.mean()


# ----------------------------------------------------------------------------- messages
@pytest.mark.parametrize("index", [None, np.arange(4)])
def test_scores_and_codes_that_are_not_tensors_are_named(index):
    rec = tt.LedgerRecorder(T=0.1)
    exactly(TypeError, "scores must be a torch.Tensor, got list", rec.measure, [[0.0] * 3] * 4, index=index)
    exactly(ValueError, "scores must be 2-D (batch, prototypes), got ndim=3", rec.measure, torch.zeros(4, 3, 1),
            index=index)
    exactly(TypeError, "codes must be a torch.Tensor, got ndarray", rec.measure, torch.zeros(4, 3),
            np.full((4, 3), 1 / 3), index=index)


def test_sela_labels_before_an_update():
    sela = tt.SeLaLabels()
    assert sela.q is None and sela.mu is None and sela.n_iter == 0 and math.isnan(sela.err)
    assert sela.converged is False
    for call in (sela.labels, lambda: sela.targets([0])):
        exactly(RuntimeError, "SeLaLabels has no labels yet: call update(scores) first", call)


def test_sela_hard_labels_of_every_sample():
    g = torch.Generator().manual_seed(3)
    sela = tt.SeLaLabels()
    q = sela.update(torch.randn(30, 5, generator=g, dtype=torch.float64))
    labels = sela.labels()
    assert labels.shape == (30,) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), q.numpy().argmax(axis=1))


# ----------------------------------------------------------------------------- half-precision scores
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_scores_are_booked_as_their_float32_values(dtype):
    """Half scores are read as float32: the books equal those of the same values given as float32."""
    rng = np.random.default_rng(4)
    s = torch.from_numpy(rng.normal(size=(B, K))).to(dtype)
    s_after = torch.from_numpy(rng.normal(size=(B, K))).to(dtype)
    codes = torch.from_numpy(gge(-s.double().numpy(), 0.1, np.zeros(K)))
    for index in (None, np.arange(B)):
        half = tt.LedgerRecorder(T=T)
        half.measure(s, codes.to(torch.float32), index=index)
        row = half.feedback(s_after)
        single = tt.LedgerRecorder(T=T)
        single.measure(s.float(), codes.to(torch.float32), index=index)
        want = single.feedback(s_after.float())
        for f in FIELDS:
            assert row[f] == pytest.approx(want[f], rel=1e-12, abs=1e-12) or (math.isnan(row[f]) and math.isnan(want[f])), f


# ----------------------------------------------------------------------------- given codes (index=)
def test_float32_codes_and_potentials_are_taken_in_float64():
    """Codes and mu in float32: the label state's charges, the estimated mu and the given mu are
    float64 computations on the float32 values (numpy), not float32 ones."""
    rng = np.random.default_rng(5)
    E = rng.normal(size=(B, K))
    Tl = 0.07
    q32 = gge(E, Tl, rng.normal(scale=0.1, size=K)).astype(np.float32)
    q64 = q32.astype(np.float64)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl))
    label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q32), index=np.arange(B))
    np.testing.assert_allclose(label.charges, q64.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(label.mu, estimate(q64, E, Tl), rtol=0, atol=1e-14)
    rec.feedback(torch.from_numpy(-E))
    mu32 = (rng.normal(size=K) * 0.37).astype(np.float32)
    for mu in (torch.from_numpy(mu32), mu32, list(mu32.astype(np.float64))):
        label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q32), index=np.arange(B), mu=mu)
        centered = mu32.astype(np.float64) - mu32.astype(np.float64).mean()
        np.testing.assert_allclose(label.mu, centered, rtol=0, atol=1e-16)
        row = rec.feedback(torch.from_numpy(-E))
        assert row["mu_min"] == centered.min() and row["mu_max"] == centered.max()


def test_float64_codes_are_not_rounded_to_float32():
    rng = np.random.default_rng(6)
    E = rng.normal(size=(B, K))
    q = gge(E, 0.05, np.zeros(K))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=0.05))
    label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=np.arange(B))
    assert label.q.dtype == np.float64
    np.testing.assert_array_equal(label.q, q)
    np.testing.assert_allclose(label.mu, estimate(q, E, 0.05), rtol=0, atol=1e-13)


def test_half_codes_are_read_as_float32():
    rng = np.random.default_rng(7)
    E = rng.normal(size=(B, K))
    row = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0])  # sums to 1 exactly in float16
    q16 = torch.from_numpy(np.stack([np.roll(row, i) for i in range(B)])).to(torch.float16)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=0.05))
    label = rec.measure(torch.from_numpy(-E), q16, index=np.arange(B))
    assert label.q.dtype == np.float32
    np.testing.assert_array_equal(label.q, q16.float().numpy())


def test_an_empty_state_estimates_mu_zero_and_warns_nothing_of_log_zero():
    """Codes with a state no sample occupies (and a zero elsewhere): log 0 is silent, the empty
    state's estimate is 0 before the gauge, the others the documented estimate."""
    rng = np.random.default_rng(8)
    E = rng.normal(size=(B, K))
    q = gge(E, 0.1, np.zeros(K))
    q[:, 2] = 0.0
    q[5, 4] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message="Mean of empty slice")  # numpy's, for the empty state
        label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=np.arange(B))
    np.testing.assert_allclose(label.mu, estimate(q, E, 0.1), rtol=0, atol=1e-13)


@pytest.mark.parametrize("index", [False, True])
def test_the_reservoirs_labels_use_the_fixed_weights(index):
    """No codes, fixed sample weights: the reservoir balances the weighted charges (SeLa to
    tolerance), in Demon's path (index=) as in the fused one — the reference's books."""
    Tl = 0.1
    w = np.random.default_rng(9).uniform(0.2, 1.8, B)
    w /= w.sum()
    cycles = overlapping_cycles(11, steps=3)
    rows, _, _, labels = reference_run(cycles, w, SinkhornLabels(Tl), chain=index)
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=Tl, tol=1e-13), w=w)
    for (ids, E, _, E_a), (q, _) in zip(cycles, labels):
        label = rec.measure(torch.from_numpy(-E), index=ids if index else None)
        np.testing.assert_allclose(label.q, q, rtol=0, atol=1e-10)
        rec.feedback(torch.from_numpy(-E_a))
    for got, want in zip(rec.ledger, rows):
        for f in ("U_start", "U_measured", "Q", "S_q", "W", "Sigma", "H_N"):
            assert got[f] == pytest.approx(want[f], rel=1e-9, abs=1e-12), f


def test_repr_counts_the_deferred_cycles():
    rng = np.random.default_rng(10)
    rec = tt.LedgerRecorder(T=0.5, every=3, deferred=True, flush_every=10)
    for _ in range(2):
        rec.measure(torch.from_numpy(rng.normal(size=(B, K))))
        rec.feedback(torch.from_numpy(rng.normal(size=(B, K))))
        for _ in range(2):
            assert rec.measure(torch.from_numpy(rng.normal(size=(B, K)))) is None
    assert len(rec.demon.ledger) == 0 and rec.steps == 6
    assert repr(rec) == "LedgerRecorder(T=0.5, every=3, cycles=2)"
    assert len(rec.ledger) == 2 and repr(rec) == "LedgerRecorder(T=0.5, every=3, cycles=2)"


def test_a_second_measure_without_feedback_is_refused_with_its_message():
    rec = tt.LedgerRecorder(T=0.1)
    rec.measure(torch.zeros(4, 3))
    exactly(RuntimeError, "measure() called twice without feedback(): complete the recorded cycle first",
            rec.measure, torch.zeros(4, 3))


def test_float32_scores_get_the_reservoirs_labels_in_float32():
    """No codes, float32 scores: the reservoir's labels come back in the scores' dtype and the
    books match the float64 books of the same values to float32 rounding."""
    rng = np.random.default_rng(12)
    s = rng.normal(size=(B, K)).astype(np.float32)
    s_after = rng.normal(size=(B, K)).astype(np.float32)
    rec32 = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=0.1, tol=1e-6))
    label = rec32.measure(torch.from_numpy(s))
    assert label.q.dtype == np.float32
    row32 = rec32.feedback(torch.from_numpy(s_after))
    rec64 = tt.LedgerRecorder(T=T, reservoir=reservoirs.sela(T=0.1, tol=1e-6))
    rec64.measure(torch.from_numpy(s.astype(np.float64)))
    row64 = rec64.feedback(torch.from_numpy(s_after.astype(np.float64)))
    for f in ("U_measured", "W", "S_q", "D_before"):
        assert row32[f] == pytest.approx(row64[f], rel=1e-4, abs=1e-5), f


@pytest.mark.parametrize("index", [None, np.arange(B)])
def test_a_given_charge_error_is_booked_as_given(index):
    rng = np.random.default_rng(13)
    E = rng.normal(size=(B, K))
    q = gge(E, 0.1, np.zeros(K))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=0.1))
    label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=index, charge_err=0.125)
    assert label.charge_err == 0.125
    assert rec.feedback(torch.from_numpy(-E))["charge_err"] == 0.125
