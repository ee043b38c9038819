"""Drop-in replacements for ``scipy.special.logsumexp``, ``softmax`` and ``log_softmax``.

Same signatures, dtypes and edge-case semantics as scipy (>= 1.15) for real input — integer and
bool input give float64, float32 stays float32 (float16 is computed in float32 and returned as
float16), ``axis`` may be None, an int or a tuple, ±inf and nan follow scipy, and ``b`` with
``return_sign`` handles negative weights — computed by the C++ core, one read of the data.

Layout: the reduced axes are moved last and the array is viewed as a (rows, reduced) matrix.
When numpy can express that as a view (C-contiguous input, reduced axes last or a 2-D transpose)
no copy is made and the kernel reads any strides tile by tile; otherwise numpy's reshape makes
one copy. Differences from scipy: reducing over a zero-length axis in ``softmax``/``log_softmax``
returns the (empty) result instead of raising; complex input is not supported.
"""
from __future__ import annotations

import numpy as np

from typing import Literal, Optional, Sequence, Union, overload

import numpy.typing as npt

from ._backends import backend_for, cpu
from ._typing import FloatResult
from ._validation import as_real_array, compute_dtype, normalize_axes

__all__ = ["logsumexp", "softmax", "log_softmax"]

#: An axis argument: None (every axis), an int, or a sequence of ints.
Axis = Optional[Union[int, Sequence[int]]]


def _as_rows(arr: np.ndarray, axes: tuple[int, ...], dtype: np.dtype):
    """View `arr` as a 2-D (kept, reduced) matrix of `dtype`; returns it and the permutation used."""
    kept = tuple(i for i in range(arr.ndim) if i not in axes)
    order = kept + tuple(axes)
    moved = arr.transpose(order) if order != tuple(range(arr.ndim)) else arr
    n_rows = int(np.prod([arr.shape[i] for i in kept], dtype=np.int64))
    n_cols = int(np.prod([arr.shape[i] for i in axes], dtype=np.int64))
    matrix = moved.reshape(n_rows, n_cols).astype(dtype, copy=False)
    return matrix, order


def _kept_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _scalar_if_0d(x: np.ndarray):
    return x[()] if x.ndim == 0 else x


def _last_axis_only(fn: str, ndim: int, axis) -> None:
    """What the device kernels cover: the last axis of a 2-D array."""
    if ndim != 2 or axis not in (-1, 1):
        raise NotImplementedError(
            f"thermossl.{fn} on a CUDA device array reduces the last axis of a 2-D array (axis=-1 or 1); "
            f"got ndim={ndim}, axis={axis!r}. Use numpy input for the general case."
        )


@overload
def logsumexp(a: npt.ArrayLike, axis: Axis = None, b: Optional[npt.ArrayLike] = None, keepdims: bool = False,
              return_sign: Literal[False] = False) -> FloatResult: ...
@overload
def logsumexp(a: npt.ArrayLike, axis: Axis = None, b: Optional[npt.ArrayLike] = None, keepdims: bool = False, *,
              return_sign: Literal[True]) -> tuple[FloatResult, FloatResult]: ...
@overload
def logsumexp(a: npt.ArrayLike, axis: Axis, b: Optional[npt.ArrayLike], keepdims: bool,
              return_sign: Literal[True]) -> tuple[FloatResult, FloatResult]: ...
