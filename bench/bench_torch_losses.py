"""Per training step of the SSL losses: thermossl.torch against plain-torch transcriptions of the
published algorithms (tests/torch_references.py), in one process on the same data; and the
LedgerRecorder's cycle against one SwAVLoss step.

    python bench/bench_torch_losses.py [--sizes 4096x3000,256x10] [--repeats 7] [--threads 2]

A step is forward + backward of the loss on 2 crops of B rows each (the output holds 2B x K
scores, float32). SwAV: Sinkhorn codes (3 iterations, epsilon 0.05) of both crops and the swapped
prediction at T = 0.1; DINO: centring + sharpening of the 2 teacher crops and the cross-entropy of
the 2 student crops, with the center update. Recorder: one measure(scores, codes, mu, log Z) +
feedback(scores_after, scores_before) cycle on B x K, with what SwAVLoss(recorder=...) hands over
(the fused ledger passes on the tensors). Medians of
--repeats timed runs after one warm-up; the machine's load average is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from torch_references import DINOReference, swav_loss  # noqa: E402

import thermossl  # noqa: E402
import thermossl.torch as tt  # noqa: E402


def median_ms(fn, repeats):
    """(median wall ms, median CPU ms of this process, all threads) over ``repeats`` runs. On a
    shared machine the CPU time is the steadier figure: it does not count waiting for a core."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096x3000,256x10", help="B x K per crop, comma separated")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (thermossl uses OpenMP's default)")
    parser.add_argument("--recorder-sizes", default="4096x3000", help="sizes for the recorder row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), thermossl {thermossl.__version__} "
          f"at {thermossl.simd_level()}; load average {os.getloadavg()[0]:.1f} at start")
    print()
    print("| loss | B x K per crop | thermossl ms / step | torch reference ms / step | reference / thermossl "
          "| thermossl CPU ms | reference CPU ms | ratio of CPU time | max rel. diff of loss "
          "| max rel. diff of gradient |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    swav_ms = {}
    for B, K in sizes:
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(2 * B, K, generator=g), dim=1).mul_(3).requires_grad_()
        loss = tt.SwAVLoss()

        def ours():
            x.grad = None
            loss(x).backward()

        def reference():
            x.grad = None
            swav_loss(x).backward()

        a = loss(x)
        (ga,) = torch.autograd.grad(a, x)
        b = swav_loss(x)
        (gb,) = torch.autograd.grad(b, x)
        (t_ours, c_ours), (t_ref, c_ref) = median_ms(ours, args.repeats), median_ms(reference, args.repeats)
        swav_ms[(B, K)] = (t_ours, c_ours)
        print(f"| SwAV | {B}x{K} | {t_ours:.2f} | {t_ref:.2f} | {t_ref / t_ours:.2f}x | {c_ours:.2f} | {c_ref:.2f} | "
              f"{c_ref / c_ours:.2f}x | {abs(a.item() / b.item() - 1):.1e} | "
              f"{float((ga - gb).abs().max() / gb.abs().max()):.1e} |")

        s = (torch.randn(2 * B, K, generator=g) * 3).requires_grad_()
        t = torch.randn(2 * B, K, generator=g) * 3
        dino, dino_ref = tt.DINOLoss(K, 2, 0.04, 0.07, 2, 10), DINOReference(K, 2, 0.04, 0.07, 2, 10)

        def ours_dino():
            s.grad = None
            dino(s, t, 5).backward()

        def reference_dino():
            s.grad = None
            dino_ref(s, t, 5).backward()

        a = dino(s, t, 5)
        (ga,) = torch.autograd.grad(a, s)
        b = dino_ref(s, t, 5)
        (gb,) = torch.autograd.grad(b, s)
        (t_ours, c_ours), (t_ref, c_ref) = median_ms(ours_dino, args.repeats), median_ms(reference_dino, args.repeats)
        print(f"| DINO | {B}x{K} | {t_ours:.2f} | {t_ref:.2f} | {t_ref / t_ours:.2f}x | {c_ours:.2f} | {c_ref:.2f} | "
              f"{c_ref / c_ours:.2f}x | {abs(a.item() / b.item() - 1):.1e} | "
              f"{float((ga - gb).abs().max() / gb.abs().max()):.1e} |")

    print()
    print("| B x K | LedgerRecorder cycle ms | SwAVLoss step ms | cycle / step | cycle CPU ms | step CPU ms "
          "| ratio of CPU time | target |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.recorder_sizes.split(","):
        B, K = (int(v) for v in spec.split("x"))
        g = torch.Generator().manual_seed(1)
        x = torch.nn.functional.normalize(torch.randn(2 * B, K, generator=g), dim=1).mul_(3).requires_grad_()
        loss = tt.SwAVLoss(keep_codes=True)
        loss(x)
        codes = loss.last_codes[:B]
        # mu and the codes' log Z (-f/epsilon), as SwAVLoss(recorder=...) hands them over
        res = tt.sinkhorn(x.detach()[:B], 0.05, n_iter=3, energy_sign=-1)
        mu, log_z = res.mu, -res.f.double() / 0.05
        after = x.detach() * 1.01
        recorder = tt.LedgerRecorder(T=0.1, reservoir=thermossl.reservoirs.swav())

        def cycle():
            recorder.measure(x.detach()[:B], codes, mu=mu, log_z_label=log_z)
            recorder.feedback(after[B:], scores_before=x.detach()[B:])

        def step():
            x.grad = None
            loss(x).backward()

        t_cycle, c_cycle = median_ms(cycle, args.repeats)
        t_step, c_step = swav_ms.get((B, K)) or median_ms(step, args.repeats)
        print(f"| {B}x{K} | {t_cycle:.2f} | {t_step:.2f} | {t_cycle / t_step:.2f}x | {c_cycle:.2f} | {c_step:.2f} | "
              f"{c_cycle / c_step:.2f}x | <= 1.5x |")
    print()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
