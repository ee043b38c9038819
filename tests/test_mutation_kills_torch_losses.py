"""SwAVLoss and DINOLoss: what the mutation testing of thermossl/torch/losses.py (issue 20) found
unchecked. Every bad argument is refused with a message that names it and the value given (a
product requirement, so the messages are asserted whole); the boundary values are accepted; the
registered op's outputs (codes, mu, charge errors, log Z, labels) have the documented shapes,
dtypes and values (log Z against logsumexp of the published formulas); the registered op's route
(taken under a tracing dispatch mode) gives the published loss and gradient, with a queue too;
the work buffers kept between calls are reused exactly when they fit.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import thermossl.torch as tt  # noqa: E402
from thermossl.torch import losses  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch_references import DINOReference, swav_loss, swav_sinkhorn  # noqa: E402


def scores(rows, k, seed, dtype=torch.float32, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, k, generator=g, dtype=dtype), dim=1) * scale


def raises(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


class PassThrough(TorchDispatchMode):
    """A dispatch mode that changes nothing: under it the losses take their registered op, as
    under torch.compile or make_fx, but run eagerly."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


# ----------------------------------------------------------------------------- constructors
@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=0), "temperature must be a finite number > 0, got 0"),
    (dict(temperature=float("inf")), "temperature must be a finite number > 0, got inf"),
    (dict(temperature="0.1"), "temperature must be a finite number > 0, got '0.1'"),
    (dict(epsilon=0.0), "epsilon must be a finite number > 0, got 0.0"),
    (dict(epsilon=-0.05), "epsilon must be a finite number > 0, got -0.05"),
    (dict(epsilon=float("nan")), "epsilon must be a finite number > 0, got nan"),
    (dict(sinkhorn_iterations=0), "sinkhorn_iterations must be an int >= 1, got 0"),
    (dict(sinkhorn_iterations=True), "sinkhorn_iterations must be an int >= 1, got True"),
    (dict(sinkhorn_iterations=3.0), "sinkhorn_iterations must be an int >= 1, got 3.0"),
    (dict(nmb_crops=(1,)), "nmb_crops must describe at least 2 crops, got (1,)"),
    (dict(nmb_crops=()), "nmb_crops must describe at least 2 crops, got ()"),
    (dict(crops_for_assign=()), "crops_for_assign must name crops in [0, 2), got ()"),
    (dict(crops_for_assign=(0, -1)), "crops_for_assign must name crops in [0, 2), got (0, -1)"),
    (dict(crops_for_assign=(2,)), "crops_for_assign must name crops in [0, 2), got (2,)"),
    (dict(nmb_crops=(2, 3), crops_for_assign=(0, 5)), "crops_for_assign must name crops in [0, 5), got (0, 5)"),
])
def test_swav_constructor_refuses_with_the_argument_named(kwargs, message):
    raises(ValueError, message, tt.SwAVLoss, **kwargs)


def test_swav_constructor_boundaries_and_defaults():
    """One Sinkhorn iteration, the last crop assigned, int temperatures: accepted, and the loss is
    the published one with those settings; codes are kept only when asked."""
    x = scores(5 * 8, 6, seed=1).requires_grad_()
    loss = tt.SwAVLoss(temperature=1, epsilon=1, sinkhorn_iterations=1, crops_for_assign=(4,), nmb_crops=(2, 3))
    assert (loss.temperature, loss.epsilon, loss.sinkhorn_iterations) == (1.0, 1.0, 1)
    assert loss.nmb_crops == (2, 3) and loss.n_crops == 5 and loss.crops_for_assign == (4,)
    ref = swav_loss(x, temperature=1, epsilon=1, iterations=1, crops_for_assign=(4,), nmb_crops=(2, 3))
    assert abs(loss(x).item() / ref.item() - 1) <= 1e-6
    default = tt.SwAVLoss()
    assert (default.temperature, default.epsilon, default.sinkhorn_iterations) == (0.1, 0.05, 3)
    assert default.crops_for_assign == (0, 1) and default.nmb_crops == (2,) and default.recorder is None
    assert default.keep_codes is False
    default(scores(2 * 8, 6, seed=2))
    assert default.last_codes is None
    kept = tt.SwAVLoss(keep_codes=1)
    assert kept.keep_codes is True


