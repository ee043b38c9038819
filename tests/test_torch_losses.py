"""SwAVLoss and DINOLoss against plain-torch transcriptions of the published algorithms
(tests/torch_references.py): loss value (float32 <= 1e-6 relative), gradient (<= 1e-5), the DINO
center over several steps, half types, autocast, errors, and the CUDA variants."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import thermossl  # noqa: E402
import thermossl.torch as tt  # noqa: E402
from torch_references import DINOReference, swav_loss  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and thermossl.cuda.is_available()),
    reason="needs a CUDA device and thermossl built with its CUDA kernels"))]


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def scores(rows, k, seed, dtype=torch.float32, device="cpu", scale=1.0):
    g = torch.Generator().manual_seed(seed)
    # prototype scores are cosine similarities in SwAV: |s| <= 1
    x = torch.nn.functional.normalize(torch.randn(rows, k, generator=g, dtype=dtype), dim=1) * scale
    return x.to(device).requires_grad_()


SWAV_CASES = [
    ((0, 1), (2,)),        # the default: two crops, each assigning
    ((0, 1), (2, 4)),      # multi-crop: 2 global + 4 local crops
    ((0,), (2, 2)),        # one assigned crop
    ((1, 0), (3,)),        # assignment order differs from crop order
    ((1,), (3,)),          # a crop with no label block in the middle: its gradient rows are zero
    ((0, 1, 2, 3), (4, 2)),  # four assigning crops: a target is three or four blocks summed
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("crops,nmb", SWAV_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swav_equals_published_loss_and_gradient(device, crops, nmb, dtype):
    B, K = 96, 40
    x = scores(sum(nmb) * B, K, seed=len(nmb) + crops[0], dtype=dtype, device=device, scale=3.0)
    ref = swav_loss(x, crops_for_assign=crops, nmb_crops=nmb)
    (g_ref,) = torch.autograd.grad(ref, x)
    loss = tt.SwAVLoss(crops_for_assign=crops, nmb_crops=nmb)(x)
    (g,) = torch.autograd.grad(loss, x)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert loss.dtype == dtype and loss.shape == ()
    assert abs(loss.item() / ref.item() - 1) <= tol
    assert rel_err(g, g_ref) <= (1e-5 if dtype == torch.float32 else 1e-11)


@pytest.mark.parametrize("device", DEVICES)
def test_swav_with_queue_equals_published_loss(device):
    B, K, L = 64, 30, 256
    x = scores(2 * B, K, seed=5, device=device, scale=3.0)
    queue = scores(2 * L, K, seed=6, device=device, scale=3.0).detach().reshape(2, L, K)
    ref = swav_loss(x, queue_scores=queue)
    (g_ref,) = torch.autograd.grad(ref, x)
    loss = tt.SwAVLoss()(x, queue=queue)
    (g,) = torch.autograd.grad(loss, x)
    assert abs(loss.item() / ref.item() - 1) <= 1e-6
    assert rel_err(g, g_ref) <= 1e-5
    # the queue changes the codes (they are balanced over queue + batch)
    assert abs(tt.SwAVLoss()(x).item() - loss.item()) > 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swav_eager_path_equals_registered_op_and_reference(dtype):
    """Eager calls take an autograd.Function over the op's implementation (no custom-op dispatch
    cost); the registered op (torch.compile, tracing) gives the same loss and gradient. 256 x 10
    at scale 3: row maxima spread over ~50 / epsilon units, past the old guard of the scaled form."""
    B, K = 256, 10
    x = scores(2 * B, K, seed=21, dtype=dtype, scale=3.0)
    loss = tt.SwAVLoss()(x)
    assert type(loss.grad_fn).__name__ == "_SwAVLossFunctionBackward"
    (g,) = torch.autograd.grad(loss, x)
    value, grad_sum = torch.ops.thermossl.swav_loss(x, (0, 1), 2, 0.05, 3, 10.0, None, False)[:2]
    assert torch.equal(value, loss.detach())
    torch.testing.assert_close(g, grad_sum / (2 * B), rtol=0, atol=0)
    ref = swav_loss(x)
    (g_ref,) = torch.autograd.grad(ref, x)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert abs(loss.item() / ref.item() - 1) <= tol
    assert rel_err(g, g_ref) <= (1e-5 if dtype == torch.float32 else 1e-11)
    d = tt.DINOLoss(K, 2, 0.04, 0.07, 2, 10)
    t = scores(2 * B, K, seed=22, dtype=dtype, scale=3.0).detach()
    dl = d(x, t, 5)
    assert type(dl.grad_fn).__name__ == "_DINOLossFunctionBackward"
    (gd,) = torch.autograd.grad(dl, x)
    ref_d = DINOReference(K, 2, 0.04, 0.07, 2, 10).to(dtype)
    a = ref_d(x, t, 5)
    (ga,) = torch.autograd.grad(a, x)
    assert abs(dl.item() / a.item() - 1) <= tol
    assert rel_err(gd, ga) <= (1e-5 if dtype == torch.float32 else 1e-11)


def test_swav_codes_are_swavs_sinkhorn():
    from torch_references import swav_sinkhorn

    B, K = 128, 20
    x = scores(2 * B, K, seed=9, dtype=torch.float64, scale=3.0)
    loss = tt.SwAVLoss(keep_codes=True)
    loss(x)
    for i in range(2):
        ref = swav_sinkhorn(x[i * B:(i + 1) * B].detach())
        torch.testing.assert_close(loss.last_codes[i * B:(i + 1) * B], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ncrops", [2, 6])
def test_dino_equals_published_loss_gradient_and_center(device, ncrops):
    B, K = 48, 64
    args = (K, ncrops, 0.04, 0.07, 3, 8)
    ref = DINOReference(*args).to(device)
    loss = tt.DINOLoss(*args).to(device)
    for step, epoch in enumerate([0, 1, 2, 3, 7, 7]):
        s = scores(ncrops * B, K, seed=10 + step, device=device, scale=4.0)
        t = scores(2 * B, K, seed=50 + step, device=device, scale=4.0).detach() + 0.3  # a biased teacher
        a = ref(s, t, epoch)
        (ga,) = torch.autograd.grad(a, s)
        b = loss(s, t, epoch)
        (gb,) = torch.autograd.grad(b, s)
        assert abs(b.item() / a.item() - 1) <= 1e-6, step
        assert rel_err(gb, ga) <= 1e-5, step
        assert rel_err(loss.center, ref.center) <= 1e-6, step
    assert float(loss.center.abs().max()) > 0.1  # the center moved
    assert "center" in loss.state_dict() and loss.state_dict()["center"].shape == (1, K)


def test_dino_teacher_temperature_schedule():
    loss = tt.DINOLoss(8, 2, 0.04, 0.07, 4, 10)
    assert loss.teacher_temp_schedule[:4] == pytest.approx([0.04, 0.05, 0.06, 0.07])
    assert loss.teacher_temp_schedule[4:] == pytest.approx([0.07] * 6)
    assert len(loss.teacher_temp_schedule) == 10


def test_dino_center_state_dict_round_trip():
    a = tt.DINOLoss(16, 4, 0.04, 0.07, 2, 5)
    a(scores(4 * 8, 16, 1), scores(2 * 8, 16, 2).detach(), 0)
    b = tt.DINOLoss(16, 4, 0.04, 0.07, 2, 5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.center, b.center)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_within_bounds_of_float32(dtype):
    """Half scores are converted to float32 inside the ops: the loss is the float32 loss of the
    rounded scores, rounded once; against float32 scores the difference is the rounding of the
    input (bounded here by 2e-2 relative for bfloat16, 3e-3 for float16)."""
    B, K = 64, 32
    x32 = scores(2 * B, K, seed=3, scale=3.0)
    xh = x32.detach().to(dtype).requires_grad_()
    lh = tt.SwAVLoss()(xh)
    (gh,) = torch.autograd.grad(lh, xh)
    assert lh.dtype == dtype and gh.dtype == dtype
    xr = xh.detach().float().requires_grad_()
    lr = tt.SwAVLoss()(xr)
    assert torch.equal(lh, lr.to(dtype))
    l32 = tt.SwAVLoss()(x32)
    bound = 2e-2 if dtype == torch.bfloat16 else 3e-3
    assert abs(lh.float().item() / l32.item() - 1) <= bound
    d = tt.DINOLoss(K, 2, 0.04, 0.04, 0, 1)
    d32 = tt.DINOLoss(K, 2, 0.04, 0.04, 0, 1)
    t = scores(2 * B, K, seed=4, scale=3.0).detach()
    dh = d(xh, t.to(dtype), 0)
    assert dh.dtype == dtype
    assert abs(dh.float().item() / d32(x32, t, 0).item() - 1) <= bound


def test_autocast_losses_run_in_float32():
    B, K = 32, 16
    head = torch.nn.Linear(8, K)
    feats = torch.randn(2 * B, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats)
        assert out.dtype == torch.bfloat16
        loss = tt.SwAVLoss()(out)
    assert loss.dtype == torch.float32
    ref = swav_loss(out.float())
    assert abs(loss.item() / ref.item() - 1) <= 1e-6
    loss.backward()
    assert torch.isfinite(head.weight.grad).all()


def test_loss_errors_name_the_argument():
    with pytest.raises(ValueError, match="not a positive multiple"):
        tt.SwAVLoss()(torch.randn(5, 4))
    with pytest.raises(ValueError, match="output must be 2-D"):
        tt.SwAVLoss()(torch.randn(4))
    with pytest.raises(ValueError, match="queue must have shape"):
        tt.SwAVLoss()(torch.randn(4, 3), queue=torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="crops_for_assign"):
        tt.SwAVLoss(crops_for_assign=(2,))
    with pytest.raises(ValueError, match="temperature"):
        tt.SwAVLoss(temperature=0)
    bad = torch.randn(8, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tt.SwAVLoss()(bad)
    d = tt.DINOLoss(4, 3, 0.04, 0.07, 1, 2)
    with pytest.raises(ValueError, match="2 crops"):
        d(torch.randn(9, 4), torch.randn(5, 4), 0)
    with pytest.raises(ValueError, match="student_output must have shape"):
        d(torch.randn(9, 3), torch.randn(6, 4), 0)
    with pytest.raises(ValueError, match="ncrops"):
        tt.DINOLoss(4, 1, 0.04, 0.07, 1, 2)
    with pytest.raises(ValueError, match="epoch must be an int in"):
        d(torch.randn(9, 4), torch.randn(6, 4), 2)
    with pytest.raises(ValueError, match="center_momentum"):
        tt.DINOLoss(4, 2, 0.04, 0.07, 1, 2, center_momentum=1.0)


def test_swav_inputs_are_not_modified():
    x = scores(4 * 16, 10, 1)
    q = scores(2 * 32, 10, 2).detach().reshape(2, 32, 10)
    x0, q0 = x.detach().clone(), q.clone()
    tt.SwAVLoss(nmb_crops=(2, 2))(x, queue=q).backward()
    assert torch.equal(x.detach(), x0) and torch.equal(q, q0)


def test_second_backward_through_one_forward_is_refused():
    x = scores(2 * 16, 8, 7)
    loss = tt.SwAVLoss()(x)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    with pytest.raises(RuntimeError, match="support one backward per forward"):
        loss.backward()
    # a fresh forward works, and gives the same gradient
    x.grad = None
    tt.SwAVLoss()(x).backward()
    assert torch.equal(x.grad, first)


# ----------------------------------------------------------------------------- SeLa
def test_sela_labels_are_sinkhorn_to_tolerance_with_warm_starts():
    import numpy as np

    g = torch.Generator().manual_seed(11)
    s = torch.randn(400, 12, generator=g) * 2
    sela = tt.SeLaLabels()
    q = sela.update(s)
    ref = thermossl.sinkhorn(-s.double().numpy(), 1 / 25, tol=1e-6, relaxation="auto")
    np.testing.assert_allclose(q.numpy(), ref.q, rtol=1e-12, atol=1e-14)
    assert sela.converged and sela.err <= 1e-6 and sela.n_iter == ref.n_iter
    torch.testing.assert_close(q.sum(1), torch.ones(400, dtype=torch.float64))
    torch.testing.assert_close(q.mean(0), torch.full((12,), 1 / 12, dtype=torch.float64), rtol=0, atol=1e-6)
    cold = sela.n_iter
    sela.update(s * 1.001)  # the network moved a little: the warm start needs fewer iterations
    assert sela.n_iter < cold
    idx = torch.tensor([3, 7, 11])
    torch.testing.assert_close(sela.targets(idx), sela.q[idx])
    assert torch.equal(sela.labels(idx), sela.q[idx].argmax(1))
    with pytest.raises(RuntimeError, match="update"):
        tt.SeLaLabels().labels()
    with pytest.raises(ValueError, match="scores must have shape"):
        sela.update(torch.randn(5))


def test_finite_differences_of_dino_loss_both_routes():
    """Central finite differences (float64) of DINOLoss in the student output against its
    gradient, through the eager autograd.Function and through the registered op (the teacher is
    a target without gradient, as in DINO). torch.autograd.gradcheck itself does not apply: it
    runs backward twice through one forward (its reentrancy check), which the losses refuse (their
    gradient buffer is scaled in place). SwAV's published gradient holds the codes constant (they
    are computed under no_grad from the same output), so finite differences of SwAVLoss do not
    apply either: its gradient is compared with the reference's autograd above."""
    from thermossl.torch.losses import _dino_loss

    B, K = 6, 5
    g = torch.Generator().manual_seed(3)
    s = torch.randn(3 * B, K, generator=g, dtype=torch.float64)
    t = torch.randn(2 * B, K, generator=g, dtype=torch.float64)
    center = torch.randn(1, K, generator=g, dtype=torch.float64)
    loss = tt.DINOLoss(K, 3, 0.04, 0.07, 2, 4).double()

    def eager(x):
        loss.center.copy_(center)  # the forward updates the center: restore it for each evaluation
        return loss(x, t, 1)

    def op(x):
        return _dino_loss(x, t, center, loss.teacher_temp_schedule[1], 3, 10.0, False)[0]

    for fn in (eager, op):
        x = s.clone().requires_grad_()
        (grad,) = torch.autograd.grad(fn(x), x)
        numeric = torch.empty_like(s)
        eps = 1e-6
        for idx in range(s.numel()):
            d = torch.zeros(s.numel(), dtype=torch.float64)
            d[idx] = eps
            d = d.reshape(s.shape)
            numeric.view(-1)[idx] = (fn(s + d) - fn(s - d)) / (2 * eps)
        torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-8)


