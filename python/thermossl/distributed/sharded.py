"""The sharded reservoir and demon: :class:`thermossl.reservoirs.SinkhornReservoir` and
:class:`thermossl.demon.Demon` over samples split across the ranks of a communicator."""
from __future__ import annotations

import math

from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from .. import _messages as msg
from .. import demon as _demon
from .._backends import cpu
from .._validation import iteration_controls, positive_vector, probability_vector
from ..reservoirs import LabelState, SinkhornReservoir
from .comm import as_comm
from .failures import _check, _raise_everywhere, agreement
from .solver import _checked_sinkhorn, _sinkhorn, sinkhorn

__all__ = ["ShardedSinkhornReservoir", "Demon"]


class ShardedSinkhornReservoir(SinkhornReservoir):
    """:class:`thermossl.reservoirs.SinkhornReservoir` over samples sharded across ``comm``.

    ``assign`` is a collective that balances the charges of all ranks' samples (:func:`sinkhorn`)
    and returns this rank's labels with the global mu, charges and charge error.

    Parameters
    ----------
    T : float
        Reservoir temperature T' > 0.
    n_iter : int, optional
        Fixed iteration count, or None to run to ``tol``.
    tol : float, optional
        Tolerance on the global charge error.
    max_iter : int, optional
        Iteration limit of the tolerance mode.
    c : array_like, shape (K,), optional
        Charge targets (default 1/K).
    warm_start : bool, optional
        Start each call from the previous call's mu.
    comm : None, Communicator, mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
        The communicator the samples are sharded over (None: one process).
    relaxation : float or {"auto"}, optional
        Over-relaxation of the mu-update.

    Raises
    ------
    TypeError
        If ``T`` is not a real number or ``comm`` is not a communicator.
    ValueError
        If ``T`` is not finite and > 0.
    """

    def __init__(self, T: float, n_iter: Optional[int] = None, tol: float = 1e-6, max_iter: int = 1000,
                 c: Optional[npt.ArrayLike] = None, warm_start: bool = True, comm: Optional[Any] = None,
                 relaxation: Union[float, str] = 1.0) -> None:
        super().__init__(T, n_iter=n_iter, tol=tol, max_iter=max_iter, c=c, warm_start=warm_start,
                         relaxation=relaxation)
        self.comm = as_comm(comm)

    @classmethod
    def like(cls, reservoir: SinkhornReservoir, comm: Optional[Any] = None) -> ShardedSinkhornReservoir:
        """The sharded twin of a SinkhornReservoir (same T, mode, targets, warm start).

        Parameters
        ----------
        reservoir : thermossl.reservoirs.SinkhornReservoir
            The reservoir to copy the settings of.
        comm : None, Communicator, mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
            The communicator the samples are sharded over (None: one process).

        Returns
        -------
        ShardedSinkhornReservoir
            The new reservoir.
        """
        return cls(reservoir.T, n_iter=reservoir.n_iter, tol=reservoir.tol, max_iter=reservoir.max_iter,
                   c=reservoir.c, warm_start=reservoir.warm_start, comm=comm, relaxation=reservoir.relaxation)

    def assign(self, E: npt.ArrayLike, w: Optional[npt.ArrayLike] = None) -> LabelState:
        """This rank's labels, balanced over every rank's samples (a collective).

        Parameters
        ----------
        E : array_like, shape (N_r, K)
            This rank's energies.
        w : array_like, shape (N_r,), optional
            This rank's slice of the global sample weights (default 1/N).

        Returns
        -------
        thermossl.reservoirs.LabelState
            This rank's labels and row potentials, the global mu, charges and charge error.

        Raises
        ------
        TypeError
            As :func:`sinkhorn`.
        ValueError
            As :func:`sinkhorn`, on every rank alike.
        """
        mu0 = None
        shape = np.shape(E)
        if self.warm_start and self._mu is not None and len(shape) == 2 and self._mu.shape == (shape[1],):
            mu0 = self._mu
        # stacklevel 3: the not-converged warning points at the user's line, above this method.
        result = _checked_sinkhorn(E, self.T, w, self.c, self.n_iter, self.tol, self.max_iter, mu0, True,
                                   self.comm, self.relaxation, 1.0, stacklevel=3)
        return self._label_state(result)

    def _assign(self, E, w) -> LabelState:
        """A collective on validated arguments: E this rank's rows (a real 2-D array), w this rank's
        weights (finite, > 0, float64, summing to 1 over the ranks: the sharded demon's)."""
        error = None
        try:
            if E.shape[1] < 1:
                raise ValueError(msg.EMPTY.format(name="E", shape=E.shape))
            (E,), dtype = cpu.to_kernel(E)
            k = E.shape[1]
            c = probability_vector(self.c, k, "c", "state", positive=True)
            mu0 = None
            if self.warm_start and self._mu is not None and self._mu.shape == (k,):
                mu0 = self._mu.astype(dtype).astype(np.float64)  # as the kernel reads it
            fixed, limit, tol, omega = iteration_controls(self.n_iter, self.tol, self.max_iter, self.relaxation)
        except Exception as exc:
            error = exc
        _check(self.comm, error)
        # stacklevel 5: the user's line, above the sharded Demon.measure, the base class's measure
        # it calls, and this method (the sharded demon is the caller of this method).
        result = _sinkhorn(self.comm, E, self.T, w, c, mu0, fixed, tol, limit, omega, True, check_weight_sum=False,
                           stacklevel=5)
        return self._label_state(result)

    def _label_state(self, result) -> LabelState:
        self._mu = result.mu
        return LabelState(q=result.q, mu=result.mu, charges=result.charges, charge_err=result.err, T=self.T,
                          method="sinkhorn", n_iter=result.n_iter, converged=result.converged, f=result.f)

    def __repr__(self) -> str:
        return "Sharded" + super().__repr__()


