"""thermossl.torch._kernels' sharded Sinkhorn paths in this process (issue 20's mutation testing).

sela_sinkhorn(distributed=True) and sharded_sinkhorn run thermossl.distributed.sinkhorn over a
torch.distributed group; tests/test_torch_distributed.py runs them in two worker processes, which
mutation testing's per-function test selection does not see. Here a one-process gloo group runs
the same code in this process: over one rank the sharded solver must give the single-process
solver's result (thermossl.sinkhorn on the energies -scores), with every argument honoured.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

if not dist.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import thermossl  # noqa: E402
from thermossl import distributed as _distributed  # noqa: E402
from thermossl.torch import _kernels  # noqa: E402


@pytest.fixture
def group(tmp_path, monkeypatch):
    """A gloo group of one rank (this process), and the groups the sharded solver was given."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    given = []
    real = _distributed.TorchComm

    class RecordingComm(real):
        def __init__(self, group=None, device=None):
            given.append(group)
            super().__init__(group=group, device=device)

    monkeypatch.setattr(_distributed, "TorchComm", RecordingComm)
    try:
        sub = dist.new_group([0])
        yield sub, given
    finally:
        dist.destroy_process_group()


def scores(n=40, k=7, dtype=torch.float64, seed=0):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sela_sinkhorn_sharded_over_one_rank_is_the_single_process_solver(group, dtype):
    sub, given = group
    s = scores(dtype=dtype)
    mu0 = np.linspace(-0.3, 0.3, 7)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    q, f, mu, n_iter, err, converged = _kernels.sela_sinkhorn(s, 0.4, tol, 500, mu0, 1.2, group=sub,
                                                              distributed=True)
    ref = thermossl.sinkhorn(-s.numpy(), 0.4, tol=tol, max_iter=500, mu0=mu0.astype(s.numpy().dtype), relaxation=1.2)
    assert given == [sub]
    assert isinstance(q, torch.Tensor) and q.dtype == dtype and q.shape == (40, 7)
    rtol = 1e-4 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(q.numpy(), ref.q, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(np.asarray(f), ref.f, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(np.asarray(mu), ref.mu, rtol=rtol, atol=rtol)
    assert (n_iter, bool(converged)) == (ref.n_iter, True) and err <= tol
    # the same answer as the one-process path of the same function
    q1, f1, mu1, n1, err1, conv1 = _kernels.sela_sinkhorn(s, 0.4, tol, 500, mu0, 1.2, distributed=False)
    np.testing.assert_allclose(q.numpy(), q1.numpy(), rtol=rtol, atol=rtol * 1e-2)
    assert n1 == n_iter and conv1


def test_sela_sinkhorn_sharded_honours_the_budget_and_the_warm_start(group):
    sub, given = group
    s = scores()
    with pytest.warns(RuntimeWarning, match="did not converge"):
        cold = _kernels.sela_sinkhorn(s, 0.2, 1e-14, 3, None, 1.0, distributed=True)
    assert cold[3] == 3 and not cold[5] and cold[4] > 1e-14
    ref = thermossl.sinkhorn(-s.numpy(), 0.2, tol=1e-10, max_iter=1000)
    warm = _kernels.sela_sinkhorn(s, 0.2, 1e-10, 1000, ref.mu, 1.0, distributed=True)
    assert warm[3] <= 1 and warm[5]
    assert given == [None, None]  # the default group


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("energy_sign", [-1.0, 1.0])
def test_sharded_sinkhorn_over_one_rank_is_the_single_process_solver(group, energy_sign, dtype):
    sub, given = group
    s = scores(24, 5, dtype=dtype)
    q, mu, err = _kernels.sharded_sinkhorn(s, 0.3, 3, group=sub, energy_sign=energy_sign)
    ref = thermossl.sinkhorn(energy_sign * s.numpy(), 0.3, n_iter=3)
    assert given == [sub]
    assert isinstance(q, torch.Tensor) and q.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(q.numpy(), ref.q, rtol=tol, atol=tol * 1e-3)
    assert mu.dtype == np.float64  # float64 whatever the scores' dtype (the solver gives E's)
    np.testing.assert_allclose(mu, ref.mu, rtol=tol, atol=tol)
    assert isinstance(err, float) and err == pytest.approx(ref.err, rel=1e-4 if dtype == torch.float32 else 1e-8,
                                                           abs=1e-15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sela_sinkhorn_warns_in_the_gauge_form_when_the_gauge_rounds_mu(dtype):
    """A third state 1e12 above the others: the solver meets tol, but the gauge shift of mu ~1e12 T
    rounds the returned potentials beyond it. The warning names the iterations, the scale |mu|/T of
    the returned mu and its dtype (the solver's own form), not the iteration limit."""
    E = torch.tensor([[0.5, 0.0, 2.0], [-0.25, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    E[:, 2] *= 1e12
    scores = (-E).to(dtype)
    T = 0.5
    with pytest.warns(RuntimeWarning) as caught:
        q, f, mu, n_iter, err, converged = _kernels.sela_sinkhorn(scores, T, 1e-6, 1000, None, 1.0, distributed=False)
    assert not converged and 0 < n_iter < 1000
    scale = float(np.abs(mu.astype(np.float64)).max()) / T
    assert scale > 1e12
    expected = ("sinkhorn: charge error {err:.3e} > tol={tol:g} in the returned state after {iterations} iterations: "
                "at |mu|/T up to {scale:.3g} the gauge sum_y c_y mu_y = 0 rounds the potentials beyond the "
                "tolerance in {dtype}").format(err=err, tol=1e-6, iterations=n_iter, scale=scale,
                                              dtype=str(dtype).removeprefix("torch."))
    assert [str(w.message) for w in caught] == [expected]
