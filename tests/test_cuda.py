"""What is specific to CUDA device arrays, on a GPU (skipped without one).

GPU parity is the kernel tests themselves (test_gibbs, test_special, test_balancing, test_thermo
run over the `backend` fixture: numpy, torch CUDA, CuPy). Here: device memory layouts read in
place, the device Sinkhorn loop's check interval, zero-copy on the caller's stream (torch's
allocator counter), and CuPy in, CuPy out.
"""
from __future__ import annotations

import numpy as np
import pytest

import thermossl
import thermossl.cuda
from thermossl._backends import cuda as cuda_backend

torch = pytest.importorskip("torch", reason="the CUDA tests drive the kernels through torch CUDA tensors")
if not thermossl.cuda.is_available() or not torch.cuda.is_available():
    pytest.skip(
        "no CUDA device (thermossl.cuda.is_available() is False: built without CUDA, or no driver/GPU)",
        allow_module_level=True,
    )

from numpy.testing import assert_allclose  # noqa: E402

from helpers import EPS32  # noqa: E402

DTYPES = (np.float32, np.float64)
DEV = "cuda"


def energies(n=513, k=300, dtype=np.float64, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(n, k))).astype(dtype)


def dev(a):
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEV)


def host(t):
    assert isinstance(t, torch.Tensor) and t.is_cuda, "results must stay on the device as torch tensors"
    return t.cpu().numpy()


def close(ours, ref, dtype, rel32=4 * EPS32, abs_scale=1.0):
    """float64: 1e-12 relative (absolute floor 1e-12 * abs_scale); float32: rel32 relative + floor."""
    if np.dtype(dtype) == np.float64:
        assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * abs_scale)
    else:
        assert_allclose(ours, ref, rtol=rel32, atol=rel32 * abs_scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_transposed_inputs(dtype):
    E = energies(300, 200, dtype)
    T = 0.3
    ref = thermossl.gibbs(E, T)
    big = torch.full((600, 400), 1e4, dtype=getattr(torch, np.dtype(dtype).name), device=DEV)
    big[::2, ::2] = dev(E)
    close(host(thermossl.gibbs(big[::2, ::2], T)), ref, dtype, abs_scale=1e-3)
    transposed = dev(np.ascontiguousarray(E.T)).T
    close(host(thermossl.gibbs(transposed, T)), ref, dtype, abs_scale=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sinkhorn_check_interval(dtype, monkeypatch):
    # The device loop reads its convergence flag on the host every SINKHORN_CHECK_EVERY iterations
    # (one scalar copy each); whatever the interval, it stops where the CPU solver stops.
    E = energies(1000, 50, dtype, scale=1.0)
    rng = np.random.default_rng(4)
    w = rng.uniform(0.5, 1.5, 1000); w /= w.sum()
    c = rng.uniform(0.5, 1.5, 50); c /= c.sum()
    tol = 1e-6 if dtype == np.float64 else 1e-4
    ref = thermossl.sinkhorn(E, 1 / 25, w=w, c=c, tol=tol)
    for check_every in (1, 8):
        monkeypatch.setattr(cuda_backend, "SINKHORN_CHECK_EVERY", check_every)
        res = thermossl.sinkhorn(dev(E), 1 / 25, w=w, c=c, tol=tol)
        # float32 rounding may move the stop by one iteration at the tolerance boundary
        slack = 0 if dtype == np.float64 else 1
        assert abs(res.n_iter - ref.n_iter) <= slack and res.converged
        rel = 1e-10 if dtype == np.float64 else 1e-3
        assert_allclose(host(res.q), ref.q, rtol=rel, atol=rel * 1e-2)
        assert_allclose(host(res.mu), ref.mu, rtol=rel, atol=rel)
    warm_ref = thermossl.sinkhorn(E + 1e-3, 1 / 25, w=w, c=c, tol=tol, mu0=ref.mu)
    warm = thermossl.sinkhorn(dev(E + 1e-3), 1 / 25, w=w, c=c, tol=tol, mu0=ref.mu)
    assert abs(warm.n_iter - warm_ref.n_iter) <= (0 if dtype == np.float64 else 1)


def test_zero_copy_and_caller_stream():
    n, k = 4096, 3000
    E = torch.randn(n, k, device=DEV)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        p = thermossl.gibbs(E, 0.1)
        lz = thermossl.log_partition(E, 0.1)
        res = thermossl.sinkhorn(E, 0.05, n_iter=3)
    stream.synchronize()
    matrix = n * k * 4
    # Outputs: p and q (one matrix each) plus O(N + K) vectors; a copy of E would add a third.
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 2 * matrix + 4 * 1024 * 1024, f"peak {peak} bytes: a matrix-sized copy was made"
    assert p.device == E.device and res.q.device == E.device and lz.dtype == E.dtype


def test_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    E = energies(64, 30, np.float32)
    out = thermossl.gibbs(cupy.asarray(E), 0.5)
    assert isinstance(out, cupy.ndarray)
    close(cupy.asnumpy(out), thermossl.gibbs(E, 0.5), np.float32, abs_scale=1e-3)
