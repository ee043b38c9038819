"""Seconds per iteration of the sharded Sinkhorn on row shards of a memory-mapped .npy.

    # 1 rank, 2 OpenMP threads
    OMP_NUM_THREADS=2 python bench/distributed_scaling.py E.npy
    # 2 ranks, 1 thread each
    OMP_NUM_THREADS=1 mpiexec -n 2 python bench/distributed_scaling.py E.npy

Each rank maps the file (np.load(mmap_mode='r')) and takes a contiguous block of rows; the
kernels read it in place (no copy). Runs a warm start at mu = 0 for a few fixed iterations
(``--iters``), ``--repeats`` times, and prints on rank 0 the median seconds per iteration (the
run's time divided by iters + 1: the warm start's first f-update is a pass like the others; each
iteration is one fused pass over the local rows and one allreduce of K + 1 doubles) and, for
comparison on one rank, thermossl.sinkhorn (also one fused pass per iteration). ``--rows`` limits the rows used (a prefix of the file). Without mpi4py or
under plain python it runs on one rank.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import thermossl
from thermossl import distributed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="an (N, K) float32/float64 .npy of energies")
    parser.add_argument("--T", type=float, default=0.05)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--single", action="store_true", help="also time thermossl.sinkhorn (1 rank only)")
    args = parser.parse_args()

    comm = distributed.SelfComm()
    if os.environ.get("PMI_RANK") is not None or os.environ.get("OMPI_COMM_WORLD_RANK") is not None:
        comm = distributed.MPIComm()
    E_all = np.load(args.path, mmap_mode="r")
    n = E_all.shape[0] if args.rows is None else min(args.rows, E_all.shape[0])
    k = E_all.shape[1]
    lo = comm.rank * n // comm.size
    hi = (comm.rank + 1) * n // comm.size
    E = E_all[lo:hi]
    mu0 = np.zeros(k)

    def timed(fn):
        comm.allreduce(np.zeros(1), "sum")  # start together
        t0 = time.perf_counter()
        fn()
        comm.allreduce(np.zeros(1), "sum")
        return time.perf_counter() - t0

    # A first pass pages the shard in (from disk or the page cache); not timed.
    distributed.sinkhorn(E, args.T, n_iter=1, mu0=mu0, return_q=False, comm=comm)
    per_iter = []
    for _ in range(args.repeats):
        seconds = timed(lambda: distributed.sinkhorn(E, args.T, n_iter=args.iters, mu0=mu0, return_q=False, comm=comm))
        per_iter.append(seconds / (args.iters + 1))
    single = []
    if args.single and comm.size == 1:
        for _ in range(args.repeats):
            seconds = timed(lambda: thermossl.sinkhorn(E, args.T, n_iter=args.iters, mu0=mu0, return_q=False))
            single.append(seconds / (args.iters + 1))
    if comm.rank == 0:
        threads = os.environ.get("OMP_NUM_THREADS", "default")
        gb = n * k * E.dtype.itemsize / 1e9
        med = statistics.median(per_iter)
        print(f"E {n}x{k} {E.dtype} ({gb:.2f} GB), ranks {comm.size}, OMP_NUM_THREADS {threads}, T {args.T}")
        print(f"distributed.sinkhorn: {args.iters} iterations x {args.repeats} repeats, s/iteration "
              f"{[round(s, 4) for s in per_iter]}, median {med:.4f} "
              f"(1 fused pass: {gb / med:.2f} GB/s of E read)")
        if single:
            ms = statistics.median(single)
            print(f"thermossl.sinkhorn (fused, 1 pass): s/iteration {[round(s, 4) for s in single]}, median {ms:.4f} "
                  f"({gb / ms:.2f} GB/s)")


if __name__ == "__main__":
    main()
