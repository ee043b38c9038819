"""State functions of the theory page of the documentation: energy, free energy, entropies, relative entropy, loss,
charges and information of a label state q against the Gibbs state of energies E at T.

All sums carry sample weights w (w_i > 0, sum 1; default 1/N). The per-row sums come from one
fused C++ kernel (``ledger_rows``: one read of E and q, one exp and one log per element) and this
module only reduces N-vectors. ``State`` computes every quantity of a (E, T, q, w) at once.

Notation (the theory page): p = Gibbs(E, T) = softmax(-E/T); log Z_i = LSE_y(-E_iy/T);
U[q] = sum_i w_i sum_y q_iy E_iy; F = -T sum_i w_i log Z_i; S[q] = -sum_i w_i sum_y q_iy log q_iy;
D(q||p) = sum_i w_i sum_y q_iy log(q_iy/p_iy); L = -sum_i w_i sum_y q_iy log p_iy;
N_y = sum_i w_i q_iy; H(N) = -sum_y N_y log N_y; I = H(N) - S[q].
"""
from __future__ import annotations

from typing import NoReturn, Optional

import numpy as np
import numpy.typing as npt

from . import _status
from ._backends import backend_for, cpu
from ._validation import (
    check_nonempty,
    check_shape_of,
    positive_temperature,
    potential,
    probability_vector,
    real_matrix,
    temperature_for_dtype,
)
from ._typing import ArrayLike, Float64Array
from .gibbs import _energies, _gibbs, _log_partition

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


def weights(w, n: int, name: str = "w"):
    """Validated sample weights as float64 (n,), or None for uniform 1/n."""
    return probability_vector(w, n, name, "sample")


def reduce(w, rows) -> float:
    """sum_i w_i rows_i (the mean when w is None) of host rows (N,)."""
    if w is not None:
        return float(w @ rows)  # convex weights: no partial sum exceeds max_i |rows_i|
    with np.errstate(over="ignore"):  # an overflow is handled just below
        mean = float(np.mean(rows))
    if not np.isfinite(mean) and rows.size and np.all(np.isfinite(rows)):
        # The sum of finite rows overflowed (rows near the float limit): the mean itself is finite,
        # so sum the rows scaled by 1/N instead.
        mean = float(np.sum(rows / rows.shape[0]))
    return mean


def label_state(q, shape=None, name: str = "q") -> np.ndarray:
    """q as a 2-D real array (of the given shape)."""
    q = real_matrix(q, name)
    if shape is not None:
        check_shape_of(q.shape, shape, name)
    return q


def _ledger_args(q, E, T, w, mu):
    """The validated arguments of a ledger row: (backend, q, E (one kernel dtype), T, w, shift)."""
    backend = backend_for(q, E)
    T = positive_temperature(T)
    E = backend.matrix(E)
    q = backend.matrix(q, "q", like=E)
    check_shape_of(q.shape, E.shape, "q")
    if E.shape[0] < 1 or E.shape[1] < 1:
        check_nonempty(E.shape)  # raises
    (E, q), _ = backend.to_kernel(E, q)
    temperature_for_dtype(T, E.dtype)
    w = None if w is None else weights(backend.to_host(w), E.shape[0])
    shift = None if mu is None else potential(backend.to_host(mu), E.shape[1], T, "mu", "state")
    return backend, q, E, T, w, shift


def _ledger_rows(q, E, T: float, w=None, shift=None, backend=cpu, name: str = "E"):
    """The validated twin of :func:`ledger_rows`: q and E of one shape and kernel dtype, T a
    positive float, w float64 weights or None, shift = mu/T float64 or None. Returns the rows
    (dict of (N,) float64) and the charges (K,) float64, of the backend's kind. Checks q against
    the kernel's per-row results (a label state: finite, nonnegative, rows summing to 1); errors
    about the energies name them ``name``."""
    rows, charges_out = backend.ledger_rows(q, E, -1.0 / T, shift, w)
    _status.check_rows(backend, rows["log_z"], name)
    _status.check_labels(backend, rows["entropy_q"], rows["label_mass"], E.dtype)
    return rows, charges_out


def ledger_rows(q: npt.ArrayLike, E: npt.ArrayLike, T: float, w: Optional[npt.ArrayLike] = None, *,
                mu: Optional[npt.ArrayLike] = None) -> tuple[dict[str, Float64Array], Float64Array, Optional[Float64Array]]:
    """Per-row sums of a ledger row (dict of (N,) float64 arrays), the charges (K,) and the
    validated weights (float64 (N,) or None for uniform).

    Rows against p = GGE(E, T, mu) (mu = None: the Gibbs state). Validates q (a label state of
    E's shape) and E (2-D, no nan, no -inf, one allowed state per row).
    """
    backend, q, E, T, w, shift = _ledger_args(q, E, T, w, mu)
    rows, charges_out = _ledger_rows(q, E, T, w, shift, backend)
    return rows, charges_out, w


