"""CUDA device arrays: the public kernels of thermossl on NVIDIA GPUs, zero-copy.

The public functions (``log_partition``, ``gibbs``, ``gibbs_entropy``, ``cross_entropy``,
``entropy_grad``, ``sinkhorn``, ``logsumexp``/``softmax``/``log_softmax`` over the last axis of a
2-D array, ``thermo.ledger_rows``) accept device arrays — PyTorch CUDA tensors, CuPy arrays, and
any object exposing ``__cuda_array_interface__`` or a CUDA ``__dlpack__`` — and route them here.
The kernels read the caller's memory in place (any strides), write outputs allocated with the
caller's library on the same device (torch.empty / cupy.empty), and run on the caller's current
stream (``torch.cuda.current_stream()`` / CuPy's current stream). The result is of the input's
kind: torch in, torch out; CuPy in, CuPy out (other producers get torch tensors, or CuPy arrays
without torch). numpy input never comes here. The only host transfers are O(N + K): the
validated small vectors (mu, w, c, mu0) and a one-scalar check of the per-row log Z (the same
errors as the CPU path, so each call synchronises once).

``is_available()`` says whether the CUDA kernels can run here; it never raises.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ._validation import positive_temperature, probability_vector

try:
    from . import _cuda
except ImportError:  # built without CUDA (THERMOSSL_CUDA=OFF, or no nvcc at build time)
    _cuda = None

__all__ = ["is_available", "device_count", "is_device_array"]

_KDL_CUDA, _KDL_CUDA_MANAGED = 2, 13


def device_count() -> int:
    """CUDA devices the kernels can use (0 when built without CUDA, without a driver or a GPU)."""
    if _cuda is None:
        return 0
    try:
        return int(_cuda.device_count())
    except Exception:  # pragma: no cover - a broken driver must not break import
        return 0


def is_available() -> bool:
    """True when thermossl was built with its CUDA kernels and a CUDA device is visible."""
    return device_count() > 0


def is_device_array(x) -> bool:
    """Whether x lives in CUDA device memory (``__cuda_array_interface__`` or a CUDA DLPack device)."""
    if x is None or isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if dlpack_device is None:
        return False
    try:
        kind = int(dlpack_device()[0])
    except Exception:
        return False
    return kind in (_KDL_CUDA, _KDL_CUDA_MANAGED)


def any_device_array(*xs) -> bool:
    return any(is_device_array(x) for x in xs)


def _require() -> None:
    if _cuda is None:
        raise RuntimeError(
            "thermossl got a CUDA device array, but this build has no CUDA kernels "
            "(rebuild with nvcc available, THERMOSSL_CUDA=ON), or pass a numpy array"
        )
    if not is_available():
        raise RuntimeError("thermossl got a CUDA device array, but no CUDA device is available (driver or GPU missing)")


# ---------------------------------------------------------------------------------------------
# Arrays of the caller's library

class _Array:
    """A device array seen by the kernels: the caller's object plus pointer, shape, strides."""

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
    lib = _library_of(x)
    if lib:
        return x
    try:
        import torch

        if hasattr(x, "__cuda_array_interface__"):
            return torch.as_tensor(x, device="cuda")
        return torch.from_dlpack(x)
    except ImportError:
        import cupy

        return cupy.asarray(x) if hasattr(x, "__cuda_array_interface__") else cupy.from_dlpack(x)


def _wrap(x, name: str, like: _Array | None = None) -> _Array:
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
    return _Array(x, lib, ptr, shape, strides, dtype, device)


