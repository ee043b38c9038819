"""How many threads the C++ kernels use.

The kernels are OpenMP-parallel. thermossl links the process's ``libgomp.so.1`` and its wheel does
not carry a private copy, so next to PyTorch (whose wheel ships ``torch/lib/libgomp.so.1``) the
process runs ONE OpenMP runtime and one thread pool, whichever package is imported first: the
dynamic loader resolves both packages' ``libgomp.so.1`` to the copy already loaded.
``threadpoolctl`` therefore sees and limits thermossl's threads (``threadpool_limits(n,
user_api="openmp")``), and ``torch.set_num_threads`` and these functions set the same runtime.

As for ``omp_set_num_threads`` (and torch), the setting applies to kernels called from the calling
Python thread.
"""
from __future__ import annotations

import operator

from . import _core

__all__ = ["set_num_threads", "get_num_threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels called from this thread.

    The setting is that of the process's OpenMP runtime (``omp_set_num_threads``), the one
    ``torch.set_num_threads`` and ``threadpoolctl`` set too; see the getting-started page of the
    documentation.

    Parameters
    ----------
    n : int
        The number of threads, >= 1 (any integer-like object; not a bool).

    Raises
    ------
    TypeError
        If ``n`` is not an integer (or is a bool).
    ValueError
        If ``n`` < 1.
    """
    if isinstance(n, bool):
        raise TypeError("n must be an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int, got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the next kernel called from this thread will use.

    Returns
    -------
    int
        The OpenMP thread count (1 in a build without OpenMP).
    """
    return int(_core.get_num_threads())
