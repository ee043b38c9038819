"""The output pool: memory for the large arrays the CPU kernels return, reused across calls.

An array of more than 32 MiB (glibc's largest mmap threshold) is mapped fresh by ``np.empty`` on
every call and unmapped when it dies, so every call pays the operating system's page faults and
the zeroing of each page before the kernel writes its first element -- about a fifth of SwAV's
codes at 4096 x 3000 float32 on a 2-core Xeon. thermossl's CPU kernels take their large outputs
(Sinkhorn's ``q``, ``softmax``, ``log_softmax``, the gradients of ``cross_entropy`` and
``entropy_grad``; 4 MiB and more) from a pool instead: when such an array dies its memory is
kept, up to a limit, and the next output of the same size (rounded up to 2 MiB) reuses it, as a
training loop asks for every step. The arrays are ordinary writable C-contiguous numpy arrays
that do not own their memory (``a.base`` holds it; ``a.resize`` refuses, as for any view).

The limit is 1 GiB by default, or the environment variable ``THERMOSSL_OUTPUT_POOL_BYTES``
(bytes; 0 turns the pool off) read at import, or ``set_output_pool_limit``.
"""
from __future__ import annotations

import operator
import os
import warnings

from . import _core

__all__ = ["set_output_pool_limit", "output_pool_info"]

_ENV = "THERMOSSL_OUTPUT_POOL_BYTES"


def set_output_pool_limit(nbytes: int) -> int:
    """Keep at most ``nbytes`` bytes of released output memory for reuse.

    Memory already kept beyond the new limit is freed at once; 0 turns the pool off (every large
    output then gets fresh memory from numpy) and frees all it holds.

    Parameters
    ----------
    nbytes : int
        The limit in bytes, >= 0 (any integer-like object; not a bool).

    Returns
    -------
    int
        The previous limit.

    Raises
    ------
    TypeError
        If ``nbytes`` is not an integer (or is a bool).
    ValueError
        If ``nbytes`` < 0.
    """
    if isinstance(nbytes, bool):
        raise TypeError("nbytes must be an integer, not a bool")
    try:
        limit = operator.index(nbytes)
    except TypeError:
        raise TypeError(f"nbytes must be an integer, got {type(nbytes).__name__}") from None
    if limit < 0:
        raise ValueError(f"nbytes must be >= 0, got {limit}")
    return int(_core.set_output_pool_limit(limit))


def output_pool_info() -> dict[str, int]:
    """What the output pool holds and how it has served.

    Returns
    -------
    dict
        ``limit`` (bytes kept at most), ``cached_bytes`` and ``cached_blocks`` (released memory
        held now), ``hits`` and ``misses`` (outputs served from held memory, and from new
        allocations, since import), ``min_bytes`` (the smallest output taken from the pool).
    """
    return {key: int(value) for key, value in _core.output_pool_stats().items()}


def _limit_from_environment() -> None:
    text = os.environ.get(_ENV)
    if text is None or text.strip() == "":
        return
    try:
        limit = int(text.strip())
        if limit < 0:
            raise ValueError
    except ValueError:
        warnings.warn(
            f"{_ENV}={text!r} is not a number of bytes >= 0; the output pool keeps its default limit "
            f"of {output_pool_info()['limit']} bytes",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _core.set_output_pool_limit(limit)


_limit_from_environment()
