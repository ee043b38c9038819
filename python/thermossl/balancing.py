"""Self-label balancing: the generalized Gibbs ensemble of THEORY.md §3 by log-domain Sinkhorn.

``sinkhorn(E, T, ...)`` finds the label state q*_iy = exp((f_i + mu_y - E_iy)/T) whose rows sum to
1 and whose charges N_y = sum_i w_i q_iy equal the targets c_y — the entropic optimal-transport
plan w_i q*_iy between marginals w and c with cost E and regularisation T. The whole loop runs in
the C++ core, one fused pass over E per iteration.

Modes: ``n_iter=k`` runs exactly k iterations (SwAV: T = 0.05, k = 3); otherwise iterations run
until the charge error sum_y |N_y - c_y| <= tol or ``max_iter`` (SeLa). Each iteration is a
mu-update followed by an f-update, starting from a constant f (or from ``mu0``, a warm start),
so q is always row-stochastic to rounding and the charges carry the residual.

Gauge: mu is defined up to a constant (f absorbs it); the returned mu satisfies
sum_y c_y mu_y = 0.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _core
from . import cuda as _device
from ._validation import as_real_array, compute_dtype, count, positive_temperature, probability_vector

__all__ = ["SinkhornResult", "sinkhorn"]

_STATUS_MESSAGES = {
    1: "E contains NaN (row {index})",
    2: "E: every state of row {index} is forbidden (+inf energy); the row cannot be labelled",
    3: "E contains -inf (an infinite score) or E/T overflows (row {index})",
    4: "infeasible: state {index} is forbidden (+inf energy) for every sample but its target charge c[{index}] > 0",
}


@dataclass(frozen=True)
class SinkhornResult:
    """Outcome of :func:`sinkhorn`.

    q: (N, K) label state, row-stochastic, or None when ``return_q=False``.
    f: (N,) row potentials, f_i = -T log sum_y exp((mu_y - E_iy)/T).
    mu: (K,) chemical potentials of the charges, gauge sum_y c_y mu_y = 0.
    n_iter: iterations done (mu-update + f-update pairs; a warm start at a converged mu may do 0).
    err: charge error sum_y |N_y - c_y| of the returned state.
    converged: err <= tol.
    charges: (K,) float64 charges N_y = sum_i w_i q_iy of the returned state (from the last
        pass, at no extra cost).
    """

    q: Optional[np.ndarray]
    f: np.ndarray
    mu: np.ndarray
    n_iter: int
    err: float
    converged: bool
    charges: np.ndarray


def _distribution(v, length: int, dtype, name: str, what: str):
    v = probability_vector(v, length, name, what)
    return None if v is None else v.astype(dtype)


def _count(value, name: str, minimum: int, clamp: bool = True) -> int:
    return count(value, name, minimum, clamp)


def _warm_start(mu0, k: int, c=None) -> np.ndarray:
    """Validated warm-start potentials: a real (k,) array (any real dtype), finite where the
    target charge is positive (a state with c_y = 0 has mu_y = -inf in a result; it is ignored)."""
    mu0 = as_real_array(mu0, "mu0")
    if mu0.shape != (k,):
        raise ValueError(f"mu0 must have shape ({k},) (one value per state), got {mu0.shape}")
    used = np.ones(k, dtype=bool) if c is None else c > 0
    if not np.all(np.isfinite(mu0[used])) or np.any(np.isnan(mu0)):
        raise ValueError("mu0 must be finite (except, as -inf, on states with target charge c_y = 0)")
    return mu0


def _iteration_controls(n_iter, tol, max_iter, relaxation):
    """(fixed, limit, tol, omega) for the core from the iteration arguments every Sinkhorn entry
    point takes (here, thermossl.distributed, thermossl.cuda): fixed = 0 in tolerance mode."""
    fixed = 0 if n_iter is None else _count(n_iter, "n_iter", 1, clamp=False)
    limit = _count(max_iter, "max_iter", 1)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise TypeError(f"tol must be a real number, got {type(tol).__name__}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    return fixed, limit, float(tol), _relaxation(relaxation, fixed)


def _relaxation(relaxation, fixed: int) -> float:
    """omega for the core: a number in (0, 2), or 0.0 for "auto" (tolerance mode only)."""
    if isinstance(relaxation, str):
        if relaxation != "auto":
            raise ValueError(f"relaxation must be a number in (0, 2) or 'auto', got {relaxation!r}")
        if fixed:
            raise ValueError("relaxation='auto' needs the tolerance mode (n_iter=None); give a number with n_iter")
        return 0.0
    if isinstance(relaxation, (bool, np.bool_)) or not isinstance(relaxation, (int, float, np.integer, np.floating)):
        raise TypeError(f"relaxation must be a number or 'auto', got {type(relaxation).__name__}")
    if not (0.0 < relaxation < 2.0):
        raise ValueError(f"relaxation must be in (0, 2), got {relaxation!r}")
    return float(relaxation)


def sinkhorn(E, T, w=None, c=None, n_iter=None, tol=1e-6, max_iter=1000, mu0=None, return_q=True, relaxation=1.0):
    """Balance self-labels: the GGE of energies E at reservoir temperature T (THEORY.md §3).

    Parameters
    ----------
    E : (N, K) array of energies (= -scores); +inf forbids a state (q = 0 there).
    T : reservoir temperature T' > 0 (SwAV's epsilon 0.05; SeLa 1/lambda = 1/25).
    w : (N,) sample weights, >= 0, sum 1 (default 1/N). A sample of weight 0 is labelled (its
        q row is the GGE at the solved mu) but does not count in the charges.
    c : (K,) charge targets, >= 0, sum 1 (default 1/K: equipartition). A state of target 0 is
        empty: q_iy = 0, mu_y = -inf.
    n_iter : run exactly this many iterations (SwAV mode); None runs to ``tol`` (SeLa mode).
    tol : tolerance on the charge error sum_y |N_y - c_y| (also decides ``converged``).
    max_iter : iteration limit of the tolerance mode.
    mu0 : (K,) warm-start chemical potentials, e.g. the ``mu`` of the previous call.
    return_q : also return the (N, K) label state (at SeLa scale as big as E).
    relaxation : over-relaxation omega of the mu-update, mu += omega T (log c - log N): 1.0 is
        plain Sinkhorn (SwAV, POT); a number in (0, 2) fixes omega; ``"auto"`` (tolerance mode)
        runs plain iterations until the charge error contracts at a steady rate lambda, then
        uses omega = 2 / (2 - lambda) (at most 1.9), falling back to omega = 1 if the error
        grows. Same solution; up to ~2x fewer iterations when Sinkhorn converges slowly.

    Returns a :class:`SinkhornResult`; ``err`` and ``converged`` are those of the state given
    back. A tolerance-mode run that does not reach ``tol`` (``max_iter`` hit, or potentials too
    large for the dtype to hold the state to ``tol``) returns ``converged=False`` and emits a
    RuntimeWarning. Ctrl-C (SIGINT) interrupts the solver within milliseconds (KeyboardInterrupt). float32 stays float32, float64 stays float64.
    """
    if _device.is_device_array(E):
        if not (isinstance(relaxation, (int, float)) and relaxation == 1.0):
            raise NotImplementedError("relaxation other than 1.0 is not implemented for device arrays yet")
        return _device.sinkhorn(E, T, w, c, n_iter, tol, max_iter, mu0, return_q)
    T = positive_temperature(T)
    E = as_real_array(E, "E")
    if E.ndim != 2:
        raise ValueError(f"E must be a 2-D array of shape (N, K), got ndim={E.ndim}")
    if E.shape[0] < 1 or E.shape[1] < 1:
        raise ValueError(f"E must have at least one sample and one state, got shape {E.shape}")
    _, dtype = compute_dtype(E.dtype)
    E = E.astype(dtype, copy=False)
    n, k = E.shape
    w = _distribution(w, n, dtype, "w", "sample")
    c = _distribution(c, k, dtype, "c", "state")
    mu0 = None if mu0 is None else _warm_start(mu0, k, c)
    fixed, limit, tol, omega = _iteration_controls(n_iter, tol, max_iter, relaxation)

    # States with target charge c_y = 0 are empty in the solution (mu_y = -inf, q_iy = 0): the
    # core solves on the others (a copy of those columns of E) and the empty ones are filled in.
    states = None if c is None or np.all(c > 0) else np.flatnonzero(c > 0)
    E_solved = E if states is None else E[:, states]
    c_solved = c if states is None else np.ascontiguousarray(c[states])
    mu0_solved = None
    if mu0 is not None:
        mu0_solved = np.ascontiguousarray(mu0 if states is None else mu0[states], dtype=dtype)
    k_solved = E_solved.shape[1]

    f = np.empty(n, dtype=dtype)
    mu = np.empty(k_solved, dtype=dtype)
    q = np.empty((n, k_solved), dtype=dtype) if return_q else None
    charges = np.empty(k_solved, dtype=np.float64)
    iterations, err, converged, status, index = _core.sinkhorn(
        E_solved, T, w, c_solved, mu0_solved, fixed, float(tol), limit, f, mu, q, charges, relaxation=omega
    )
    if status:
        if status == 4 and states is not None:
            index = int(states[index])
        raise ValueError(_STATUS_MESSAGES[status].format(index=index))
    if states is not None:
        mu_full = np.full(k, -np.inf, dtype=dtype)
        mu_full[states] = mu
        charges_full = np.zeros(k)
        charges_full[states] = charges
        mu, charges = mu_full, charges_full
        if q is not None:
            q_full = np.zeros((n, k), dtype=dtype)
            q_full[:, states] = q
            q = q_full
    if not fixed and not converged:
        if iterations < limit:
            # Stopped at the tolerance, but the state given back (after the gauge, in E's dtype)
            # misses it: the potentials are too large for the dtype's precision.
            reason = (
                f"the returned state misses it after {int(iterations)} iterations: at |mu|/T up to "
                f"{float(np.max(np.abs(mu[np.isfinite(mu)])) / T):.3g} the gauge sum_y c_y mu_y = 0 rounds "
                f"the potentials beyond the tolerance in {np.dtype(dtype).name}"
            )
        else:
            reason = f"did not converge in max_iter={limit} iterations"
        warnings.warn(
            f"sinkhorn: charge error {err:.3e} > tol={tol:g}: {reason}",
            RuntimeWarning,
            stacklevel=2,
        )
    return SinkhornResult(
        q=q, f=f, mu=mu, n_iter=int(iterations), err=float(err), converged=bool(converged), charges=charges
    )
