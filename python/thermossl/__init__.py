"""thermossl — thermodynamics of self-supervised learning.

Fast, exact kernels for the Gibbs state of a model's energies (partition functions, entropies,
cross-entropies and their gradients) and scipy-compatible ``logsumexp``/``softmax``/
``log_softmax``, computed by a C++ core (OpenMP, float32 and float64). See THEORY.md for the
model: energies E = -scores (N samples x K states), temperature T.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from . import compat, demon, reservoirs, thermo
from .balancing import SinkhornResult, sinkhorn
from .gibbs import column_log_partition, cross_entropy, entropy_grad, gibbs, gibbs_entropy, log_partition
from .special import log_softmax, logsumexp, softmax

try:
    __version__ = _version("thermossl")
except PackageNotFoundError:  # pragma: no cover - not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "logsumexp",
    "softmax",
    "log_softmax",
    "log_partition",
    "column_log_partition",
    "gibbs",
    "gibbs_entropy",
    "cross_entropy",
    "entropy_grad",
    "sinkhorn",
    "SinkhornResult",
    "compat",
    "thermo",
    "reservoirs",
    "demon",
]
