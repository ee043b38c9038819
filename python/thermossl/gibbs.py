"""The Gibbs state of energies E at temperature T (THEORY.md §2), computed by the C++ core.

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

from typing import Optional, Union

import numpy as np
import numpy.typing as npt

from . import _status
from ._backends import backend_for, cpu
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

def log_partition(E: ArrayLike, T: float = 1.0, *, mu: Optional[ArrayLike] = None) -> npt.NDArray[np.floating]:
    """log Z_i = log sum_y exp((mu_y - E_iy) / T) for each row (mu = 0 by default).

    With chemical potentials ``mu`` (K,) this is the log-partition function of a generalized
    Gibbs ensemble (THEORY.md §3); Sinkhorn's row update is f_i = -T log Z_i.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    shift = None if mu is None else potential(backend.to_host(mu), E.shape[1], T, "mu", "state")
    return _log_partition(E, T, shift, backend)


def column_log_partition(E: ArrayLike, T: float = 1.0, *, f: Optional[ArrayLike] = None) -> npt.NDArray[np.floating]:
    """out_y = log sum_i exp((f_i - E_iy) / T) for each column (f = 0 by default).

    Sinkhorn's column half: with f_i + T log w_i in place of f_i, mu_y = T log c_y - T out_y.
    One read of E, rows split over threads with per-thread column accumulators.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = backend.kernel_matrix(E)
    temperature_for_dtype(T, E.dtype)
    shift = None if f is None else potential(backend.to_host(f), E.shape[0], T, "f", "sample")
    out = backend.col_logsumexp(E, -1.0 / T, shift)
    _status.check_columns(backend, out)
    return out


def gibbs(E: ArrayLike, T: float = 1.0, *, mu: Optional[ArrayLike] = None) -> npt.NDArray[np.floating]:
    """The Gibbs state p_iy = exp(-E_iy / T) / Z_i (softmax of -E/T); (N, K).

    Forbidden states (E = +inf) get probability exactly 0. With ``mu``, the GGE at those
    chemical potentials.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    shift = None if mu is None else potential(backend.to_host(mu), E.shape[1], T, "mu", "state")
    return _gibbs(E, T, shift, backend)


def gibbs_entropy(E: ArrayLike, T: float = 1.0) -> npt.NDArray[np.floating]:
    """S_i = -sum_y p_iy log p_iy of the Gibbs state, per row, without materialising p (N,)."""
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    entropy, log_z = backend.row_entropy(E, -1.0 / T)
    _status.check_rows(backend, log_z)
    return entropy


def cross_entropy(
    q: ArrayLike, E: ArrayLike, T: float = 1.0, grad: bool = False
) -> Union[npt.NDArray[np.floating], tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]]:
    """L_i = -sum_y q_iy log p_iy with p = Gibbs(E, T): the SSL loss of labels q, per row (N,).

    With ``grad=True`` returns ``(L, dL/dE)`` where dL_i/dE_iy = (q_iy - p_iy sum_y q_iy) / T,
    i.e. (q - p)/T for a row-stochastic q, computed in the same pass. q need not be normalised
    (the gradient is exact for any q). A label on a forbidden state gives L_i = +inf.
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


def entropy_grad(E: ArrayLike, T: float = 1.0) -> npt.NDArray[np.floating]:
    """dS_i/dE_iy = (1/T) p_iy (log p_iy + S_i) for the Gibbs state of each row (N, K).

    Multiply row i by the sample weight w_i for the gradient of the weighted entropy S[p].
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    gradient, log_z = backend.row_entropy_grad(E, -1.0 / T)
    _status.check_rows(backend, log_z)
    return gradient
