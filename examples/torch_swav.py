"""SwAV on the scikit-learn digits with thermossl.torch, keeping the learning demon's books.

    python examples/torch_swav.py [--epochs 40] [--out DIR]

A small encoder (examples/_digits.py) maps two augmented views of each digit to L2-normalised
embeddings; K L2-normalised prototypes score them (cosine similarities); thermossl.torch.SwAVLoss
computes SwAV's swapped-prediction loss (codes from 3 Sinkhorn iterations at epsilon = 0.05, student
temperature 0.1). The LedgerRecorder, passed to the loss, measures on view a's codes in forward;
after the optimiser step the scores of view b give the feedback stroke. CPU, well under a minute.
"""
from __future__ import annotations

import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _digits  # noqa: E402

import thermossl  # noqa: E402
import thermossl.torch as tt  # noqa: E402


def main() -> None:
    args = _digits.arguments(__doc__.splitlines()[0], epochs=40)
    limits = _digits.one_thread()  # noqa: F841 - kept alive for the run
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    X, y = _digits.digits()
    encoder = _digits.Encoder()
    prototypes = nn.Linear(32, args.prototypes, bias=False)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(prototypes.parameters()), lr=2e-3)
    T = 0.1
    recorder = tt.LedgerRecorder(T=T, reservoir=thermossl.reservoirs.swav(), every=args.every)
    loss_fn = tt.SwAVLoss(temperature=T, epsilon=0.05, sinkhorn_iterations=3, recorder=recorder)

    def scores(x: torch.Tensor) -> torch.Tensor:
        embedding: torch.Tensor = encoder(x)  # nn.Module calls are untyped: say what comes back
        return embedding @ nn.functional.normalize(prototypes.weight, dim=1).t()

    history: list[float] = []
    start = _digits.clock()
    for epoch in range(args.epochs):
        order = torch.randperm(len(X), generator=generator)
        total = 0.0
        for first in range(0, len(X) - args.batch_size + 1, args.batch_size):
            batch = X[order[first:first + args.batch_size]]
            inputs = _digits.views(batch, generator)
            output = scores(inputs)               # (2 B, K): view a's rows, then view b's
            loss = loss_fn(output)                # measurement stroke on view a when recording
            optimizer.zero_grad()
            loss.backward()
            if epoch == 0:
                prototypes.weight.grad = None     # SwAV freezes the prototypes at first
            optimizer.step()
            if recorder.recording:                # feedback stroke: view b after the step
                b = args.batch_size
                with torch.no_grad():
                    recorder.feedback(scores(inputs[b:]), scores_before=output[b:].detach())
            total += loss.item()
        history.append(total / (len(X) // args.batch_size))
        print(f"epoch {epoch:3d}  loss {history[-1]:.4f}")
    seconds = _digits.clock() - start
    with torch.no_grad():
        labels = scores(X).argmax(1).numpy()
    _digits.finish("swav", recorder, T, labels, y, history, seconds, args.out)


if __name__ == "__main__":
    main()
