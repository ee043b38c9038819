"""PyTorch operators over the thermossl kernels, registered with ``torch.library``.

Each operator is a custom op (namespace ``thermossl``) with a fake kernel (shapes and dtypes,
for ``torch.compile`` and meta tensors), an autograd formula and an autocast rule; the wrappers
below give them torch-style signatures. CPU tensors are read in place by the C++ core (any
strides) and results are written into tensors allocated with ``torch.empty``; CUDA tensors go to
the CUDA kernels on the current stream (see ``_kernels``).

dtypes: float32 and float64 are computed natively. float16 and bfloat16 are accepted and returned
in the input dtype: on the CPU the row kernels read the half matrix itself (converted to float32
in registers, no converted copy of the input), compute in float32 and write float32; the op casts
the results to the input dtype (per-row results: a vector; matrix results — gibbs, softmax,
log_softmax, the entropy gradient — one pass over the output). ``sinkhorn`` reads CPU half
input the same way (its q is cast to the input dtype: one pass over the output), and so do the
losses (``SwAVLoss``, ``DINOLoss``: half student scores against float32 labels, by the mixed
cross-entropy kernel). CUDA tensors still convert half input to float32 first (one pass). Integer and bool input of ``logsumexp``/``softmax``/``log_softmax`` computes in the
default float dtype, as torch's own. Under ``torch.autocast`` every op runs in float32 (the
policy of torch's softmax family) and returns float32.

Temperatures ``T`` are Python numbers or 0-d tensors (no gradient flows to T: a T that requires
grad is refused). Gradients are first-order only (second derivatives raise).
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from . import _kernels

__all__ = [
    "log_partition",
    "gibbs",
    "gibbs_entropy",
    "cross_entropy",
    "logsumexp",
    "softmax",
    "log_softmax",
    "sinkhorn",
    "SinkhornResult",
]

_HALF = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ============================================================================ shared helpers
def _kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


def _row_input(x: Tensor) -> Tensor:
    """x as the row kernels read it: CPU tensors of every supported dtype as they are (half
    input is converted in registers inside the kernel, which computes and writes float32);
    CUDA half tensors converted to float32 (the CUDA kernels have no half input yet)."""
    return x.float() if x.is_cuda and x.dtype in _HALF else x


def _resolve_T(T: float, T_tensor: Optional[Tensor], name: str = "T") -> float:
    """The temperature as a float: T, or the value of the 0-d tensor T_tensor (validated here,
    where its value is known)."""
    if T_tensor is not None:
        T = float(T_tensor)
    if not (math.isfinite(T) and T > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {T!r}")
    return T


def _check_rows(log_z: Tensor, name: str) -> None:
    """Raise for rows without a Gibbs state (nan, -inf, every state forbidden), from log Z."""
    if log_z.is_cuda:
        if bool(torch.isfinite(log_z).all()):  # one scalar synchronisation
            return
        log_z = log_z.cpu()
    from .. import _status
    from .._backends import cpu

    _status.check_rows(cpu, log_z.detach().numpy(), name)


def _shift(mu: Optional[Tensor], T: float) -> Optional[Tensor]:
    """mu / T as the contiguous float64 vector the kernels add to each row's exponent (on E's
    device: the wrappers check it, the kernels' operand checks refuse any other)."""
    if mu is None:
        return None
    if not bool(torch.isfinite(mu).all()):
        raise ValueError("mu must be finite")
    return (mu.to(torch.float64) / T).contiguous()


