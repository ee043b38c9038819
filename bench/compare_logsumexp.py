"""Time thermossl.logsumexp against scipy.special.logsumexp and torch.logsumexp.

All libraries run in one process on the same arrays (torch reads them through torch.from_numpy,
no copy), row reductions ``axis=1`` / ``dim=1`` of C-contiguous (rows, cols) matrices of
3 * N(0, 1) values. Before timing, the results are checked against scipy's (against a float64
numpy reference without scipy) and the script aborts if they disagree. Each timing is the median
of ``--repeats`` calls after one warm-up call. Bytes: one read of the matrix, one write of the
row results; "% of read bw" is over the faster read yardstick (numpy / torch sum(axis=1)) on the
same matrix in the same run.

    python bench/compare_logsumexp.py [--quick] [--sizes 4096x3000] [--dtypes float32] [--repeats 11]
    python bench/compare.py --kernels logsumexp ...     # the same section, from compare.py
"""
from __future__ import annotations

import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import fmt_ms, fmt_num, fmt_pct, fmt_x, gbs, markdown_table  # noqa: E402

import thermossl  # noqa: E402

KERNEL = "logsumexp"
PEERS = ("scipy", "torch")
QUICK_SIZES = "256x300,1024x3000"
FULL_SIZES = "4096x3000,65536x3000"
# Agreement with scipy (same dtype): the three implementations sum in different orders and
# precisions (thermossl accumulates in double), so float32 gets a few ulps of the result.
TOLERANCE = {
    np.dtype(np.float32): dict(rtol=2e-6, atol=2e-6),
    np.dtype(np.float64): dict(rtol=1e-13, atol=1e-13),
}

SIZES = harness.size_option("--sizes", "logsumexp", FULL_SIZES, QUICK_SIZES)
def parse_dtypes(text: str) -> list[np.dtype]:
    dtypes = []
    for item in text.split(","):
        try:
            dt = np.dtype(item.strip())
        except TypeError:
            dt = None
        if dt not in TOLERANCE:
            raise SystemExit(f"--dtypes: only float32 and float64 are benchmarked, got {item!r}")
        dtypes.append(dt)
    return dtypes


DTYPES = harness.Option("dtypes", ("--dtypes",), dict(default="float32,float64", help="logsumexp: default float32,float64"),
                        convert=parse_dtypes)
OPTIONS = [harness.REPEATS, SIZES, DTYPES, harness.QUICK, harness.DEVICE]


def reference(a: np.ndarray) -> tuple[np.ndarray, str]:
    """scipy.special.logsumexp(a, axis=1), or without scipy the float64 max-shifted sum in numpy
    rounded to a's dtype; and the reference's name."""
    special = harness.peer("scipy")
    if special is not None:
        return special.logsumexp(a, axis=1), "scipy.special.logsumexp"
    x = a.astype(np.float64)
    m = x.max(axis=1)
    return (m + np.log(np.exp(x - m[:, None]).sum(axis=1))).astype(a.dtype), "a float64 numpy reference"


def check_agreement(name: str, got: np.ndarray, ref: np.ndarray, ref_name: str, dtype: np.dtype, label: str) -> None:
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise SystemExit(
            f"ABORT ({label}): {name} returned shape {got.shape} dtype {got.dtype}, "
            f"{ref_name} returned shape {ref.shape} dtype {ref.dtype}"
        )
    tol = TOLERANCE[dtype]
    if not np.allclose(got, ref, **tol):
        bad = ~np.isclose(got, ref, **tol)
        i = int(np.flatnonzero(bad)[0])
        err = np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))
        raise SystemExit(
            f"ABORT ({label}): {name} disagrees with {ref_name} in {int(bad.sum())} rows "
            f"(first row {i}: {got[i]!r} vs {ref[i]!r}; max abs diff {err:.3g}; tolerance {tol})"
        )


def run_config(rows: int, cols: int, dtype: np.dtype, repeats: int, clock: harness.Clock) -> tuple[dict, dict]:
    label = f"{rows}x{cols} {dtype.name}"
    torch, special = harness.peer("torch"), harness.peer("scipy")
    a = harness.make_data(rows, cols, dtype)
    t = harness.torch_view(a)  # shares a's memory

    # Correctness first (these calls are also the warm-up calls).
    ref, ref_name = reference(a)
    check_agreement("thermossl.logsumexp", thermossl.logsumexp(a, axis=1), ref, ref_name, dtype, label)
    if t is not None:
        check_agreement("torch.logsumexp", torch.logsumexp(t, dim=1).numpy(), ref, ref_name, dtype, label)
    del ref
    gc.collect()

    ms = harness.interleaved_ms({
        "thermossl": lambda: thermossl.logsumexp(a, axis=1),
        "scipy": (lambda: special.logsumexp(a, axis=1)) if special is not None else None,
        "torch": (lambda: torch.logsumexp(t, dim=1)) if t is not None else None,
        **harness.read_contenders(a, t),
    }, repeats)
    ms["torch_read"] = ms["read_torch"]
    nbytes = a.nbytes + rows * dtype.itemsize  # one read of a, one write of the row results
    read_row = harness.read_row(a, ms["read"], ms["torch_read"])
    best_read = harness.best_read_gbs(a, ms["read"], ms["torch_read"])
    del t, a
    gc.collect()

    th_gbs = gbs(nbytes, ms["thermossl"])
    row = {
        "kernel": "logsumexp(axis=1)",
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "thermossl ms": fmt_ms(ms["thermossl"]),
        "scipy ms": fmt_ms(ms["scipy"]),
        "torch ms": fmt_ms(ms["torch"]),
        "speedup vs scipy": fmt_x(ms["scipy"], ms["thermossl"]),
        "speedup vs torch": fmt_x(ms["torch"], ms["thermossl"]),
        "thermossl GB/s": fmt_num(th_gbs, 2),
        "% of read bw": fmt_pct(th_gbs, best_read),
        "thermossl cycles/elem": harness.fmt_cycles(ms["thermossl"], clock, rows, cols),
    }
    return row, read_row


def section(opts) -> None:
    clock = harness.section_header("## thermossl.logsumexp vs scipy.special.logsumexp vs torch.logsumexp\n", PEERS)
    if harness.peer("scipy") is None:
        print("- scipy not installed: its columns show -; results checked against a float64 numpy reference")
    print(f"- median of {opts.repeats} calls after a warm-up call, every contender once per round in a rotating order; data 3 * N(0,1), C-contiguous; reduction over axis 1\n")
    sys.stdout.flush()

    results, reads = [], []
    for rows, cols in opts.sizes:
        for dtype in opts.dtypes:
            row, read_row = run_config(rows, cols, dtype, opts.repeats, clock)
            results.append(row)
            reads.append(read_row)
    print(markdown_table(results))
    print("\nRead-bandwidth yardstick (same bytes: one read of the matrix, one write of the row results):\n")
    print(markdown_table(reads))
    print()
    sys.stdout.flush()


def main(argv=None) -> int:
    return harness.family_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
