"""Self-label balancing: the generalized Gibbs ensemble by log-domain Sinkhorn.

The ensemble and its identities: the theory page of the documentation (self-labels).

``sinkhorn(E, T, ...)`` finds the label state q*_iy = exp((f_i + mu_y - E_iy)/T) whose rows sum to
1 and whose charges N_y = sum_i w_i q_iy equal the targets c_y — the entropic optimal-transport
plan w_i q*_iy between marginals w and c with cost E and regularisation T. The whole loop runs in
the C++ core, one fused pass over E per iteration.

Modes: ``n_iter=k`` runs exactly k iterations (SwAV: T = 0.05, k = 3); otherwise iterations run
until the charge error sum_y abs(N_y - c_y) <= tol or ``max_iter`` (SeLa). Each iteration is a
mu-update followed by an f-update, starting from a constant f (or from ``mu0``, a warm start),
so q is always row-stochastic to rounding and the charges carry the residual.

Gauge: mu is defined up to a constant (f absorbs it); the returned mu satisfies
sum_y c_y mu_y = 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import numpy.typing as npt

from . import _messages as msg
from . import _status
from ._backends import backend_for, cpu
from ._typing import Float64Array, FloatArray
from ._validation import (
    as_real_array,
    check_nonempty,
    iteration_controls,
    positive_temperature,
    probability_vector,
)

__all__ = ["SinkhornResult", "sinkhorn"]


@dataclass(frozen=True)
class SinkhornResult:
    """Outcome of :func:`sinkhorn`: the balanced label state and its potentials.

    Arrays are of E's dtype and kind (numpy, or the device library of a device E), except
    ``charges`` (float64).

    Parameters
    ----------
    q : numpy.ndarray, shape (N, K), or None
        The label state, row-stochastic; None when ``return_q=False``.
    f : numpy.ndarray, shape (N,)
        Row potentials, f_i = -T log sum_y exp((mu_y - E_iy)/T).
    mu : numpy.ndarray, shape (K,)
        Chemical potentials of the charges, gauge sum_y c_y mu_y = 0.
    n_iter : int
        Iterations done (mu-update + f-update pairs; a warm start at a converged mu may do 0).
    err : float
        Charge error sum_y abs(N_y - c_y) of the returned state.
    converged : bool
        ``err <= tol``.
    charges : numpy.ndarray, shape (K,)
        float64 charges N_y = sum_i w_i q_iy of the returned state (from the last pass, at no
        extra cost).
    """

    q: Optional[FloatArray]
    f: FloatArray
    mu: FloatArray
    n_iter: int
    err: float
    converged: bool
    charges: Float64Array


def _sinkhorn(E, T: float, w=None, c=None, mu0=None, fixed: int = 0, tol: float = 1e-6, limit: int = 1000,
              omega: float = 1.0, return_q: bool = True, backend=cpu, stacklevel: int = 2) -> SinkhornResult:
    """The validated twin of :func:`sinkhorn`: E 2-D in its kernel dtype with N, K >= 1, T a
    positive float, w and c float64 distributions or None, mu0 a finite real (K,) or None, the
    iteration controls as :func:`thermossl._validation.iteration_controls` returns them.
    ``stacklevel`` places the not-converged warning (1: this function, 2: its caller): the callers
    that can warn name the user's line, 3 frames up from :func:`sinkhorn` and 4 from a reservoir
    (``assign`` or ``Demon.measure`` -> ``_assign`` -> here)."""
    # States with target charge c_y = 0 are empty in the solution (mu_y = -inf, q_iy = 0): the
    # solver runs on the others (a copy of those columns of E) and the empty ones are filled in.
    k = E.shape[1]
    states = None if c is None or np.all(c > 0) else np.flatnonzero(c > 0)
    if states is not None:
        E, c = E[:, states], np.ascontiguousarray(c[states])
        mu0 = None if mu0 is None else np.ascontiguousarray(mu0[states])
    q, f, mu, charges, iterations, err, converged, status, index = backend.sinkhorn(
        E, T, w, c, mu0, fixed, tol, limit, omega, return_q
    )
    if status:
        if status == 4 and states is not None:
            index = int(states[index])
        raise _status.sinkhorn_error(status, index)
    if states is not None:
        mu, charges, q = _fill_empty_states(states, k, mu, charges, q)
    if not fixed and not converged:
        _status.warn_not_converged(limit, err, tol, stacklevel, iterations=int(iterations), mu=mu, T=T)
    return SinkhornResult(
        q=q, f=f, mu=mu, n_iter=int(iterations), err=float(err), converged=bool(converged), charges=charges
    )


def _fill_empty_states(states, k: int, mu, charges, q):
    """mu, charges and q of all k states from those of the solved ``states`` (the others empty)."""
    mu_full = np.full(k, -np.inf, dtype=mu.dtype)
    mu_full[states] = mu
    charges_full = np.zeros(k)
    charges_full[states] = charges
    q_full = None
    if q is not None:
        q_full = np.zeros((q.shape[0], k), dtype=q.dtype)
        q_full[:, states] = q
    return mu_full, charges_full, q_full


def _warm_start(mu0, k: int, c=None):
    """Validated warm-start potentials: a real (k,) array (any real dtype), finite where the
    target charge is positive (a state with c_y = 0 has mu_y = -inf in a result; it is ignored)."""
    mu0 = as_real_array(mu0, "mu0")
    if mu0.shape != (k,):
        raise ValueError(msg.VECTOR_SHAPE.format(name="mu0", length=k, what="state", shape=mu0.shape))
    used = np.ones(k, dtype=bool) if c is None else c > 0
    if not np.all(np.isfinite(mu0[used])) or np.any(np.isnan(mu0)):
        raise ValueError(msg.WARM_START_NOT_FINITE if c is None or np.all(c > 0) else msg.WARM_START_NOT_FINITE_EMPTY)
    return mu0


def sinkhorn(
    E: npt.ArrayLike,
    T: float,
    w: Optional[npt.ArrayLike] = None,
    c: Optional[npt.ArrayLike] = None,
    n_iter: Optional[int] = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    mu0: Optional[npt.ArrayLike] = None,
    return_q: bool = True,
    relaxation: Union[float, str] = 1.0,
) -> SinkhornResult:
    """Balance self-labels: the generalized Gibbs ensemble of energies E at reservoir temperature T.

    Log-domain Sinkhorn; the theory page of the documentation derives it, the user guide describes
    the modes, warm starts and over-relaxation.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores), float32 or float64 (integers compute in float64); +inf forbids a state
        (q = 0 there). A CUDA device array (torch, CuPy) runs on its device.
    T : float
        Reservoir temperature T' > 0 (SwAV's epsilon 0.05; SeLa 1/lambda = 1/25).
    w : array_like, shape (N,), optional
        Sample weights, >= 0, summing to 1 (default 1/N). A sample of weight 0 is labelled (its q
        row is the GGE at the solved mu) but does not count in the charges.
    c : array_like, shape (K,), optional
        Charge targets, >= 0, summing to 1 (default 1/K: equipartition). A state of target 0 is
        empty: q_iy = 0, mu_y = -inf.
    n_iter : int, optional
        Run exactly this many iterations (SwAV mode); None runs to ``tol`` (SeLa mode).
    tol : float, optional
        Tolerance on the charge error sum_y abs(N_y - c_y) (also decides ``converged``).
    max_iter : int, optional
        Iteration limit of the tolerance mode.
    mu0 : array_like, shape (K,), optional
        Warm-start chemical potentials, e.g. the ``mu`` of the previous call.
    return_q : bool, optional
        Also return the (N, K) label state (at SeLa scale as big as E).
    relaxation : float or {"auto"}, optional
        Over-relaxation omega of the mu-update, mu += omega T (log c - log N): 1.0 is plain Sinkhorn
        (SwAV, POT); a number in (0, 2) fixes omega; ``"auto"`` (tolerance mode) runs plain
        iterations until the charge error contracts at a steady rate lambda, then uses
        omega = 2 / (2 - lambda) (at most 1.9), falling back to omega = 1 if the error grows. Same
        solution; up to ~2x fewer iterations when Sinkhorn converges slowly.

    Returns
    -------
    SinkhornResult
        ``err`` and ``converged`` are those of the state given back. float32 stays float32, float64
        stays float64.

    Raises
    ------
    TypeError
        If an array is not real or a count is not an integer.
    ValueError
        If E is not 2-D or empty, holds nan or -inf, a row or a state has every entry forbidden,
        ``T`` is not finite and > 0, ``w`` or ``c`` is not a probability vector of the right length,
        ``mu0`` is not finite, or ``n_iter``, ``tol``, ``max_iter``, ``relaxation`` are out of range;
        the message names the argument.
    KeyboardInterrupt
        On Ctrl-C (SIGINT): the solver stops within milliseconds.

    Warns
    -----
    RuntimeWarning
        When a tolerance-mode run does not reach ``tol`` (``max_iter`` hit, or potentials too large
        for the dtype to hold the state to ``tol``); it returns ``converged=False``.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = backend.kernel_matrix(E)
    n, k = E.shape
    if n < 1 or k < 1:
        check_nonempty(E.shape)  # raises
    positive = backend is not cpu  # the device solver takes no zero weights or empty states yet
    w = None if w is None else probability_vector(backend.to_host(w), n, "w", "sample", positive=positive)
    c = None if c is None else probability_vector(backend.to_host(c), k, "c", "state", positive=positive)
    mu0 = None if mu0 is None else _warm_start(backend.to_host(mu0), k, c)
    fixed, limit, tol, omega = iteration_controls(n_iter, tol, max_iter, relaxation)
    return _sinkhorn(E, T, w, c, mu0, fixed, tol, limit, omega, return_q, backend, stacklevel=3)
