"""Time SeLa balancing to tolerance: thermossl.sinkhorn(E, 1/25, tol=1e-6) vs POT sinkhorn_log.

thermossl.sinkhorn(E, 1/25, tol=1e-6, max_iter=10000) (q returned; cold start, and warm start
from the converged mu on E + 1e-3 N(0, 1): labels re-balanced at the next epoch) vs POT
``ot.sinkhorn(..., method='sinkhorn_log', stopThr=1e-6, numItermax=10000)`` (float64, cold, and
warm-started from its own converged (log_u, log_v)). The stopping tests differ: thermossl's tol
bounds the L1 charge error sum_y |N_y - c_y|, checked every iteration; POT's stopThr bounds the
L2 norm of the column-marginal violation, checked after iterations 1, 11, 21, ... (L1 >= L2, so
thermossl's stop is at least as strict). POT's iterates equal thermossl's for uniform marginals:
the check is thermossl with n_iter = POT's iteration count against POT's plan. A POT run
predicted to take longer than ``--pot-budget`` seconds is not run to tolerance: POT is run for
``--pot-measure-iters`` iterations (stopThr=0) instead, and the table shows its measured time per
iteration times thermossl's iteration count, labelled as an estimate (a lower bound: POT needs at
least as many iterations). Data: E = -(X @ P.T) as for swav, float64. Bytes: the passes over E
thermossl makes (one column pass for the cold start or one fused pass at the warm-start mu, one
fused pass per iteration, one softmax pass writing q) times the bytes of E, plus q written once.

    python bench/compare_sela.py [--quick] [--sela-sizes 8192x1000] [--slow-repeats 1] [--pot-budget 60]
    python bench/compare.py --kernels sela ...     # the same section, from compare.py
"""
from __future__ import annotations

import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import fmt_ms, fmt_num, fmt_ms_n, fmt_pct, fmt_x, gbs, markdown_table  # noqa: E402

import thermossl  # noqa: E402

KERNEL = "sela"
PEERS = ("torch", "ot")
QUICK_SIZES = "256x300,1024x1000"
FULL_SIZES = "8192x1000,65536x3000"
SELA_T = 1 / 25
SELA_TOL = 1e-6
SELA_MAX_ITER = 10000
SELA_NOISE = 1e-3
# thermossl with n_iter = POT's iteration count vs POT's plan (same iterates), float64.
SELA_AGREEMENT = 1e-9

SELA_SIZES = harness.size_option("--sela-sizes", "sela (float64)", FULL_SIZES, QUICK_SIZES)
POT_MEASURE_ITERS = harness.Option("pot_measure_iters", ("--pot-measure-iters",), dict(
    type=int, default=10, help="sela: POT iterations timed when POT is not run to tolerance (default 10)"))
OPTIONS = [harness.REPEATS, SELA_SIZES, harness.SLOW_REPEATS, harness.POT_BUDGET, POT_MEASURE_ITERS, harness.QUICK]


def pot_iterations(log: dict) -> int:
    """Iterations POT did: its log['niter'] is the 0-based index of the last iteration."""
    return int(log["niter"]) + 1


