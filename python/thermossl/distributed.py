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
ONE fused pass over the local rows (``_core.sinkhorn_pass``: the f-update and, from the same
exponentials, the local charges sum_i w_i q_iy) and ONE sum-allreduce of K + 1 doubles (the charges
and a failure flag), from which every rank computes the same global charges, charge error and
mu-update mu_y += T (log c_y - log N_y). The cold start adds one column log-sum-exp pass (two
allreduces); an iteration whose charge underflows (N_y below ~1e-308, extreme E/T) takes that
exact column pass instead. See docs/distributed.md for the cost model.

Failure behaviour: an exception raised on some ranks inside a thermossl collective call (bad input
on one shard, a nan row, ...) is raised on *every* rank with the same type and message — the one of
the lowest failing rank — instead of leaving the others blocked in a collective. Use
:func:`agreement` to give your own per-shard code (loading a shard, say) the same behaviour.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _core
from . import demon as _demon
from .balancing import _STATUS_MESSAGES, _iteration_controls, _warm_start
from .reservoirs import LabelState, SinkhornReservoir
from ._validation import as_real_array, compute_dtype, positive_temperature

__all__ = [
    "Communicator",
    "SelfComm",
    "MPIComm",
    "TorchComm",
    "as_comm",
    "agreement",
    "DistributedSinkhornResult",
    "sinkhorn",
    "ShardedSinkhornReservoir",
    "Demon",
]


# ----------------------------------------------------------------------------- communicators
class Communicator:
    """The protocol the sharded algorithms need: ``rank``, ``size`` and
    ``allreduce(x, op)`` -> a new float64 array, the elementwise ``"sum"`` or ``"max"`` of the
    ranks' 1-D float64 arrays ``x`` (every rank passes the same length). All ranks must receive
    bitwise the same result (true of MPI's built-in reductions and of gloo/NCCL all_reduce): the
    stopping rule of a tolerance run is evaluated on every rank from it."""

    rank: int = 0
    size: int = 1

    def allreduce(self, x: np.ndarray, op: str) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def _check_op(op: str) -> None:
    if op not in ("sum", "max"):
        raise ValueError(f"op must be 'sum' or 'max', got {op!r}")


class SelfComm(Communicator):
    """One process: the allreduce is the identity."""

    rank = 0
    size = 1

    def allreduce(self, x, op):
        _check_op(op)
        return np.array(x, dtype=np.float64, copy=True)

    def __repr__(self) -> str:
        return "SelfComm()"


class MPIComm(Communicator):
    """An mpi4py communicator (default ``MPI.COMM_WORLD``); ``pip install thermossl[mpi]``."""

    def __init__(self, comm=None):
        from mpi4py import MPI  # lazy: thermossl does not need mpi4py

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce(self, x, op):
        _check_op(op)
        send = np.ascontiguousarray(x, dtype=np.float64)
        recv = np.empty_like(send)
        self.comm.Allreduce(send, recv, op=self._mpi.SUM if op == "sum" else self._mpi.MAX)
        return recv

    def __repr__(self) -> str:
        return f"MPIComm(rank={self.rank}, size={self.size})"


class TorchComm(Communicator):
    """``torch.distributed`` (an initialised default process group, or ``group``).

    Vectors travel as float64 tensors on ``device``: by default the current CUDA device for the
    NCCL backend, the CPU otherwise (gloo, mpi).
    """

    def __init__(self, group=None, device=None):
        import torch  # lazy: thermossl does not need torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised: call torch.distributed.init_process_group first")
        self._torch = torch
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        if device is None:
            backend = str(dist.get_backend(group)).lower()
            device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        self.device = torch.device(device)

    def allreduce(self, x, op):
        _check_op(op)
        torch = self._torch
        tensor = torch.from_numpy(np.array(x, dtype=np.float64, copy=True)).to(self.device)
        reduce_op = self._dist.ReduceOp.SUM if op == "sum" else self._dist.ReduceOp.MAX
        self._dist.all_reduce(tensor, op=reduce_op, group=self.group)
        return tensor.cpu().numpy().astype(np.float64, copy=False)

    def __repr__(self) -> str:
        return f"TorchComm(rank={self.rank}, size={self.size}, device={self.device})"


