"""SwAV and DINO losses as ``nn.Module``s over the fused kernels.

Both losses are a multi-crop cross-entropy: labels computed without gradient from some crops
(SwAV: Sinkhorn codes of ``crops_for_assign``; DINO: the teacher's centred and sharpened softmax of
the two global crops) predicted from the scores of every other crop at temperature T. Because
the cross-entropy is linear in the labels, each student crop v needs ONE kernel pass against the
sum of the labels of the crops it is compared with, and that pass yields its loss and its
gradient together; the references' per-pair log_softmax, product, sum and mean, and their
backward, are replaced by one read of the scores and the labels and one write of the gradient.
The scores enter with the signed scale +1/T: no E = -scores pass. Each loss is one custom op
(``thermossl::swav_loss``, ``thermossl::dino_loss``: labels and fused cross-entropy, the gradient
saved for a backward that scales it in place), so ``torch.compile`` sees one node; plain eager
calls reach the same implementation through an ``autograd.Function`` (see ``_eager``).
"""
from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import _kernels
from .ops import _check_rows, _check_tensor, _kernel_dtype, _register_autocast, _row_input

if TYPE_CHECKING:
    from .recorder import LedgerRecorder

__all__ = ["SwAVLoss", "DINOLoss"]


def _world():
    """(group size, True) when torch.distributed has an initialised default group, else (1, False)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), True
    return 1, False


# ============================================================================ internal ops
class _ScratchBuffer:
    """A work buffer kept between calls on the CPU, one per thread: a fresh N x K tensor costs its
    page faults on first touch (~0.6 ms per MB measured here, as much as a kernel pass), and these
    buffers never leave the op. On CUDA the caching allocator does this. Each buffer is its own
    object (no names to keep apart); ``release_scratch`` frees them all."""

    def __init__(self) -> None:
        self._local = threading.local()
        _SCRATCH_BUFFERS.append(self)

    def get(self, shape, dtype, device) -> Tensor:
        """An uninitialised tensor of this shape, dtype and device: this thread's kept one when it
        matches (CPU only), else a new one (kept in place of the old on the CPU)."""
        if device.type != "cpu":
            return torch.empty(shape, dtype=dtype, device=device)
        t = getattr(self._local, "tensor", None)
        if t is None or t.shape != shape or t.dtype != dtype:
            self._local.tensor = None  # free the old buffer before allocating the new one
            t = self._local.tensor = torch.empty(shape, dtype=dtype, device=device)
        return t

    def release(self) -> None:
        self._local.tensor = None


_SCRATCH_BUFFERS: list = []
_SWAV_CODES, _SWAV_SCORES, _SWAV_Q, _DINO_LABELS = (_ScratchBuffer() for _ in range(4))


def release_scratch() -> None:
    """Free the CPU work buffers the losses keep between steps (this thread's)."""
    for buffer in _SCRATCH_BUFFERS:
        buffer.release()


def _swav_codes_into(output: Tensor, crops, batch: int, epsilon: float, n_iter: int, queue, codes: Tensor):
    """SwAV's codes of each crop in ``crops`` written into ``codes`` (len(crops) * batch, K):
    Sinkhorn (n_iter iterations at T' = epsilon, uniform weights over every rank's rows) of the
    crop's scores, with the queue's scores before them. Returns (mu (len(crops), K) float64,
    charge error (len(crops),) float64, log Z of each code row's GGE (len(crops) * batch,)
    float64 = -f/epsilon, empty when distributed). Per crop: the Sinkhorn passes over the crop's scores in
    place (the kernel reads E = -scores with a signed scale: no negated copy; CPU half scores are
    converted in registers, computed in float32), q written straight into its slot (``codes``:
    the kernel dtype, float32 for half scores); with a queue, one copy that stacks the queue's
    and the crop's scores (in the codes' dtype). Distributed (more than one rank), the sharded
    solver reads the scores with the same signed scale (no negation pass either); it takes numpy
    arrays, so half scores are converted to float32 there (one pass over the crop)."""
    k = codes.shape[1]
    world, _ = _world()
    mus = np.empty((len(crops), k))
    errs = np.empty(len(crops))
    log_z = np.empty(0 if world > 1 else len(crops) * batch)
    extra = 0 if queue is None else queue.shape[1]
    for i, crop in enumerate(crops):
        scores = output[crop * batch:(crop + 1) * batch]
        if queue is not None:
            stacked = _SWAV_SCORES.get((extra + batch, k), codes.dtype, output.device)
            stacked[:extra].copy_(queue[i])
            stacked[extra:].copy_(scores)
            scores = stacked
        slot = codes[i * batch:(i + 1) * batch]
        if world > 1:
            host = scores.to(codes.dtype)  # the scores themselves unless half: numpy has no bfloat16
            q, mus[i], errs[i] = _kernels.sharded_sinkhorn(host, epsilon, n_iter, energy_sign=-1.0)
            slot.copy_(q[extra:])
            continue
        q = slot if queue is None else _SWAV_Q.get((extra + batch, k), codes.dtype, codes.device)
        f, mus[i], errs[i] = _kernels.sinkhorn_codes(scores, epsilon, n_iter, q, "SwAVLoss: output ")
        if queue is not None:
            slot.copy_(q[extra:])
        # the codes are q = exp((f + mu - E)/eps) with rows summing to 1: log Z of the GGE is -f/eps
        np.multiply(f[extra:], -1.0 / epsilon, out=log_z[i * batch:(i + 1) * batch])
    return torch.from_numpy(mus), torch.from_numpy(errs), torch.from_numpy(log_z).to(codes.device)


def _multicrop_into(scores: Tensor, labels: Tensor, label_crops, n_crops: int, scale: float, grad: Tensor) -> float:
    """sum over student crops v and label blocks a with label_crops[a] != v of
    sum_rows -sum_y labels_a log softmax(scale * scores_v) (a float, accumulated in float64),
    and its gradient in the scores written into ``grad``.

    scores: (n_crops * B, K), read in place in their own dtype (CPU half scores converted in
    registers by the mixed kernel against the float32 labels: no float32 copy of the scores);
    labels and grad: (len(label_crops) * B, K) and (n_crops * B, K) of the kernel dtype
    (float32 for half scores). One kernel pass per student crop (loss and gradient together) against the sum of its
    labels (the block itself when it is one block; blocks summed once and shared when several).
    Row blocks are addressed by pointer arithmetic, not tensor views (the views cost more than
    the kernel at small batches)."""
    batch = scores.shape[0] // n_crops
    # zeros: the rows of a crop without label blocks (no kernel pass) add nothing, and their log Z
    # is finite for the error path
    loss_rows = torch.zeros(scores.shape[0], dtype=grad.dtype, device=grad.device)
    log_z = torch.zeros_like(loss_rows)
    summed = {}
    for v in range(n_crops):
        blocks = tuple(i for i, crop in enumerate(label_crops) if crop != v)
        if not blocks:
            grad[v * batch:(v + 1) * batch] = 0
            continue
        if len(blocks) == 1:
            target, first = labels, blocks[0] * batch
        else:
            target = summed.get(blocks)
            if target is None:
                target = torch.add(labels[blocks[0] * batch:(blocks[0] + 1) * batch],
                                   labels[blocks[1] * batch:(blocks[1] + 1) * batch])
                for i in blocks[2:]:
                    target += labels[i * batch:(i + 1) * batch]
                summed[blocks] = target
            first = 0
        _kernels.row_cross_entropy_block(target, first, scores, v * batch, batch, scale, loss_rows, grad, log_z)
    loss = float(loss_rows.sum(dtype=torch.float64))
    if not math.isfinite(loss):
        _check_rows(log_z, "student scores")  # names a row without a Gibbs state
        raise ValueError("labels contain NaN or inf")
    return loss


def _swav_impl(output: Tensor, crops, n_crops: int, epsilon: float, n_iter: int, scale: float, queue,
               return_codes: bool):
    """The body of ``thermossl::swav_loss`` (see there); the eager path calls it directly.

    CPU half (bfloat16/float16) scores are read in place by every kernel (Sinkhorn and the fused
    cross-entropy convert them in registers and compute in float32): no float32 copy of the
    score matrix. The codes and the gradient are float32; the gradient is cast to the scores'
    dtype at the end (one pass over the output). CUDA half scores are converted first (the CUDA
    kernels have no half input)."""
    a = _row_input(output)
    kernel_dtype = _kernel_dtype(a.dtype)
    batch = a.shape[0] // n_crops
    k = a.shape[1]
    codes = _SWAV_CODES.get((len(crops) * batch, k), kernel_dtype, a.device)
    mus, errs, log_z = _swav_codes_into(a, crops, batch, epsilon, n_iter, queue, codes)
    grad = torch.empty(a.shape, dtype=kernel_dtype, device=a.device)
    total = _multicrop_into(a, codes, crops, n_crops, scale, grad)
    loss = torch.tensor(total * _swav_norm(a, crops, n_crops), dtype=output.dtype, device=output.device)
    kept = codes.clone() if return_codes else codes.new_empty((0, k))
    return loss, grad.to(output.dtype), kept, mus, errs, log_z


@torch.library.custom_op("thermossl::swav_loss", mutates_args=())
def _swav_loss(output: Tensor, crops: Sequence[int], n_crops: int, epsilon: float, n_iter: int, scale: float,
               queue: Optional[Tensor], return_codes: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """SwAV's loss: (the mean over crop pairs and rows of the cross-entropy (0-d), the gradient
    of their SUM in ``output`` (the backward scales it by the mean's factor, in place), the codes (len(crops) * B, K) when ``return_codes`` else (0, K),
    Sinkhorn's mu (len(crops), K) float64, charge errors (len(crops),) float64, the codes' log Z
    (len(crops) * B,) float64 (empty when distributed))."""
    return _swav_impl(output, crops, n_crops, epsilon, n_iter, scale, queue, return_codes)


@_swav_loss.register_fake
def _(output, crops, n_crops, epsilon, n_iter, scale, queue, return_codes):
    k = output.shape[1]
    batch = output.shape[0] // n_crops
    world, _ = _world()
    return (output.new_empty(()), torch.empty_like(output, memory_format=torch.contiguous_format),
            output.new_empty((len(crops) * batch if return_codes else 0, k), dtype=_kernel_dtype(output.dtype)),
            torch.empty((len(crops), k), dtype=torch.float64), torch.empty(len(crops), dtype=torch.float64),
            output.new_empty((0 if world > 1 else len(crops) * batch,), dtype=torch.float64))


def _dino_impl(student: Tensor, teacher: Tensor, center: Tensor, teacher_temp: float, n_crops: int, scale: float,
               return_labels: bool):
    """The body of ``thermossl::dino_loss`` (see there); the eager path calls it directly."""
    # On the CPU half scores are read in place, student and teacher alike (a half teacher with a
    # float32 student, or the reverse, too): the teacher's by the softmax kernel, the student's
    # by the mixed cross-entropy kernel against the float32 labels (converted in registers,
    # computed in float32, no float32 copy of the student scores). The labels and the gradient
    # are float32; the gradient is cast to the student's dtype at the end (one pass over the
    # output). CUDA half scores are converted first (the CUDA kernels have no half input).
    a = _row_input(student)
    kernel_dtype = _kernel_dtype(a.dtype)
    t = _row_input(teacher) if _kernel_dtype(teacher.dtype) == kernel_dtype else teacher.to(kernel_dtype)
    labels = _DINO_LABELS.get(t.shape, kernel_dtype, a.device)
    shift = (center.reshape(-1).to(device=a.device, dtype=torch.float64) * (-1.0 / teacher_temp)).contiguous()
    log_z = torch.empty(t.shape[0], dtype=kernel_dtype, device=a.device)
    _kernels.row_softmax(t, 1.0 / teacher_temp, shift, labels, log_z)
    _check_rows(log_z, "teacher_output")
    grad = torch.empty(a.shape, dtype=kernel_dtype, device=a.device)
    total = _multicrop_into(a, labels, (0, 1), n_crops, scale, grad)
    loss = torch.tensor(total * _dino_norm(a, n_crops), dtype=student.dtype, device=student.device)
    kept = labels.clone() if return_labels else labels.new_empty((0, a.shape[1]))
    return loss, grad.to(student.dtype), kept, log_z.to(torch.float64)


@torch.library.custom_op("thermossl::dino_loss", mutates_args=())
def _dino_loss(student: Tensor, teacher: Tensor, center: Tensor, teacher_temp: float, n_crops: int, scale: float,
               return_labels: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """DINO's loss: (the mean over crop pairs and rows of -sum_y q log softmax(scale *
    student), the gradient of their sum in ``student``, the teacher labels (2 B, K) when ``return_labels``
    else (0, K)), with q = softmax((teacher - center) / teacher_temp) from one kernel pass (the
    center enters as a per-state shift of the exponent), and the labels' log Z (2 B,) float64."""
    return _dino_impl(student, teacher, center, teacher_temp, n_crops, scale, return_labels)


@_dino_loss.register_fake
def _(student, teacher, center, teacher_temp, n_crops, scale, return_labels):
    return (student.new_empty(()), torch.empty_like(student, memory_format=torch.contiguous_format),
            teacher.new_empty((teacher.shape[0] if return_labels else 0, teacher.shape[1]),
                              dtype=_kernel_dtype(student.dtype)),
            teacher.new_empty((teacher.shape[0],), dtype=torch.float64))


def _loss_setup(ctx, inputs, output, norm: float) -> None:
    ctx.n_inputs = len(inputs)  # the backward returns no gradient for every input but the first
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(output[1])
    ctx.norm = norm
    ctx.scaled = False


def _loss_backward(ctx, grad_loss, *_unused):
    from .ops import _no_double_backward

    _no_double_backward()
    if ctx.scaled:  # checked before saved_tensors, whose version check would say less
        raise RuntimeError("thermossl losses support one backward per forward (their gradient buffer is "
                           "scaled in place by the first); run the forward again")
    (grad,) = ctx.saved_tensors
    n_inputs = ctx.n_inputs
    factor = grad_loss * ctx.norm  # the ops' gradient is the sum's; the loss is the mean
    if torch.compiler.is_compiling():
        return (grad * factor,) + (None,) * (n_inputs - 1)
    # The losses discard the gradient output of the op, so the saved buffer is ours alone: scale
    # it in place (one pass, no new N x K allocation and its page faults). A second backward
    # through the same forward (retain_graph=True) would find it scaled: autograd's version check
    # of the saved tensor refuses that ("modified by an inplace operation"), and so does this flag.
    ctx.scaled = True
    return (grad.mul_(factor),) + (None,) * (n_inputs - 1)


def _swav_norm(output: Tensor, crops, n_crops: int) -> float:
    """1 / the number of (crop pair, row) terms SwAV's loss averages over."""
    return n_crops / (len(crops) * (n_crops - 1) * output.shape[0])  # rows = n_crops * batch: exactly 1/(... batch)


def _dino_norm(student: Tensor, n_crops: int) -> float:
    """1 / the number of (crop pair, row) terms DINO's loss averages over."""
    return n_crops / (2 * (n_crops - 1) * student.shape[0])  # rows = n_crops * batch: exactly 1/(... batch)


def _swav_setup(ctx, inputs, output):
    _loss_setup(ctx, inputs, output, _swav_norm(inputs[0], inputs[1], inputs[2]))  # (output, crops, n_crops)


def _dino_setup(ctx, inputs, output):
    _loss_setup(ctx, inputs, output, _dino_norm(inputs[0], inputs[4]))  # (student, n_crops)


_swav_loss.register_autograd(_loss_backward, setup_context=_swav_setup)
_dino_loss.register_autograd(_loss_backward, setup_context=_dino_setup)
_register_autocast(_swav_loss)
_register_autocast(_dino_loss)


# ---------------------------------------------------------------------------- the eager path
# A torch.library custom op costs ~90 us per forward + backward in Python dispatch (its
# autocast, autograd and redispatch layers) — more than the whole kernel work of SwAV at
# 256 x 10. In eager mode on plain tensors the losses call the same implementation through an
# autograd.Function (same saved gradient, same backward); under torch.compile, a tracing
# dispatch mode (make_fx, fake tensors), functorch transforms or tensor subclasses, they call
# the registered op, so graphs hold one node per loss.
class _SwAVLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):  # the op's inputs, in its order
        result = _swav_impl(*inputs)
        _swav_setup(ctx, inputs, result)
        return result

    backward = staticmethod(_loss_backward)


class _DINOLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *inputs):  # the op's inputs, in its order
        result = _dino_impl(*inputs)
        _dino_setup(ctx, inputs, result)
        return result

    backward = staticmethod(_loss_backward)


_PLAIN = (Tensor, nn.Parameter)
# torch's own probes of a tracing dispatch mode and of active functorch transforms (private; where a
# torch lacks one, every call takes the registered op: slower at small batches, never wrong)
_DISPATCH_DEPTH = getattr(torch._C, "_len_torch_dispatch_stack", None)
_TRANSFORMS = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)


