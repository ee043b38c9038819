"""Drop-in replacements for functions of other libraries, computed by thermossl's kernels.

``pot_sinkhorn`` stands for POT's ``ot.sinkhorn(a, b, M, reg, method="sinkhorn_log")`` (equally
``ot.bregman.sinkhorn_log``) with one histogram ``b``: the same arguments and defaults, the same
iterates, the same stopping rule, the same plan, log, warnings and printed output. The whole loop
runs in thermossl's C++ solver (one fused pass over M per iteration); this module only maps the
arguments and the results.

The map: with E = M, T' = reg, w = a and c = b (not normalised), POT's log-domain scalings are
u_i = log a_i + f_i / reg and v_y = mu_y / reg, and one POT iteration (v-update, then u-update)
is one thermossl iteration (mu-update, then f-update). POT starts from u = 0 (or the ``u`` of
``warmstart``), tests the L2 marginal error ||sum_i G_iy - b_y||_2 after iterations 1, 11, 21, ...
and stops when it is < stopThr (so stopThr = 0 never stops early); the solver is told to do the
same (``check_interval=10``, ``error_norm="l2"``, ``strict_tolerance``, ``row_scaling0``), and
to leave the potentials ungauged so that log_u, log_v are POT's.

Zero-mass bins (a_i = 0 or b_y = 0) carry no mass in POT (u_i or v_y = -inf after the first
updates: a zero row or column of the plan); here the solver runs without the zero columns and
with weight 0 on the zero rows, which still take part in the first v-update, as in POT. Unequal total masses are allowed, as in POT (the iteration
then does not converge and warns). What is not taken: a 2-D ``b`` (several histograms), non-numpy
backends and extra keyword arguments (TypeError, as any Python function would raise).
"""
from __future__ import annotations

import warnings

from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from ._backends import cpu
from ._typing import FloatArray
from ._validation import as_real_array, compute_dtype, count, nonnegative_real, positive_temperature

__all__ = ["pot_sinkhorn"]

# POT's message, so that filters written for POT catch this one too.
_NOT_CONVERGED = (
    "Sinkhorn did not converge. You might want to increase the number of iterations `numItermax` "
    "or the regularization parameter `reg`."
)
_CHECK_INTERVAL = 10  # POT tests the marginal error after iterations 1, 11, 21, ...


