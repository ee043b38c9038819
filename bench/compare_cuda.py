"""CUDA benchmarks of thermossl against PyTorch CUDA, same process, same device arrays.

Rows (issue 7 targets in brackets), each the median of ``--repeats`` calls timed with CUDA
events on the current stream after one warm-up call, results checked against torch first:

    logsumexp   thermossl.logsumexp(E, axis=1) vs torch.logsumexp(E, dim=1)     [>= 75% of read bw]
    swav        thermossl.sinkhorn(E, 0.05, n_iter=3) vs a torch transcription of SwAV's
                distributed_sinkhorn (single process)                          [>= 8x torch]
    xent        thermossl.cross_entropy(q, E, T=0.1, grad=True) vs torch soft-label
                cross-entropy forward + backward (autograd)                   [>= 4x torch]

The read-bandwidth yardstick is ``E.sum(dim=1)`` in torch on the same tensor (one read of E,
one vector written), timed the same way in the same run; "% of read bw" is thermossl's GB/s
(bytes of E read once, plus outputs written) over the yardstick's. Each row is printed as a JSON
line when measured, and all rows as markdown tables (one per kernel) at the end. The SwAV
transcription, the size parsing and the tables are the CPU harness's (bench/harness.py,
bench/compare_swav.py).

    python bench/compare_cuda.py                      # full sizes (needs ~40 GB of device memory)
    python bench/compare_cuda.py --quick              # small sizes
    python bench/compare.py --device cuda [--quick]   # the same, from compare.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from compare_swav import swav_torch  # noqa: E402

import thermossl  # noqa: E402
import thermossl.cuda  # noqa: E402

KERNELS = ("logsumexp", "swav", "xent")
FULL = {"logsumexp": ["65536x3000", "1281167x3000"], "swav": ["1281167x3000"], "xent": ["65536x3000"]}
QUICK = {"logsumexp": ["4096x3000"], "swav": ["16384x3000"], "xent": ["4096x3000"]}


def cuda_time(torch, fn, repeats):
    """Median milliseconds of fn() over `repeats` calls (CUDA events), after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def parse(size):
    (n, k), = harness.parse_sizes(size)
    return n, k


def cosine_energies(torch, n, k, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, 128, device="cuda", generator=g), dim=1)
    P = torch.nn.functional.normalize(torch.randn(k, 128, device="cuda", generator=g), dim=1)
    return -(X @ P.T)