@pytest.mark.parametrize("args,kwargs,message", [
    ((4, 1, 0.04, 0.07, 1, 2), {}, "ncrops must be >= 2 (two global crops at least), got 1"),
    ((4, 2, 0.04, 0.07, 1, 2), dict(student_temp=0), "student_temp must be a finite number > 0, got 0"),
    ((4, 2, 0.04, 0.07, 1, 2), dict(student_temp=float("nan")), "student_temp must be a finite number > 0, got nan"),
    ((4, 2, 0.04, 0.07, 1, 2), dict(student_temp="0.1"), "student_temp must be a finite number > 0, got '0.1'"),
    ((4, 2, 0.04, 0.07, 1, 2), dict(center_momentum=1.0), "center_momentum must be in [0, 1), got 1.0"),
    ((4, 2, 0.04, 0.07, 1, 2), dict(center_momentum=-0.1), "center_momentum must be in [0, 1), got -0.1"),
    ((4, 2, 0.0, 0.07, 2, 3), {}, "teacher temperatures must be finite and > 0"),
    ((4, 2, 0.04, -0.07, 1, 3), {}, "teacher temperatures must be finite and > 0"),
    ((4, 2, 0.04, float("inf"), 0, 3), {}, "teacher temperatures must be finite and > 0"),
])
def test_dino_constructor_refuses_with_the_argument_named(args, kwargs, message):
    raises(ValueError, message, tt.DINOLoss, *args, **kwargs)


def test_dino_constructor_boundaries():
    """ncrops 2, momentum 0 (the center is the last batch's mean), a warm-up of every epoch."""
    d = tt.DINOLoss(6, 2, 0.04, 0.07, 3, 3, student_temp=1, center_momentum=0)
    assert d.ncrops == 2 and d.student_temp == 1.0 and d.center_momentum == 0.0
    assert d.teacher_temp_schedule == pytest.approx([0.04, 0.055, 0.07])
    assert d.center.shape == (1, 6) and d.center.dtype == torch.float32 and d.recorder is None
    s, t = scores(2 * 8, 6, seed=3).requires_grad_(), scores(2 * 8, 6, seed=4) + 0.5
    ref = DINOReference(6, 2, 0.04, 0.07, 3, 3, student_temp=1, center_momentum=0)
    assert abs(d(s, t, 2).item() / ref(s, t, 2).item() - 1) <= 1e-6
    torch.testing.assert_close(d.center, t.mean(0, keepdim=True))
    assert tt.DINOLoss(6, 2, 0.04, 0.07, 1, 2).student_temp == 0.1
    assert tt.DINOLoss(6, 2, 0.04, 0.07, 1, 2).center_momentum == 0.9


# ----------------------------------------------------------------------------- forward arguments
@pytest.mark.parametrize("output,queue,exc,message", [
    ([1.0], None, TypeError, "output must be a torch.Tensor, got list"),
    (torch.zeros(4, 3, dtype=torch.int32), None, TypeError,
     "output must be float16, bfloat16, float32 or float64, got torch.int32"),
    (torch.randn(4), None, ValueError, "output must be 2-D (crops * batch, prototypes), got ndim=1"),
    (torch.randn(2, 2, 3), None, ValueError, "output must be 2-D (crops * batch, prototypes), got ndim=3"),
    (torch.randn(0, 3), None, ValueError, "output has 0 rows, not a positive multiple of the 2 crops"),
    (torch.randn(5, 3), None, ValueError, "output has 5 rows, not a positive multiple of the 2 crops"),
    (torch.randn(4, 3), "queue", TypeError, "queue must be a torch.Tensor, got str"),
    (torch.randn(4, 3), torch.randn(2, 5), ValueError, "queue must have shape (2, L, 3), got (2, 5)"),
    (torch.randn(4, 3), torch.randn(1, 5, 3), ValueError, "queue must have shape (2, L, 3), got (1, 5, 3)"),
    (torch.randn(4, 3), torch.randn(2, 5, 4), ValueError, "queue must have shape (2, L, 3), got (2, 5, 4)"),
])
def test_swav_forward_refuses_with_the_argument_named(output, queue, exc, message):
    raises(exc, message, tt.SwAVLoss(), output, queue=queue)


