"""Half-precision student scores in SwAVLoss/DINOLoss: read in place by the kernels (now) against
converting them to float32 first (before: ``.float()`` of the score matrix, the float32 step, the
gradient cast back), in one process on the same data.

    python bench/bench_half_scores.py [--sizes 4096x3000,256x10] [--repeats 7] [--dtype bfloat16]

A step is forward + backward of the loss on 2 crops of B rows each (2B x K scores); DINO's
teacher is in the same dtype. Medians of --repeats timed runs after one warm-up (wall and CPU
time of this process); the results of both routes are checked equal first. The machine's load
average is printed with the table.
"""
from __future__ import annotations

import argparse
import os

import torch

import thermossl
import thermossl.torch as tt
from bench_torch_losses import median_ms  # (wall, CPU) medians, the same timing as the loss table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096x3000,256x10", help="B x K per crop, comma separated")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, thermossl {thermossl.__version__} at {thermossl.simd_level()}, "
          f"{args.dtype} scores; load average {os.getloadavg()[0]:.1f} at start")
    print()
    print("| loss | B x K per crop | in place ms / step | converted first ms / step | converted / in place "
          "| in place CPU ms | converted CPU ms |")
    print("|---|---|---|---|---|---|---|")
    for b, k in (tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")):
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(2 * b, k, generator=g), dim=1).to(dtype).requires_grad_()
        t = torch.randn(2 * b, k, generator=g).to(dtype)
        swav = tt.SwAVLoss()
        dino = tt.DINOLoss(k, 2, 0.04, 0.04, 0, 1)

        def swav_in_place():
            return torch.autograd.grad(swav(x), x)[0]

        def swav_converted():
            x32 = x.detach().float().requires_grad_()
            return torch.autograd.grad(swav(x32), x32)[0].to(dtype)

        def dino_in_place():
            dino.center.zero_()  # every step from the same center (one K-vector)
            return torch.autograd.grad(dino(x, t, 0), x)[0]

        def dino_converted():
            dino.center.zero_()
            x32 = x.detach().float().requires_grad_()
            return torch.autograd.grad(dino(x32, t, 0), x32)[0].to(dtype)

        for name, now, before in (("SwAV", swav_in_place, swav_converted), ("DINO", dino_in_place, dino_converted)):
            # the mean's factor is applied in the scores' dtype on one route and in float32 on the
            # other: equal up to one rounding of the gradient
            torch.testing.assert_close(now().float(), before().float(), rtol=2 ** -7, atol=2 ** -24)
            wall_now, cpu_now = median_ms(now, args.repeats)
            wall_before, cpu_before = median_ms(before, args.repeats)
            print(f"| {name} | {b}x{k} | {wall_now:.2f} | {wall_before:.2f} | {wall_before / wall_now:.2f}x "
                  f"| {cpu_now:.2f} | {cpu_before:.2f} |")


if __name__ == "__main__":
    main()