def first_pot_check_at_or_after(n: int) -> int:
    """POT checks its error after iterations 1, 11, 21, ...: the earliest it can stop at or after n."""
    return 1 if n <= 1 else 10 * ((n - 1 + 9) // 10) + 1


def run_sela(rows: int, cols: int, repeats: int, slow_repeats: int, budget_s: float, measure_iters: int,
             notes: list[str], clock: harness.Clock) -> tuple[list[dict], dict]:
    label = f"sela {rows}x{cols} float64"
    size = f"{rows}x{cols}"
    ot = harness.peer("ot")
    E = harness.cosine_energies(rows, cols, np.float64)
    rng = np.random.default_rng([harness.SEED, rows, cols, 1])
    E2 = rng.standard_normal(E.shape)
    E2 *= SELA_NOISE
    E2 += E  # next epoch's energies: E + 1e-3 N(0, 1)
    t_read = harness.torch_view(E)

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

    ms = harness.interleaved_ms({"cold": cold, "warm": warm, **harness.read_contenders(E, t_read)}, repeats)
    read_ms, torch_read_ms = ms["read"], ms["read_torch"]
    best_read = harness.best_read_gbs(E, read_ms, torch_read_ms)

    pot = {"cold": None, "warm": None}  # per start: dict(ms, n, iters, estimate)
    if ot is not None:
        a = np.full(rows, 1.0 / rows)
        b = np.full(cols, 1.0 / cols)

        def pot_run(M, n_iter, stop, warmstart=None, log=False):
            return ot.sinkhorn(a, b, M, SELA_T, method="sinkhorn_log", numItermax=n_iter, stopThr=stop,
                               warn=False, warmstart=warmstart, log=log)

        # Prediction: one POT iteration (stopThr=0; with its error check and the plan it costs
        # more than an iteration), times the earliest iteration at which POT can stop.
        G1, t1_ms = harness.timed_once(lambda: pot_run(E, 1, 0.0))
        G1 *= rows
        ref1 = thermossl.sinkhorn(E, SELA_T, n_iter=1).q
        harness.check_codes("thermossl n_iter=1 vs POT sinkhorn_log numItermax=1 plan*N", ref1, G1, SELA_AGREEMENT, label)
        del G1, ref1
        predicted_s = t1_ms * 1e-3 * first_pot_check_at_or_after(n_cold)
        if predicted_s <= budget_s:
            # Run to tolerance: this call is the check and the warm-up.
            (G, log), first_ms = harness.timed_once(lambda: pot_run(E, SELA_MAX_ITER, SELA_TOL, log=True))
            it = pot_iterations(log)
            G *= rows
            same = thermossl.sinkhorn(E, SELA_T, n_iter=it).q
            harness.check_codes(f"thermossl n_iter={it} vs POT sinkhorn_log plan*N (same iterates)", same, G,
                                SELA_AGREEMENT, label)
            del same
            notes.append(
                f"{size}: converged plans, thermossl ({n_cold} it, L1 err <= {SELA_TOL:g}) vs POT ({it} it, "
                f"L2 err {float(log['err'][-1]):.2g}): max |diff| / row max of q = "
                f"{harness.row_relative_diff(q_cold, G):.2g}"
            )
            del G
            gc.collect()
            cold_ms, n = harness.slow_median_ms(lambda: pot_run(E, SELA_MAX_ITER, SELA_TOL), slow_repeats,
                                                first_ms, budget_s)
            pot["cold"] = dict(ms=cold_ms, n=n, iters=it, estimate=False)
            warmstart = (log["log_u"], log["log_v"])
            (G, log_w), first_ms = harness.timed_once(
                lambda: pot_run(E2, SELA_MAX_ITER, SELA_TOL, warmstart=warmstart, log=True))
            it_w = pot_iterations(log_w)
            G *= rows
            notes.append(
                f"{size} warm: converged plans, thermossl ({n_warm} it) vs POT ({it_w} it, L2 err "
                f"{float(log_w['err'][-1]):.2g}): max |diff| / row max of q = {harness.row_relative_diff(q_warm, G):.2g}"
            )
            del G
            gc.collect()
            warm_ms, n = harness.slow_median_ms(lambda: pot_run(E2, SELA_MAX_ITER, SELA_TOL, warmstart=warmstart),
                                                slow_repeats, first_ms, budget_s)
            pot["warm"] = dict(ms=warm_ms, n=n, iters=it_w, estimate=False)
            del log, log_w, warmstart
        else:
            # Too slow to run to tolerance: time a fixed number of iterations, once.
            G, t_ms = harness.timed_once(lambda: pot_run(E, measure_iters, 0.0))
            G *= rows
            same = thermossl.sinkhorn(E, SELA_T, n_iter=measure_iters).q
            harness.check_codes(f"thermossl n_iter={measure_iters} vs POT sinkhorn_log numItermax={measure_iters} plan*N",
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
            "thermossl GB/s": fmt_num(th_gbs, 2),
            "% of read bw": fmt_pct(th_gbs, best_read),
            "thermossl cycles/elem/pass": harness.fmt_cycles(ms[start], clock, rows, cols, passes),
        })
    yard = harness.read_row(E, read_ms, torch_read_ms)
    del t_read, E, E2
    gc.collect()
    return table, yard


def section(opts) -> None:
    clock = harness.section_header(
        f"## SeLa balancing to tolerance: thermossl.sinkhorn(E, 1/25, tol={SELA_TOL:g}) vs POT sinkhorn_log\n", PEERS)
    print(f"- {harness.pot_text()}: ot.sinkhorn(a, b, E, 1/25, method='sinkhorn_log', stopThr={SELA_TOL:g}, "
          f"numItermax={SELA_MAX_ITER}); warm: warmstart=(log_u, log_v) of its converged run on E")
    print(f"- {harness.COSINE_DATA_TEXT}; float64; warm start: E + {SELA_NOISE:g} N(0,1) from the converged mu "
          "(thermossl) or (log_u, log_v) (POT) of E")
    print(f"- {harness.slow_peer_text(opts.repeats, opts.slow_repeats, opts.pot_budget)}")
    print("- stopping: thermossl tol on the L1 charge error sum_y |N_y - c_y|, every iteration; POT stopThr on the "
          "L2 norm of the column-marginal violation, after iterations 1, 11, 21, ... (POT it = log['niter'] + 1, "
          "iterations done); L1 >= L2, so thermossl's stop is at least as strict")
    print(f"- checked first: thermossl with n_iter = POT's iteration count vs POT's plan * N (the same iterates), "
          f"max |diff| / row max <= {SELA_AGREEMENT:g}")
    print(f"- where POT is predicted to need more than --pot-budget {opts.pot_budget:g} s per run (1-iteration call "
          f"time x the first iteration it can stop at): not run to tolerance; timed over --pot-measure-iters "
          f"{opts.pot_measure_iters} iterations instead, ESTIMATE cells (see the notes)")
    print("- thermossl GB/s: bytes = (1 + it + 1) passes over E (column pass or fused pass at mu0, one fused "
          "pass per iteration, softmax pass writing q) + q written; % of read bw: over the best read yardstick on E; "
          "cycles/elem/pass: over the same 1 + it + 1 passes\n")
    sys.stdout.flush()
    results, reads, notes = [], [], []
    for rows, cols in opts.sela_sizes:
        table, yard = run_sela(rows, cols, opts.repeats, opts.slow_repeats, opts.pot_budget, opts.pot_measure_iters,
                               notes, clock)
        results.extend(table)
        reads.append(yard)
    print(markdown_table(results))
    print("\nRead-bandwidth yardstick on E (one read of E, one write of the row sums):\n")
    print(markdown_table(reads))
    if notes:
        print("\nNotes:\n")
        print("\n".join(f"- {n}" for n in notes))
    sys.stdout.flush()


def main(argv=None) -> int:
    return harness.family_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