@pytest.mark.parametrize("student,teacher,epoch,exc,message", [
    ("s", torch.randn(6, 4), 0, TypeError, "student_output must be a torch.Tensor, got str"),
    (torch.randn(9, 4), None, 0, TypeError, "teacher_output must be a torch.Tensor, got NoneType"),
    (torch.randn(9), torch.randn(6, 4), 0, ValueError, "student_output must have shape (ncrops * B, 4), got (9,)"),
    (torch.randn(9, 3), torch.randn(6, 4), 0, ValueError, "student_output must have shape (ncrops * B, 4), got (9, 3)"),
    (torch.randn(9, 4), torch.randn(6), 0, ValueError, "teacher_output must have shape (2 * B, 4), got (6,)"),
    (torch.randn(9, 4), torch.randn(6, 3), 0, ValueError, "teacher_output must have shape (2 * B, 4), got (6, 3)"),
    (torch.randn(9, 4), torch.randn(5, 4), 0, ValueError,
     "teacher_output must hold 2 crops and student_output 3 crops of the same batch, got 5 and 9 rows"),
    (torch.randn(0, 4), torch.randn(0, 4), 0, ValueError,
     "teacher_output must hold 2 crops and student_output 3 crops of the same batch, got 0 and 0 rows"),
    (torch.randn(6, 4), torch.randn(6, 4), 0, ValueError,
     "teacher_output must hold 2 crops and student_output 3 crops of the same batch, got 6 and 6 rows"),
    (torch.randn(9, 4), torch.randn(6, 4), True, ValueError, "epoch must be an int in [0, nepochs=2), got True"),
    (torch.randn(9, 4), torch.randn(6, 4), 1.0, ValueError, "epoch must be an int in [0, nepochs=2), got 1.0"),
    (torch.randn(9, 4), torch.randn(6, 4), -1, ValueError, "epoch must be an int in [0, nepochs=2), got -1"),
    (torch.randn(9, 4), torch.randn(6, 4), 2, ValueError, "epoch must be an int in [0, nepochs=2), got 2"),
])
def test_dino_forward_refuses_with_the_argument_named(student, teacher, epoch, exc, message):
    d = tt.DINOLoss(4, 3, 0.04, 0.07, 1, 2)
    raises(exc, message, d, student, teacher, epoch)
    assert torch.equal(d.center, torch.zeros(1, 4))  # nothing was updated


def test_nonfinite_scores_name_the_tensor_and_the_row():
    bad = torch.randn(8, 4)
    bad[5, 2] = float("nan")  # row 1 of crop 1
    raises(ValueError, "SwAVLoss: output contains NaN (row 1)", tt.SwAVLoss(), bad)
    raises(ValueError, "SwAVLoss: output contains NaN (row 1)", tt.SwAVLoss(), bad.double())
    d = tt.DINOLoss(4, 3, 0.04, 0.07, 1, 2)
    t = torch.randn(6, 4)
    t[3, 1] = float("nan")
    raises(ValueError, "teacher_output contains NaN (row 3)", d, torch.randn(9, 4), t, 0)
    s = torch.randn(9, 4)
    s[7, 1] = float("nan")
    raises(ValueError, "student scores contains NaN (row 7)", d, s, torch.randn(6, 4), 0)
    # the SwAV crop that assigns no codes is read by the cross-entropy only
    s = torch.randn(8, 4)
    s[6] = float("-inf")
    raises(ValueError, "student scores: every state of row 6 is forbidden (+inf energy); a Gibbs state needs at "
           "least one finite energy per row", tt.SwAVLoss(crops_for_assign=(0,)), s)


def test_multicrop_names_labels_that_are_not_finite():
    """Finite scores and a nan label: the loss is nan while every row's log Z is finite."""
    s = scores(2 * 4, 5, seed=8)
    labels = torch.softmax(scores(2 * 4, 5, seed=9), 1)
    labels[2, 3] = float("nan")
    grad = torch.empty_like(s)
    raises(ValueError, "labels contain NaN or inf", losses._multicrop_into, s, labels, (0, 1), 2, 10.0, grad)
    labels[2, 3] = 0.0
    total = losses._multicrop_into(s, labels, (0, 1), 2, 10.0, grad)
    # crop 0 predicts the labels of crop 1 and the reverse (sum over rows, not the mean)
    ls = torch.log_softmax(10.0 * s.double(), 1)
    expected = -(labels[4:].double() * ls[:4]).sum() - (labels[:4].double() * ls[4:]).sum()
    assert abs(total / expected.item() - 1) <= 1e-6