def test_tracing_takes_the_registered_op():
    """Under make_fx (a tracing dispatch mode) the losses call their torch.library op, so a graph
    holds one node per loss; plain eager calls do not go through it."""
    from torch.fx.experimental.proxy_tensor import make_fx

    x = scores(2 * 8, 5, seed=4)
    graph = make_fx(lambda v: tt.SwAVLoss()(v))(x.detach())
    assert sum("thermossl.swav_loss" in str(n.target) for n in graph.graph.nodes) == 1
    t = scores(2 * 8, 5, seed=5).detach()
    graph = make_fx(lambda s, u: tt.DINOLoss(5, 2, 0.04, 0.07, 1, 2)(s, u, 0))(x.detach(), t)
    assert sum("thermossl.dino_loss" in str(n.target) for n in graph.graph.nodes) == 1


# ----------------------------------------------------------------------------- half scores read in place
# simd_level: the fixture of tests/conftest.py (each level this CPU runs)


def _record_kernel_calls(monkeypatch):
    """Wrap the two kernels the losses read the student scores with (Sinkhorn's codes, the fused
    cross-entropy + gradient): each call records the scores tensor handed to the kernel (dtype,
    address, storage) and copies of the blocks it read and wrote (labels, loss, gradient, log Z)."""
    from thermossl.torch import _kernels

    calls = {"xent": [], "sinkhorn": []}
    xent, codes = _kernels.row_cross_entropy_block, _kernels.sinkhorn_codes

    def xent_block(q, q_row0, a, a_row0, rows, scale, loss, grad, log_z):
        xent(q, q_row0, a, a_row0, rows, scale, loss, grad, log_z)
        calls["xent"].append(dict(
            a_dtype=a.dtype, a_ptr=a.data_ptr(), a_storage=a.untyped_storage().data_ptr(), q_dtype=q.dtype,
            labels=q[q_row0:q_row0 + rows].clone(), loss=loss[a_row0:a_row0 + rows].clone(),
            grad=grad[a_row0:a_row0 + rows].clone(), log_z=log_z[a_row0:a_row0 + rows].clone()))

    def sinkhorn_codes(scores, T, n_iter, q, context):
        out = codes(scores, T, n_iter, q, context)
        calls["sinkhorn"].append(dict(a_dtype=scores.dtype, a_ptr=scores.data_ptr(),
                                      a_storage=scores.untyped_storage().data_ptr(), q=q.clone()))
        return out

    monkeypatch.setattr(_kernels, "row_cross_entropy_block", xent_block)
    monkeypatch.setattr(_kernels, "sinkhorn_codes", sinkhorn_codes)
    return calls


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_student_scores_reach_the_kernels_without_a_float32_copy(monkeypatch, dtype):
    """SwAVLoss and DINOLoss hand bfloat16/float16 student scores to Sinkhorn and to the fused
    cross-entropy kernel as they are: the tensor the kernels read is the caller's own (same
    storage, same address, half dtype) against float32 labels, so no float32 copy of the score
    matrix is made (before, the losses converted it with ``.float()``)."""
    calls = _record_kernel_calls(monkeypatch)
    B, K = 32, 24
    x = scores(4 * B, K, seed=7, scale=3.0).detach().to(dtype).requires_grad_()
    loss = tt.SwAVLoss(crops_for_assign=(0, 1), nmb_crops=(2, 2))(x)
    loss.backward()
    t = scores(2 * B, K, seed=8, scale=3.0).detach().to(dtype)
    dino = tt.DINOLoss(K, 4, 0.04, 0.07, 1, 2)(x, t, 0)
    dino.backward()
    assert len(calls["sinkhorn"]) == 2 and len(calls["xent"]) == 8  # SwAV: 2 codes, 4 crops; DINO: 4 crops
    for call in calls["sinkhorn"] + calls["xent"]:
        assert call["a_dtype"] == dtype
        assert call["a_storage"] == x.untyped_storage().data_ptr()
    assert {call["a_ptr"] for call in calls["xent"]} == {x.data_ptr()}  # the whole matrix, rows by offset
    assert {call["a_ptr"] for call in calls["sinkhorn"]} == {x.data_ptr(), x.data_ptr() + B * K * x.element_size()}
    assert {call["q_dtype"] for call in calls["xent"]} == {torch.float32}
    assert x.grad.dtype == dtype and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("with_queue", [False, True])
