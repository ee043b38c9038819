"""The CPU backend: the kernels of the C++ core (``thermossl._core``) on validated numpy arrays.

Arguments are already checked by the caller (``thermossl._validation``): matrices are 2-D numpy
arrays in the kernel dtype (float32 or float64, any strides), vectors are float64 (potentials
``shift`` = mu/T, weights, targets) or None. Each kernel allocates its outputs, runs one call of
the core (the GIL released) and returns the outputs with the status the core reports; nothing
here raises for bad data (``thermossl._status`` reads the status).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _core
from .._validation import as_real_array, check_matrix, compute_dtype, real_matrix
from ._contract import KERNELS, LEDGER_FIELDS  # noqa: F401 (KERNELS: the backend contract)

name = "cpu"

SinkhornRelaxation = _core.SinkhornRelaxation


# ---------------------------------------------------------------------------------------------
# Arguments: user input -> validated arrays of this backend

def array(x, name: str, like=None) -> np.ndarray:
    """x as a real numpy array (any ndim; not cast)."""
    return as_real_array(x, name)


# x as a real 2-D numpy array (not cast): matrix(x, name="E", like=None)
matrix = real_matrix


def kernel_matrix(x, name: str = "E") -> np.ndarray:
    """x as a real 2-D numpy array in its kernel dtype (no copy when already right)."""
    arr = as_real_array(x, name)
    if arr.ndim != 2:
        check_matrix(arr.ndim, name)  # raises
    return arr.astype(compute_dtype(arr.dtype)[1], copy=False)


def to_kernel(*arrays: np.ndarray):
    """The arrays in their common kernel dtype (no copy when already right), and that dtype."""
    _, dtype = compute_dtype(*(a.dtype for a in arrays))
    return [a.astype(dtype, copy=False) for a in arrays], dtype


def from_result(x, like=None) -> np.ndarray:
    """A result of this backend's kernels as the argument of another kernel (no check needed)."""
    return x


def to_host(x):
    """A host (numpy) view of a result or argument: the identity here."""
    return x


# ---------------------------------------------------------------------------------------------
# Status readers (O(N) reads of per-row results the kernels return anyway)

def first_nonfinite(v: np.ndarray):
    """(index, value) of the first entry that is not finite, or None."""
    finite = np.isfinite(v)
    if finite.all():
        return None
    i = int(np.flatnonzero(~finite)[0])
    return i, v[i]


def first_nan(v: np.ndarray) -> Optional[int]:
    nan = np.isnan(v)
    if not nan.any():
        return None
    return int(np.flatnonzero(nan)[0])


def any_posinf(v: np.ndarray) -> bool:
    return bool(np.isposinf(v).any())


def first_off_one(v: np.ndarray, tolerance: float):
    """(index, value) of the first entry with |v - 1| > tolerance, or None."""
    off = np.abs(v - 1.0) > tolerance
    if not off.any():
        return None
    i = int(np.flatnonzero(off)[0])
    return i, v[i]


# ---------------------------------------------------------------------------------------------
# Outputs

_POOL_MIN_BYTES = int(_core.output_pool_stats()["min_bytes"])


