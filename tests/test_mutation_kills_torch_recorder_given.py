"""LedgerRecorder's given labels on the chained path (``index=``): the potentials estimated from
codes that are 0 at forbidden states without a numpy warning, and potentials given as a tensor
that requires grad (issue 20, mutation testing of thermossl.torch)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import thermossl.torch as tt  # noqa: E402
from thermossl import reservoirs  # noqa: E402
from test_mutation_kills_torch_recorder import B, CenteredLabels, overlapping_cycles, uniform  # noqa: E402
from test_reference_ledger import T, SinkhornLabels, reference_run  # noqa: E402


def test_codes_zero_at_forbidden_states_give_their_estimate_without_a_warning():
    """E = inf where the codes are 0: T' log 0 + inf is nan, dropped from the estimate of mu;
    numpy's "invalid value" warning for it is not the user's business (warnings are errors here)."""
    Tl = 0.08
    cycles = overlapping_cycles(2, forbidden=True)
    assert any(np.isinf(E).any() for _, E, _, _ in cycles)
    _, _, _, labels = reference_run(cycles, uniform(B), CenteredLabels(SinkhornLabels(Tl, n_iter=4)))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=Tl))
    for (ids, E, _, E_after), (q, _) in zip(cycles, labels):
        assert (q[np.isinf(E)] == 0).all()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=ids)
        allowed = np.isfinite(E)
        terms = np.where(allowed, Tl * np.log(np.where(allowed, q, 1.0)) + np.where(allowed, E, 0.0), 0.0)
        estimate = terms.sum(axis=0) / allowed.sum(axis=0)
        np.testing.assert_allclose(label.mu, estimate - estimate.mean(), rtol=0, atol=1e-9)
        rec.feedback(torch.from_numpy(-E_after))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_potentials_given_as_a_tensor_that_requires_grad(dtype):
    """mu from a model (a tensor in the autograd graph) is read without its graph, in float64."""
    Tl = 0.07
    cycles = overlapping_cycles(1)
    _, _, _, labels = reference_run(cycles, uniform(B), CenteredLabels(SinkhornLabels(Tl)))
    rec = tt.LedgerRecorder(T=T, reservoir=reservoirs.swav(T=0.5))
    (ids, E, _, E_after), (q, mu) = cycles[0], labels[0]
    given = torch.tensor(mu + 0.25, dtype=dtype, requires_grad=True)  # off the gauge: centred on booking
    label = rec.measure(torch.from_numpy(-E), torch.from_numpy(q), index=ids, mu=given, T_label=Tl)
    assert label.mu.dtype == np.float64
    expected = given.detach().double().numpy()
    np.testing.assert_allclose(label.mu, expected - expected.mean(), rtol=0, atol=1e-15)
    assert given.requires_grad and given.grad is None


NON_FINITE = ("LedgerRecorder: cycle 0 has non-finite sums (nan or infinite scores, or codes that are not a label "
              "state: rows of nonnegative numbers summing to 1)")


@pytest.mark.parametrize("bad_row", [0, 5])
def test_a_nan_in_the_scores_after_the_step_is_refused_with_its_message(bad_row):
    """The measurement is finite (and its charges); only the feedback's sums (the work and the
    books after the step) are not: the cycle is refused, not booked."""
    g = torch.Generator().manual_seed(4)
    s = torch.randn(8, 5, generator=g, dtype=torch.float64)
    codes = torch.softmax(torch.randn(8, 5, generator=g, dtype=torch.float64), 1)
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.5))
    rec.measure(s, codes)
    after = s + 0.1
    after[bad_row, 2] = float("nan")
    with pytest.raises(ValueError) as info:
        rec.feedback(after)
    assert str(info.value) == NON_FINITE
    assert len(rec.ledger) == 0


def estimated_mu(q, E, T_label):
    """mu_y = mean over the rows allowed for y of (T' log q_iy + E_iy), 0 for a state forbidden in
    every row, in the gauge mean_y mu_y = 0 (numpy, float64, from the given values)."""
    q, E = np.asarray(q, dtype=np.float64), np.asarray(E, dtype=np.float64)
    allowed = np.isfinite(E) & (q > 0)
    terms = np.where(allowed, T_label * np.log(np.where(allowed, q, 1.0)) + np.where(allowed, E, 0.0), 0.0)
    count = allowed.sum(axis=0)
    mu = np.where(count > 0, terms.sum(axis=0) / np.maximum(count, 1), 0.0)
    return mu - mu.mean()


def test_float32_codes_get_their_potentials_estimated_in_float64():
    """Fused path, float32 scores and codes: the logs of the codes are taken in float64 (a float32
    log would move mu by ~1e-7)."""
    g = torch.Generator().manual_seed(7)
    s = torch.randn(12, 5, generator=g, dtype=torch.float64).float()
    codes = torch.softmax(torch.randn(12, 5, generator=g, dtype=torch.float64) * 3, 1).float()
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
    label = rec.measure(s, codes)
    np.testing.assert_allclose(label.mu, estimated_mu(codes.numpy(), -s.numpy(), 0.3), rtol=0, atol=1e-12)


def test_a_state_forbidden_in_every_row_gets_potential_zero_before_the_gauge():
    g = torch.Generator().manual_seed(8)
    s = torch.randn(10, 4, generator=g, dtype=torch.float64)
    s[:, 2] = -float("inf")  # E = +inf: forbidden for every sample
    codes = torch.softmax(s * 2, 1)
    assert bool((codes[:, 2] == 0).all())
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
    label = rec.measure(s, codes)
    expected = estimated_mu(codes.numpy(), -s.numpy(), 0.3)
    np.testing.assert_allclose(label.mu, expected, rtol=0, atol=1e-12)


def test_float32_scores_with_sample_weights_book_the_weighted_charges():
    """Fixed sample weights (float64) with float32 scores: the ledger pass gets them in the
    scores' dtype; the booked charges are sum_i w_i q_iy."""
    g = torch.Generator().manual_seed(9)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64).float()
    codes = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1).float()
    w = np.linspace(1.0, 2.0, 6)
    w /= w.sum()
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3), w=w)
    rec.measure(s, codes)
    row = rec.feedback(s + 0.01)
    charges = w @ codes.double().numpy()
    assert row["charge_err"] == pytest.approx(float(np.abs(charges - 0.25).sum()), rel=1e-6)


