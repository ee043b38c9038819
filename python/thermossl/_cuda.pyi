"""Type stubs of ``thermossl._cuda``, the pybind11 module of the CUDA kernels (built with
``THERMOSSL_CUDA=ON`` only).

Written by hand from ``cpp/bindings/cuda_module.cpp`` (``tests/test_stubs.py`` checks that every
function the bindings define is here and nothing else; where the module is built,
``python -m mypy.stubtest thermossl._cuda`` checks it against the module). Low level: device
pointers are integers (``0`` for none), a matrix is ``(pointer, rows, cols, row stride, column
stride)`` in elements, ``dtype`` is ``"float32"`` or ``"float64"``, ``device`` the CUDA ordinal and
``stream`` a ``cudaStream_t`` as an integer. The arguments are positional only.
"""
from typing import Any

_Matrix = tuple[int, int, int, int, int]

def device_count() -> int: ...
def row_logsumexp(
    dtype: str, device: int, stream: int, a: _Matrix, scale: float, shift: int, out: int, /
) -> None: ...
def row_softmax(
    dtype: str, device: int, stream: int, a: _Matrix, scale: float, shift: int, p: int, log_z: int, /
) -> None: ...
def row_log_softmax(
    dtype: str, device: int, stream: int, a: _Matrix, scale: float, shift: int, log_p: int, /
) -> None: ...
def row_entropy(
    dtype: str, device: int, stream: int, a: _Matrix, scale: float, shift: int, entropy: int, log_z: int, /
) -> None: ...
def row_cross_entropy(
    dtype: str,
    device: int,
    stream: int,
    q: _Matrix,
    a: _Matrix,
    scale: float,
    shift: int,
    loss: int,
    grad: int,
    log_z: int,
    /,
) -> None: ...
def row_entropy_grad(
    dtype: str,
    device: int,
    stream: int,
    a: _Matrix,
    scale: float,
    shift: int,
    grad: int,
    entropy: int,
    log_z: int,
    /,
) -> None: ...
def ledger_rows(
    dtype: str,
    device: int,
    stream: int,
    q: _Matrix,
    a: _Matrix,
    scale: float,
    shift: int,
    weights: int,
    rows: dict[str, Any],
    charges: int,
    /,
) -> None: ...
def sinkhorn_workspace_bytes(n: int, k: int) -> int: ...
def sinkhorn(
    dtype: str,
    device: int,
    stream: int,
    e: _Matrix,
    temperature: float,
    weights: int,
    targets: int,
    mu0: int,
    fixed_iterations: int,
    tolerance: float,
    max_iterations: int,
    f: int,
    mu: int,
    q: int,
    charges: int,
    workspace: int,
    check_every: int,
    energy_sign: float = 1.0,
) -> tuple[int, float, bool, int, int]: ...
