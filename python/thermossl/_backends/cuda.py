"""The CUDA backend: the kernels of ``thermossl._cuda`` on CUDA device arrays, zero-copy.

Device arrays — PyTorch CUDA tensors, CuPy arrays, and any object exposing
``__cuda_array_interface__`` or a CUDA ``__dlpack__`` — are adopted without a copy (:func:`array`,
:func:`matrix`: float32 or float64, any strides, one library, one device and one dtype per call).
The kernels read the caller's memory in place, write outputs allocated with the caller's library
on the same device (torch.empty / cupy.empty) and run on the caller's current stream
(``torch.cuda.current_stream()`` / CuPy's current stream). Results are of the input's kind: torch
in, torch out; CuPy in, CuPy out (other producers get torch tensors, or CuPy arrays without
torch). The only host transfers are O(N + K): the validated small vectors (shift, w, c, mu0) and
the status readers (one scalar check of a per-row result, so each call synchronises once).

Same kernel names and arguments as the CPU backend (:mod:`.cpu`); the kernels without a CUDA
implementation raise NotImplementedError naming the function.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _messages as msg
from .._validation import check_matrix
from ._contract import KERNELS, LEDGER_FIELDS  # noqa: F401 (KERNELS: the backend contract)
from ._device import is_device_array

try:
    from .. import _cuda
except ImportError:  # built without CUDA (THERMOSSL_CUDA=OFF, or no nvcc at build time)
    _cuda = None

name = "cuda"

# Iterations between two convergence checks of the device Sinkhorn loop in tolerance mode (each
# check copies one scalar to the host). Tests set it to 1 to check every iteration.
SINKHORN_CHECK_EVERY = 8


def device_count() -> int:
    """CUDA devices the kernels can use.

    Returns
    -------
    int
        The number of visible devices; 0 when thermossl was built without CUDA, or without a driver
        or a GPU. Never raises.
    """
    if _cuda is None:
        return 0
    try:
        return int(_cuda.device_count())
    except Exception:  # pragma: no cover - a broken driver must not break import
        return 0


def is_available() -> bool:
    """Whether thermossl's CUDA kernels can run here.

    Returns
    -------
    bool
        True when thermossl was built with its CUDA kernels and a CUDA device is visible. Never
        raises.
    """
    return device_count() > 0


def _require() -> None:
    if _cuda is None:
        raise RuntimeError(msg.NO_CUDA_BUILD)
    if not is_available():
        raise RuntimeError(msg.NO_CUDA_DEVICE)


# ---------------------------------------------------------------------------------------------
# Arrays of the caller's library

class DeviceArray:
    """A validated device array: the caller's object plus pointer, shape, strides (elements),
    dtype ('float32' or 'float64') and device index."""

    __slots__ = ("obj", "lib", "ptr", "shape", "strides", "dtype", "device")

    def __init__(self, obj, lib, ptr, shape, strides, dtype, device):
        self.obj, self.lib, self.ptr, self.shape, self.strides = obj, lib, ptr, shape, strides
        self.dtype, self.device = dtype, device

    def matrix(self):
        rows, cols = self.shape
        return (self.ptr, rows, cols, self.strides[0], self.strides[1])


def _library_of(x) -> str:
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        return "torch"
    if module.startswith("cupy"):
        return "cupy"
    return ""


def _adopt(x):
    """x as a torch tensor or CuPy array, zero-copy."""
    if _library_of(x):
        return x
    try:
        import torch

        if hasattr(x, "__cuda_array_interface__"):
            return torch.as_tensor(x, device="cuda")
        return torch.from_dlpack(x)
    except ImportError:
        import cupy

        return cupy.asarray(x) if hasattr(x, "__cuda_array_interface__") else cupy.from_dlpack(x)


def array(x, name: str, like: DeviceArray | None = None) -> DeviceArray:
    """x adopted as a float32/float64 device array (of the library, device and dtype of `like`)."""
    _require()
    if not is_device_array(x):
        where = f" (the other arguments are on CUDA device {like.device})" if like is not None else ""
        raise TypeError(f"{name} must be a CUDA device array like the other arguments{where}, got {type(x).__name__}")
    x = _adopt(x)
    lib = _library_of(x)
    if lib == "torch":
        import torch

        names = {torch.float32: "float32", torch.float64: "float64"}
        dtype = names.get(x.dtype)
        ptr, shape, strides, device = x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.device.index
    else:
        dtype = str(x.dtype) if str(x.dtype) in ("float32", "float64") else None
        ptr, shape, device = x.data.ptr, tuple(x.shape), x.device.id
        strides = tuple(s // x.itemsize for s in x.strides)
    if dtype is None:
        raise TypeError(f"{name}: the CUDA kernels take float32 or float64 device arrays, got {x.dtype}")
    if like is not None:
        if lib != like.lib or device != like.device:
            raise TypeError(f"{name} must be a {like.lib} array on CUDA device {like.device} like the first argument")
        if dtype != like.dtype:
            raise TypeError(f"{name} has dtype {dtype}, the first argument {like.dtype}: convert one of them")
    return DeviceArray(x, lib, ptr, shape, strides, dtype, device)


def matrix(x, name: str = "E", like: DeviceArray | None = None) -> DeviceArray:
    """x adopted as a 2-D device array."""
    a = array(x, name, like)
    check_matrix(len(a.shape), name)
    return a


def kernel_matrix(x, name: str = "E") -> DeviceArray:
    """x adopted as a 2-D device array (float32 or float64: its own kernel dtype)."""
    return matrix(x, name)


def from_result(x, like: DeviceArray) -> DeviceArray:
    """A result of this backend's kernels (a tensor or CuPy array of `like`'s library, device and
    dtype) as the argument of another kernel: adopted without checks."""
    if like.lib == "torch":
        return DeviceArray(x, "torch", x.data_ptr(), tuple(x.shape), tuple(x.stride()), like.dtype, like.device)
    return DeviceArray(x, "cupy", x.data.ptr, tuple(x.shape), tuple(s // x.itemsize for s in x.strides), like.dtype,
                       like.device)


def to_kernel(*arrays: DeviceArray):
    """The arrays in their kernel dtype: already one dtype (``array`` checks it)."""
    return list(arrays), arrays[0].dtype


def to_host(x):
    """A host copy of a (small) device array or DeviceArray; host values pass through."""
    if isinstance(x, DeviceArray):
        x = x.obj
    if isinstance(x, np.ndarray) or not is_device_array(x):
        return x
    x = _adopt(x)
    if _library_of(x) == "torch":
        return x.detach().cpu().numpy()
    import cupy

    return cupy.asnumpy(x)


def _empty(like: DeviceArray, shape, dtype: str | None = None) -> DeviceArray:
    dtype = dtype or like.dtype
    if like.lib == "torch":
        import torch

        out = torch.empty(shape, dtype=getattr(torch, dtype), device=like.obj.device)
        return DeviceArray(out, "torch", out.data_ptr(), tuple(shape), tuple(out.stride()), dtype, like.device)
    import cupy

    with cupy.cuda.Device(like.device):
        out = cupy.empty(shape, dtype=dtype)
    return DeviceArray(out, "cupy", out.data.ptr, tuple(shape), tuple(s // out.itemsize for s in out.strides), dtype,
                       like.device)


def _upload(like: DeviceArray, host):
    """A small host vector (O(N) or O(K)) on the device of `like`, in its library; None -> None."""
    if host is None:
        return None
    host = np.ascontiguousarray(host)
    if like.lib == "torch":
        import torch

        out = torch.as_tensor(host, device=like.obj.device)
        return DeviceArray(out, "torch", out.data_ptr(), out.shape, tuple(out.stride()), str(host.dtype), like.device)
    import cupy

    with cupy.cuda.Device(like.device):
        out = cupy.asarray(host)
    return DeviceArray(out, "cupy", out.data.ptr, out.shape, (1,), str(host.dtype), like.device)


def _ptr(a: DeviceArray | None) -> int:
    return 0 if a is None else a.ptr


def _stream(like: DeviceArray) -> int:
    if like.lib == "torch":
        import torch

        return int(torch.cuda.current_stream(like.obj.device).cuda_stream)
    import cupy

    with cupy.cuda.Device(like.device):
        return int(cupy.cuda.get_current_stream().ptr)


def _fill(a: DeviceArray, value: float) -> None:
    a.obj.fill_(value) if a.lib == "torch" else a.obj.fill(value)


# ---------------------------------------------------------------------------------------------
# Status readers: one scalar device->host check, then the host copy only when something is wrong

def _torch_or_cupy(x):
    return "torch" if _library_of(x) == "torch" else "cupy"


def first_nonfinite(v):
    """(index, value) of the first entry that is not finite, or None."""
    if _torch_or_cupy(v) == "torch":
        import torch

        if bool(torch.isfinite(v).all().item()):
            return None
    else:
        import cupy

        if bool(cupy.isfinite(v).all()):
            return None
    host = to_host(v)
    i = int(np.flatnonzero(~np.isfinite(host))[0])
    return i, host[i]


def first_nan(v):
    if _torch_or_cupy(v) == "torch":
        import torch

        if not bool(torch.isnan(v).any().item()):
            return None
    else:
        import cupy

        if not bool(cupy.isnan(v).any()):
            return None
    return int(np.flatnonzero(np.isnan(to_host(v)))[0])


def any_posinf(v) -> bool:
    if _torch_or_cupy(v) == "torch":
        import torch

        return bool(torch.isposinf(v).any().item())
    import cupy

    return bool(cupy.isposinf(v).any())


def first_off_one(v, tolerance: float):
    if _torch_or_cupy(v) == "torch":
        ok = bool(((v - 1.0).abs() <= tolerance).all().item())
    else:
        import cupy

        ok = bool((cupy.abs(v - 1.0) <= tolerance).all())
    if ok:
        return None
    host = to_host(v)
    i = int(np.flatnonzero(np.abs(host - 1.0) > tolerance)[0])
    return i, host[i]


# ---------------------------------------------------------------------------------------------
# Kernels (same names and arguments as the CPU backend)

def row_logsumexp(E: DeviceArray, scale: float, shift=None, b=None, return_sign: bool = False):
    if b is not None or return_sign:
        raise NotImplementedError("thermossl.logsumexp on a CUDA device array does not take b or return_sign")
    out = _empty(E, (E.shape[0],))
    if E.shape[1] == 0:
        _fill(out, -math.inf)
    elif E.shape[0] > 0:
        keep = _upload(E, shift)
        _cuda.row_logsumexp(E.dtype, E.device, _stream(E), E.matrix(), scale, _ptr(keep), out.ptr)
    return out.obj


def row_softmax(E: DeviceArray, scale: float, shift=None, log_z: bool = True):
    p = _empty(E, E.shape)
    lz = _empty(E, (E.shape[0],)) if log_z else None
    if E.shape[0] > 0 and E.shape[1] > 0:
        keep = _upload(E, shift)
        _cuda.row_softmax(E.dtype, E.device, _stream(E), E.matrix(), scale, _ptr(keep), p.ptr, _ptr(lz))
    return p.obj, (lz.obj if lz is not None else None)


def row_log_softmax(E: DeviceArray, scale: float, shift=None):
    if shift is not None:
        raise NotImplementedError(msg.NO_CUDA_KERNEL.format(function="row_log_softmax with a shift"))
    out = _empty(E, E.shape)
    if E.shape[0] > 0 and E.shape[1] > 0:
        _cuda.row_log_softmax(E.dtype, E.device, _stream(E), E.matrix(), scale, 0, out.ptr)
    return out.obj


def row_entropy(E: DeviceArray, scale: float, shift=None):
    entropy = _empty(E, (E.shape[0],))
    log_z = _empty(E, (E.shape[0],))
    keep = _upload(E, shift)
    _cuda.row_entropy(E.dtype, E.device, _stream(E), E.matrix(), scale, _ptr(keep), entropy.ptr, log_z.ptr)
    return entropy.obj, log_z.obj


def row_cross_entropy(q: DeviceArray, E: DeviceArray, scale: float, grad: bool, shift=None):
    loss = _empty(E, (E.shape[0],))
    log_z = _empty(E, (E.shape[0],))
    gradient = _empty(E, E.shape) if grad else None
    keep = _upload(E, shift)
    _cuda.row_cross_entropy(E.dtype, E.device, _stream(E), q.matrix(), E.matrix(), scale, _ptr(keep), loss.ptr,
                            _ptr(gradient), log_z.ptr)
    return loss.obj, (gradient.obj if grad else None), log_z.obj


def row_entropy_grad(E: DeviceArray, scale: float, shift=None):
    gradient = _empty(E, E.shape)
    log_z = _empty(E, (E.shape[0],))
    keep = _upload(E, shift)
    _cuda.row_entropy_grad(E.dtype, E.device, _stream(E), E.matrix(), scale, _ptr(keep), gradient.ptr, 0, log_z.ptr)
    return gradient.obj, log_z.obj


def sinkhorn(E: DeviceArray, T: float, w, c, mu0, fixed: int, tol: float, limit: int, omega: float, return_q: bool):
    """The device Sinkhorn loop; same arguments and results as the CPU backend's."""
    if omega != 1.0:
        raise NotImplementedError("relaxation other than 1.0 is not implemented for device arrays yet")
    n, k = E.shape
    w_dev = None if w is None else _upload(E, w.astype(E.dtype))
    c_dev = None if c is None else _upload(E, c.astype(E.dtype))
    mu0_dev = None if mu0 is None else _upload(E, np.asarray(mu0, dtype=np.float64).astype(E.dtype))
    f = _empty(E, (n,))
    mu = _empty(E, (k,))
    q = _empty(E, (n, k)) if return_q else None
    charges = _empty(E, (k,), "float64")
    nbytes = int(_cuda.sinkhorn_workspace_bytes(n, k))
    workspace = _empty(E, ((nbytes + 7) // 8,), "float64")
    iterations, err, converged, status, index = _cuda.sinkhorn(
        E.dtype, E.device, _stream(E), E.matrix(), T, _ptr(w_dev), _ptr(c_dev), _ptr(mu0_dev), fixed, float(tol),
        limit, f.ptr, mu.ptr, _ptr(q), charges.ptr, workspace.ptr, int(SINKHORN_CHECK_EVERY),
    )
    return (q.obj if q is not None else None), f.obj, mu.obj, charges.obj, iterations, err, converged, status, index


def ledger_rows(q: DeviceArray, E: DeviceArray, scale: float, shift, w):
    """Per-row sums (dict of (N,) float64 device arrays) and the charges ((K,) float64 device)."""
    n, k = E.shape
    w_dev = None if w is None else _upload(E, w.astype(E.dtype))
    keep = _upload(E, shift)
    rows = {field: _empty(E, (n,), "float64") for field in LEDGER_FIELDS}
    charges = _empty(E, (k,), "float64")
    _cuda.ledger_rows(E.dtype, E.device, _stream(E), q.matrix(), E.matrix(), scale, _ptr(keep), _ptr(w_dev),
                      {f: r.ptr for f, r in rows.items()}, charges.ptr)
    return {f: r.obj for f, r in rows.items()}, charges.obj


def _no_kernel(function: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(msg.NO_CUDA_KERNEL.format(function=function))

    kernel.__name__ = function
    kernel.__doc__ = f"No CUDA kernel for {function}: raises NotImplementedError."
    return kernel


# The CPU kernels without a CUDA implementation (same names, so the public layer is one path).
col_logsumexp = _no_kernel("column_log_partition")
sinkhorn_pass = _no_kernel("distributed.sinkhorn")
label_rows = _no_kernel("thermo.entropy / charges / information")
row_difference_dot = _no_kernel("demon strokes")