def _ledger_sum(q, E, T, w, field: str) -> float:
    """sum_i w_i (a per-row sum of the ledger kernel), for the public functions below."""
    backend, q, E, T, w, shift = _ledger_args(q, E, T, w, None)
    rows, _ = _ledger_rows(q, E, T, w, shift, backend)
    return reduce(w, backend.to_host(rows[field]))


def _label_rows(q, w):
    q = label_state(q)
    check_nonempty(q.shape, "q")
    (q,), dtype = cpu.to_kernel(q)
    w = weights(w, q.shape[0])
    entropy_rows, mass_rows, charges_out = cpu.label_rows(q, w)
    _status.check_labels(cpu, entropy_rows, mass_rows, dtype)
    return w, entropy_rows, charges_out


def _charges(q, w=None):
    """The validated twin of :func:`charges`: q a label state (2-D, N, K >= 1) in its kernel dtype,
    w float64 weights or None."""
    entropy_rows, mass_rows, charges_out = cpu.label_rows(q, w)
    _status.check_labels(cpu, entropy_rows, mass_rows, q.dtype)
    return charges_out


def shannon_entropy(distribution: np.ndarray) -> float:
    """-sum_y N_y log N_y of a distribution (0 log 0 = 0): H(N) of the charges."""
    positive = distribution[distribution > 0]
    return float(-np.sum(positive * np.log(positive)))


def energy(q: ArrayLike, E: ArrayLike, w: Optional[ArrayLike] = None) -> float:
    """U[q] = sum_i w_i sum_y q_iy E_iy, the internal energy of labels q (0 where q = 0, even on forbidden states).

    Parameters
    ----------
    q : array_like, shape (N, K)
        A label state: finite, >= 0, rows summing to 1.
    E : array_like, shape (N, K)
        Energies (= -scores); +inf forbids a state. float32 or float64 (integers: float64); a CUDA
        device array (torch, CuPy) runs on its device.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    float
        U[q].

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``q`` is not a label state, ``E`` is not 2-D, is empty, holds nan or -inf or a row with every state forbidden,
        ``q`` does not have E's shape, ``w`` is not a probability vector of length N; the
        message names the argument.
    """
    return _ledger_sum(q, E, 1.0, w, "energy_q")


def free_energy(E: ArrayLike, T: float, w: Optional[ArrayLike] = None) -> float:
    """F = -T sum_i w_i log Z_i, the free energy of the Gibbs state of E at T.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores); +inf forbids a state.
    T : float
        Temperature, finite and > 0.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    float
        F.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``E`` is not 2-D or has no rows, holds nan or -inf or a row with every state forbidden,
        ``T`` is not finite and > 0, or ``w`` is not a probability vector of length N; the message
        names the argument.
    """
    backend = backend_for(E)
    T = positive_temperature(T)
    E = _energies(backend, E, T)
    if E.shape[0] == 0:
        check_nonempty(E.shape)  # raises: the free energy is a weighted mean over samples
    log_z = backend.to_host(_log_partition(E, T, None, backend))
    return -T * reduce(weights(backend.to_host(w), log_z.shape[0]), log_z)


def entropy(q: ArrayLike, w: Optional[ArrayLike] = None) -> float:
    """S[q] = -sum_i w_i sum_y q_iy log q_iy, the entropy of labels q (nats; 0 log 0 = 0).

    Parameters
    ----------
    q : array_like, shape (N, K)
        A label state: finite, >= 0, rows summing to 1.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    float
        S[q].

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``q`` is not a label state (2-D, non-empty, finite, >= 0, rows summing to 1), ``w`` is not a probability vector of length N; the
        message names the argument.
    """
    w, entropy_rows, _ = _label_rows(q, w)
    return reduce(w, entropy_rows)


def relative_entropy(q: ArrayLike, E: ArrayLike, T: float, w: Optional[ArrayLike] = None) -> float:
    """D(q || Gibbs(E, T)) = sum_i w_i sum_y q_iy log(q_iy / p_iy) >= 0.

    Parameters
    ----------
    q : array_like, shape (N, K)
        A label state: finite, >= 0, rows summing to 1.
    E : array_like, shape (N, K)
        Energies (= -scores); +inf forbids a state. float32 or float64 (integers: float64); a CUDA
        device array (torch, CuPy) runs on its device.
    T : float
        Temperature, finite and > 0.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    float
        D(q || p); +inf when q labels a forbidden state.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``q`` is not a label state, ``E`` is not 2-D, is empty, holds nan or -inf or a row with every state forbidden,
        ``q`` does not have E's shape, ``w`` is not a probability vector of length N, or ``T`` is not finite and > 0; the
        message names the argument.
    """
    return _ledger_sum(q, E, T, w, "relative_entropy")


