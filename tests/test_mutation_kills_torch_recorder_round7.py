"""LedgerRecorder: what the first full mutation run of thermossl/torch/recorder.py (issue 20)
found unchecked: the constructor's messages and defaults, the per-sample views before any cycle,
the fused feedback's messages, the measured dtype of later scores, and labels from a reservoir
without potentials (DINO's centering) against the numpy Demon."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import thermossl.torch as tt  # noqa: E402
from thermossl import reservoirs  # noqa: E402
from thermossl.demon import Demon  # noqa: E402


def exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc and str(info.value) == message


def scores(n, k, seed, dtype=torch.float64):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("kwargs,message", [
    (dict(every=0), "every must be an int >= 1, got 0"),
    (dict(every=True), "every must be an int >= 1, got True"),
    (dict(every=2.0), "every must be an int >= 1, got 2.0"),
    (dict(flush_every=0), "flush_every must be an int >= 1, got 0"),
    (dict(flush_every=True), "flush_every must be an int >= 1, got True"),
    (dict(flush_every=64.0), "flush_every must be an int >= 1, got 64.0"),
])
def test_constructor_refuses_with_the_argument_named(kwargs, message):
    exactly(ValueError, message, tt.LedgerRecorder, T=0.1, **kwargs)


def test_deferred_books_are_copied_every_64_cycles_by_default():
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3), deferred=True)
    assert rec.flush_every == 64 and rec.every == 1
    s = scores(6, 4, seed=1)
    for cycle in range(64):
        rec.measure(s)
        assert rec.feedback(s * 1.01) is None
        assert len(rec.demon.ledger) == (64 if cycle == 63 else 0), cycle


def test_per_sample_views_before_any_cycle_and_after_reset_are_the_demons():
    rec = tt.LedgerRecorder(T=0.5)
    assert rec.work_per_sample is None and rec.heat_per_sample is None
    s = scores(6, 4, seed=2)
    rec.measure(s)
    rec.feedback(s * 1.01)
    assert rec.work_per_sample.shape == (6,) and rec.heat_per_sample.shape == (6,)
    rec.reset()
    assert rec.work_per_sample is None and rec.heat_per_sample is None


def test_fused_feedback_refuses_scores_of_another_shape_by_name():
    s = scores(6, 4, seed=3)
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
    rec.measure(s, torch.softmax(s, 1))
    exactly(ValueError, "scores_after must have the shape of the measured scores (6, 4), got (5, 4)",
            rec.feedback, s[:5])
    exactly(ValueError, "scores_before must have the shape of the measured scores (6, 4), got (6, 3)",
            rec.feedback, s, s[:, :3])
    exactly(ValueError, "scores_before must be 2-D (batch, prototypes), got ndim=1", rec.feedback, s, s[0])
    exactly(TypeError, "scores_before must be a torch.Tensor, got ndarray", rec.feedback, s, s.numpy())
    assert rec.feedback(s * 1.01) is not None  # the refusals left the measurement pending


def test_later_scores_are_read_in_the_measured_dtype():
    """Measured on float32 scores: float64 scores after (and before) the step give the row of
    their float32 values, as the kernels read one dtype."""
    s = scores(8, 5, seed=4, dtype=torch.float32)
    after, before = scores(8, 5, seed=5), scores(8, 5, seed=6)
    rows = []
    for a, b in ((after, before), (after.float(), before.float())):
        rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.swav(T=0.3))
        rec.measure(s, torch.softmax(s.double() / 0.3, 1))
        rows.append(rec.feedback(a, b))
    assert rows[0] == rows[1]


def test_centering_labels_without_potentials_match_the_numpy_demon():
    """A reservoir whose label state has no Sinkhorn potentials (DINO's centering: f is None):
    the recorder computes the labels' log Z itself, and its books equal the numpy Demon's; the
    mu summary in the recorder's gauge sum_y mu_y = 0 (the Demon keeps centering's mu = -C)."""
    rec = tt.LedgerRecorder(T=0.5, reservoir=reservoirs.CenteringReservoir(T=0.2, momentum=0.8))
    demon = Demon(T=0.5, reservoir=reservoirs.CenteringReservoir(T=0.2, momentum=0.8))
    for step in range(3):
        s, s_after = scores(10, 6, seed=10 + step), scores(10, 6, seed=20 + step)
        label = rec.measure(s)
        assert label.f is None
        row = rec.feedback(s_after)
        demon.measure(-s.numpy())
        expected = demon.feedback(-s_after.numpy())
        gauge = expected["mu_mean"]
        assert abs(row["mu_mean"]) <= 1e-15
        for field, value in expected.items():
            if field in ("mu_min", "mu_max", "mu_mean"):
                value = value - gauge
            if isinstance(value, float):
                assert row[field] == pytest.approx(value, rel=1e-9, abs=1e-12), (step, field)
    assert expected["mu_mean"] != 0.0  # the two gauges differ by then: the check above is not vacuous
