"""Type aliases of the public annotations (for type checkers and readers; no run-time role)."""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import numpy.typing as npt

__all__ = ["ArrayLike", "FloatArray", "Float64Array", "FloatScalar", "FloatResult"]

#: Anything numpy turns into an array (arrays, lists, scalars); CUDA device arrays (torch,
#: CuPy) are accepted where a function's documentation says so.
ArrayLike = npt.ArrayLike
#: A float32 or float64 numpy array (float32 input stays float32).
FloatArray = npt.NDArray[np.floating[Any]]
#: A float64 numpy array.
Float64Array = npt.NDArray[np.float64]
#: A numpy floating-point scalar (a reduction over every axis).
FloatScalar = np.floating[Any]
#: An array, or a scalar where every axis is reduced (scipy's convention).
FloatResult = Union[FloatArray, FloatScalar]
