"""Self-label reservoirs (the theory page of the documentation): where the labels q come from.

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
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from ._backends import cpu
from ._typing import Float64Array, FloatArray
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

    Parameters
    ----------
    q : numpy.ndarray, shape (N, K)
        The label state (rows sum to 1).
    mu : numpy.ndarray, shape (K,)
        Chemical potentials: q = GGE(E, T, mu) exactly.
    charges : numpy.ndarray, shape (K,)
        N_y = sum_i w_i q_iy (float64).
    charge_err : float
        sum_y abs(N_y - c_y) against the reservoir's targets (1/K for centering).
    T : float
        The reservoir temperature T'.
    method : str
        'sinkhorn' or 'centering'.
    n_iter : int, optional
        Solver iterations (centering: 0: nothing solved).
    converged : bool, optional
        Whether the solver reached its tolerance (centering: False).
    f : numpy.ndarray, shape (N,), optional
        Sinkhorn's row potentials (None for centering).
    """

    q: FloatArray
    mu: FloatArray
    charges: Float64Array
    charge_err: float
    T: float
    method: str
    n_iter: int = 0
    converged: bool = False
    f: Optional[FloatArray] = None


class Reservoir(abc.ABC):
    """The interface every self-label reservoir implements.

    A reservoir turns energies into a label state, a generalized Gibbs ensemble at its temperature
    ``T`` (the theory page of the documentation). Subclasses implement :meth:`assign` and, when
    they keep state between calls, :meth:`reset`.

    Attributes
    ----------
    T : float
        The reservoir temperature T' > 0.
    """

    T: float

    @abc.abstractmethod
    def assign(self, E: npt.ArrayLike, w: Optional[npt.ArrayLike] = None) -> LabelState:
        """Labels for energies E with sample weights w.

        Parameters
        ----------
        E : array_like, shape (N, K)
            Energies (= -scores); float32 or float64 (integers: float64).
        w : array_like, shape (N,), optional
            Sample weights, >= 0, summing to 1 (default 1/N).

        Returns
        -------
        LabelState
            The label state and its potentials.

        Raises
        ------
        TypeError
            If an array is not real.
        ValueError
            If ``E`` is not 2-D or is empty, or ``w`` is not a probability vector of length N;
            the message names the argument.
        """

    def _assign(self, E: np.ndarray, w: Optional[np.ndarray]) -> LabelState:
        """Labels for validated arguments: E a real 2-D numpy array, w float64 weights summing to 1
        or None. thermossl's reservoirs skip the checks here; by default (a reservoir written
        elsewhere, which implements ``assign`` only) this is ``assign``."""
        return self.assign(E, w)

    def reset(self) -> None:
        """Forget what earlier calls left behind (warm-start potentials, centers)."""


class SinkhornReservoir(Reservoir):
    """Labels balanced by log-domain Sinkhorn (see :func:`thermossl.sinkhorn`).

    Parameters
    ----------
    T : float
        Reservoir temperature T' > 0.
    n_iter : int, optional
        Fixed iteration count (SwAV), or None to run to ``tol`` (SeLa).
    tol : float, optional
        Tolerance on the charge error in tolerance mode.
    max_iter : int, optional
        Iteration limit of the tolerance mode.
    c : array_like, shape (K,), optional
        Charge targets (default 1/K).
    warm_start : bool, optional
        Start each call from the previous call's mu (when K matches).
    relaxation : float or {"auto"}, optional
        Over-relaxation of the mu-update (see :func:`thermossl.sinkhorn`; 1.0 plain, "auto"
        adaptive in tolerance mode).

    Raises
    ------
    TypeError
        If ``T`` is not a real number.
    ValueError
        If ``T`` is not finite and > 0 (the other options are checked at the first call).
    """

    def __init__(self, T: float, n_iter: Optional[int] = None, tol: float = 1e-6, max_iter: int = 1000,
                 c: Optional[npt.ArrayLike] = None, warm_start: bool = True, relaxation: Union[float, str] = 1.0) -> None:
        self.T = positive_temperature(T)
        self.n_iter = n_iter
        self.relaxation = relaxation
        self.tol = tol
        self.max_iter = max_iter
        self.c = None if c is None else np.asarray(c, dtype=np.float64)
        self.warm_start = bool(warm_start)
        self._mu: Optional[FloatArray] = None

    def assign(self, E: npt.ArrayLike, w: Optional[npt.ArrayLike] = None) -> LabelState:
        """Labels for energies E with sample weights w.

        Parameters
        ----------
        E : array_like, shape (N, K)
            Energies (= -scores); float32 or float64 (integers: float64).
        w : array_like, shape (N,), optional
            Sample weights, >= 0, summing to 1 (default 1/N).

        Returns
        -------
        LabelState
            The label state and its potentials.

        Raises
        ------
        TypeError
            If an array is not real.
        ValueError
            If ``E`` is not 2-D or is empty, holds nan or -inf, a row or a state has every entry forbidden, or ``w`` is not a probability vector of length N;
            the message names the argument.
        """
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
        """Forget the warm-start potentials of earlier calls."""
        self._mu = None

    def __repr__(self) -> str:
        mode = f"n_iter={self.n_iter}" if self.n_iter is not None else f"tol={self.tol:g}, max_iter={self.max_iter}"
        relax = "" if self.relaxation == 1.0 else f", relaxation={self.relaxation!r}"
        return f"SinkhornReservoir(T={self.T:g}, {mode}, warm_start={self.warm_start}{relax})"


