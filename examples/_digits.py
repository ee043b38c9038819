"""Shared pieces of the torch examples: the digits, two augmented views, a small encoder, and the
evaluation and ledger output. (A helper of examples/torch_swav.py and examples/torch_dino.py.)"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

if TYPE_CHECKING:
    from thermossl.torch import LedgerRecorder


def arguments(description: str, epochs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prototypes", type=int, default=10, help="K, the number of prototypes / outputs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--every", type=int, default=1, help="record one demon cycle in this many steps")
    parser.add_argument("--out", default=None, help="directory for ledger.csv/json, summary.json and plots")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    return args


def one_thread() -> Any:
    """Run torch and the thermossl kernels on one thread: the matrices here are tiny (256 x 10) and
    waking OpenMP teams costs more than the work, badly so on a shared machine (measured on the
    loaded 2-core development VM: 16 s of training with 2 threads, 0.5 s with one)."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl: set OMP_NUM_THREADS=1 before starting Python
        return None
    import thermossl  # noqa: F401 - load the core's OpenMP runtime so the limit reaches it

    return threadpool_limits(1)


def digits() -> tuple[torch.Tensor, npt.NDArray[Any]]:
    """The scikit-learn digits, standardised: X (1797, 64) float32 tensor, y (1797,) numpy."""
    from thermossl.ssl import load_digits

    X, y, _ = load_digits()
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    return torch.from_numpy(X.astype(np.float32)), y


def views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Two augmented views of a batch (noise and pixel masking), stacked view after view."""
    out = []
    for _ in range(2):
        keep = (torch.rand(x.shape, generator=generator) > 0.2).float()
        out.append(x * keep + 0.3 * torch.randn(x.shape, generator=generator))
    return torch.cat(out)


class Encoder(nn.Module):
    """64 pixels -> 128 ReLU units (the representation) -> a 32-d L2-normalised embedding."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.projection = nn.Linear(128, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.projection(self.backbone(x)), dim=1)


def finish(name: str, recorder: LedgerRecorder, T: float, labels: npt.NDArray[Any], y: npt.NDArray[Any],
           history: list[float], seconds: float, out_dir: Optional[str]) -> dict[str, Any]:
    """Print the evaluation and the ledger summary; write the ledger and its plots."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    ledger = recorder.ledger
    totals = ledger.totals()
    summary = {
        "method": name,
        "epochs": len(history),
        "final_loss": history[-1],
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "ari": float(adjusted_rand_score(y, labels)),
        "labels_used": int(len(np.unique(labels))),
        "cycles": totals["cycles"],
        "W": totals["W"],
        "Q": totals["Q"],
        "max_abs_res_first_law": float(np.max(np.abs(ledger.column("res_first_law")))),
        "max_abs_res_D1": float(np.max(np.abs(ledger.column("res_D1")))),
        "seconds": seconds,
    }
    print(json.dumps(summary, indent=1))
    out_dir = out_dir or f"thermossl-torch-{name}"
    os.makedirs(out_dir, exist_ok=True)
    ledger.to_csv(os.path.join(out_dir, "ledger.csv"))
    ledger.to_json(os.path.join(out_dir, "ledger.json"))
    with open(os.path.join(out_dir, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    from thermossl.plots import save_plots

    paths = save_plots(ledger, out_dir, T, work_per_sample=recorder.work_per_sample)
    print(f"wrote ledger.csv, ledger.json, summary.json and {len(paths)} plots to {out_dir}/")
    return summary


def clock() -> float:
    return time.perf_counter()
