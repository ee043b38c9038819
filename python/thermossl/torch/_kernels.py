"""Every call of thermossl.torch into the compiled kernels, in one place.

The functions here take torch tensors that the callers (ops.py, losses.py) have already
validated: 2-D matrices of any strides, outputs allocated with ``torch.empty`` (C-contiguous, of
the kernel dtype: the input's, float32 for half input). The row kernels, the ledger rows and the
Sinkhorn solver take the same arguments on both devices: raw addresses, matrices as (address,
rows, cols, row stride, col stride), after a device-specific head that ``_kernel`` binds — the
dtype name for the C++ core's host bindings (``thermossl._core.pointers``: float32, float64,
bfloat16 or float16, read in place; numpy has no bfloat16), the dtype name, device ordinal and
current stream for the CUDA kernels (``thermossl._cuda``). ``scale`` is the signed factor of the
exponent, x = scale * a + shift: -1/T on energies E, +1/T on scores, so E = -scores costs no pass.

This module is the single seam onto the backends: nothing else in thermossl.torch imports
``thermossl._core`` or ``thermossl._cuda``.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import _core
from .. import cuda as _device
from .._backends import LEDGER_FIELDS

try:
    from .. import _cuda
except ImportError:  # built without CUDA
    _cuda = None

__all__ = [
    "cuda_available",
    "row_logsumexp",
    "row_softmax",
    "row_log_softmax",
    "row_entropy",
    "row_entropy_grad",
    "row_cross_entropy",
    "sinkhorn",
    "sinkhorn_codes",
    "sharded_sinkhorn",
    "row_cross_entropy_block",
    "sela_sinkhorn",
]


def cuda_available() -> bool:
    """Whether the CUDA kernels were built and a device is visible."""
    return _device.is_available()


# ----------------------------------------------------------------------------------- backends
# Both backends take the same arguments after a device-specific head: a matrix is (address, rows,
# cols, row stride, col stride) with strides in elements, every other operand an address (0 =
# none). The host bindings (thermossl._core.pointers) take the dtype name first, the CUDA ones
# (thermossl._cuda) the dtype name, the device ordinal and the stream to launch on. _kernel binds
# that head, so each wrapper below prepares its arguments once for both devices.
_HOST = _core.pointers  # the row kernels on raw host addresses, half input included
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16",
                torch.float16: "float16"}
_CUDA_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _require_cuda(t: torch.Tensor) -> None:
    if _cuda is None:
        raise RuntimeError(
            "thermossl.torch got a CUDA tensor, but thermossl was built without its CUDA kernels "
            "(rebuild with nvcc available, THERMOSSL_CUDA=ON), or move the tensor to the CPU"
        )
    if not _device.is_available():
        raise RuntimeError("thermossl.torch got a CUDA tensor, but no CUDA device is available to thermossl")


def _cuda_sinkhorn(dtype, device, stream, E, T, w, c, mu0, fixed, tol, limit, f, mu, q, charges, relaxation,
                   energy_sign):
    """thermossl._cuda.sinkhorn with the host binding's arguments. ``relaxation`` is not used: the
    device solver runs plain Sinkhorn. Its workspace comes from torch's caching allocator on the
    device (freed by the allocator in stream order), the convergence test every 8 iterations."""
    nbytes = int(_cuda.sinkhorn_workspace_bytes(E[1], E[2]))
    workspace = torch.empty(((nbytes + 7) // 8,), dtype=torch.float64, device=torch.device("cuda", device))
    return _cuda.sinkhorn(dtype, device, stream, E, T, w, c, mu0, fixed, tol, limit, f, mu, q, charges,
                          workspace.data_ptr(), 8, energy_sign)


def _kernel(name: str, a: torch.Tensor):
    """The binding ``name`` for a's device with its head bound: (dtype name) on the host; (dtype
    name, device ordinal, current stream of the device) on CUDA, which raises RuntimeError when
    thermossl has no CUDA kernels or sees no device."""
    if a.is_cuda:
        _require_cuda(a)
        device = a.device.index if a.device.index is not None else torch.cuda.current_device()
        binding = _cuda_sinkhorn if name == "sinkhorn" else getattr(_cuda, name)
        return functools.partial(binding, _CUDA_DTYPES[a.dtype], device,
                                 int(torch.cuda.current_stream(device).cuda_stream))
    return functools.partial(getattr(_HOST, name), _DTYPE_NAMES[a.dtype])


def _matrix(t: torch.Tensor):
    rows, cols = t.shape
    return (t.data_ptr(), rows, cols, t.stride(0), t.stride(1))


def _kernel_dtype(a: torch.Tensor) -> torch.dtype:
    """The dtype the kernels compute and write in for input a: float32 for half input, else a's."""
    return torch.float32 if a.dtype in (torch.bfloat16, torch.float16) else a.dtype


