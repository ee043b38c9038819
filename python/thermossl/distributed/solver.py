"""The sharded Sinkhorn solver: :func:`thermossl.sinkhorn` on energies whose rows are split over
the ranks of a communicator (one fused pass over the local rows and one K + 1 allreduce per
iteration; see the package docstring and the scale-out page of the documentation)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from .. import _messages as msg
from .. import _status
from .._backends import cpu
from ..balancing import SinkhornResult
from .._validation import (
    finite_vector,
    iteration_controls,
    positive_temperature,
    positive_vector,
    probability_vector,
    real_matrix,
)
from .abort import _in_step
from .comm import Communicator, as_comm
from .failures import _check, _failure_code, _raise_everywhere, _raise_from

__all__ = ["DistributedSinkhornResult", "sinkhorn"]


@dataclass(frozen=True)
class DistributedSinkhornResult(SinkhornResult):
    """Outcome of :func:`sinkhorn` on one rank.

    Parameters
    ----------
    q : numpy.ndarray, shape (N_local, K), or None
        This rank's rows of the label state; None when ``return_q=False``.
    f : numpy.ndarray, shape (N_local,)
        This rank's row potentials.
    mu : numpy.ndarray, shape (K,)
        The global chemical potentials (gauge sum_y c_y mu_y = 0), the same on every rank.
    n_iter : int
        Global, as in :class:`thermossl.SinkhornResult`.
    err : float
        Global charge error.
    converged : bool
        Global.
    charges : numpy.ndarray, shape (K,)
        Global charges (float64).
    n_total : int
        The number of samples over all ranks.
    offset : int
        The global index of this rank's first row.
    """

    n_total: int
    offset: int


class _ShardedSinkhorn:
    """The state of one rank's run; every method that communicates is a collective."""

    def __init__(self, comm, E, T, dtype, w, log_c, c_exact, offset, energy_sign=1.0):
        self.comm = comm
        self.E = E  # the energies, or the scores when energy_sign is -1 (energies -E)
        self.T = T
        self.dtype = dtype
        self.n, self.k = E.shape
        self.energy_sign = energy_sign
        self.scale = -energy_sign / T
        self.w = w  # (n,) float64 sample weights, as the single-process kernel reads them
        self.log_w = np.log(w)
        self.log_c = log_c  # (K,) float64
        self.c = c_exact  # (K,) float64 targets (as the kernel dtype rounds them)
        self.offset = offset
        self.f = np.zeros(self.n)  # float64, as the single-process solver keeps it

    # Local kernels -----------------------------------------------------------------------
    def _row_error(self, log_z) -> Optional[ValueError]:
        bad = cpu.first_nonfinite(log_z)
        if bad is None:
            return None
        i, value = bad
        status = 1 if np.isnan(value) else (3 if value > 0 else 2)
        return _status.sinkhorn_error(status, self.offset + i)

    def row_pass(self, mu) -> Optional[ValueError]:
        """f_i <- -T LSE_y((mu_y - E_iy)/T); returns a row error or None."""
        if self.n == 0:
            return None
        log_z = cpu.row_logsumexp(self.E, self.scale, np.ascontiguousarray(mu / self.T, dtype=np.float64))
        error = self._row_error(log_z)
        if error is None:
            self.f = -self.T * log_z.astype(np.float64)
        return error

    def fused_pass(self, mu, charges, q=None) -> Optional[ValueError]:
        """One read of the local rows at mu (``sinkhorn_pass``): f_i <- -T LSE_y((mu_y - E_iy)/T)
        and the local charges sum_i w_i q_iy into ``charges`` (and q when given); returns a row
        error or None."""
        if self.n == 0:
            charges[:] = 0.0
            return None
        f = np.empty(self.n)
        status, index = cpu.sinkhorn_pass(self.E, self.T, self.w, np.ascontiguousarray(mu, dtype=np.float64), f,
                                            charges, q, self.energy_sign)
        if status:
            return _status.sinkhorn_error(status, self.offset + index)
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
        out = cpu.col_logsumexp(self.E, self.scale, np.ascontiguousarray(shift, dtype=np.float64))
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
                    _raise_everywhere(_status.sinkhorn_error(4, y))
        _raise_everywhere(_status.sinkhorn_error(3, -1))

    def mu_update(self, G) -> np.ndarray:
        """mu_y = T log c_y - T G_y (charges exact)."""
        return self.T * (self.log_c - G)

    def charges(self, mu, G) -> np.ndarray:
        """N_y = sum_i w_i q_iy = exp(mu_y/T + G_y) of the state (f, mu)."""
        return np.exp(mu / self.T + G)