class Demon(_demon.Demon):
    """:class:`thermossl.demon.Demon` over samples sharded across ``comm``.

    Each rank measures and feeds back its own rows, and every sum over samples (energies,
    entropies, relative entropies, losses, work, heat, charges, hence information and entropy
    production) is reduced across ranks, so every rank appends the same global ledger row.
    ``measure`` and ``feedback`` are collectives (one allreduce of a short vector each, besides the
    reservoir's); an error on any rank is raised on every rank. ``work_per_sample`` and
    ``heat_per_sample`` hold this rank's samples.

    Parameters
    ----------
    T : float
        The representation temperature, > 0.
    reservoir : ShardedSinkhornReservoir
        Sharded over the same communicator.
    w : array_like, shape (N_r,), optional
        This rank's slice of the global sample weights (default 1/N, N the global count).
    comm : None, Communicator, mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
        The communicator the samples are sharded over (None: one process).

    Raises
    ------
    TypeError
        If ``reservoir`` is not a :class:`ShardedSinkhornReservoir`.
    ValueError
        If ``T`` is not finite and > 0.
    """

    def __init__(self, T: float, reservoir: ShardedSinkhornReservoir, w: Optional[npt.ArrayLike] = None,
                 comm: Optional[Any] = None) -> None:
        super().__init__(T, reservoir, w)
        self.comm = as_comm(comm)
        if not isinstance(reservoir, ShardedSinkhornReservoir):
            raise TypeError(
                "reservoir must be sharded over the communicator (thermossl.distributed.ShardedSinkhornReservoir; "
                f"ShardedSinkhornReservoir.like(r, comm) makes one from a SinkhornReservoir), got {type(reservoir).__name__}"
            )

    def _sample_weights(self, n: int):
        error, w = None, None
        try:
            w = positive_vector(self._w, n, "w", "sample")
        except Exception as exc:
            error = exc
        _check(self.comm, error)
        counts = self.comm.allreduce(np.array([n, 0.0 if w is None else math.fsum(w)]), "sum")
        if w is None:
            return np.full(n, 1.0 / counts[0])
        if abs(counts[1] - 1.0) > 1e-6:
            _raise_everywhere(ValueError(msg.NOT_NORMALISED.format(name="w", total=float(counts[1]))))
        return w

    def _sum_over_samples(self, partial):
        _check(self.comm, None)  # a rank that failed since the last collective says so here
        return self.comm.allreduce(np.asarray(partial, dtype=np.float64), "sum")

    def measure(self, E: npt.ArrayLike, q_before: Optional[npt.ArrayLike] = None,
                index: Optional[npt.ArrayLike] = None) -> LabelState:
        """As :meth:`thermossl.demon.Demon.measure`, a collective over the ranks.

        Parameters
        ----------
        E : array_like, shape (N_r, K)
            This rank's energies.
        q_before : array_like, shape (N_r, K), optional
            This rank's labels before the stroke.
        index : array_like of int, shape (N_r,), optional
            The global ids of this rank's rows (each rank keeps the labels of the samples it measured).

        Returns
        -------
        thermossl.reservoirs.LabelState
            This rank's label state.

        Raises
        ------
        RuntimeError
            If called twice without :meth:`feedback` in between (on every rank).
        ValueError
            As :meth:`thermossl.demon.Demon.measure`, on every rank alike.
        """
        with agreement(self.comm):
            return super().measure(E, q_before, index)

    def feedback(self, E_after: npt.ArrayLike, E_before: Optional[npt.ArrayLike] = None) -> dict[str, float]:
        """As :meth:`thermossl.demon.Demon.feedback`, a collective over the ranks.

        Parameters
        ----------
        E_after : array_like, shape (N_r, K)
            This rank's energies after the learning step.
        E_before : array_like, shape (N_r, K), optional
            This rank's energies the work is counted from (default: the measured ones).

        Returns
        -------
        dict of str to float
            The cycle's global ledger row, the same on every rank.

        Raises
        ------
        RuntimeError
            If called before :meth:`measure` (on every rank).
        ValueError
            As :meth:`thermossl.demon.Demon.feedback`, on every rank alike.
        """
        with agreement(self.comm):
            return super().feedback(E_after, E_before)
