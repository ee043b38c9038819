"""The backend layer (thermossl._backends): routing, one set of kernel names, and the CUDA
backend's Python side run on the CPU.

Without a GPU the CUDA backend cannot run its kernels, but everything around them can: adopting
the caller's arrays, allocating outputs in the caller's library, passing pointers, reading the
kernels' status, turning it into errors, returning results of the input's kind. The last tests
run that code with torch CPU tensors standing in for device arrays and a stand-in ``_cuda``
module whose kernels call the CPU core on the same memory (through the pointers the backend
passes), so every public function must give bitwise the CPU result.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import thermossl
from thermossl import _backends, _core, thermo
from thermossl._backends import cpu
from thermossl._backends import cuda as cuda_backend

from helpers import stand_in_device  # noqa: F401,E402 (a fixture: torch CPU tensors as stand-in device arrays)


class _FakeDeviceArray:
    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}


def test_backend_for_routes_numpy_to_cpu_and_device_arrays_to_cuda():
    assert _backends.backend_for(np.zeros(3)) is cpu
    assert _backends.backend_for([[1.0]], None, 2.0) is cpu
    assert _backends.backend_for(np.zeros(3), _FakeDeviceArray()) is cuda_backend
    assert _backends.backend_for() is cpu


def test_backends_define_the_same_kernels():
    for name in _backends.KERNELS:
        assert callable(getattr(cpu, name)), name
        assert callable(getattr(cuda_backend, name)), name
    adapters = ("array", "matrix", "to_kernel", "to_host", "from_result", "first_nonfinite", "first_nan", "any_posinf",
                "first_off_one")
    for name in adapters:
        assert callable(getattr(cpu, name)) and callable(getattr(cuda_backend, name)), name
    assert cpu.LEDGER_FIELDS == cuda_backend.LEDGER_FIELDS


def test_public_cuda_module_is_only_the_device_queries():
    import thermossl.cuda

    public = {n for n in vars(thermossl.cuda) if not n.startswith("_") and n != "annotations"}
    assert public == {"is_available", "device_count", "is_device_array"}
    assert thermossl.cuda.__all__ == ["is_available", "device_count", "is_device_array"]


# ---------------------------------------------------------------------------------------------
# The CUDA backend's Python side, on the CPU

torch = pytest.importorskip("torch", reason="the stand-in device arrays are torch CPU tensors")


def _view(ptr: int, shape, strides, dtype):
    """A numpy view of memory at `ptr` (strides in elements, nonnegative)."""
    dtype = np.dtype(dtype)
    if ptr == 0:
        return None
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 1
    buffer = (ctypes.c_char * (extent * dtype.itemsize)).from_address(ptr)
    base = np.frombuffer(buffer, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, tuple(shape), tuple(s * dtype.itemsize for s in strides))


def _matrix(m, dtype):
    ptr, rows, cols, s0, s1 = m
    return _view(ptr, (rows, cols), (s0, s1), dtype)


def _vector(ptr, n, dtype):
    return _view(ptr, (n,), (1,), dtype)


class _StandInCuda:
    """thermossl._cuda's functions, computed by the CPU core on the memory the pointers name."""

    @staticmethod
    def device_count():
        return 1

    @staticmethod
    def row_logsumexp(dtype, device, stream, a, scale, shift, out):
        E = _matrix(a, dtype)
        _core.row_logsumexp(E, scale, _vector(shift, E.shape[1], np.float64), None, _vector(out, E.shape[0], dtype))

    @staticmethod
    def row_softmax(dtype, device, stream, a, scale, shift, p, log_z):
        E = _matrix(a, dtype)
        n, k = E.shape
        _core.row_softmax(E, scale, _vector(shift, k, np.float64), _view(p, (n, k), (k, 1), dtype),
                          _vector(log_z, n, dtype))

    @staticmethod
    def row_log_softmax(dtype, device, stream, a, scale, shift, out):
        E = _matrix(a, dtype)
        n, k = E.shape
        _core.row_log_softmax(E, scale, _vector(shift, k, np.float64), _view(out, (n, k), (k, 1), dtype))

    @staticmethod
    def row_entropy(dtype, device, stream, a, scale, shift, entropy, log_z):
        E = _matrix(a, dtype)
        n, k = E.shape
        _core.row_entropy(E, scale, _vector(shift, k, np.float64), _vector(entropy, n, dtype), _vector(log_z, n, dtype))

    @staticmethod
    def row_cross_entropy(dtype, device, stream, q, a, scale, shift, loss, grad, log_z):
        E = _matrix(a, dtype)
        n, k = E.shape
        _core.row_cross_entropy(_matrix(q, dtype), E, scale, _vector(shift, k, np.float64), _vector(loss, n, dtype),
                                _view(grad, (n, k), (k, 1), dtype), _vector(log_z, n, dtype))

    @staticmethod
    def row_entropy_grad(dtype, device, stream, a, scale, shift, grad, entropy, log_z):
        E = _matrix(a, dtype)
        n, k = E.shape
        _core.row_entropy_grad(E, scale, _vector(shift, k, np.float64), _view(grad, (n, k), (k, 1), dtype),
                               _vector(entropy, n, dtype), _vector(log_z, n, dtype))

    @staticmethod
    def ledger_rows(dtype, device, stream, q, a, scale, shift, weights, rows, charges):
        E = _matrix(a, dtype)
        n, k = E.shape
        _core.ledger_rows(_matrix(q, dtype), E, scale, _vector(shift, k, np.float64), _vector(weights, n, dtype),
                          charges=_vector(charges, k, np.float64),
                          **{field: _vector(ptr, n, np.float64) for field, ptr in rows.items()})

    @staticmethod
    def sinkhorn_workspace_bytes(n, k):
        return 8

    @staticmethod
    def sinkhorn(dtype, device, stream, e, T, w, c, mu0, fixed, tol, limit, f, mu, q, charges, workspace,
                 check_every):
        E = _matrix(e, dtype)
        n, k = E.shape
        return _core.sinkhorn(E, T, _vector(w, n, dtype), _vector(c, k, dtype), _vector(mu0, k, dtype), fixed, tol,
                              limit, _vector(f, n, dtype), _vector(mu, k, dtype), _view(q, (n, k), (k, 1), dtype),
                              _vector(charges, k, np.float64))