# ----------------------------------------------------------------------------- the op's outputs
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_swav_op_outputs(dtype):
    """thermossl::swav_loss: the loss (0-d, the scores' dtype), the gradient of the sum (the
    scores' dtype), the codes only when asked (kernel dtype), mu and charge errors per assigned
    crop and the codes' log Z = logsumexp((mu + scores) / epsilon) per row (float64)."""
    B, K = 12, 7
    x = scores(3 * B, K, seed=5, dtype=dtype)
    kd = torch.float32 if dtype == torch.bfloat16 else dtype
    loss, grad, codes, mu, err, log_z = torch.ops.thermossl.swav_loss(x, (2, 0), 3, 0.05, 4, 10.0, None, True)
    assert loss.shape == () and loss.dtype == dtype and grad.dtype == dtype and grad.shape == x.shape
    assert codes.shape == (2 * B, K) and codes.dtype == kd
    assert mu.shape == (2, K) and err.shape == (2,) and log_z.shape == (2 * B,)
    assert mu.dtype == err.dtype == log_z.dtype == torch.float64
    assert all(t.device.type == "cpu" for t in (loss, grad, codes, mu, err, log_z))
    xd = x.double()
    for i, crop in enumerate((2, 0)):
        block = xd[crop * B:(crop + 1) * B]
        ref = swav_sinkhorn(block, 0.05, 4)
        rtol = 1e-10 if dtype == torch.float64 else 1e-4
        torch.testing.assert_close(codes[i * B:(i + 1) * B].double(), ref, rtol=rtol, atol=rtol * 1e-2)
        expected = torch.logsumexp((mu[i] + block) / 0.05, 1)
        torch.testing.assert_close(log_z[i * B:(i + 1) * B], expected, rtol=rtol, atol=rtol)
        # the charge error: the column sums' distance from uniform (L1), small but not zero
        col = codes[i * B:(i + 1) * B].double().mean(0)
        assert 0 < err[i] < 1 and abs(err[i] - (col - 1 / K).abs().sum()) <= 0.5 * err[i] + 1e-6
    _, _, none, *_ = torch.ops.thermossl.swav_loss(x, (2, 0), 3, 0.05, 4, 10.0, None, False)
    assert none.shape == (0, K) and none.dtype == kd


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_dino_op_outputs(dtype):
    """thermossl::dino_loss: the labels only when asked (kernel dtype) and their log Z =
    logsumexp((teacher - center) / T) per row (float64); the loss and gradient in the student's
    dtype."""
    B, K = 10, 6
    s = scores(3 * B, K, seed=6, dtype=dtype)
    t = scores(2 * B, K, seed=7, dtype=dtype)
    center = torch.linspace(-0.2, 0.3, K).reshape(1, K)
    kd = torch.float32 if dtype == torch.float16 else dtype
    loss, grad, labels, log_z = torch.ops.thermossl.dino_loss(s, t, center, 0.05, 3, 10.0, True)
    assert loss.shape == () and loss.dtype == dtype and grad.dtype == dtype and grad.shape == s.shape
    assert labels.shape == (2 * B, K) and labels.dtype == kd
    assert log_z.shape == (2 * B,) and log_z.dtype == torch.float64
    td = t.double() - center.double()
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(labels.double(), torch.softmax(td / 0.05, 1), rtol=rtol, atol=rtol * 1e-2)
    torch.testing.assert_close(log_z, torch.logsumexp(td / 0.05, 1), rtol=rtol, atol=rtol)
    _, _, none, _ = torch.ops.thermossl.dino_loss(s, t, center, 0.05, 3, 10.0, False)
    assert none.shape == (0, K) and none.dtype == kd


# ----------------------------------------------------------------------------- the registered op's route
@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_through_the_registered_op_is_the_published_loss(with_queue):
    """Under a dispatch mode the losses call torch.ops.thermossl.swav_loss/dino_loss (and its
    registered autograd): the published loss, its gradient, the codes kept; with a queue."""
    B, K, L = 16, 9, 24
    x = scores(4 * B, K, seed=11).requires_grad_()
    queue = scores(2 * L, K, seed=12).reshape(2, L, K) if with_queue else None
    fn = tt.SwAVLoss(nmb_crops=(2, 2), crops_for_assign=(1, 3), keep_codes=True)
    with PassThrough():
        loss = fn(x, queue=queue)
    assert "thermossl_swav_loss" in type(loss.grad_fn).__name__
    (g,) = torch.autograd.grad(loss, x)
    ref = swav_loss(x, crops_for_assign=(1, 3), nmb_crops=(2, 2), queue_scores=queue)
    (g_ref,) = torch.autograd.grad(ref, x)
    assert abs(loss.item() / ref.item() - 1) <= 1e-6
    assert float((g - g_ref).abs().max() / g_ref.abs().max()) <= 1e-5
    assert fn.last_codes.shape == (2 * B, K)
    for i, crop in enumerate((1, 3)):
        block = x.detach()[crop * B:(crop + 1) * B]
        ref_q = swav_sinkhorn(block if queue is None else torch.cat((queue[i], block)))[-B:]
        torch.testing.assert_close(fn.last_codes[i * B:(i + 1) * B], ref_q, rtol=1e-4, atol=1e-6)


