"""Time thermossl.logsumexp against scipy.special.logsumexp and torch.logsumexp.

All libraries run in one process on the same arrays (torch reads them through torch.from_numpy,
no copy), row reductions ``axis=1`` / ``dim=1`` of C-contiguous (rows, cols) matrices of
3 * N(0, 1) values. Before timing, the results are checked against scipy's and the script
aborts if they disagree. Each timing is the median of ``--repeats`` calls after one warm-up call.

The read-bandwidth yardsticks are ``a.sum(axis=1)`` in numpy (one thread) and ``t.sum(dim=1)`` in
torch (2 threads), the same bytes moved: one read of a, one write of a row vector. "% of read bw"
is thermossl's GB/s over the faster of the two, i.e. over the best read bandwidth measured in
the run.

    python bench/compare.py                   # 4096x3000 and 65536x3000, float32 and float64
    python bench/compare.py --quick           # tiny sizes, a few seconds
    python bench/compare.py --sizes 4096x3000 --dtypes float32 --repeats 11
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy
import scipy.special

import thermossl

try:
    import torch
except ImportError:  # torch is optional
    torch = None

TORCH_THREADS = 2
QUICK_SIZES = "256x300,1024x3000"
FULL_SIZES = "4096x3000,65536x3000"
# Agreement with scipy (same dtype): the three implementations sum in different orders and
# precisions (thermossl accumulates in double), so float32 gets a few ulps of the result.
TOLERANCE = {
    np.dtype(np.float32): dict(rtol=2e-6, atol=2e-6),
    np.dtype(np.float64): dict(rtol=1e-13, atol=1e-13),
}
SEED = 20240611


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            rows, cols = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--sizes: expected ROWSxCOLS[,ROWSxCOLS...], got {item!r}") from None
        if rows <= 0 or cols <= 0:
            raise SystemExit(f"--sizes: dimensions must be positive, got {item!r}")
        sizes.append((rows, cols))
    return sizes


def parse_dtypes(text: str) -> list[np.dtype]:
    dtypes = []
    for item in text.split(","):
        dt = np.dtype(item.strip())
        if dt not in TOLERANCE:
            raise SystemExit(f"--dtypes: only float32 and float64 are benchmarked, got {item!r}")
        dtypes.append(dt)
    return dtypes


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in ms over `repeats` calls (after the caller's warm-up call)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return 1e3 * statistics.median(times)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_report() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    lines = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable by this process)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"thermossl {thermossl.__version__}, "
        + (f"torch {torch.__version__} ({TORCH_THREADS} threads)" if torch is not None else "torch not installed"),
    ]
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    if env:
        lines.append("- env: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(lines)


def make_data(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((rows, cols), dtype=dtype)
    a *= 3
    return a


def check_agreement(name: str, got: np.ndarray, ref: np.ndarray, dtype: np.dtype, label: str) -> None:
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise SystemExit(
            f"ABORT ({label}): {name} returned shape {got.shape} dtype {got.dtype}, "
            f"scipy returned shape {ref.shape} dtype {ref.dtype}"
        )
    tol = TOLERANCE[dtype]
    if not np.allclose(got, ref, **tol):
        bad = ~np.isclose(got, ref, **tol)
        i = int(np.flatnonzero(bad)[0])
        err = np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))
        raise SystemExit(
            f"ABORT ({label}): {name} disagrees with scipy.special.logsumexp in {int(bad.sum())} rows "
            f"(first row {i}: {got[i]!r} vs {ref[i]!r}; max abs diff {err:.3g}; tolerance {tol})"
        )


def fmt_ms(v):
    return "-" if v is None else f"{v:.2f}"


def fmt_x(num, den):
    return "-" if num is None or den is None else f"{num / den:.1f}x"


def run_config(rows: int, cols: int, dtype: np.dtype, repeats: int) -> tuple[dict, dict]:
    label = f"{rows}x{cols} {dtype.name}"
    a = make_data(rows, cols, dtype)
    t = torch.from_numpy(a) if torch is not None else None  # shares a's memory

    # Correctness first (these calls are also the warm-up calls).
    ref = scipy.special.logsumexp(a, axis=1)
    check_agreement("thermossl.logsumexp", thermossl.logsumexp(a, axis=1), ref, dtype, label)
    if t is not None:
        check_agreement("torch.logsumexp", torch.logsumexp(t, dim=1).numpy(), ref, dtype, label)
    np.sum(a, axis=1)
    del ref
    gc.collect()

    ms = {
        "thermossl": median_ms(lambda: thermossl.logsumexp(a, axis=1), repeats),
        "scipy": median_ms(lambda: scipy.special.logsumexp(a, axis=1), repeats),
        "torch": median_ms(lambda: torch.logsumexp(t, dim=1), repeats) if t is not None else None,
        "read": median_ms(lambda: a.sum(axis=1), repeats),
        "torch_read": median_ms(lambda: t.sum(dim=1), repeats) if t is not None else None,
    }
    nbytes = a.nbytes + rows * dtype.itemsize  # one read of a, one write of the row results
    del t, a
    gc.collect()

    def gbs(v):
        return None if v is None else nbytes / (v * 1e-3) / 1e9

    best_read = min(v for v in (ms["read"], ms["torch_read"]) if v is not None)

    row = {
        "kernel": "logsumexp(axis=1)",
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "thermossl ms": fmt_ms(ms["thermossl"]),
        "scipy ms": fmt_ms(ms["scipy"]),
        "torch ms": fmt_ms(ms["torch"]),
        "speedup vs scipy": fmt_x(ms["scipy"], ms["thermossl"]),
        "speedup vs torch": fmt_x(ms["torch"], ms["thermossl"]),
        "thermossl GB/s": f"{gbs(ms['thermossl']):.2f}",
        "% of read bw": f"{100 * gbs(ms['thermossl']) / gbs(best_read):.0f}%",
    }
    read_row = {
        "yardstick": "sum(axis=1)",
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "numpy ms": fmt_ms(ms["read"]),
        "numpy GB/s": f"{gbs(ms['read']):.2f}",
        f"torch ({TORCH_THREADS} thr) ms": fmt_ms(ms["torch_read"]),
        f"torch ({TORCH_THREADS} thr) GB/s": "-" if ms["torch_read"] is None else f"{gbs(ms['torch_read']):.2f}",
    }
    return row, read_row


def markdown_table(rows: list[dict]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (median; default 7)")
    parser.add_argument("--sizes", default=None, help=f"ROWSxCOLS list (default {FULL_SIZES}; {QUICK_SIZES} with --quick)")
    parser.add_argument("--dtypes", default="float32,float64", help="default float32,float64")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes ({QUICK_SIZES}) and 3 repeats: runs in seconds")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    dtypes = parse_dtypes(args.dtypes)
    repeats = min(args.repeats, 3) if args.quick else args.repeats

    if torch is not None:
        torch.set_num_threads(TORCH_THREADS)

    print("## thermossl.logsumexp vs scipy.special.logsumexp vs torch.logsumexp\n")
    print(machine_report())
    print(f"- median of {repeats} calls after a warm-up call; data 3 * N(0,1), C-contiguous; reduction over axis 1\n")
    sys.stdout.flush()

    results, reads = [], []
    for rows, cols in sizes:
        for dtype in dtypes:
            row, read_row = run_config(rows, cols, dtype, repeats)
            results.append(row)
            reads.append(read_row)
    print(markdown_table(results))
    print("\nRead-bandwidth yardstick (same bytes: one read of the matrix, one write of the row results):\n")
    print(markdown_table(reads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