def _histogram(v, length: int, name: str, dtype_like: np.ndarray) -> np.ndarray:
    """A histogram of `length` bins: finite, >= 0, not all zero; an empty one (or None) is uniform
    1/length, as in POT."""
    if v is None:
        return np.full(length, 1 / length, dtype=dtype_like.dtype)
    v = as_real_array(v, name)
    if v.size == 0:
        return np.full(length, 1 / length, dtype=dtype_like.dtype)
    if v.shape != (length,):
        raise ValueError(
            f"{name} must be a 1-D histogram of length {length} (several histograms, a 2-D b, are not "
            f"supported), got shape {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    negative = np.flatnonzero(v < 0)
    if negative.size:
        raise ValueError(f"{name} must be >= 0 (a histogram), got a negative entry at {int(negative[0])}")
    if not np.any(v > 0):
        raise ValueError(f"{name} must have a positive total mass")
    return v


def _warm_start(warmstart, n: int, m: int):
    """POT's warmstart (u, v): log-scalings of length n and m, no NaN, u < +inf."""
    if warmstart is None:
        return None, None
    try:
        u, v = warmstart
    except (TypeError, ValueError):
        raise TypeError("warmstart must be a pair (u, v) of log-scaling vectors, or None") from None
    u = as_real_array(u, "warmstart[0]")
    v = as_real_array(v, "warmstart[1]")
    for arr, length, name in ((u, n, "warmstart[0]"), (v, m, "warmstart[1]")):
        if arr.shape != (length,):
            raise ValueError(f"{name} must have shape ({length},), got {arr.shape}")
        if not np.all(arr < np.inf):  # NaN fails the test too
            raise ValueError(f"{name} must be < +inf and not NaN")
    return u, v


def pot_sinkhorn(
    a: Optional[npt.ArrayLike],
    b: Optional[npt.ArrayLike],
    M: npt.ArrayLike,
    reg: float,
    numItermax: int = 1000,
    stopThr: float = 1e-9,
    verbose: bool = False,
    log: bool = False,
    warn: bool = True,
    warmstart: Optional[tuple[npt.ArrayLike, npt.ArrayLike]] = None,
) -> Union[FloatArray, tuple[FloatArray, dict[str, Any]]]:
    """The entropic OT plan of POT's ``ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", ...)``.

    G = diag(e^u) exp(-M/reg) diag(e^v) with marginals a, b: POT's arguments, defaults, iterates,
    stopping rule, plan, log, warnings and printed table, computed by thermossl's solver.

    Parameters
    ----------
    a : array_like, shape (n,), or None
        Source histogram, >= 0 (None or empty: uniform 1/n).
    b : array_like, shape (m,), or None
        Target histogram, >= 0 (None or empty: uniform 1/m); one histogram only.
    M : array_like, shape (n, m)
        Cost matrix (float32 stays float32).
    reg : float
        Entropic regularisation, > 0.
    numItermax : int, optional
        Iteration limit, >= 0.
    stopThr : float, optional
        Stop when the L2 marginal error, tested after iterations 1, 11, 21, ..., is < stopThr.
    verbose : bool, optional
        Print POT's table of errors.
    log : bool, optional
        Also return the log dictionary.
    warn : bool, optional
        Emit POT's UserWarning when no test passed.
    warmstart : tuple of two array_like, optional
        ``(u, v)`` log-scalings to start from (POT uses u).

    Returns
    -------
    G : numpy.ndarray, shape (n, m)
        The transport plan, in numpy's promotion of the dtypes of M, a and b (as POT's); with
        ``numItermax=0``, of M and the warm start only (a and b do not enter that plan).
    log : dict
        Only with ``log=True``: ``{"err": [errors of the tests], "niter": index of the last
        iteration, "log_u", "log_v", "u", "v"}``.

    Raises
    ------
    TypeError
        If an array is not real, a count is not an integer, or an unknown keyword is passed.
    ValueError
        If ``M`` is not a non-empty 2-D matrix, ``reg`` is not finite and > 0, ``a`` or ``b`` is
        not a finite non-negative histogram of the right length (or is all zero), ``numItermax`` or
        ``stopThr`` is negative, or ``numItermax`` = 0 with ``log=True``; the message names the
        argument.
    """
    M = as_real_array(M, "M")
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D cost matrix, got ndim={M.ndim}")
    n, m = M.shape
    if n == 0 or m == 0:
        raise ValueError(f"M must have at least one row and one column, got shape {M.shape}")
    reg = positive_temperature(reg, "reg")
    a = _histogram(a, n, "a", M)
    b = _histogram(b, m, "b", M)
    numItermax = count(numItermax, "numItermax", 0)
    stopThr = nonnegative_real(stopThr, "stopThr")
    u0, v0 = _warm_start(warmstart, n, m)
    _, dtype = compute_dtype(M.dtype, a.dtype, b.dtype)
    if numItermax == 0 and log:
        raise ValueError("numItermax must be >= 1 with log=True (no iteration: POT has no niter to report)")

    # POT takes log a and log b up front (numpy warns there for zero bins: so does this).
    log_a = np.log(np.asarray(a, dtype=dtype))
    log_b = np.log(np.asarray(b, dtype=dtype))
    if numItermax == 0:
        # No iteration: the plan of the starting scalings (POT returns it and warns). a and b do
        # not enter it, so its dtype is that of M and the warm start alone, as POT's.
        _, plan_dtype = compute_dtype(M.dtype, *(x.dtype for x in (u0, v0) if x is not None))
        u = np.zeros(n, plan_dtype) if u0 is None else u0.astype(plan_dtype)
        v = np.zeros(m, plan_dtype) if v0 is None else v0.astype(plan_dtype)
        if warn:
            warnings.warn(_NOT_CONVERGED, UserWarning, stacklevel=2)
        # numpy's overflow warning of exp stays, as in POT.
        return np.exp(-M.astype(plan_dtype) / plan_dtype.type(reg) + u[:, None] + v[None, :])

    # Columns of zero mass get v = -inf at the first update and never count again: the solver
    # runs without them. Rows of zero mass still count in the first v-update (through their
    # starting u), so they stay (with weight 0, u = -inf after the first u-update), unless no
    # cost of theirs is finite (then they count for nothing).
    cols = np.flatnonzero(b > 0)
    rows = np.flatnonzero(a > 0)
    if rows.size < n:  # (a pass over M only when some a_i = 0)
        rows = np.flatnonzero((a > 0) | np.isfinite(M[:, cols]).any(axis=1))
    E = np.asarray(M, dtype=dtype)
    if rows.size < n or cols.size < m:
        E = E[np.ix_(rows, cols)]  # a copy only when some bin is empty
    w = np.ascontiguousarray(a[rows], dtype=dtype)
    c = np.ascontiguousarray(b[cols], dtype=dtype)
    u_start = np.zeros(rows.size) if u0 is None else np.ascontiguousarray(u0[rows], dtype=np.float64)

    f, mu, q, iterations, status, index, errors = cpu.sinkhorn_pot(
        E, reg, w, c, stopThr, numItermax, u_start, _CHECK_INTERVAL
    )
    if status == 1:
        raise ValueError(f"M contains NaN (row {int(rows[index])})")
    if status == 2:
        raise ValueError(f"M: every cost of row {int(rows[index])} with b > 0 is +inf; the row's mass cannot move")
    if status == 3:
        where = f" (row {int(rows[index])})" if index >= 0 else ""
        raise ValueError(f"M contains -inf or M/reg overflows{where}")
    if status:
        raise ValueError(f"M: column {int(cols[index])} has b > 0 but +inf cost from every row with a > 0")
    stopped = bool(errors) and errors[-1] < stopThr

    if verbose:
        for j, err in enumerate(errors):
            ii = _CHECK_INTERVAL * j
            if ii % 200 == 0:
                print("{:5s}|{:12s}".format("It.", "Err") + "\n" + "-" * 19)
            print("{:5d}|{:8e}|".format(ii, err))
    if not stopped and warn:
        warnings.warn(_NOT_CONVERGED, UserWarning, stacklevel=2)

    plan = np.zeros((n, m), dtype=dtype)
    plan[np.ix_(rows, cols)] = q * w[:, None]
    if not log:
        return plan
    scale = dtype.type(reg)
    log_u = np.full(n, -np.inf, dtype=dtype)
    log_v = np.full(m, -np.inf, dtype=dtype)
    log_u[rows] = log_a[rows] + f / scale
    log_v[cols] = mu / scale
    info = {
        "err": [dtype.type(e) for e in errors],
        "niter": int(iterations) - 1,  # POT reports the 0-based index of the last iteration
        "log_u": log_u,
        "log_v": log_v,
        "u": np.exp(log_u),
        "v": np.exp(log_v),
    }
    return plan, info