class CenteringReservoir(Reservoir):
    """DINO's teacher: q = softmax((s - C)/T') with s = -E, and mu = -C (the C used).

    After each call C <- m C + (1 - m) sum_i w_i s_i (the batch mean of the teacher scores). The
    center starts at 0. Energies must be finite (a mean over a forbidden state is undefined).

    Parameters
    ----------
    T : float
        Teacher temperature T' > 0.
    momentum : float, optional
        Center momentum m in [0, 1).

    Raises
    ------
    TypeError
        If ``T`` or ``momentum`` is not a real number.
    ValueError
        If ``T`` is not finite and > 0, or ``momentum`` is not in [0, 1).
    """

    def __init__(self, T: float, momentum: float = 0.9) -> None:
        self.T = positive_temperature(T)
        if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, (numbers.Real, np.generic)):
            raise TypeError(f"momentum must be a real number, got {type(momentum).__name__}")
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.center: Optional[Float64Array] = None

    def assign(self, E: npt.ArrayLike, w: Optional[npt.ArrayLike] = None) -> LabelState:
        """Labels for energies E with sample weights w.

        Parameters
        ----------
        E : array_like, shape (N, K)
            Energies (= -scores); float32 or float64 (integers: float64).
        w : array_like, shape (N,), optional
            Sample weights, >= 0, summing to 1 (default 1/N).

        Returns
        -------
        LabelState
            The label state and its potentials.

        Raises
        ------
        TypeError
            If an array is not real.
        ValueError
            If ``E`` is not 2-D or is empty, or is not finite, or ``w`` is not a probability vector of length N;
            the message names the argument.
        """
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
        """Forget the center: the next call starts from C = 0."""
        self.center = None

    def __repr__(self) -> str:
        return f"CenteringReservoir(T={self.T:g}, momentum={self.momentum:g})"


def sela(**overrides: Any) -> SinkhornReservoir:
    """SeLa's reservoir (Asano et al. 2020): Sinkhorn to tolerance at T' = 1/25.

    Warm starts and adaptive over-relaxation (the same labels, fewer iterations when Sinkhorn is
    slow).

    Parameters
    ----------
    **overrides
        Keyword arguments of :class:`SinkhornReservoir` replacing the defaults ``T=1/25``,
        ``tol=1e-6``, ``max_iter=1000``, ``warm_start=True``, ``relaxation="auto"``.

    Returns
    -------
    SinkhornReservoir
        The reservoir.
    """
    return SinkhornReservoir(
        **{"T": 1.0 / 25.0, "tol": 1e-6, "max_iter": 1000, "warm_start": True, "relaxation": "auto", **overrides}
    )


def swav(**overrides: Any) -> SinkhornReservoir:
    """SwAV's reservoir (Caron et al. 2020): three Sinkhorn iterations per batch at epsilon = T' = 0.05.

    Parameters
    ----------
    **overrides
        Keyword arguments of :class:`SinkhornReservoir` replacing the defaults ``T=0.05``,
        ``n_iter=3``, ``warm_start=False``.

    Returns
    -------
    SinkhornReservoir
        The reservoir.
    """
    return SinkhornReservoir(**{"T": 0.05, "n_iter": 3, "warm_start": False, **overrides})


def dino(**overrides: Any) -> CenteringReservoir:
    """DINO's teacher (Caron et al. 2021): temperature T' = 0.04, center momentum 0.9.

    Parameters
    ----------
    **overrides
        Keyword arguments of :class:`CenteringReservoir` replacing the defaults ``T=0.04``,
        ``momentum=0.9``.

    Returns
    -------
    CenteringReservoir
        The reservoir.
    """
    return CenteringReservoir(**{"T": 0.04, "momentum": 0.9, **overrides})
