"""LedgerRecorder: the demon's books of a torch training loop equal thermossl.demon.Demon's on the
same energies and labels, close to rounding (THEORY.md §4-5), every=k, the losses' recorder=."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import thermossl  # noqa: E402
import thermossl.torch as tt  # noqa: E402
from thermossl.demon import Demon, Ledger  # noqa: E402


def model_and_data(seed=0, n=64, d=8, k=6):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(2 * n, d, generator=g, dtype=torch.float64)
    P = torch.nn.Parameter(torch.randn(k, d, generator=g, dtype=torch.float64))
    return X, P


def scores_of(X, P):
    return torch.nn.functional.normalize(X, dim=1) @ torch.nn.functional.normalize(P, dim=1).t() * 2


def test_swav_loop_books_equal_the_numpy_demon_and_close():
    X, P = model_and_data()
    n = X.shape[0] // 2
    opt = torch.optim.SGD([P], lr=0.5)
    recorder = tt.LedgerRecorder(T=0.1, reservoir=thermossl.reservoirs.swav())
    loss_fn = tt.SwAVLoss(recorder=recorder, keep_codes=True)
    reference = Demon(0.1, thermossl.reservoirs.swav())
    for _ in range(5):
        out = scores_of(X, P)
        loss = loss_fn(out)  # measures on crop 0's codes
        # the same measurement by hand, on numpy: the reservoir's own Sinkhorn on E = -scores
        E_a = -out[:n].detach().numpy()
        label = reference.measure(E_a, q_before=thermossl.gibbs(E_a, 0.1))
        np.testing.assert_allclose(label.q, loss_fn.last_codes[:n].numpy(), rtol=1e-10, atol=1e-12)
        before_b = out[n:].detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            after = scores_of(X, P)
        row = recorder.feedback(after[n:], scores_before=before_b)  # swapped: work on view b
        ref_row = reference.feedback(-after[n:].numpy(), E_before=-before_b.numpy())
        for field in Ledger.fields:
            assert row[field] == pytest.approx(ref_row[field], rel=1e-9, abs=1e-12), field
        for res in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2"):
            assert abs(row[res]) < 1e-10, res
    assert len(recorder.ledger) == 5 and isinstance(recorder.ledger, Ledger)
    assert recorder.work_per_sample.shape == (n,)


def test_every_k_records_one_cycle_in_k_and_skips_the_rest():
    X, P = model_and_data(1)
    recorder = tt.LedgerRecorder(T=0.1, every=3)
    recorded = []
    for step in range(7):
        out = scores_of(X, P).detach()
        label = recorder.measure(out)
        recorded.append(recorder.recording)
        assert (label is None) == (step % 3 != 0)
        with torch.no_grad():
            P -= 0.01
        row = recorder.feedback(scores_of(X, P).detach())
        assert (row is None) == (step % 3 != 0)
    assert recorded == [True, False, False, True, False, False, True]
    assert len(recorder.ledger) == 3 and [r["t"] for r in recorder.ledger] == [0, 1, 2]


def test_given_codes_without_potentials_estimate_mu_exactly_for_a_gge():
    X, P = model_and_data(2)
    out = scores_of(X, P).detach()
    res = thermossl.sinkhorn(-out.numpy(), 0.05, n_iter=3)
    rec = tt.LedgerRecorder(T=0.1, reservoir=thermossl.reservoirs.swav())
    label = rec.measure(out, torch.from_numpy(res.q))
    np.testing.assert_allclose(label.mu, res.mu - res.mu.mean(), atol=1e-9)
    row = rec.feedback(out * 1.01)
    assert abs(row["res_E2"]) < 1e-9 and abs(row["res_first_law"]) < 1e-12


def test_dino_recorder_measures_the_teacher_labels():
    g = torch.Generator().manual_seed(3)
    K, B = 10, 32
    rec = tt.LedgerRecorder(T=0.1, reservoir=thermossl.reservoirs.dino())
    loss = tt.DINOLoss(K, 2, 0.04, 0.04, 0, 3, recorder=rec)
    for epoch in range(3):
        s = torch.randn(2 * B, K, generator=g, dtype=torch.float64)
        t = torch.randn(2 * B, K, generator=g, dtype=torch.float64)
        loss(s.float(), t.float(), epoch)
        assert rec.recording
        row = rec.feedback(s[B:].float() * 0.9, scores_before=s[B:].float())
        # float32 energies: the books close to float32 rounding; E2 holds exactly as mu = -C
        assert abs(row["res_first_law"]) < 1e-5 and abs(row["res_E2"]) < 1e-4 and abs(row["res_D1"]) < 1e-4
    assert len(rec.ledger) == 3


def test_index_is_passed_on_only_when_given(monkeypatch):
    """With index= the recorder chains labels through Demon's general path; without it, its
    own fused passes (Demon.measure is not called)."""
    rec = tt.LedgerRecorder(T=0.1)
    seen = {}

    def measure(E, q_before=None, **kwargs):
        seen.update(kwargs, q_before=q_before)
        return "label"

    monkeypatch.setattr(rec.demon, "measure", measure)
    out = torch.randn(8, 4)
    rec.measure(out, index=np.arange(8))
    assert "index" in seen and seen["q_before"] is None
    rec._pending = None
    seen.clear()
    label = rec.measure(out)
    assert not seen and label.q.shape == (8, 4)


def test_recorder_errors():
    rec = tt.LedgerRecorder(T=0.1)
    with pytest.raises(ValueError, match="every"):
        tt.LedgerRecorder(T=0.1, every=0)
    with pytest.raises(ValueError, match="codes must have the shape"):
        rec.measure(torch.randn(8, 4), torch.ones(8, 3) / 3)
    rec.measure(torch.randn(8, 4))
    with pytest.raises(RuntimeError, match="twice"):
        rec.measure(torch.randn(8, 4))
    assert rec.feedback(torch.randn(8, 4)) is not None
    assert rec.feedback(torch.randn(8, 4)) is None  # nothing pending
    assert math.isfinite(rec.ledger[0]["W"])


def test_readme_torch_example_runs(monkeypatch, tmp_path):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"<!-- torch-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its PyTorch example"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    ledger = namespace["recorder"].ledger
    assert len(ledger) == 5
    assert np.max(np.abs(ledger.column("res_first_law"))) < 1e-5


# ----------------------------------------------------------------------------- deferred books (the CUDA mode)
def _swav_cycles(rec, steps=4, seed=5, dtype=torch.float64):
    """A SwAV-like loop driving measure/feedback directly (codes, mu and log Z from Sinkhorn)."""
    X, P = model_and_data(seed)
    n = X.shape[0] // 2
    for step in range(steps):
        out = scores_of(X, P).detach().to(dtype)
        res = tt.sinkhorn(out[:n], 0.05, n_iter=3, energy_sign=-1)
        rec.measure(out[:n], res.q, mu=res.mu, T_label=0.05, charge_err=0.0, log_z_label=-res.f.double() / 0.05)
        with torch.no_grad():
            P -= 0.05 * torch.sin(P + step)
        rec.feedback(scores_of(X, P).detach().to(dtype)[n:], scores_before=out[n:])


class _NoHostSync:
    """Makes every tensor -> host scalar/array transfer raise (the synchronisations a CUDA step
    would pay): .item(), float(), bool(), .tolist(), .cpu() — except while ``allowed()`` (the
    recorder's batch copy)."""

    def __init__(self, monkeypatch, allowed):
        self.monkeypatch = monkeypatch
        self.allowed = allowed

    def __enter__(self):
        for name in ("item", "__float__", "__bool__", "tolist", "cpu"):
            original = getattr(torch.Tensor, name)

            def guarded(*args, _original=original, **kwargs):
                if not self.allowed():
                    raise AssertionError("a host synchronisation inside a deferred step")
                return _original(*args, **kwargs)

            self.monkeypatch.setattr(torch.Tensor, name, guarded)
        return self

    def __exit__(self, *exc):
        self.monkeypatch.undo()
        return False


def test_deferred_books_equal_the_immediate_ones_and_copy_in_batches(monkeypatch):
    """deferred=True (what CUDA tensors get by default) keeps each cycle's sums on the tensors'
    device: no host synchronisation inside measure/feedback, the rows reach the ledger in one
    copy per flush (reading ``ledger``, or every ``flush_every`` cycles), equal to the rows of
    the immediate mode."""
    immediate = tt.LedgerRecorder(T=0.1)
    _swav_cycles(immediate)
    deferred = tt.LedgerRecorder(T=0.1, deferred=True, flush_every=3)
    flushes = []
    flushing = [False]
    original = deferred.flush

    def counted():
        flushes.append(len(deferred._queue))
        flushing[0] = True
        try:
            original()
        finally:
            flushing[0] = False

    deferred.flush = counted
    with _NoHostSync(monkeypatch, allowed=lambda: flushing[0]):
        _swav_cycles(deferred, steps=2)
        assert len(deferred.demon.ledger) == 0 and len(deferred._queue) == 2  # nothing copied yet
        _swav_cycles(deferred, steps=2)  # the third cycle reaches flush_every: one batch copy
    assert flushes[0] == 3 and len(deferred.demon.ledger) == 3 and len(deferred._queue) == 1
    rows = deferred.ledger  # reading the books flushes the rest
    assert len(rows) == 4 and not deferred._queue
    # the same loop twice from the same seed: cycles 0-1 and 2-3 repeat the immediate 0-1
    for got, want in zip(rows, list(immediate.ledger)[:2] * 2):
        for field in Ledger.fields:
            if field == "t":
                continue
            assert got[field] == pytest.approx(want[field], rel=1e-12, abs=1e-14), field
    assert [r["t"] for r in rows] == [0, 1, 2, 3]


def test_recorder_books_equal_the_demon_in_float32():
    """float32 scores: the recorder's fused passes give the Demon's books to float32 rounding."""
    rec = tt.LedgerRecorder(T=0.1)
    X, P = model_and_data(9, n=256, k=50)
    out = scores_of(X, P).detach().float()
    res = tt.sinkhorn(out, 0.05, n_iter=3, energy_sign=-1)
    label = rec.measure(out, res.q, mu=res.mu, T_label=0.05, log_z_label=-res.f.double() / 0.05)
    after = out * 0.97 + 0.01
    row = rec.feedback(after)
    reference = Demon(0.1, thermossl.reservoirs.swav())
    E = -out.numpy()
    reference._labels = None
    ref_label = thermossl.reservoirs.LabelState(q=res.q.numpy(), mu=label.mu, charges=label.charges,
                                                charge_err=label.charge_err, T=0.05, method="given")
    reference.reservoir = type("Given", (thermossl.reservoirs.Reservoir,), {
        "T": 0.05, "assign": lambda self, E, w=None: ref_label})()
    reference.measure(E, q_before=thermossl.gibbs(E, 0.1))
    ref_row = reference.feedback(-after.numpy())
    for field in Ledger.fields:
        assert row[field] == pytest.approx(ref_row[field], rel=2e-4, abs=2e-5), field
    assert abs(row["res_first_law"]) < 1e-5 and abs(row["res_E2"]) < 1e-4


def test_deferred_flush_names_a_bad_cycle():
    rec = tt.LedgerRecorder(T=0.1, deferred=True)
    s = torch.randn(16, 5, dtype=torch.float64)
    q = torch.softmax(torch.randn(16, 5, dtype=torch.float64), 1)
    q[3, 1] = float("nan")
    rec.measure(s, q, mu=torch.zeros(5))
    assert rec.feedback(s * 1.01) is None  # deferred: the row comes with the next flush
    with pytest.raises(ValueError, match="cycle 0 has non-finite sums"):
        rec.flush()