def as_comm(comm) -> Communicator:
    """A :class:`Communicator` from ``None`` (one process), a Communicator, a raw
    ``mpi4py.MPI.Comm`` or a ``torch.distributed`` process group."""
    if comm is None:
        return SelfComm()
    if isinstance(comm, Communicator):
        return comm
    module = type(comm).__module__ or ""
    if module.startswith("mpi4py"):
        return MPIComm(comm)
    if module.startswith("torch"):
        return TorchComm(group=comm)
    if all(hasattr(comm, a) for a in ("rank", "size", "allreduce")):
        return comm  # duck-typed communicator
    raise TypeError(
        "comm must be None, a thermossl.distributed.Communicator, an mpi4py communicator or a "
        f"torch.distributed process group, got {type(comm).__name__}"
    )


# ----------------------------------------------------------------------------- failure agreement
_MESSAGE_BYTES = 4096
_EXCEPTION_TYPES = (
    ValueError, TypeError, RuntimeError, KeyError, IndexError, FloatingPointError, OverflowError,
    ZeroDivisionError, MemoryError, NotImplementedError, AssertionError, OSError, FileNotFoundError,
    AttributeError, LookupError, ArithmeticError,
)


def _failure_code(comm: Communicator, failed: bool) -> float:
    """size - rank for a failing rank, 0 otherwise: the max over ranks names the lowest failing rank."""
    return float(comm.size - comm.rank) if failed else 0.0


def _mark(exc: BaseException, origin: int) -> BaseException:
    exc.thermossl_agreed = True  # raised on every rank: no further agreement needed
    exc.thermossl_rank = origin  # the rank whose error it is
    return exc


def _agreed(exc: BaseException) -> bool:
    return getattr(exc, "thermossl_agreed", False)


def _raise_from(comm: Communicator, code: float, exc: Optional[BaseException]):
    """Everyone: raise the error of the rank named by ``code`` (one sum-allreduce of its message)."""
    origin = comm.size - int(round(code))
    buf = np.zeros(2 + _MESSAGE_BYTES)
    if comm.rank == origin:
        if type(exc) in _EXCEPTION_TYPES:
            kind, message = _EXCEPTION_TYPES.index(type(exc)), str(exc)
        else:
            kind, message = _EXCEPTION_TYPES.index(RuntimeError), f"{type(exc).__name__}: {exc}"
        data = message.encode("utf-8")[:_MESSAGE_BYTES]
        buf[0], buf[1] = kind, len(data)
        buf[2 : 2 + len(data)] = np.frombuffer(data, dtype=np.uint8)
    buf = comm.allreduce(buf, "sum")
    kind, length = int(buf[0]), int(buf[1])
    message = bytes(buf[2 : 2 + length].astype(np.uint8)).decode("utf-8", errors="replace")
    error = _mark(_EXCEPTION_TYPES[kind](message), origin)
    if comm.rank == origin and exc is not None:
        raise error from exc
    raise error


def _check(comm: Communicator, exc: Optional[BaseException] = None) -> None:
    """A collective: raise on every rank if any rank passes an exception (one scalar max-allreduce
    when none does)."""
    code = comm.allreduce(np.array([_failure_code(comm, exc is not None)]), "max")[0]
    if code > 0:
        _raise_from(comm, code, exc)


@contextmanager
def agreement(comm=None):
    """Run per-shard code so that an exception on any rank is raised on every rank.

    A collective: every rank must enter and leave it. On leaving, the ranks agree (one scalar
    allreduce); if any rank raised (an ``Exception``), every rank raises the error of the lowest
    failing rank, with its type (builtin exception types; others become RuntimeError naming the
    type) and message::

        with thermossl.distributed.agreement(comm):
            E_local = np.load(shard_path, mmap_mode="r")
    """
    comm = as_comm(comm)
    try:
        yield comm
    except Exception as exc:
        if _agreed(exc):
            raise
        _check(comm, exc)
        raise  # pragma: no cover - _check always raises here
    _check(comm, None)