def loss(q: ArrayLike, E: ArrayLike, T: float, w: Optional[ArrayLike] = None) -> float:
    """L[q, E] = -sum_i w_i sum_y q_iy log p_iy, the SSL cross-entropy loss of labels q.

    Parameters
    ----------
    q : array_like, shape (N, K)
        A label state: finite, >= 0, rows summing to 1.
    E : array_like, shape (N, K)
        Energies (= -scores); +inf forbids a state. float32 or float64 (integers: float64); a CUDA
        device array (torch, CuPy) runs on its device.
    T : float
        Temperature, finite and > 0.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    float
        L; +inf when q labels a forbidden state.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``q`` is not a label state, ``E`` is not 2-D, is empty, holds nan or -inf or a row with every state forbidden,
        ``q`` does not have E's shape, ``w`` is not a probability vector of length N, or ``T`` is not finite and > 0; the
        message names the argument.
    """
    return _ledger_sum(q, E, T, w, "loss")


def charges(q: ArrayLike, w: Optional[ArrayLike] = None) -> Float64Array:
    """N_y = sum_i w_i q_iy, the label occupations.

    Parameters
    ----------
    q : array_like, shape (N, K)
        A label state: finite, >= 0, rows summing to 1.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    numpy.ndarray, shape (K,)
        The charges, float64.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``q`` is not a label state (2-D, non-empty, finite, >= 0, rows summing to 1), ``w`` is not a probability vector of length N; the
        message names the argument.
    """
    return _label_rows(q, w)[2]


def information(q: ArrayLike, w: Optional[ArrayLike] = None) -> float:
    """I = sum_i w_i sum_y q_iy log(q_iy / N_y) = H(N) - S[q]: what the labels say about the samples.

    Parameters
    ----------
    q : array_like, shape (N, K)
        A label state: finite, >= 0, rows summing to 1.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    float
        I (nats).

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``q`` is not a label state (2-D, non-empty, finite, >= 0, rows summing to 1), ``w`` is not a probability vector of length N; the
        message names the argument.
    """
    w, entropy_rows, charges_out = _label_rows(q, w)
    return shannon_entropy(charges_out) - reduce(w, entropy_rows)


class State:
    """Every state function of (E, T, q, w), computed once by the fused kernel.

    With q = None the label state is the Gibbs state itself (D = 0). Immutable. The quantities
    are those of the theory page of the documentation.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies (= -scores); +inf forbids a state. A CUDA device array runs on its device.
    T : float
        Temperature, finite and > 0.
    q : array_like, shape (N, K), optional
        A label state (default: the Gibbs state of E at T).
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Attributes
    ----------
    T : float
        The temperature.
    U, U_p : float
        U[q] and U[p].
    F : float
        Free energy -T sum_i w_i log Z_i.
    F_T : float
        U - T S, the nonequilibrium free energy.
    S, S_p : float
        S[q] and S[p].
    D : float
        D(q || p).
    L : float
        The loss L[q, E].
    N : numpy.ndarray, shape (K,)
        The charges (float64, read-only).
    H_N : float
        H(N), the entropy of the charges.
    I : float
        H(N) - S[q].

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If ``E`` is not 2-D or is empty, holds nan or -inf or a row with every state forbidden, ``T``
        is not finite and > 0, ``q`` is not a label state of E's shape, or ``w`` is not a
        probability vector of length N; the message names the argument.
    """

    __slots__ = ("T", "U", "U_p", "F", "F_T", "S", "S_p", "D", "L", "N", "H_N", "I")
    T: float
    U: float
    U_p: float
    F: float
    F_T: float
    S: float
    S_p: float
    D: float
    L: float
    N: Float64Array
    H_N: float
    I: float  # noqa: E741 - the symbol of the theory

    def __init__(self, E: ArrayLike, T: float, q: Optional[ArrayLike] = None, w: Optional[ArrayLike] = None) -> None:
        if q is None:
            backend = backend_for(E)
            T = positive_temperature(T)
            E = _energies(backend, E, T)
            check_nonempty(E.shape)
            q = backend.from_result(_gibbs(E, T, None, backend), like=E)
            w = weights(backend.to_host(w), E.shape[0])
            shift = None
        else:
            backend, q, E, T, w, shift = _ledger_args(q, E, T, w, None)
        rows, charges_out = _ledger_rows(q, E, T, w, shift, backend)
        if backend is not cpu:
            rows = {field: backend.to_host(v) for field, v in rows.items()}
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
        values["N"] = charges_out = backend.to_host(charges_out)  # (K,) on the host for CUDA input
        values["F_T"] = values["U"] - T * values["S"]
        values["H_N"] = shannon_entropy(charges_out)
        values["I"] = values["H_N"] - values["S"]
        charges_out.flags.writeable = False
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("State is immutable")

    def __repr__(self) -> str:
        return (
            f"State(T={self.T:g}, U={self.U:.6g}, F={self.F:.6g}, S={self.S:.6g}, S_p={self.S_p:.6g}, "
            f"D={self.D:.6g}, L={self.L:.6g}, I={self.I:.6g})"
        )
