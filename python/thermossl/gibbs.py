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

import numpy as np

from . import _core
from . import cuda as _device
from ._validation import as_real_array, compute_dtype, positive_temperature, shift_vector, temperature_for_dtype

__all__ = [
    "log_partition",
    "column_log_partition",
    "gibbs",
    "gibbs_entropy",
    "cross_entropy",
    "entropy_grad",
]


def _energies(E, *others, name: str = "E"):
    """E (and arrays promoted with it) as 2-D kernel-dtype arrays; no copy when already right."""
    E = as_real_array(E, name)
    if E.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, K), got ndim={E.ndim}")
    _, dtype = compute_dtype(E.dtype, *(o.dtype for o in others))
    return E.astype(dtype, copy=False), dtype


def _potential(v, length: int, T: float, dtype, name: str, what: str):
    """A per-state (or per-sample) potential divided by T, as the float64 shift the core takes."""
    return shift_vector(v, length, T, name, what)


def _check_rows(log_z: np.ndarray, name: str = "E") -> None:
    """Raise for rows whose Gibbs state does not exist, from log Z_i alone."""
    bad = ~np.isfinite(log_z)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    value = log_z[i]
    if np.isnan(value):
        raise ValueError(f"{name} contains NaN (row {i})")
    if value > 0:
        raise ValueError(
            f"{name} contains -inf (an infinite score) or E/T overflows in row {i}; energies must be > -inf"
        )
    raise ValueError(
        f"{name}: every state of row {i} is forbidden (+inf energy); a Gibbs state needs at least one finite energy per row"
    )


def _check_states(E: np.ndarray, name: str = "E") -> None:
    if E.shape[1] == 0 and E.shape[0] > 0:
        raise ValueError(f"{name} must have at least one state per row (K >= 1), got shape {E.shape}")


def log_partition(E, T=1.0, *, mu=None):
    """log Z_i = log sum_y exp((mu_y - E_iy) / T) for each row (mu = 0 by default).

    With chemical potentials ``mu`` (K,) this is the log-partition function of a generalized
    Gibbs ensemble (THEORY.md §3); Sinkhorn's row update is f_i = -T log Z_i.
    """
    if _device.is_device_array(E):
        return _device.log_partition(E, T, mu=mu)
    T = positive_temperature(T)
    E, dtype = _energies(E)
    temperature_for_dtype(T, dtype)
    _check_states(E)
    shift = _potential(mu, E.shape[1], T, dtype, "mu", "state")
    out = np.empty(E.shape[0], dtype=dtype)
    _core.row_logsumexp(E, -1.0 / T, shift, None, out, None)
    _check_rows(out)
    return out


def column_log_partition(E, T=1.0, *, f=None):
    """out_y = log sum_i exp((f_i - E_iy) / T) for each column (f = 0 by default).

    Sinkhorn's column half: with f_i + T log w_i in place of f_i, mu_y = T log c_y - T out_y.
    One read of E, rows split over threads with per-thread column accumulators.
    """
    T = positive_temperature(T)
    E, dtype = _energies(E)
    temperature_for_dtype(T, dtype)
    shift = _potential(f, E.shape[0], T, dtype, "f", "sample")
    out = np.empty(E.shape[1], dtype=dtype)
    _core.col_logsumexp(E, -1.0 / T, shift, out)
    if np.isnan(out).any():
        raise ValueError(f"E contains NaN (column {int(np.flatnonzero(np.isnan(out))[0])})")
    if np.isposinf(out).any():
        raise ValueError("E contains -inf (an infinite score) or E/T overflows; energies must be > -inf")
    return out


def gibbs(E, T=1.0, *, mu=None):
    """The Gibbs state p_iy = exp(-E_iy / T) / Z_i (softmax of -E/T); (N, K).

    Forbidden states (E = +inf) get probability exactly 0. With ``mu``, the GGE at those
    chemical potentials.
    """
    if _device.is_device_array(E):
        return _device.gibbs(E, T, mu=mu)
    T = positive_temperature(T)
    E, dtype = _energies(E)
    temperature_for_dtype(T, dtype)
    _check_states(E)
    shift = _potential(mu, E.shape[1], T, dtype, "mu", "state")
    p = np.empty(E.shape, dtype=dtype)
    log_z = np.empty(E.shape[0], dtype=dtype)
    _core.row_softmax(E, -1.0 / T, shift, p, log_z)
    _check_rows(log_z)
    return p


def gibbs_entropy(E, T=1.0):
    """S_i = -sum_y p_iy log p_iy of the Gibbs state, per row, without materialising p (N,)."""
    if _device.is_device_array(E):
        return _device.gibbs_entropy(E, T)
    T = positive_temperature(T)
    E, dtype = _energies(E)
    temperature_for_dtype(T, dtype)
    _check_states(E)
    entropy = np.empty(E.shape[0], dtype=dtype)
    log_z = np.empty_like(entropy)
    _core.row_entropy(E, -1.0 / T, None, entropy, log_z)
    _check_rows(log_z)
    return entropy


def cross_entropy(q, E, T=1.0, grad=False):
    """L_i = -sum_y q_iy log p_iy with p = Gibbs(E, T): the SSL loss of labels q, per row (N,).

    With ``grad=True`` returns ``(L, dL/dE)`` where dL_i/dE_iy = (q_iy - p_iy sum_y q_iy) / T,
    i.e. (q - p)/T for a row-stochastic q, computed in the same pass. q need not be normalised
    (the gradient is exact for any q). A label on a forbidden state gives L_i = +inf.
    """
    if _device.any_device_array(q, E):
        return _device.cross_entropy(q, E, T, grad)
    T = positive_temperature(T)
    q = as_real_array(q, "q")
    E, dtype = _energies(E, q)
    temperature_for_dtype(T, dtype)
    if q.shape != E.shape:
        raise ValueError(f"q must have the shape of E {E.shape}, got {q.shape}")
    _check_states(E)
    q = q.astype(dtype, copy=False)
    loss = np.empty(E.shape[0], dtype=dtype)
    log_z = np.empty_like(loss)
    gradient = np.empty(E.shape, dtype=dtype) if grad else None
    _core.row_cross_entropy(q, E, -1.0 / T, None, loss, gradient, log_z)
    _check_rows(log_z)
    # Only rows whose loss is not finite can hold a non-finite q (inf * finite log p): look there.
    suspect = np.flatnonzero(~np.isfinite(loss))
    if suspect.size:
        bad = suspect[~np.all(np.isfinite(q[suspect]), axis=1)]
        if bad.size:
            raise ValueError(f"q contains NaN or inf (row {int(bad[0])}); labels must be finite")
        if np.isnan(loss).any():
            raise ValueError(f"q contains NaN or inf (row {int(np.flatnonzero(np.isnan(loss))[0])})")
    return (loss, gradient) if grad else loss


def entropy_grad(E, T=1.0):
    """dS_i/dE_iy = (1/T) p_iy (log p_iy + S_i) for the Gibbs state of each row (N, K).

    Multiply row i by the sample weight w_i for the gradient of the weighted entropy S[p].
    """
    if _device.is_device_array(E):
        return _device.entropy_grad(E, T)
    T = positive_temperature(T)
    E, dtype = _energies(E)
    temperature_for_dtype(T, dtype)
    _check_states(E)
    gradient = np.empty(E.shape, dtype=dtype)
    log_z = np.empty(E.shape[0], dtype=dtype)
    _core.row_entropy_grad(E, -1.0 / T, None, gradient, None, log_z)
    _check_rows(log_z)
    return gradient