def _energies(n=40, k=7, dtype=np.float64, seed=0):
    return (3 * np.random.default_rng(seed).normal(size=(n, k))).astype(dtype)


def _same(result, reference):
    assert isinstance(result, torch.Tensor), "results must be of the input's kind"
    assert_array_equal(result.numpy(), reference)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_backend_plumbing_gives_the_cpu_result(stand_in_device, dtype):
    E = _energies(dtype=dtype)
    mu = np.linspace(-1, 1, E.shape[1])
    t = torch.from_numpy(E)
    _same(thermossl.log_partition(t, 0.5, mu=mu), thermossl.log_partition(E, 0.5, mu=mu))
    _same(thermossl.gibbs(t, 0.5), thermossl.gibbs(E, 0.5))
    _same(thermossl.gibbs_entropy(t, 0.5), thermossl.gibbs_entropy(E, 0.5))
    _same(thermossl.entropy_grad(t, 0.5), thermossl.entropy_grad(E, 0.5))
    q = thermossl.gibbs(_energies(dtype=dtype, seed=1), 1.0)
    loss, grad = thermossl.cross_entropy(torch.from_numpy(q), t, 0.5, grad=True)
    ref_loss, ref_grad = thermossl.cross_entropy(q, E, 0.5, grad=True)
    _same(loss, ref_loss)
    _same(grad, ref_grad)
    _same(thermossl.logsumexp(t, axis=1), thermossl.logsumexp(E, axis=1))
    _same(thermossl.logsumexp(t, axis=-1, keepdims=True), thermossl.logsumexp(E, axis=1, keepdims=True))
    _same(thermossl.softmax(t, axis=1), thermossl.softmax(E, axis=1))
    _same(thermossl.log_softmax(t, axis=1), thermossl.log_softmax(E, axis=1))
    w = np.random.default_rng(2).uniform(0.5, 1.5, E.shape[0])
    w /= w.sum()
    res, ref = thermossl.sinkhorn(t, 0.05, w=w, n_iter=3), thermossl.sinkhorn(E, 0.05, w=w, n_iter=3)
    for field in ("q", "f", "mu", "charges"):
        _same(getattr(res, field), getattr(ref, field))
    assert (res.n_iter, res.err, res.converged) == (ref.n_iter, ref.err, ref.converged)
    rows, charges, w_valid = thermo.ledger_rows(torch.from_numpy(q), t, 0.5, w, mu=mu)
    ref_rows, ref_charges, _ = thermo.ledger_rows(q, E, 0.5, w, mu=mu)
    for field, ref_row in ref_rows.items():
        _same(rows[field], ref_row)
    _same(charges, ref_charges)
    assert_array_equal(w_valid, w)
    state, ref_state = thermo.State(t, 0.5, torch.from_numpy(q), w), thermo.State(E, 0.5, q, w)
    for name in ("U", "F", "S", "D", "L", "I"):
        assert getattr(state, name) == getattr(ref_state, name)
    assert_array_equal(state.N, ref_state.N)
    assert thermo.free_energy(t, 0.5, w) == thermo.free_energy(E, 0.5, w)
    qt = torch.from_numpy(q)
    assert thermo.energy(qt, t, w) == thermo.energy(q, E, w)
    assert thermo.loss(qt, t, 0.5, w) == thermo.loss(q, E, 0.5, w)
    assert thermo.relative_entropy(qt, t, 0.5) == thermo.relative_entropy(q, E, 0.5)
    assert thermo.State(t, 0.5).D == thermo.State(E, 0.5).D


