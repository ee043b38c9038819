"""CUDA device arrays: whether thermossl's CUDA kernels can run here, and which arrays go there.

The public functions (``log_partition``, ``gibbs``, ``gibbs_entropy``, ``cross_entropy``,
``entropy_grad``, ``sinkhorn``, ``logsumexp``/``softmax``/``log_softmax`` over the last axis of a
2-D array, ``thermo.ledger_rows`` and ``thermo.State``) accept device arrays — PyTorch CUDA
tensors, CuPy arrays, and any object exposing ``__cuda_array_interface__`` or a CUDA
``__dlpack__`` — and run them on the CUDA backend (``thermossl._backends.cuda``): zero-copy, on
the caller's current stream, results of the input's kind (torch in, torch out; CuPy in, CuPy
out). numpy input never goes there. The only host transfers are O(N + K): the validated small
vectors (mu, w, c, mu0) and a one-scalar check of the per-row log Z (the same errors as the CPU
path, so each call synchronises once).

``is_available()`` says whether the CUDA kernels can run here; it never raises.
"""
from __future__ import annotations

from ._backends._device import is_device_array
from ._backends.cuda import device_count, is_available

__all__ = ["is_available", "device_count", "is_device_array"]