def empty_matrix(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous output matrix. A large one (>= 4 MiB) comes from the output
    pool (``thermossl.set_output_pool_limit``): the memory of an earlier output of that size,
    released, instead of fresh pages that the OS faults in and zeroes on the kernel's first
    write."""
    dtype = np.dtype(dtype)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize >= _POOL_MIN_BYTES:
        return _core.pooled_empty(list(shape), dtype)
    return np.empty(shape, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Kernels

def row_logsumexp(E, scale: float, shift=None, b=None, return_sign: bool = False):
    """log Z_i = log|sum_y b_iy exp(scale E_iy + shift_y)|; with return_sign also the signs."""
    out = np.empty(E.shape[0], dtype=E.dtype)
    sign = np.empty_like(out) if return_sign else None
    _core.row_logsumexp(E, scale, shift, b, out, sign)
    return (out, sign) if return_sign else out


def row_softmax(E, scale: float, shift=None, log_z: bool = True):
    """(p, log Z) with p_iy = softmax_y(scale E_iy + shift_y); log Z None unless asked."""
    p = empty_matrix(E.shape, E.dtype)
    lz = np.empty(E.shape[0], dtype=E.dtype) if log_z else None
    _core.row_softmax(E, scale, shift, p, lz)
    return p, lz


def row_log_softmax(E, scale: float, shift=None):
    out = empty_matrix(E.shape, E.dtype)
    _core.row_log_softmax(E, scale, shift, out)
    return out


def row_entropy(E, scale: float, shift=None):
    """(S, log Z) of each row's softmax."""
    entropy = np.empty(E.shape[0], dtype=E.dtype)
    log_z = np.empty_like(entropy)
    _core.row_entropy(E, scale, shift, entropy, log_z)
    return entropy, log_z


def row_cross_entropy(q, E, scale: float, grad: bool, shift=None):
    """(L, dL/dE or None, log Z) with L_i = -sum_y q_iy log softmax_y(scale E_iy + shift_y)."""
    loss = np.empty(E.shape[0], dtype=E.dtype)
    log_z = np.empty_like(loss)
    gradient = empty_matrix(E.shape, E.dtype) if grad else None
    _core.row_cross_entropy(q, E, scale, shift, loss, gradient, log_z)
    return loss, gradient, log_z


def row_entropy_grad(E, scale: float, shift=None):
    """(dS/dE, log Z) of each row's softmax."""
    gradient = empty_matrix(E.shape, E.dtype)
    log_z = np.empty(E.shape[0], dtype=E.dtype)
    _core.row_entropy_grad(E, scale, shift, gradient, None, log_z)
    return gradient, log_z


def col_logsumexp(E, scale: float, shift=None):
    """out_y = log sum_i exp(scale E_iy + shift_i)."""
    out = np.empty(E.shape[1], dtype=E.dtype)
    _core.col_logsumexp(E, scale, shift, out)
    return out


def sinkhorn(E, T: float, w, c, mu0, fixed: int, tol: float, limit: int, omega: float, return_q: bool):
    """The log-domain Sinkhorn solver. w, c: float64 or None; mu0: real (K,) or None (all cast to
    the kernel dtype here); tol a float. Returns (q, f, mu, charges, n_iter, err, converged,
    status, index)."""
    dtype = E.dtype
    n, k = E.shape
    if w is not None:
        w = w.astype(dtype)
    if c is not None:
        c = c.astype(dtype)
    if mu0 is not None:
        mu0 = np.ascontiguousarray(mu0, dtype=dtype)
    f = np.empty(n, dtype=dtype)
    mu = np.empty(k, dtype=dtype)
    q = empty_matrix((n, k), dtype) if return_q else None
    charges = np.empty(k, dtype=np.float64)
    iterations, err, converged, status, index = _core.sinkhorn(
        E, T, w, c, mu0, fixed, tol, limit, f, mu, q, charges, relaxation=omega
    )
    return q, f, mu, charges, iterations, err, converged, status, index


def sinkhorn_pot(E, reg: float, w, c, stop_threshold: float, limit: int, u_start, check_interval: int):
    """POT's ``sinkhorn_log`` iteration by the same solver (for ``thermossl.compat``; CPU only):
    POT's start (row scaling ``u_start``, float64 (N,)), the L2 marginal error checked every
    ``check_interval`` iterations with a strict test against ``stop_threshold``, no gauge. w, c:
    contiguous vectors of E's dtype. Returns (f, mu, q, iterations, status, index, errors) with
    ``errors`` the list of the checked marginal errors."""
    n, k = E.shape
    f = np.empty(n, dtype=E.dtype)
    mu = np.empty(k, dtype=E.dtype)
    q = empty_matrix((n, k), E.dtype)
    errors: list = []
    iterations, _, _, status, index = _core.sinkhorn(
        E, reg, w, c, None, 0, stop_threshold, limit, f, mu, q, None,
        check_interval=check_interval, error_norm="l2", strict_tolerance=True,
        row_scaling0=u_start, fix_gauge=False, errors=errors,
    )
    return f, mu, q, iterations, status, index, errors


def sinkhorn_pass(E, T: float, w, mu, f, charges, q=None, energy_sign: float = 1.0):
    """One fused Sinkhorn pass at mu into f, charges (and q): returns (status, index).
    energy_sign -1: E holds scores, the energies are -E (no negated copy)."""
    return _core.sinkhorn_pass(E, T, w, mu, f, charges, q, energy_sign)


def ledger_rows(q, E, scale: float, shift, w):
    """Per-row sums of a ledger row (dict of (N,) float64) and the charges (K,) float64. w:
    float64 (N,) or None (cast to the kernel dtype here)."""
    n, k = E.shape
    rows = {field: np.empty(n) for field in LEDGER_FIELDS}
    charges = np.empty(k)
    _core.ledger_rows(q, E, scale, shift, None if w is None else w.astype(E.dtype), charges=charges, **rows)
    return rows, charges


def label_rows(q, w):
    """(S[q] per row, sum_y q_iy per row, charges N_y = sum_i w_i q_iy), float64."""
    n, k = q.shape
    entropy_rows = np.empty(n)
    mass_rows = np.empty(n)
    charges = np.empty(k)
    _core.label_rows(q, None if w is None else w.astype(q.dtype), entropy_rows, mass_rows, charges)
    return entropy_rows, mass_rows, charges


def row_difference_dot(u, v, w):
    """out_i = sum_y u_iy (v_iy - w_iy) as float64 (N,)."""
    out = np.empty(u.shape[0])
    _core.row_difference_dot(u, v, w, out)
    return out
