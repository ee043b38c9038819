"""Which arrays live in CUDA device memory: the one test that routes an array to a backend.

A leaf module (numpy only): the public ``thermossl.cuda`` re-exports :func:`is_device_array`.
"""
from __future__ import annotations

import numpy as np

_KDL_CUDA, _KDL_CUDA_MANAGED = 2, 13
_HOST_TYPES = (np.ndarray, np.generic, int, float, list, tuple)


def is_device_array(x: object) -> bool:
    """Whether ``x`` lives in CUDA device memory.

    Parameters
    ----------
    x : object
        Any object: a numpy array, a torch tensor, a CuPy array, anything else.

    Returns
    -------
    bool
        True for objects with ``__cuda_array_interface__`` or a CUDA (or managed) DLPack device;
        False for numpy arrays, Python numbers and sequences, and None. Never raises.
    """
    if x is None or isinstance(x, _HOST_TYPES):
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if dlpack_device is None:
        return False
    try:
        kind = int(dlpack_device()[0])
    except Exception:
        return False
    return kind in (_KDL_CUDA, _KDL_CUDA_MANAGED)
