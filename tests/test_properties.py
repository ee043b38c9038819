"""Property tests at the sizes where the kernels change path (issue 20).

The C++ kernels sum each row in chunks of 64 columns (``kChunk``, cpp/src/cpu/row_primitives.hpp),
sum charges over groups of 8 rows (``kGroup``), pack strided rows in tiles of
min(64, 256 KiB / (K * itemsize)) rows and go parallel from 2^15 elements with more than one
tile (``tile_rows``, ``kParallelMinElements``, cpp/src/cpu/rows.hpp); the column pass works in
blocks of min(32, 128 KiB / (K * itemsize)) rows. The draws here reach K up to 2000 and N up to
300 (several chunks per row, tails that are not a multiple of 64, many tiles, the parallel
path), place +inf, -inf and nan at chosen positions of long rows (first and last column,
either side of a chunk boundary), and compare with float64 / long double numpy and scipy.

Examples per test: few by default (CI); THERMOSSL_HYPOTHESIS_PROFILE=thorough (tests/conftest.py)
runs ten times as many.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st

import thermossl
from thermossl import thermo
from helpers import EPS32, EPS64

inf, nan = np.inf, np.nan
THOROUGH = os.environ.get("THERMOSSL_HYPOTHESIS_PROFILE", "default") == "thorough"
BIG = settings(max_examples=120 if THOROUGH else 12, deadline=None)

#: sizes either side of the chunk (64), tile (64 rows; 16-32 rows at K = 2000) and block (32)
#: boundaries, and anything in between
KS = st.one_of(st.sampled_from([1, 2, 63, 64, 65, 127, 129, 513, 1000, 1999, 2000]), st.integers(1, 2000))
NS = st.one_of(st.sampled_from([1, 7, 8, 9, 31, 33, 64, 65, 129, 300]), st.integers(1, 300))


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@st.composite
def long_matrices(draw, specials=(inf, -inf, nan), max_specials=6):
    """(E float64 values, dtype, [(i, j, value)]) with specials at boundary columns of long rows."""
    n, k = draw(NS), draw(KS)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.5, 3.0, 30.0, 300.0]))
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, k)) * scale
    placed = []
    if specials:
        columns = sorted({0, k - 1, min(63, k - 1), min(64, k - 1), min(65, k - 1), k // 2})
        for _ in range(draw(st.integers(0, max_specials))):
            i = draw(st.integers(0, n - 1))
            j = draw(st.sampled_from(columns) | st.integers(0, k - 1))
            v = draw(st.sampled_from(list(specials)))
            E[i, j] = v
            placed.append((i, j, v))
    return E.astype(dtype), dtype, placed


def bound(dtype, factor64=64, factor32=16):
    return factor32 * EPS32 if np.dtype(dtype) == np.float32 else factor64 * EPS64


def assert_matches(ours, ref, dtype, scale=None):
    """Same nan and +-inf positions; finite values within the dtype's bound relative to max(|ref|, 1)."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
    fin = np.isfinite(ref)
    size = np.maximum(np.abs(ref[fin]), 1.0) if scale is None else scale
    assert np.all(np.abs(ours[fin] - ref[fin]) <= bound(dtype) * size)


# ----------------------------------------------------------------------------- scipy-compatible
@BIG
@given(case=long_matrices(), axis=st.sampled_from([0, 1]))
@example(case=(np.random.default_rng(0).normal(size=(300, 2000)), np.float64, []), axis=1)
@example(case=(np.random.default_rng(1).normal(size=(300, 2000)).astype(np.float32), np.float32, []), axis=0)
def test_logsumexp_softmax_long_rows_match_scipy(case, axis):
    a, dtype, _ = case
    a64 = a.astype(np.float64)
    assert_matches(thermossl.logsumexp(a, axis=axis), quiet(sp.logsumexp, a64, axis=axis), dtype)
    assert_matches(thermossl.log_softmax(a, axis=axis), quiet(sp.log_softmax, a64, axis=axis), dtype)
    ours = thermossl.softmax(a, axis=axis)
    ref = quiet(sp.softmax, a64, axis=axis)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    fin = np.isfinite(ref)
    assert np.all(np.abs(ours[fin] - ref[fin]) <= 4 * bound(dtype))


# ----------------------------------------------------------------------------- Gibbs kernels
def log_z_ld(E, T):
    """log Z in long double (x86: 64-bit mantissa), max-shifted; -inf for a row of forbidden states."""
    x = -E.astype(np.longdouble) / np.longdouble(T)
    top = np.max(x, axis=1, keepdims=True)
    return (top[:, 0] + np.log(np.sum(np.exp(x - top), axis=1))), x