def test_dino_through_the_registered_op_is_the_published_loss():
    B, K = 12, 8
    d, ref = tt.DINOLoss(K, 4, 0.04, 0.07, 2, 3), DINOReference(K, 4, 0.04, 0.07, 2, 3)
    for epoch in (0, 2):
        s = scores(4 * B, K, seed=13 + epoch).requires_grad_()
        t = scores(2 * B, K, seed=14 + epoch) + 0.4
        with PassThrough():
            loss = d(s, t, epoch)
        assert "thermossl_dino_loss" in type(loss.grad_fn).__name__
        (g,) = torch.autograd.grad(loss, s)
        r = ref(s, t, epoch)
        (g_ref,) = torch.autograd.grad(r, s)
        assert abs(loss.item() / r.item() - 1) <= 1e-6
        assert float((g - g_ref).abs().max() / g_ref.abs().max()) <= 1e-5
        torch.testing.assert_close(d.center, ref.center)


def test_autocast_with_a_queue_runs_in_float32():
    B, K, L = 16, 8, 20
    head = torch.nn.Linear(6, K)
    feats = torch.randn(2 * B, 6, generator=torch.Generator().manual_seed(3))
    queue = scores(2 * L, K, seed=15).reshape(2, L, K).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats)
        swav = tt.SwAVLoss(keep_codes=True)
        loss = swav(out, queue=queue)
        d = tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2)
        teacher = out.detach() + 0.5
        dl = d(out, teacher, 0)
    assert out.dtype == torch.bfloat16 and loss.dtype == dl.dtype == torch.float32
    ref = swav_loss(out.float(), queue_scores=queue.float())
    assert abs(loss.item() / ref.item() - 1) <= 1e-6
    assert swav.last_codes.shape == (2 * B, K) and swav.last_codes.dtype == torch.float32
    dref = DINOReference(K, 2, 0.04, 0.07, 1, 2)(out.float(), teacher.float(), 0)
    assert abs(dl.item() / dref.item() - 1) <= 1e-6


# ----------------------------------------------------------------------------- the kept work buffers
def test_scratch_buffers_are_reused_when_they_fit():
    buf = losses._ScratchBuffer()
    cpu = torch.device("cpu")
    a = buf.get((3, 4), torch.float32, cpu)
    assert a.shape == (3, 4) and a.dtype == torch.float32 and a.device == cpu
    assert buf.get((3, 4), torch.float32, cpu) is a  # kept between calls
    b = buf.get((4, 3), torch.float32, cpu)  # another shape: a new buffer, kept in place of the old
    assert b is not a and b.shape == (4, 3) and buf.get((4, 3), torch.float32, cpu) is b
    c = buf.get((4, 3), torch.float64, cpu)  # another dtype
    assert c is not b and c.dtype == torch.float64 and buf.get((4, 3), torch.float64, cpu) is c
    meta = torch.device("meta")  # not the CPU: a new tensor each time (CUDA's allocator caches)
    m = buf.get((4, 3), torch.float64, meta)
    assert m.device == meta and buf.get((4, 3), torch.float64, meta) is not m
    assert buf.get((4, 3), torch.float64, cpu) is c  # the CPU buffer is untouched by that
    other = losses._ScratchBuffer()
    assert other.get((4, 3), torch.float64, cpu) is not c  # one buffer per object
    losses.release_scratch()
    d = buf.get((4, 3), torch.float64, cpu)
    assert d is not c and buf.get((4, 3), torch.float64, cpu) is d
    losses.release_scratch()
    assert getattr(buf._local, "tensor", "unset") is None and getattr(other._local, "tensor", "unset") is None


def test_losses_keep_their_work_buffers_between_steps():
    """Two steps of the same shape reuse the codes, queue stack, padded codes and labels buffers
    (their addresses are unchanged), and the results do not depend on what a buffer held."""
    B, K, L = 8, 5, 12
    x = scores(2 * B, K, seed=16)
    queue = scores(2 * L, K, seed=17).reshape(2, L, K)
    swav = tt.SwAVLoss(keep_codes=True)
    first = swav(x, queue=queue)
    addresses = [getattr(b._local, "tensor", None) for b in losses._SCRATCH_BUFFERS[:3]]
    assert all(t is not None for t in addresses)
    ptrs = [t.data_ptr() for t in addresses]
    swav(scores(2 * B, K, seed=18), queue=queue)
    second = swav(x, queue=queue)
    assert [getattr(b._local, "tensor").data_ptr() for b in losses._SCRATCH_BUFFERS[:3]] == ptrs
    assert torch.equal(first, second)
    losses.release_scratch()
    assert torch.equal(swav(x, queue=queue), first)


