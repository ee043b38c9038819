"""The vector exp and log of the CPU kernels (cpp/src/cpu/exp_nonpositive.hpp, log_positive.hpp),
seen one value at a time through public kernels, at every SIMD level this CPU runs, against numpy
in long double (x87 extended on x86-64: 64-bit mantissa, 2^11 times finer than float64).

exp: logsumexp of the two-state row [0, t] is log(1 + e^t) = log1p(e^t), with e^t taken from the
kernel's vector exp (the row's partial vector) and log1p from libm, so the result carries the
exp's relative error (times e^t / ((1 + e^t) log1p(e^t)) <= 1) plus one log1p rounding. That
covers the AVX-512 float64 form (a 2^(j/16) table and degree 7) and the polynomial forms of the
other levels and of float32, over the whole reduced range down to the underflow boundary.

log: the label entropy of the row [q, 1 - q] (ledger rows, E = 0) is -q log q - (1-q) log(1-q)
with log from the kernel's vector log (AVX-512 float32: vgetmant/vgetexp).

The bounds are the ones stated in the headers (exp ~0.5 ulp plus the reduction; log ~1e-7
relative in float32), with the final rounding of the public result added.
"""
from __future__ import annotations

import numpy as np
import pytest

import thermossl


LD = np.longdouble
if np.finfo(LD).eps > 1e-18:
    pytest.skip("needs a long double finer than float64 as the reference", allow_module_level=True)


def exponents(dtype):
    """t over the reduced range: dense near 0, every integer part down to the underflow
    boundary, the boundary itself (float32 -86.9, float64 -708), and ties of the round step."""
    low = -86.9 if dtype == np.float32 else -708.0
    rng = np.random.default_rng(5)
    t = np.concatenate([
        -rng.uniform(0, 1, 3000),
        -rng.uniform(0, -low, 6000),
        -np.logspace(-30, np.log10(-low), 500),
        -np.arange(0, int(-low) + 1) * np.log(2) / 32,  # k ln2 / 32: near the ties of the tables
        -(np.arange(1, 40) + 0.5) * np.log(2),          # halfway between two powers of 2
        [low, np.nextafter(low, 0), -1e-300 if dtype == np.float64 else -1e-38],
    ]).astype(dtype)
    return t[t >= dtype(low)]


