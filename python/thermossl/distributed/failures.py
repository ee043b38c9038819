"""Failure agreement: an exception raised on some ranks inside a thermossl collective call is raised
on every rank with the same type and message (the lowest failing rank's) instead of leaving the
others blocked in a collective."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np

from .abort import _in_step
from .comm import Communicator, as_comm

__all__ = ["agreement"]

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
def agreement(comm: Optional[Any] = None) -> Iterator[Communicator]:
    """Run per-shard code so that an exception on any rank is raised on every rank.

    A collective: every rank must enter and leave it. On leaving, the ranks agree (one scalar
    allreduce); if any rank raised (an ``Exception``), every rank raises the error of the lowest
    failing rank, with its type (builtin exception types; others become RuntimeError naming the
    type) and message. A ``KeyboardInterrupt`` or ``SystemExit`` in the block is not agreed: with
    more than one MPI rank it aborts the job (MPI_Abort) rather than leave the others waiting::

        with thermossl.distributed.agreement(comm):
            E_local = np.load(shard_path, mmap_mode="r")

    Parameters
    ----------
    comm : None, Communicator, mpi4py.MPI.Comm or torch.distributed.ProcessGroup, optional
        The communicator (see :func:`as_comm`; None: one process).

    Yields
    ------
    Communicator
        The communicator used.

    Raises
    ------
    Exception
        The error of the lowest failing rank, on every rank.
    """
    comm = as_comm(comm)
    # A KeyboardInterrupt/SystemExit in the block cannot be agreed (the others would go on into the
    # next collective): with MPI the job is aborted (abort._in_step).
    with _in_step(comm, "a thermossl.distributed.agreement block"):
        try:
            yield comm
        except Exception as exc:
            if _agreed(exc):
                raise
            _check(comm, exc)
            raise  # pragma: no cover - _check always raises here
        _check(comm, None)


def _raise_everywhere(exc: BaseException):
    """Raise an error every rank has found identically (from reduced data): no communication."""
    raise _mark(exc, -1)