def test_a_float32_log_z_of_the_labels_is_booked_as_its_float64_values():
    """log Z of the labels' GGE handed over in float32 (a float32 loss) enters the books as the
    same numbers in float64: the gauge shift is subtracted in float64, not rounded to float32."""
    g = torch.Generator().manual_seed(10)
    s = torch.randn(8, 5, generator=g, dtype=torch.float64)
    mu = torch.linspace(-0.4, 0.9, 5, dtype=torch.float64)  # mean 0.25: a gauge shift to subtract
    T_label = 0.3
    codes = torch.softmax((s + mu) / T_label, 1)
    lz32 = torch.logsumexp((s + mu) / T_label, 1).float()
    books = []
    for lz in (lz32, lz32.double()):
        rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
        rec.measure(s, codes, mu=mu, T_label=T_label, log_z_label=lz)
        books.append(rec.feedback(s + 0.05))
    for field in ("res_E2", "Sigma", "Q"):  # res_E2 = Sigma - D(p || GGE(T', mu))
        assert books[0][field] == pytest.approx(books[1][field], rel=1e-13, abs=1e-13), field


def test_the_label_state_of_cpu_scores_holds_numpy_charges_and_a_float_error():
    """On the CPU (not deferred) the label state handed back holds host values: the charges as a
    float64 numpy array, the charge error as a float."""
    g = torch.Generator().manual_seed(11)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64)
    codes = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
    label = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3)).measure(s, codes)
    assert type(label.charges) is np.ndarray and label.charges.dtype == np.float64
    np.testing.assert_allclose(label.charges, codes.mean(0).numpy(), rtol=1e-14)
    assert type(label.charge_err) is float
    assert label.charge_err == pytest.approx(float((codes.mean(0) - 0.25).abs().sum()), rel=1e-12)


def test_chained_feedback_takes_the_scores_before_the_step_when_given():
    """Demon's path (index=): the work of the step is sum_i w_i q_i . (E_after - E_before) with
    E_before from ``scores_before`` when given (not the measured scores)."""
    g = torch.Generator().manual_seed(12)
    s, s_before = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    s_after = s_before + 0.2 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    codes = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
    rec.measure(s, codes, index=np.arange(6))
    row = rec.feedback(s_after, s_before)
    work = float(-(codes * (s_after - s_before)).sum(1).mean())
    assert row["W"] == pytest.approx(work, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("name", ["scores_after", "scores_before"])
def test_chained_feedback_names_the_scores_it_refuses(name):
    g = torch.Generator().manual_seed(13)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64)
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
    rec.measure(s, torch.softmax(s, 1), index=np.arange(6))
    args = {"scores_after": s + 0.1, "scores_before": s, name: s[0]}
    with pytest.raises(ValueError) as info:
        rec.feedback(args["scores_after"], args["scores_before"])
    assert str(info.value) == f"{name} must be 2-D (batch, prototypes), got ndim=1"


def test_fused_feedback_names_the_scores_it_refuses():
    s = torch.randn(6, 4, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
    rec.measure(s, torch.softmax(s, 1))
    with pytest.raises(ValueError) as info:
        rec.feedback(s[0])
    assert str(info.value) == "scores_after must be 2-D (batch, prototypes), got ndim=1"
