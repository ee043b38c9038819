"""The sharded reservoir and demon: :class:`thermossl.reservoirs.SinkhornReservoir` and
:class:`thermossl.demon.Demon` over samples split across the ranks of a communicator."""
from __future__ import annotations

import math

import numpy as np

from .. import _messages as msg
from .. import demon as _demon
from .._backends import cpu
from .._validation import iteration_controls, positive_vector, probability_vector
from ..reservoirs import LabelState, SinkhornReservoir
from .comm import as_comm
from .failures import _check, _raise_everywhere, agreement
from .solver import _sinkhorn, sinkhorn

__all__ = ["ShardedSinkhornReservoir", "Demon"]


class ShardedSinkhornReservoir(SinkhornReservoir):
    """:class:`thermossl.reservoirs.SinkhornReservoir` over samples sharded across ``comm``:
    ``assign`` is a collective that balances the charges of all ranks' samples (:func:`sinkhorn`)
    and returns this rank's labels with the global mu, charges and charge error."""

    def __init__(self, T, n_iter=None, tol=1e-6, max_iter=1000, c=None, warm_start=True, comm=None, relaxation=1.0):
        super().__init__(T, n_iter=n_iter, tol=tol, max_iter=max_iter, c=c, warm_start=warm_start,
                         relaxation=relaxation)
        self.comm = as_comm(comm)

    @classmethod
    def like(cls, reservoir: SinkhornReservoir, comm=None) -> "ShardedSinkhornReservoir":
        """The sharded twin of a SinkhornReservoir (same T, mode, targets, warm start)."""
        return cls(reservoir.T, n_iter=reservoir.n_iter, tol=reservoir.tol, max_iter=reservoir.max_iter,
                   c=reservoir.c, warm_start=reservoir.warm_start, comm=comm, relaxation=reservoir.relaxation)

    def assign(self, E, w=None) -> LabelState:
        mu0 = None
        shape = np.shape(E)
        if self.warm_start and self._mu is not None and len(shape) == 2 and self._mu.shape == (shape[1],):
            mu0 = self._mu
        result = sinkhorn(E, self.T, w=w, c=self.c, n_iter=self.n_iter, tol=self.tol, max_iter=self.max_iter,
                          mu0=mu0, comm=self.comm, relaxation=self.relaxation)
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
        result = _sinkhorn(self.comm, E, self.T, w, c, mu0, fixed, tol, limit, omega, True, check_weight_sum=False)
        return self._label_state(result)

    def _label_state(self, result) -> LabelState:
        self._mu = result.mu
        return LabelState(q=result.q, mu=result.mu, charges=result.charges, charge_err=result.err, T=self.T,
                          method="sinkhorn", n_iter=result.n_iter, converged=result.converged, f=result.f)

    def __repr__(self) -> str:
        return "Sharded" + super().__repr__()


class Demon(_demon.Demon):
    """:class:`thermossl.demon.Demon` over samples sharded across ``comm``: each rank measures and
    feeds back its own rows, and every sum over samples (energies, entropies, relative entropies,
    losses, work, heat, charges, hence information and entropy production) is reduced across
    ranks, so every rank appends the same global ledger row. ``measure`` and ``feedback`` are
    collectives (one allreduce of a short vector each, besides the reservoir's); an error on any
    rank is raised on every rank.

    ``w``: this rank's slice of the global sample weights (default 1/N, N the global count).
    ``work_per_sample``/``heat_per_sample`` hold this rank's samples. The reservoir must be
    sharded over the same communicator (:class:`ShardedSinkhornReservoir`).
    """

    def __init__(self, T, reservoir, w=None, comm=None):
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

    def measure(self, E, q_before=None, index=None) -> LabelState:
        """As :meth:`thermossl.demon.Demon.measure`; ``index`` holds the global ids of this rank's
        rows (each rank keeps the labels of the samples it measured)."""
        with agreement(self.comm):
            return super().measure(E, q_before, index)

    def feedback(self, E_after, E_before=None) -> dict:
        with agreement(self.comm):
            return super().feedback(E_after, E_before)
