"""Sinkhorn iterations to tolerance with and without over-relaxation on SeLa's digits labels
(README "Self-label balancing": "683 instead of 1259 iterations to 1e-6").

Trains SeLa on scikit-learn's digits exactly as ``thermossl demo --method sela`` does (K = 10,
seed 0, 100 epochs by default), takes the trained model's energies of the whole data set
(E = -scores of the clean inputs, 1797 x 10) and balances them from a cold start at SeLa's
T' = 1/25 to a charge error of 1e-6, once with plain Sinkhorn (relaxation=1.0) and once with
relaxation="auto"; prints both iteration counts and the largest difference of the two label
states. Needs scikit-learn (the demo extra).

    python bench/relaxation_iterations.py [--epochs 100] [--seed 0] [--prototypes 10] [--tol 1e-6]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import thermossl
from thermossl import ssl


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prototypes", type=int, default=10)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=100000)
    args = parser.parse_args(argv)

    X, _, image_shape = ssl.load_digits()
    start = time.perf_counter()
    result = ssl.train(X, method="sela", n_prototypes=args.prototypes, epochs=args.epochs, seed=args.seed,
                       image_shape=image_shape, progress=False)
    print(f"SeLa on the digits: {args.epochs} epochs, seed {args.seed}, K = {args.prototypes} "
          f"({time.perf_counter() - start:.1f} s of training)")
    E = -result.scores(X)
    T_label = result.T_label
    print(f"energies {E.shape[0]} x {E.shape[1]} float64, T' = {T_label:g}, cold start, tol = {args.tol:g}, "
          f"thermossl {thermossl.__version__} at SIMD level {thermossl.simd_level()}")
    print()
    print("| relaxation | iterations | charge error | converged | ms |")
    print("|---|---|---|---|---|")
    runs = {}
    for relaxation in (1.0, "auto"):
        t0 = time.perf_counter()
        res = thermossl.sinkhorn(E, T_label, tol=args.tol, max_iter=args.max_iter, relaxation=relaxation)
        ms = 1e3 * (time.perf_counter() - t0)
        runs[relaxation] = res
        print(f"| {relaxation!r} | {res.n_iter} | {res.err:.3e} | {res.converged} | {ms:.1f} |")
    plain, auto = runs[1.0], runs["auto"]
    print()
    print(f"auto / plain iterations: {auto.n_iter} / {plain.n_iter} = {auto.n_iter / plain.n_iter:.3f}; "
          f"max |q_auto - q_plain| = {np.max(np.abs(auto.q - plain.q)):.2e}")


if __name__ == "__main__":
    main()
