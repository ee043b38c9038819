"""State functions of THEORY.md §2–3: energy, free energy, entropies, relative entropy, loss,
charges and information of a label state q against the Gibbs state of energies E at T.

All sums carry sample weights w (w_i > 0, sum 1; default 1/N). The per-row sums come from one
fused C++ kernel (``ledger_rows``: one read of E and q, one exp and one log per element) and this
module only reduces N-vectors. ``State`` computes every quantity of a (E, T, q, w) at once.

Notation (THEORY.md): p = Gibbs(E, T) = softmax(-E/T); log Z_i = LSE_y(-E_iy/T);
U[q] = sum_i w_i sum_y q_iy E_iy; F = -T sum_i w_i log Z_i; S[q] = -sum_i w_i sum_y q_iy log q_iy;
D(q||p) = sum_i w_i sum_y q_iy log(q_iy/p_iy); L = -sum_i w_i sum_y q_iy log p_iy;
N_y = sum_i w_i q_iy; H(N) = -sum_y N_y log N_y; I = H(N) - S[q].
"""
from __future__ import annotations

import numpy as np

from . import _core
from . import cuda as _device
from ._validation import as_real_array, compute_dtype, positive_temperature, probability_vector, shift_vector, temperature_for_dtype
from .gibbs import _check_rows, log_partition

__all__ = [
    "energy",
    "free_energy",
    "entropy",
    "relative_entropy",
    "loss",
    "charges",
    "information",
    "State",
]

_ROW_FIELDS = ("energy_q", "energy_p", "log_z", "entropy_q", "entropy_p", "relative_entropy", "loss", "label_mass")


def weights(w, n: int, name: str = "w"):
    """Validated sample weights as float64 (n,), or None for uniform 1/n."""
    return probability_vector(w, n, name, "sample")


def reduce(w, rows: np.ndarray) -> float:
    """sum_i w_i rows_i (the mean when w is None). Device rows (CUDA input) are copied to the host."""
    rows = _device.to_numpy(rows)
    return float(np.mean(rows)) if w is None else float(w @ rows)


def _mass_tolerance(dtype) -> float:
    return 1e-3 if np.dtype(dtype) == np.float32 else 1e-6


def label_state(q, shape=None, name: str = "q") -> np.ndarray:
    """q as a 2-D real array (of the given shape)."""
    q = as_real_array(q, name)
    if q.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, K), got ndim={q.ndim}")
    if shape is not None and q.shape != tuple(shape):
        raise ValueError(f"{name} must have the shape of E {tuple(shape)}, got {q.shape}")
    return q


def _check_labels(entropy_rows, mass_rows, dtype, name: str = "q") -> None:
    bad = ~np.isfinite(entropy_rows)
    if bad.any():
        raise ValueError(f"{name} must be finite and nonnegative (row {int(np.flatnonzero(bad)[0])})")
    off = np.abs(mass_rows - 1.0) > _mass_tolerance(dtype)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"{name} must be a label state with rows summing to 1 (row {i} sums to {mass_rows[i]!r})")


def ledger_rows(q, E, T, w=None, *, mu=None):
    """Per-row sums of a ledger row (dict of (N,) float64 arrays), the charges (K,) and the
    validated weights (float64 (N,) or None for uniform).

    Rows against p = GGE(E, T, mu) (mu = None: the Gibbs state). Validates q (a label state of
    E's shape) and E (2-D, no nan, no -inf, one allowed state per row).
    """
    if _device.any_device_array(q, E):
        return _device.ledger_rows(q, E, T, w, mu=mu)
    T = positive_temperature(T)
    E = as_real_array(E, "E")
    if E.ndim != 2:
        raise ValueError(f"E must be a 2-D array of shape (N, K), got ndim={E.ndim}")
    q = label_state(q, E.shape)
    n, k = E.shape
    if n == 0 or k == 0:
        raise ValueError(f"E must have at least one sample and one state, got shape {E.shape}")
    _, dtype = compute_dtype(E.dtype, q.dtype)
    E = E.astype(dtype, copy=False)
    q = q.astype(dtype, copy=False)
    temperature_for_dtype(T, dtype)
    w = weights(w, n)
    shift = None
    if mu is not None:
        shift = shift_vector(mu, k, T, "mu", "state")
    rows = {field: np.empty(n) for field in _ROW_FIELDS}
    charges_out = np.empty(k)
    _core.ledger_rows(q, E, -1.0 / T, shift, None if w is None else w.astype(dtype), charges=charges_out, **rows)
    _check_rows(rows["log_z"])
    _check_labels(rows["entropy_q"], rows["label_mass"], dtype)
    return rows, charges_out, w