def _address(t, a, shape, name: str, dtype=None, optional: bool = False) -> int:
    """The address of an operand the kernels read or write whole: a C-contiguous tensor of
    ``shape`` and ``dtype`` (default: the kernel dtype of a) on a's device; 0 for None when
    ``optional``. The kernels cannot check an address, so anything else is a ValueError here (a
    caller's bug), never a read or write past the end of a buffer."""
    if t is None and optional:
        return 0
    dtype = _kernel_dtype(a) if dtype is None else dtype
    if t is None or t.dtype != dtype or tuple(t.shape) != shape or t.device != a.device or not t.is_contiguous():
        got = "None" if t is None else f"{t.dtype} {tuple(t.shape)} on {t.device}"
        raise ValueError(f"thermossl.torch kernels: {name} must be a contiguous {dtype} tensor of shape {shape} on "
                         f"{a.device}, got {got}")
    return t.data_ptr()


def _shift(shift, a) -> int:
    """The address of the float64 (K,) shift of the exponent, or 0 for none."""
    return _address(shift, a, (a.shape[1],), "shift", torch.float64, optional=True)


def _labels(q, a, whole: bool = True) -> None:
    """Labels q against scores a: a's columns (and rows when ``whole``), a's device, a's dtype
    (float32 also for CPU half a: the mixed kernel)."""
    mixed = q.dtype == torch.float32 and a.dtype in (torch.bfloat16, torch.float16) and not a.is_cuda
    shape_ok = q.dim() == 2 and q.shape[1] == a.shape[1] and (not whole or q.shape[0] == a.shape[0])
    if not shape_ok or q.device != a.device or not (q.dtype == a.dtype or mixed):
        raise ValueError(f"thermossl.torch kernels: labels {q.dtype} {tuple(q.shape)} on {q.device} do not match "
                         f"scores {a.dtype} {tuple(a.shape)} on {a.device}")


def _host(t):
    """A numpy view of a CPU tensor (shares memory, keeps the strides); None passes through."""
    if t is None:
        return None
    return t.detach().numpy()  # real dtypes only: no conjugate or negative bit to resolve


# ----------------------------------------------------------------------------------- row kernels
# Outputs are C-contiguous tensors of the kernel dtype (float32 for half input, else the input's),
# shift a contiguous float64 vector or None.
def row_logsumexp(a, scale: float, shift, out) -> None:
    """out_i = log sum_j exp(scale a_ij + shift_j). One read of a."""
    n, k = a.shape
    _kernel("row_logsumexp", a)(_matrix(a), scale, _shift(shift, a), _address(out, a, (n,), "out"))


def row_softmax(a, scale: float, shift, p, log_z=None) -> None:
    """p = softmax_j(scale a_ij + shift_j), and log Z_i when asked. One read of a, one write of p."""
    n, k = a.shape
    _kernel("row_softmax", a)(_matrix(a), scale, _shift(shift, a), _address(p, a, (n, k), "p"),
                              _address(log_z, a, (n,), "log_z", optional=True))


def row_log_softmax(a, scale: float, shift, log_p) -> None:
    """log_p = log_softmax_j(scale a_ij + shift_j). One read of a, one write of log_p."""
    n, k = a.shape
    _kernel("row_log_softmax", a)(_matrix(a), scale, _shift(shift, a), _address(log_p, a, (n, k), "log_p"))