def run(kernels, quick=False, repeats=7, out=None):
    import torch

    if not (torch.cuda.is_available() and thermossl.cuda.is_available()):
        print("compare_cuda: no CUDA device (torch.cuda.is_available()=%s, thermossl.cuda.is_available()=%s)"
              % (torch.cuda.is_available(), thermossl.cuda.is_available()))
        return 2
    sizes = QUICK if quick else FULL
    device = torch.cuda.get_device_name()
    print(f"device: {device}; torch {torch.__version__}; thermossl {thermossl.__version__}; median of {repeats}; "
          f"host CPU {harness.cpu_model()}")
    results = []

    def report(row):
        results.append(row)
        print(json.dumps(row))

    for size in sizes["logsumexp"] if "logsumexp" in kernels else []:
        n, k = parse(size)
        E = torch.randn(n, k, device="cuda") * 3
        ok = torch.allclose(thermossl.logsumexp(E, axis=1), torch.logsumexp(E.double(), dim=1).float(),
                            rtol=1e-5, atol=1e-5)
        bytes_ = E.numel() * 4 + n * 4
        t_read = cuda_time(torch, lambda: E.sum(dim=1), repeats)
        t_ours = cuda_time(torch, lambda: thermossl.logsumexp(E, axis=1), repeats)
        t_torch = cuda_time(torch, lambda: torch.logsumexp(E, dim=1), repeats)
        report({"kernel": "logsumexp", "size": size, "dtype": "float32", "checked": bool(ok),
                "thermossl_ms": t_ours, "torch_ms": t_torch, "read_ms": t_read,
                "thermossl_GBps": bytes_ / t_ours / 1e6, "read_GBps": bytes_ / t_read / 1e6,
                "pct_read_bw": 100 * t_read / t_ours, "target": ">= 75% of read bw",
                "speedup_vs_torch": t_torch / t_ours})
        del E
        torch.cuda.empty_cache()

    for size in sizes["swav"] if "swav" in kernels else []:
        n, k = parse(size)
        E = cosine_energies(torch, n, k)
        res = thermossl.sinkhorn(E, 0.05, n_iter=3)
        diff = (res.q - swav_torch(-E)).abs().max().item()
        t_read = cuda_time(torch, lambda: E.sum(dim=1), repeats)
        t_ours = cuda_time(torch, lambda: thermossl.sinkhorn(E, 0.05, n_iter=3), repeats)
        t_torch = cuda_time(torch, lambda: swav_torch(-E), repeats)
        # Passes over E: cold column pass (2 reads: max, sums) + 3 fused passes; q written once.
        bytes_ = 5 * E.numel() * 4 + E.numel() * 4
        report({"kernel": "swav", "size": size, "dtype": "float32", "max_abs_diff_vs_torch": diff,
                "thermossl_ms": t_ours, "torch_ms": t_torch, "speedup_vs_torch": t_torch / t_ours,
                "target": ">= 8x torch", "thermossl_GBps": bytes_ / t_ours / 1e6,
                "read_GBps": E.numel() * 4 / t_read / 1e6})
        del E, res
        torch.cuda.empty_cache()

    for size in sizes["xent"] if "xent" in kernels else []:
        n, k = parse(size)
        E = torch.randn(n, k, device="cuda") * 3
        q = torch.softmax(torch.randn(n, k, device="cuda") * 3, dim=1)
        T = 0.1

        def torch_fwd_bwd():
            Ev = E.detach().requires_grad_(True)
            loss = -(q * torch.log_softmax(-Ev / T, dim=1)).sum(dim=1)
            loss.sum().backward()
            return loss, Ev.grad

        loss, grad = thermossl.cross_entropy(q, E, T, grad=True)
        ref_loss, ref_grad = torch_fwd_bwd()
        ok = torch.allclose(loss, ref_loss, rtol=1e-4, atol=1e-3) and torch.allclose(grad, ref_grad, rtol=1e-3,
                                                                                     atol=1e-3)
        t_ours = cuda_time(torch, lambda: thermossl.cross_entropy(q, E, T, grad=True), repeats)
        t_torch = cuda_time(torch, torch_fwd_bwd, repeats)
        t_read = cuda_time(torch, lambda: E.sum(dim=1), repeats)
        bytes_ = 3 * E.numel() * 4  # read E and q, write the gradient
        report({"kernel": "cross_entropy+grad", "size": size, "dtype": "float32", "checked": bool(ok),
                "thermossl_ms": t_ours, "torch_fwd_bwd_ms": t_torch, "speedup_vs_torch": t_torch / t_ours,
                "target": ">= 4x torch", "thermossl_GBps": bytes_ / t_ours / 1e6,
                "read_GBps": E.numel() * 4 / t_read / 1e6})
        del E, q
        torch.cuda.empty_cache()

    for kernel in dict.fromkeys(r["kernel"] for r in results):
        print()
        print(harness.markdown_table([{k: f"{v:.4g}" if isinstance(v, float) else v for k, v in r.items()}
                                      for r in results if r["kernel"] == kernel]))
    if out:
        with open(out, "w") as fh:
            json.dump({"device": device, "torch": torch.__version__, "rows": results}, fh, indent=1)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=",".join(KERNELS), help=f"comma list of {','.join(KERNELS)} (default all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    if not kernels or any(k not in KERNELS for k in kernels):
        parser.error(f"--kernels: choose from {','.join(KERNELS)}, got {args.kernels!r}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return run(kernels, args.quick, args.repeats, args.json)


if __name__ == "__main__":
    sys.exit(main())