def _split_T(T, name: str = "T"):
    """(float T, 0-d tensor or None) for the ops; validates what can be validated without data."""
    if isinstance(T, Tensor):
        if T.dim() != 0:
            raise ValueError(f"{name} must be a number or a 0-d tensor, got a tensor of shape {tuple(T.shape)}")
        if T.dtype.is_complex or T.dtype == torch.bool:
            raise TypeError(f"{name} must be real, got dtype {T.dtype}")
        if T.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"{name}: gradients with respect to the temperature are not supported; pass {name}.detach()")
        return 1.0, T.detach()
    if isinstance(T, bool) or not isinstance(T, numbers.Real):
        raise TypeError(f"{name} must be a real number or a 0-d tensor, got {type(T).__name__}")
    T = float(T)
    if not (math.isfinite(T) and T > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {T!r}")
    return T, None


def _T_value(T: float, T_tensor: Optional[Tensor]):
    """T for tensor arithmetic in a backward formula (the tensor when one was given)."""
    return T_tensor if T_tensor is not None else T


def _prod(sizes) -> int:
    out = 1
    for s in sizes:
        out *= s
    return out


def _check_tensor(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.dtype not in _SUPPORTED:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    return x


def _energies(E, name: str = "E") -> Tensor:
    """E as a 2-D (rows, K) view: (N, K) as is, (..., K) flattened (a view when torch can)."""
    E = _check_tensor(E, name)
    if E.dim() < 2:
        raise ValueError(f"{name} must have shape (N, K) or (..., N, K), got ndim={E.dim()}")
    if E.shape[-1] == 0 and _prod(E.shape[:-1]) > 0:
        raise ValueError(f"{name} must have at least one state per row (K >= 1), got shape {tuple(E.shape)}")
    # the row count spelt out: reshape(-1, 0) is ambiguous for an empty batch of empty rows
    return E.reshape(_prod(E.shape[:-1]), E.shape[-1])


def _potentials(mu, E: Tensor, name: str = "mu") -> Optional[Tensor]:
    if mu is None:
        return None
    mu = _check_tensor(mu, name)
    if tuple(mu.shape) != (E.shape[1],):  # E: the (rows, K) view
        raise ValueError(f"{name} must have shape ({E.shape[1]},) (one value per state), got {tuple(mu.shape)}")
    if mu.device != E.device:
        raise ValueError(f"{name} must be on E's device {E.device}, got {mu.device}")
    return mu


def _no_double_backward() -> None:
    """The backward formulas use saved kernel results that are not differentiable functions of
    the inputs: a graph of the backward (create_graph=True) would give wrong second derivatives."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError("thermossl.torch ops support first derivatives only (create_graph=True is not supported)")


def _register_autocast(op) -> None:
    # The policy of torch's softmax family: computed in float32 under autocast.
    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast(op, device_type, torch.float32)


# ============================================================================ log_partition
@torch.library.custom_op("thermossl::log_partition", mutates_args=())
def _log_partition(E: Tensor, T: float, T_tensor: Optional[Tensor], mu: Optional[Tensor]) -> Tensor:
    T = _resolve_T(T, T_tensor)
    a = _row_input(E)
    out = torch.empty(a.shape[0], dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.shape[0]:
        _kernels.row_logsumexp(a, -1.0 / T, _shift(mu, T), out)
        _check_rows(out, "E")
    return out.to(E.dtype)


@_log_partition.register_fake
def _(E, T, T_tensor, mu):
    return E.new_empty(E.shape[:1])


def _log_partition_setup(ctx, inputs, output):
    E, T, T_tensor, mu = inputs
    ctx.T = T
    ctx.save_for_backward(E, T_tensor, mu)


def _log_partition_backward(ctx, grad):
    _no_double_backward()
    E, T_tensor, mu = ctx.saved_tensors
    p = _gibbs(E, ctx.T, T_tensor, mu)  # d log Z_i / dE_iy = -p_iy / T
    weighted = grad.unsqueeze(1) * p
    Tv = _T_value(ctx.T, T_tensor)
    # (autograd casts each gradient to its input's dtype: float32 mu with float64 E gets float32)
    grad_E = -weighted / Tv if ctx.needs_input_grad[0] else None
    grad_mu = weighted.sum(0) / Tv if ctx.needs_input_grad[3] else None  # False when mu is None
    return grad_E, None, None, grad_mu


_log_partition.register_autograd(_log_partition_backward, setup_context=_log_partition_setup)
_register_autocast(_log_partition)


# ============================================================================ gibbs
@torch.library.custom_op("thermossl::gibbs", mutates_args=())
def _gibbs(E: Tensor, T: float, T_tensor: Optional[Tensor], mu: Optional[Tensor]) -> Tensor:
    T = _resolve_T(T, T_tensor)
    a = _row_input(E)
    p = torch.empty(a.shape, dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.shape[0]:
        log_z = torch.empty(a.shape[0], dtype=_kernel_dtype(a.dtype), device=a.device)
        _kernels.row_softmax(a, -1.0 / T, _shift(mu, T), p, log_z)
        _check_rows(log_z, "E")
    return p.to(E.dtype)


@_gibbs.register_fake
def _(E, T, T_tensor, mu):
    return torch.empty_like(E, memory_format=torch.contiguous_format)


def _gibbs_setup(ctx, inputs, output):
    _, T, T_tensor, _ = inputs
    ctx.T = T
    ctx.save_for_backward(output, T_tensor)


def _gibbs_backward(ctx, grad):
    _no_double_backward()
    p, T_tensor = ctx.saved_tensors
    # dp_iy/dE_iz = -(1/T) p_iy (delta_yz - p_iz): grad_E = -(1/T) p (g - sum_y g p).
    centred = p * (grad - (grad * p).sum(1, keepdim=True))
    Tv = _T_value(ctx.T, T_tensor)
    grad_E = -centred / Tv if ctx.needs_input_grad[0] else None
    grad_mu = centred.sum(0) / Tv if ctx.needs_input_grad[3] else None  # False when mu is None
    return grad_E, None, None, grad_mu


_gibbs.register_autograd(_gibbs_backward, setup_context=_gibbs_setup)
_register_autocast(_gibbs)


# ============================================================================ gibbs_entropy
@torch.library.custom_op("thermossl::gibbs_entropy", mutates_args=())
def _gibbs_entropy(E: Tensor, T: float, T_tensor: Optional[Tensor]) -> Tensor:
    T = _resolve_T(T, T_tensor)
    a = _row_input(E)
    entropy = torch.empty(a.shape[0], dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.shape[0]:
        log_z = torch.empty_like(entropy)
        _kernels.row_entropy(a, -1.0 / T, None, entropy, log_z)
        _check_rows(log_z, "E")
    return entropy.to(E.dtype)


@_gibbs_entropy.register_fake
def _(E, T, T_tensor):
    return E.new_empty(E.shape[:1])


@torch.library.custom_op("thermossl::entropy_grad", mutates_args=())
def _entropy_grad(E: Tensor, T: float, T_tensor: Optional[Tensor]) -> Tensor:
    """dS_i/dE_iy = (1/T) p_iy (log p_iy + S_i), one pass (the backward of gibbs_entropy)."""
    T = _resolve_T(T, T_tensor)
    a = _row_input(E)
    grad = torch.empty(a.shape, dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.shape[0]:
        log_z = torch.empty(a.shape[0], dtype=_kernel_dtype(a.dtype), device=a.device)
        _kernels.row_entropy_grad(a, -1.0 / T, None, grad, log_z)
        _check_rows(log_z, "E")
    return grad.to(E.dtype)


@_entropy_grad.register_fake
def _(E, T, T_tensor):
    return torch.empty_like(E, memory_format=torch.contiguous_format)


def _gibbs_entropy_setup(ctx, inputs, output):
    E, T, T_tensor = inputs
    ctx.T = T
    ctx.save_for_backward(E, T_tensor)


def _gibbs_entropy_backward(ctx, grad):
    _no_double_backward()
    E, T_tensor = ctx.saved_tensors
    return grad.unsqueeze(1) * _entropy_grad(E, ctx.T, T_tensor), None, None


_gibbs_entropy.register_autograd(_gibbs_entropy_backward, setup_context=_gibbs_entropy_setup)
_register_autocast(_gibbs_entropy)
_register_autocast(_entropy_grad)


# ============================================================================ cross_entropy
@torch.library.custom_op("thermossl::cross_entropy", mutates_args=())
def _cross_entropy(q: Tensor, E: Tensor, T: float, T_tensor: Optional[Tensor], with_grad: bool
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """(L_i = -sum_y q_iy log p_iy, dL_i/dE (empty unless with_grad), log Z_i), one fused pass."""
    T = _resolve_T(T, T_tensor)
    a = _row_input(E)
    qk = q.to(a.dtype)
    n, k = a.shape
    loss = torch.empty(n, dtype=_kernel_dtype(a.dtype), device=a.device)
    log_z = torch.empty(n, dtype=_kernel_dtype(a.dtype), device=a.device)
    grad = torch.empty((n, k) if with_grad else (0, k), dtype=_kernel_dtype(a.dtype), device=a.device)
    if n:
        _kernels.row_cross_entropy(qk, a, -1.0 / T, None, loss, grad if with_grad else None, log_z)
        _check_rows(log_z, "E")
        if bool(torch.isnan(loss).any()):
            row = int(torch.nonzero(torch.isnan(loss))[0, 0])
            raise ValueError(f"q contains NaN or inf (row {row})")
    return loss.to(E.dtype), grad.to(E.dtype), log_z


@_cross_entropy.register_fake
def _(q, E, T, T_tensor, with_grad):
    n, k = E.shape
    return (E.new_empty((n,)), E.new_empty((n, k) if with_grad else (0, k)),
            E.new_empty((n,), dtype=_kernel_dtype(E.dtype)))


def _cross_entropy_setup(ctx, inputs, output):
    q, E, T, T_tensor, with_grad = inputs
    _, grad, log_z = output
    ctx.T = T
    ctx.with_grad = with_grad
    ctx.mark_non_differentiable(grad, log_z)
    ctx.save_for_backward(E, T_tensor, grad, log_z)


def _cross_entropy_backward(ctx, grad_loss, _grad_grad, _grad_log_z):
    _no_double_backward()
    E, T_tensor, grad, log_z = ctx.saved_tensors
    g = grad_loss.unsqueeze(1)
    grad_q = grad_E = None
    if ctx.needs_input_grad[1]:
        if not ctx.with_grad:
            raise RuntimeError("thermossl cross_entropy was called without its gradient; call it with grad enabled")
        grad_E = g * grad  # the fused kernel's dL_i/dE_iy = (q_iy - p_iy sum q_i) / T
    if ctx.needs_input_grad[0]:
        # dL_i/dq_iy = -log p_iy = E_iy / T + log Z_i.
        grad_q = g * (E / _T_value(ctx.T, T_tensor) + log_z.unsqueeze(1))
    return grad_q, grad_E, None, None, None


_cross_entropy.register_autograd(_cross_entropy_backward, setup_context=_cross_entropy_setup)
_register_autocast(_cross_entropy)


# ============================================================================ logsumexp, softmax, log_softmax (rows)
@torch.library.custom_op("thermossl::logsumexp_rows", mutates_args=())
def _logsumexp_rows(x: Tensor) -> Tensor:
    a = _row_input(x)
    out = torch.empty(a.shape[0], dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.shape[1] == 0:
        out.fill_(-math.inf)
    elif a.shape[0]:
        _kernels.row_logsumexp(a, 1.0, None, out)
    return out.to(x.dtype)


@_logsumexp_rows.register_fake
def _(x):
    return x.new_empty(x.shape[:1])


def _save_input_and_output(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], output)


def _logsumexp_backward(ctx, grad):
    _no_double_backward()
    x, out = ctx.saved_tensors
    return grad.unsqueeze(1) * torch.exp(x - out.unsqueeze(1))


_logsumexp_rows.register_autograd(_logsumexp_backward, setup_context=_save_input_and_output)
_register_autocast(_logsumexp_rows)


@torch.library.custom_op("thermossl::softmax_rows", mutates_args=())
def _softmax_rows(x: Tensor) -> Tensor:
    a = _row_input(x)
    p = torch.empty(a.shape, dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.numel():
        _kernels.row_softmax(a, 1.0, None, p)
    return p.to(x.dtype)


@_softmax_rows.register_fake
def _(x):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _save_output(ctx, inputs, output):
    ctx.save_for_backward(output)


def _softmax_backward(ctx, grad):
    _no_double_backward()
    (p,) = ctx.saved_tensors
    return p * (grad - (grad * p).sum(1, keepdim=True))


_softmax_rows.register_autograd(_softmax_backward, setup_context=_save_output)
_register_autocast(_softmax_rows)


@torch.library.custom_op("thermossl::log_softmax_rows", mutates_args=())
def _log_softmax_rows(x: Tensor) -> Tensor:
    a = _row_input(x)
    out = torch.empty(a.shape, dtype=_kernel_dtype(a.dtype), device=a.device)
    if a.numel():
        _kernels.row_log_softmax(a, 1.0, None, out)
    return out.to(x.dtype)


@_log_softmax_rows.register_fake
def _(x):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _log_softmax_backward(ctx, grad):
    _no_double_backward()
    (log_p,) = ctx.saved_tensors
    return grad - torch.exp(log_p) * grad.sum(1, keepdim=True)


_log_softmax_rows.register_autograd(_log_softmax_backward, setup_context=_save_output)
_register_autocast(_log_softmax_rows)


# ============================================================================ sinkhorn
@torch.library.custom_op("thermossl::sinkhorn", mutates_args=())
def _sinkhorn(E: Tensor, T: float, T_tensor: Optional[Tensor], n_iter: int, tol: float, max_iter: int,
              w: Optional[Tensor], c: Optional[Tensor], mu0: Optional[Tensor], energy_sign: float
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .. import _status

    T = _resolve_T(T, T_tensor)
    a = _row_input(E)  # CPU half input is read by the solver itself (float32 vectors and q)
    dtype = _kernel_dtype(a.dtype)
    n, k = a.shape
    vectors = []
    for v, name, length in ((w, "w", n), (c, "c", k)):
        if v is not None:
            v = v.to(torch.float64)
            if not (bool(torch.isfinite(v).all()) and bool((v > 0).all())):
                raise ValueError(f"{name} must be finite and > 0 everywhere")
            total = float(v.sum())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"{name} must sum to 1, got {total!r}")
            v = v.to(dtype).contiguous()
        vectors.append(v)
    if mu0 is not None:
        if not bool(torch.isfinite(mu0).all()):
            raise ValueError("mu0 must be finite")
        mu0 = mu0.to(dtype).contiguous()
    f = torch.empty(n, dtype=dtype, device=a.device)
    mu = torch.empty(k, dtype=dtype, device=a.device)
    q = torch.empty((n, k), dtype=dtype, device=a.device)
    charges = torch.empty(k, dtype=torch.float64, device=a.device)
    iterations, err, converged, status, index = _kernels.sinkhorn(
        a, T, vectors[0], vectors[1], mu0, n_iter, tol, max_iter, f, mu, q, charges, energy_sign=energy_sign
    )
    if status:
        raise _status.sinkhorn_error(status, index)
    if not n_iter and not converged:
        _status.warn_not_converged(max_iter, err, tol, stacklevel=1)
    info_int = torch.tensor([int(iterations), int(bool(converged))], dtype=torch.int64)
    return (q.to(E.dtype), f.to(E.dtype), mu.to(E.dtype), info_int[0].clone(),
            torch.tensor(float(err), dtype=torch.float64), info_int[1].bool(), charges)


@_sinkhorn.register_fake
def _(E, T, T_tensor, n_iter, tol, max_iter, w, c, mu0, energy_sign):
    n, k = E.shape
    return (E.new_empty((n, k)), E.new_empty((n,)), E.new_empty((k,)), torch.empty((), dtype=torch.int64),
            torch.empty((), dtype=torch.float64), torch.empty((), dtype=torch.bool),
            E.new_empty((k,), dtype=torch.float64))


_register_autocast(_sinkhorn)


class SinkhornResult(NamedTuple):
    """The fields of :class:`thermossl.SinkhornResult`, as tensors.

    Parameters
    ----------
    q : torch.Tensor, shape (N, K)
        The label state, on E's device in E's dtype.
    f : torch.Tensor, shape (N,)
        Row potentials, on E's device in E's dtype.
    mu : torch.Tensor, shape (K,)
        Chemical potentials, on E's device in E's dtype.
    n_iter : torch.Tensor
        0-d int64 on the CPU.
    err : torch.Tensor
        0-d float64 on the CPU.
    converged : torch.Tensor
        0-d bool on the CPU.
    charges : torch.Tensor, shape (K,)
        float64 on E's device.
    """

    q: Tensor
    f: Tensor
    mu: Tensor
    n_iter: Tensor
    err: Tensor
    converged: Tensor
    charges: Tensor


# ============================================================================ public wrappers
def log_partition(E: Tensor, T: Union[float, Tensor] = 1.0, mu: Optional[Tensor] = None) -> Tensor:
    """log Z_i = log sum_y exp((mu_y - E_iy) / T) per row of E; differentiable in E and mu.

    Parameters
    ----------
    E : torch.Tensor, shape (..., K)
        Energies (= -scores), float32 or float64 (bfloat16 and float16 computed in float32), CPU or
        CUDA, any strides; +inf forbids a state.
    T : float or torch.Tensor, optional
        Temperature > 0, a number or a 0-d tensor (no gradient to T).
    mu : torch.Tensor, shape (K,), optional
        Chemical potentials.

    Returns
    -------
    torch.Tensor, shape (...)
        log Z, of E's shape without the last axis.

    Raises
    ------
    TypeError
        If an input is not a dense real tensor.
    ValueError
        If a shape, device or ``T`` is wrong, or a row is not valid (nan, -inf, every state
        forbidden); the message names the argument.
    """
    T, T_tensor = _split_T(T)
    rows = _energies(E)
    out = _log_partition(rows, T, T_tensor, _potentials(mu, rows))
    return out.reshape(E.shape[:-1])


def gibbs(E: Tensor, T: Union[float, Tensor] = 1.0, mu: Optional[Tensor] = None) -> Tensor:
    """The Gibbs state p = softmax((mu - E) / T) over the last axis (E = +inf: exactly 0).

    Differentiable in E and mu.

    Parameters
    ----------
    E : torch.Tensor, shape (..., K)
        Energies (= -scores), float32 or float64 (bfloat16 and float16 computed in float32), CPU or
        CUDA, any strides; +inf forbids a state.
    T : float or torch.Tensor, optional
        Temperature > 0, a number or a 0-d tensor (no gradient to T).
    mu : torch.Tensor, shape (K,), optional
        Chemical potentials.

    Returns
    -------
    torch.Tensor, shape (..., K)
        The Gibbs state.

    Raises
    ------
    TypeError
        If an input is not a dense real tensor.
    ValueError
        If a shape, device or ``T`` is wrong, or a row is not valid (nan, -inf, every state
        forbidden); the message names the argument.
    """
    T, T_tensor = _split_T(T)
    rows = _energies(E)
    return _gibbs(rows, T, T_tensor, _potentials(mu, rows)).reshape(E.shape)


def gibbs_entropy(E: Tensor, T: Union[float, Tensor] = 1.0) -> Tensor:
    """S_i = -sum_y p_iy log p_iy of the Gibbs state of each row, without materialising p.

    Differentiable in E (backward: one fused pass, dS/dE = p (log p + S) / T).

    Parameters
    ----------
    E : torch.Tensor, shape (..., K)
        Energies (= -scores), float32 or float64 (bfloat16 and float16 computed in float32), CPU or
        CUDA, any strides; +inf forbids a state.
    T : float or torch.Tensor, optional
        Temperature > 0, a number or a 0-d tensor (no gradient to T).

    Returns
    -------
    torch.Tensor, shape (...)
        The entropy per row.

    Raises
    ------
    TypeError
        If an input is not a dense real tensor.
    ValueError
        If a shape, device or ``T`` is wrong, or a row is not valid (nan, -inf, every state
        forbidden); the message names the argument.
    """
    T, T_tensor = _split_T(T)
    rows = _energies(E)
    return _gibbs_entropy(rows, T, T_tensor).reshape(E.shape[:-1])


def cross_entropy(q: Tensor, E: Tensor, T: Union[float, Tensor] = 1.0) -> Tensor:
    """L_i = -sum_y q_iy log p_iy with p = Gibbs(E, T), per row (the SSL loss of labels q).

    The gradient in E, (q - p sum_y q)/T, comes from the same fused pass as the loss when a
    gradient is needed; the gradient in q is -log p = E/T + log Z. q need not be normalised.

    Parameters
    ----------
    q : torch.Tensor, shape (..., K)
        Labels, of E's shape and device.
    E : torch.Tensor, shape (..., K)
        Energies (= -scores), float32 or float64 (bfloat16 and float16 computed in float32), CPU or
        CUDA, any strides; +inf forbids a state.
    T : float or torch.Tensor, optional
        Temperature > 0, a number or a 0-d tensor (no gradient to T).

    Returns
    -------
    torch.Tensor, shape (...)
        The loss per row.

    Raises
    ------
    TypeError
        If an input is not a dense real tensor.
    ValueError
        If a shape, device or ``T`` is wrong, or a row is not valid (nan, -inf, every state
        forbidden); the message names the argument.
    """
    T, T_tensor = _split_T(T)
    q = _check_tensor(q, "q")
    rows = _energies(E)
    if q.shape != E.shape:
        raise ValueError(f"q must have the shape of E {tuple(E.shape)}, got {tuple(q.shape)}")
    if q.device != E.device:
        raise ValueError(f"q must be on E's device {E.device}, got {q.device}")
    q_rows = q.reshape(rows.shape)
    if q_rows.dtype != rows.dtype:
        common = torch.promote_types(q_rows.dtype, rows.dtype)
        q_rows, rows = q_rows.to(common), rows.to(common)
    with_grad = torch.is_grad_enabled() and (q.requires_grad or E.requires_grad)
    loss, _, _ = _cross_entropy(q_rows, rows, T, T_tensor, with_grad)
    return loss.reshape(E.shape[:-1])


def _float_input(x, name: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.dtype.is_complex:
        raise TypeError(f"{name}: complex input (dtype {x.dtype}) is not supported")
    if not x.dtype.is_floating_point:
        return x.to(torch.get_default_dtype())  # integers and bool, as torch.logsumexp/softmax
    return _check_tensor(x, name)


def _dims(dim, ndim: int) -> tuple:
    """dim as a tuple of axes in [0, ndim) (the callers give 0-d input one axis first)."""
    dims = tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
        if not -ndim <= d < ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {d})")
        out.append(d % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"dim {dim!r} names a dimension twice")
    return tuple(out)


def _to_rows(x: Tensor, dims: tuple):
    """x as a 2-D (kept, reduced) matrix (a view when torch can make one) and the permuted shape."""
    kept = tuple(i for i in range(x.dim()) if i not in dims)
    order = kept + dims
    n_rows = _prod([x.shape[i] for i in kept])
    n_cols = _prod([x.shape[i] for i in dims])
    return x.permute(order).reshape(n_rows, n_cols), order  # permute: a view, also in order


def logsumexp(x: Tensor, dim: Union[int, Sequence[int]] = -1, keepdim: bool = False) -> Tensor:
    """log sum exp over ``dim``, as ``torch.logsumexp``; differentiable.

    Parameters
    ----------
    x : torch.Tensor
        Input (integers and bool compute in the default float dtype).
    dim : int or tuple of int, optional
        The dimensions to reduce.
    keepdim : bool, optional
        Keep the reduced dimensions with size 1.

    Returns
    -------
    torch.Tensor
        The reduction.

    Raises
    ------
    TypeError
        If ``x`` is not a dense real tensor or ``dim`` is not an int or a tuple of ints.
    IndexError
        If a dimension is out of range.
    ValueError
        If ``dim`` names a dimension twice.
    """
    x = _float_input(x)
    scalar = x.dim() == 0
    if scalar:
        x = x.reshape(1)
    dims = _dims(dim, x.dim())
    rows, _ = _to_rows(x, dims)
    out = _logsumexp_rows(rows)
    if scalar:
        return out.reshape(())
    shape = [1 if i in dims else s for i, s in enumerate(x.shape)] if keepdim else \
        [s for i, s in enumerate(x.shape) if i not in dims]
    return out.reshape(shape)


def _row_transform(op, x: Tensor, dim: int, dtype) -> Tensor:
    x = _float_input(x)
    if dtype is not None:
        x = x.to(dtype)
    if x.dim() == 0:
        return op(x.reshape(1, 1)).reshape(())
    (axis,) = _dims(dim, x.dim())
    rows, order = _to_rows(x, (axis,))  # the last axis: a view of x, no permutation
    out = op(rows).reshape([x.shape[i] for i in order])
    return out.permute([order.index(i) for i in range(x.dim())])


def softmax(x: Tensor, dim: int = -1, dtype: Optional[torch.dtype] = None) -> Tensor:
    """exp(x) / sum exp(x) along ``dim``, as ``torch.softmax``; differentiable.

    Parameters
    ----------
    x : torch.Tensor
        Input (integers and bool compute in the default float dtype).
    dim : int, optional
        The dimension of the normalisation.
    dtype : torch.dtype, optional
        Cast x to this dtype first.

    Returns
    -------
    torch.Tensor
        The softmax, of x's shape.

    Raises
    ------
    TypeError
        If ``x`` is not a dense real tensor.
    IndexError
        If ``dim`` is out of range.
    """
    return _row_transform(_softmax_rows, x, dim, dtype)


def log_softmax(x: Tensor, dim: int = -1, dtype: Optional[torch.dtype] = None) -> Tensor:
    """x - logsumexp(x, dim), as ``torch.log_softmax``; differentiable.

    Parameters
    ----------
    x : torch.Tensor
        Input (integers and bool compute in the default float dtype).
    dim : int, optional
        The dimension of the normalisation.
    dtype : torch.dtype, optional
        Cast x to this dtype first.

    Returns
    -------
    torch.Tensor
        The log-probabilities, of x's shape.

    Raises
    ------
    TypeError
        If ``x`` is not a dense real tensor.
    IndexError
        If ``dim`` is out of range.
    """
    return _row_transform(_log_softmax_rows, x, dim, dtype)


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def sinkhorn(E: Tensor, T: Union[float, Tensor], n_iter: Optional[int] = None, tol: float = 1e-6, max_iter: int = 1000,
             w: Optional[Tensor] = None, c: Optional[Tensor] = None, mu0: Optional[Tensor] = None, *,
             energy_sign: int = 1) -> SinkhornResult:
    """Self-label balancing of energies E at reservoir temperature T, as :func:`thermossl.sinkhorn`.

    The same iteration convention, gauge and errors, on tensors. No gradient flows through it (the
    labels of SwAV and SeLa are targets, computed under ``no_grad``): E is detached.

    Parameters
    ----------
    E : torch.Tensor, shape (N, K)
        Energies, CPU or CUDA.
    T : float or torch.Tensor
        Reservoir temperature, > 0.
    n_iter : int, optional
        Exactly this many iterations; None runs to ``tol``.
    tol : float, optional
        Tolerance on the charge error.
    max_iter : int, optional
        Iteration limit of the tolerance mode.
    w : torch.Tensor, shape (N,), optional
        Sample weights (default 1/N), on E's device.
    c : torch.Tensor, shape (K,), optional
        Charge targets (default 1/K), on E's device.
    mu0 : torch.Tensor, shape (K,), optional
        Warm-start chemical potentials, on E's device.
    energy_sign : {1, -1}, optional
        -1: ``E`` holds scores s (SwAV's and SeLa's prototype scores) and the energies are -s; the
        kernel reads them with a signed scale, so no negated copy is made. The results (f, mu, q,
        errors) are those of the energies -s.

    Returns
    -------
    SinkhornResult
        Tensors (see :class:`SinkhornResult`).

    Raises
    ------
    TypeError
        If an input is not a tensor or a count is not an int.
    ValueError
        If E is not a non-empty 2-D tensor, a vector has the wrong shape or device, ``tol`` or a
        count is out of range, ``energy_sign`` is not 1 or -1, or the solver refuses the input (as
        :func:`thermossl.sinkhorn`).
    """
    if isinstance(energy_sign, bool) or energy_sign not in (1, -1):
        raise ValueError(f"energy_sign must be 1 or -1, got {energy_sign!r}")
    T, T_tensor = _split_T(T)
    E = _check_tensor(E, "E")
    if E.dim() != 2:
        raise ValueError(f"E must be a 2-D tensor of shape (N, K), got ndim={E.dim()}")
    if E.shape[0] < 1 or E.shape[1] < 1:
        raise ValueError(f"E must have at least one sample and one state, got shape {tuple(E.shape)}")
    fixed = 0 if n_iter is None else _count(n_iter, "n_iter", 1)
    limit = _count(max_iter, "max_iter", 1)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    vectors = []
    for v, name, length, what in ((w, "w", E.shape[0], "sample"), (c, "c", E.shape[1], "state"),
                                  (mu0, "mu0", E.shape[1], "state")):
        if v is not None:
            v = _check_tensor(v, name)
            if tuple(v.shape) != (length,):
                raise ValueError(f"{name} must have shape ({length},) (one value per {what}), got {tuple(v.shape)}")
            if v.device != E.device:
                raise ValueError(f"{name} must be on E's device {E.device}, got {v.device}")
            v = v.detach()
        vectors.append(v)
    return SinkhornResult(*_sinkhorn(E.detach(), T, T_tensor, fixed, float(tol), limit, *vectors,
                                     float(energy_sign)))
