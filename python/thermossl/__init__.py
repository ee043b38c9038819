"""thermossl — thermodynamics of self-supervised learning.

Fast, exact kernels for the Gibbs state of a model's energies (partition functions, entropies,
cross-entropies and their gradients) and scipy-compatible ``logsumexp``/``softmax``/
``log_softmax``, computed by a C++ core (OpenMP, float32 and float64). See the theory page of the
documentation for the model: energies E = -scores (N samples x K states), temperature T.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from . import compat, demon, distributed, reservoirs, thermo
from .balancing import SinkhornResult, sinkhorn
from .gibbs import column_log_partition, cross_entropy, entropy_grad, gibbs, gibbs_entropy, log_partition
from .special import log_softmax, logsumexp, softmax
from ._threads import get_num_threads, set_num_threads
from ._memory import output_pool_info, set_output_pool_limit, set_streaming_stores, streaming_stores_info

from . import _core


def simd_level() -> str:
    """The SIMD level the C++ kernels run at.

    Chosen when thermossl is imported: the best the CPU supports, or the level named by the
    environment variable THERMOSSL_SIMD ('baseline', 'avx2' or 'avx512') when the CPU supports
    it. ``thermossl._core.simd_levels()`` lists the levels this build and CPU support.

    Returns
    -------
    str
        'avx512' (AVX-512 F/BW/DQ/VL), 'avx2' (AVX2 + FMA) or 'baseline'.
    """
    return _core.simd_level()


def _check_simd_request() -> None:
    import os
    import warnings

    requested = os.environ.get("THERMOSSL_SIMD")
    if requested and requested != _core.simd_level():
        warnings.warn(
            f"THERMOSSL_SIMD={requested!r} is not a SIMD level this machine supports "
            f"{_core.simd_levels()}; using {_core.simd_level()!r}",
            RuntimeWarning,
            stacklevel=2,
        )


_check_simd_request()

try:
    __version__ = _version("thermossl")
except PackageNotFoundError:  # pragma: no cover - not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "simd_level",
    "set_num_threads",
    "get_num_threads",
    "set_output_pool_limit",
    "set_streaming_stores",
    "streaming_stores_info",
    "output_pool_info",
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
    "distributed",
]
