"""Argument checking and conversion shared by the numpy-facing wrappers.

Every check raises at the boundary with a message that names the argument, so a bad call never
reaches the C++ core (which checks again, as a second line of defence).
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from . import _messages as msg

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
    "real_matrix",
    "check_matrix",
    "check_states",
    "check_nonempty",
    "check_shape_of",
    "finite_vector",
    "potential",
    "positive_vector",
    "count",
    "nonnegative_real",
    "temperature_for_dtype",
    "iteration_controls",
    "relaxation",
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
    dtype = arr.dtype
    if dtype.isbuiltin != 1:  # not numpy's own descriptor object (byte order, metadata, a copy)
        canonical = np.dtype(dtype.newbyteorder("=").str)
        arr = arr.view(canonical) if dtype.isnative else arr.astype(canonical)
    # A C-contiguous array without length-0/1 axes has strides that are products of the item size;
    # otherwise every stride is looked at (numpy calls an array contiguous whatever the stride
    # of a length-1 axis).
    flags = arr.flags
    if arr.ndim and (not flags.aligned or (
        not (flags.c_contiguous and 1 not in arr.shape and 0 not in arr.shape)
        and any(st % arr.itemsize for st in arr.strides)
    )):
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
    """A temperature: a real scalar, finite and > 0, whose reciprocal float64 holds."""
    if type(T) is float or type(T) is int:  # the usual case, without a numpy round trip
        value = float(T)
    else:
        if isinstance(T, (bool, np.bool_)) or not isinstance(T, (numbers.Real, np.ndarray, np.generic)):
            raise TypeError(f"{name} must be a real number, got {type(T).__name__}")
        arr = np.asarray(T)
        if arr.ndim != 0 or arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a real scalar, got {arr.dtype} array of shape {arr.shape}")
        value = float(arr)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    if value < _SMALLEST_T64:
        raise ValueError(f"{name}={value!r} is too small: 1/{name} overflows float64 (need {name} >= {_SMALLEST_T64!r})")
    return value


# The smallest temperature whose reciprocal a dtype holds (1/T finite), per floating dtype.
_SMALLEST_T = {np.dtype(t): 1.0 / float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}
_SMALLEST_T64 = _SMALLEST_T[np.dtype(np.float64)]


def temperature_for_dtype(T: float, dtype, name: str = "T") -> float:
    """A validated temperature that the kernels' dtype can divide by: 1/T finite in `dtype`
    (float32 gradients are (q - p)/T in float32: T < 2.9e-39 would make them inf or NaN)."""
    limit = _SMALLEST_T.get(dtype, 0.0)
    if T < limit:
        raise ValueError(
            f"{name}={T!r} is too small for {np.dtype(dtype).name} data: 1/{name} overflows "
            f"{np.dtype(dtype).name} (need {name} >= {limit:.3g}); pass float64 data"
        )
    return T


def probability_vector(v, length: int, name: str, what: str, positive: bool = False):
    """A distribution over `length` items (weights w, charge targets c): finite, >= 0 (> 0 with
    ``positive``), summing to 1 (to 1e-6). Returned as float64 (length,), or None when `v` is
    None (the uniform default). Zero entries are legal: a sample of weight 0 counts for nothing,
    a state of target 0 stays empty."""
    if v is None:
        return None
    v = as_real_array(v, name)
    if v.shape != (length,):
        raise ValueError(msg.VECTOR_SHAPE.format(name=name, length=length, what=what, shape=v.shape))
    if not np.all(np.isfinite(v)):
        raise ValueError(msg.NOT_FINITE.format(name=name))
    if positive and not np.all(v > 0):
        raise ValueError(msg.NOT_POSITIVE.format(name=name))
    if not np.all(v >= 0):
        index = int(np.flatnonzero(v < 0)[0])
        raise ValueError(msg.NEGATIVE_ENTRY.format(name=name, value=float(v[index]), index=index))
    total = float(np.sum(v, dtype=np.float64))
    if abs(total - 1.0) > 1e-6:
        raise ValueError(msg.NOT_NORMALISED.format(name=name, total=total))
    return np.ascontiguousarray(v, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Composite checks: what the public functions of several modules (and both backends) ask of
# their arguments, written once. Shapes are plain tuples so device arrays use the same checks.

def check_matrix(ndim: int, name: str = "E") -> None:
    """An (N, K) matrix: ndim must be 2."""
    if ndim != 2:
        raise ValueError(msg.NOT_MATRIX.format(name=name, ndim=ndim))


def real_matrix(x, name: str = "E", like=None) -> np.ndarray:
    """`x` as a 2-D numpy array of a real dtype (not yet cast to the kernel dtype). ``like`` is
    ignored (the CPU backend's ``matrix``; a device backend matches it)."""
    arr = as_real_array(x, name)
    if arr.ndim != 2:
        raise ValueError(msg.NOT_MATRIX.format(name=name, ndim=arr.ndim))
    return arr


def check_states(shape: tuple, name: str = "E") -> None:
    """At least one state per row (K >= 1) whenever there are rows."""
    if shape[1] == 0 and shape[0] > 0:
        raise ValueError(msg.NO_STATES.format(name=name, shape=shape))


def check_nonempty(shape: tuple, name: str = "E") -> None:
    """At least one sample and one state (N >= 1, K >= 1)."""
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(msg.EMPTY.format(name=name, shape=shape))


def check_shape_of(shape: tuple, of: tuple, name: str = "q") -> None:
    """`name` has the shape of E."""
    if shape != of and tuple(shape) != tuple(of):
        raise ValueError(msg.SHAPE_OF_E.format(name=name, shape=tuple(of), got=tuple(shape)))


def finite_vector(v, length: int, name: str, what: str) -> np.ndarray:
    """A finite real (length,) array, one value per `what` (any real dtype: the caller casts)."""
    v = as_real_array(v, name)
    if v.shape != (length,):
        raise ValueError(msg.VECTOR_SHAPE.format(name=name, length=length, what=what, shape=v.shape))
    if not np.all(np.isfinite(v)):
        raise ValueError(msg.NOT_FINITE.format(name=name))
    return v


def potential(v, length: int, T: float, name: str, what: str):
    """A per-state (or per-sample) potential divided by T as the float64 shift the kernels take,
    or None for None. Divided in float64 whatever v's dtype (a float32 mu must not round a
    float64 result); a quotient that overflows float64 is refused."""
    if v is None:
        return None
    v = finite_vector(v, length, name, what)
    with np.errstate(over="ignore"):
        shift = np.ascontiguousarray(v, dtype=np.float64) / np.float64(T)
    if not np.all(np.isfinite(shift)):
        raise ValueError(msg.POTENTIAL_OVERFLOW.format(name=name, T=T))
    return shift


def positive_vector(v, length: int, name: str, what: str):
    """A (length,) float64 vector, finite and > 0 (a shard of sample weights: its sum is checked
    over every rank), or None for None."""
    if v is None:
        return None
    v = as_real_array(v, name)
    if v.shape != (length,):
        raise ValueError(msg.VECTOR_SHAPE.format(name=name, length=length, what=what, shape=v.shape))
    if not np.all(np.isfinite(v)) or not np.all(v > 0):
        raise ValueError(msg.NOT_POSITIVE.format(name=name))
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


def iteration_controls(n_iter, tol, max_iter, relaxation_arg) -> tuple[int, int, float, float]:
    """(fixed, limit, tol, omega) for the Sinkhorn solvers from the iteration arguments every
    Sinkhorn entry point takes (single process, sharded, CUDA): fixed = 0 in tolerance mode."""
    fixed = 0 if n_iter is None else count(n_iter, "n_iter", 1, clamp=False)
    limit = count(max_iter, "max_iter", 1)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise TypeError(f"tol must be a real number, got {type(tol).__name__}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    return fixed, limit, float(tol), relaxation(relaxation_arg, fixed)


def relaxation(value, fixed: int) -> float:
    """omega for the solvers: a number in (0, 2), or 0.0 for "auto" (tolerance mode only)."""
    if type(value) is float and 0.0 < value < 2.0:  # the usual case
        return value
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"relaxation must be a number in (0, 2) or 'auto', got {value!r}")
        if fixed:
            raise ValueError("relaxation='auto' needs the tolerance mode (n_iter=None); give a number with n_iter")
        return 0.0
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"relaxation must be a number or 'auto', got {type(value).__name__}")
    if not (0.0 < value < 2.0):
        raise ValueError(f"relaxation must be in (0, 2), got {value!r}")
    return float(value)
