"""The books of a run: ledgers from saved scores, and a compact summary of any ledger.

``load_scores(path)`` reads a run saved as ``.npz`` (the format ``thermossl analyze`` takes);
``analyze(scores, T, reservoir)`` replays it through a :class:`~thermossl.demon.Demon`;
``summarize(ledger, T)`` gives the totals, the largest residuals of the identities and whether
the second-law bound (D2) held in every cycle.

The ``.npz`` format (loaded with ``allow_pickle=False``): the scores (logits, E = -scores) of
the same N samples (for example a fixed probe batch) after each training step, either

- one 3-D array ``scores`` of shape (steps, N, K), or
- 2-D arrays ``scores_0``, ``scores_1``, ... of shape (N, K), ordered by their integer suffix;

and optionally ``weights``, (N,) sample weights summing to 1. Cycle t measures labels on
step t's energies and counts the work of the move to step t + 1's, so S steps give S - 1 cycles.
"""
from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from ._validation import positive_temperature
from .demon import Demon, Ledger
from .reservoirs import Reservoir, dino, sela, swav

__all__ = ["RESERVOIRS", "load_scores", "analyze", "Analysis", "summarize", "format_summary"]

#: Reservoir factories by method name (each takes keyword overrides, e.g. T=...).
RESERVOIRS = {"sela": sela, "swav": swav, "dino": dino}

_SCORES_KEY = re.compile(r"^scores_(\d+)$")


