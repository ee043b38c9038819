"""Run a program under MPI so that one rank's failure ends the whole job (like ``python -m mpi4py``):

    mpiexec -n 4 python -m thermossl.distributed train.py [args...]
    mpiexec -n 4 python -m thermossl.distributed -m package.module [args...]
    mpiexec -n 4 python -m thermossl.distributed -c "code" [args...]

The program runs as ``__main__`` after :func:`thermossl.distributed.abort_on_failure` (MPI
initialised, ``MPI.COMM_WORLD``): an uncaught exception, a ``sys.exit`` with a nonzero status, or
SIGINT/SIGTERM on any rank prints one report naming the rank and calls ``MPI_Abort``, so mpiexec
ends every rank within seconds instead of leaving them waiting in a collective.
"""
from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage: python -m thermossl.distributed (script.py | -m module | -c command) [args...]"


def _run_program(args) -> None:
    """Run ``args`` as the command line of ``python`` would (script, -m module, -c command)."""
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]  # runpy sets argv[0] to the module's file
        sys.path[0] = os.getcwd()
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        sys.path[0] = ""
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(os.path.realpath(args[0]))
        runpy.run_path(args[0], run_name="__main__")


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or (args[0] in ("-m", "-c") and len(args) < 2):
        print(USAGE + "\n\n" + __doc__.split("\n\n", 2)[2].strip(), file=sys.stderr if not args or args[0] not in ("-h", "--help") else sys.stdout)
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)

    from .abort import _abort_for_exception, _abort_job, _exit_code, abort_on_failure

    comm = abort_on_failure()
    try:
        _run_program(args)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0 or comm.size <= 1:
            raise
        _abort_job(comm, _exit_code(exc), f"thermossl.distributed: rank {comm.rank} of {comm.size}: "
                                          f"exited with status {exc.code!r}; aborting the job (MPI_Abort)\n")
    except BaseException as exc:  # noqa: BLE001 - any uncaught exception ends the job
        if comm.size <= 1:
            raise
        _abort_for_exception(comm, exc, f"uncaught {type(exc).__name__}", (__file__, runpy.__file__))


if __name__ == "__main__":
    main()
