"""Streaming stores (thermossl.set_streaming_stores): softmax and the cross-entropy gradient write
their N x K outputs by non-temporal stores when the output is large, computed in a staging row.

Checked at every SIMD level this CPU runs: the outputs (and log Z, the loss) are the same bits with
streaming stores on and off -- float32, float64 and half-precision scores, row lengths below one
cache line, not a multiple of the vector, outputs at addresses off the line and off the vector,
rows with -inf, nan and a shift, one thread and several; "auto" decides by the output's size
against twice the last-level cache; the mode's argument checks and the environment variable.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import thermossl
from thermossl import _core


@pytest.fixture()
def restore_mode():
    before = thermossl.streaming_stores_info()["mode"]
    yield
    thermossl.set_streaming_stores(before)


def scores(rows, cols, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = (3 * rng.standard_normal((rows, cols))).astype(dtype)
    if rows > 3 and cols > 2:
        a[1, 0] = -np.inf  # a term that is exactly 0
        a[2, :] = a[2, 0]  # ties at the max: every term 1
        a[3, cols // 2] = np.nan  # a nan row
    return a


def labels(rows, cols, dtype, seed=1):
    q = np.random.default_rng(seed).random((rows, cols)).astype(dtype)
    q[:, ::7] = 0  # zero labels take the q = 0 branch
    return q / q.sum(axis=1, keepdims=True)


def output(rows, cols, dtype, offset):
    """A C-contiguous (rows, cols) array `offset` elements past a 64-byte line, its bytes 0xA5 (not
    left over from the run before: an element a mode fails to write shows)."""
    item = np.dtype(dtype).itemsize
    raw = np.full(rows * cols * item + 128 + offset * item, 0xA5, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset * item
    return raw[start:start + rows * cols * item].view(dtype).reshape(rows, cols)


def both_modes(run):
    """run() -> tuple of arrays, once with streaming stores off and once on."""
    thermossl.set_streaming_stores("off")
    plain = [np.copy(x) for x in run()]
    thermossl.set_streaming_stores("on")
    streamed = [np.copy(x) for x in run()]
    return plain, streamed


def assert_same_bits(plain, streamed):
    for x, y in zip(plain, streamed):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8))


SHAPES = [(5, 3), (7, 17), (33, 100), (64, 3000), (40, 1001)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("offset", [0, 1, 8])
def test_softmax_same_bits(simd_level, restore_mode, dtype, rows, cols, offset):
    a = scores(rows, cols, dtype)
    shift = np.linspace(-1.0, 1.0, cols)

    def run():
        p, log_z = output(rows, cols, dtype, offset), np.empty(rows, dtype)
        _core.row_softmax(a, -0.7, shift, p, log_z)
        return p, log_z

    plain, streamed = both_modes(run)
    assert_same_bits(plain, streamed)
    ok = np.isfinite(plain[0]).all(axis=1)
    assert ok.sum() >= rows - 2  # row 1 holds -inf (x = +inf at this scale), row 3 a nan
    np.testing.assert_allclose(plain[0][ok].sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.isnan(plain[0][~ok]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("offset", [0, 3])
def test_cross_entropy_gradient_same_bits(simd_level, restore_mode, dtype, rows, cols, offset):
    a = scores(rows, cols, dtype)
    q = labels(rows, cols, dtype)

    def run():
        loss, grad, log_z = np.empty(rows, dtype), output(rows, cols, dtype, offset), np.empty(rows, dtype)
        _core.row_cross_entropy(q, a, -1.3, None, loss, grad, log_z)
        return loss, grad, log_z

    plain, streamed = both_modes(run)
    assert_same_bits(plain, streamed)
    # the gradient against an independent formula: -scale (q - p sum q), p = softmax(scale a)
    x = -1.3 * a.astype(np.float64)
    finite = np.isfinite(plain[1]).all(axis=1)
    x = x[finite]
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ref = 1.3 * (q[finite] - p * q[finite].sum(axis=1, keepdims=True))
    np.testing.assert_allclose(plain[1][finite], ref, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("offset", [0, 5])
def test_half_scores_same_bits(simd_level, restore_mode, half, offset):
    rows, cols = 48, 1000
    a32 = scores(rows, cols, np.float32)
    if half == "float16":
        a = a32.astype(np.float16)
    else:  # bfloat16: the top 16 bits of each float32
        a = (a32.view(np.uint32) >> 16).astype(np.uint16)
    raw = (a.ctypes.data, rows, cols, cols, 1)
    q = labels(rows, cols, np.float32)

    def run():
        p, log_z = output(rows, cols, np.float32, offset), np.empty(rows, np.float32)
        _core.pointers.row_softmax(half, raw, -1.0, 0, p.ctypes.data, log_z.ctypes.data)
        loss, grad = np.empty(rows, np.float32), output(rows, cols, np.float32, offset)
        q_raw = (q.ctypes.data, rows, cols, cols, 1)
        _core.pointers.row_cross_entropy_float_labels(half, q_raw, raw, -1.0, 0, loss.ctypes.data, grad.ctypes.data, 0)
        return p, log_z, loss, grad

    plain, streamed = both_modes(run)
    assert_same_bits(plain, streamed)
    assert np.isfinite(plain[0][0]).all()


def test_public_calls_same_bits_multithreaded(restore_mode):
    # 256 x 3000 = 768 000 elements: above the parallel threshold, so both threads stream
    E = scores(256, 3000, np.float32, seed=4)[4:]
    q = labels(252, 3000, np.float32)

    def run():
        loss, grad = thermossl.cross_entropy(q, E, 0.1, grad=True)
        return thermossl.gibbs(E, 0.1), loss, grad

    plain, streamed = both_modes(run)
    assert_same_bits(plain, streamed)


def test_mode_api(restore_mode):
    info = thermossl.streaming_stores_info()
    assert set(info) == {"mode", "last_level_cache_bytes", "auto_threshold_bytes"}
    assert info["mode"] in ("auto", "on", "off")
    assert info["last_level_cache_bytes"] > 0
    assert info["auto_threshold_bytes"] == 2 * info["last_level_cache_bytes"]
    thermossl.set_streaming_stores("auto")
    assert thermossl.set_streaming_stores("on") == "auto"
    assert thermossl.streaming_stores_info()["mode"] == "on"
    assert thermossl.set_streaming_stores("off") == "on"
    for bad in ("ON", "yes", "", None, 1):
        with pytest.raises(ValueError, match="mode"):
            thermossl.set_streaming_stores(bad)
    assert thermossl.streaming_stores_info()["mode"] == "off"


def test_last_level_cache_matches_sysfs():
    # the largest cache level of cpu0 that sysfs lists, where it lists any
    base = "/sys/devices/system/cpu/cpu0/cache"
    if not os.path.isdir(base):
        assert thermossl.streaming_stores_info()["last_level_cache_bytes"] > 0
        return
    best = (0, 0)
    for entry in sorted(os.listdir(base)):
        try:
            with open(os.path.join(base, entry, "level")) as f:
                level = int(f.read())
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            with open(os.path.join(base, entry, "type")) as f:
                kind = f.read().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        if level > best[0]:
            best = (level, size)
    if best[1]:
        assert thermossl.streaming_stores_info()["last_level_cache_bytes"] == best[1]


@pytest.mark.parametrize("value,mode,warns", [("on", "on", False), ("off", "off", False), ("sometimes", "auto", True)])
def test_environment_variable(value, mode, warns):
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import thermossl; print(thermossl.streaming_stores_info()['mode'])")
    env = dict(os.environ, THERMOSSL_STREAMING_STORES=value)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mode
    assert ("THERMOSSL_STREAMING_STORES" in done.stderr) == warns
