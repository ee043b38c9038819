"""SeLa balancing at ImageNet scale: thermossl.sinkhorn on an N x K float32 energy matrix read
from a .npy file, memory-mapped (default) or loaded into memory, measuring seconds per
iteration and the peak resident memory against the size of the matrix.

    python bench/sela_scale.py /work/data/E_1281167x3000_f32.npy               # memory-mapped
    python bench/sela_scale.py /work/data/E_1281167x3000_f32.npy --in-memory   # np.load into RAM
    python bench/sela_scale.py E.npy --iters 4 --tol-run 0                      # fewer passes

What is timed (T' = 1/25, uniform w and c, return_q=False: no N x K output):
- ``n_iter=1`` and ``n_iter=1+iters`` (fixed-iteration mode: one column pass for the cold start,
  then one fused pass per iteration); seconds per iteration = the difference / iters, so the
  cold-start column pass cancels.
- optionally (``--tol-run M``) a tolerance-mode run, tol=1e-6, max_iter=M, reporting the
  iterations done and the charge error reached.

The matrix is never copied: np.load(mmap_mode='r') maps the file, thermossl reads it in place
(float32 stays float32; kernels read rows tile by tile). Peak RSS (VmHWM of /proc/self/status,
which counts the file pages the process has mapped and touched) is reported next to the matrix's
size; the issue's target is peak RSS <= 1.15 x the input. The first pass over a memory-mapped
file may read from disk; the page cache decides. Run nothing else memory-hungry at the same time.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

import thermossl

SELA_T = 1 / 25


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def gib(kib: int) -> float:
    return kib * 1024 / 2**30


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help=".npy file of float32 energies (N x K)")
    parser.add_argument("--in-memory", action="store_true", help="np.load the whole matrix instead of mapping it")
    parser.add_argument("--iters", type=int, default=3, help="extra fixed iterations timed (default 3)")
    parser.add_argument("--tol-run", type=int, default=0,
                        help="also run to tol=1e-6 with this max_iter (0: skip; default 0)")
    args = parser.parse_args(argv)

    rss0 = vm_kib("VmRSS")
    t0 = time.perf_counter()
    E = np.load(args.path, mmap_mode=None if args.in_memory else "r")
    load_s = time.perf_counter() - t0
    n, k = E.shape
    size_gib = E.nbytes / 2**30
    print(f"## SeLa at scale: {args.path}")
    print(f"- E: {n} x {k} {E.dtype}, {E.nbytes / 1e9:.2f} GB ({size_gib:.2f} GiB), "
          f"{'loaded into memory' if args.in_memory else 'memory-mapped (np.load mmap_mode=r)'}"
          f"{f' in {load_s:.1f} s' if args.in_memory else ''}; C-contiguous: {E.flags.c_contiguous}")
    print(f"- thermossl {thermossl.__version__}, SIMD level {thermossl.simd_level()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs")
    print(f"- RSS before loading: {gib(rss0):.2f} GiB")

    def run(**kw):
        t = time.perf_counter()
        res = thermossl.sinkhorn(E, SELA_T, return_q=False, **kw)
        return res, time.perf_counter() - t

    r1, t1 = run(n_iter=1)
    print(f"- n_iter=1 (column pass + 1 fused pass): {t1:.2f} s, charge error {r1.err:.3g}")
    rn, tn = run(n_iter=1 + args.iters)
    per_iter = (tn - t1) / args.iters
    print(f"- n_iter={1 + args.iters}: {tn:.2f} s, charge error {rn.err:.3g}")
    print(f"- **seconds per iteration: {per_iter:.2f} s** ((t[{1 + args.iters}] - t[1]) / {args.iters}); "
          f"one pass reads {E.nbytes / 1e9:.2f} GB: {E.nbytes / per_iter / 1e9:.2f} GB/s")
    if args.tol_run > 0:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rt, tt = run(tol=1e-6, max_iter=args.tol_run)
        print(f"- tol=1e-6, max_iter={args.tol_run}: {rt.n_iter} iterations, {tt:.1f} s, "
              f"charge error {rt.err:.3g}, converged={rt.converged}")
    hwm = vm_kib("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"- peak RSS: VmHWM {gib(hwm):.2f} GiB, ru_maxrss {gib(maxrss):.2f} GiB; "
          f"input {size_gib:.2f} GiB; **peak / input = {hwm / (E.nbytes / 1024):.3f}** (target <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
