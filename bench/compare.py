"""Time thermossl's kernels against scipy, torch and POT: logsumexp and Sinkhorn (SwAV, SeLa).

``--kernels`` picks the comparisons (default all), each a section printed by its own script,
which also runs alone with the same options (see its docstring for what is timed and checked):

logsumexp   bench/compare_logsumexp.py   thermossl.logsumexp vs scipy.special.logsumexp vs torch
swav        bench/compare_swav.py        sinkhorn(E, 0.05, n_iter=3) vs torch SwAV and POT
sela        bench/compare_sela.py        sinkhorn(E, 1/25, tol=1e-6), cold and warm vs POT sinkhorn_log
xent        bench/compare_xent.py        cross_entropy(q, E, 0.1, grad=True) vs torch forward + backward
ledger      bench/compare_ledger.py      the fused ledger-row kernel vs one read of E and q
softmax     bench/compare_softmax.py     gibbs (row softmax) and entropy_grad vs one read + one write, torch

The harness they share (options, peers, medians, the machine header, the read yardstick, data,
tables) is bench/harness.py. All libraries run in one process on the same data; each timing is
a median. The read-bandwidth yardsticks are ``a.sum(axis=1)`` in numpy (one thread) and
``t.sum(dim=1)`` in torch (2 threads), the same bytes moved: one read of a, one write of a row
vector. "% of read bw" is thermossl's GB/s over the faster of the two, i.e. over the best read
bandwidth measured in the run. Each section's header names the CPU, the SIMD level thermossl ran
at, the threads, the library versions, the load average, and the core clock measured in the run
from which "cycles/elem" (core cycles per element) is computed; peers that are not installed show
"-" and the header says so.

    python bench/compare.py                       # all kernels, full sizes
    python bench/compare.py --quick               # tiny sizes for every kernel, well under a minute
    python bench/compare.py --kernels swav,sela   # Sinkhorn only
    python bench/compare.py --kernels logsumexp --sizes 4096x3000 --dtypes float32 --repeats 11
    python bench/compare_xent.py --xent-sizes 4096x3000   # one family alone
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_ledger  # noqa: E402
import compare_logsumexp  # noqa: E402
import compare_sela  # noqa: E402
import compare_softmax  # noqa: E402
import compare_swav  # noqa: E402
import compare_xent  # noqa: E402
import harness  # noqa: E402

FAMILIES = {m.KERNEL: m for m in (compare_logsumexp, compare_swav, compare_sela, compare_xent, compare_ledger,
                                   compare_softmax)}
KERNELS = tuple(FAMILIES)


def parse_kernels(text: str) -> list[str]:
    kernels = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kernels if k not in KERNELS]
    if bad or not kernels:
        raise SystemExit(f"--kernels: choose from {','.join(KERNELS)}, got {text!r}")
    return list(dict.fromkeys(kernels))


KERNELS_OPTION = harness.Option("kernels", ("--kernels",), dict(
    default=",".join(KERNELS), help=f"comma list of {','.join(KERNELS)} (default all)"), convert=parse_kernels)
# The order of compare.py's --help; every family's options are among them.
OPTIONS = [KERNELS_OPTION, harness.REPEATS, compare_logsumexp.SIZES, compare_logsumexp.DTYPES,
           compare_swav.SWAV_SIZES, compare_sela.SELA_SIZES, compare_xent.XENT_SIZES, harness.SLOW_REPEATS,
           harness.POT_BUDGET, compare_sela.POT_MEASURE_ITERS, harness.QUICK, harness.DEVICE]
assert all(o in OPTIONS for m in FAMILIES.values() for o in m.OPTIONS)


def main(argv=None) -> int:
    parser = harness.build_parser(__doc__.split("\n\n")[0], OPTIONS)
    args = harness.resolve(parser, parser.parse_args(argv), OPTIONS)
    if args.device == "cuda":
        return harness.run_cuda(args.kernels, args.quick, args.requested_repeats)
    for kernel, family in FAMILIES.items():  # in this order, whatever the order of --kernels
        if kernel in args.kernels:
            family.section(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