def sinkhorn(E_local: npt.ArrayLike, T: float, w: Optional[npt.ArrayLike] = None, c: Optional[npt.ArrayLike] = None,
             n_iter: Optional[int] = None, tol: float = 1e-6, max_iter: int = 1000, mu0: Optional[npt.ArrayLike] = None,
             return_q: bool = True, comm: Optional[Any] = None,
             relaxation: Union[float, str] = 1.0, *, energy_sign: float = 1.0) -> DistributedSinkhornResult:
    """Sinkhorn balancing (:func:`thermossl.sinkhorn`) of energies whose rows are sharded over ranks.

    A collective: every rank of ``comm`` calls it with its rows ``E_local`` — any number of rows,
    0 included, as long as some rank has one; the rows of rank 0 come first in the global order,
    then rank 1's, and so on. ``T``, ``c``, ``n_iter``, ``tol``, ``max_iter``, ``mu0``,
    ``relaxation`` and the dtype of E must be the same on every rank (``relaxation="auto"`` makes
    the same choices as the single-process solver: the controller is the C++ solver's, fed the same
    global errors). The algorithm and its cost: the scale-out page of the documentation.

    Parameters
    ----------
    E_local : array_like, shape (N_r, K)
        This rank's rows of the energies.
    T : float
        Reservoir temperature, > 0.
    w : array_like, shape (N_r,), optional
        This rank's slice of the global sample weights (> 0, summing to 1 over all ranks; default
        1/N with N the global count).
    c : array_like, shape (K,), optional
        Charge targets, > 0, summing to 1 (default 1/K).
    n_iter : int, optional
        Exactly this many iterations; None runs to ``tol``.
    tol : float, optional
        Tolerance on the global charge error.
    max_iter : int, optional
        Iteration limit of the tolerance mode.
    mu0 : array_like, shape (K,), optional
        Warm-start chemical potentials.
    return_q : bool, optional
        Also return this rank's rows of the label state.
    comm : None, Communicator, mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
        The communicator (None: one process).
    relaxation : float or {"auto"}, optional
        Over-relaxation of the mu-update, as in :func:`thermossl.sinkhorn`.
    energy_sign : {1, -1}, optional
        -1: ``E_local`` holds scores s and the energies are -s, read with a signed scale (no
        negated copy); the result is that of ``-E_local``, bitwise. Must agree between ranks.

    Returns
    -------
    DistributedSinkhornResult
        This rank's q and f, the global mu, n_iter, err, converged and charges.

    Raises
    ------
    TypeError
        As :func:`thermossl.sinkhorn`, on every rank alike.
    ValueError
        The argument checks of :func:`thermossl.sinkhorn` with the same messages; a nan row, a row
        with every state forbidden, ... named by its global row index; arguments that differ between
        ranks. Raised on every rank alike.
    """
    return _checked_sinkhorn(E_local, T, w, c, n_iter, tol, max_iter, mu0, return_q, comm, relaxation,
                             energy_sign, stacklevel=3)


def _checked_sinkhorn(E_local, T, w, c, n_iter, tol, max_iter, mu0, return_q, comm, relaxation, energy_sign,
                      *, stacklevel: int) -> DistributedSinkhornResult:
    """:func:`sinkhorn`, its not-converged warning placed ``stacklevel`` frames up from here (1: this
    function, 2: its caller, 3: the caller's caller), so that an entry point calling it on the
    user's behalf (``ShardedSinkhornReservoir.assign``) points the warning at the user's line."""
    comm = as_comm(comm)
    with _in_step(comm, "thermossl.distributed.sinkhorn"):  # see abort.py: a KeyboardInterrupt here aborts
        # --- local validation, then agreement (a rank with bad input makes every rank raise) ---
        error = None
        try:
            T = positive_temperature(T)
            E = real_matrix(E_local, "E")
            if E.shape[1] < 1:
                raise ValueError(msg.EMPTY.format(name="E", shape=E.shape))
            (E,), dtype = cpu.to_kernel(E)
            n, k = E.shape
            w_local = positive_vector(w, n, "w", "sample")
            c = probability_vector(c, k, "c", "state", positive=True)  # no empty states in the sharded solver yet
            if mu0 is not None:
                mu0 = finite_vector(mu0, k, "mu0", "state").astype(dtype).astype(np.float64)  # as the kernel reads it
            fixed, limit, tol, omega_requested = iteration_controls(n_iter, tol, max_iter, relaxation)
            if energy_sign not in (1, -1) or isinstance(energy_sign, bool):
                raise ValueError(f"energy_sign must be 1 or -1, got {energy_sign!r}")
        except Exception as exc:
            error = exc
        _check(comm, error)
    return _sinkhorn(comm, E, T, w_local, c, mu0, fixed, tol, limit, omega_requested, return_q,
                     stacklevel=stacklevel + 1, energy_sign=float(energy_sign))