def row_entropy(a, scale: float, shift, entropy, log_z) -> None:
    """Entropy of each row's softmax, and log Z. One read of a."""
    n, k = a.shape
    _kernel("row_entropy", a)(_matrix(a), scale, _shift(shift, a), _address(entropy, a, (n,), "entropy"),
                              _address(log_z, a, (n,), "log_z", optional=True))


def row_entropy_grad(a, scale: float, shift, grad, log_z) -> None:
    """dS_i/da_ij of each row's softmax entropy. One read of a, one write of grad."""
    n, k = a.shape
    _kernel("row_entropy_grad", a)(_matrix(a), scale, _shift(shift, a), _address(grad, a, (n, k), "grad"), 0,
                                   _address(log_z, a, (n,), "log_z", optional=True))


def _cross_entropy_kernel(q, a):
    """The cross-entropy binding for labels q against scores a: q of a's dtype, or float32 labels
    against CPU half scores (the mixed kernel: the half scores read in place, converted in
    registers, no float32 copy of them; the CUDA module has no half kernels)."""
    return _kernel("row_cross_entropy" if q.dtype == a.dtype else "row_cross_entropy_float_labels", a)


def row_cross_entropy(q, a, scale: float, shift, loss, grad, log_z) -> None:
    """loss_i = -sum_j q_ij log softmax_j(scale a_ij + shift_j); grad = dloss_i/da_ij when given
    (scale (p_ij sum_j q_ij - q_ij)); log Z_i. q has a's dtype (CPU half a: also float32 q). One
    read of q and a, one write of grad."""
    n, k = a.shape
    _labels(q, a)
    _cross_entropy_kernel(q, a)(_matrix(q), _matrix(a), scale, _shift(shift, a), _address(loss, a, (n,), "loss"),
                                _address(grad, a, (n, k), "grad", optional=True),
                                _address(log_z, a, (n,), "log_z", optional=True))


def row_cross_entropy_block(q, q_row0: int, a, a_row0: int, rows: int, scale: float, loss, grad, log_z) -> None:
    """row_cross_entropy on row blocks, addressed without tensor views: labels q[q_row0 :
    q_row0 + rows] against a[a_row0 : a_row0 + rows], results into rows a_row0 ... of loss, grad
    (C-contiguous (N, K) of the kernel dtype) and log_z (both (N,)). q has a's dtype, or is
    float32 for CPU half a (read by the mixed kernel, a in place). One read of the two blocks, one
    write of the gradient block."""
    n, k = a.shape
    _labels(q, a, whole=False)
    if not (rows >= 0 and 0 <= q_row0 <= q.shape[0] - rows and 0 <= a_row0 <= n - rows):
        raise ValueError(f"thermossl.torch kernels: rows {q_row0}..{q_row0 + rows} of labels {tuple(q.shape)} "
                         f"against rows {a_row0}..{a_row0 + rows} of scores {tuple(a.shape)}")
    base = {name: _address(t, a, shape, name) for name, t, shape in
            (("loss", loss, (n,)), ("grad", grad, (n, k)), ("log_z", log_z, (n,)))}
    qm = (q.data_ptr() + q_row0 * q.stride(0) * q.element_size(), rows, k, q.stride(0), q.stride(1))
    am = (a.data_ptr() + a_row0 * a.stride(0) * a.element_size(), rows, k, a.stride(0), a.stride(1))
    out = loss.element_size() * a_row0
    loss_p, log_z_p = base["loss"] + out, base["log_z"] + out
    grad_p = base["grad"] + a_row0 * k * grad.element_size()
    _cross_entropy_kernel(q, a)(qm, am, scale, 0, loss_p, grad_p, log_z_p)


