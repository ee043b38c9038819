"""Argument checking and conversion shared by the numpy-facing wrappers.

Every check raises at the boundary with a message that names the argument, so a bad call never
reaches the C++ core (which checks again, as a second line of defence).
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

try:  # numpy >= 2
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.numeric import normalize_axis_tuple  # type: ignore[no-redef]

__all__ = [
    "as_real_array",
    "compute_dtype",
    "normalize_axes",
    "positive_temperature",
    "probability_vector",
]


def as_real_array(x, name: str) -> np.ndarray:
    """`x` as a numpy array of a real numeric dtype (bool and integers are accepted, as in scipy)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of real numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real; complex input (dtype {arr.dtype}) is not supported")
    if kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError(f"{name}: extended precision ({arr.dtype}) is not supported; use float64")
    return _canonical(arr)


def _canonical(arr: np.ndarray) -> np.ndarray:
    """The same values in numpy's own descriptor of the dtype (native byte order, no metadata)
    and with strides the kernels can take (multiples of the item size, aligned): a big-endian
    array or a field of a structured array is accepted (copied), never refused."""
    canonical = np.dtype(arr.dtype.newbyteorder("=").str)
    if arr.dtype is not canonical:
        arr = arr.view(canonical) if arr.dtype.isnative else arr.astype(canonical)
    if arr.ndim and (not arr.flags.aligned or any(st % arr.itemsize for st in arr.strides)):
        arr = np.array(arr, order="C")
    return arr


def compute_dtype(*dtypes: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(result dtype, kernel dtype): numpy promotion, floating at least; float16 runs in float32."""
    # Integers and bool become float64 (as scipy's force_floating), then numpy promotion.
    floats = [np.dtype(d) if np.dtype(d).kind == "f" else np.dtype(np.float64) for d in dtypes]
    result = np.result_type(*floats)
    if result == np.float16:
        return result, np.dtype(np.float32)
    return result, result


def normalize_axes(axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """axis=None -> every axis; int or tuple -> non-negative, unique axes (numpy's AxisError otherwise)."""
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, tuple):
        try:
            axis = (operator.index(axis),)
        except TypeError:
            raise TypeError(f"{name} must be None, an int or a tuple of ints, got {axis!r}") from None
    return normalize_axis_tuple(axis, ndim, argname=name)


def positive_temperature(T, name: str = "T") -> float:
    """A temperature: a real scalar, finite and > 0."""
    if isinstance(T, (bool, np.bool_)) or not isinstance(T, (numbers.Real, np.ndarray, np.generic)):
        raise TypeError(f"{name} must be a real number, got {type(T).__name__}")
    arr = np.asarray(T)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real scalar, got {arr.dtype} array of shape {arr.shape}")
    value = float(arr)
    if not np.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    with np.errstate(over="ignore"):
        if not np.isfinite(np.float64(1.0) / np.float64(value)):
            raise ValueError(f"{name}={value!r} is too small: 1/{name} overflows float64 (need {name} >= {1 / float(np.finfo(np.float64).max)!r})")
    return value


def temperature_for_dtype(T: float, dtype, name: str = "T") -> float:
    """A validated temperature that the kernels' dtype can divide by: 1/T finite in `dtype`
    (float32 gradients are (q - p)/T in float32: T < 2.9e-39 would make them inf or NaN)."""
    limit = 1.0 / float(np.finfo(np.dtype(dtype)).max) if np.dtype(dtype).kind == "f" else 0.0
    if T < limit:
        raise ValueError(
            f"{name}={T!r} is too small for {np.dtype(dtype).name} data: 1/{name} overflows "
            f"{np.dtype(dtype).name} (need {name} >= {limit:.3g}); pass float64 data"
        )
    return T


def shift_vector(v, length: int, T: float, name: str, what: str):
    """A per-state (or per-sample) potential divided by T as the float64 shift the kernels take,
    or None. Computed in float64 whatever v's dtype (a float32 mu must not round a float64 result)."""
    if v is None:
        return None
    v = as_real_array(v, name)
    if v.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) (one value per {what}), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    with np.errstate(over="ignore"):
        shift = np.ascontiguousarray(v, dtype=np.float64) / np.float64(T)
    if not np.all(np.isfinite(shift)):
        raise ValueError(f"{name}/T overflows float64 (T={T!r}); give a smaller {name} or a larger T")
    return shift


def probability_vector(v, length: int, name: str, what: str, positive: bool = False):
    """A distribution over `length` items (weights w, charge targets c): finite, >= 0 (> 0 with
    ``positive``), summing to 1 (to 1e-6). Returned as float64 (length,), or None when `v` is
    None (the uniform default). Zero entries are legal: a sample of weight 0 counts for nothing,
    a state of target 0 stays empty."""
    if v is None:
        return None
    v = as_real_array(v, name)
    if v.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) (one value per {what}), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite everywhere")
    if positive and not np.all(v > 0):
        raise ValueError(f"{name} must be > 0 everywhere")
    if not np.all(v >= 0):
        raise ValueError(f"{name} must be >= 0 everywhere (a distribution), got {v[v < 0][0]!r} at index {int(np.flatnonzero(v < 0)[0])}")
    total = float(np.sum(v, dtype=np.float64))
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, got {total!r}")
    return np.ascontiguousarray(v, dtype=np.float64)


# int64 bound of the C++ core's counts: a larger count is clamped there, never passed through
# pybind11 (whose overflow error formats every argument, uninitialised output arrays included).
_COUNT_LIMIT = 2**62


def count(value, name: str, minimum: int, clamp: bool = True) -> int:
    """An iteration count: a Python or numpy integer (not a bool) >= minimum. A larger value than
    the core's 2**62 is clamped there (``clamp``: a limit such as max_iter, where that long is
    "unbounded"; Ctrl-C stops it) or refused (an exact count such as n_iter)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > _COUNT_LIMIT and not clamp:
        raise ValueError(f"{name} must be <= 2**62, got {value}")
    return min(value, _COUNT_LIMIT)


def nonnegative_real(value, name: str) -> float:
    """A real scalar >= 0 (+inf allowed), not a bool, not NaN: a tolerance or threshold."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray, np.generic)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real scalar, got {arr.dtype} array of shape {arr.shape}")
    value = float(arr)
    if not value >= 0.0:
        raise ValueError(f"{name} must be >= 0 and not NaN, got {value!r}")
    return value