def _eager(*tensors) -> bool:
    """Whether the eager path may run: plain tensors, no compiler, tracing mode or transform."""
    if _DISPATCH_DEPTH is None or _TRANSFORMS is None:
        return False
    if torch.compiler.is_compiling() or _DISPATCH_DEPTH() or _TRANSFORMS() is not None:
        return False
    return all(t is None or type(t) in _PLAIN for t in tensors)


def _autocast_float32(*tensors):
    """The op's autocast rule, for the eager path: under autocast on the tensors' device, floating
    tensors other than float64 are cast to float32 (torch.library.register_autocast's rule)."""
    return tuple(t.float() if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t
                 for t in tensors)


def _call_swav(output, crops, n_crops, epsilon, n_iter, scale, queue, return_codes):
    if not _eager(output, queue):
        return _swav_loss(output, crops, n_crops, epsilon, n_iter, scale, queue, return_codes)
    device_type = output.device.type
    if torch.is_autocast_enabled(device_type):
        output, queue = _autocast_float32(output, queue)
        with torch.autocast(device_type, enabled=False):
            return _SwAVLossFunction.apply(output, crops, n_crops, epsilon, n_iter, scale, queue, return_codes)
    return _SwAVLossFunction.apply(output, crops, n_crops, epsilon, n_iter, scale, queue, return_codes)


