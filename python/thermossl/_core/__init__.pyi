"""Type stubs of ``thermossl._core``, the pybind11 module of the C++ CPU kernels.

Generated with ``pybind11-stubgen thermossl._core`` and fixed by hand (see the development page of
the documentation; ``tests/test_stubs.py`` and ``python -m mypy.stubtest thermossl._core`` check
them against the built module).

pybind11 lets a required argument follow defaulted ones (``shift=None, ..., out``), which Python
syntax cannot say: here the defaulted arguments *before* a required one are written without a
default. That is stricter than the module (which also takes ``out=`` by keyword with ``shift``
left out) and matches every call the package makes (all positional).

Arrays: the kernels take float32 or float64 numpy arrays of any strides; outputs are written in
place into C-contiguous arrays of the input's dtype (float64 where stated).
"""
from typing import Any, Optional

from numpy.typing import NDArray

_Array = NDArray[Any]

openmp: bool

from . import pointers as pointers

class SinkhornRelaxation:
    """The mu-update's over-relaxation controller of the C++ solver."""

    def __init__(self, requested: float, fixed_iterations: bool) -> None: ...
    def observe(self, err: float) -> None: ...
    def omega(self) -> float: ...

def row_logsumexp(
    a: _Array, scale: float, shift: Optional[_Array], b: Optional[_Array], out: _Array, sign: Optional[_Array] = None
) -> None: ...
def col_logsumexp(a: _Array, scale: float, shift: Optional[_Array], out: _Array) -> None: ...
def row_softmax(a: _Array, scale: float, shift: Optional[_Array], p: _Array, log_z: Optional[_Array] = None) -> None: ...
def row_log_softmax(a: _Array, scale: float, shift: Optional[_Array], log_p: _Array) -> None: ...
def row_entropy(
    a: _Array, scale: float, shift: Optional[_Array], entropy: _Array, log_z: Optional[_Array] = None
) -> None: ...
def row_cross_entropy(
    q: _Array,
    a: _Array,
    scale: float,
    shift: Optional[_Array],
    loss: _Array,
    grad: Optional[_Array] = None,
    log_z: Optional[_Array] = None,
) -> None: ...
def row_entropy_grad(
    a: _Array,
    scale: float,
    shift: Optional[_Array],
    grad: _Array,
    entropy: Optional[_Array] = None,
    log_z: Optional[_Array] = None,
) -> None: ...
def sinkhorn(
    E: _Array,
    temperature: float,
    w: Optional[_Array],
    c: Optional[_Array],
    mu0: Optional[_Array],
    fixed_iterations: int,
    tolerance: float,
    max_iterations: int,
    f: _Array,
    mu: _Array,
    q: Optional[_Array] = None,
    charges: Optional[_Array] = None,
    relaxation: float = 1.0,
    check_interval: int = 1,
    error_norm: str = "l1",
    strict_tolerance: bool = False,
    row_scaling0: Optional[_Array] = None,
    fix_gauge: bool = True,
    errors: Optional[list[float]] = None,
    energy_sign: float = 1.0,
) -> tuple[int, float, bool, int, int]:
    """Log-domain Sinkhorn balancing; returns (iterations, err, converged, status, index)."""

def sinkhorn_pass(
    E: _Array,
    temperature: float,
    w: _Array,
    mu: _Array,
    f: _Array,
    charges: _Array,
    q: Optional[_Array] = None,
    energy_sign: float = 1.0,
) -> tuple[int, int]:
    """One fused Sinkhorn pass at mu; returns (status, index)."""

def ledger_rows(
    q: _Array,
    a: _Array,
    scale: float,
    shift: Optional[_Array] = None,
    w: Optional[_Array] = None,
    energy_q: Optional[_Array] = None,
    energy_p: Optional[_Array] = None,
    log_z: Optional[_Array] = None,
    entropy_q: Optional[_Array] = None,
    entropy_p: Optional[_Array] = None,
    relative_entropy: Optional[_Array] = None,
    loss: Optional[_Array] = None,
    label_mass: Optional[_Array] = None,
    charges: Optional[_Array] = None,
) -> None: ...
def label_rows(
    q: _Array,
    w: Optional[_Array] = None,
    entropy_q: Optional[_Array] = None,
    label_mass: Optional[_Array] = None,
    charges: Optional[_Array] = None,
) -> None: ...
def row_difference_dot(u: _Array, v: _Array, w: _Array, out: _Array) -> None: ...
def simd_level() -> str: ...
def simd_levels() -> list[str]: ...
def set_simd_level(name: str) -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def pooled_empty(shape: list[int], dtype: Any) -> _Array: ...
def set_output_pool_limit(limit: int) -> int: ...
def output_pool_stats() -> dict[str, int]: ...
def set_streaming_stores(mode: str) -> str: ...
def streaming_stores_info() -> dict[str, str | int]: ...
