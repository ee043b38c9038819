"""DINO on the scikit-learn digits with thermossl.torch, keeping the learning demon's books.

    python examples/torch_dino.py [--epochs 40] [--out DIR]

A student encoder and head (examples/_digits.py) and a teacher, the exponential moving average of
the student (momentum 0.99), score two augmented views of each digit; thermossl.torch.DINOLoss
centres and sharpens the teacher's output (teacher temperature warmed up from 0.04 to 0.06,
center momentum 0.9) and the student predicts it across views at temperature 0.1. The
LedgerRecorder, passed to the loss, measures on the teacher's labels of view a (mu = -center);
after the optimiser step the student's scores of view b give the feedback stroke. CPU, well under
a minute.
"""
from __future__ import annotations

import copy
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _digits  # noqa: E402

import thermossl  # noqa: E402
import thermossl.torch as tt  # noqa: E402


class Network(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.encoder = _digits.Encoder()
        self.head = nn.Linear(32, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.encoder(x)) * 4  # a modest scale, as DINO's head gives
        return logits


def main() -> None:
    args = _digits.arguments(__doc__.splitlines()[0], epochs=40)
    limits = _digits.one_thread()  # noqa: F841 - kept alive for the run
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    X, y = _digits.digits()
    student = Network(args.prototypes)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(student.parameters(), lr=2e-3)
    T = 0.1
    recorder = tt.LedgerRecorder(T=T, reservoir=thermossl.reservoirs.dino(), every=args.every)
    loss_fn = tt.DINOLoss(args.prototypes, ncrops=2, warmup_teacher_temp=0.04, teacher_temp=0.06,
                          warmup_teacher_temp_epochs=min(10, args.epochs), nepochs=args.epochs,
                          student_temp=T, center_momentum=0.9, recorder=recorder)
    history: list[float] = []
    start = _digits.clock()
    for epoch in range(args.epochs):
        order = torch.randperm(len(X), generator=generator)
        total = 0.0
        for first in range(0, len(X) - args.batch_size + 1, args.batch_size):
            batch = X[order[first:first + args.batch_size]]
            inputs = _digits.views(batch, generator)
            student_output = student(inputs)
            with torch.no_grad():
                teacher_output = teacher(inputs)
            loss = loss_fn(student_output, teacher_output, epoch)  # measurement on the teacher's view a
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for ps, pt in zip(student.parameters(), teacher.parameters()):
                    pt.mul_(0.99).add_(ps.detach(), alpha=0.01)
                if recorder.recording:  # feedback stroke: the student's view b after the step
                    b = args.batch_size
                    recorder.feedback(student(inputs[b:]), scores_before=student_output[b:].detach())
            total += loss.item()
        history.append(total / (len(X) // args.batch_size))
        print(f"epoch {epoch:3d}  loss {history[-1]:.4f}")
    seconds = _digits.clock() - start
    with torch.no_grad():
        labels = teacher(X).argmax(1).numpy()
    _digits.finish("dino", recorder, T, labels, y, history, seconds, args.out)


if __name__ == "__main__":
    main()
