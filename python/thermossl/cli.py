"""Command line: ``thermossl example`` (also ``python -m thermossl``).

The worked example walks one batch of synthetic self-labelling scores through the kernels:
the Gibbs state of the student (T), self-labels balanced by a colder reservoir (T', SwAV's three
Sinkhorn iterations), the free energy, entropies, loss and relative entropy, the identities
G1-G4 and GGE1 of THEORY.md closing to rounding, and one feedback step (an adiabatic stroke)
whose extracted work satisfies D1.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__
from .balancing import sinkhorn
from .gibbs import cross_entropy, gibbs, gibbs_entropy, log_partition
from .special import log_softmax, logsumexp


def _unit_rows(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_example(n: int, k: int, T: float, T_label: float, seed: int, out=sys.stdout) -> dict:
    """Run the worked example; print a report to `out` and return the figures."""
    rng = np.random.default_rng(seed)
    # Scores as in SwAV/DINO: cosine similarity of L2-normalised embeddings and prototypes.
    embeddings = _unit_rows(rng, n, 32)
    prototypes = _unit_rows(rng, k, 32)
    E = -(embeddings @ prototypes.T)  # energies = -scores
    w = np.full(n, 1.0 / n)

    def books(E):
        log_z = log_partition(E, T)
        p = gibbs(E, T)
        return {
            "F": -T * w @ log_z,
            "U_p": w @ np.einsum("iy,iy->i", p, E),
            "S_p": w @ gibbs_entropy(E, T),
            "log_p": log_softmax(-E / T, axis=1),
        }

    # Self-labels from a colder reservoir: SwAV's balancing, the GGE at T' with potentials mu.
    labels = sinkhorn(E, T_label, n_iter=3)
    q = labels.q
    log_q = (labels.f[:, None] + labels.mu[None, :] - E) / T_label
    S_q = -w @ np.einsum("iy,iy->i", q, log_q)
    U_q = w @ np.einsum("iy,iy->i", q, E)
    charges = w @ q

    before = books(E)
    loss, grad = cross_entropy(q, E, T, grad=True)
    L = w @ loss
    D = w @ np.einsum("iy,iy->i", q, log_q - before["log_p"])
    residuals = {
        "G1  F = U[p] - T S[p]": before["F"] - (before["U_p"] - T * before["S_p"]),
        "G2  L = S[q] + D(q||p)": L - (S_q + D),
        "G3  F_T[q] - F = T D": (U_q - T * S_q - before["F"]) - T * D,
        "G4  L = (U[q] - F)/T": L - (U_q - before["F"]) / T,
        "GGE1 Phi_mu[q] = sum w f": (U_q - labels.mu @ charges - T_label * S_q) - w @ labels.f,
    }

    # Feedback: one gradient step on the energies with the labels held fixed (adiabatic stroke).
    step = 0.5 * T
    E_after = E - step * n * (w[:, None] * grad)  # dL/dE_iy = w_i (q - p)/T
    after = books(E_after)
    work = w @ np.einsum("iy,iy->i", q, E_after - E)
    D_after = w @ np.einsum("iy,iy->i", q, log_q - after["log_p"])
    L_after = w @ cross_entropy(q, E_after, T)
    extracted = -work
    residuals["D1  W_ext = T[D - D'] - dF"] = extracted - (T * (D - D_after) - (after["F"] - before["F"]))

    # The same partition functions by scipy, if it is installed, for a speed comparison.
    timings = {}
    x = -E / T
    t0 = time.perf_counter()
    logsumexp(x, axis=1)
    timings["thermossl.logsumexp"] = time.perf_counter() - t0
    try:
        import scipy.special

        t0 = time.perf_counter()
        scipy.special.logsumexp(x, axis=1)
        timings["scipy.special.logsumexp"] = time.perf_counter() - t0
    except ImportError:
        pass

    p = print
    p(f"thermossl {__version__} — worked example: {n} samples x {k} prototypes, T = {T}, T' = {T_label}", file=out)
    p("", file=out)
    p("state of the batch (weights 1/N)", file=out)
    p(f"  free energy        F      = {before['F']: .10f}", file=out)
    p(f"  energy of p        U[p]   = {before['U_p']: .10f}", file=out)
    p(f"  entropy of p       S[p]   = {before['S_p']: .10f}   (max log K = {np.log(k):.4f})", file=out)
    p(f"  energy of labels   U[q]   = {U_q: .10f}", file=out)
    p(f"  entropy of labels  S[q]   = {S_q: .10f}", file=out)
    p(f"  loss               L      = {L: .10f}", file=out)
    p(f"  relative entropy   D(q||p)= {D: .10f}", file=out)
    p(f"  label charges      N_y in [{charges.min():.6f}, {charges.max():.6f}] vs c = 1/K = {1 / k:.6f}; "
      f"error {labels.err:.3e} after {labels.n_iter} Sinkhorn iterations", file=out)
    p("", file=out)
    p(f"feedback step (labels fixed): W = {work:.6e}, W_ext = {extracted:.6e}, dF = {after['F'] - before['F']:.6e}", file=out)
    p(f"  loss {L:.8f} -> {L_after:.8f}; D(q||p) {D:.8f} -> {D_after:.8f}", file=out)
    p("", file=out)
    p("identities (residuals; float64 rounding is ~1e-16 x the terms)", file=out)
    for name, value in residuals.items():
        p(f"  {name:<30s} {value: .3e}", file=out)
    p("", file=out)
    for name, seconds in timings.items():
        p(f"  {name:<26s} {seconds * 1e3:8.3f} ms  (one call, {n}x{k} float64)", file=out)
    return {
        "residuals": residuals,
        "loss": (L, L_after),
        "work": work,
        "D": (D, D_after),
        "F": before["F"],
        "charge_error": labels.err,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="thermossl", description="Thermodynamics of self-supervised learning.")
    parser.add_argument("--version", action="version", version=f"thermossl {__version__}")
    sub = parser.add_subparsers(dest="command")
    ex = sub.add_parser("example", help="worked example through the kernels (default)")
    ex.add_argument("--n", type=int, default=4096, help="samples in the batch (default 4096)")
    ex.add_argument("--k", type=int, default=300, help="prototypes / states (default 300)")
    ex.add_argument("--T", type=float, default=0.1, help="student temperature T (default 0.1)")
    ex.add_argument("--T-label", type=float, default=0.05, help="label reservoir temperature T' (default 0.05, SwAV)")
    ex.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["example", *(argv or [])])
    if args.n < 1 or args.k < 1:
        parser.error("--n and --k must be >= 1")
    if not (args.T > 0 and args.T_label > 0):
        parser.error("--T and --T-label must be > 0")
    run_example(args.n, args.k, args.T, args.T_label, args.seed)
    return 0