def _label_rows(q, w):
    q = label_state(q)
    if q.shape[0] == 0 or q.shape[1] == 0:
        raise ValueError(f"q must have at least one sample and one state, got shape {q.shape}")
    _, dtype = compute_dtype(q.dtype)
    q = q.astype(dtype, copy=False)
    w = weights(w, q.shape[0])
    entropy_rows = np.empty(q.shape[0])
    mass_rows = np.empty(q.shape[0])
    charges_out = np.empty(q.shape[1])
    _core.label_rows(q, None if w is None else w.astype(dtype), entropy_rows, mass_rows, charges_out)
    _check_labels(entropy_rows, mass_rows, dtype)
    return w, entropy_rows, charges_out


def shannon_entropy(distribution: np.ndarray) -> float:
    """-sum_y N_y log N_y of a distribution (0 log 0 = 0): H(N) of the charges."""
    positive = distribution[distribution > 0]
    return float(-np.sum(positive * np.log(positive)))


def energy(q, E, w=None) -> float:
    """U[q] = sum_i w_i sum_y q_iy E_iy (0 where q = 0, even on forbidden states)."""
    rows, _, w = ledger_rows(q, E, 1.0, w)
    return reduce(w, rows["energy_q"])


def free_energy(E, T, w=None) -> float:
    """F = -T sum_i w_i log Z_i, the free energy of the Gibbs state of E at T."""
    T = positive_temperature(T)
    log_z = log_partition(E, T)
    if log_z.shape[0] == 0:
        raise ValueError("E must have at least one sample: the free energy is a weighted mean over samples")
    return -T * reduce(weights(w, log_z.shape[0]), log_z)


def entropy(q, w=None) -> float:
    """S[q] = -sum_i w_i sum_y q_iy log q_iy (nats; 0 log 0 = 0)."""
    w, entropy_rows, _ = _label_rows(q, w)
    return reduce(w, entropy_rows)


def relative_entropy(q, E, T, w=None) -> float:
    """D(q || Gibbs(E, T)) = sum_i w_i sum_y q_iy log(q_iy / p_iy) >= 0."""
    rows, _, w = ledger_rows(q, E, T, w)
    return reduce(w, rows["relative_entropy"])


def loss(q, E, T, w=None) -> float:
    """L[q, E] = -sum_i w_i sum_y q_iy log p_iy, the SSL cross-entropy loss."""
    rows, _, w = ledger_rows(q, E, T, w)
    return reduce(w, rows["loss"])


def charges(q, w=None) -> np.ndarray:
    """N_y = sum_i w_i q_iy, the label occupations (K,)."""
    return _label_rows(q, w)[2]


def information(q, w=None) -> float:
    """I = sum_i w_i sum_y q_iy log(q_iy / N_y) = H(N) - S[q]: what the labels say about the samples."""
    w, entropy_rows, charges_out = _label_rows(q, w)
    return shannon_entropy(charges_out) - reduce(w, entropy_rows)


class State:
    """Every state function of (E, T, q, w), computed once by the fused kernel.

    ``State(E, T, q=None, w=None)``: with q = None the label state is the Gibbs state itself
    (D = 0). Attributes (floats unless noted): T, U (= U[q]), U_p (= U[p]), F, F_T (= U - T S,
    the nonequilibrium free energy), S (= S[q]), S_p, D (= D(q||p)), L, N ((K,) charges),
    H_N, I. Immutable.
    """

    __slots__ = ("T", "U", "U_p", "F", "F_T", "S", "S_p", "D", "L", "N", "H_N", "I")

    def __init__(self, E, T, q=None, w=None):
        T = positive_temperature(T)
        if q is None:
            from .gibbs import gibbs

            q = gibbs(E, T)
        rows, charges_out, w = ledger_rows(q, E, T, w)
        values = {
            "T": T,
            "U": reduce(w, rows["energy_q"]),
            "U_p": reduce(w, rows["energy_p"]),
            "F": -T * reduce(w, rows["log_z"]),
            "S": reduce(w, rows["entropy_q"]),
            "S_p": reduce(w, rows["entropy_p"]),
            "D": reduce(w, rows["relative_entropy"]),
            "L": reduce(w, rows["loss"]),
            "N": charges_out,
        }
        values["N"] = charges_out = _device.to_numpy(charges_out)  # (K,) on the host for CUDA input
        values["F_T"] = values["U"] - T * values["S"]
        values["H_N"] = shannon_entropy(charges_out)
        values["I"] = values["H_N"] - values["S"]
        charges_out.flags.writeable = False
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("State is immutable")

    def __repr__(self) -> str:
        return (
            f"State(T={self.T:g}, U={self.U:.6g}, F={self.F:.6g}, S={self.S:.6g}, S_p={self.S_p:.6g}, "
            f"D={self.D:.6g}, L={self.L:.6g}, I={self.I:.6g})"
        )
