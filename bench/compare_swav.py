"""Time SwAV's codes: thermossl.sinkhorn(E, 0.05, n_iter=3) vs torch SwAV and POT.

thermossl.sinkhorn(E, 0.05, n_iter=3) (q returned) vs a PyTorch CPU transcription of SwAV's
published ``distributed_sinkhorn`` (single process, on the scores -E, float32) and POT's
``ot.sinkhorn(..., method='sinkhorn_log' | 'sinkhorn', numItermax=3, stopThr=0)`` in float64
(M = E as float64, uniform marginals; its plan times N is compared with q). The codes are checked
first (max |difference| over the row's largest code <= 1e-5) and the script aborts on a mismatch.
Data: E = -(X @ P.T), the negative cosine similarity of random unit embeddings X (N x 128) and
prototypes P (K x 128), float32. POT is slow at these sizes, so its timings are the median of
``--slow-repeats`` calls, fewer when one call is long (so that its calls of a row fit in
``--pot-budget`` seconds). Bytes: E read once, K = exp(x - row max) written into q, one pass over
K per iteration (the scaled form); "% of read bw" is over the best read yardstick on E. q comes
from thermossl's output pool (reused memory from the second call on); "pool off" times the same
call with the pool off (fresh pages every call), in rounds of its own beside torch.

    python bench/compare_swav.py [--quick] [--swav-sizes 4096x3000] [--repeats 7] [--slow-repeats 1]
    python bench/compare.py --kernels swav ...     # the same section, from compare.py
"""
from __future__ import annotations

import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TORCH_THREADS, fmt_ms, fmt_num, fmt_ms_n, fmt_pct, fmt_x, gbs, markdown_table  # noqa: E402

import thermossl  # noqa: E402

KERNEL = "swav"
PEERS = ("torch", "ot")
QUICK_SIZES = "256x300,1024x3000"
FULL_SIZES = "4096x3000,65536x3000"
SWAV_T = 0.05
SWAV_ITERS = 3
# Codes of thermossl vs torch (float32) and vs POT (float64), max |diff| / row max.
SWAV_AGREEMENT = 1e-5

SWAV_SIZES = harness.size_option("--swav-sizes", "swav (float32)", FULL_SIZES, QUICK_SIZES)
OPTIONS = [harness.REPEATS, SWAV_SIZES, harness.SLOW_REPEATS, harness.POT_BUDGET, harness.QUICK, harness.DEVICE]


def swav_torch(scores, epsilon: float = SWAV_T, iterations: int = SWAV_ITERS):
    """SwAV's published ``distributed_sinkhorn`` (Caron et al. 2020) in PyTorch, one process.

    Q = exp(scores / eps)^T (K x B), normalised to total mass 1; then per iteration the
    prototype rows are normalised to 1/K and the sample columns to 1/B; finally Q * B, transposed
    back to (B, K). `scores` is a torch tensor on any device (bench/compare_cuda.py uses it too).
    """
    import torch

    with torch.no_grad():
        Q = torch.exp(scores / epsilon).t()
        B = Q.shape[1]
        K = Q.shape[0]
        Q /= torch.sum(Q)
        for _ in range(iterations):
            Q /= torch.sum(Q, dim=1, keepdim=True)
            Q /= K
            Q /= torch.sum(Q, dim=0, keepdim=True)
            Q /= B
        Q *= B
        return Q.t()


