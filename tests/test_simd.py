"""Every SIMD level the CPU supports, each checked against independent numpy/scipy references
(float64 and long double) at the stated accuracy — never against another level. Levels are
chosen in-process (``_core.set_simd_level``) and through THERMOSSL_SIMD in a subprocess; a
level this CPU lacks is skipped. (CI also runs the whole suite once with THERMOSSL_SIMD=baseline.)

float32 bounds: README "Accuracy"/"Kernels": log Z 2 eps x max(|log Z|, 1), p 4 eps absolute,
S 8 eps x max(S, 1), L 4 eps x max(L, 1); float64: a few ulp.
"""
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
#: every level a build may have (x86-64); the ones this CPU or build lacks are skipped
ALL_LEVELS = list(dict.fromkeys(["baseline", "avx2", "avx512", *LEVELS]))
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}


def level_param(level):
    return pytest.param(level, marks=pytest.mark.skipif(level not in LEVELS, reason=f"this CPU/build lacks SIMD level {level}"))


LEVEL_PARAMS = [level_param(level) for level in ALL_LEVELS]


def problem(dtype):
    rng = np.random.default_rng(0)
    E = (rng.normal(size=(300, 257)) * 3).astype(dtype)
    E[5, 7] = np.inf
    q = sp.softmax(rng.normal(size=E.shape), axis=1)
    q[5, 7] = 0
    q /= q.sum(axis=1, keepdims=True)
    return E, q.astype(dtype)