def _sinkhorn(comm: Communicator, E, T: float, w_local, c, mu0, fixed: int, tol: float, limit: int,
              omega_requested: float, return_q: bool = True, *, check_weight_sum: bool = True,
              stacklevel: int = 2, energy_sign: float = 1.0) -> DistributedSinkhornResult:
    """The validated twin of :func:`sinkhorn` (a collective): every rank's local arguments checked
    and agreed on (E 2-D in its kernel dtype with K >= 1, T a positive float, w_local finite > 0
    float64 or None, c a float64 distribution or None, mu0 float64 as the kernel reads it, the
    iteration controls); this checks what needs every rank (the replicated arguments agree, some
    rank has a row, and — unless the caller has — the weights sum to 1 over the ranks).
    ``stacklevel`` places the not-converged warning (1: this function, 2: its caller).

    The iterations run under :func:`abort._in_step`: an exception that escapes them without being
    agreed on every rank (a KeyboardInterrupt, say) aborts an MPI job instead of leaving the other
    ranks in an allreduce. The warning is issued after, outside the guard: every rank issues it
    alike, so an error filter on it raises on every rank in step."""
    with _in_step(comm, "thermossl.distributed.sinkhorn"):
        result = _solve(comm, E, T, w_local, c, mu0, fixed, tol, limit, omega_requested, return_q,
                        check_weight_sum, energy_sign)
    if not fixed and not result.converged:
        _status.warn_not_converged(limit, result.err, tol, stacklevel)
    return result


def _solve(comm: Communicator, E, T: float, w_local, c, mu0, fixed: int, tol: float, limit: int,
           omega_requested: float, return_q: bool, check_weight_sum: bool,
           energy_sign: float = 1.0) -> DistributedSinkhornResult:
    """The collectives of :func:`_sinkhorn` (the same arguments)."""
    dtype = E.dtype
    n, k = E.shape
    # --- agreement on the replicated arguments, and the global row count and offsets ---
    scalars = np.array(
        [k, T, np.dtype(dtype).itemsize, fixed, tol, limit, c is not None, mu0 is not None, w_local is not None,
         omega_requested, energy_sign],
        dtype=np.float64,
    )
    spread = comm.allreduce(np.concatenate((scalars, -scalars)), "max")
    names = ("K (the number of states, E.shape[1])", "T", "the dtype of E", "n_iter", "tol", "max_iter",
             "whether c is given", "whether mu0 is given", "whether w is given", "relaxation", "energy_sign")
    for j, name in enumerate(names):
        if spread[j] != -spread[len(names) + j]:
            _raise_everywhere(ValueError(f"{name} differs between ranks; it must be the same on every rank"))
    counts = np.zeros(comm.size + 1)
    counts[comm.rank] = n
    counts[-1] = 0.0 if w_local is None or not check_weight_sum else math.fsum(w_local.astype(dtype).astype(np.float64))
    counts = comm.allreduce(counts, "sum")
    n_total = int(round(counts[:-1].sum()))
    offset = int(round(counts[: comm.rank].sum()))
    if n_total < 1:
        _raise_everywhere(ValueError(msg.EMPTY.format(name="E", shape=(0, k))))
    if w_local is not None and check_weight_sum and abs(counts[-1] - 1.0) > 1e-6:
        _raise_everywhere(ValueError(msg.NOT_NORMALISED.format(name="w", total=float(counts[-1]))))
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
    solver = _ShardedSinkhorn(comm, E, T, dtype, w_kernel, np.log(c_exact), c_exact, offset, energy_sign)

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
    controller = cpu.SinkhornRelaxation(omega_requested, bool(fixed))

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
            q = cpu.row_softmax(E, solver.scale, np.ascontiguousarray(mu / T), log_z=False)[0] if n else \
                np.empty((n, k), dtype=dtype)
        except Exception as exc:
            error = exc
        _check(comm, error)
    # Gauge sum_y c_y mu_y = 0 (f absorbs the constant, q is unchanged).
    a = float(np.dot(c_exact, mu))
    mu = mu - a
    f = (solver.f + a).astype(dtype)
    converged = err <= tol
    return DistributedSinkhornResult(
        q=q, f=f, mu=mu.astype(dtype), n_iter=int(iteration), err=err, converged=bool(converged),
        charges=charges, n_total=n_total, offset=offset,
    )