def test_multicrop_writes_every_gradient_row():
    """A crop whose own block is the only label block gets no kernel pass: its gradient rows are
    written as zeros whatever the buffer held, its loss rows add nothing."""
    B, K = 4, 5
    s = scores(3 * B, K, seed=19).double()
    labels = torch.softmax(scores(B, K, seed=20).double(), 1)
    grad = torch.full_like(s, float("nan"))
    total = losses._multicrop_into(s, labels, (1,), 3, 10.0, grad)
    ls = torch.log_softmax(10.0 * s, 1)
    expected = -(labels * ls[:B]).sum() - (labels * ls[2 * B:]).sum()
    assert abs(total / expected.item() - 1) <= 1e-12
    assert torch.equal(grad[B:2 * B], torch.zeros(B, K, dtype=torch.float64))
    sm = torch.softmax(10.0 * s, 1)
    torch.testing.assert_close(grad[:B], 10.0 * (sm[:B] - labels))
    torch.testing.assert_close(grad[2 * B:], 10.0 * (sm[2 * B:] - labels))


@pytest.mark.parametrize("student_dtype,teacher_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float32),
                                                         (torch.float64, torch.bfloat16), (torch.bfloat16, torch.float32)])
def test_dino_with_a_teacher_of_another_dtype(student_dtype, teacher_dtype):
    """The teacher's labels are computed in the student's kernel dtype: the published loss on the
    teacher's values, the student's dtype out."""
    B, K = 8, 6
    s = scores(2 * B, K, seed=21, dtype=student_dtype).requires_grad_()
    t = scores(2 * B, K, seed=22, dtype=teacher_dtype) + 0.3
    loss = tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2)(s, t, 0)
    (g,) = torch.autograd.grad(loss, s)
    assert loss.dtype == g.dtype == student_dtype
    sr = s.detach().double().requires_grad_()
    ref = DINOReference(K, 2, 0.04, 0.07, 1, 2).double()(sr, t.double(), 0)
    (g_ref,) = torch.autograd.grad(ref, sr)
    # the teacher's values are exact in the kernel dtype but for float64 -> float32
    tol = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 1e-2}[student_dtype]
    assert abs(loss.item() / ref.item() - 1) <= tol
    assert float((g.double() - g_ref).abs().max() / g_ref.abs().max()) <= tol


# ----------------------------------------------------------------------------- the recorder's measurement
def test_swav_recorder_measures_the_loss_codes_mu_and_charge_error():
    """The recorder books the loss's own label state of the first assigned crop (its codes, its
    Sinkhorn mu and charge error), not one its reservoir would compute: here the loss's Sinkhorn
    (epsilon 0.07, 5 iterations) differs from the recorder's default reservoir."""
    B, K = 16, 6
    x = scores(3 * B, K, seed=23, dtype=torch.float64)
    rec = tt.LedgerRecorder(T=0.1)
    fn = tt.SwAVLoss(epsilon=0.07, sinkhorn_iterations=5, crops_for_assign=(2, 0), nmb_crops=(3,), recorder=rec,
                     keep_codes=True)
    fn(x)
    _, _, codes, mu, err, _ = torch.ops.thermossl.swav_loss(x, (2, 0), 3, 0.07, 5, 10.0, None, True)
    torch.testing.assert_close(fn.last_codes, codes, rtol=0, atol=0)
    row = rec.feedback(x[2 * B:] * 1.01)
    assert row["charge_err"] == pytest.approx(float(err[0]), rel=1e-12)
    assert row["mu_min"] == pytest.approx(float(mu[0].min()), rel=1e-12)
    assert row["mu_max"] == pytest.approx(float(mu[0].max()), rel=1e-12)
    # the energy of the measured state: the codes of crop 2 against E = -scores of crop 2
    u = -(codes[:B] * x[2 * B:]).sum(1).mean()
    assert row["U_measured"] == pytest.approx(float(u), rel=1e-12)
    # the whole row is that of the public measurement of these codes at the loss's epsilon
    by_hand = tt.LedgerRecorder(T=0.1)
    by_hand.measure(x[2 * B:], codes[:B], mu=mu[0], T_label=0.07)
    expected = by_hand.feedback(x[2 * B:] * 1.01)
    for field, value in expected.items():
        assert row[field] == pytest.approx(value, rel=1e-9, abs=1e-12), field


