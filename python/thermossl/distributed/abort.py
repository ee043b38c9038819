"""Ending the whole job when one rank cannot go on: an uncaught exception, a signal, or an exception
that escapes a thermossl collective without being agreed on every rank.

failures.py keeps the ranks in step when an ``Exception`` is raised *inside* a thermossl collective
(every rank raises it). What it cannot handle is a rank that leaves the collective protocol: it
raises before (or outside) a collective, gets SIGINT/SIGTERM, or has a ``KeyboardInterrupt`` escape
from the middle of a sharded solve. The other ranks then wait in an allreduce that can never
complete. The remedy is the one of ``python -m mpi4py``: print the error once and call
``MPI_Abort``, which makes the process manager (mpiexec) kill every rank of the job.

- :func:`_abort_job` is that last step (once per process, whichever thread gets there first).
- :func:`_in_step` guards the collective part of thermossl's sharded entry points (always on):
  an exception that escapes it without being agreed left the other ranks in a collective this rank
  will never enter, so the job is aborted when the communicator can abort (MPI); otherwise (one
  process, torch.distributed, a duck-typed communicator without ``abort``) it propagates.
- :func:`abort_on_failure` (opt-in, what ``python -m thermossl.distributed`` installs) adds the
  failures outside thermossl calls: an uncaught exception (``sys.excepthook``) and SIGINT/SIGTERM,
  handled by a watcher thread so that a rank blocked in an MPI collective or in a long kernel (both
  release the GIL) aborts at once rather than when the blocking call returns.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Iterable, Optional

__all__ = ["abort_on_failure"]

_abort_lock = threading.Lock()
_aborting_thread = [None]  # the ident of the thread inside _abort_job


def _exit_code(exc: BaseException) -> int:
    """The job's exit status for an exception: SystemExit's own nonzero code, 128 + SIGINT for a
    KeyboardInterrupt (the shell's convention), 1 otherwise."""
    if isinstance(exc, SystemExit):
        code = exc.code
        return code if isinstance(code, int) and not isinstance(code, bool) and code != 0 else 1
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 1


def _where(comm) -> str:
    return f"rank {comm.rank} of {comm.size}"


# A rank's stderr reaches the user through the process manager (mpiexec's proxy reads a pipe and
# forwards it). MPI_Abort makes that manager kill every rank and exit, and it may do so before it has
# read what the aborting rank wrote just before: the report is then lost, with no output at all
# (seen in a CI run of the signal test below: an empty output; other launchers lose output the
# same way). A flushed write is in the pipe, not yet forwarded; this pause before MPI_Abort gives
# the proxy time to forward it. It delays the end of a failed job by that much, nothing else.
_REPORT_GRACE = 0.25  # seconds

# An error agreed from another rank is raised there too, at the same moment: that rank prints the
# traceback and aborts. Waiting this long before aborting here lets its report out (an abort from
# this rank would kill it mid-report); should it have caught the error instead, the job still ends.
_AGREED_GRACE = 1.0  # seconds


def _abort_job(comm, code: int, text: str, grace: float = _REPORT_GRACE) -> None:
    """Write ``text`` to stderr in one write (so ranks' reports do not interleave line by line),
    flush, wait ``grace`` seconds (so the process manager forwards the report before the abort
    tears the job down), and abort the job through ``comm.abort(code)`` (MPI_Abort). Only the first
    caller in a process reports and aborts; a later one waits for the abort to end the process
    (another thread) or returns (a signal handler run inside the abort, same thread)."""
    if not _abort_lock.acquire(blocking=False):
        if _aborting_thread[0] == threading.get_ident():
            return
        while True:  # another thread is aborting: this one must not go on (into MPI_Finalize, say)
            time.sleep(1.0)
    _aborting_thread[0] = threading.get_ident()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not stop the abort
            pass
    try:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    try:
        if grace > 0:
            time.sleep(grace)
        comm.abort(code)
    finally:
        os._exit(code)  # MPI_Abort does not return; should it, this process must not go on


def _program_frames(tb, skip_files):
    """The traceback without its leading frames in ``skip_files`` (the runner's own, runpy's)."""
    while tb is not None and tb.tb_next is not None and (
            tb.tb_frame.f_code.co_filename in skip_files or tb.tb_frame.f_code.co_filename.startswith("<frozen runpy")):
        tb = tb.tb_next
    return tb


def _from_elsewhere(comm, exc: BaseException) -> bool:
    """An error agreed on every rank whose traceback another rank reports (its origin; rank 0 for
    one every rank found from reduced data)."""
    origin = getattr(exc, "thermossl_rank", None)
    return getattr(exc, "thermossl_agreed", False) and origin is not None and origin != comm.rank and not (
        origin == -1 and comm.rank == 0)


def _abort_for_exception(comm, exc: BaseException, context: str, skip_files=()) -> None:
    """Report ``exc`` once and abort the job (an error agreed from another rank: after a grace)."""
    _abort_job(comm, _exit_code(exc), _report(comm, exc, context, skip_files),
               _AGREED_GRACE if _from_elsewhere(comm, exc) else _REPORT_GRACE)


def _report(comm, exc: BaseException, context: str, skip_files=()) -> str:
    """The one report of an exception: a header naming the rank, then the traceback — or, for an
    error agreed from another rank (every rank raises it), one line pointing at that rank's report."""
    origin = getattr(exc, "thermossl_rank", None)
    header = f"thermossl.distributed: {_where(comm)}: {context}; aborting the job (MPI_Abort)\n"
    if _from_elsewhere(comm, exc):
        source = "found on every rank" if origin == -1 else f"the error of rank {origin}, raised on every rank"
        return header + f"{type(exc).__name__}: {exc} ({source}; its traceback is on {'rank 0' if origin == -1 else f'rank {origin}'})\n"
    tb = _program_frames(exc.__traceback__, skip_files)
    return header + "".join(traceback.format_exception(type(exc), exc, tb))


@contextmanager
def _in_step(comm, name: str):
    """Guard the collective part of a sharded entry point. An exception agreed on every rank
    (failures.py) passes through; any other one — a KeyboardInterrupt from a signal, a SystemExit, a
    MemoryError between collectives, an MPI error — left the other ranks inside a collective this rank
    will not enter, so with more than one rank and a communicator that can abort, the job is
    aborted after the error is printed once."""
    try:
        yield
    except BaseException as exc:
        if getattr(exc, "thermossl_agreed", False) or comm.size <= 1 or not callable(getattr(comm, "abort", None)):
            raise
        _abort_job(comm, _exit_code(exc), _report(comm, exc, f"{type(exc).__name__} escaped {name} without "
                                                             "reaching the other ranks, which wait in a collective"))
        raise  # pragma: no cover - reached only if the abort returned (it exits)


_installed: dict[str, Any] = {}


def abort_on_failure(comm: Optional[Any] = None,
                     signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Any:
    """Make this rank's failure end the whole MPI job.

    As ``python -m mpi4py`` does and more: after this call an uncaught exception
    (``sys.excepthook``) or one of ``signals`` received by this process prints one report naming the
    rank and calls ``MPI_Abort`` on ``comm``, so mpiexec ends every rank within seconds instead of
    leaving them waiting in a collective. ``python -m thermossl.distributed script.py`` calls it
    for you.

    Call it from the main thread, early (before the work). Signals are handled by a watcher thread
    woken through :func:`signal.set_wakeup_fd`, so a rank blocked in an MPI collective or in a long
    kernel aborts at once (both release the GIL); the Python handler of the main thread does the
    same when it runs first. The job's exit status is 128 + the signal number for a signal, 1 for an
    exception. With one process it installs nothing. Calling it again replaces the previous setup.

    Parameters
    ----------
    comm : MPIComm or mpi4py.MPI.Comm, optional
        The job's communicator (default ``MPI.COMM_WORLD``).
    signals : iterable of int, optional
        The signals that end the job.

    Returns
    -------
    Communicator
        The communicator used.

    Raises
    ------
    TypeError
        If ``comm`` cannot abort the job (it is not an MPI communicator).
    RuntimeError
        If called from another thread than the main thread (with more than one process).
    ImportError
        If mpi4py is not installed.
    """
    from .comm import MPIComm, as_comm

    comm = MPIComm() if comm is None else as_comm(comm)
    if not callable(getattr(comm, "abort", None)):
        raise TypeError(f"comm must be able to abort the job (an MPI communicator), got {comm!r}")
    if comm.size <= 1:
        return comm  # one process: nobody waits for it; Python's own behaviour is right
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("abort_on_failure must be called from the main thread (it installs signal handlers)")
    signals = tuple(signal.Signals(s) for s in signals)

    previous_hook = _installed.get("previous_hook", sys.excepthook)

    def excepthook(kind, value, tb):
        if issubclass(kind, SystemExit) or comm.size <= 1:  # pragma: no cover - SystemExit never reaches it
            return previous_hook(kind, value, tb)
        _abort_for_exception(comm, value, f"uncaught {kind.__name__}")

    def on_signal(signum, frame=None):
        name = signal.Signals(signum).name
        _abort_job(comm, 128 + signum, f"thermossl.distributed: {_where(comm)} received {name}; "
                                      f"aborting the job (MPI_Abort, exit status {128 + signum})\n")

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # set_wakeup_fd requires a non-blocking descriptor
    for s in signals:
        signal.signal(s, on_signal)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if old_fd not in (-1, _installed.get("write_fd")):
        # Someone else (an asyncio loop) used the wakeup fd: give it back rather than break it.
        signal.set_wakeup_fd(old_fd)
        raise RuntimeError("abort_on_failure: signal.set_wakeup_fd is already in use in this process")
    wanted = {int(s) for s in signals}

    def watch():
        # CPython's C-level handler writes the signal number to the wakeup fd from whichever thread
        # the kernel picked, at once; this thread wakes even while the main thread is blocked in a
        # collective or a kernel, and needs the GIL only for the report (those calls release it).
        while True:
            data = os.read(read_fd, 64)
            if not data:
                return
            for signum in data:
                if signum in wanted:
                    on_signal(signum)

    threading.Thread(target=watch, name="thermossl-abort-on-signal", daemon=True).start()
    sys.excepthook = excepthook
    _installed.update(previous_hook=previous_hook, write_fd=write_fd)
    return comm
