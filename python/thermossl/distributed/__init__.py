"""Scale-out: Sinkhorn balancing and the demon's ledger over samples sharded across processes.

The rows (samples) of E are split across the ranks of a communicator; states (K), the charge
targets c and the chemical potentials mu are replicated. Everything that sums over samples goes
through a small, engine-agnostic communicator protocol (:class:`Communicator`: ``rank``, ``size``
and ``allreduce`` of a float64 vector with ``"sum"`` or ``"max"``), so the same code runs on

- MPI through mpi4py (:class:`MPIComm`; a raw ``mpi4py.MPI.Comm`` is accepted too),
- ``torch.distributed`` (:class:`TorchComm`: gloo on CPU, NCCL on GPU — SwAV's multi-GPU engine),
- one process (:class:`SelfComm`, the default when ``comm=None``).

mpi4py and torch are imported only when an adapter is made: ``import thermossl`` needs numpy only.

``sinkhorn(E_local, T, comm=...)`` equals :func:`thermossl.sinkhorn` on the stacked rows to
rounding (same iteration convention, gauge, starts, weights, error and stopping rule; float64
results agree to ~1e-14, the iteration count of a tolerance run is the same). Each iteration is
ONE fused pass over the local rows (``sinkhorn_pass`` of the C++ core: the f-update and, from the same
exponentials, the local charges sum_i w_i q_iy) and ONE sum-allreduce of K + 1 doubles (the charges
and a failure flag), from which every rank computes the same global charges, charge error and
mu-update mu_y += T (log c_y - log N_y). The cold start adds one column log-sum-exp pass (two
allreduces); an iteration whose charge underflows (N_y below ~1e-308, extreme E/T) takes that
exact column pass instead. The cost model: the scale-out page of the documentation.

Failure behaviour: an exception raised on some ranks inside a thermossl collective call (bad input
on one shard, a nan row, ...) is raised on *every* rank with the same type and message — the one of
the lowest failing rank — instead of leaving the others blocked in a collective. Use
:func:`agreement` to give your own per-shard code (loading a shard, say) the same behaviour. A
rank that cannot take part any more — a KeyboardInterrupt escaping a sharded call, an uncaught
exception or a signal outside one — ends an MPI job with MPI_Abort instead of leaving the others
waiting (the first always, the others under ``python -m thermossl.distributed script.py`` or after
:func:`abort_on_failure`; see :mod:`.abort`).

Layout: :mod:`.comm` (the communicator protocol and its MPI, torch.distributed and one-process
adapters), :mod:`.failures` (failure agreement: an error on one rank raised on every rank),
:mod:`.abort` (ending the job when a rank cannot go on), :mod:`.solver` (the sharded Sinkhorn solver), :mod:`.sharded` (the sharded reservoir and demon).
"""
from __future__ import annotations

from .abort import abort_on_failure
from .comm import Communicator, MPIComm, SelfComm, TorchComm, as_comm
from .failures import agreement
from .sharded import Demon, ShardedSinkhornReservoir
from .solver import DistributedSinkhornResult, sinkhorn

__all__ = [
    "Communicator",
    "SelfComm",
    "MPIComm",
    "TorchComm",
    "as_comm",
    "agreement",
    "abort_on_failure",
    "DistributedSinkhornResult",
    "sinkhorn",
    "ShardedSinkhornReservoir",
    "Demon",
]
