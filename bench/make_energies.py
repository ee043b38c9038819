"""Write the input of bench/sela_scale.py: an N x K float32 energy matrix as a .npy file
(default 1,281,167 x 3000, ImageNet-1k's training set against SeLa's 3000 clusters: 15.4 GB).

The energies are E = -scores with cosine scores of L2-normalised embeddings against K
L2-normalised prototypes in ``--dim`` dimensions (as SwAV/SeLa score them):
x_i = normalise(signal * p_{y_i} + g_i), y_i uniform, g_i ~ N(0, I/dim). The default signal 0
is an untrained model's representation (random embeddings; SeLa's Sinkhorn at T' = 1/25 reaches
1e-6 in ~5 iterations, the regime of the README's run); --signal 1 clusters the embeddings
around the prototypes (a trained-looking representation; Sinkhorn needs many more iterations
at this N/K). The file is written in
blocks of rows through a memory map, so memory stays at a block whatever N is. Deterministic
for a given --seed and --block.

    python bench/make_energies.py /work/data/E_1281167x3000_f32.npy              # the full size
    python bench/make_energies.py E_small.npy --n 65536 --k 3000                 # a quick one
    python bench/sela_scale.py E_small.npy
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="output .npy file")
    parser.add_argument("--n", type=int, default=1_281_167, help="samples (rows), default 1281167")
    parser.add_argument("--k", type=int, default=3000, help="states / prototypes (columns), default 3000")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension, default 128")
    parser.add_argument("--signal", type=float, default=0.0,
                        help="weight of the prototype in each embedding (default 0: random embeddings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=65536, help="rows written per block")
    args = parser.parse_args(argv)
    if min(args.n, args.k, args.dim, args.block) < 1:
        parser.error("--n, --k, --dim and --block must be >= 1")

    rng = np.random.default_rng(args.seed)
    prototypes = rng.normal(size=(args.k, args.dim))
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    prototypes_t = np.ascontiguousarray(prototypes.T.astype(np.float32))
    out = np.lib.format.open_memmap(args.path, mode="w+", dtype=np.float32, shape=(args.n, args.k))
    start = time.perf_counter()
    for i0 in range(0, args.n, args.block):
        i1 = min(args.n, i0 + args.block)
        block_rng = np.random.default_rng([args.seed, i0])
        labels = block_rng.integers(0, args.k, size=i1 - i0)
        x = args.signal * prototypes[labels] + block_rng.normal(scale=1 / np.sqrt(args.dim), size=(i1 - i0, args.dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.matmul(x.astype(np.float32), prototypes_t, out=out[i0:i1])
        np.negative(out[i0:i1], out=out[i0:i1])
    out.flush()
    del out
    size = args.n * args.k * 4
    print(f"wrote {args.path}: {args.n} x {args.k} float32 energies ({size / 1e9:.2f} GB) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