def test_half_student_scores_give_the_float32_kernels_results_to_the_bit(monkeypatch, simd_level, dtype,
                                                                         with_queue):
    """At every SIMD level: the losses on half scores compute exactly what they compute on the
    same values in float32 — the codes, DINO's labels, and every block of the fused kernel's
    float32 loss rows, gradient and log Z, bitwise — and return the float32 run's loss and
    gradient rounded to the half dtype (SwAV with and without a queue, DINO with a half
    teacher)."""
    B, K, L = 32, 40, 64  # 5 crops: both losses average over 2 * 4 * B = 256 terms (a power of two)
    xh = scores(5 * B, K, seed=9, scale=4.0).detach().to(dtype)
    teacher = scores(2 * B, K, seed=10, scale=4.0).detach().to(dtype)
    queue = scores(2 * L, K, seed=11, scale=4.0).detach().reshape(2, L, K) if with_queue else None
    runs = []
    for x in (xh, xh.float()):
        calls = _record_kernel_calls(monkeypatch)
        x = x.clone().requires_grad_()
        swav = tt.SwAVLoss(crops_for_assign=(0, 1), nmb_crops=(2, 3))(x, queue=queue)
        (g_swav,) = torch.autograd.grad(swav, x)
        dino = tt.DINOLoss(K, 5, 0.04, 0.07, 1, 2)(x, teacher if x.dtype == dtype else teacher.float(), 0)
        (g_dino,) = torch.autograd.grad(dino, x)
        runs.append((calls, swav, g_swav, dino, g_dino))
        monkeypatch.undo()  # the next run records through the original kernels
    (half, *h_out), (single, *s_out) = runs
    assert len(half["xent"]) == len(single["xent"]) == 10 and len(half["sinkhorn"]) == 2
    for a, b in zip(half["sinkhorn"], single["sinkhorn"]):
        assert torch.equal(a["q"], b["q"])
    for a, b in zip(half["xent"], single["xent"]):
        assert a["a_dtype"] == dtype and b["a_dtype"] == torch.float32
        for name in ("labels", "loss", "grad", "log_z"):
            assert torch.equal(a[name], b[name]), name
    swav_h, g_swav_h, dino_h, g_dino_h = h_out
    swav_s, g_swav_s, dino_s, g_dino_s = s_out
    assert swav_h.dtype == g_swav_h.dtype == dino_h.dtype == g_dino_h.dtype == dtype
    assert torch.equal(swav_h, swav_s.to(dtype)) and torch.equal(dino_h, dino_s.to(dtype))
    # The mean's factor 1/256 is exact: the half gradient is the float32 one rounded, up to one
    # float16 subnormal step where the half path rounds twice (to half, then the scaled value).
    for g_h, g_s in ((g_swav_h, g_swav_s), (g_dino_h, g_dino_s)):
        assert float((g_h.float() - g_s.to(dtype).float()).abs().max()) <= 2.0 ** -24