# ----------------------------------------------------------------------------------- Sinkhorn
def sinkhorn(E, T: float, w, c, mu0, fixed: int, tol: float, limit: int, f, mu, q, charges, *,
             energy_sign: float, relaxation: float = 1.0):
    """The whole Sinkhorn loop of thermossl.sinkhorn on energies E (N, K) at T.

    energy_sign -1: ``E`` holds scores s and the energies are -s, read by the kernel with a
    signed scale (no negated copy). E may be bfloat16 or float16 on the CPU (read in place,
    computed in float32). w, c, mu0: contiguous vectors of the kernel dtype (E's, float32 for
    half E) or None; outputs f (N,), mu (K,), q (N, K) or None of the kernel dtype, charges
    (K,) float64 or None. relaxation: the mu-update's over-relaxation (<= 0 automatic; CPU only,
    the device solver runs plain Sinkhorn). Returns (iterations, err, converged, status, index)
    as the core reports them (status != 0: bad rows, see thermossl._messages.SINKHORN_STATUS).
    """
    n, k = E.shape
    return _kernel("sinkhorn", E)(
        _matrix(E), T, _address(w, E, (n,), "w", optional=True), _address(c, E, (k,), "c", optional=True),
        _address(mu0, E, (k,), "mu0", optional=True), fixed, tol, limit, _address(f, E, (n,), "f"),
        _address(mu, E, (k,), "mu"), _address(q, E, (n, k), "q", optional=True),
        _address(charges, E, (k,), "charges", torch.float64, optional=True), relaxation, energy_sign)


def sinkhorn_codes(scores, T: float, n_iter: int, q, context: str):
    """SwAV's codes: ``n_iter`` Sinkhorn iterations at T on the energies E = -scores (read in
    place with a signed scale, no negated copy), uniform weights and charges; q (N, K) of the
    scores' kernel dtype (float32 for half scores) written by the last pass. Returns (f (N,)
    float64 numpy, mu (K,) float64 numpy, charge error). Bad rows raise ValueError, the message
    prefixed by ``context``. bfloat16/float16 CPU scores are read in place by the solver
    (converted in registers, computed in float32: no float32 copy of the scores)."""
    from .._messages import SINKHORN_STATUS

    n, k = scores.shape
    dtype = q.dtype  # the kernel dtype
    f = torch.empty(n, dtype=dtype, device=scores.device)
    mu = torch.empty(k, dtype=dtype, device=scores.device)
    _, err, _, status, index = sinkhorn(scores, T, None, None, None, n_iter, 1e-6, 1000, f, mu, q, None,
                                        energy_sign=-1.0)
    if status:
        raise ValueError(context + SINKHORN_STATUS[status].format(index=index).removeprefix("E "))
    return f.to(torch.float64).cpu().numpy(), mu.to(torch.float64).cpu().numpy(), float(err)


def sharded_sinkhorn(scores, T: float, n_iter: int, *, energy_sign: float, group=None):
    """Sinkhorn over the rows of every rank of the initialised torch.distributed group (SwAV's
    distributed_sinkhorn: uniform weights over all ranks' rows, one all-reduce of the charges per
    iteration), by thermossl.distributed.sinkhorn on CPU tensors; ``energy_sign`` -1: the
    tensor holds scores and the energies are -scores (read with a signed scale, no negated
    copy). Returns this rank's q as a tensor (the input's dtype), the global mu (float64 numpy)
    and the charge error."""
    from .. import distributed as _distributed

    result = _distributed.sinkhorn(_host(scores), T, n_iter=n_iter, comm=_distributed.TorchComm(group=group),
                                   energy_sign=energy_sign)
    return torch.from_numpy(result.q), np.asarray(result.mu, dtype=np.float64), float(result.err)