def test_cuda_backend_plumbing_raises_the_cpu_errors(stand_in_device):
    E = _energies()
    for bad, message in ((np.nan, "NaN"), (-np.inf, "-inf")):
        b = E.copy()
        b[3, 1] = bad
        with pytest.raises(ValueError, match=message + r".*row 3|row 3"):
            thermossl.log_partition(torch.from_numpy(b), 1.0)
    b = E.copy()
    b[2, :] = np.inf
    with pytest.raises(ValueError, match="every state of row 2 is forbidden"):
        thermossl.gibbs(torch.from_numpy(b), 1.0)
    b = E.copy()
    b[:, 3] = np.inf
    with pytest.raises(ValueError, match="infeasible: state 3"):
        thermossl.sinkhorn(torch.from_numpy(b), 0.1, n_iter=3)
    with pytest.raises(ValueError, match="rows summing to 1"):
        thermo.ledger_rows(torch.from_numpy(2 * thermossl.gibbs(E)), torch.from_numpy(E), 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        thermossl.gibbs(torch.from_numpy(E.astype(np.int64)), 1.0)
    with pytest.raises(TypeError, match="dtype float32, the first argument float64"):
        thermossl.cross_entropy(torch.from_numpy(E.astype(np.float32)), torch.from_numpy(E), 1.0)
    with pytest.raises(TypeError, match="q must be a CUDA device array"):
        thermossl.cross_entropy(E, torch.from_numpy(E), 1.0)
    with pytest.raises(NotImplementedError, match="last axis"):
        thermossl.logsumexp(torch.from_numpy(E), axis=0)
    with pytest.raises(NotImplementedError, match="b or return_sign"):
        thermossl.logsumexp(torch.from_numpy(E), axis=1, b=torch.from_numpy(E))
    with pytest.raises(NotImplementedError, match="relaxation"):
        thermossl.sinkhorn(torch.from_numpy(E), 0.1, relaxation=1.5)
    with pytest.raises(NotImplementedError, match="column_log_partition has no CUDA kernel"):
        thermossl.column_log_partition(torch.from_numpy(E), 1.0)