def run_swav(rows: int, cols: int, repeats: int, slow_repeats: int, budget_s: float, notes: list[str],
             clock: harness.Clock):
    label = f"swav {rows}x{cols} float32"
    ot = harness.peer("ot")
    E = harness.cosine_energies(rows, cols, np.float32)
    scores = -E  # SwAV's input: prototype scores
    ts = harness.torch_view(scores)
    t_read = harness.torch_view(E)

    # Correctness first; these calls are also the warm-up calls.
    res, _ = harness.timed_once(lambda: thermossl.sinkhorn(E, SWAV_T, n_iter=SWAV_ITERS))
    q = res.q
    if res.n_iter != SWAV_ITERS or q.dtype != np.float32:
        raise SystemExit(f"ABORT ({label}): thermossl ran {res.n_iter} iterations, q dtype {q.dtype}")
    diffs = {}
    if ts is not None:
        diffs["torch"] = harness.check_codes("thermossl vs torch SwAV", q, swav_torch(ts).numpy(), SWAV_AGREEMENT, label)
    pot_first = {}
    if ot is not None:
        M = E.astype(np.float64)
        a = np.full(rows, 1.0 / rows)
        b = np.full(cols, 1.0 / cols)
        for method in ("sinkhorn_log", "sinkhorn"):
            G, pot_first[method] = harness.timed_once(
                lambda: ot.sinkhorn(a, b, M, SWAV_T, method=method, numItermax=SWAV_ITERS, stopThr=0, warn=False)
            )
            G *= rows
            diffs[f"POT {method}"] = harness.check_codes(
                f"thermossl vs POT {method} (float64) plan*N", q, G, SWAV_AGREEMENT, label)
            del G
    del res, q
    gc.collect()
    notes.append(f"{rows}x{cols}: max |diff| / row max of q: "
                 + (", ".join(f"vs {k} {v:.2g}" for k, v in diffs.items()) or "no peer installed to compare with"))

    ms = harness.interleaved_ms({
        "thermossl": lambda: thermossl.sinkhorn(E, SWAV_T, n_iter=SWAV_ITERS),
        "torch": (lambda: swav_torch(ts)) if ts is not None else None,
        **harness.read_contenders(E, t_read),
    }, repeats)
    # thermossl with its output pool off (q in fresh pages from numpy, faulted in and zeroed by
    # the OS on the first write, as every call paid before the pool), in rounds of its own beside
    # torch: toggling the pool inside the rounds above would empty it for the pooled calls.
    limit = thermossl.set_output_pool_limit(0)
    try:
        off = harness.interleaved_ms({
            "pool_off": lambda: thermossl.sinkhorn(E, SWAV_T, n_iter=SWAV_ITERS),
            "torch": (lambda: swav_torch(ts)) if ts is not None else None,
        }, repeats)
    finally:
        thermossl.set_output_pool_limit(limit)
    read_ms, torch_read_ms = ms["read"], ms["read_torch"]
    n_pot = {}
    for method in ("sinkhorn_log", "sinkhorn"):
        if ot is None:
            ms[method], n_pot[method] = None, 0
            continue
        ms[method], n_pot[method] = harness.slow_median_ms(
            lambda: ot.sinkhorn(a, b, M, SWAV_T, method=method, numItermax=SWAV_ITERS, stopThr=0, warn=False),
            slow_repeats, pot_first[method], budget_s,
        )
    # The scaled form (float32, fixed iterations, q): E read once and K = exp(x - row max) written
    # into q, one pass over K per iteration (read), the last rewriting it in place as q.
    nbytes = E.nbytes + E.nbytes + SWAV_ITERS * E.nbytes + E.nbytes
    passes = 1 + SWAV_ITERS  # the exp pass over E, one pass over K per iteration
    th_gbs = gbs(nbytes, ms["thermossl"])
    row = {
        "size": f"{rows}x{cols}",
        "dtype": "float32",
        "thermossl ms (3 it)": fmt_ms(ms["thermossl"]),
        "thermossl, pool off ms": fmt_ms(off["pool_off"]),
        f"torch SwAV ({TORCH_THREADS} thr) ms": fmt_ms(ms["torch"]),
        "POT sinkhorn_log f64 ms": fmt_ms_n(ms["sinkhorn_log"], n_pot.get("sinkhorn_log")),
        "POT sinkhorn f64 ms": fmt_ms_n(ms["sinkhorn"], n_pot.get("sinkhorn")),
        "torch / thermossl": fmt_x(ms["torch"], ms["thermossl"]),
        "torch / pool off": fmt_x(off["torch"], off["pool_off"]),
        "POT log / thermossl": fmt_x(ms["sinkhorn_log"], ms["thermossl"]),
        "POT sinkhorn / thermossl": fmt_x(ms["sinkhorn"], ms["thermossl"]),
        "thermossl GB/s": fmt_num(th_gbs, 2),
        "% of read bw": fmt_pct(th_gbs, harness.best_read_gbs(E, read_ms, torch_read_ms)),
        "thermossl cycles/elem/pass": harness.fmt_cycles(ms["thermossl"], clock, rows, cols, passes),
    }
    yard = harness.read_row(E, read_ms, torch_read_ms)
    del ts, t_read, scores, E
    gc.collect()
    return row, yard


def section(opts) -> None:
    clock = harness.section_header(
        f"## SwAV codes: thermossl.sinkhorn(E, {SWAV_T}, n_iter={SWAV_ITERS}) vs torch SwAV distributed_sinkhorn vs POT\n", PEERS)
    print(f"- {harness.pot_text()}; POT runs in float64 on M = E.astype(float64), ot.sinkhorn(a, b, M, {SWAV_T}, "
          f"method=..., numItermax={SWAV_ITERS}, stopThr=0); torch on the float32 scores -E")
    print(f"- {harness.COSINE_DATA_TEXT}; float32")
    print(f"- {harness.slow_peer_text(opts.repeats, opts.slow_repeats, opts.pot_budget)}")
    print("- thermossl's q comes from its output pool (thermossl.set_output_pool_limit): from the second call on, the "
          "memory of the q released by the call before, instead of fresh pages the OS faults in and zeroes; "
          "'pool off': the same call with the pool off (q from numpy's np.empty, fresh pages every call), "
          "timed in rounds of its own beside torch again ('torch / pool off' is over that torch time)")
    print(f"- checked first: thermossl's q vs torch's Q and vs POT's plan * N, max |diff| / row max <= {SWAV_AGREEMENT:g}")
    print(f"- thermossl GB/s: bytes = E read once + K = exp(x - row max) written into q + {SWAV_ITERS} passes "
          "over K (the scaled form; the last rewrites K as q); % of read bw: over the best read yardstick on E below; "
          f"cycles/elem/pass: over {1 + SWAV_ITERS} passes (the exp pass over E, one pass over K per iteration)\n")
    sys.stdout.flush()
    results, reads, notes = [], [], []
    for rows, cols in opts.swav_sizes:
        row, yard = run_swav(rows, cols, opts.repeats, opts.slow_repeats, opts.pot_budget, notes, clock)
        results.append(row)
        reads.append(yard)
    print(markdown_table(results))
    print("\nRead-bandwidth yardstick on E (one read of E, one write of the row sums):\n")
    print(markdown_table(reads))
    print("\nAgreement:\n")
    print("\n".join(f"- {n}" for n in notes))
    print()
    sys.stdout.flush()


def main(argv=None) -> int:
    return harness.family_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
