"""Drop-in replacements for functions of other libraries, computed by thermossl's kernels.

``pot_sinkhorn`` stands for POT's ``ot.sinkhorn(a, b, M, reg, method='sinkhorn_log')``: same
arguments, same transport plan (the same iteration: a column update, then a row update),
computed by :func:`thermossl.sinkhorn` with E = M, T = reg, w = a/|a|, c = b/|b|.
The iterates themselves coincide when ``a`` is uniform (POT's zero start is then thermossl's
constant-f start); for other ``a`` the first iterations differ and the converged plans agree.
Differences: the stopping test is the L1 charge error sum_y |sum_i G_iy - b_y| checked every
iteration (POT checks the L2 norm every 10 iterations), so at equal ``stopThr`` thermossl stops
at an equal or tighter tolerance; ``b`` must be one histogram (1-D).
"""
from __future__ import annotations

import warnings

import numpy as np

from ._validation import as_real_array
from .balancing import sinkhorn

__all__ = ["pot_sinkhorn"]


def _marginal(v, length: int, name: str) -> np.ndarray:
    if v is None or (not isinstance(v, np.ndarray) and len(v) == 0):
        return np.full(length, 1.0 / length)
    v = as_real_array(v, name)
    if v.ndim != 1 or v.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D histogram of length {length}, got shape {v.shape}")
    return v


def pot_sinkhorn(a, b, M, reg, numItermax=1000, stopThr=1e-9, log=False):
    """The entropic OT plan G = diag(e^u) exp(-M/reg) diag(e^v) with marginals a, b (like POT).

    Returns G, or (G, log) with ``log`` holding 'log_u', 'log_v', 'u', 'v', 'niter' and 'err'
    as POT's sinkhorn_log does.
    """
    M = as_real_array(M, "M")
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D cost matrix, got ndim={M.ndim}")
    a = _marginal(a, M.shape[0], "a")
    b = _marginal(b, M.shape[1], "b")
    mass = float(np.sum(a, dtype=np.float64))
    if not np.isclose(mass, float(np.sum(b, dtype=np.float64)), rtol=1e-6, atol=0):
        raise ValueError("a and b must have the same total mass")
    if not mass > 0:
        raise ValueError("a must have a positive total mass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sinkhorn(M, reg, w=a / mass, c=b / mass, tol=stopThr / mass, max_iter=numItermax)
    if not result.converged:
        warnings.warn(
            "Sinkhorn did not converge. You might want to increase the number of iterations "
            "`numItermax` or the regularization parameter `reg`.",
            UserWarning,
            stacklevel=2,
        )
    plan = result.q * a[:, None]
    if not log:
        return plan
    dtype = result.f.dtype
    log_u = np.log(a.astype(dtype)) + result.f / dtype.type(reg)
    log_v = result.mu / dtype.type(reg)
    info = {
        "err": [result.err * mass],
        "niter": result.n_iter,
        "log_u": log_u,
        "log_v": log_v,
        "u": np.exp(log_u),
        "v": np.exp(log_v),
    }
    return plan, info
