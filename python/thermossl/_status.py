"""Kernel status -> the package's errors and warnings: the one place that reads what a kernel
reports (per-row log Z, per-row label sums, the solvers' status codes) and raises.

The checks cost no extra pass over the (N, K) matrix: they read the O(N) per-row results the
kernels return anyway, through the backend's status readers (one scalar sync on a device).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from . import _messages as msg

__all__ = ["check_rows", "check_columns", "check_losses", "check_labels", "sinkhorn_error", "warn_not_converged"]


def row_error(index: int, value, name: str = "E") -> ValueError:
    """The error of a row whose Gibbs state does not exist, from its log Z (nan, +inf, -inf)."""
    if math.isnan(value):
        return ValueError(msg.ROW_NAN.format(name=name, index=index))
    if value > 0:
        return ValueError(msg.ROW_NEG_INF.format(name=name, index=index))
    return ValueError(msg.ROW_FORBIDDEN.format(name=name, index=index))


def check_rows(backend, log_z, name: str = "E") -> None:
    """Raise for rows whose Gibbs state does not exist, from log Z_i alone."""
    bad = backend.first_nonfinite(log_z)
    if bad is not None:
        raise row_error(bad[0], bad[1], name)


def check_columns(backend, column_log_z) -> None:
    """Raise for a column log-partition that is nan (nan in E) or +inf (E = -inf or overflow)."""
    index = backend.first_nan(column_log_z)
    if index is not None:
        raise ValueError(msg.COLUMN_NAN.format(index=index))
    if backend.any_posinf(column_log_z):
        raise ValueError(msg.COLUMN_NEG_INF)


def check_losses(backend, loss, q=None) -> None:
    """Raise for labels q with nan or inf entries, from the per-row loss: such a row's loss is not
    finite (a label on a forbidden state also gives +inf, which is valid, so only the rows whose
    loss is not finite are looked at in q)."""
    if backend.first_nonfinite(loss) is None:
        return
    host_loss = backend.to_host(loss)
    suspect = np.flatnonzero(~np.isfinite(np.asarray(host_loss)))
    if q is not None:
        rows = np.asarray(backend.to_host(q[suspect]))
        bad = suspect[~np.all(np.isfinite(rows), axis=1)]
        if bad.size:
            raise ValueError(msg.LABEL_NAN.format(index=int(bad[0])))
    index = backend.first_nan(loss)
    if index is not None:
        raise ValueError(msg.LABEL_NAN.format(index=index))


def mass_tolerance(dtype) -> float:
    """How far from 1 a label row's sum may be, for labels of this dtype."""
    return 1e-3 if np.dtype(dtype) == np.float32 else 1e-6


def check_labels(backend, entropy_rows, mass_rows, dtype, name: str = "q") -> None:
    """Raise unless q is a label state: finite, nonnegative rows (S[q]_i finite) summing to 1."""
    bad = backend.first_nonfinite(entropy_rows)
    if bad is not None:
        raise ValueError(msg.LABELS_NOT_FINITE.format(name=name, index=bad[0]))
    off = backend.first_off_one(mass_rows, mass_tolerance(dtype))
    if off is not None:
        raise ValueError(msg.LABELS_NOT_NORMALISED.format(name=name, index=off[0], mass=float(off[1])))


def sinkhorn_error(status: int, index: int) -> ValueError:
    """The error of a Sinkhorn status code (1 nan, 2 forbidden row, 3 -inf/overflow, 4 infeasible)."""
    return ValueError(msg.SINKHORN_STATUS[status].format(index=index))


def warn_not_converged(limit: int, err: float, tol: float, stacklevel: int, iterations=None, mu=None,
                       T=None) -> None:
    """The RuntimeWarning of a tolerance-mode Sinkhorn run whose returned state misses ``tol``:
    it hit max_iter, or (``iterations < limit``, with the returned ``mu`` and ``T``) the solver
    reached the tolerance but the gauge shift rounded the potentials beyond it in their dtype.
    ``stacklevel`` counts from the function calling this one (1: that function, 2: its caller)."""
    if iterations is not None and iterations < limit and mu is not None:
        finite = np.abs(mu[np.isfinite(mu)])
        scale = float(finite.max()) / T if finite.size else 0.0
        text = msg.GAUGE_ROUNDING.format(err=err, tol=tol, iterations=iterations, scale=scale, dtype=np.dtype(mu.dtype).name)
    else:
        text = msg.NOT_CONVERGED.format(limit=limit, err=err, tol=tol)
    warnings.warn(text, RuntimeWarning, stacklevel=stacklevel + 1)
