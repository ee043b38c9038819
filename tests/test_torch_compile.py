"""torch.compile(fullgraph=True) of every thermossl.torch op and of both losses: one graph, no
graph break, the same values and gradients as eager. (Few tests: compiling is slow on 2 cores.)"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import thermossl.torch as tt  # noqa: E402

OPS = {
    "log_partition": lambda E, q: tt.log_partition(E, 0.5, q[0]),
    "gibbs": lambda E, q: tt.gibbs(E, torch.tensor(0.5), q[0]),
    "gibbs_entropy": lambda E, q: tt.gibbs_entropy(E, 0.5),
    "cross_entropy": lambda E, q: tt.cross_entropy(q, E, 0.5),
    "logsumexp": lambda E, q: tt.logsumexp(E.reshape(2, 16, 10), (0, 2), keepdim=True),
    "softmax": lambda E, q: tt.softmax(E, 0),
    "log_softmax": lambda E, q: tt.log_softmax(E.reshape(4, 8, 10), 1),
    "sinkhorn": lambda E, q: tt.sinkhorn(E, 0.05, n_iter=3).q,
}


def test_every_op_compiles_to_one_graph_with_gradients():
    """fullgraph=True through AOTAutograd (fake kernels and backward formulas traced), then the
    same values and gradients as eager; torch._dynamo.explain counts the graph breaks."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(32, 10, generator=g, dtype=torch.float64), -1)
    for name, fn in OPS.items():
        E = torch.randn(32, 10, generator=g, dtype=torch.float64, requires_grad=True)

        def objective(E, q, fn=fn):
            return (fn(E, q) * torch.linspace(0.5, 1.5, 10, dtype=E.dtype)[: 1]).sum()

        explanation = torch._dynamo.explain(objective)(E, q)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1, name
        compiled = torch.compile(objective, fullgraph=True, backend="aot_eager")
        value = compiled(E, q)
        expected = objective(E, q)
        torch.testing.assert_close(value, expected, msg=name)
        if name != "sinkhorn":
            (g_c,) = torch.autograd.grad(value, E)
            (g_e,) = torch.autograd.grad(expected, E)
            torch.testing.assert_close(g_c, g_e, msg=name)


def test_losses_compile_fullgraph_with_inductor():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    swav, swav_eager = tt.SwAVLoss(nmb_crops=(2, 2)), tt.SwAVLoss(nmb_crops=(2, 2))
    compiled = torch.compile(swav, fullgraph=True)
    x = torch.randn(4 * 32, 16, generator=g).requires_grad_()
    a = compiled(x)
    (ga,) = torch.autograd.grad(a, x)
    b = swav_eager(x)
    (gb,) = torch.autograd.grad(b, x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)

    dino, dino_eager = tt.DINOLoss(16, 4, 0.04, 0.07, 2, 4), tt.DINOLoss(16, 4, 0.04, 0.07, 2, 4)
    compiled = torch.compile(dino, fullgraph=True)
    for epoch in (0, 0, 3):
        s = torch.randn(4 * 32, 16, generator=g).requires_grad_()
        t = torch.randn(2 * 32, 16, generator=g)
        a = compiled(s, t, epoch)
        (ga,) = torch.autograd.grad(a, s)
        b = dino_eager(s, t, epoch)
        (gb,) = torch.autograd.grad(b, s)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)
        torch.testing.assert_close(dino.center, dino_eager.center)  # the buffer update is in the graph


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_on_half_scores_compile_fullgraph(dtype):
    """The registered ops on bfloat16/float16 scores (read by the kernels in place, computed in
    float32): one graph, no graph break, eager's half loss and gradient."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4 * 16, 12, generator=g).to(dtype).requires_grad_()
    t = torch.randn(2 * 16, 12, generator=g).to(dtype)
    swav = tt.SwAVLoss(nmb_crops=(2, 2))
    dino = tt.DINOLoss(12, 4, 0.04, 0.07, 2, 4)
    for fn in (lambda v: swav(v), lambda v: dino(v, t, 0)):
        dino.center.zero_()  # each DINO call updates the center: every run starts from the same one
        explanation = torch._dynamo.explain(fn)(x)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
        dino.center.zero_()
        a = torch.compile(fn, fullgraph=True, backend="aot_eager")(x)
        (ga,) = torch.autograd.grad(a, x)
        dino.center.zero_()
        b = fn(x)
        (gb,) = torch.autograd.grad(b, x)
        assert a.dtype == ga.dtype == dtype
        assert torch.equal(a, b) and torch.equal(ga, gb)
