"""The output pool (thermossl.set_output_pool_limit): large outputs reuse released memory.

Checked: the arrays are ordinary (shape, dtype, C order, writable, aligned), two live outputs never
share memory, released memory is reused for the next output of its size and never while a view
of it lives, the limit bounds what is kept (least recently released evicted), 0 turns the pool
off, results are the same bits with the pool on and off, the environment variable and argument
checks, and concurrent use from threads.
"""
from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import thermossl

MIB = 1 << 20
# 1024 x 2048 float32 = 8 MiB: above the pool's 4 MiB threshold; 4 MiB multiples are whole blocks
ROWS, COLS = 1024, 2048


class Counts:
    """The pool's hits and misses since the test began (output_pool_info counts since import)."""

    def __init__(self):
        info = thermossl.output_pool_info()
        self.hits0, self.misses0 = info["hits"], info["misses"]

    def __call__(self):
        info = thermossl.output_pool_info()
        return info["hits"] - self.hits0, info["misses"] - self.misses0


@pytest.fixture()
def counts():
    """An empty pool at the default limit (restored afterwards) and its counts from now on."""
    limit = thermossl.output_pool_info()["limit"]
    gc.collect()
    thermossl.set_output_pool_limit(0)
    thermossl.set_output_pool_limit(1 << 30)
    yield Counts()
    gc.collect()
    thermossl.set_output_pool_limit(0)
    thermossl.set_output_pool_limit(limit)


def cached():
    info = thermossl.output_pool_info()
    return info["cached_blocks"], info["cached_bytes"]