# ----------------------------------------------------------------------------- tensor subclasses
class Wrapped(torch.Tensor):
    """A wrapper tensor subclass without storage of its own (as DTensor and other wrappers are): its
    __torch_dispatch__ runs each op on the wrapped tensor. The losses' eager path reads raw
    addresses, so such inputs must take the registered op, which dispatches to the subclass."""

    @staticmethod
    def __new__(cls, inner):
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype, device=inner.device,
                                                   strides=inner.stride())

    def __init__(self, inner):
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        from torch.utils._pytree import tree_map

        def unwrap(t):
            return t.inner if isinstance(t, Wrapped) else t

        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))
        return tree_map(lambda t: Wrapped(t) if isinstance(t, torch.Tensor) else t, out)


def test_wrapper_subclass_inputs_take_the_registered_op():
    B, K = 8, 6
    x = scores(2 * B, K, seed=24)
    queue = scores(2 * 10, K, seed=25).reshape(2, 10, K)
    for q in (None, queue):
        loss = tt.SwAVLoss()(Wrapped(x), queue=q)
        assert type(loss) is Wrapped and loss.inner.item() == tt.SwAVLoss()(x, queue=q).item()
    t = scores(2 * B, K, seed=26) + 0.2
    center = torch.linspace(-0.1, 0.1, K).reshape(1, K)
    for wrap in ("student", "teacher", "center"):
        d, plain = tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2), tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2)
        plain.center.copy_(center)
        d.center = Wrapped(center.clone()) if wrap == "center" else center.clone()
        value = d(Wrapped(x) if wrap == "student" else x, Wrapped(t) if wrap == "teacher" else t, 0)
        expected = plain(x, t, 0)
        assert type(value) is Wrapped and value.inner.item() == expected.item(), wrap


def test_dino_half_teacher_reaches_the_softmax_kernel_in_place(monkeypatch):
    """A CPU half teacher with a float32 student is read by the labels' softmax kernel as it is
    (converted in registers), not copied to float32 first; a float64 teacher with a float32
    student is converted (the kernel dtype is the student's)."""
    from thermossl.torch import _kernels

    seen = []
    softmax = _kernels.row_softmax

    def recording(t, *args):
        seen.append((t.dtype, t.untyped_storage().data_ptr()))
        return softmax(t, *args)

    monkeypatch.setattr(_kernels, "row_softmax", recording)
    B, K = 8, 6
    s = scores(2 * B, K, seed=27)
    for teacher in (scores(2 * B, K, seed=28).to(torch.bfloat16), scores(2 * B, K, seed=28).to(torch.float16),
                    scores(2 * B, K, seed=28).double()):
        seen.clear()
        tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2)(s, teacher, 0)
        if teacher.dtype == torch.float64:
            assert seen[0][0] == torch.float32
        else:
            assert seen == [(teacher.dtype, teacher.untyped_storage().data_ptr())]


def test_dino_recorder_through_both_routes_and_autocast():
    """DINO's recorder gets the teacher's labels of the first global crop on the eager path, the
    registered op's route and under autocast: the same ledger row each way."""
    B, K = 8, 6
    s = scores(2 * B, K, seed=29)
    t = scores(2 * B, K, seed=30) + 0.2
    rows = []
    for route in ("eager", "op", "autocast"):
        rec = tt.LedgerRecorder(T=0.1)
        d = tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2, recorder=rec)
        if route == "op":
            with PassThrough():
                d(s, t, 0)
        elif route == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                d(s, t, 0)
        else:
            d(s, t, 0)
        rows.append(rec.feedback(t[:B] * 1.01))
    for row in rows[1:]:
        for field, value in rows[0].items():
            assert row[field] == pytest.approx(value, rel=1e-6, abs=1e-9), field
    # the labels measured: softmax(teacher / T) of crop 0 (the center is 0 at the first step)
    by_hand = tt.LedgerRecorder(T=0.1)
    by_hand.measure(t[:B], torch.softmax(t[:B].double() / 0.04, 1).float(), mu=torch.zeros(K), T_label=0.04)
    expected = by_hand.feedback(t[:B] * 1.01)
    for field, value in expected.items():
        assert rows[0][field] == pytest.approx(value, rel=1e-5, abs=1e-7), field