@BIG
@given(case=long_matrices(specials=(inf,)), T=st.sampled_from([1.0, 0.1, 0.05]))
@example(case=(np.random.default_rng(2).normal(size=(300, 2000)) * 3, np.float64, []), T=0.1)
@example(case=(np.random.default_rng(3).normal(size=(257, 1999)).astype(np.float32) * 30, np.float32, []), T=0.05)
def test_gibbs_kernels_long_rows_with_forbidden_states(case, T):
    """log Z, p, S, L and dL/dE against long double, at the README's float32 bounds (log Z 2 eps,
    p 4 eps, S 8 eps, L 4 eps relative to max(value, 1)) and a few ulp in float64."""
    E, dtype, _ = case
    E64 = E.astype(np.float64)
    allowed = np.isfinite(E64).any(axis=1)
    if not allowed.all():  # a row of forbidden states is an error naming the row
        with pytest.raises(ValueError, match=rf"row {int(np.flatnonzero(~allowed)[0])}"):
            thermossl.log_partition(E, T)
        E = E[allowed]
        E64 = E64[allowed]
        if E.shape[0] == 0:
            return
    lz, x = log_z_ld(E64, T)
    p = np.exp(x - lz[:, None])
    log_p = np.where(np.isfinite(x), x - lz[:, None], 0)
    S = -np.sum(np.where(p > 0, p * log_p, 0), axis=1)
    if dtype == np.float32:  # the README's float32 claim
        eps, cond = EPS32, np.ones(E.shape[0])
    else:  # float64: a few ulp of the exponent x = -E/T, which carries |x| eps of its own rounding
        eps, cond = 16 * EPS64, 1 + np.max(np.where(np.isfinite(x), np.abs(x), 0), axis=1).astype(np.float64)
    got_lz = thermossl.log_partition(E, T)
    lz_bound = 2 * eps if dtype == np.float32 else eps  # the float32 claim is 2 eps (guide.md)
    assert np.all(np.abs(got_lz - lz) <= lz_bound * np.maximum(np.abs(lz), 1))
    got_p = thermossl.gibbs(E, T)
    assert np.all(got_p[~np.isfinite(E64)] == 0)
    assert np.all(np.abs(got_p - p) <= 4 * eps * cond[:, None])
    got_S = thermossl.gibbs_entropy(E, T)
    assert np.all(np.abs(got_S - S) <= 8 * eps * cond * np.maximum(S, 1))
    rng = np.random.default_rng(E.shape[0] * 7919 + E.shape[1])
    q = sp.softmax(rng.normal(size=E.shape), axis=1)
    q[~np.isfinite(E64)] = 0
    q /= q.sum(axis=1, keepdims=True)
    q = q.astype(dtype)
    qq = q.astype(np.longdouble)
    L = -np.sum(np.where(qq > 0, qq * log_p, 0), axis=1)
    got_L, grad = thermossl.cross_entropy(q, E, T, grad=True)
    assert np.all(np.abs(got_L - L) <= 4 * eps * cond * np.maximum(L, 1))
    g = (qq - p * qq.sum(axis=1, keepdims=True)) / T
    assert np.all(np.abs(grad - g) <= 16 * eps * cond[:, None] / T)


@BIG
@given(case=long_matrices(specials=(nan, -inf), max_specials=3), T=st.sampled_from([1.0, 0.1]))
def test_nan_and_minus_inf_in_long_rows_raise_naming_the_first_bad_row(case, T):
    E, dtype, placed = case
    bad = sorted({i for i, _, v in placed if np.isnan(v) or v == -inf})
    fns = [lambda: thermossl.log_partition(E, T), lambda: thermossl.gibbs(E, T),
           lambda: thermossl.gibbs_entropy(E, T), lambda: thermossl.sinkhorn(E, 0.05, n_iter=2)]
    for fn in fns:
        if not bad:
            fn()  # clean input: no error, and the values are checked by the other tests
            continue
        with pytest.raises(ValueError, match=rf"E contains .*row {bad[0]}\b"):
            fn()


@BIG
@given(case=long_matrices(specials=()), T=st.sampled_from([1.0, 0.1]))
@example(case=(np.random.default_rng(4).normal(size=(300, 2000)), np.float64, []), T=0.1)
def test_column_partition_long_columns(case, T):
    E, dtype, _ = case
    ref = sp.logsumexp(-E.astype(np.float64) / T, axis=0)
    assert_matches(thermossl.column_log_partition(E, T), ref, dtype)