def energies(rows=ROWS, cols=COLS, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(dtype)


def test_threshold_and_defaults(counts):
    info = thermossl.output_pool_info()
    assert info["min_bytes"] == 4 * MIB
    assert info["limit"] == 1 << 30
    small = thermossl.softmax(energies(64, 64), axis=1)
    del small
    gc.collect()
    assert counts() == (0, 0) and cached() == (0, 0)  # numpy's own allocation below the threshold


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_outputs_are_ordinary_arrays(dtype, counts):
    E = energies(dtype=dtype)
    p = thermossl.softmax(E, axis=1)
    assert counts() == (0, 1)
    assert p.shape == E.shape and p.dtype == dtype
    assert p.flags.c_contiguous and p.flags.writeable and p.flags.aligned
    assert not p.flags.owndata and p.base is not None
    assert p.ctypes.data % 64 == 0
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    p[0, 0] = 7.0  # writable memory
    back = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(back, p)
    assert not np.shares_memory(back, p)


def test_released_memory_is_reused_and_live_outputs_never_share(counts):
    E = energies()
    a = thermossl.softmax(E, axis=1)
    b = thermossl.softmax(E, axis=1)
    assert not np.shares_memory(a, b)
    assert counts() == (0, 2)
    address = a.ctypes.data
    a[:] = np.nan  # what the next output must overwrite
    del a
    gc.collect()
    assert cached() == (1, 8 * MIB)
    c = thermossl.softmax(E, axis=1)
    assert c.ctypes.data == address  # the released block, not fresh pages
    assert not np.shares_memory(b, c)
    assert counts() == (1, 2) and cached() == (0, 0)
    np.testing.assert_array_equal(b, c)  # the reused memory is fully overwritten


def test_a_view_keeps_the_memory_out_of_the_pool(counts):
    E = energies()
    p = thermossl.softmax(E, axis=1)
    expected = p.copy()
    view = p[10:20]
    del p
    gc.collect()
    assert cached() == (0, 0)
    other = thermossl.softmax(2.0 * E, axis=1)  # would overwrite the view's memory if reused
    assert not np.shares_memory(view, other)
    np.testing.assert_array_equal(view, expected[10:20])
    assert counts() == (0, 2)
    del view
    gc.collect()
    assert cached() == (1, 8 * MIB)


def test_only_the_same_size_class_is_reused(counts):
    a = thermossl.softmax(energies(), axis=1)  # 8 MiB
    del a
    gc.collect()
    b = thermossl.softmax(energies(ROWS, COLS + 1024), axis=1)  # 12 MiB: another class
    assert counts() == (0, 2)
    # 1024 x 2047 float32 rounds up to the same 8 MiB class
    c = thermossl.softmax(energies(ROWS, COLS - 1), axis=1)
    assert counts() == (1, 2)
    assert b.shape == (ROWS, COLS + 1024) and c.shape == (ROWS, COLS - 1)


def test_the_limit_bounds_what_is_kept(counts):
    thermossl.set_output_pool_limit(16 * MIB)
    E = energies()
    first, second, third = (thermossl.softmax(E, axis=1) for _ in range(3))
    addresses = [a.ctypes.data for a in (first, second, third)]
    del first
    del second
    del third
    gc.collect()
    # released first, second, third: the two most recent fit the limit, the first was evicted
    assert cached() == (2, 16 * MIB)
    again = [thermossl.softmax(E, axis=1) for _ in range(3)]
    assert counts() == (2, 4)
    assert sorted(a.ctypes.data for a in again[:2]) == sorted(addresses[1:])
    # a block larger than the limit is never kept
    del again
    gc.collect()
    big = thermossl.softmax(energies(ROWS, 3 * COLS), axis=1)  # 24 MiB > the 16 MiB limit
    del big
    gc.collect()
    blocks, nbytes = cached()
    assert nbytes <= 16 * MIB and blocks == 2


def test_limit_zero_turns_the_pool_off_and_frees_it(counts):
    E = energies()
    p = thermossl.softmax(E, axis=1)
    del p
    gc.collect()
    assert cached() == (1, 8 * MIB)
    assert thermossl.set_output_pool_limit(0) == 1 << 30
    assert thermossl.output_pool_info()["limit"] == 0 and cached() == (0, 0)
    q = thermossl.softmax(E, axis=1)
    del q
    gc.collect()
    assert counts() == (0, 1) and cached() == (0, 0)  # the pool was not asked, nor given anything


def test_same_bits_with_and_without_the_pool(counts):
    E = energies(seed=3)
    q = thermossl.softmax(energies(seed=4), axis=1)
    assert counts() == (0, 1)

    def large_outputs():
        return (
            thermossl.softmax(E, axis=1),
            thermossl.log_softmax(E, axis=1),
            thermossl.cross_entropy(q, E, 1.0, grad=True)[1],
            thermossl.entropy_grad(E, 1.0),
            thermossl.sinkhorn(E, 0.5, n_iter=3).q,
        )

    results_on = large_outputs()
    assert counts() == (0, 6)
    thermossl.set_output_pool_limit(0)
    results_off = large_outputs()
    assert counts() == (0, 6)  # none of them from the pool
    for on, off in zip(results_on, results_off):
        np.testing.assert_array_equal(on, off)


def test_argument_checks(counts):
    with pytest.raises(TypeError, match="nbytes"):
        thermossl.set_output_pool_limit(True)
    with pytest.raises(TypeError, match="nbytes"):
        thermossl.set_output_pool_limit(1.5)
    with pytest.raises(ValueError, match="nbytes"):
        thermossl.set_output_pool_limit(-1)
    assert thermossl.set_output_pool_limit(np.int64(64 * MIB)) == 1 << 30
    assert thermossl.output_pool_info()["limit"] == 64 * MIB


def _limit_in_subprocess(value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, THERMOSSL_OUTPUT_POOL_BYTES=value)
    code = "import warnings; warnings.simplefilter('always'); import thermossl; print(thermossl.output_pool_info()['limit'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_environment_variable():
    done = _limit_in_subprocess("0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    done = _limit_in_subprocess("33554432")
    assert done.stdout.strip() == "33554432"
    done = _limit_in_subprocess("lots")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(1 << 30)
    assert "THERMOSSL_OUTPUT_POOL_BYTES" in done.stderr and "RuntimeWarning" in done.stderr


def test_threads_share_the_pool_safely(counts):
    E = energies(512, 4096, seed=5)  # 8 MiB
    expected = thermossl.softmax(E, axis=1)

    def work(_):
        for _ in range(6):
            p = thermossl.softmax(E, axis=1)
            if not np.array_equal(p, expected):
                return False
            del p
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))
    gc.collect()
    hits, misses = counts()
    assert hits > 0 and hits + misses == 1 + 8 * 6
    assert cached()[1] <= thermossl.output_pool_info()["limit"]
