"""The Gibbs state of energies E at temperature T (the theory page of the documentation), computed by the C++ core.

E is an (N, K) array of energies (E = -scores; +inf marks a forbidden state), T > 0. Results are
per row: (N,) for scalars, (N, K) for states and gradients. float32 stays float32, float64 stays
float64, integer input is computed in float64. Inputs of any strides are read in place; inputs
are never modified.

Errors (ValueError/TypeError naming the argument): E not 2-D or not real, T not finite and > 0,
nan in E, a row with every state forbidden, E = -inf (an infinite score), mismatched shapes.
These are detected from the per-row log Z the kernels return anyway, so checking costs no
extra pass over the matrix.
"""
from __future__ import annotations

from typing import Literal, Optional, Union, overload

import numpy as np
import numpy.typing as npt

from . import _status
from ._backends import backend_for, cpu
from ._typing import FloatArray
from ._validation import check_shape_of, check_states, potential, positive_temperature, temperature_for_dtype

__all__ = [
    "log_partition",
    "column_log_partition",
    "gibbs",
    "gibbs_entropy",
    "cross_entropy",
    "entropy_grad",
]

ArrayLike = npt.ArrayLike


def _energies(backend, E, T: float, name: str = "E"):
    """E validated for a per-row kernel: a 2-D array of the backend in its kernel dtype, K >= 1,
    whose dtype can hold 1/T."""
    E = backend.kernel_matrix(E, name)
    check_states(E.shape, name)
    temperature_for_dtype(T, E.dtype)
    return E


# ---------------------------------------------------------------------------------------------
# Validated twins: arguments already checked (E 2-D in its kernel dtype with K >= 1, T a positive
# float, shift = mu/T as float64 or None); internal callers use these.

def _log_partition(E, T: float, shift=None, backend=cpu):
    log_z = backend.row_logsumexp(E, -1.0 / T, shift)
    _status.check_rows(backend, log_z)
    return log_z


def _gibbs(E, T: float, shift=None, backend=cpu):
    p, log_z = backend.row_softmax(E, -1.0 / T, shift)
    _status.check_rows(backend, log_z)
    return p


# ---------------------------------------------------------------------------------------------
# Public functions: validate once, pick the backend once, call the twin or the kernel.

def log_partition(E: ArrayLike, T: float = 1.0, *, mu: Optional[ArrayLike] = None) -> FloatArray:
    """log Z_i = log sum_y exp((mu_y - E_iy) / T) for each row (mu = 0 by default).

    With chemical potentials ``mu`` this is the log-partition function of a generalized Gibbs
    ensemble (the theory page of the documentation); Sinkhorn's row update is f_i = -T log Z_i.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64), any strides; +inf
        forbids a state. A CUDA device array (torch, CuPy) runs on its device.
    T : float, optional
        Temperature, finite and > 0.
    mu : array_like, shape (K,), optional
        Chemical potentials of the states (finite or -inf).

    Returns
    -------
    numpy.ndarray, shape (N,)
        log Z per row, in E's dtype (an array of E's kind for a device array).

    Raises
    ------
    TypeError
        If an array is not real, or ``T`` is not a number.
    ValueError
        If ``E`` is not 2-D, ``T`` is not finite and > 0, ``E`` holds nan or -inf, a row has every
        state forbidden, or ``mu`` does not have K finite (or -inf) entries; the message names the argument.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    shift = None if mu is None else potential(backend.to_host(mu), E.shape[1], T, "mu", "state")
    return _log_partition(E, T, shift, backend)


def column_log_partition(E: ArrayLike, T: float = 1.0, *, f: Optional[ArrayLike] = None) -> FloatArray:
    """out_y = log sum_i exp((f_i - E_iy) / T) for each column (f = 0 by default).

    Sinkhorn's column half: with f_i + T log w_i in place of f_i, mu_y = T log c_y - T out_y.
    One read of E, rows split over threads with per-thread column accumulators.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64), any strides; +inf
        forbids a state. A CUDA device array (torch, CuPy) runs on its device.
    T : float, optional
        Temperature, finite and > 0.
    f : array_like, shape (N,), optional
        Row potentials.

    Returns
    -------
    numpy.ndarray, shape (K,)
        The column log-sum-exp, in E's dtype.

    Raises
    ------
    TypeError
        If an array is not real, or ``T`` is not a number.
    ValueError
        If ``E`` is not 2-D, ``T`` is not finite and > 0, ``E`` holds nan or -inf, a row has every
        state forbidden (a column here), or ``f`` does not have N entries; the message names the argument.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = backend.kernel_matrix(E)
    temperature_for_dtype(T, E.dtype)
    shift = None if f is None else potential(backend.to_host(f), E.shape[0], T, "f", "sample")
    out = backend.col_logsumexp(E, -1.0 / T, shift)
    _status.check_columns(backend, out)
    return out


