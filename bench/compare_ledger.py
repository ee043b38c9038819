"""Time the fused ledger-row kernel against one streaming read of E and q.

The fused ledger-row kernel (_core.ledger_rows: U[q], U[p], log Z, S[q], S[p], D(q||p), L, label
mass, charges; one read of E and q, no N x K output) vs its yardstick: one streaming read of E
and one of q (a.sum(axis=1), the faster of numpy and torch for each, summed). Target (issue 16,
CPU): kernel time <= 2 x the yardstick (older tables printed round 1's 1.5x). Same matrices as the cross-entropy (``--xent-sizes``), float32 and float64.

    python bench/compare_ledger.py [--quick] [--xent-sizes 65536x3000] [--repeats 7]
    python bench/compare.py --kernels ledger ...     # the same section, from compare.py
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from compare_xent import XENT_SIZES, XENT_T  # noqa: E402
from harness import fmt_ms, fmt_num, fmt_pct, gbs, markdown_table  # noqa: E402

KERNEL = "ledger"
PEERS = ("torch",)  # the read yardstick's second library
FIELDS = ("energy_q", "energy_p", "log_z", "entropy_q", "entropy_p", "relative_entropy", "loss", "label_mass")
OPTIONS = [harness.REPEATS, XENT_SIZES, harness.QUICK]


def run_ledger(rows: int, cols: int, dtype: np.dtype, repeats: int, clock: harness.Clock) -> dict:
    from thermossl import _core

    E = harness.make_data(rows, cols, dtype)
    q = harness.make_labels(rows, cols, dtype)
    out = {f: np.empty(rows) for f in FIELDS}
    charges = np.empty(cols)

    def kernel():
        _core.ledger_rows(q, E, -1.0 / XENT_T, None, None, charges=charges, **out)

    kernel()  # warm-up; agreement with float64 references is the test suite's job (tests/test_thermo.py)
    ms = harness.interleaved_ms({"kernel": kernel,
                                 **harness.read_contenders(E, harness.torch_view(E), "E"),
                                 **harness.read_contenders(q, harness.torch_view(q), "q")}, repeats)
    th_ms = ms["kernel"]
    read_e = min(v for v in (ms["E"], ms["E_torch"]) if v is not None)
    read_q = min(v for v in (ms["q"], ms["q_torch"]) if v is not None)
    read_ms = read_e + read_q
    nbytes = 2 * E.nbytes
    th_gbs = gbs(nbytes, th_ms)
    return {
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "ledger kernel ms": fmt_ms(th_ms),
        "read E ms": fmt_ms(read_e),
        "read q ms": fmt_ms(read_q),
        "kernel / read(E, q)": fmt_num(th_ms / read_ms, 2) + "x",  # never "0.00x" for a tiny, noisy size
        "target": "<= 2x",
        "thermossl GB/s": fmt_num(th_gbs, 2),
        "% of read bw": fmt_pct(th_gbs, gbs(nbytes, read_ms)),
        "thermossl cycles/elem": harness.fmt_cycles(th_ms, clock, rows, cols),
    }


def section(opts) -> None:
    clock = harness.section_header("\n## Ledger-row kernel (one read of E and q) vs one streaming read of E and q\n", PEERS)
    print(f"- median of {opts.repeats} calls, the kernel and the reads once per round in a rotating order; T = {XENT_T}, E = 3 N(0,1), q = softmax(N(0,1)) rows; all 8 row "
          "outputs and the charges requested; read yardstick: the faster of numpy/torch sum(axis=1), for E "
          "and for q, summed\n")
    results = [run_ledger(r, c, dt, opts.repeats, clock)
               for r, c in opts.xent_sizes for dt in (np.dtype(np.float32), np.dtype(np.float64))]
    print(markdown_table(results))
    sys.stdout.flush()


def main(argv=None) -> int:
    return harness.family_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