def _empty(like: _Array, shape, dtype: str | None = None) -> _Array:
    dtype = dtype or like.dtype
    if like.lib == "torch":
        import torch

        out = torch.empty(shape, dtype=getattr(torch, dtype), device=like.obj.device)
        return _Array(out, "torch", out.data_ptr(), tuple(shape), tuple(out.stride()), dtype, like.device)
    import cupy

    with cupy.cuda.Device(like.device):
        out = cupy.empty(shape, dtype=dtype)
    return _Array(out, "cupy", out.data.ptr, tuple(shape), tuple(s // out.itemsize for s in out.strides), dtype,
                  like.device)


def _upload(like: _Array, host: np.ndarray) -> _Array:
    """A small host vector (O(N) or O(K)) on the device of `like`, in the library of `like`."""
    host = np.ascontiguousarray(host)
    if like.lib == "torch":
        import torch

        out = torch.as_tensor(host, device=like.obj.device)
        return _Array(out, "torch", out.data_ptr(), out.shape, tuple(out.stride()), str(host.dtype), like.device)
    import cupy

    with cupy.cuda.Device(like.device):
        out = cupy.asarray(host)
    return _Array(out, "cupy", out.data.ptr, out.shape, (1,), str(host.dtype), like.device)


def _stream(like: _Array) -> int:
    if like.lib == "torch":
        import torch

        return int(torch.cuda.current_stream(like.obj.device).cuda_stream)
    import cupy

    with cupy.cuda.Device(like.device):
        return int(cupy.cuda.get_current_stream().ptr)


def to_numpy(x) -> np.ndarray:
    """A host copy of a (small) device array; numpy arrays pass through."""
    if isinstance(x, np.ndarray):
        return x
    if not is_device_array(x):
        return np.asarray(x)
    x = _adopt(x)
    if _library_of(x) == "torch":
        return x.detach().cpu().numpy()
    import cupy

    return cupy.asnumpy(x)


def _host_vector(v, name: str):
    return to_numpy(v) if is_device_array(v) else v


def _all_finite(a: _Array) -> bool:
    if a.lib == "torch":
        import torch

        return bool(torch.isfinite(a.obj).all().item())
    import cupy

    return bool(cupy.isfinite(a.obj).all())


def _check_rows(log_z: _Array, name: str = "E") -> None:
    """The CPU path's row errors (nan, -inf, all forbidden), from log Z: one scalar sync."""
    if _all_finite(log_z):
        return
    from .gibbs import _check_rows as check_host

    check_host(to_numpy(log_z.obj), name)


def _energies(E, name: str = "E") -> _Array:
    _require()
    a = _wrap(E, name)
    if len(a.shape) != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, K), got ndim={len(a.shape)}")
    if a.shape[1] == 0 and a.shape[0] > 0:
        raise ValueError(f"{name} must have at least one state per row (K >= 1), got shape {a.shape}")
    return a


def _shift(like: _Array, mu, k: int, T: float, name: str = "mu"):
    """mu / T as a float64 device vector (0 for None)."""
    if mu is None:
        return None, 0
    mu = np.asarray(_host_vector(mu, name), dtype=np.float64)
    if mu.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},) (one value per state), got {mu.shape}")
    if not np.all(np.isfinite(mu)):
        raise ValueError(f"{name} must be finite")
    shift = _upload(like, mu / T)
    return shift, shift.ptr


# ---------------------------------------------------------------------------------------------
# The kernels (called by the public functions of gibbs, special, balancing and thermo)

def log_partition(E, T=1.0, *, mu=None):
    T = positive_temperature(T)
    a = _energies(E)
    keep, shift = _shift(a, mu, a.shape[1], T)
    out = _empty(a, (a.shape[0],))
    _cuda.row_logsumexp(a.dtype, a.device, _stream(a), a.matrix(), -1.0 / T, shift, out.ptr)
    _check_rows(out)
    return out.obj


def gibbs(E, T=1.0, *, mu=None):
    T = positive_temperature(T)
    a = _energies(E)
    keep, shift = _shift(a, mu, a.shape[1], T)
    p = _empty(a, a.shape)
    log_z = _empty(a, (a.shape[0],))
    _cuda.row_softmax(a.dtype, a.device, _stream(a), a.matrix(), -1.0 / T, shift, p.ptr, log_z.ptr)
    _check_rows(log_z)
    return p.obj


def gibbs_entropy(E, T=1.0):
    T = positive_temperature(T)
    a = _energies(E)
    entropy = _empty(a, (a.shape[0],))
    log_z = _empty(a, (a.shape[0],))
    _cuda.row_entropy(a.dtype, a.device, _stream(a), a.matrix(), -1.0 / T, 0, entropy.ptr, log_z.ptr)
    _check_rows(log_z)
    return entropy.obj