def _call_dino(student, teacher, center, teacher_temp, n_crops, scale, return_labels):
    if not _eager(student, teacher, center):
        return _dino_loss(student, teacher, center, teacher_temp, n_crops, scale, return_labels)
    device_type = student.device.type
    if torch.is_autocast_enabled(device_type):
        student, teacher, center = _autocast_float32(student, teacher, center)
        with torch.autocast(device_type, enabled=False):
            return _DINOLossFunction.apply(student, teacher, center, teacher_temp, n_crops, scale, return_labels)
    return _DINOLossFunction.apply(student, teacher, center, teacher_temp, n_crops, scale, return_labels)


# ============================================================================ SwAV
class SwAVLoss(nn.Module):
    """SwAV's swapped-prediction loss (Caron et al. 2020; facebookresearch/swav, main_swav.py).

    ``forward(output, queue=None)``: ``output`` holds the prototype scores of all crops stacked
    crop after crop, (sum(nmb_crops) * B, K), as SwAV's model returns them. For each crop in
    ``crops_for_assign`` the codes are Sinkhorn's (``sinkhorn_iterations`` iterations at
    ``epsilon``, without gradient), predicted from every other crop's scores at ``temperature``;
    the loss is the mean over crop pairs and samples, exactly as SwAV's training loop computes it.

    ``queue``: optional prototype scores of queued embeddings, (len(crops_for_assign), L, K)
    (``queue[i] @ prototypes.T`` in SwAV), put before the batch's scores for Sinkhorn only; the
    caller fills and rotates its queue as SwAV does and passes it once it is in use.
    With an initialised ``torch.distributed`` group, Sinkhorn runs over every rank's rows (one
    all-reduce of the charges per iteration: SwAV's distributed_sinkhorn). ``recorder``: a
    :class:`thermossl.torch.LedgerRecorder` measured on the first assigned crop's codes (it runs
    outside the graph: compile with a recorder without ``fullgraph=True``).

    After a forward, ``codes`` ((len(crops_for_assign) * B, K)) are available as
    ``self.last_codes`` only when ``keep_codes=True``.

    Parameters
    ----------
    temperature : float, optional
        The student temperature, > 0.
    epsilon : float, optional
        Sinkhorn's temperature, > 0.
    sinkhorn_iterations : int, optional
        Sinkhorn iterations, >= 1.
    crops_for_assign : sequence of int, optional
        The crops whose codes are predicted.
    nmb_crops : sequence of int, optional
        Crops per resolution (at least 2 in all).
    recorder : LedgerRecorder, optional
        Records the demon's books on the codes.
    keep_codes : bool, optional
        Keep the last codes in ``last_codes``.

    Raises
    ------
    ValueError
        If a temperature is not finite and > 0, ``sinkhorn_iterations`` < 1, or the crops are
        inconsistent.
    """

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 crops_for_assign: Sequence[int] = (0, 1), nmb_crops: Sequence[int] = (2,),
                 recorder: Optional[LedgerRecorder] = None, keep_codes: bool = False) -> None:
        super().__init__()
        for value, name in ((temperature, "temperature"), (epsilon, "epsilon")):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(sinkhorn_iterations, bool) or not isinstance(sinkhorn_iterations, int) or sinkhorn_iterations < 1:
            raise ValueError(f"sinkhorn_iterations must be an int >= 1, got {sinkhorn_iterations!r}")
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.nmb_crops = tuple(int(n) for n in nmb_crops)
        self.n_crops = int(sum(self.nmb_crops))
        if self.n_crops < 2:
            raise ValueError(f"nmb_crops must describe at least 2 crops, got {nmb_crops!r}")
        self.crops_for_assign = tuple(int(c) for c in crops_for_assign)
        if not self.crops_for_assign or any(not 0 <= c < self.n_crops for c in self.crops_for_assign):
            raise ValueError(f"crops_for_assign must name crops in [0, {self.n_crops}), got {crops_for_assign!r}")
        self.recorder = recorder
        self.keep_codes = bool(keep_codes)
        self.last_codes = None

    def forward(self, output: Tensor, queue: Optional[Tensor] = None) -> Tensor:
        """SwAV's loss of one step.

        Parameters
        ----------
        output : torch.Tensor, shape (sum(nmb_crops) * B, K)
            The prototype scores of all crops, stacked crop after crop.
        queue : torch.Tensor, shape (len(crops_for_assign), L, K), optional
            Prototype scores of queued embeddings, for Sinkhorn only.

        Returns
        -------
        torch.Tensor
            The 0-d loss (mean over crop pairs and samples).

        Raises
        ------
        ValueError
            If ``output`` is not 2-D with a positive multiple of the crops as rows, or ``queue`` has
            the wrong shape.
        """
        output = _check_tensor(output, "output")
        if output.dim() != 2:
            raise ValueError(f"output must be 2-D (crops * batch, prototypes), got ndim={output.dim()}")
        if output.shape[0] % self.n_crops or output.shape[0] == 0:
            raise ValueError(f"output has {output.shape[0]} rows, not a positive multiple of the {self.n_crops} crops")
        batch = output.shape[0] // self.n_crops
        if queue is not None:
            queue = _check_tensor(queue, "queue")
            expected = (len(self.crops_for_assign), output.shape[1])
            if queue.dim() != 3 or (queue.shape[0], queue.shape[2]) != expected:
                raise ValueError(f"queue must have shape ({expected[0]}, L, {expected[1]}), got {tuple(queue.shape)}")
            queue = queue.detach()
        want_codes = self.keep_codes or self.recorder is not None
        loss, _, codes, mu, err, log_z = _call_swav(output, self.crops_for_assign, self.n_crops, self.epsilon,
                                                    self.sinkhorn_iterations, 1.0 / self.temperature, queue, want_codes)
        if self.keep_codes:
            self.last_codes = codes
        if self.recorder is not None:
            crop = self.crops_for_assign[0]
            self.recorder._measure_from_loss(
                output.detach()[crop * batch:(crop + 1) * batch], codes[:batch], mu[0], err[0], self.epsilon,
                log_z[:batch] if log_z.numel() else None)
        return loss


