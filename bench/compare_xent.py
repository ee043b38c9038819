"""Time cross-entropy + gradient: thermossl.cross_entropy(q, E, 0.1, grad=True) vs torch forward + backward.

thermossl.cross_entropy(q, E, 0.1, grad=True) (per-row loss and dL/dE in one pass) vs torch CPU
forward + backward of the same loss, L = -(q * log_softmax(-E / T)).sum(1), backward of L.sum()
to E (leaf tensor from_numpy, grad reset each call). E = 3 * N(0, 1), q = softmax of N(0, 1)
rows, float32. Checked first: loss and gradient agree (rtol 1e-4 of the largest value). Bytes:
E and q read, the gradient written (3 N K items); "% of read bw" is over one streaming read of E
and one of q (the faster of numpy / torch sum(axis=1) for each) in the same run.

    python bench/compare_xent.py [--quick] [--xent-sizes 65536x3000] [--repeats 7]
    python bench/compare.py --kernels xent ...     # the same section, from compare.py
"""
from __future__ import annotations

import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TORCH_THREADS, fmt_ms, fmt_num, fmt_pct, fmt_x, gbs, markdown_table  # noqa: E402

import thermossl  # noqa: E402

KERNEL = "xent"
PEERS = ("torch",)
QUICK_SIZES = "1024x3000"
FULL_SIZES = "65536x3000"
XENT_T = 0.1

# Shared with the ledger (bench/compare_ledger.py): the same matrices.
XENT_SIZES = harness.size_option("--xent-sizes", "xent and ledger", FULL_SIZES, QUICK_SIZES)
OPTIONS = [harness.REPEATS, XENT_SIZES, harness.QUICK, harness.DEVICE]


def torch_xent_fwd_bwd(E_t, q_t, T: float):
    """Loss per row and dL/dE by torch autograd: L = -(q * log_softmax(-E/T)).sum(1); backward of L.sum()."""
    import torch

    E_t.grad = None
    loss = -(q_t * torch.log_softmax(-E_t / T, dim=1)).sum(dim=1)
    loss.sum().backward()
    return loss.detach(), E_t.grad


def run_xent(rows: int, cols: int, dtype: np.dtype, repeats: int, clock: harness.Clock) -> dict:
    label = f"xent {rows}x{cols} {dtype.name}"
    torch = harness.peer("torch")
    E = harness.make_data(rows, cols, dtype)
    q = harness.make_labels(rows, cols, dtype)
    loss, grad = thermossl.cross_entropy(q, E, XENT_T, grad=True)  # also the warm-up call
    torch_fn = None
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
        E_t.grad = None
        torch_fn = lambda: torch_xent_fwd_bwd(E_t, q_t, XENT_T)  # noqa: E731
    del loss, grad
    gc.collect()
    ms = harness.interleaved_ms({
        "thermossl": lambda: thermossl.cross_entropy(q, E, XENT_T, grad=True),
        "torch": torch_fn,
        **harness.read_contenders(E, harness.torch_view(E), "E"),
        **harness.read_contenders(q, harness.torch_view(q), "q"),
    }, repeats)
    th_ms, torch_ms = ms["thermossl"], ms["torch"]
    read_ms = sum(min(v for v in (ms[x], ms[f"{x}_torch"]) if v is not None) for x in ("E", "q"))
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
        "thermossl GB/s": fmt_num(th_gbs, 2),
        "% of read bw": fmt_pct(th_gbs, read_gbs),
        "thermossl cycles/elem": harness.fmt_cycles(th_ms, clock, rows, cols),
    }


def section(opts) -> None:
    clock = harness.section_header(
        f"\n## Cross-entropy + gradient: thermossl.cross_entropy(q, E, {XENT_T}, grad=True) vs torch forward + backward\n", PEERS)
    print(f"- median of {opts.repeats} calls after a check call, every contender (with the reads) once per round in a "
          "rotating order; E = 3 N(0,1), q = softmax(N(0,1)) rows, float32; "
          "torch: L = -(q * log_softmax(-E/T)).sum(1), L.sum().backward() to E")
    print("- GB/s: E and q read + gradient written; % of read bw: over one streaming read of E and of q "
          "(best of numpy/torch sum(axis=1), same run)\n")
    print(markdown_table([run_xent(r, c, np.dtype(np.float32), opts.repeats, clock) for r, c in opts.xent_sizes]))
    sys.stdout.flush()


def main(argv=None) -> int:
    return harness.family_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