def cross_entropy(q, E, T=1.0, grad=False):
    T = positive_temperature(T)
    a = _energies(E)
    qa = _wrap(q, "q", like=a)
    if qa.shape != a.shape:
        raise ValueError(f"q must have the shape of E {a.shape}, got {qa.shape}")
    loss = _empty(a, (a.shape[0],))
    log_z = _empty(a, (a.shape[0],))
    gradient = _empty(a, a.shape) if grad else None
    _cuda.row_cross_entropy(a.dtype, a.device, _stream(a), qa.matrix(), a.matrix(), -1.0 / T, 0, loss.ptr,
                            gradient.ptr if grad else 0, log_z.ptr)
    _check_rows(log_z)
    if not _all_finite_or_inf(loss):
        host = to_numpy(loss.obj)
        raise ValueError(f"q contains NaN or inf (row {int(np.flatnonzero(np.isnan(host))[0])})")
    return (loss.obj, gradient.obj) if grad else loss.obj


def _all_finite_or_inf(a: _Array) -> bool:
    """No nan (a label on a forbidden state gives +inf, which is a valid loss)."""
    if a.lib == "torch":
        import torch

        return not bool(torch.isnan(a.obj).any().item())
    import cupy

    return not bool(cupy.isnan(a.obj).any())


def entropy_grad(E, T=1.0):
    T = positive_temperature(T)
    a = _energies(E)
    gradient = _empty(a, a.shape)
    log_z = _empty(a, (a.shape[0],))
    _cuda.row_entropy_grad(a.dtype, a.device, _stream(a), a.matrix(), -1.0 / T, 0, gradient.ptr, 0, log_z.ptr)
    _check_rows(log_z)
    return gradient.obj


def _last_axis_only(fn: str, ndim: int, axis) -> None:
    if ndim != 2 or axis not in (-1, 1):
        raise NotImplementedError(
            f"thermossl.{fn} on a CUDA device array reduces the last axis of a 2-D array (axis=-1 or 1); "
            f"got ndim={ndim}, axis={axis!r}. Use numpy input for the general case."
        )


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    _require()
    x = _wrap(a, "a")
    _last_axis_only("logsumexp", len(x.shape), axis)
    if b is not None or return_sign:
        raise NotImplementedError("thermossl.logsumexp on a CUDA device array does not take b or return_sign")
    out = _empty(x, (x.shape[0],))
    if x.shape[1] == 0:
        out.obj.fill_(-math.inf) if x.lib == "torch" else out.obj.fill(-math.inf)
    elif x.shape[0] > 0:
        _cuda.row_logsumexp(x.dtype, x.device, _stream(x), x.matrix(), 1.0, 0, out.ptr)
    return out.obj.reshape(x.shape[0], 1) if keepdims else out.obj


def _row_transform(kernel: str, x, axis, name: str):
    _require()
    a = _wrap(x, name)
    _last_axis_only(kernel, len(a.shape), axis)
    out = _empty(a, a.shape)
    if a.shape[0] > 0 and a.shape[1] > 0:
        if kernel == "softmax":
            _cuda.row_softmax(a.dtype, a.device, _stream(a), a.matrix(), 1.0, 0, out.ptr, 0)
        else:
            _cuda.row_log_softmax(a.dtype, a.device, _stream(a), a.matrix(), 1.0, 0, out.ptr)
    return out.obj


def softmax(x, axis=None):
    return _row_transform("softmax", x, axis, "x")


def log_softmax(x, axis=None):
    return _row_transform("log_softmax", x, axis, "x")


def _distribution(like: _Array, v, length: int, name: str, what: str):
    # The device solver takes positive weights and targets only (zeros: the host solver).
    v = probability_vector(_host_vector(v, name), length, name, what, positive=True)
    return None if v is None else _upload(like, v.astype(like.dtype))


