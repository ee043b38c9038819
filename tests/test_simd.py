"""Every SIMD level the machine supports gives the same answers, to rounding; the level can be
chosen with THERMOSSL_SIMD. (CI also runs the whole suite once with THERMOSSL_SIMD=baseline.)"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose

import thermossl
from thermossl import _core, thermo

LEVELS = _core.simd_levels()


@pytest.fixture
def at_level(request):
    before = _core.simd_level()
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level(before)


def outputs(dtype):
    rng = np.random.default_rng(0)
    E = (rng.normal(size=(300, 257)) * 3).astype(dtype)
    E[5, 7] = np.inf
    q = sp.softmax(rng.normal(size=E.shape), axis=1).astype(dtype)
    q[5, 7] = 0
    q /= q.sum(axis=1, keepdims=True)
    loss, grad = thermossl.cross_entropy(q, E, 0.1, grad=True)
    return {
        "logsumexp": thermossl.logsumexp(E.T, axis=0, b=np.where(E.T < 5, np.abs(E.T), 0.0)),
        "log_softmax": thermossl.log_softmax(-E, axis=1),
        "gibbs": thermossl.gibbs(E, 0.1),
        "entropy": thermossl.gibbs_entropy(E, 0.1),
        "loss": loss,
        "grad": grad,
        "entropy_grad": thermossl.entropy_grad(E, 0.1),
        "column": thermossl.column_log_partition(E, 0.1),
        "sinkhorn": thermossl.sinkhorn(E, 0.05, n_iter=3).q,
        "ledger_D": np.array([thermo.State(E, 0.1, q).D]),
    }


def test_levels_are_reported():
    assert "baseline" in LEVELS
    assert thermossl.simd_level() in LEVELS
    with pytest.raises(ValueError, match="unknown SIMD level"):
        _core.set_simd_level("avx9000")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("at_level", LEVELS, indirect=True)
def test_every_level_matches_baseline_and_references(at_level, dtype):
    got = outputs(dtype)
    _core.set_simd_level("baseline")
    base = outputs(dtype)
    _core.set_simd_level(at_level)
    rtol = 64 * np.finfo(dtype).eps
    for name in got:
        assert_allclose(got[name], base[name], rtol=rtol, atol=rtol, err_msg=name)
    E = (np.random.default_rng(0).normal(size=(300, 257)) * 3).astype(np.float64)
    E[5, 7] = np.inf
    assert_allclose(got["gibbs"], sp.softmax(-E.astype(dtype).astype(np.float64) / 0.1, axis=1), atol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("level", LEVELS)
def test_environment_variable_selects_the_level(level):
    env = dict(os.environ, THERMOSSL_SIMD=level)
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import thermossl; print(thermossl.simd_level())"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == level


def test_unknown_environment_value_warns_and_falls_back():
    env = dict(os.environ, THERMOSSL_SIMD="avx9000")
    out = subprocess.run(
        [sys.executable, "-c", "import thermossl; print(thermossl.simd_level())"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.strip() == LEVELS[-1]
    assert "THERMOSSL_SIMD='avx9000'" in out.stderr


def float32_rows_of_every_kind():
    """float32 rows for the two exponent evaluators of the kernels (cpp/src/cpu/row_primitives.hpp):
    the float-lane pivot form t = s (a - a*) for finite rows, and the double form for rows whose
    max is infinite, all-nan rows and scales too large for a float."""
    rng = np.random.default_rng(7)
    E = (rng.normal(size=(64, 129)) * 3).astype(np.float32)
    E[1, :5] = np.inf                 # forbidden states: t = -inf, e = 0 (pivot form)
    E[2, 3] = E[2].min()              # a tie at the max
    E[2, 4] = E[2].min()
    E[3, :] = 0.5                     # constant row: every entry at the max
    E[4, 10] = -np.inf                # an infinite score: max +inf (double form)
    E[5, :] = np.inf                  # every state forbidden: max -inf (double form)
    E[6, 20] = np.nan                 # a nan: nan results
    E[7, :] = np.float32(3e38)        # huge finite values: a - a* exact, no overflow
    E[7, 1] = np.float32(-3e38)
    return E


def reference_log_z(E32, T):
    E = E32.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return sp.logsumexp(-E / T, axis=1)


@pytest.mark.parametrize("T", [1.0, 0.1, 1e-25])  # 1e-25: |scale| > 2^60, the double form for every row
@pytest.mark.parametrize("at_level", LEVELS, indirect=True)
def test_float32_pivot_and_double_exponent_forms(at_level, T):
    E = float32_rows_of_every_kind()
    ref = reference_log_z(E, T)
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32)  # row 7 at small T: log Z beyond the float range, +inf
    got = _core_log_z(E, T)
    finite = np.isfinite(ref32)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(got[~finite & ~np.isnan(ref)], ref32[~finite & ~np.isnan(ref)])
    eps = np.finfo(np.float32).eps
    assert np.all(np.abs(got[finite] - ref[finite]) <= eps * np.maximum(np.abs(ref[finite]), 1))
    # scipy.special.logsumexp semantics (scale +1: the pivot is the row max), same rows.
    lse = thermossl.logsumexp(-E, axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        lse_ref = sp.logsumexp(-E.astype(np.float64), axis=1)
    fin = np.isfinite(lse_ref)
    assert np.array_equal(np.isnan(lse), np.isnan(lse_ref))
    assert np.all(np.abs(lse[fin] - lse_ref[fin]) <= eps * np.maximum(np.abs(lse_ref[fin]), 1))
    # Gibbs state, entropy, cross-entropy + gradient on the rows every public kernel accepts.
    ok = np.array([i not in (4, 5, 6, 7) for i in range(E.shape[0])])  # row 7: L overflows float32
    Eok = E[ok]
    p_ref = sp.softmax(-Eok.astype(np.float64) / T, axis=1)
    assert np.max(np.abs(thermossl.gibbs(Eok, T) - p_ref)) <= 4 * eps
    q = sp.softmax(np.random.default_rng(1).normal(size=Eok.shape), axis=1)
    q[np.isinf(Eok)] = 0
    q /= q.sum(axis=1, keepdims=True)
    q32 = q.astype(np.float32)
    loss, grad = thermossl.cross_entropy(q32, Eok, T, grad=True)
    with np.errstate(invalid="ignore"):
        log_p = np.where(q32 > 0, sp.log_softmax(-Eok.astype(np.float64) / T, axis=1), 0.0)
    L_ref = -(q32.astype(np.float64) * log_p).sum(axis=1)
    assert np.all(np.abs(loss - L_ref) <= 4 * eps * np.maximum(L_ref, 1))
    g_ref = (q32.astype(np.float64) - p_ref * q32.astype(np.float64).sum(axis=1, keepdims=True)) / T
    assert np.max(np.abs(grad - g_ref)) <= 8 * eps / T


def _core_log_z(E, T):
    with np.errstate(invalid="ignore"):
        out = np.empty(E.shape[0], dtype=E.dtype)
        _core.row_logsumexp(E, -1.0 / T, None, None, out, None)
    return out
