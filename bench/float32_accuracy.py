"""The float32 accuracy table of the README ("Accuracy" and "Kernels"): the worst error of each
float32 kernel against float64 on the same float32 inputs, in units of eps32 = 2^-23, at every
SIMD level this CPU supports.

The inputs are those of tests/test_gibbs.py::test_float32_accuracy_claim: E = N(0, 1) * scale
(seed int(scale)) as float32, 1000 x 3000, scale 1 ... 1e4, T = 1, 0.1, 0.05, each also with
its rows shifted so that log Z lands in [1, 1.15], and labels q = softmax(N(0, 1)) as float32.
Errors are measured as the README's bounds are stated:

    log Z: |err| / max(|log Z|, 1)      (bound 2 eps)
    p:     |err| absolute               (bound 4 eps)
    S:     |err| / max(S, 1)            (bound 8 eps)
    L:     |err| / max(L, 1)            (bound 4 eps)

    python bench/float32_accuracy.py [--n 1000] [--k 3000] [--levels baseline,avx2]
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import scipy.special as sp

import thermossl
from thermossl import _core

EPS32 = float(np.finfo(np.float32).eps)
SCALES = (1.0, 10.0, 1e2, 1e3, 1e4)
TEMPERATURES = (1.0, 0.1, 0.05)
BOUNDS = {"log Z": 2, "p": 4, "S": 8, "L": 4}  # the claims of docs/guide.md and tests/test_gibbs.py


def worst_errors(n, k):
    """{quantity: worst error in eps32} over every scale and temperature, at the current level."""
    worst = dict.fromkeys(BOUNDS, 0.0)
    for scale in SCALES:
        rng = np.random.default_rng(int(scale))
        E0 = rng.normal(size=(n, k)) * scale
        q32 = sp.softmax(rng.normal(size=(n, k)), axis=1).astype(np.float32)
        q = q32.astype(np.float64)
        for T, shifted in itertools.product(TEMPERATURES, (False, True)):
            if shifted:
                # each row shifted so that log Z lands in [1, 1.15]: there max(|log Z|, 1) = 1 and
                # the result's own rounding is half an eps, the hardest place for the bound
                target = np.random.default_rng(int(scale) + 7).uniform(1.0, 1.15, size=n)
                E0_row = E0 + T * (sp.logsumexp(-E0 / T, axis=1) - target)[:, None]
            else:
                E0_row = E0
            E32 = E0_row.astype(np.float32)
            E = E32.astype(np.float64)
            lz = sp.logsumexp(-E / T, axis=1)
            p = sp.softmax(-E / T, axis=1)
            log_p = sp.log_softmax(-E / T, axis=1)
            S = -np.sum(np.where(p > 0, p * log_p, 0.0), axis=1)
            L = -np.sum(q * log_p, axis=1)
            errors = {
                "log Z": np.abs(thermossl.log_partition(E32, T) - lz) / np.maximum(np.abs(lz), 1),
                "p": np.abs(thermossl.gibbs(E32, T) - p),
                "S": np.abs(thermossl.gibbs_entropy(E32, T) - S) / np.maximum(S, 1),
                "L": np.abs(thermossl.cross_entropy(q32, E32, T) - L) / np.maximum(L, 1),
            }
            for name, err in errors.items():
                worst[name] = max(worst[name], float(np.max(err)) / EPS32)
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--k", type=int, default=3000)
    parser.add_argument("--levels", default=",".join(_core.simd_levels()),
                        help="comma-separated SIMD levels (default: every level this CPU supports)")
    args = parser.parse_args(argv)
    levels = [level for level in args.levels.split(",") if level]
    print(f"float32 vs float64 on the same inputs, {args.n} x {args.k}, scale {', '.join(f'{s:g}' for s in SCALES)}, "
          f"T = {', '.join(f'{t:g}' for t in TEMPERATURES)}; worst error in eps32 = 2^-23 "
          f"(thermossl {thermossl.__version__})")
    print()
    print("| quantity | bound (eps) | " + " | ".join(f"measured at {level}" for level in levels) + " |")
    print("|---|---|" + "---|" * len(levels))
    before = _core.simd_level()
    results = {}
    try:
        for level in levels:
            _core.set_simd_level(level)
            results[level] = worst_errors(args.n, args.k)
    finally:
        _core.set_simd_level(before)
    for name, bound in BOUNDS.items():
        print(f"| {name} | {bound} | " + " | ".join(f"{results[level][name]:.2f}" for level in levels) + " |")


if __name__ == "__main__":
    main()
