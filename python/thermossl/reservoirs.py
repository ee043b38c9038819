"""Self-label reservoirs (THEORY.md §3): where the labels q come from.

A reservoir at temperature T' turns energies E into a label state q that is a generalized Gibbs
ensemble, q_iy = exp((f_i + mu_y - E_iy)/T') with rows summing to 1: the chemical potentials mu
are what distinguishes the methods.

- ``SinkhornReservoir`` solves for mu so that the charges N_y = sum_i w_i q_iy meet the targets
  c_y (SeLa: to tolerance; SwAV: three iterations). With ``warm_start`` the potentials of one call
  start the next.
- ``CenteringReservoir`` is DINO's teacher: q = softmax((s - C)/T') with s = -E and a center C
  that follows the exponential moving average of the batch-mean score after each call; mu = -C
  is an estimate that does not enforce the charges, whose imbalance it reports.

Every reservoir has ``assign(E, w=None) -> LabelState`` and ``reset()``. ``assign`` validates its
arguments and calls ``_assign``, the validated twin the demon calls with arguments it has checked.
"""
from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ._backends import cpu
from ._validation import (
    check_nonempty,
    check_states,
    iteration_controls,
    positive_temperature,
    probability_vector,
    real_matrix,
)
from .balancing import _sinkhorn
from .gibbs import _gibbs
from .thermo import _charges

__all__ = [
    "LabelState",
    "Reservoir",
    "SinkhornReservoir",
    "CenteringReservoir",
    "sela",
    "swav",
    "dino",
]


@dataclass(frozen=True)
class LabelState:
    """A reservoir's answer for one batch of energies.

    q: (N, K) label state (rows sum to 1). mu: (K,) chemical potentials, q = GGE(E, T, mu) exactly.
    charges: (K,) N_y = sum_i w_i q_iy. charge_err: sum_y abs(N_y - c_y) against the reservoir's
    targets (1/K for centering). T: the reservoir temperature T'. method: 'sinkhorn' or
    'centering'. n_iter, converged: solver diagnostics (centering: 0 and False: nothing solved).
    """

    q: np.ndarray
    mu: np.ndarray
    charges: np.ndarray
    charge_err: float
    T: float
    method: str
    n_iter: int = 0
    converged: bool = False
    f: Optional[np.ndarray] = None


class Reservoir(abc.ABC):
    """The interface every self-label reservoir implements."""

    T: float

    @abc.abstractmethod
    def assign(self, E, w=None) -> LabelState:
        """Labels for energies E (N, K) with sample weights w (default 1/N)."""

    def _assign(self, E: np.ndarray, w: Optional[np.ndarray]) -> LabelState:
        """Labels for validated arguments: E a real 2-D numpy array, w float64 weights summing to 1
        or None. thermossl's reservoirs skip the checks here; by default (a reservoir written
        elsewhere, which implements ``assign`` only) this is ``assign``."""
        return self.assign(E, w)

    def reset(self) -> None:
        """Forget what earlier calls left behind (warm-start potentials, centers)."""


