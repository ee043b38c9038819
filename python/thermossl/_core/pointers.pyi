"""Row kernels on raw host addresses, any of float32/float64/bfloat16/float16 in (thermossl.torch).

ledger_rows takes float32 or float64 only; its ``rows`` maps ledger field names to the addresses of
float64 (N,) outputs.

A matrix is ``(address, rows, cols, row_stride, col_stride)`` with strides in elements; every other
address is an int (0 = none) of a C-contiguous float32 array (half input) or one of the input's
dtype. ``dtype`` is one of "float32", "float64", "bfloat16", "float16".
"""
_RawMatrix = tuple[int, int, int, int, int]

def row_logsumexp(dtype: str, a: _RawMatrix, scale: float, shift: int, out: int) -> None: ...
def row_softmax(dtype: str, a: _RawMatrix, scale: float, shift: int, p: int, log_z: int) -> None: ...
def row_log_softmax(dtype: str, a: _RawMatrix, scale: float, shift: int, log_p: int) -> None: ...
def row_entropy(dtype: str, a: _RawMatrix, scale: float, shift: int, entropy: int, log_z: int) -> None: ...
def row_cross_entropy(
    dtype: str, q: _RawMatrix, a: _RawMatrix, scale: float, shift: int, loss: int, grad: int, log_z: int
) -> None: ...
def row_cross_entropy_float_labels(
    dtype: str, q: _RawMatrix, a: _RawMatrix, scale: float, shift: int, loss: int, grad: int, log_z: int
) -> None: ...
def row_entropy_grad(dtype: str, a: _RawMatrix, scale: float, shift: int, grad: int, entropy: int, log_z: int) -> None: ...
def sinkhorn(
    dtype: str,
    E: _RawMatrix,
    temperature: float,
    w: int,
    c: int,
    mu0: int,
    fixed_iterations: int,
    tolerance: float,
    max_iterations: int,
    f: int,
    mu: int,
    q: int,
    charges: int,
    relaxation: float = 1.0,
    energy_sign: float = 1.0,
) -> tuple[int, float, bool, int, int]: ...
def ledger_rows(
    dtype: str,
    q: _RawMatrix,
    a: _RawMatrix,
    scale: float,
    shift: int,
    weights: int,
    rows: dict[str, int],
    charges: int,
) -> None: ...
