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

Streaming stores: a plain store to memory that is not in cache reads the line first and writes it
back later, two memory transfers per output byte. Softmax (``gibbs``) and the gradient of
``cross_entropy`` compute each output row in cache and write it with non-temporal stores when the
output is larger than twice the last-level cache ("auto", the default), one transfer per byte;
``set_streaming_stores`` turns that on or off for every output (environment variable
``THERMOSSL_STREAMING_STORES``, read at import). The results are the same bits either way.
"""
from __future__ import annotations

import operator
import os
import warnings

from . import _core

__all__ = ["set_output_pool_limit", "output_pool_info", "set_streaming_stores", "streaming_stores_info"]

_ENV = "THERMOSSL_OUTPUT_POOL_BYTES"
_STREAMING_ENV = "THERMOSSL_STREAMING_STORES"
_STREAMING_MODES = ("auto", "on", "off")


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


def set_streaming_stores(mode: str) -> str:
    """Choose how softmax and the cross-entropy gradient write their N x K outputs.

    Parameters
    ----------
    mode : {"auto", "on", "off"}
        "auto" (the default): non-temporal (streaming) stores for outputs larger than twice the
        last-level cache, which would leave the cache anyway, plain stores otherwise; "on": always;
        "off": never. The outputs are the same bits in every mode; only the speed differs.

    Returns
    -------
    str
        The previous mode.

    Raises
    ------
    ValueError
        If ``mode`` is not one of the three.
    """
    if not isinstance(mode, str) or mode not in _STREAMING_MODES:
        raise ValueError(f"mode must be one of {_STREAMING_MODES}, got {mode!r}")
    return str(_core.set_streaming_stores(mode))


def streaming_stores_info() -> dict[str, str | int]:
    """The streaming-store mode and what "auto" decides by.

    Returns
    -------
    dict
        ``mode`` ("auto", "on" or "off"), ``last_level_cache_bytes`` (the largest cache of the
        core's hierarchy, as the operating system reports it) and ``auto_threshold_bytes`` (the
        output size above which "auto" streams: twice that cache).
    """
    info = _core.streaming_stores_info()
    return {"mode": str(info["mode"]), "last_level_cache_bytes": int(info["last_level_cache_bytes"]),
            "auto_threshold_bytes": int(info["auto_threshold_bytes"])}


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


def _streaming_from_environment() -> None:
    # the C++ core reads the variable itself (C++ hosts too); this only reports a bad value
    text = os.environ.get(_STREAMING_ENV)
    if text is not None and text not in _STREAMING_MODES:
        warnings.warn(
            f"{_STREAMING_ENV}={text!r} is not one of {_STREAMING_MODES}; streaming stores stay 'auto'",
            RuntimeWarning,
            stacklevel=3,
        )


_limit_from_environment()
_streaming_from_environment()
