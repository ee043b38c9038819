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
