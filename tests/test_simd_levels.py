"""Level-specific checks of the SIMD dispatch (cpp/src/cpu/dispatch.cpp): the AVX-512 level is
offered wherever the CPU has it, and the accuracy stated in the README holds at *every* level
the machine supports, measured in one process by switching levels (the exp/log polynomials and
the reductions are compiled once per level, so each level is its own code)."""
from __future__ import annotations

import os
import platform

import numpy as np
import pytest
import scipy.special as sp

import thermossl
from thermossl import _core

from helpers import EPS32, EPS64, LOG_Z_BOUND32

LEVELS = _core.simd_levels()


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_levels_follow_the_cpu():
    flags = cpu_flags()
    if flags is None or platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("needs /proc/cpuinfo on x86-64 to know what the CPU has")
    assert LEVELS[0] == "baseline"
    assert ("avx2" in LEVELS) == ({"avx2", "fma", "f16c"} <= flags)
    assert ("avx512" in LEVELS) == ({"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags)
    if not os.environ.get("THERMOSSL_SIMD"):
        assert thermossl.simd_level() == LEVELS[-1]  # the best level is the default


def test_unsupported_level_is_refused():
    missing = [name for name in ("avx2", "avx512") if name not in LEVELS]
    if not missing:
        pytest.skip("this CPU supports every level")
    with pytest.raises(ValueError, match="not supported"):
        _core.set_simd_level(missing[0])


def ref_parts(E64, q64, T):
    # t = x - max(x) rounded as the kernels round it (x = (-1/T) E, then minus the max), so the
    # reference differs from the kernels only in exp, log and the sums.
    x = (-1.0 / T) * E64
    m = x.max(axis=1, keepdims=True)
    t = x - m
    log_z1 = np.log(np.exp(t).sum(axis=1, keepdims=True))
    lz = (m + log_z1)[:, 0]
    log_p = t - log_z1
    p = np.exp(t) / np.exp(t).sum(axis=1, keepdims=True)
    S = -(p * log_p).sum(axis=1)
    L = -(q64 * log_p).sum(axis=1)
    return lz, p, S, L


@pytest.mark.parametrize("scale,T", [(1.0, 1.0), (10.0, 0.1), (1e3, 1.0), (1e4, 0.1)])
def test_float32_accuracy_claim_at_every_level(simd_level, scale, T):
    """README "Accuracy" (float32, against float64 on the same float32 inputs): log Z 2 eps32
    relative to max(|log Z|, 1), p 4 eps32 absolute, S 8 eps32 and L 4 eps32 relative to
    max(value, 1)."""
    rng = np.random.default_rng(int(scale * 7 + T * 100))
    E32 = (rng.normal(size=(400, 3000)) * scale).astype(np.float32)
    q32 = sp.softmax(rng.normal(size=E32.shape), axis=1).astype(np.float32)
    lz, p, S, L = ref_parts(E32.astype(np.float64), q32.astype(np.float64), T)
    err_lz = np.max(np.abs(thermossl.log_partition(E32, T) - lz) / np.maximum(np.abs(lz), 1))
    err_p = np.max(np.abs(thermossl.gibbs(E32, T) - p))
    err_S = np.max(np.abs(thermossl.gibbs_entropy(E32, T) - S) / np.maximum(S, 1))
    err_L = np.max(np.abs(thermossl.cross_entropy(q32, E32, T) - L) / np.maximum(L, 1))
    assert err_lz <= LOG_Z_BOUND32, f"log Z: {err_lz / EPS32:.2f} eps32"
    assert err_p <= 4 * EPS32, f"p: {err_p / EPS32:.2f} eps32"
    assert err_S <= 8 * EPS32, f"S: {err_S / EPS32:.2f} eps32"
    assert err_L <= 4 * EPS32, f"L: {err_L / EPS32:.2f} eps32"


def test_float64_exp_and_log_at_every_level(simd_level):
    """float64: log Z, p, S and the label entropy -sum q log q (the vector log) within a few ulp
    of numpy/scipy; arguments spread over the whole reduced range of exp (|x - max| up to ~700)."""
    rng = np.random.default_rng(11)
    E = rng.normal(size=(300, 2049)) * 40.0
    T = 0.5
    q = sp.softmax(rng.normal(size=E.shape) * 3, axis=1)
    q[:, ::7] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    lz, p, S, L = ref_parts(E, q, T)
    assert np.max(np.abs(thermossl.log_partition(E, T) - lz) / np.maximum(np.abs(lz), 1)) <= 4 * EPS64
    assert np.max(np.abs(thermossl.gibbs(E, T) - p)) <= 4 * EPS64
    assert np.max(np.abs(thermossl.gibbs_entropy(E, T) - S) / np.maximum(S, 1)) <= 16 * EPS64
    assert np.max(np.abs(thermossl.cross_entropy(q, E, T) - L) / np.maximum(L, 1)) <= 16 * EPS64
    ledger = thermossl.thermo.ledger_rows(q, E, T)[0]
    Sq = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1)
    assert np.max(np.abs(np.asarray(ledger["entropy_q"]) - Sq) / np.maximum(Sq, 1)) <= 16 * EPS64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values_at_every_level(simd_level, dtype):
    """Forbidden states (E = +inf) get p = 0 exactly, a tie at the max is exact, states far below
    the max (exp underflows) get p = 0, and a constant row is uniform to the last bit."""
    E = np.zeros((4, 37), dtype)
    E[0, :5] = np.inf
    E[1, 3] = E[1, 4] = -2.0
    E[2, 1:] = 1e5  # x - max = -1e5: exp underflows to 0
    p = thermossl.gibbs(E, 1.0)
    assert np.all(p[0, :5] == 0) and np.all(p[0, 5:] == p[0, 5])
    assert p[1, 3] == p[1, 4]
    assert p[2, 0] == 1 and np.all(p[2, 1:] == 0)
    assert np.all(p[3] == dtype(1) / dtype(37))


@pytest.mark.parametrize("spread", [1.0, 2.0, 3.0])
def test_float32_log_z_just_above_one(simd_level, spread):
    """The float32 log Z claim where it is hardest: rows of spread * N(0, 1) shifted so that
    log Z lands in [1, 1.15] (max(|log Z|, 1) = 1, the result's own rounding half an eps, and the
    argument's roundings, ~2^-24 |t| per term, not smaller for it), lengths 40, 328 and 3000,
    logsumexp (scale +1) and log_partition (scale -1/T, T = 1 and 0.1), against long double.
    The claim was 1 eps32 until this case measured up to 1.55 / 1.57 / 1.77 eps32 at baseline /
    avx2 / avx512 (docs/guide.md); it is 2 eps32 at every level."""
    rng = np.random.default_rng(int(spread * 10))
    worst = 0.0
    for k in (40, 328, 3000):
        n = 600_000 // k
        a = rng.normal(size=(n, k)) * spread
        a -= (sp.logsumexp(a, axis=1) - rng.uniform(1.0, 1.15, size=n))[:, None]
        a32 = a.astype(np.float32)
        e32 = (-0.1 * a).astype(np.float32)  # energies at T = 0.1: -E/T = a up to E's rounding
        cases = (
            (thermossl.logsumexp(a32, axis=1), a32.astype(np.longdouble)),
            (thermossl.log_partition(-a32, 1.0), a32.astype(np.longdouble)),
            (thermossl.log_partition(e32, 0.1), -e32.astype(np.longdouble) / np.longdouble(np.float32(0.1))),
        )
        for got, x in cases:
            m = x.max(axis=1, keepdims=True)
            ref = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
            err = np.asarray(np.abs(got.astype(np.longdouble) - ref) / np.maximum(np.abs(ref), 1), np.float64)
            worst = max(worst, float(err.max()))
    assert worst <= LOG_Z_BOUND32, f"log Z: {worst / EPS32:.3f} eps32 at {simd_level}"