def log1p_exp(t):
    return np.log1p(np.exp(t.astype(LD)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_against_mpmath_at_every_level(simd_level, dtype):
    t = exponents(dtype)
    rows = np.stack([np.zeros_like(t), t], axis=1)
    got = np.asarray(thermossl.logsumexp(rows, axis=1)).astype(LD)
    ref = log1p_exp(t)
    ulp = float(np.finfo(dtype).eps) / 2  # 2^-24 / 2^-53: relative rounding unit
    units = np.asarray(np.abs(got - ref) / ref, dtype=np.float64) / ulp
    # exp within ~1 unit (its last rounding and truncation) plus the final rounding of log1p
    # (float64) or of the float32 result; float32 at the FMA levels reduces with ln2 rounded to
    # float (exp_nonpositive.hpp): |n| (float(ln2) - ln2) = 2.7e-9 |t| relative, 0.045 |t| units
    # (5% of the 2^-24 |t| that t itself carries in the kernels).
    # float32 logsumexp at avx512 and avx2 takes its exponent in base 2, y = fl(t * fl(log2 e))
    # (logsumexp.cpp, pivot_row_sums): at scale 1 that is two roundings t does not have
    # here, fl(log2 e) (1.3e-8 relative: 0.22 |t| units) and the product (<= 2^-24 |y|: |t|
    # units), so 1.25 |t| units. In the kernel at any other scale the argument carries three
    # roundings either way (a - a*, the constant, the product; PivotArg: 3 2^-24 |t|).
    per_t = 0.0
    if dtype == np.float32:
        per_t = 1.25 if simd_level in ("avx512", "avx2") else 0.05
    allowed = 2.0 + per_t * np.abs(t.astype(np.float64))
    worst = np.max(units / allowed)
    assert worst <= 1.0, f"{simd_level} {dtype.__name__}: {np.max(units):.3f} units, {worst:.3f} of the bound"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values_and_underflow_boundary(simd_level, dtype):
    low = -86.9 if dtype == np.float32 else -708.0
    below = np.nextafter(dtype(low), dtype(-np.inf))
    t = np.array([-np.inf, below, 2 * low, -1e5, 0.0, np.nan], dtype=dtype)
    rows = np.stack([np.zeros_like(t), t], axis=1)
    got = np.asarray(thermossl.logsumexp(rows, axis=1), dtype=np.float64)
    # below the boundary (and -inf) exp is flushed to exactly 0: log(1 + 0) = 0
    assert np.all(got[:4] == 0.0)
    # a tie at the max: both terms are at the max, log 2 to the last bit of the dtype
    assert got[4] == pytest.approx(np.log(2.0), rel=float(np.finfo(dtype).eps))
    assert np.isnan(got[5])
    # just above the boundary: exp is still a normal number, not flushed
    above = np.array([[0.0, np.nextafter(dtype(low), dtype(0))]], dtype=dtype)
    assert thermossl.logsumexp(above, axis=1)[0] > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_against_mpmath_at_every_level(simd_level, dtype):
    tiny = float(np.finfo(dtype).tiny)
    q = np.concatenate([
        np.logspace(np.log10(tiny), 0, 400),
        np.random.default_rng(3).uniform(0, 1, 2000),
        1.0 - np.logspace(-7 if dtype == np.float32 else -15, -1, 200),  # log q near 0 (relative)
        [0.5, 1.0, np.sqrt(0.5), np.nextafter(np.sqrt(0.5), 1), 2.0 ** -40],
    ]).astype(dtype)
    q = q[(q > 0) & (q <= 1)]
    labels = np.stack([q, (dtype(1) - q)], axis=1).astype(dtype)
    E = np.zeros_like(labels)
    entropy = np.asarray(thermossl.thermo.ledger_rows(labels, E, 1.0)[0]["entropy_q"]).astype(LD)
    ql = labels.astype(LD)
    terms = np.where(ql > 0, -ql * np.log(np.where(ql > 0, ql, 1)), 0)
    ref = terms.sum(axis=1)
    assert np.all(entropy[ref == 0] == 0)  # q = 1: log 1 = 0 exactly
    rel = np.asarray(np.abs(entropy - ref)[ref > 0] / ref[ref > 0], dtype=np.float64)
    eps = float(np.finfo(dtype).eps)
    # a few rounding units: the log (Cephes logf ~1e-7 relative; float64 atanh series), the
    # products and the sum of two terms
    assert rel.max() <= (4 * eps if dtype == np.float32 else 8 * eps), f"{rel.max() / eps:.3f} eps"


def test_float32_log_of_subnormal_labels(simd_level):
    """Subnormal q: the log exact at AVX-512 (vgetmant/vgetexp); the other levels' cheaper form is
    off by less than 2e-37 absolute in q log q (log_positive.hpp)."""
    q = np.array([1e-40, 3e-42, 1e-45, 1e-39], dtype=np.float32)
    labels = np.stack([q, np.ones_like(q)], axis=1)
    labels[:, 1] = np.float32(1) - labels[:, 0]
    entropy = np.asarray(thermossl.thermo.ledger_rows(labels, np.zeros_like(labels), 1.0)[0]["entropy_q"])
    ql = labels.astype(LD)
    ref = np.asarray((-ql[:, 0] * np.log(ql[:, 0]) - np.where(ql[:, 1] < 1, ql[:, 1] * np.log(ql[:, 1]), 0)),
                     dtype=np.float64)
    if simd_level == "avx512":
        # the log exact to float rounding; the product q log q is itself subnormal, rounded to a
        # multiple of the smallest subnormal 2^-149
        assert np.all(np.abs(entropy - ref) <= 4 * float(np.finfo(np.float32).eps) * ref + 2.0 ** -149)
    else:
        assert np.all(np.abs(entropy - ref) < 2e-37)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_rows_every_length_ties_and_scale_signs(simd_level, dtype):
    """The logsumexp row loops (AVX-512: the base-2 float32 loop and the masked float64 loop of
    logsumexp.cpp; the generic sweep elsewhere): lengths around the vector (8 / 16 lanes) and the
    chunk (128 elements), ties at the max (the count at the max is k less the other lanes), -inf
    and nan entries, and both signs of the scale (log_partition: scale -1/T, the pivot is the row
    min), against long double. Bound: log Z within 2 eps32 (float32) or 4 eps64 (float64) of
    max(|log Z|, 1), the stated accuracy."""
    rng = np.random.default_rng(16)
    eps = float(np.finfo(dtype).eps)
    tol = 2 * eps if dtype == np.float32 else 4 * eps
    for k in [1, 2, 7, 15, 16, 17, 31, 127, 128, 129, 255, 257, 1000, 3001]:
        a = (rng.normal(size=(6, k)) * 3).astype(dtype)
        top = np.argmax(a, axis=1)
        if k >= 4:
            a[1, :3] = a[1, top[1]]                # three ties at the max
            a[2, -1] = a[2, top[2]]                # a tie in the last (partial) vector
            a[3, k // 2] = -np.inf                 # a forbidden term
        a[4] = a[4, 0]                             # a constant row: all k at the max
        for T in (None, 0.3):
            if T is None:
                got = np.asarray(thermossl.logsumexp(a, axis=1), dtype=np.float64)
                x = a.astype(LD)
            else:
                got = np.asarray(thermossl.log_partition(-a, T), dtype=np.float64)
                x = a.astype(LD) / LD(T)
            m = x.max(axis=1, keepdims=True)
            ref = np.asarray((m[:, 0] + np.log(np.exp(x - m).sum(axis=1))), dtype=np.float64)
            err = np.abs(got - ref) / np.maximum(np.abs(ref), 1)
            assert err.max() <= tol, f"k={k} T={T}: {err.max() / eps:.3f} eps (row {int(np.argmax(err))})"
    nan_row = np.zeros((1, 40), dtype)
    nan_row[0, 19] = np.nan
    assert np.isnan(thermossl.logsumexp(nan_row, axis=1)[0])
    with pytest.raises(ValueError, match="NaN"):
        thermossl.log_partition(nan_row, 0.3)  # energies refuse nan by name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "strided rows"])
def test_logsumexp_pivot_carried_to_the_next_row(simd_level, dtype, layout):
    """The float32 base-2 loops (avx512, avx2) gather the next row's pivot (its max; its min for
    log_partition's negative scale) during the current row's pass and hand it on, across tiles
    and threads (300 rows of 1003: 5 tiles, the parallel pass, a partial last vector at both
    levels), where the rows are contiguous. Row offsets jump by 60-300 units, and rows whose
    frame does not apply (+inf, all nan, all -inf) come just before rows at +300, so a pivot
    handed on from them (0) would overflow the next row's sum; every 7th row peaks 200 units
    above (energies: below) the rest in its last partial vector, which the gathered pivot must
    include. Rows with an excluded or flushed term too; against long double, with a strided view
    (no carried pivot) as the other layout. Bound as above."""
    rng = np.random.default_rng(17)
    n, k = 300, 1003
    eps = float(np.finfo(dtype).eps)
    tol = 2 * eps if dtype == np.float32 else 4 * eps

    def laid_out(m):
        if layout == "contiguous":
            return np.ascontiguousarray(m, dtype=dtype)
        wide = np.zeros((n, k + 3), dtype)
        wide[:, :k] = m
        return wide[:, :k]

    offsets = 60.0 * np.where(np.arange(n) % 3 == 0, 1.0, -1.0) * (1 + np.arange(n) % 5)
    assert offsets[69] == offsets[129] == offsets[189] == 300.0
    base = rng.normal(size=(n, k)) * 3 + offsets[:, None]
    peaks = np.arange(1, n, 7)
    # logsumexp, scale +1: the pivot is the row max
    a = base.copy()
    a[peaks, -3] += 200.0  # the row max in the last partial vector
    a[68] = np.nan         # all nan: result nan
    a[128, 7] = np.inf     # max +inf: the generic frame, result +inf
    a[188] = -np.inf       # all -inf: result -inf
    a[191, 7] = -3e38      # a term far below the flush
    got = np.asarray(thermossl.logsumexp(laid_out(a), axis=1), dtype=np.float64)
    assert np.isnan(got[68]) and got[128] == np.inf and got[188] == -np.inf
    plain = [i for i in range(n) if i not in (68, 128, 188)]
    x = laid_out(a).astype(LD)[plain]
    m = x.max(axis=1, keepdims=True)
    ref = np.asarray(m[:, 0] + np.log(np.exp(x - m).sum(axis=1)), dtype=np.float64)
    err = np.abs(got[plain] - ref) / np.maximum(np.abs(ref), 1)
    assert err.max() <= tol, f"logsumexp: {err.max() / eps:.3f} eps (row {plain[int(np.argmax(err))]})"
    # log_partition, scale -1/T: the pivot is the row min of the energies
    T = 0.7
    e = base.copy()
    e[peaks, -3] -= 200.0  # the row min in the last partial vector
    e[64, 7] = np.inf      # an excluded state
    e[191, 7] = 3e30       # a term far below the flush
    e = laid_out(e)
    got = np.asarray(thermossl.log_partition(e, T), dtype=np.float64)
    x = -e.astype(LD) / LD(T)
    m = x.max(axis=1, keepdims=True)
    ref = np.asarray(m[:, 0] + np.log(np.exp(x - m).sum(axis=1)), dtype=np.float64)
    err = np.abs(got - ref) / np.maximum(np.abs(ref), 1)
    assert err.max() <= tol, f"log_partition: {err.max() / eps:.3f} eps (row {int(np.argmax(err))})"