def references(E32or64, q, T=0.1):
    """float64 / long double references on the same (rounded) inputs."""
    E = E32or64.astype(np.float64)
    qq = q.astype(np.float64)
    fin = np.isfinite(E)
    x = -E.astype(np.longdouble) / np.longdouble(T)
    top = x.max(axis=1, keepdims=True)
    lz = top[:, 0] + np.log(np.exp(x - top).sum(axis=1))
    log_p = np.where(fin, x - lz[:, None], 0)
    p = np.where(fin, np.exp(x - lz[:, None]), 0)
    S = -(p * log_p).sum(axis=1)
    L = -(np.where(qq > 0, qq, 0) * log_p).sum(axis=1)
    b = np.where(E.T < 5, np.abs(E.T), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lse_b = sp.logsumexp(E.T, axis=0, b=b)
        log_softmax = sp.log_softmax(-E, axis=1)
    return {
        "log_z": lz, "gibbs": p, "entropy": S, "loss": L,
        "grad": (qq - p * qq.sum(axis=1, keepdims=True)) / T,
        "entropy_grad": p * (log_p + S[:, None]) / T,
        "logsumexp_b": lse_b, "log_softmax": log_softmax,
        "column": sp.logsumexp(-E / T, axis=0),
        "sinkhorn": sinkhorn_numpy(E, 0.05, 3),
        "D": float(np.mean(np.where(qq > 0, qq * (np.log(np.where(qq > 0, qq, 1)) - log_p), 0).sum(axis=1))),
    }


def sinkhorn_numpy(E, T, n_iter):
    n, k = E.shape
    f = np.zeros(n)
    for _ in range(n_iter):
        mu = T * np.log(1.0 / k) - T * sp.logsumexp(np.log(1.0 / n) + (f[:, None] - E) / T, axis=0)
        mu -= mu.mean()
        f = -T * sp.logsumexp((mu[None, :] - E) / T, axis=1)
    return np.exp((f[:, None] + mu[None, :] - E) / T)


def test_levels_are_reported():
    assert "baseline" in LEVELS
    assert thermossl.simd_level() in LEVELS
    with pytest.raises(ValueError, match="unknown SIMD level"):
        _core.set_simd_level("avx9000")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_level_matches_independent_references(simd_level, dtype):
    assert _core.simd_level() == simd_level
    E, q = problem(dtype)
    ref = references(E, q)
    eps = EPS[dtype]
    f64 = dtype == np.float64
    # float64: a few ulp, scaled by the exponent's size |x| (its own rounding); float32: the README bounds
    cond = 1 + np.max(np.abs(np.where(np.isfinite(E), E, 0))) / 0.1 if f64 else 1.0
    e = (16 * eps * cond) if f64 else eps
    lz = thermossl.log_partition(E, 0.1)
    assert np.all(np.abs(lz - ref["log_z"]) <= e * np.maximum(np.abs(ref["log_z"]), 1)), "log_partition"
    assert np.max(np.abs(thermossl.gibbs(E, 0.1) - ref["gibbs"])) <= 4 * e, "gibbs"
    S = thermossl.gibbs_entropy(E, 0.1)
    assert np.all(np.abs(S - ref["entropy"]) <= 8 * e * np.maximum(ref["entropy"], 1)), "gibbs_entropy"
    loss, grad = thermossl.cross_entropy(q, E, 0.1, grad=True)
    assert np.all(np.abs(loss - ref["loss"]) <= 2 * e * np.maximum(ref["loss"], 1)), "cross_entropy"
    assert np.max(np.abs(grad - ref["grad"])) <= 16 * e / 0.1, "cross_entropy grad"
    assert np.max(np.abs(thermossl.entropy_grad(E, 0.1) - ref["entropy_grad"])) <= 64 * e / 0.1, "entropy_grad"
    rel = 64 * eps if f64 else 16 * eps
    Et = E.T
    b = np.where(Et < 5, np.abs(Et), 0.0)
    assert_allclose(thermossl.logsumexp(Et, axis=0, b=b), ref["logsumexp_b"], rtol=rel, atol=rel, err_msg="logsumexp b")
    assert_allclose(thermossl.log_softmax(-E, axis=1), ref["log_softmax"], rtol=rel, atol=rel, err_msg="log_softmax")
    assert_allclose(thermossl.column_log_partition(E, 0.1), ref["column"], rtol=rel, atol=rel, err_msg="column")
    q_s = thermossl.sinkhorn(E, 0.05, n_iter=3).q
    assert np.max(np.abs(q_s - ref["sinkhorn"])) <= (1e-12 if f64 else 2e-6), "sinkhorn"
    assert thermo.State(E, 0.1, q).D == pytest.approx(ref["D"], rel=1e-12 if f64 else 1e-5), "ledger D"


@pytest.mark.parametrize("T", [1.0, 0.1, 0.05])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_float32_accuracy_claim_at_every_level(simd_level, scale, T):
    """README "Accuracy": float32 kernels against float64 on the same float32 inputs (|E| from 1
    to 1e4; 200 x 3000 here, every level)."""
    rng = np.random.default_rng(int(scale) + 17)
    E32 = (rng.normal(size=(200, 3000)) * scale).astype(np.float32)
    E = E32.astype(np.float64)
    q32 = sp.softmax(rng.normal(size=E.shape), axis=1).astype(np.float32)
    eps = EPS[np.float32]
    lz = sp.logsumexp(-E / T, axis=1)
    assert np.all(np.abs(thermossl.log_partition(E32, T) - lz) <= 2 * eps * np.maximum(np.abs(lz), 1))
    p = sp.softmax(-E / T, axis=1)
    assert np.max(np.abs(thermossl.gibbs(E32, T) - p)) <= 4 * eps
    log_p = sp.log_softmax(-E / T, axis=1)
    S = -np.sum(np.where(p > 0, p * log_p, 0), axis=1)
    assert np.all(np.abs(thermossl.gibbs_entropy(E32, T) - S) <= 8 * eps * np.maximum(S, 1))
    L = -np.sum(q32.astype(np.float64) * log_p, axis=1)
    assert np.all(np.abs(thermossl.cross_entropy(q32, E32, T) - L) <= 4 * eps * np.maximum(L, 1))


@pytest.mark.parametrize("level", LEVEL_PARAMS)
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
def test_float32_pivot_and_double_exponent_forms(simd_level, T):
    E = float32_rows_of_every_kind()
    ref = reference_log_z(E, T)
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32)  # row 7 at small T: log Z beyond the float range, +inf
    got = _core_log_z(E, T)
    finite = np.isfinite(ref32)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(got[~finite & ~np.isnan(ref)], ref32[~finite & ~np.isnan(ref)])
    eps = np.finfo(np.float32).eps
    assert np.all(np.abs(got[finite] - ref[finite]) <= 2 * eps * np.maximum(np.abs(ref[finite]), 1))
    # scipy.special.logsumexp semantics (scale +1: the pivot is the row max), same rows.
    lse = thermossl.logsumexp(-E, axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        lse_ref = sp.logsumexp(-E.astype(np.float64), axis=1)
    fin = np.isfinite(lse_ref)
    assert np.array_equal(np.isnan(lse), np.isnan(lse_ref))
    assert np.all(np.abs(lse[fin] - lse_ref[fin]) <= 2 * eps * np.maximum(np.abs(lse_ref[fin]), 1))
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
