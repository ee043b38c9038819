"""The kernel backends: the same kernel functions, by name, on already-validated arrays.

- :mod:`.cpu`: numpy arrays, the C++ core (``thermossl._core``: OpenMP + SIMD);
- :mod:`.cuda`: CUDA device arrays (PyTorch, CuPy, ``__cuda_array_interface__``/DLPack
  producers), the CUDA extension (``thermossl._cuda``), zero-copy on the caller's stream.

A public function validates its arguments once, picks the backend once with
:func:`backend_for`, and calls the backend's kernel; the backend allocates the outputs in the
caller's library and returns them with the status the kernel reports (per-row log Z, a status
code), which the public layer turns into errors (``thermossl._status``). A backend never imports
a public module of thermossl.

Every backend has: ``name``; the argument adapters ``array``, ``matrix``, ``to_kernel``,
``to_host``, ``from_result``; the kernels listed in ``KERNELS``; the status readers ``first_nonfinite``,
``first_nan``, ``any_posinf``, ``first_off_one``. A kernel a backend has no implementation of
raises NotImplementedError naming the function.
"""
from __future__ import annotations

from . import cpu
from ._contract import KERNELS, LEDGER_FIELDS
from ._device import _HOST_TYPES, is_device_array

__all__ = ["backend_for", "is_device_array", "cpu", "KERNELS", "LEDGER_FIELDS"]


def backend_for(*arrays):
    """The backend for these arguments: CUDA when any is a CUDA device array, else the CPU."""
    for x in arrays:
        # numpy (the common case) is decided without a call
        if x is not None and not isinstance(x, _HOST_TYPES) and is_device_array(x):
            from . import cuda

            return cuda
    return cpu
