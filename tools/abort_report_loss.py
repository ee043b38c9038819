"""How often mpiexec loses the report a rank writes just before MPI_Abort.

Runs ``mpiexec -n 2`` N times: rank 1 writes a line through thermossl.distributed's abort path
(``_abort_job``: flush, one write, pause ``grace`` seconds, MPI_Abort) while rank 0 waits in an
allreduce; a run whose output lacks the line lost it. This is the measurement behind
``abort._REPORT_GRACE`` (docs/distributed.md). Needs the [mpi] extra.

    python tools/abort_report_loss.py --runs 150 --grace 0 0.25
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

RANK_PROGRAM = """
import sys
import numpy as np
from thermossl import distributed as dist
from thermossl.distributed.abort import _abort_job
comm = dist.MPIComm()
if comm.rank == 1:
    _abort_job(comm, 143, "REPORT of rank 1\\n", float(sys.argv[1]))
else:
    comm.allreduce(np.zeros(1), "sum")  # never completes: rank 1 aborts the job
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--grace", type=float, nargs="+", default=[0.0, 0.25], help="pauses to compare (s)")
    args = parser.parse_args()
    beside = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(beside) if beside.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found (pip install 'thermossl[mpi]')")
    for grace in args.grace:
        lost = 0
        for _ in range(args.runs):
            proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", RANK_PROGRAM, str(grace)],
                                  capture_output=True, text=True, timeout=120)
            lost += "REPORT of rank 1" not in proc.stdout + proc.stderr
        print(f"grace {grace:g} s: report lost in {lost} of {args.runs} runs", flush=True)


if __name__ == "__main__":
    main()
