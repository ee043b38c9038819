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

from . import _core
from . import cuda as _device
from ._validation import as_real_array, compute_dtype, normalize_axes

__all__ = ["logsumexp", "softmax", "log_softmax"]


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


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log of the sum of exponentials, ``log(sum(b * exp(a), axis))``, computed stably.

    Parameters and results are those of ``scipy.special.logsumexp``: with ``return_sign=True``
    returns ``(log|sum|, sign)``; otherwise a negative sum gives nan. Terms with ``b == 0`` are
    ignored even where ``a`` is infinite.
    """
    if _device.any_device_array(a, b):
        return _device.logsumexp(a, axis, b, keepdims, return_sign)
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
        out = np.empty(a_rows.shape[0], dtype=kernel_dtype)
        sign = np.empty_like(out) if return_sign else None
        _core.row_logsumexp(a_rows, 1.0, None, b_rows, out, sign)
        out = out.reshape(out_shape).astype(result_dtype, copy=False)
        if return_sign:
            sign = sign.reshape(out_shape).astype(result_dtype, copy=False)
    if return_sign:
        return _scalar_if_0d(out), _scalar_if_0d(sign)
    return _scalar_if_0d(out)


def _row_transform(kernel, x, axis, name):
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
    out = np.empty(rows.shape, dtype=kernel_dtype)
    kernel(rows, 1.0, None, out)
    moved_shape = tuple(x.shape[i] for i in order)
    out = out.reshape(moved_shape).transpose(np.argsort(order)).astype(result_dtype, copy=False)
    return out.reshape(())[()] if scalar else out


def softmax(x, axis=None):
    """``exp(x) / sum(exp(x), axis)``, as ``scipy.special.softmax``."""
    if _device.is_device_array(x):
        return _device.softmax(x, axis)
    return _row_transform(_core.row_softmax, x, axis, "x")


def log_softmax(x, axis=None):
    """``x - logsumexp(x, axis)``, as ``scipy.special.log_softmax``."""
    if _device.is_device_array(x):
        return _device.log_softmax(x, axis)
    return _row_transform(_core.row_log_softmax, x, axis, "x")