def sinkhorn(E, T, w=None, c=None, n_iter=None, tol=1e-6, max_iter=1000, mu0=None, return_q=True,
             check_every=8):
    """Device version of :func:`thermossl.sinkhorn` (same arguments and result; arrays on the device)."""
    from .balancing import _STATUS_MESSAGES, SinkhornResult, _iteration_controls, _warm_start

    T = positive_temperature(T)
    a = _energies(E)
    n, k = a.shape
    if n < 1 or k < 1:
        raise ValueError(f"E must have at least one sample and one state, got shape {a.shape}")
    w_dev = _distribution(a, w, n, "w", "sample")
    c_dev = _distribution(a, c, k, "c", "state")
    mu0_dev = None
    if mu0 is not None:
        mu0 = _warm_start(np.asarray(_host_vector(mu0, "mu0"), dtype=np.float64), k)
        mu0_dev = _upload(a, mu0.astype(a.dtype))
    fixed, limit, tol, _ = _iteration_controls(n_iter, tol, max_iter, 1.0)

    f = _empty(a, (n,))
    mu = _empty(a, (k,))
    q = _empty(a, (n, k)) if return_q else None
    charges = _empty(a, (k,), "float64")
    nbytes = int(_cuda.sinkhorn_workspace_bytes(n, k))
    workspace = _empty(a, ((nbytes + 7) // 8,), "float64")
    iterations, err, converged, status, index = _cuda.sinkhorn(
        a.dtype, a.device, _stream(a), a.matrix(), T, w_dev.ptr if w_dev else 0, c_dev.ptr if c_dev else 0,
        mu0_dev.ptr if mu0_dev else 0, fixed, float(tol), limit, f.ptr, mu.ptr, q.ptr if q else 0, charges.ptr,
        workspace.ptr, int(check_every),
    )
    if status:
        raise ValueError(_STATUS_MESSAGES[status].format(index=index))
    if not fixed and not converged:
        warnings.warn(
            f"sinkhorn did not converge in max_iter={limit} iterations: charge error {err:.3e} > tol={tol:g}",
            RuntimeWarning,
            stacklevel=3,
        )
    return SinkhornResult(q=q.obj if q else None, f=f.obj, mu=mu.obj, n_iter=int(iterations), err=float(err),
                          converged=bool(converged), charges=charges.obj)


_ROW_FIELDS = ("energy_q", "energy_p", "log_z", "entropy_q", "entropy_p", "relative_entropy", "loss", "label_mass")


def ledger_rows(q, E, T, w=None, *, mu=None):
    """Device version of :func:`thermossl.thermo.ledger_rows`: rows (dict of (N,) float64 device
    arrays), charges ((K,) float64 device array), validated host weights (float64 or None)."""
    from .thermo import _check_labels

    T = positive_temperature(T)
    a = _energies(E)
    qa = _wrap(q, "q", like=a)
    if qa.shape != a.shape:
        raise ValueError(f"q must have the shape of E {a.shape}, got {qa.shape}")
    n, k = a.shape
    if n == 0 or k == 0:
        raise ValueError(f"E must have at least one sample and one state, got shape {a.shape}")
    w_host = probability_vector(_host_vector(w, "w"), n, "w", "sample")
    w_dev = None if w_host is None else _upload(a, w_host.astype(a.dtype))
    keep, shift = _shift(a, mu, k, T)
    rows = {field: _empty(a, (n,), "float64") for field in _ROW_FIELDS}
    charges = _empty(a, (k,), "float64")
    _cuda.ledger_rows(a.dtype, a.device, _stream(a), qa.matrix(), a.matrix(), -1.0 / T, shift,
                      w_dev.ptr if w_dev else 0, {f: r.ptr for f, r in rows.items()}, charges.ptr)
    _check_rows(rows["log_z"])
    if not (_all_finite(rows["entropy_q"]) and _label_mass_ok(rows["label_mass"], a.dtype)):
        _check_labels(to_numpy(rows["entropy_q"].obj), to_numpy(rows["label_mass"].obj), np.dtype(a.dtype))
    return {f: r.obj for f, r in rows.items()}, charges.obj, w_host


def _label_mass_ok(mass: _Array, dtype: str) -> bool:
    tolerance = 1e-3 if dtype == "float32" else 1e-6
    if mass.lib == "torch":
        return bool(((mass.obj - 1.0).abs() <= tolerance).all().item())
    import cupy

    return bool((cupy.abs(mass.obj - 1.0) <= tolerance).all())