class SinkhornReservoir(Reservoir):
    """Labels balanced by log-domain Sinkhorn (see :func:`thermossl.sinkhorn`).

    T: reservoir temperature T'. n_iter: fixed iteration count (SwAV) or None to run to ``tol``
    (SeLa). c: (K,) charge targets (default 1/K). warm_start: start each call from the previous
    call's mu (when K matches). relaxation: over-relaxation of the mu-update (see
    :func:`thermossl.sinkhorn`; 1.0 plain, "auto" adaptive in tolerance mode).
    """

    def __init__(self, T, n_iter=None, tol=1e-6, max_iter=1000, c=None, warm_start=True, relaxation=1.0):
        self.T = positive_temperature(T)
        self.n_iter = n_iter
        self.relaxation = relaxation
        self.tol = tol
        self.max_iter = max_iter
        self.c = None if c is None else np.asarray(c, dtype=np.float64)
        self.warm_start = bool(warm_start)
        self._mu = None

    def assign(self, E, w=None) -> LabelState:
        E = real_matrix(E, "E")
        check_nonempty(E.shape)
        return self._assign(E, probability_vector(w, E.shape[0], "w", "sample"))

    def _assign(self, E, w) -> LabelState:
        check_nonempty(E.shape)
        (E,), _ = cpu.to_kernel(E)
        k = E.shape[1]
        c = probability_vector(self.c, k, "c", "state")
        fixed, limit, tol, omega = iteration_controls(self.n_iter, self.tol, self.max_iter, self.relaxation)
        mu0 = self._mu if self.warm_start and self._mu is not None and self._mu.shape == (k,) else None
        # stacklevel 4: the user's line, above assign() or Demon.measure() and this method.
        result = _sinkhorn(E, self.T, w, c, mu0, fixed, tol, limit, omega, return_q=True, stacklevel=4)
        self._mu = result.mu
        return LabelState(
            q=result.q,
            mu=result.mu,
            charges=result.charges,
            charge_err=result.err,
            T=self.T,
            method="sinkhorn",
            n_iter=result.n_iter,
            converged=result.converged,
            f=result.f,
        )

    def reset(self) -> None:
        self._mu = None

    def __repr__(self) -> str:
        mode = f"n_iter={self.n_iter}" if self.n_iter is not None else f"tol={self.tol:g}, max_iter={self.max_iter}"
        relax = "" if self.relaxation == 1.0 else f", relaxation={self.relaxation!r}"
        return f"SinkhornReservoir(T={self.T:g}, {mode}, warm_start={self.warm_start}{relax})"


class CenteringReservoir(Reservoir):
    """DINO's teacher: q = softmax((s - C)/T') with s = -E; after each call
    C <- m C + (1 - m) sum_i w_i s_i (the batch mean of the teacher scores). mu = -C (the C used).
    The center starts at 0. Energies must be finite (a mean over a forbidden state is undefined).
    """

    def __init__(self, T, momentum=0.9):
        self.T = positive_temperature(T)
        if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, (numbers.Real, np.generic)):
            raise TypeError(f"momentum must be a real number, got {type(momentum).__name__}")
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.center = None

    def assign(self, E, w=None) -> LabelState:
        E = real_matrix(E, "E")
        check_states(E.shape)
        return self._assign(E, probability_vector(w, E.shape[0], "w", "sample"))

    def _assign(self, E, w) -> LabelState:
        check_states(E.shape)
        if self.center is None or self.center.shape != (E.shape[1],):
            self.center = np.zeros(E.shape[1])
        mu = -self.center
        (E_kernel,), _ = cpu.to_kernel(E)
        q = _gibbs(E_kernel, self.T, np.ascontiguousarray(mu / self.T, dtype=np.float64))
        batch_mean_score = -(E.mean(axis=0, dtype=np.float64) if w is None else (w.astype(E.dtype) @ E).astype(np.float64))
        if not np.all(np.isfinite(batch_mean_score)):
            raise ValueError("E must be finite for centering (the batch mean of the scores is not)")
        self.center = self.momentum * self.center + (1.0 - self.momentum) * batch_mean_score
        occupation = _charges(q, w)
        k = E.shape[1]
        return LabelState(
            q=q,
            mu=mu,
            charges=occupation,
            charge_err=float(np.abs(occupation - 1.0 / k).sum()),
            T=self.T,
            method="centering",
        )

    def reset(self) -> None:
        self.center = None

    def __repr__(self) -> str:
        return f"CenteringReservoir(T={self.T:g}, momentum={self.momentum:g})"


def sela(**overrides) -> SinkhornReservoir:
    """SeLa (Asano et al. 2020): Sinkhorn to tolerance, T' = 1/lambda with lambda = 25, warm starts,
    adaptive over-relaxation (the same labels, fewer iterations when Sinkhorn is slow)."""
    return SinkhornReservoir(
        **{"T": 1.0 / 25.0, "tol": 1e-6, "max_iter": 1000, "warm_start": True, "relaxation": "auto", **overrides}
    )


def swav(**overrides) -> SinkhornReservoir:
    """SwAV (Caron et al. 2020): three Sinkhorn iterations per batch at epsilon = T' = 0.05."""
    return SinkhornReservoir(**{"T": 0.05, "n_iter": 3, "warm_start": False, **overrides})


def dino(**overrides) -> CenteringReservoir:
    """DINO (Caron et al. 2021): teacher temperature T' = 0.04, center momentum 0.9."""
    return CenteringReservoir(**{"T": 0.04, "momentum": 0.9, **overrides})