# ----------------------------------------------------------------------------- round 7 kills
def test_op_outputs_other_than_the_loss_carry_no_gradient():
    """The registered ops mark every output but the loss non-differentiable: the gradient buffer,
    the codes or labels, mu, charge errors and log Z are data, not functions of the scores."""
    B, K = 6, 5
    x = scores(2 * B, K, seed=31).requires_grad_()
    out = torch.ops.thermossl.swav_loss(x, (0, 1), 2, 0.05, 3, 10.0, None, True)
    assert out[0].requires_grad
    assert [t.requires_grad for t in out[1:]] == [False] * 5
    s = scores(2 * B, K, seed=32).requires_grad_()
    t = scores(2 * B, K, seed=33)
    out = torch.ops.thermossl.dino_loss(s, t, torch.zeros(1, K), 0.05, 2, 10.0, True)
    assert out[0].requires_grad
    assert [t.requires_grad for t in out[1:]] == [False] * 3


@pytest.mark.parametrize("make", ["swav", "dino"])
def test_second_backward_through_one_forward_is_refused_by_name(make):
    B, K = 6, 5
    x = scores(2 * B, K, seed=34).requires_grad_()
    if make == "swav":
        loss = tt.SwAVLoss()(x)
    else:
        loss = tt.DINOLoss(K, 2, 0.04, 0.07, 1, 2)(x, scores(2 * B, K, seed=35), 0)
    loss.backward(retain_graph=True)
    raises(RuntimeError, "thermossl losses support one backward per forward (their gradient buffer is "
           "scaled in place by the first); run the forward again", loss.backward)


def test_without_torchs_dispatch_probes_every_call_takes_the_registered_op(monkeypatch):
    """Where this torch lacks one of its private probes (a tracing dispatch mode, a functorch
    transform), the eager path cannot tell it is safe: every call takes the registered op."""
    B, K = 6, 5
    x = scores(2 * B, K, seed=36)
    assert losses._eager(x)
    expected = tt.SwAVLoss()(x).item()
    ops_called = []
    swav_op = losses._swav_loss

    def recording(*args):
        ops_called.append(True)
        return swav_op(*args)

    monkeypatch.setattr(losses, "_swav_loss", recording)
    for probe in ("_DISPATCH_DEPTH", "_TRANSFORMS"):
        with monkeypatch.context() as m:
            m.setattr(losses, probe, None)
            assert losses._eager(x) is False
            ops_called.clear()
            assert tt.SwAVLoss()(x).item() == pytest.approx(expected, rel=1e-6)
            assert ops_called == [True], probe
    ops_called.clear()
    tt.SwAVLoss()(x)
    assert ops_called == []


def test_a_wrapper_subclass_queue_alone_takes_the_registered_op():
    """A plain output with a wrapper-subclass queue: the eager path reads raw addresses, which a
    wrapper without storage does not have, so the queue alone sends the call to the registered
    op (which dispatches to the subclass)."""
    B, K, L = 8, 6, 10
    x = scores(2 * B, K, seed=37)
    queue = scores(2 * L, K, seed=38).reshape(2, L, K)
    loss = tt.SwAVLoss()(x, queue=Wrapped(queue))
    assert type(loss) is Wrapped
    assert loss.inner.item() == pytest.approx(tt.SwAVLoss()(x, queue=queue).item(), rel=1e-6)


def test_multicrop_sums_its_float32_loss_rows_in_float64(monkeypatch):
    """_multicrop_into's total is accumulated in float64 (its docstring): float32 loss rows of
    2^24 and fifteen 1.0 sum to the odd 2^24 + 15 exactly, which no float32 sum can give (every
    float32 in [2^24, 2^25) is even)."""
    from thermossl.torch import _kernels

    block = _kernels.row_cross_entropy_block

    def crafted(target, first, scores_, row0, batch, scale, loss_rows, grad, log_z):
        block(target, first, scores_, row0, batch, scale, loss_rows, grad, log_z)
        loss_rows[row0:row0 + batch] = 1.0
        if row0 == 0:
            loss_rows[0] = 2.0 ** 24

    monkeypatch.setattr(_kernels, "row_cross_entropy_block", crafted)
    B, K = 8, 5
    s = scores(2 * B, K, seed=39)
    labels = torch.softmax(scores(2 * B, K, seed=40), 1)
    grad = torch.empty(2 * B, K)
    total = losses._multicrop_into(s, labels, (0, 1), 2, 10.0, grad)
    assert total == 2.0 ** 24 + 15