# ----------------------------------------------------------------------------- Sinkhorn, ledger
def sinkhorn_numpy(E, T, w, n_iter):
    """Log-domain Sinkhorn from a constant f, mu-update then f-update, gauge sum_y c_y mu_y = 0 (c = 1/K)."""
    n, k = E.shape
    c = np.full(k, 1.0 / k)
    f = np.zeros(n)
    with np.errstate(invalid="ignore"):
        for _ in range(n_iter):
            mu = T * np.log(c) - T * sp.logsumexp(np.log(w)[:, None] + (f[:, None] - E) / T, axis=0)
            mu -= c @ mu
            f = -T * sp.logsumexp((mu[None, :] - E) / T, axis=1)
    return np.exp((f[:, None] + mu[None, :] - E) / T), mu


@BIG
@given(case=long_matrices(specials=(inf,), max_specials=4), n_iter=st.integers(1, 4), weighted=st.booleans())
@example(case=(np.random.default_rng(5).normal(size=(300, 2000)), np.float64, []), n_iter=3, weighted=True)
def test_sinkhorn_long_rows_match_numpy(case, n_iter, weighted):
    E, dtype, _ = case
    E64 = E.astype(np.float64)
    n, k = E.shape
    fin = np.isfinite(E64)
    if not fin.any(axis=1).all() or not fin.any(axis=0).all():
        with pytest.raises(ValueError):
            thermossl.sinkhorn(E, 0.05, n_iter=n_iter)
        return
    w = np.random.default_rng(n + k).uniform(0.5, 1.5, n) if weighted else np.ones(n)
    w /= w.sum()
    res = thermossl.sinkhorn(E, 0.05, w=w if weighted else None, n_iter=n_iter)
    q, mu = sinkhorn_numpy(E64, 0.05, w, n_iter)
    assert res.n_iter == n_iter
    np.testing.assert_allclose(res.q.sum(axis=1), 1.0, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-12))
    # float32: the potentials f, mu live in float32, so q carries ~|E|/T' eps32 of their rounding
    atol = 8 * EPS32 * (1 + np.abs(E64[fin]).max() / 0.05) if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(res.q, q, rtol=0, atol=atol)
    np.testing.assert_allclose(res.charges, w @ q, rtol=0, atol=atol)
    assert res.err == pytest.approx(np.abs(w @ res.q.astype(np.float64) - 1.0 / k).sum(), rel=1e-3 if dtype == np.float32 else 1e-9, abs=1e-6 if dtype == np.float32 else 1e-13)  # float32: charges summed in float lanes


@BIG
@given(case=long_matrices(specials=(inf,), max_specials=4), T=st.sampled_from([1.0, 0.1]))
@example(case=(np.random.default_rng(6).normal(size=(300, 2000)), np.float64, []), T=0.1)
def test_state_long_rows_match_numpy(case, T):
    """Every State field with non-uniform weights at sizes that take the ledger kernel's tiles,
    threads and grouped charge sums."""
    E, dtype, _ = case
    E64 = E.astype(np.float64)
    ok = np.isfinite(E64).any(axis=1)
    E, E64 = E[ok], E64[ok]
    if E.shape[0] == 0:
        return
    n, k = E.shape
    rng = np.random.default_rng(n * 31 + k)
    fin = np.isfinite(E64)
    q = sp.softmax(rng.normal(size=(n, k)) * 2, axis=1)
    q[~fin] = 0
    q /= q.sum(axis=1, keepdims=True)
    q = q.astype(dtype)
    q64 = q.astype(np.float64)
    w = rng.uniform(0.2, 1.8, n)
    w /= w.sum()
    log_z = sp.logsumexp(-E64 / T, axis=1)
    log_p = np.where(fin, -np.where(fin, E64, 0) / T - log_z[:, None], -inf)
    p = np.exp(log_p)
    xl = lambda a, b: np.where(a > 0, a * np.where(a > 0, b, 0), 0)  # noqa: E731
    log_q = np.log(np.where(q64 > 0, q64, 1))
    N_y = w @ q64
    ref = {
        "U": w @ xl(q64, E64).sum(1), "U_p": w @ xl(p, E64).sum(1), "F": -T * (w @ log_z),
        "S": -(w @ xl(q64, log_q).sum(1)), "S_p": -(w @ xl(p, np.where(p > 0, log_p, 0)).sum(1)),
        "D": w @ xl(q64, log_q - log_p).sum(1), "L": -(w @ xl(q64, log_p).sum(1)),
        "H_N": -np.sum(xl(N_y, np.log(np.where(N_y > 0, N_y, 1)))),
    }
    ref["I"] = ref["H_N"] - ref["S"]
    ref["F_T"] = ref["U"] - T * ref["S"]
    st_ = thermo.State(E, T, q, w)
    rtol = 64 * EPS32 if dtype == np.float32 else 1e-12
    size = 1.0 + np.abs(E64[fin]).max() / T
    for name, value in ref.items():
        assert abs(getattr(st_, name) - value) <= rtol * size, (name, getattr(st_, name), value)
    np.testing.assert_allclose(st_.N, N_y, rtol=0, atol=rtol)
