"""The row frames of the float32 row kernels (cpp/src/cpu/row_primitives.hpp, with_row_frame): a
row whose whole spread fits the exp's range (t = x - max >= -86.9, no underflow flush) takes the
in-range sweep (no selects at the max, at the flush or around e t and q t); a wider row takes the
masked sweep. Both must give the stated accuracy, at every SIMD level, on either side of the
boundary, with ties at the max and every tail length.

And nan arguments of any bit pattern: a nan carries its payload through the float exp's
reduction, and an exp that builds 2^n from those bits (as it once did) turns some nans finite; a
nan entry must make its row nan (or be refused by name), never vanish into a finite result.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

import thermossl
from thermossl import _core

from helpers import EPS32, LOG_Z_BOUND32

# spreads (max - min of x = -E / T over a row) around the exp's flush at -86.9
SPREADS = [5.0, 60.0, 86.5, 86.89, 86.91, 87.5, 150.0, 400.0]
LENGTHS = [7, 16, 17, 129, 1000]


def frame_rows(k, rng):
    """float32 energies, one row per spread: E = spread * u with u in [0, 1] reaching both ends,
    three ties at the min of E (the max of x) where the row is long enough."""
    rows = []
    for spread in SPREADS:
        u = rng.uniform(0, 1, k)
        u[0], u[-1] = 0.0, 1.0
        if k >= 8:
            u[[2, k // 2]] = 0.0
        rows.append(spread * u)
    return np.asarray(rows).astype(np.float32)


def references(E32, q32, T):
    """float64 values on the float32 inputs: log Z, p, log p, S, L, dS/dE, dL/dE."""
    E = E32.astype(np.float64)
    q = q32.astype(np.float64)
    x = -E / T
    m = x.max(axis=1, keepdims=True)
    t = x - m
    z = np.exp(t).sum(axis=1, keepdims=True)
    log_p = t - np.log(z)
    p = np.exp(log_p)
    S = -(p * log_p).sum(axis=1)
    L = -(q * log_p).sum(axis=1)
    dS = p * (log_p + S[:, None]) / T
    dL = (q - p * q.sum(axis=1, keepdims=True)) / T
    return (m + np.log(z))[:, 0], p, log_p, S, L, dS, dL


@pytest.mark.parametrize("k", LENGTHS)
@pytest.mark.parametrize("T", [1.0, 0.25])
def test_float32_rows_on_both_sides_of_the_flush(simd_level, k, T):
    """log Z 2 eps32 (relative to max(|log Z|, 1)), p 4 eps32, S 8 eps32 and L 4 eps32 (relative
    to max(value, 1)), log p 2 eps32 relative to max(|log p|, 1); the gradients within the
    tolerance of test_gibbs (16 eps32 times the row's exponent scale) for dS, 4 eps32 / T for dL."""
    rng = np.random.default_rng(k * 10 + int(T * 4))
    E32 = (frame_rows(k, rng) * np.float32(T)).astype(np.float32)
    q32 = rng.dirichlet(np.ones(k), size=E32.shape[0]).astype(np.float32)
    q32[:, 1::5] = 0.0  # label zeros: q t must stay 0 there
    lz, p, log_p, S, L, dS, dL = references(E32, q32, T)
    got_lz = thermossl.log_partition(E32, T)
    got_p = thermossl.gibbs(E32, T)
    got_log_p = thermossl.log_softmax(-E32 / np.float32(T), axis=1)
    got_S = thermossl.gibbs_entropy(E32, T)
    got_L, got_dL = thermossl.cross_entropy(q32, E32, T, grad=True)
    got_dS = thermossl.entropy_grad(E32, T)
    per_row = {
        "log Z": np.abs(got_lz - lz) / np.maximum(np.abs(lz), 1) / LOG_Z_BOUND32,
        "p": np.max(np.abs(got_p - p), axis=1) / (4 * EPS32),
        "S": np.abs(got_S - S) / np.maximum(S, 1) / (8 * EPS32),
        "L": np.abs(got_L - L) / np.maximum(L, 1) / (4 * EPS32),
        "dL": np.max(np.abs(got_dL - dL), axis=1) / (4 * EPS32 / T),
    }
    # log_softmax of x = -E/T rounded to float32 first: the reference takes the same x
    x32 = (-E32 / np.float32(T)).astype(np.float64)
    t32 = x32 - x32.max(axis=1, keepdims=True)
    ref_log_p = t32 - np.log(np.exp(t32).sum(axis=1, keepdims=True))
    per_row["log p"] = np.max(np.abs(got_log_p - ref_log_p) / np.maximum(np.abs(ref_log_p), 1), axis=1) / (2 * EPS32)
    scale = np.abs(E32).max(axis=1) / T + np.log(k) + 1.0
    per_row["dS"] = np.max(np.abs(got_dS - dS), axis=1) / (16 * EPS32 * scale / T)
    for name, units in per_row.items():
        worst = int(np.argmax(units))
        assert units[worst] <= 1.0, (
            f"{name} at spread {SPREADS[worst]}: {units[worst]:.3f} of the bound ({simd_level}, k={k}, T={T})")
    # a tie at the max keeps p equal there to the last bit, and the in-range and masked frames
    # agree on where p is largest
    if k >= 8:
        assert np.all(got_p[:, 0] == got_p[:, 2])
    assert np.all(np.argmax(got_p, axis=1) == np.argmax(p, axis=1))


# nan bit patterns: quiet nans with payload bits in the low mantissa (which a shift of the
# rounding sum's bits moves into the exponent), a negative one, and a signalling one
NANS32 = [0x7FC00001, 0x7FC000FF, 0xFFC00003, 0x7F800001]
NANS64 = [0x7FF8000000000001, 0x7FF80000000007FF, 0xFFF0000000000001]


def with_nan(a, pattern, row=1, col=5):
    bits = a.view(np.uint32 if a.dtype == np.float32 else np.uint64).copy()
    bits[row, col] = pattern
    return bits.view(a.dtype)


def row_is_nan_or_refused(call, row=1):
    """The nan row's result is nan (every output of the call), or the call refuses the nan by
    naming it; the other rows stay finite."""
    try:
        out = call()
    except ValueError as err:
        assert "NaN" in str(err) or "nan" in str(err)
        return
    for value in out if isinstance(out, tuple) else (out,):
        value = np.asarray(value)
        value = value.reshape(value.shape[0], -1)
        assert np.isnan(value[row]).any(), "a nan entry vanished from its row's result"
        others = np.delete(value, row, axis=0)
        assert np.isfinite(others).all()


@pytest.mark.parametrize("dtype,patterns", [(np.float32, NANS32), (np.float64, NANS64)], ids=["float32", "float64"])
@pytest.mark.parametrize("k", [16, 3000])
@pytest.mark.parametrize("spread", [5.0, 400.0])
def test_nan_of_any_payload_stays_nan(simd_level, dtype, patterns, k, spread):
    rng = np.random.default_rng(k)
    x = (rng.uniform(-1, 1, (4, k)) * spread / 2).astype(dtype)
    q = rng.dirichlet(np.ones(k), size=4).astype(dtype)
    for pattern in patterns:
        xn = with_nan(x, pattern)
        assert np.isnan(xn[1, 5])
        row_is_nan_or_refused(lambda: thermossl.logsumexp(xn, axis=1))
        row_is_nan_or_refused(lambda: thermossl.softmax(xn, axis=1))
        row_is_nan_or_refused(lambda: thermossl.log_softmax(xn, axis=1))
        row_is_nan_or_refused(lambda: thermossl.gibbs(xn, 1.0))
        row_is_nan_or_refused(lambda: thermossl.log_partition(xn, 1.0))
        row_is_nan_or_refused(lambda: thermossl.gibbs_entropy(xn, 1.0))
        row_is_nan_or_refused(lambda: thermossl.entropy_grad(xn, 1.0))
        row_is_nan_or_refused(lambda: thermossl.cross_entropy(q, xn, 1.0, grad=True))
        row_is_nan_or_refused(lambda: thermossl.cross_entropy(with_nan(q, pattern), x, 1.0, grad=True))
        # the weighted and signed forms take the masked paths
        row_is_nan_or_refused(lambda: thermossl.logsumexp(xn, axis=1, b=np.ones_like(xn)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropy_gradient_special_entries(simd_level, dtype):
    """The entropy gradient's last pass, g = e (a1 t + b1) (gibbs.cpp): an excluded state
    (scale * E = -inf, e = 0) gets exactly 0, the others their finite value against float64; a
    nan anywhere in a row makes the whole row nan (Z' is nan), terms that underflowed included;
    rows in the exp's range and rows reaching the flush, both signs of the scale."""
    rng = np.random.default_rng(23)
    for scale in (-10.0, -0.5, 3.0):
        E = (rng.normal(size=(6, 77)) * 4).astype(dtype)
        E[1, 5] = np.inf if scale < 0 else -np.inf    # excluded: scale * E = -inf
        E[2, 9] = np.nan
        E[3, :40] = E[3, :40] * 0                     # ties
        g = np.full(E.shape, 7.0, dtype)
        _core.row_entropy_grad(E, scale, None, g)
        assert np.all(np.isnan(g[2]))
        assert g[1, 5] == 0
        ok = [0, 1, 3, 4, 5]
        x = scale * E[ok].astype(np.float64)
        with np.errstate(invalid="ignore"):  # 0 * -inf at the excluded state, masked below
            lp = sp.log_softmax(x, axis=1)
            p = np.exp(lp)
            S = -np.sum(np.where(p > 0, p * lp, 0), axis=1)
            ref = np.where(p > 0, -scale * p * (lp + S[:, None]), 0)
        tol = (16 * EPS32 if dtype == np.float32 else 1e-12) * abs(scale)
        assert np.max(np.abs(g[ok] - ref)) <= tol
