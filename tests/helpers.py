"""Test helpers: memory layouts and tolerances (importable because pytest puts tests/ on sys.path)."""
from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)

LAYOUTS = ("C", "F", "strided", "reversed", "transposed-copy")


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as `a` (2-D) in another memory layout; never a C-contiguous copy except 'C'."""
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":  # every other row and every third column of a bigger buffer
        n, k = a.shape
        big = np.full((2 * n + 1, 3 * k + 2), 12345.0, dtype=a.dtype)
        big[1::2, 2::3][:n, :k] = a
        view = big[1::2, 2::3][:n, :k]
        assert not view.flags.c_contiguous or a.size <= 1
        return view
    if layout == "reversed":  # negative strides on both axes
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "transposed-copy":  # a transposed view of a C array (Fortran order, other path)
        return np.ascontiguousarray(a.T).T
    raise ValueError(layout)


def tol(dtype) -> float:
    """A relative tolerance for comparing a kernel result with a float64 reference."""
    return 16 * EPS32 if np.dtype(dtype) == np.float32 else 64 * EPS64