# ----------------------------------------------------------------------------- sharded Sinkhorn
@dataclass(frozen=True)
class DistributedSinkhornResult:
    """Outcome of :func:`sinkhorn` on one rank.

    q: (N_local, K) this rank's rows of the label state, or None when ``return_q=False``.
    f: (N_local,) this rank's row potentials.
    mu: (K,) the global chemical potentials (gauge sum_y c_y mu_y = 0), the same on every rank.
    n_iter, err, converged, charges: global, as in :class:`thermossl.SinkhornResult`.
    n_total: the number of samples over all ranks; offset: the global index of this rank's first row.
    """

    q: Optional[np.ndarray]
    f: np.ndarray
    mu: np.ndarray
    n_iter: int
    err: float
    converged: bool
    charges: np.ndarray
    n_total: int
    offset: int


def _local_weights(w, n: int):
    """Local sample weights: shape (n,), finite, > 0 (their global sum is checked collectively)."""
    if w is None:
        return None
    w = as_real_array(w, "w")
    if w.shape != (n,):
        raise ValueError(f"w must have shape ({n},) (one value per sample), got {w.shape}")
    if not np.all(np.isfinite(w)) or not np.all(w > 0):
        raise ValueError("w must be finite and > 0 everywhere")
    return np.ascontiguousarray(w, dtype=np.float64)


def _charge_targets(c, k: int):
    from ._validation import probability_vector

    return probability_vector(c, k, "c", "state")