def logsumexp(a: npt.ArrayLike, axis: Axis = None, b: Optional[npt.ArrayLike] = None, keepdims: bool = False,
              return_sign: bool = False) -> Union[FloatResult, tuple[FloatResult, FloatResult]]:
    """Log of the sum of exponentials, ``log(sum(b * exp(a), axis))``, computed stably.

    A drop-in for ``scipy.special.logsumexp``: the same arguments, dtypes and edge cases (see the
    user guide's conventions in the documentation). Terms with ``b == 0`` are ignored even where
    ``a`` is infinite. CUDA device arrays (torch, CuPy) are reduced over the last axis of a 2-D array only, on their
    device, and give a result of their own kind.

    Parameters
    ----------
    a : array_like
        Real input (integers and bools compute in float64; float32 stays float32).
    axis : None, int or sequence of int, optional
        The axes to reduce (None: all).
    b : array_like, optional
        Weights broadcasting against ``a``; may be negative with ``return_sign=True``.
    keepdims : bool, optional
        Keep the reduced axes with length 1.
    return_sign : bool, optional
        Also return the sign of the sum (then the first result is ``log|sum|``).

    Returns
    -------
    res : numpy.ndarray or numpy.floating
        ``log(sum(b * exp(a)))`` over ``axis``; a numpy scalar when every axis is reduced. A negative
        sum gives nan unless ``return_sign``.
    sgn : numpy.ndarray or numpy.floating
        The sign of the sum (1, -1, or 0), only with ``return_sign=True``.

    Raises
    ------
    TypeError
        If ``a`` or ``b`` is not real (complex, object, string).
    ValueError
        If ``b`` does not broadcast against ``a``, or ``axis`` is out of range or repeated.
    """
    backend = backend_for(a, b)
    if backend is not cpu:
        x = backend.array(a, "a")
        _last_axis_only("logsumexp", len(x.shape), axis)
        out = backend.row_logsumexp(x, 1.0, None, b, return_sign)
        return out.reshape(x.shape[0], 1) if keepdims else out
    a = as_real_array(a, "a")
    if b is not None:
        b = as_real_array(b, "b")
        result_dtype, kernel_dtype = compute_dtype(a.dtype, b.dtype)
        try:
            a, b = np.broadcast_arrays(a, b)
        except ValueError:
            raise ValueError(f"b of shape {b.shape} does not broadcast against a of shape {a.shape}") from None
    else:
        result_dtype, kernel_dtype = compute_dtype(a.dtype)
    a = np.atleast_1d(a)
    b = np.atleast_1d(b) if b is not None else None
    axes = normalize_axes(axis, a.ndim)
    out_shape = _kept_shape(a.shape, axes, keepdims)

    if a.size == 0:
        out = np.full(out_shape, -np.inf, dtype=result_dtype)
        sign = np.sign(out)
    else:
        a_rows, _ = _as_rows(a, axes, kernel_dtype)
        b_rows = _as_rows(b, axes, kernel_dtype)[0] if b is not None else None
        out = backend.row_logsumexp(a_rows, 1.0, None, b_rows, return_sign)
        if return_sign:
            out, sign = out
        out = out.reshape(out_shape).astype(result_dtype, copy=False)
        if return_sign:
            sign = sign.reshape(out_shape).astype(result_dtype, copy=False)
    if return_sign:
        return _scalar_if_0d(out), _scalar_if_0d(sign)
    return _scalar_if_0d(out)


def _row_transform(kernel, x, axis, name: str):
    """softmax / log_softmax over `axis` on the CPU: the reduced axes as the rows of a matrix."""
    x = as_real_array(x, name)
    result_dtype, kernel_dtype = compute_dtype(x.dtype)
    if x.ndim == 0:
        x = x.reshape(1)
        scalar = True
    else:
        scalar = False
    axes = normalize_axes(axis, x.ndim)
    if x.size == 0:
        return np.empty(x.shape, dtype=result_dtype)
    rows, order = _as_rows(x, axes, kernel_dtype)
    out = kernel(rows)
    moved_shape = tuple(x.shape[i] for i in order)
    out = out.reshape(moved_shape).transpose(np.argsort(order)).astype(result_dtype, copy=False)
    return out.reshape(())[()] if scalar else out


def _softmax_rows(rows):
    return cpu.row_softmax(rows, 1.0, None, log_z=False)[0]


def _log_softmax_rows(rows):
    return cpu.row_log_softmax(rows, 1.0)


def softmax(x: npt.ArrayLike, axis: Axis = None) -> FloatResult:
    """``exp(x) / sum(exp(x), axis)``, as ``scipy.special.softmax``.

    CUDA device arrays (torch, CuPy) are reduced over the last axis of a 2-D array only, on their
    device, and give a result of their own kind.

    Parameters
    ----------
    x : array_like
        Real input (integers and bools compute in float64; float32 stays float32).
    axis : None, int or sequence of int, optional
        The axes the probabilities sum over (None: all).

    Returns
    -------
    numpy.ndarray
        The softmax, of the shape of ``x`` (a numpy scalar for a 0-d ``x``).

    Raises
    ------
    TypeError
        If ``x`` is not real.
    ValueError
        If ``axis`` is out of range or repeated.
    """
    backend = backend_for(x)
    if backend is not cpu:
        a = backend.array(x, "x")
        _last_axis_only("softmax", len(a.shape), axis)
        return backend.row_softmax(a, 1.0, None, log_z=False)[0]
    return _row_transform(_softmax_rows, x, axis, "x")


def log_softmax(x: npt.ArrayLike, axis: Axis = None) -> FloatResult:
    """``x - logsumexp(x, axis)``, as ``scipy.special.log_softmax``.

    CUDA device arrays (torch, CuPy) are reduced over the last axis of a 2-D array only, on their
    device, and give a result of their own kind.

    Parameters
    ----------
    x : array_like
        Real input (integers and bools compute in float64; float32 stays float32).
    axis : None, int or sequence of int, optional
        The axes of the normalisation (None: all).

    Returns
    -------
    numpy.ndarray
        The log-probabilities, of the shape of ``x`` (a numpy scalar for a 0-d ``x``).

    Raises
    ------
    TypeError
        If ``x`` is not real.
    ValueError
        If ``axis`` is out of range or repeated.
    """
    backend = backend_for(x)
    if backend is not cpu:
        a = backend.array(x, "x")
        _last_axis_only("log_softmax", len(a.shape), axis)
        return backend.row_log_softmax(a, 1.0)
    return _row_transform(_log_softmax_rows, x, axis, "x")