def sela_sinkhorn(scores, T: float, tol: float, max_iter: int, mu0, relaxation, *, distributed: bool, group=None):
    """Sinkhorn to tolerance over a whole data set's energies E = -scores (this rank's rows; all
    ranks' when ``distributed``), warm-started from mu0 (numpy or None). In one process the
    kernel reads the scores in place with a signed scale (no negated copy; CUDA scores are
    copied to the host, where the solver has the adaptive over-relaxation); sharded, by
    thermossl.distributed.sinkhorn with the same signed scale (no negation pass either).
    Returns (q tensor on the scores' device, f, mu (numpy), n_iter, err, converged)."""
    from .. import _status
    from .. import distributed as _distributed
    from .._validation import iteration_controls

    host = scores.cpu()  # the same tensor on the CPU
    if distributed:
        result = _distributed.sinkhorn(_host(host), T, tol=tol, max_iter=max_iter, mu0=mu0, relaxation=relaxation,
                                       comm=_distributed.TorchComm(group=group), energy_sign=-1.0)
        q = torch.from_numpy(result.q).to(scores.device)
        return q, result.f, result.mu, result.n_iter, result.err, result.converged
    _, limit, tol, omega = iteration_controls(None, tol, max_iter, relaxation)
    n, k = host.shape
    dtype = host.dtype
    f = torch.empty(n, dtype=dtype)
    mu = torch.empty(k, dtype=dtype)
    q = torch.empty((n, k), dtype=dtype)
    warm = None if mu0 is None else torch.as_tensor(np.ascontiguousarray(mu0), dtype=dtype)
    iterations, err, converged, status, index = sinkhorn(host, T, None, None, warm, 0, tol, limit, f, mu, q, None,
                                                         energy_sign=-1.0, relaxation=omega)
    if status:
        raise _status.sinkhorn_error(status, index)
    if not converged:
        _status.warn_not_converged(limit, err, tol, 4, iterations=int(iterations), mu=mu.numpy(), T=T)
    return q.to(scores.device), f.numpy(), mu.numpy(), int(iterations), float(err), bool(converged)


# ----------------------------------------------------------------------------------- ledger rows
def ledger_rows(q, a, scale: float, shift, w, rows: dict, charges) -> None:
    """The per-row state functions of a ledger row of labels q against p = softmax(scale a +
    shift) into ``rows`` (a dict of float64 (N,) tensors named as LEDGER_FIELDS; any may be
    missing) and the charges sum_i w_i q_iy into ``charges`` (float64 (K,)), in one read of q and
    a (q and a of one dtype, float32 or float64; w of a's dtype or None for 1/N). On the
    device's current stream for CUDA tensors (no synchronisation)."""
    n, k = a.shape
    _labels(q, a)
    _kernel("ledger_rows", a)(_matrix(q), _matrix(a), scale, _shift(shift, a), _address(w, a, (n,), "w", optional=True),
                              {name: _address(t, a, (n,), name, torch.float64) for name, t in rows.items()},
                              _address(charges, a, (k,), "charges", torch.float64, optional=True))


def row_difference_dot(u, v, w):
    """out_i = sum_y u_iy (v_iy - w_iy) (float64 (N,)), skipping u = 0 or v = w: one read of each.
    CUDA tensors (no kernel there yet): by torch on the device, without synchronisation."""
    if u.is_cuda:
        diff = torch.where((u != 0) & (v != w), u * (v - w), u.new_zeros(()))
        return diff.sum(1, dtype=torch.float64)
    out = torch.empty(u.shape[0], dtype=torch.float64)
    _core.row_difference_dot(_host(u), _host(v), _host(w), _host(out))
    return out


def softmax_expectation(a, scale: float, v, log_z):
    """sum_y p_iy v_y per row (float64 (N,)) for p_i = softmax(scale a_i) with log Z_i = log_z
    (float64, from another kernel) and v (K,) float64: one read of a. CPU: the weighted
    log-sum-exp kernel with the weights v broadcast over the rows (row stride 0, no copy) and
    their sign; CUDA (no weighted kernel there yet): by torch on the device, without
    synchronisation."""
    n, k = a.shape
    if a.is_cuda:
        return torch.softmax(a.to(torch.float64) * scale, 1) @ v
    weights = v.to(a.dtype).expand(n, k)
    out = torch.empty(n, dtype=a.dtype)
    sign = torch.empty(n, dtype=a.dtype)
    _core.row_logsumexp(_host(a), scale, None, _host(weights), _host(out), _host(sign))
    return sign.to(torch.float64) * torch.exp(out.to(torch.float64) - log_z)