class _ShardedSinkhorn:
    """The state of one rank's run; every method that communicates is a collective."""

    def __init__(self, comm, E, T, dtype, w, log_c, c_exact, offset):
        self.comm = comm
        self.E = E
        self.T = T
        self.dtype = dtype
        self.n, self.k = E.shape
        self.scale = -1.0 / T
        self.w = w  # (n,) float64 sample weights, as the single-process kernel reads them
        self.log_w = np.log(w)
        self.log_c = log_c  # (K,) float64
        self.c = c_exact  # (K,) float64 targets (as the kernel dtype rounds them)
        self.offset = offset
        self.f = np.zeros(self.n)  # float64, as the single-process solver keeps it

    # Local kernels -----------------------------------------------------------------------
    def _row_error(self, log_z) -> Optional[ValueError]:
        bad = ~np.isfinite(log_z)
        if not bad.any():
            return None
        i = int(np.flatnonzero(bad)[0])
        value = log_z[i]
        status = 1 if np.isnan(value) else (3 if value > 0 else 2)
        return ValueError(_STATUS_MESSAGES[status].format(index=self.offset + i))

    def row_pass(self, mu, q=None) -> Optional[ValueError]:
        """f_i <- -T LSE_y((mu_y - E_iy)/T) (and q when given); returns a row error or None."""
        if self.n == 0:
            return None
        shift = np.ascontiguousarray(mu / self.T, dtype=np.float64)
        log_z = np.empty(self.n, dtype=self.dtype)
        if q is None:
            _core.row_logsumexp(self.E, self.scale, shift, None, log_z, None)
        else:
            _core.row_softmax(self.E, self.scale, shift, q, log_z)
        error = self._row_error(log_z)
        if error is None:
            self.f = -self.T * log_z.astype(np.float64)
        return error

    def fused_pass(self, mu, charges, q=None) -> Optional[ValueError]:
        """One read of the local rows at mu (``_core.sinkhorn_pass``): f_i <- -T LSE_y((mu_y - E_iy)/T)
        and the local charges sum_i w_i q_iy into ``charges`` (and q when given); returns a row
        error or None."""
        if self.n == 0:
            charges[:] = 0.0
            return None
        f = np.empty(self.n)
        status, index = _core.sinkhorn_pass(self.E, self.T, self.w, np.ascontiguousarray(mu, dtype=np.float64), f,
                                            charges, q)
        if status:
            return ValueError(_STATUS_MESSAGES[status].format(index=self.offset + index))
        self.f = f
        return None

    def pass_step(self, mu, q=None) -> np.ndarray:
        """A collective: the fused pass on every rank and ONE sum-allreduce of K + 1 doubles (the
        local charges and a failure flag); returns the global charges N_y. Raises everywhere on a
        row error of any rank."""
        local = np.zeros(self.k + 1)
        error = None
        try:
            error = self.fused_pass(mu, local[: self.k], q)
        except Exception as exc:  # e.g. MemoryError
            error = exc
        if error is not None:
            local[:] = 0.0
            local[self.k] = 1.0
        total = self.comm.allreduce(local, "sum")
        if total[self.k] > 0:
            _check(self.comm, error)  # every rank: raise the lowest failing rank's error
        return total[: self.k]

    def local_column_lse(self, use_f: bool) -> np.ndarray:
        """LSE_i(log w_i + (f_i - E_iy)/T) over the local rows, (K,) float64 (-inf with no rows)."""
        if self.n == 0:
            return np.full(self.k, -np.inf)
        shift = self.log_w + (self.f / self.T if use_f else 0.0)
        out = np.empty(self.k, dtype=self.dtype)
        _core.col_logsumexp(self.E, self.scale, np.ascontiguousarray(shift, dtype=np.float64), out)
        return out.astype(np.float64)

    # Collectives --------------------------------------------------------------------------
    def column_step(self, use_f: bool, row_error: Optional[BaseException] = None) -> np.ndarray:
        """The global column LSE G_y = LSE over all ranks (two allreduces: max, then the sum of
        exp(local - max)); raises everywhere on a row error of any rank or a non-finite G."""
        comm = self.comm
        if row_error is None:
            try:
                lse = self.local_column_lse(use_f)
            except Exception as exc:  # pragma: no cover - kernels validate their inputs
                row_error, lse = exc, np.full(self.k, -np.inf)
            bad = bool(np.isnan(lse).any() or np.isposinf(lse).any())
        else:
            lse, bad = np.full(self.k, -np.inf), False
        safe = np.where(np.isnan(lse) | np.isposinf(lse), -np.inf, lse)
        head = comm.allreduce(
            np.concatenate(([_failure_code(comm, row_error is not None), 1.0 if bad else 0.0], safe)), "max"
        )
        if head[0] > 0:
            _raise_from(comm, head[0], row_error)
        peak = head[2:]
        if head[1] == 0 and np.all(np.isfinite(peak)):
            shifted = np.exp(safe - peak)
            total = comm.allreduce(shifted, "sum")
            G = peak + np.log(total)
            if np.all(np.isfinite(G)):
                return G
        self.diagnose(peak if head[1] == 0 else None)
        raise AssertionError("unreachable")  # pragma: no cover

    def diagnose(self, peak) -> None:
        """A non-finite column LSE: find the culprit as the single-process solver does — the first
        bad row over all ranks, else a state no sample can occupy, else an overflow."""
        error = self.row_pass(np.zeros(self.k))
        _check(self.comm, error)
        if peak is not None:
            for y in range(self.k):
                if peak[y] == -np.inf:
                    _raise_everywhere(ValueError(_STATUS_MESSAGES[4].format(index=y)))
        _raise_everywhere(ValueError(_STATUS_MESSAGES[3].format(index=-1)))

    def mu_update(self, G) -> np.ndarray:
        """mu_y = T log c_y - T G_y (charges exact)."""
        return self.T * (self.log_c - G)

    def charges(self, mu, G) -> np.ndarray:
        """N_y = sum_i w_i q_iy = exp(mu_y/T + G_y) of the state (f, mu)."""
        return np.exp(mu / self.T + G)


def _raise_everywhere(exc: BaseException):
    """Raise an error every rank has found identically (from reduced data): no communication."""
    raise _mark(exc, -1)


