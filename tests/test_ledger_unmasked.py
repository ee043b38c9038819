"""The two forms of the ledger rows kernel (cpp/src/cpu/thermo.cpp), at every SIMD level this CPU
runs, against numpy in long double.

Rows without a shift whose exponents are all finite take the unmasked form (plain FMA sums, no
at-max select, the table log at AVX-512, a log that is finite at q = 0); every other row, and any
row whose unmasked sums come out nan or whose labels have a negative entry, takes the masked form.
A shift of zeros (mu = 0) gives the same rows through the masked form only, so the two can be
compared on the same data. The tables of the AVX-512 logs (16 intervals of [0.75, 1.5) each) are
checked at and next to every interval edge.
"""
from __future__ import annotations

import numpy as np
import pytest

from thermossl._backends import cpu
from thermossl._backends._contract import LEDGER_FIELDS

LD = np.longdouble
if np.finfo(LD).eps > 1e-18:
    pytest.skip("needs a long double finer than float64 as the reference", allow_module_level=True)

SCALE = -10.0  # T = 0.1


def reference(q, E, scale, shift=None):
    """The ledger rows in long double (forbidden states, x = -inf, dropped where q = 0)."""
    ql = q.astype(LD)
    x = scale * E.astype(LD)
    if shift is not None:
        x = x + shift.astype(LD)
    m = np.max(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # rows whose max is +-inf: t = nan, as the kernel's
        t = x - m
    e = np.exp(t)
    z = e.sum(axis=1)
    on_p = e > 0
    on_q = ql != 0
    log_z = np.log(z)
    log_p = t - log_z[:, None]
    log_q = np.log(np.where(on_q, np.abs(ql), 1))
    a = E.astype(LD)
    with np.errstate(invalid="ignore"):
        return {
            "energy_q": np.where(on_q, ql * a, 0).sum(axis=1),
            "energy_p": np.where(on_p, e * a, 0).sum(axis=1) / z,
            "log_z": m[:, 0] + log_z,
            "entropy_q": -np.where(on_q, ql * log_q, 0).sum(axis=1),
            "entropy_p": log_z - np.where(on_p, e * t, 0).sum(axis=1) / z,
            "relative_entropy": np.where(on_q, ql * (log_q - log_p), 0).sum(axis=1),
            "loss": -np.where(on_q, ql * log_p, 0).sum(axis=1),
            "label_mass": ql.sum(axis=1),
        }


def labels(rng, n, k, dtype, zeros=0.1):
    q = np.exp(rng.normal(size=(n, k)))
    q[rng.uniform(size=(n, k)) < zeros] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    return q.astype(dtype)


def assert_rows_close(got, want, dtype, what):
    eps = float(np.finfo(dtype).eps)
    # a few units of the dtype on the size of each sum's terms: |U| ~ |E|, S, D, L ~ log K
    tol = {np.float32: 64 * eps, np.float64: 64 * eps}[dtype]
    for field in LEDGER_FIELDS:
        g = np.asarray(got[field], dtype=np.float64)
        w = np.asarray(want[field], dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{what}: nan pattern of {field}")
        fin = ~np.isnan(w)
        np.testing.assert_array_equal(g[fin & np.isinf(w)], w[fin & np.isinf(w)], err_msg=f"{what}: {field}")
        ok = fin & np.isfinite(w)
        err = np.abs(g[ok] - w[ok]) / np.maximum(1.0, np.abs(w[ok]))
        assert err.max(initial=0.0) <= tol, f"{what}: {field} off by {err.max() / eps:.1f} eps"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unmasked_rows_match_masked_rows_and_long_double(simd_level, dtype):
    rng = np.random.default_rng(11)
    n, k = 40, 263  # k not a multiple of any vector width: the masked last vector
    E = (3 * rng.normal(size=(n, k))).astype(dtype)
    q = labels(rng, n, k, dtype)
    q[0, :5] = np.finfo(dtype).tiny / 8  # subnormal labels
    q[0] /= q[0].sum(dtype=np.float64)
    E[1, :] = E[1, 0]  # a constant row: every state at the max
    E[2, 3] = E[2, 4] = E[2].min()  # a tie at the max (scale < 0)
    fast, _ = cpu.ledger_rows(q, E, SCALE, None, None)
    masked, _ = cpu.ledger_rows(q, E, SCALE, np.zeros(k), None)
    ref = reference(q, E, SCALE)
    assert_rows_close(fast, ref, dtype, f"unmasked {simd_level}")
    assert_rows_close(masked, ref, dtype, f"masked {simd_level}")
    assert_rows_close(fast, masked, dtype, f"unmasked against masked {simd_level}")
    # D near 0 keeps its accuracy in the unmasked form too (each KL term a difference of logs)
    p = np.exp(SCALE * E.astype(np.float64) - np.max(SCALE * E.astype(np.float64), axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    near = (p * (1 + 1e-3 * rng.normal(size=p.shape))).astype(dtype)
    near /= near.sum(axis=1, keepdims=True, dtype=np.float64).astype(dtype)
    d_fast = cpu.ledger_rows(near, E, SCALE, None, None)[0]["relative_entropy"]
    d_masked = cpu.ledger_rows(near, E, SCALE, np.zeros(k), None)[0]["relative_entropy"]
    d_ref = np.asarray(reference(near, E, SCALE)["relative_entropy"], dtype=np.float64)
    err_fast, err_masked = np.abs(d_fast - d_ref), np.abs(d_masked - d_ref)
    eps = float(np.finfo(dtype).eps)
    # D ~ 3e-10..7e-7 here (1e-16 in float64): its error is a few eps absolute in both forms (the
    # rounding of each log p, |log p| ~ 30), not a loss of D itself to L - S taken after the sums
    # (~eps * L, L ~ 5); measured 0.19-0.84 eps (float32) and 1.9-2.0 eps (float64)
    assert err_fast.max() <= 4 * eps, f"{err_fast.max() / eps:.3f} eps"
    assert err_fast.max() <= 4 * err_masked.max() + eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_the_unmasked_form_hands_back(simd_level, dtype):
    """Forbidden states, -0 labels, a nan or -inf energy, a negative label: the same results as
    the masked form (and as long double where the rows are defined)."""
    rng = np.random.default_rng(12)
    n, k = 8, 37
    E = (3 * rng.normal(size=(n, k))).astype(dtype)
    q = labels(rng, n, k, dtype, zeros=0.3)
    E[0, q[0] == 0] = np.inf  # forbidden states without labels: finite rows
    q[1, q[1] == 0] = -0.0  # -0 labels: as +0
    E[2, 5] = np.nan  # nan energy: the row's energy sums are nan
    E[3, 7] = -np.inf  # an infinite score: the max is +inf
    q[4, 0], q[4, 1] = q[4, 0] + q[4, 1] + 0.25, -0.25  # a negative label: S[q] is nan
    E[5, :] = np.inf  # every state forbidden
    got, charges = cpu.ledger_rows(q, E, SCALE, None, None)
    masked, charges_masked = cpu.ledger_rows(q, E, SCALE, np.zeros(k), None)
    assert_rows_close(got, masked, dtype, f"{simd_level}")
    np.testing.assert_allclose(charges, charges_masked, rtol=0, atol=4 * float(np.finfo(dtype).eps))
    ref = reference(q, E, SCALE)
    for i in (0, 1, 6, 7):
        assert_rows_close({f: got[f][i:i + 1] for f in LEDGER_FIELDS}, {f: ref[f][i:i + 1] for f in LEDGER_FIELDS},
                          dtype, f"row {i} {simd_level}")
    assert np.isfinite(got["entropy_q"][0]) and np.isfinite(got["energy_p"][0])
    assert got["entropy_q"][1] == pytest.approx(float(ref["entropy_q"][1]), rel=64 * float(np.finfo(dtype).eps))
    assert np.isnan(got["energy_p"][2]) and np.isnan(got["energy_q"][2]) == np.isnan(masked["energy_q"][2])
    assert np.isnan(got["entropy_q"][4])  # so the Python layer rejects q (label check)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_at_every_table_edge(simd_level, dtype):
    """The label entropy of [q, 1 - q] with q at, just below and just above every interval edge of
    the AVX-512 log tables (m in [0.75, 1.5): steps of 1/32 below 1, 1/16 above), at several
    binades, against long double (the bound of test_exp_log_primitives)."""
    edges = np.concatenate([0.75 + np.arange(8) / 32, 1 + np.arange(9) / 16])
    points = []
    for scale in 2.0 ** -np.arange(1, 40, 3):
        for edge in edges:
            v = dtype(edge * scale)
            points += [np.nextafter(v, dtype(0)), v, np.nextafter(v, dtype(1))]
    q = np.array(points, dtype=dtype)
    q = q[(q > 0) & (q < 1)]
    rows = np.stack([q, dtype(1) - q], axis=1).astype(dtype)
    entropy = cpu.ledger_rows(rows, np.zeros_like(rows), 1.0, None, None)[0]["entropy_q"].astype(LD)
    ql = rows.astype(LD)
    ref = -(ql * np.log(ql)).sum(axis=1)
    rel = np.asarray(np.abs(entropy - ref) / ref, dtype=np.float64)
    eps = float(np.finfo(dtype).eps)
    assert rel.max() <= (4 * eps if dtype == np.float32 else 8 * eps), f"{rel.max() / eps:.3f} eps"
