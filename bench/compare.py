"""Time thermossl's kernels against scipy, torch and POT: logsumexp and Sinkhorn (SwAV, SeLa).

``--kernels`` picks the comparisons (default all three):

logsumexp
    thermossl.logsumexp vs scipy.special.logsumexp vs torch.logsumexp. All libraries run in one
    process on the same arrays (torch reads them through torch.from_numpy, no copy), row
    reductions ``axis=1`` / ``dim=1`` of C-contiguous (rows, cols) matrices of 3 * N(0, 1)
    values. Before timing, the results are checked against scipy's and the script aborts if they
    disagree. Each timing is the median of ``--repeats`` calls after one warm-up call.

swav
    thermossl.sinkhorn(E, 0.05, n_iter=3) (q returned) vs a PyTorch CPU transcription of SwAV's
    published ``distributed_sinkhorn`` (single process, on the scores -E, float32) and POT's
    ``ot.sinkhorn(..., method='sinkhorn_log' | 'sinkhorn', numItermax=3, stopThr=0)`` in
    float64 (M = E as float64, uniform marginals; its plan times N is compared with q). The codes
    are checked first (max |difference| over the row's largest code <= 1e-5) and the script
    aborts on a mismatch.

sela
    thermossl.sinkhorn(E, 1/25, tol=1e-6, max_iter=10000) (q returned; cold start, and warm
    start from the converged mu on E + 1e-3 N(0, 1): labels re-balanced at the next epoch) vs
    POT ``ot.sinkhorn(..., method='sinkhorn_log', stopThr=1e-6, numItermax=10000)`` (float64,
    cold, and warm-started from its own converged (log_u, log_v)). The stopping tests differ:
    thermossl's tol bounds the L1 charge error sum_y |N_y - c_y|, checked every iteration; POT's
    stopThr bounds the L2 norm of the column-marginal violation, checked after iterations 1, 11,
    21, ... (L1 >= L2, so thermossl's stop is at least as strict). POT's iterates equal
    thermossl's for uniform marginals: the check is thermossl with n_iter = POT's iteration
    count against POT's plan. A POT run predicted to take longer than ``--pot-budget`` seconds is
    not run to tolerance: POT is run for ``--pot-measure-iters`` iterations (stopThr=0) instead,
    and the table shows its measured time per iteration times thermossl's iteration count,
    labelled as an estimate (a lower bound: POT needs at least as many iterations).

xent
    thermossl.cross_entropy(q, E, 0.1, grad=True) (per-row loss and dL/dE in one pass) vs torch CPU
    forward + backward of the same loss, L = -(q * log_softmax(-E / T)).sum(1), backward of
    L.sum() to E (leaf tensor from_numpy, grad reset each call). E = 3 * N(0, 1), q = softmax of
    N(0, 1) rows. Checked first: loss and gradient agree (rtol 1e-4 of the largest value).
    Bytes: E and q read, the gradient written (3 N K items).

ledger
    The fused ledger-row kernel (_core.ledger_rows: U[q], U[p], log Z, S[q], S[p], D(q||p), L,
    label mass, charges; one read of E and q, no N x K output) vs its yardstick: one streaming
    read of E and one of q (a.sum(axis=1), the faster of numpy and torch for each, summed).
    Target: kernel time <= 1.5 x the yardstick.

Data for swav / sela: E = -(X @ P.T), the negative cosine similarity of random unit embeddings
X (N x 128) and prototypes P (K x 128), float32 for swav, float64 for sela, the same arrays for
every library. POT is slow at these sizes, so its timings are the median of ``--slow-repeats``
calls, fewer when one call is long (so that its calls of a row fit in ``--pot-budget`` seconds).

The read-bandwidth yardsticks are ``a.sum(axis=1)`` in numpy (one thread) and ``t.sum(dim=1)`` in
torch (2 threads), the same bytes moved: one read of a, one write of a row vector. "% of read bw"
is thermossl's GB/s over the faster of the two, i.e. over the best read bandwidth measured in
the run (for Sinkhorn: on E of the same size and dtype). Sinkhorn's bytes are the passes over E
thermossl makes (one column pass for the cold start or one fused pass at the warm-start mu, one
fused pass per iteration, plus in tolerance mode one softmax pass writing q) times the bytes of
E, plus the bytes of q written once.

    python bench/compare.py                       # all kernels, full sizes
    python bench/compare.py --quick               # tiny sizes for every kernel, well under a minute
    python bench/compare.py --kernels swav,sela   # Sinkhorn only
    python bench/compare.py --kernels logsumexp --sizes 4096x3000 --dtypes float32 --repeats 11
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

try:
    import ot
except ImportError:  # POT is optional
    ot = None

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

KERNELS = ("logsumexp", "swav", "sela", "xent", "ledger")
XENT_QUICK_SIZES = "1024x3000"
XENT_FULL_SIZES = "65536x3000"
XENT_T = 0.1
SWAV_QUICK_SIZES = "256x300,1024x3000"
SWAV_FULL_SIZES = "4096x3000,65536x3000"
SELA_QUICK_SIZES = "256x300,1024x1000"
SELA_FULL_SIZES = "8192x1000,65536x3000"
EMBED_DIM = 128
SWAV_T = 0.05
SWAV_ITERS = 3
SELA_T = 1 / 25
SELA_TOL = 1e-6
SELA_MAX_ITER = 10000
SELA_NOISE = 1e-3
# swav: codes of thermossl vs torch (float32) and vs POT (float64), max |diff| / row max.
SWAV_AGREEMENT = 1e-5
# sela: thermossl with n_iter = POT's iteration count vs POT's plan (same iterates), float64.
SELA_AGREEMENT = 1e-9


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
    }
    ms["read"], ms["torch_read"] = read_yardstick(a, t, repeats)
    nbytes = a.nbytes + rows * dtype.itemsize  # one read of a, one write of the row results
    read_row_ = read_row(a, ms["read"], ms["torch_read"])
    best_read_gbs_ = best_read_gbs(a, ms["read"], ms["torch_read"])
    del t, a
    gc.collect()

    def gbs_(v):
        return None if v is None else nbytes / (v * 1e-3) / 1e9

    row = {
        "kernel": "logsumexp(axis=1)",
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "thermossl ms": fmt_ms(ms["thermossl"]),
        "scipy ms": fmt_ms(ms["scipy"]),
        "torch ms": fmt_ms(ms["torch"]),
        "speedup vs scipy": fmt_x(ms["scipy"], ms["thermossl"]),
        "speedup vs torch": fmt_x(ms["torch"], ms["thermossl"]),
        "thermossl GB/s": f"{gbs_(ms['thermossl']):.2f}",
        "% of read bw": f"{100 * gbs_(ms['thermossl']) / best_read_gbs_:.0f}%",
    }
    return row, read_row_


def read_yardstick(a: np.ndarray, t, repeats: int) -> tuple[float, float | None]:
    """Median ms of the read yardsticks on `a`: numpy a.sum(axis=1) and torch t.sum(dim=1)."""
    a.sum(axis=1)
    if t is not None:
        t.sum(dim=1)
    return (
        median_ms(lambda: a.sum(axis=1), repeats),
        median_ms(lambda: t.sum(dim=1), repeats) if t is not None else None,
    )


def read_row(a: np.ndarray, read_ms: float, torch_read_ms: float | None) -> dict:
    """One row of the yardstick table (bytes: one read of a, one write of its row vector)."""
    rows, cols = a.shape
    nbytes = a.nbytes + rows * a.itemsize
    return {
        "yardstick": "sum(axis=1)",
        "size": f"{rows}x{cols}",
        "dtype": a.dtype.name,
        "numpy ms": fmt_ms(read_ms),
        "numpy GB/s": f"{nbytes / (read_ms * 1e-3) / 1e9:.2f}",
        f"torch ({TORCH_THREADS} thr) ms": fmt_ms(torch_read_ms),
        f"torch ({TORCH_THREADS} thr) GB/s": "-" if torch_read_ms is None else f"{nbytes / (torch_read_ms * 1e-3) / 1e9:.2f}",
    }


def best_read_gbs(a: np.ndarray, read_ms: float, torch_read_ms: float | None) -> float:
    nbytes = a.nbytes + a.shape[0] * a.itemsize
    return nbytes / (min(v for v in (read_ms, torch_read_ms) if v is not None) * 1e-3) / 1e9


# ----------------------------------------------------------------------------- Sinkhorn
def cosine_energies(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """E = -(X @ P.T): X (rows x 128) and P (cols x 128) random, rows L2-normalised, in dtype."""
    rng = np.random.default_rng([SEED, rows, cols])
    x = rng.standard_normal((rows, EMBED_DIM))
    p = rng.standard_normal((cols, EMBED_DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    e = x.astype(dtype) @ p.astype(dtype).T
    np.negative(e, out=e)
    return e


def swav_torch(scores, epsilon: float = SWAV_T, iterations: int = SWAV_ITERS):
    """SwAV's published ``distributed_sinkhorn`` (Caron et al. 2020) in PyTorch, one process.

    Q = exp(scores / eps)^T (K x B), normalised to total mass 1; then per iteration the
    prototype rows are normalised to 1/K and the sample columns to 1/B; finally Q * B, transposed
    back to (B, K).
    """
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


def row_relative_diff(q: np.ndarray, ref: np.ndarray) -> float:
    """max_iy |q_iy - ref_iy| / max_y ref_iy, in float64, a row block at a time (no N x K temporaries
    of float64 beyond one block)."""
    worst = 0.0
    step = max(1, (1 << 22) // max(1, q.shape[1]))
    for i0 in range(0, q.shape[0], step):
        a = np.asarray(q[i0 : i0 + step], dtype=np.float64)
        b = np.asarray(ref[i0 : i0 + step], dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b) / np.max(b, axis=1, keepdims=True))))
    return worst


def check_codes(name: str, got: np.ndarray, ref: np.ndarray, limit: float, label: str) -> float:
    if got.shape != ref.shape:
        raise SystemExit(f"ABORT ({label}): {name}: shape {got.shape} vs {ref.shape}")
    diff = row_relative_diff(got, ref)
    if not diff <= limit:
        raise SystemExit(
            f"ABORT ({label}): {name}: max |diff| / row max = {diff:.3g} > {limit:g}"
        )
    return diff


def timed_once(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, 1e3 * (time.perf_counter() - t0)


def slow_median_ms(fn, repeats: int, first_ms: float, budget_s: float) -> tuple[float, int]:
    """Median ms of a slow peer: `repeats` calls, fewer (at least 1) when the first (check) call
    took `first_ms` and that many would not fit in budget_s."""
    n = max(1, min(repeats, int(budget_s * 1e3 // max(first_ms, 1e-9))))
    return median_ms(fn, n), n


def fmt_ms_n(ms, n):
    return "-" if ms is None else f"{ms:.2f} (n={n})"


def gbs(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def run_swav(rows: int, cols: int, repeats: int, slow_repeats: int, budget_s: float, notes: list[str]):
    label = f"swav {rows}x{cols} float32"
    E = cosine_energies(rows, cols, np.float32)
    scores = -E  # SwAV's input: prototype scores
    ts = torch.from_numpy(scores) if torch is not None else None
    t_read = torch.from_numpy(E) if torch is not None else None

    # Correctness first; these calls are also the warm-up calls.
    res, _ = timed_once(lambda: thermossl.sinkhorn(E, SWAV_T, n_iter=SWAV_ITERS))
    q = res.q
    if res.n_iter != SWAV_ITERS or q.dtype != np.float32:
        raise SystemExit(f"ABORT ({label}): thermossl ran {res.n_iter} iterations, q dtype {q.dtype}")
    diffs = {}
    if ts is not None:
        diffs["torch"] = check_codes("thermossl vs torch SwAV", q, swav_torch(ts).numpy(), SWAV_AGREEMENT, label)
    pot_first = {}
    if ot is not None:
        M = E.astype(np.float64)
        a = np.full(rows, 1.0 / rows)
        b = np.full(cols, 1.0 / cols)
        for method in ("sinkhorn_log", "sinkhorn"):
            G, pot_first[method] = timed_once(
                lambda: ot.sinkhorn(a, b, M, SWAV_T, method=method, numItermax=SWAV_ITERS, stopThr=0, warn=False)
            )
            G *= rows
            diffs[f"POT {method}"] = check_codes(f"thermossl vs POT {method} (float64) plan*N", q, G, SWAV_AGREEMENT, label)
            del G
    del res, q
    gc.collect()
    notes.append(f"{rows}x{cols}: max |diff| / row max of q: " + ", ".join(f"vs {k} {v:.2g}" for k, v in diffs.items()))

    ms = {"thermossl": median_ms(lambda: thermossl.sinkhorn(E, SWAV_T, n_iter=SWAV_ITERS), repeats)}
    ms["torch"] = median_ms(lambda: swav_torch(ts), repeats) if ts is not None else None
    n_pot = {}
    for method in ("sinkhorn_log", "sinkhorn"):
        if ot is None:
            ms[method], n_pot[method] = None, 0
            continue
        ms[method], n_pot[method] = slow_median_ms(
            lambda: ot.sinkhorn(a, b, M, SWAV_T, method=method, numItermax=SWAV_ITERS, stopThr=0, warn=False),
            slow_repeats, pot_first[method], budget_s,
        )
    read_ms, torch_read_ms = read_yardstick(E, t_read, repeats)
    # The scaled form (float32, fixed iterations, q): E read once and K = exp(x - row max) written
    # into q, one pass over K per iteration (read), the last rewriting it in place as q.
    nbytes = E.nbytes + E.nbytes + SWAV_ITERS * E.nbytes + E.nbytes
    th_gbs = gbs(nbytes, ms["thermossl"])
    row = {
        "size": f"{rows}x{cols}",
        "dtype": "float32",
        "thermossl ms (3 it)": fmt_ms(ms["thermossl"]),
        f"torch SwAV ({TORCH_THREADS} thr) ms": fmt_ms(ms["torch"]),
        "POT sinkhorn_log f64 ms": fmt_ms_n(ms["sinkhorn_log"], n_pot.get("sinkhorn_log")),
        "POT sinkhorn f64 ms": fmt_ms_n(ms["sinkhorn"], n_pot.get("sinkhorn")),
        "torch / thermossl": fmt_x(ms["torch"], ms["thermossl"]),
        "POT log / thermossl": fmt_x(ms["sinkhorn_log"], ms["thermossl"]),
        "POT sinkhorn / thermossl": fmt_x(ms["sinkhorn"], ms["thermossl"]),
        "thermossl GB/s": f"{th_gbs:.2f}",
        "% of read bw": f"{100 * th_gbs / best_read_gbs(E, read_ms, torch_read_ms):.0f}%",
    }
    yard = read_row(E, read_ms, torch_read_ms)
    del ts, t_read, scores, E
    gc.collect()
    return row, yard


def pot_iterations(log: dict) -> int:
    """Iterations POT did: its log['niter'] is the 0-based index of the last iteration."""
    return int(log["niter"]) + 1


def first_pot_check_at_or_after(n: int) -> int:
    """POT checks its error after iterations 1, 11, 21, ...: the earliest it can stop at or after n."""
    return 1 if n <= 1 else 10 * ((n - 1 + 9) // 10) + 1


def run_sela(rows: int, cols: int, repeats: int, slow_repeats: int, budget_s: float, measure_iters: int,
             notes: list[str]) -> tuple[list[dict], dict]:
    label = f"sela {rows}x{cols} float64"
    size = f"{rows}x{cols}"
    E = cosine_energies(rows, cols, np.float64)
    rng = np.random.default_rng([SEED, rows, cols, 1])
    E2 = rng.standard_normal(E.shape)
    E2 *= SELA_NOISE
    E2 += E  # next epoch's energies: E + 1e-3 N(0, 1)
    t_read = torch.from_numpy(E) if torch is not None else None

    def cold():
        return thermossl.sinkhorn(E, SELA_T, tol=SELA_TOL, max_iter=SELA_MAX_ITER)

    res = cold()  # also the warm-up call
    if not res.converged:
        raise SystemExit(f"ABORT ({label}): thermossl did not converge in {SELA_MAX_ITER} iterations")
    mu = res.mu.copy()
    n_cold = res.n_iter

    def warm():
        return thermossl.sinkhorn(E2, SELA_T, tol=SELA_TOL, max_iter=SELA_MAX_ITER, mu0=mu)

    res_w = warm()
    if not res_w.converged:
        raise SystemExit(f"ABORT ({label}): warm thermossl did not converge")
    n_warm = res_w.n_iter
    q_cold, q_warm = res.q, res_w.q
    del res, res_w

    ms = {"cold": median_ms(cold, repeats), "warm": median_ms(warm, repeats)}
    read_ms, torch_read_ms = read_yardstick(E, t_read, repeats)
    best_read = best_read_gbs(E, read_ms, torch_read_ms)

    pot = {"cold": None, "warm": None}  # per start: dict(ms, n, iters, estimate)
    if ot is not None:
        a = np.full(rows, 1.0 / rows)
        b = np.full(cols, 1.0 / cols)

        def pot_run(M, n_iter, stop, warmstart=None, log=False):
            return ot.sinkhorn(a, b, M, SELA_T, method="sinkhorn_log", numItermax=n_iter, stopThr=stop,
                               warn=False, warmstart=warmstart, log=log)

        # Prediction: one POT iteration (stopThr=0; with its error check and the plan it costs
        # more than an iteration), times the earliest iteration at which POT can stop.
        G1, t1_ms = timed_once(lambda: pot_run(E, 1, 0.0))
        G1 *= rows
        ref1 = thermossl.sinkhorn(E, SELA_T, n_iter=1).q
        check_codes("thermossl n_iter=1 vs POT sinkhorn_log numItermax=1 plan*N", ref1, G1, SELA_AGREEMENT, label)
        del G1, ref1
        predicted_s = t1_ms * 1e-3 * first_pot_check_at_or_after(n_cold)
        if predicted_s <= budget_s:
            # Run to tolerance: this call is the check and the warm-up.
            (G, log), first_ms = timed_once(lambda: pot_run(E, SELA_MAX_ITER, SELA_TOL, log=True))
            it = pot_iterations(log)
            G *= rows
            same = thermossl.sinkhorn(E, SELA_T, n_iter=it).q
            check_codes(f"thermossl n_iter={it} vs POT sinkhorn_log plan*N (same iterates)", same, G,
                        SELA_AGREEMENT, label)
            del same
            notes.append(
                f"{size}: converged plans, thermossl ({n_cold} it, L1 err <= {SELA_TOL:g}) vs POT ({it} it, "
                f"L2 err {float(log['err'][-1]):.2g}): max |diff| / row max of q = {row_relative_diff(q_cold, G):.2g}"
            )
            del G
            gc.collect()
            cold_ms, n = slow_median_ms(lambda: pot_run(E, SELA_MAX_ITER, SELA_TOL), slow_repeats, first_ms, budget_s)
            pot["cold"] = dict(ms=cold_ms, n=n, iters=it, estimate=False)
            warmstart = (log["log_u"], log["log_v"])
            (G, log_w), first_ms = timed_once(lambda: pot_run(E2, SELA_MAX_ITER, SELA_TOL, warmstart=warmstart, log=True))
            it_w = pot_iterations(log_w)
            G *= rows
            notes.append(
                f"{size} warm: converged plans, thermossl ({n_warm} it) vs POT ({it_w} it, L2 err "
                f"{float(log_w['err'][-1]):.2g}): max |diff| / row max of q = {row_relative_diff(q_warm, G):.2g}"
            )
            del G
            gc.collect()
            warm_ms, n = slow_median_ms(lambda: pot_run(E2, SELA_MAX_ITER, SELA_TOL, warmstart=warmstart),
                                        slow_repeats, first_ms, budget_s)
            pot["warm"] = dict(ms=warm_ms, n=n, iters=it_w, estimate=False)
            del log, log_w, warmstart
        else:
            # Too slow to run to tolerance: time a fixed number of iterations, once.
            G, t_ms = timed_once(lambda: pot_run(E, measure_iters, 0.0))
            G *= rows
            same = thermossl.sinkhorn(E, SELA_T, n_iter=measure_iters).q
            check_codes(f"thermossl n_iter={measure_iters} vs POT sinkhorn_log numItermax={measure_iters} plan*N",
                        same, G, SELA_AGREEMENT, label)
            del G, same
            per_iter_ms = t_ms / measure_iters
            notes.append(
                f"{size}: POT predicted {predicted_s:.3g} s > --pot-budget {budget_s:g} s to tolerance "
                f"(a 1-iteration call took {t1_ms / 1e3:.3g} s; POT stops at iteration "
                f"{first_pot_check_at_or_after(n_cold)} at the earliest): POT s/iter measured over {measure_iters} "
                f"iterations ({per_iter_ms / 1e3:.3g} s/iter, one call); POT time to tol not measured. The POT cells are "
                f"ESTIMATES = s/iter x thermossl's iteration count (a lower bound: POT needs at least as many)."
            )
            pot["cold"] = dict(ms=per_iter_ms * n_cold, n=1, iters=None, estimate=True)
            pot["warm"] = dict(ms=per_iter_ms * n_warm, n=1, iters=None, estimate=True)
    del q_cold, q_warm
    gc.collect()

    table = []
    for start, n_it in (("cold", n_cold), ("warm", n_warm)):
        passes = 1 + n_it + 1  # cold column pass or fused pass at mu0, one per iteration, q pass
        nbytes = passes * E.nbytes + E.nbytes
        th_gbs = gbs(nbytes, ms[start])
        p = pot[start]
        if p is None:
            pot_ms, pot_it = "-", "-"
        elif p["estimate"]:
            pot_ms, pot_it = f"~{p['ms']:.0f} (ESTIMATE)", "not measured"
        else:
            pot_ms, pot_it = fmt_ms_n(p["ms"], p["n"]), str(p["iters"])
        table.append({
            "size": size,
            "dtype": "float64",
            "start": start,
            "thermossl ms": fmt_ms(ms[start]),
            "thermossl it": str(n_it),
            "POT sinkhorn_log ms": pot_ms,
            "POT it": pot_it,
            "POT / thermossl": "-" if p is None else ("~" if p["estimate"] else "") + fmt_x(p["ms"], ms[start]),
            "thermossl GB/s": f"{th_gbs:.2f}",
            "% of read bw": f"{100 * th_gbs / best_read:.0f}%",
        })
    yard = read_row(E, read_ms, torch_read_ms)
    del t_read, E, E2
    gc.collect()
    return table, yard

# ----------------------------------------------------------------------------- cross-entropy, ledger
def make_labels(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """Row-stochastic q: softmax of N(0, 1) rows, in dtype."""
    rng = np.random.default_rng([SEED, rows, cols, 2])
    q = rng.standard_normal((rows, cols))
    q -= q.max(axis=1, keepdims=True)
    np.exp(q, out=q)
    q /= q.sum(axis=1, keepdims=True)
    return q.astype(dtype)


def torch_xent_fwd_bwd(E_t, q_t, T: float):
    """Loss per row and dL/dE by torch autograd: L = -(q * log_softmax(-E/T)).sum(1); backward of L.sum()."""
    E_t.grad = None
    loss = -(q_t * torch.log_softmax(-E_t / T, dim=1)).sum(dim=1)
    loss.sum().backward()
    return loss.detach(), E_t.grad


def read_ms_of(a: np.ndarray, repeats: int) -> float:
    """The faster of numpy a.sum(axis=1) and torch t.sum(dim=1) on a (median ms)."""
    numpy_ms, torch_ms = read_yardstick(a, torch.from_numpy(a) if torch is not None else None, repeats)
    return min(v for v in (numpy_ms, torch_ms) if v is not None)


def run_xent(rows: int, cols: int, dtype: np.dtype, repeats: int) -> dict:
    label = f"xent {rows}x{cols} {dtype.name}"
    E = make_data(rows, cols, dtype)
    q = make_labels(rows, cols, dtype)
    loss, grad = thermossl.cross_entropy(q, E, XENT_T, grad=True)  # also the warm-up call
    torch_ms = None
    if torch is not None:
        E_t = torch.from_numpy(E).requires_grad_(True)
        q_t = torch.from_numpy(q)
        tl, tg = torch_xent_fwd_bwd(E_t, q_t, XENT_T)
        for name, got, ref in (("loss", loss, tl.numpy()), ("gradient", grad, tg.numpy())):
            scale = float(np.max(np.abs(ref)))
            err = float(np.max(np.abs(got.astype(np.float64) - ref)))
            if not err <= 1e-4 * scale:
                raise SystemExit(f"ABORT ({label}): thermossl vs torch {name}: max |diff| {err:.3g} > 1e-4 x {scale:.3g}")
        del tl, tg
        torch_ms = median_ms(lambda: torch_xent_fwd_bwd(E_t, q_t, XENT_T), repeats)
        E_t.grad = None
    del loss, grad
    gc.collect()
    th_ms = median_ms(lambda: thermossl.cross_entropy(q, E, XENT_T, grad=True), repeats)
    read_ms = read_ms_of(E, repeats) + read_ms_of(q, repeats)
    nbytes = 3 * E.nbytes  # E and q read, gradient written
    read_gbs = gbs(2 * E.nbytes, read_ms)
    th_gbs = gbs(nbytes, th_ms)
    return {
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "thermossl ms": fmt_ms(th_ms),
        f"torch fwd+bwd ({TORCH_THREADS} thr) ms": fmt_ms(torch_ms),
        "torch / thermossl": fmt_x(torch_ms, th_ms),
        "read E+q ms": fmt_ms(read_ms),
        "thermossl GB/s": f"{th_gbs:.2f}",
        "% of read bw": f"{100 * th_gbs / read_gbs:.0f}%",
    }


def run_ledger(rows: int, cols: int, dtype: np.dtype, repeats: int) -> dict:
    from thermossl import _core

    E = make_data(rows, cols, dtype)
    q = make_labels(rows, cols, dtype)
    fields = ("energy_q", "energy_p", "log_z", "entropy_q", "entropy_p", "relative_entropy", "loss", "label_mass")
    out = {f: np.empty(rows) for f in fields}
    charges = np.empty(cols)

    def kernel():
        _core.ledger_rows(q, E, -1.0 / XENT_T, None, None, charges=charges, **out)

    kernel()  # warm-up; agreement with float64 references is the test suite's job (tests/test_thermo.py)
    th_ms = median_ms(kernel, repeats)
    read_e, read_q = read_ms_of(E, repeats), read_ms_of(q, repeats)
    read_ms = read_e + read_q
    nbytes = 2 * E.nbytes
    th_gbs = gbs(nbytes, th_ms)
    return {
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "ledger kernel ms": fmt_ms(th_ms),
        "read E ms": fmt_ms(read_e),
        "read q ms": fmt_ms(read_q),
        "kernel / read(E, q)": f"{th_ms / read_ms:.2f}x",
        "target": "<= 1.5x",
        "thermossl GB/s": f"{th_gbs:.2f}",
        "% of read bw": f"{100 * th_gbs / gbs(nbytes, read_ms):.0f}%",
    }


def markdown_table(rows: list[dict]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def parse_kernels(text: str) -> list[str]:
    kernels = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kernels if k not in KERNELS]
    if bad or not kernels:
        raise SystemExit(f"--kernels: choose from {','.join(KERNELS)}, got {text!r}")
    return list(dict.fromkeys(kernels))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=",".join(KERNELS), help=f"comma list of {','.join(KERNELS)} (default all)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (median; default 7)")
    parser.add_argument("--sizes", default=None,
                        help=f"logsumexp: ROWSxCOLS list (default {FULL_SIZES}; {QUICK_SIZES} with --quick)")
    parser.add_argument("--dtypes", default="float32,float64", help="logsumexp: default float32,float64")
    parser.add_argument("--swav-sizes", default=None,
                        help=f"swav (float32): ROWSxCOLS list (default {SWAV_FULL_SIZES}; {SWAV_QUICK_SIZES} with --quick)")
    parser.add_argument("--sela-sizes", default=None,
                        help=f"sela (float64): ROWSxCOLS list (default {SELA_FULL_SIZES}; {SELA_QUICK_SIZES} with --quick)")
    parser.add_argument("--xent-sizes", default=None,
                        help=f"xent and ledger: ROWSxCOLS list (default {XENT_FULL_SIZES}; {XENT_QUICK_SIZES} with --quick)")
    parser.add_argument("--slow-repeats", type=int, default=3,
                        help="timed calls of the slow peers (POT; median; default 3, fewer when a call is long: see --pot-budget)")
    parser.add_argument("--pot-budget", type=float, default=900.0,
                        help="seconds: sela does not run POT to tolerance when one run is predicted to take longer "
                             "(it times --pot-measure-iters iterations instead); also caps the POT calls of one row (default 900)")
    parser.add_argument("--pot-measure-iters", type=int, default=10,
                        help="sela: POT iterations timed when POT is not run to tolerance (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for every kernel and 3 repeats: runs in well under a minute")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: run bench/compare_cuda.py instead (torch CUDA peers, CUDA events)")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import compare_cuda

        return compare_cuda.main((["--quick"] if args.quick else []) + ["--repeats", str(args.repeats)])
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.slow_repeats < 1:
        parser.error("--slow-repeats must be >= 1")
    if args.pot_measure_iters < 1:
        parser.error("--pot-measure-iters must be >= 1")
    if not args.pot_budget > 0:
        parser.error("--pot-budget must be > 0")
    kernels = parse_kernels(args.kernels)
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    swav_sizes = parse_sizes(args.swav_sizes or (SWAV_QUICK_SIZES if args.quick else SWAV_FULL_SIZES))
    sela_sizes = parse_sizes(args.sela_sizes or (SELA_QUICK_SIZES if args.quick else SELA_FULL_SIZES))
    dtypes = parse_dtypes(args.dtypes)
    xent_sizes = parse_sizes(args.xent_sizes or (XENT_QUICK_SIZES if args.quick else XENT_FULL_SIZES))
    repeats = min(args.repeats, 3) if args.quick else args.repeats
    slow_repeats = min(args.slow_repeats, repeats)

    if torch is not None:
        torch.set_num_threads(TORCH_THREADS)

    if "logsumexp" in kernels:
        print("## thermossl.logsumexp vs scipy.special.logsumexp vs torch.logsumexp\n")
        print(machine_report())
        print(f"- median of {repeats} calls after a warm-up call; data 3 * N(0,1), C-contiguous; reduction over axis 1\n")
        sys.stdout.flush()

        results, reads = [], []
        for rows, cols in sizes:
            for dtype in dtypes:
                row, read_row_ = run_config(rows, cols, dtype, repeats)
                results.append(row)
                reads.append(read_row_)
        print(markdown_table(results))
        print("\nRead-bandwidth yardstick (same bytes: one read of the matrix, one write of the row results):\n")
        print(markdown_table(reads))
        print()
        sys.stdout.flush()

    pot_text = f"POT {ot.__version__}" if ot is not None else "POT not installed (its columns show -)"
    data_text = (f"data E = -(X @ P.T), X (N x {EMBED_DIM}) and P (K x {EMBED_DIM}) random, rows L2-normalised "
                 "(negative cosine scores), C-contiguous; uniform marginals")
    slow_text = (f"thermossl and torch: median of {repeats} calls after a check call; POT (slow): median of "
                 f"{slow_repeats} calls after its check call (--slow-repeats), fewer where its calls of a row would "
                 f"exceed --pot-budget {args.pot_budget:g} s; n= in the cells is the number of timed calls")

    if "swav" in kernels:
        print(f"## SwAV codes: thermossl.sinkhorn(E, {SWAV_T}, n_iter={SWAV_ITERS}) vs torch SwAV distributed_sinkhorn vs POT\n")
        print(machine_report())
        print(f"- {pot_text}; POT runs in float64 on M = E.astype(float64), ot.sinkhorn(a, b, M, {SWAV_T}, "
              f"method=..., numItermax={SWAV_ITERS}, stopThr=0); torch on the float32 scores -E")
        print(f"- {data_text}; float32")
        print(f"- {slow_text}")
        print(f"- checked first: thermossl's q vs torch's Q and vs POT's plan * N, max |diff| / row max <= {SWAV_AGREEMENT:g}")
        print(f"- thermossl GB/s: bytes = E read once + K = exp(x - row max) written into q + {SWAV_ITERS} passes "
              "over K (the scaled form; the last rewrites K as q); % of read bw: over the best read yardstick on E below\n")
        sys.stdout.flush()
        results, reads, notes = [], [], []
        for rows, cols in swav_sizes:
            row, yard = run_swav(rows, cols, repeats, slow_repeats, args.pot_budget, notes)
            results.append(row)
            reads.append(yard)
        print(markdown_table(results))
        print("\nRead-bandwidth yardstick on E (one read of E, one write of the row sums):\n")
        print(markdown_table(reads))
        print("\nAgreement:\n")
        print("\n".join(f"- {n}" for n in notes))
        print()
        sys.stdout.flush()

    if "sela" in kernels:
        print(f"## SeLa balancing to tolerance: thermossl.sinkhorn(E, 1/25, tol={SELA_TOL:g}) vs POT sinkhorn_log\n")
        print(machine_report())
        print(f"- {pot_text}: ot.sinkhorn(a, b, E, 1/25, method='sinkhorn_log', stopThr={SELA_TOL:g}, "
              f"numItermax={SELA_MAX_ITER}); warm: warmstart=(log_u, log_v) of its converged run on E")
        print(f"- {data_text}; float64; warm start: E + {SELA_NOISE:g} N(0,1) from the converged mu (thermossl) "
              "or (log_u, log_v) (POT) of E")
        print(f"- {slow_text}")
        print(f"- stopping: thermossl tol on the L1 charge error sum_y |N_y - c_y|, every iteration; POT stopThr on the "
              "L2 norm of the column-marginal violation, after iterations 1, 11, 21, ... (POT it = log['niter'] + 1, "
              "iterations done); L1 >= L2, so thermossl's stop is at least as strict")
        print(f"- checked first: thermossl with n_iter = POT's iteration count vs POT's plan * N (the same iterates), "
              f"max |diff| / row max <= {SELA_AGREEMENT:g}")
        print(f"- where POT is predicted to need more than --pot-budget {args.pot_budget:g} s per run (1-iteration call "
              f"time x the first iteration it can stop at): not run to tolerance; timed over --pot-measure-iters "
              f"{args.pot_measure_iters} iterations instead, ESTIMATE cells (see the notes)")
        print("- thermossl GB/s: bytes = (1 + it + 1) passes over E (column pass or fused pass at mu0, one fused "
              "pass per iteration, softmax pass writing q) + q written; % of read bw: over the best read yardstick on E\n")
        sys.stdout.flush()
        results, reads, notes = [], [], []
        for rows, cols in sela_sizes:
            table, yard = run_sela(rows, cols, repeats, slow_repeats, args.pot_budget, args.pot_measure_iters, notes)
            results.extend(table)
            reads.append(yard)
        print(markdown_table(results))
        print("\nRead-bandwidth yardstick on E (one read of E, one write of the row sums):\n")
        print(markdown_table(reads))
        if notes:
            print("\nNotes:\n")
            print("\n".join(f"- {n}" for n in notes))
        sys.stdout.flush()

    if "xent" in kernels:
        print(f"\n## Cross-entropy + gradient: thermossl.cross_entropy(q, E, {XENT_T}, grad=True) vs torch forward + backward\n")
        print(machine_report())
        print(f"- median of {repeats} calls after a check call; E = 3 N(0,1), q = softmax(N(0,1)) rows, float32; "
              "torch: L = -(q * log_softmax(-E/T)).sum(1), L.sum().backward() to E")
        print("- GB/s: E and q read + gradient written; % of read bw: over one streaming read of E and of q "
              "(best of numpy/torch sum(axis=1), same run)\n")
        print(markdown_table([run_xent(r, c, np.dtype(np.float32), repeats) for r, c in xent_sizes]))
        sys.stdout.flush()

    if "ledger" in kernels:
        print("\n## Ledger-row kernel (one read of E and q) vs one streaming read of E and q\n")
        print(machine_report())
        print(f"- median of {repeats} calls; T = {XENT_T}, E = 3 N(0,1), q = softmax(N(0,1)) rows; all 8 row "
              "outputs and the charges requested; read yardstick: the faster of numpy/torch sum(axis=1), for E "
              "and for q, summed\n")
        results = [run_ledger(r, c, dt, repeats) for r, c in xent_sizes for dt in (np.dtype(np.float32), np.dtype(np.float64))]
        print(markdown_table(results))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