# ============================================================================ DINO
class DINOLoss(nn.Module):
    """DINO's loss (Caron et al. 2021; facebookresearch/dino, main_dino.py), same signature and
    semantics: the teacher's output of the 2 global crops is centred (``center``, a registered
    buffer of shape (1, out_dim), in ``state_dict``) and sharpened at the teacher temperature of
    the epoch (a linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp`` over
    ``warmup_teacher_temp_epochs`` epochs, then constant); every student crop predicts each
    teacher crop except its own index; the loss is the mean over those pairs and the samples.
    The center then follows the EMA ``center <- m center + (1 - m) mean(teacher_output)``
    (all-reduced over ranks when torch.distributed is initialised).

    ``forward(student_output, teacher_output, epoch)``: (ncrops * B, out_dim) and (2 * B, out_dim).
    ``recorder``: a :class:`thermossl.torch.LedgerRecorder` measured on the teacher's labels of the
    first global crop (mu = -center); it runs outside the graph, so compile with a recorder
    without ``fullgraph=True``.

    Parameters
    ----------
    out_dim : int
        K, the prototypes.
    ncrops : int
        Student crops (>= 2; the first 2 are the global ones).
    warmup_teacher_temp : float
        The teacher temperature at epoch 0.
    teacher_temp : float
        The teacher temperature after the warm-up.
    warmup_teacher_temp_epochs : int
        Epochs of the warm-up.
    nepochs : int
        Epochs of the run.
    student_temp : float, optional
        The student temperature, > 0.
    center_momentum : float, optional
        The center's EMA momentum m in [0, 1).
    recorder : LedgerRecorder, optional
        Records the demon's books on the teacher's labels.

    Raises
    ------
    ValueError
        If ``ncrops`` < 2, a temperature is not finite and > 0, or ``center_momentum`` is not in
        [0, 1).
    """

    def __init__(self, out_dim: int, ncrops: int, warmup_teacher_temp: float, teacher_temp: float,
                 warmup_teacher_temp_epochs: int, nepochs: int, student_temp: float = 0.1,
                 center_momentum: float = 0.9, recorder: Optional[LedgerRecorder] = None) -> None:
        super().__init__()
        if int(ncrops) < 2:
            raise ValueError(f"ncrops must be >= 2 (two global crops at least), got {ncrops!r}")
        if not (isinstance(student_temp, (int, float)) and math.isfinite(student_temp) and student_temp > 0):
            raise ValueError(f"student_temp must be a finite number > 0, got {student_temp!r}")
        if not 0.0 <= float(center_momentum) < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum!r}")
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.ncrops = int(ncrops)
        self.register_buffer("center", torch.zeros(1, int(out_dim)))
        schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp,
        ))
        if not np.all(np.isfinite(schedule)) or np.any(schedule <= 0):
            raise ValueError("teacher temperatures must be finite and > 0")
        self.teacher_temp_schedule = [float(t) for t in schedule]
        self.recorder = recorder

    def forward(self, student_output: Tensor, teacher_output: Tensor, epoch: int) -> Tensor:
        """DINO's loss of one step.

        Parameters
        ----------
        student_output : torch.Tensor, shape (ncrops * B, out_dim)
            The student's output of every crop.
        teacher_output : torch.Tensor, shape (2 * B, out_dim)
            The teacher's output of the 2 global crops.
        epoch : int
            The epoch, in [0, nepochs), for the teacher temperature.

        Returns
        -------
        torch.Tensor
            The 0-d loss (mean over crop pairs and samples).

        Raises
        ------
        ValueError
            If a shape does not match or ``epoch`` is out of range.
        """
        student_output = _check_tensor(student_output, "student_output")
        teacher_output = _check_tensor(teacher_output, "teacher_output")
        k = self.center.shape[1]
        if student_output.dim() != 2 or student_output.shape[1] != k:
            raise ValueError(f"student_output must have shape (ncrops * B, {k}), got {tuple(student_output.shape)}")
        if teacher_output.dim() != 2 or teacher_output.shape[1] != k:
            raise ValueError(f"teacher_output must have shape (2 * B, {k}), got {tuple(teacher_output.shape)}")
        batch = teacher_output.shape[0] // 2
        if teacher_output.shape[0] != 2 * batch or batch == 0 or student_output.shape[0] != self.ncrops * batch:
            raise ValueError(
                f"teacher_output must hold 2 crops and student_output {self.ncrops} crops of the same batch, "
                f"got {teacher_output.shape[0]} and {student_output.shape[0]} rows")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < len(self.teacher_temp_schedule):
            raise ValueError(f"epoch must be an int in [0, nepochs={len(self.teacher_temp_schedule)}), got {epoch!r}")
        temp = self.teacher_temp_schedule[epoch]
        teacher = teacher_output.detach()
        loss, _, labels, log_z = _call_dino(student_output, teacher, self.center.detach(), temp, self.ncrops,
                                            1.0 / self.student_temp, self.recorder is not None)
        if self.recorder is not None:
            self.recorder._measure_from_loss(teacher[:batch], labels[:batch], -self.center[0].detach(), None, temp,
                                             log_z[:batch])
        self.update_center(teacher)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_output: Tensor) -> None:
        """center <- m center + (1 - m) (sum of the teacher rows of every rank / their number).

        Parameters
        ----------
        teacher_output : torch.Tensor, shape (2 * B, out_dim)
            The teacher's output of the step.
        """
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True)
        world, distributed = _world()
        if distributed:
            import torch.distributed as dist

            dist.all_reduce(batch_center)
        batch_center = batch_center / (len(teacher_output) * world)
        self.center.mul_(self.center_momentum).add_(batch_center.to(self.center.dtype),
                                                    alpha=1.0 - self.center_momentum)