def load_scores(path):
    """(scores (steps, N, K) float, weights (N,) or None) from a run saved as .npz; ValueError
    (naming the file and the array) when the file is not in the documented format."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz archive of scores")
    with archive:
        names = list(archive.files)
        numbered = sorted((int(m.group(1)), name) for name in names if (m := _SCORES_KEY.match(name)))
        try:
            if "scores" in names:
                if numbered:
                    raise ValueError(f"{path}: holds both 'scores' and 'scores_<t>' arrays; keep one form")
                scores = archive["scores"]
                if scores.ndim != 3:
                    raise ValueError(f"{path}: 'scores' must be 3-D (steps, N, K), got shape {scores.shape}")
            elif numbered:
                arrays = [archive[name] for _, name in numbered]
                first = arrays[0]
                for (_, name), arr in zip(numbered, arrays):
                    if arr.ndim != 2 or arr.shape != first.shape:
                        raise ValueError(
                            f"{path}: '{name}' must be 2-D of the shape of '{numbered[0][1]}' {first.shape}, got {arr.shape}"
                        )
                scores = np.stack(arrays)
            else:
                raise ValueError(f"{path}: no 'scores' or 'scores_<t>' arrays (found {names or 'none'})")
            weights = archive["weights"] if "weights" in names else None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: a stored array could not be read ({exc})") from None
    if scores.dtype.kind not in "biuf":
        raise ValueError(f"{path}: scores must be real numbers, got dtype {scores.dtype}")
    if scores.shape[0] < 2:
        raise ValueError(f"{path}: need the scores of at least 2 steps for one cycle, got {scores.shape[0]}")
    if scores.shape[1] < 1 or scores.shape[2] < 2:
        raise ValueError(f"{path}: scores need N >= 1 samples and K >= 2 states, got shape {scores.shape[1:]}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{path}: scores must be finite")
    if weights is not None and weights.shape != (scores.shape[1],):
        raise ValueError(f"{path}: 'weights' must have shape ({scores.shape[1]},), got {weights.shape}")
    return scores, weights


@dataclass(frozen=True)
class Analysis:
    """The ledger of a replayed run and the per-sample work of its last cycle."""

    ledger: Ledger
    work_per_sample: np.ndarray
    work_cycle: int
    T: float


def analyze(scores, T=0.1, reservoir="swav", weights=None) -> Analysis:
    """Replay saved scores (steps, N, K) through a demon at temperature T with a reservoir
    ('sela', 'swav', 'dino' or a :class:`~thermossl.reservoirs.Reservoir`)."""
    T = positive_temperature(T)
    if isinstance(reservoir, str):
        if reservoir not in RESERVOIRS:
            raise ValueError(f"reservoir must be one of {sorted(RESERVOIRS)} or a Reservoir, got {reservoir!r}")
        reservoir = RESERVOIRS[reservoir]()
    elif not isinstance(reservoir, Reservoir):
        raise TypeError(f"reservoir must be a name or a Reservoir, got {type(reservoir).__name__}")
    scores = np.asarray(scores)
    if scores.ndim != 3 or scores.shape[0] < 2:
        raise ValueError(f"scores must have shape (steps >= 2, N, K), got {scores.shape}")
    demon = Demon(T, reservoir, w=weights)
    sample_ids = np.arange(scores.shape[1])
    for t in range(scores.shape[0] - 1):
        demon.measure(-scores[t], index=sample_ids)  # the same N samples every step: labels chain
        demon.feedback(-scores[t + 1])
    return Analysis(demon.ledger, demon.work_per_sample, len(demon.ledger) - 1, T)


def summarize(ledger: Ledger, T) -> dict:
    """Totals, extremes and the laws' residuals of a ledger at representation temperature T.

    ``D2_held`` counts the cycles with W_ext + dF <= T D(q_t||p_t) up to rounding (1e-12 of the
    terms' size); ``max_abs_res_*`` are the largest residuals of the identities in the ledger.
    """
    if len(ledger) == 0:
        raise ValueError("ledger is empty")
    T = positive_temperature(T)
    col = ledger.column
    totals = ledger.totals()
    bound = T * col("D_before") - col("dF")
    slack = bound - col("W_ext")
    scale = np.abs(T * col("D_before")) + np.abs(col("dF")) + np.abs(col("W_ext")) + 1e-300
    held = slack >= -1e-12 * scale
    out = {
        "cycles": totals["cycles"],
        "W": totals["W"],
        "Q": totals["Q"],
        "dU": totals["dU"],
        "W_ext": totals["W_ext"],
        "Sigma": totals["Sigma"],
        "W_ext_bound": float(math.fsum(bound)),
        "D2_held": int(held.sum()),
        "D2_every_cycle": bool(held.all()),
        "L_first": float(col("L_before")[0]),
        "L_last": float(col("L_after")[-1]),
        "I_mean": float(np.mean(col("I"))),
        "charge_err_last": float(col("charge_err")[-1]),
        "eta_median": float(np.nanmedian(col("eta"))) if np.any(np.isfinite(col("eta"))) else math.nan,
    }
    for name in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2"):
        out["max_abs_" + name] = float(np.max(np.abs(col(name))))
    return out


def format_summary(summary: dict) -> str:
    """A few lines for a terminal."""
    s = summary
    lines = [
        f"ledger: {s['cycles']} cycles",
        f"  work W = {s['W']:+.6f}   extracted W_ext = {s['W_ext']:+.6f}   (bound sum T D - dF = {s['W_ext_bound']:+.6f})",
        f"  heat Q = {s['Q']:+.6f}   dU = {s['dU']:+.6f}   entropy production Sigma = {s['Sigma']:.6f}",
        f"  loss {s['L_first']:.4f} -> {s['L_last']:.4f}   mean information I = {s['I_mean']:.4f} nats   "
        f"last charge error {s['charge_err_last']:.2e}",
        f"  D2 (W_ext + dF <= T D) held in {s['D2_held']}/{s['cycles']} cycles   median efficiency eta = {s['eta_median']:.3f}",
        f"  largest residuals: first law {s['max_abs_res_first_law']:.1e}, D1 {s['max_abs_res_D1']:.1e}, "
        f"G1 {s['max_abs_res_G1']:.1e}, G2 {s['max_abs_res_G2']:.1e}, G4 {s['max_abs_res_G4']:.1e}, "
        f"E2 {s['max_abs_res_E2']:.1e}",
    ]
    return "\n".join(lines)