def gibbs(E: ArrayLike, T: float = 1.0, *, mu: Optional[ArrayLike] = None) -> FloatArray:
    """The Gibbs state p_iy = exp((mu_y - E_iy) / T) / Z_i, the softmax of (mu - E)/T.

    Forbidden states (E = +inf) get probability exactly 0. With ``mu``, the generalized Gibbs
    ensemble at those chemical potentials (the theory page of the documentation).

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64), any strides; +inf
        forbids a state. A CUDA device array (torch, CuPy) runs on its device.
    T : float, optional
        Temperature, finite and > 0.
    mu : array_like, shape (K,), optional
        Chemical potentials of the states.

    Returns
    -------
    numpy.ndarray, shape (N, K)
        The row-stochastic Gibbs state, in E's dtype.

    Raises
    ------
    TypeError
        If an array is not real, or ``T`` is not a number.
    ValueError
        If ``E`` is not 2-D, ``T`` is not finite and > 0, ``E`` holds nan or -inf, a row has every
        state forbidden, or ``mu`` does not have K entries; the message names the argument.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    shift = None if mu is None else potential(backend.to_host(mu), E.shape[1], T, "mu", "state")
    return _gibbs(E, T, shift, backend)


def gibbs_entropy(E: ArrayLike, T: float = 1.0) -> FloatArray:
    """S_i = -sum_y p_iy log p_iy of the Gibbs state, per row, without materialising p.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64), any strides; +inf
        forbids a state. A CUDA device array (torch, CuPy) runs on its device.
    T : float, optional
        Temperature, finite and > 0.

    Returns
    -------
    numpy.ndarray, shape (N,)
        The entropy of each row's Gibbs state (nats), in E's dtype.

    Raises
    ------
    TypeError
        If an array is not real, or ``T`` is not a number.
    ValueError
        If ``E`` is not 2-D, ``T`` is not finite and > 0, ``E`` holds nan or -inf, a row has every
        state forbidden; the message names the argument.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    entropy, log_z = backend.row_entropy(E, -1.0 / T)
    _status.check_rows(backend, log_z)
    return entropy


@overload
def cross_entropy(q: ArrayLike, E: ArrayLike, T: float = 1.0, grad: Literal[False] = False) -> FloatArray: ...
@overload
def cross_entropy(q: ArrayLike, E: ArrayLike, T: float = 1.0, *, grad: Literal[True]) -> tuple[FloatArray, FloatArray]: ...
@overload
def cross_entropy(q: ArrayLike, E: ArrayLike, T: float, grad: Literal[True]) -> tuple[FloatArray, FloatArray]: ...
@overload
def cross_entropy(
    q: ArrayLike, E: ArrayLike, T: float = 1.0, grad: bool = False
) -> Union[FloatArray, tuple[FloatArray, FloatArray]]: ...
def cross_entropy(
    q: ArrayLike, E: ArrayLike, T: float = 1.0, grad: bool = False
) -> Union[FloatArray, tuple[FloatArray, FloatArray]]:
    """L_i = -sum_y q_iy log p_iy with p = Gibbs(E, T): the SSL loss of labels q, per row.

    With ``grad=True`` also returns dL_i/dE_iy = (q_iy - p_iy sum_y q_iy) / T, i.e. (q - p)/T for a
    row-stochastic q, computed in the same pass. q need not be normalised (the gradient is exact for
    any q). A label on a forbidden state gives L_i = +inf.

    Parameters
    ----------
    q : array_like, shape (N, K)
        Labels (soft or one-hot); cast to E's dtype.
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64), any strides; +inf
        forbids a state. A CUDA device array (torch, CuPy) runs on its device.
    T : float, optional
        Temperature, finite and > 0.
    grad : bool, optional
        Also return the gradient in E.

    Returns
    -------
    loss : numpy.ndarray, shape (N,)
        L per row, in E's dtype.
    gradient : numpy.ndarray, shape (N, K)
        dL/dE, only with ``grad=True`` (then the result is the tuple ``(loss, gradient)``).

    Raises
    ------
    TypeError
        If an array is not real, or ``T`` is not a number.
    ValueError
        If ``E`` is not 2-D, ``T`` is not finite and > 0, ``E`` holds nan or -inf, a row has every
        state forbidden, or ``q`` does not have E's shape; the message names the argument.
    """
    backend = backend_for(q, E)
    T = positive_temperature(T)
    E = backend.matrix(E)
    q = backend.array(q, "q", like=E)  # on a device: of E's library, device and dtype
    (E, q), _ = backend.to_kernel(E, q)
    check_shape_of(q.shape, E.shape, "q")
    check_states(E.shape)
    temperature_for_dtype(T, E.dtype)
    return _cross_entropy(q, E, T, grad, backend)


def _cross_entropy(q, E, T: float, grad: bool = False, backend=cpu):
    """cross_entropy on validated q and E of one shape and kernel dtype."""
    loss, gradient, log_z = backend.row_cross_entropy(q, E, -1.0 / T, grad)
    _status.check_rows(backend, log_z)
    _status.check_losses(backend, loss, q)
    return (loss, gradient) if grad else loss


def entropy_grad(E: ArrayLike, T: float = 1.0) -> FloatArray:
    """dS_i/dE_iy = (1/T) p_iy (log p_iy + S_i) for the Gibbs state of each row.

    Multiply row i by the sample weight w_i for the gradient of the weighted entropy S[p].

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64), any strides; +inf
        forbids a state. A CUDA device array (torch, CuPy) runs on its device.
    T : float, optional
        Temperature, finite and > 0.

    Returns
    -------
    numpy.ndarray, shape (N, K)
        The gradient of each row's entropy in E, in E's dtype.

    Raises
    ------
    TypeError
        If an array is not real, or ``T`` is not a number.
    ValueError
        If ``E`` is not 2-D, ``T`` is not finite and > 0, ``E`` holds nan or -inf, a row has every
        state forbidden; the message names the argument.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    gradient, log_z = backend.row_entropy_grad(E, -1.0 / T)
    _status.check_rows(backend, log_z)
    return gradient