def sinkhorn(E_local, T, w=None, c=None, n_iter=None, tol=1e-6, max_iter=1000, mu0=None, return_q=True, comm=None,
             relaxation=1.0):
    """Sinkhorn balancing (:func:`thermossl.sinkhorn`) of energies whose rows are sharded over ranks.

    A collective: every rank of ``comm`` calls it with its rows ``E_local`` (N_r, K) — any number
    of rows, 0 included, as long as some rank has one; the rows of rank 0 come first in the global
    order, then rank 1's, and so on. ``w`` is this rank's slice of the global sample weights
    (> 0, summing to 1 over all ranks; default 1/N with N the global count). ``T``, ``c``,
    ``n_iter``, ``tol``, ``max_iter``, ``mu0``, ``relaxation`` and the dtype of E must be the same on
    every rank (``relaxation="auto"`` makes the same choices as the single-process solver: the
    controller is the C++ solver's, fed the same global errors).

    Returns a :class:`DistributedSinkhornResult`: this rank's q and f, the global mu, n_iter, err,
    converged and charges. Errors (the argument checks of :func:`thermossl.sinkhorn` with the same
    messages; a nan row, a row with every state forbidden, ... named by its global row index;
    arguments that differ between ranks) are raised on every rank alike.
    """
    comm = as_comm(comm)
    # --- local validation, then agreement (a rank with bad input makes every rank raise) ---
    error = None
    try:
        T = positive_temperature(T)
        E = as_real_array(E_local, "E")
        if E.ndim != 2:
            raise ValueError(f"E must be a 2-D array of shape (N, K), got ndim={E.ndim}")
        if E.shape[1] < 1:
            raise ValueError(f"E must have at least one sample and one state, got shape {E.shape}")
        _, dtype = compute_dtype(E.dtype)
        E = E.astype(dtype, copy=False)
        n, k = E.shape
        w_local = _local_weights(w, n)
        c = _charge_targets(c, k)
        if mu0 is not None:
            mu0 = _warm_start(mu0, k).astype(dtype).astype(np.float64)  # as the kernel reads it
        fixed, limit, tol, omega_requested = _iteration_controls(n_iter, tol, max_iter, relaxation)
    except Exception as exc:
        error = exc
    _check(comm, error)

    # --- agreement on the replicated arguments, and the global row count and offsets ---
    scalars = np.array(
        [k, T, np.dtype(dtype).itemsize, fixed, tol, limit, c is not None, mu0 is not None, w_local is not None,
         omega_requested],
        dtype=np.float64,
    )
    spread = comm.allreduce(np.concatenate((scalars, -scalars)), "max")
    names = ("K (the number of states, E.shape[1])", "T", "the dtype of E", "n_iter", "tol", "max_iter",
             "whether c is given", "whether mu0 is given", "whether w is given", "relaxation")
    for j, name in enumerate(names):
        if spread[j] != -spread[len(names) + j]:
            _raise_everywhere(ValueError(f"{name} differs between ranks; it must be the same on every rank"))
    counts = np.zeros(comm.size + 1)
    counts[comm.rank] = n
    counts[-1] = 0.0 if w_local is None else math.fsum(w_local.astype(dtype).astype(np.float64))
    counts = comm.allreduce(counts, "sum")
    n_total = int(round(counts[:-1].sum()))
    offset = int(round(counts[: comm.rank].sum()))
    if n_total < 1:
        _raise_everywhere(ValueError(f"E must have at least one sample and one state, got shape {(0, k)}"))
    if w_local is not None and abs(counts[-1] - 1.0) > 1e-6:
        _raise_everywhere(ValueError(f"w must sum to 1, got {float(counts[-1])!r}"))
    vectors = [v for v in (c, mu0) if v is not None]
    if vectors:
        stacked = np.concatenate(vectors)
        spread = comm.allreduce(np.concatenate((stacked, -stacked)), "max")
        if not np.array_equal(spread[: stacked.size], -spread[stacked.size :]):
            _raise_everywhere(ValueError("c and mu0 must be the same on every rank"))

    # Weights and targets as the single-process kernel reads them (rounded to the kernel dtype).
    if w_local is None:
        w_kernel = np.full(n, 1.0 / n_total)
    else:
        w_kernel = w_local.astype(dtype).astype(np.float64)
    c_exact = np.full(k, 1.0 / k) if c is None else c.astype(dtype).astype(np.float64)
    solver = _ShardedSinkhorn(comm, E, T, dtype, w_kernel, np.log(c_exact), c_exact, offset)

    # --- the iteration of thermossl.sinkhorn (cpp/src/cpu/sinkhorn.cpp): one fused pass per
    # iteration (f-update and local charges in one read of E) and one K-vector sum-allreduce ---
    def run_pass(mu, last):
        q = None
        if last and return_q:
            try:
                q = np.empty((n, k), dtype=dtype)
            except Exception:  # MemoryError: the pass reports it to every rank
                q = None
        return solver.pass_step(mu, q), q

    # The over-relaxation controller of the C++ solver: every rank sees the same errors, so
    # every rank (and the single-process solver) picks the same omega.
    controller = _core.SinkhornRelaxation(omega_requested, bool(fixed))

    def next_mu(mu, N):
        """mu_y += omega T (log c_y - log N_y); a charge below the smallest normal double carries
        no information, so that iteration takes the exact column log-sum-exp at the current f
        (the stable two-pass log-domain path: col_logsumexp and two allreduces), relaxed alike."""
        omega = controller.omega()
        if np.all(N >= np.finfo(np.float64).tiny):
            return mu + omega * T * (solver.log_c - np.log(N))
        return mu + omega * (solver.mu_update(solver.column_step(True)) - mu)

    iteration = 0
    if mu0 is not None:
        mu = mu0.copy()  # warm start: the state of the given mu is iteration 0
    else:
        mu = solver.mu_update(solver.column_step(False))  # cold start: constant f
        iteration = 1
    N, q = run_pass(mu, fixed and iteration == fixed)
    err = float(np.abs(N - c_exact).sum())
    while iteration < (fixed or limit) and (fixed or not (err <= tol)):
        mu = next_mu(mu, N)
        iteration += 1
        N, q = run_pass(mu, fixed and iteration == fixed)
        err = float(np.abs(N - c_exact).sum())
        controller.observe(err)
    charges = N
    if return_q and q is None:
        # Tolerance mode (or a warm start that did 0 iterations): q is the GGE at the final mu.
        error = None
        try:
            q = np.empty((n, k), dtype=dtype)
            if n:
                _core.row_softmax(E, solver.scale, np.ascontiguousarray(mu / T), q, None)
        except Exception as exc:
            error = exc
        _check(comm, error)
    # Gauge sum_y c_y mu_y = 0 (f absorbs the constant, q is unchanged).
    a = float(np.dot(c_exact, mu))
    mu = mu - a
    f = (solver.f + a).astype(dtype)
    converged = err <= tol
    if not fixed and not converged:
        warnings.warn(
            f"sinkhorn did not converge in max_iter={limit} iterations: charge error {err:.3e} > tol={tol:g}",
            RuntimeWarning,
            stacklevel=2,
        )
    return DistributedSinkhornResult(
        q=q, f=f, mu=mu.astype(dtype), n_iter=int(iteration), err=err, converged=bool(converged),
        charges=charges, n_total=n_total, offset=offset,
    )


# ----------------------------------------------------------------------------- sharded reservoir and demon
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
            w = _local_weights(self._w, n)
        except Exception as exc:
            error = exc
        _check(self.comm, error)
        counts = self.comm.allreduce(np.array([n, 0.0 if w is None else math.fsum(w)]), "sum")
        if w is None:
            return np.full(n, 1.0 / counts[0])
        if abs(counts[1] - 1.0) > 1e-6:
            _raise_everywhere(ValueError(f"w must sum to 1, got {float(counts[1])!r}"))
        return w

    def _ledger_rows(self, q, E, T, w, mu=None):
        # The kernel checks that w sums to 1 and uses it for the charges only: pass this rank's
        # weights normalised and scale its charges back.
        scale = math.fsum(w)
        rows, charges = super()._ledger_rows(q, E, T, w / scale, mu=mu)
        return rows, charges * scale

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
