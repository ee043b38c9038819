"""Time the two row kernels with an N x K output, softmax and the entropy gradient, against one read + one write.

thermossl.gibbs(E, T) (the row softmax of -E/T, _core.row_softmax) and thermossl.entropy_grad(E, T)
(dS/dE, _core.row_entropy_grad) each read E once and write one N x K matrix. Their yardstick is one
streaming read of E plus one write of an N x K matrix: a copy of E into a preallocated matrix
(the faster of numpy ``np.copyto`` and torch ``copy_``, same run), so "% of read+write bw" is the
kernel's bytes (E read, output written) over the copy's rate, with the kernel also writing into a
preallocated matrix (the public calls allocate theirs: page faults on a fresh mapping, timed in
"thermossl ms" against torch, which allocates too). Peers: torch ``softmax(-E/T, 1)``
and, for the entropy gradient, torch autograd of S = -(p log p).sum(1) (backward of S.sum() to E).
Checked first: thermossl and torch agree (max |diff| <= 1e-4 of the largest value). Target
(issue 16): >= 60% of one read + one write at 65536x3000 float32.

    python bench/compare_softmax.py [--quick] [--xent-sizes 65536x3000] [--repeats 7]
    python bench/compare.py --kernels softmax ...     # the same section, from compare.py
"""
from __future__ import annotations

import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from compare_xent import XENT_SIZES, XENT_T  # noqa: E402
from harness import TORCH_THREADS, fmt_ms, fmt_num, fmt_pct, fmt_x, gbs, markdown_table  # noqa: E402

import thermossl  # noqa: E402

KERNEL = "softmax"
PEERS = ("torch",)
OPTIONS = [harness.REPEATS, XENT_SIZES, harness.QUICK]


def copy_contenders(a: np.ndarray) -> dict:
    """One read of a and one write of a matrix of its shape, as harness.interleaved_ms contenders
    (each called once here, which also touches the destination's pages): "copy" numpy np.copyto
    and "copy_torch" torch copy_ (None without torch) into a preallocated matrix."""
    dst = np.empty_like(a)
    np.copyto(dst, a)
    contenders = {"copy": lambda: np.copyto(dst, a), "copy_torch": None}
    torch = harness.peer("torch")
    if torch is not None:
        src_t, dst_t = torch.from_numpy(a), torch.from_numpy(dst)
        dst_t.copy_(src_t)
        contenders["copy_torch"] = lambda: dst_t.copy_(src_t)
    return contenders


def torch_softmax(E_t, T: float):
    import torch

    return torch.softmax(-E_t / T, dim=1)


def torch_entropy_grad(E_t, T: float):
    """dS/dE by torch autograd, S = -(p log p).sum(1) with p = softmax(-E/T)."""
    import torch

    E_t.grad = None
    log_p = torch.log_softmax(-E_t / T, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    entropy.sum().backward()
    return E_t.grad


def agree(label: str, got: np.ndarray, ref: np.ndarray) -> None:
    scale = float(np.max(np.abs(ref)))
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    if not err <= 1e-4 * scale:
        raise SystemExit(f"ABORT ({label}): thermossl vs torch: max |diff| {err:.3g} > 1e-4 x {scale:.3g}")


def run_kernel(name: str, rows: int, cols: int, dtype: np.dtype, repeats: int, clock: harness.Clock) -> dict:
    from thermossl import _core

    torch = harness.peer("torch")
    E = harness.make_data(rows, cols, dtype)
    public = (lambda: thermossl.gibbs(E, XENT_T)) if name == "softmax" else (lambda: thermossl.entropy_grad(E, XENT_T))
    out = np.empty_like(E)  # the kernel alone writes into a preallocated matrix, as the copy does
    if name == "softmax":
        kernel = lambda: _core.row_softmax(E, -1.0 / XENT_T, None, out)  # noqa: E731
    else:
        kernel = lambda: _core.row_entropy_grad(E, -1.0 / XENT_T, None, out)  # noqa: E731
    got = public()  # also the warm-up call
    kernel()
    if not np.array_equal(out, got):
        raise SystemExit(f"ABORT ({name} {rows}x{cols}): the kernel and thermossl's public call differ")
    peer_fn = None
    if torch is not None:
        if name == "softmax":
            E_t = torch.from_numpy(E)
            peer_fn = lambda: torch_softmax(E_t, XENT_T)  # noqa: E731
        else:
            E_t = torch.from_numpy(E).requires_grad_(True)
            peer_fn = lambda: torch_entropy_grad(E_t, XENT_T)  # noqa: E731
        agree(f"{name} {rows}x{cols} {dtype.name}", got, peer_fn().detach().numpy())
    del got
    gc.collect()
    ms = harness.interleaved_ms({"torch": peer_fn, "public": public, "kernel": kernel, **copy_contenders(E)}, repeats)
    torch_ms, public_ms, th_ms = ms["torch"], ms["public"], ms["kernel"]
    copy_ms = min(v for v in (ms["copy"], ms["copy_torch"]) if v is not None)
    nbytes = 2 * E.nbytes  # E read, the N x K output written
    th_gbs = gbs(nbytes, th_ms)
    return {
        "kernel": name,
        "size": f"{rows}x{cols}",
        "dtype": dtype.name,
        "thermossl ms": fmt_ms(public_ms),
        f"torch ({TORCH_THREADS} thr) ms": fmt_ms(torch_ms),
        "torch / thermossl": fmt_x(torch_ms, public_ms),
        "kernel (out given) ms": fmt_ms(th_ms),
        "copy (read+write) ms": fmt_ms(copy_ms),
        "kernel GB/s": fmt_num(th_gbs, 2),
        "% of read+write bw": fmt_pct(th_gbs, gbs(nbytes, copy_ms)),
        "target": ">= 60%",
        "kernel cycles/elem": harness.fmt_cycles(th_ms, clock, rows, cols),
    }


def section(opts) -> None:
    clock = harness.section_header(
        f"\n## Softmax and entropy gradient (N x K out) vs one read + one write: thermossl.gibbs / entropy_grad(E, {XENT_T})\n",
        PEERS)
    print(f"- median of {opts.repeats} calls after a check call, every contender (with the copy) once per round in a "
          "rotating order; E = 3 N(0,1), float32. thermossl ms: the public "
          "call (thermossl.gibbs / entropy_grad: validation and a new output matrix), against torch (which allocates "
          "too): softmax(-E/T, 1), and autograd of S = -(p log p).sum(1) for the gradient")
    print("- kernel (out given): _core.row_softmax / row_entropy_grad into a preallocated matrix; GB/s: E read + "
          "output written; % of read+write bw: over a copy of E into a preallocated matrix (best of numpy copyto / "
          "torch copy_, same run)\n")
    results = []
    for r, c in opts.xent_sizes:
        dtype = np.dtype(np.float32)
        results += [run_kernel(name, r, c, dtype, opts.repeats, clock) for name in ("softmax", "entropy_grad")]
    print(markdown_table(results))
    sys.stdout.flush()


def main(argv=None) -> int:
    return harness.family_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
