"""thermossl.torch operators: values against torch/numpy references, gradcheck (float64) of every
op with a gradient, any strides and shapes, half types, autocast, T as a 0-d tensor, errors,
meta tensors, and the CUDA variants (skipped without a GPU)."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import thermossl  # noqa: E402
import thermossl.torch as tt  # noqa: E402
from torch.autograd import gradcheck  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and thermossl.cuda.is_available()),
    reason="needs a CUDA device and thermossl built with its CUDA kernels"))]


def energies(n=6, k=5, dtype=torch.float64, seed=0, device="cpu", requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(n, k, generator=g, dtype=dtype).to(device)
    return E.requires_grad_(requires_grad)


def labels(n=6, k=5, dtype=torch.float64, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g, dtype=dtype), -1).to(device)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_values_match_torch(device, dtype, tol):
    E = energies(40, 33, dtype, device=device, requires_grad=False) * 3
    mu = energies(33, 1, dtype, seed=4, device=device, requires_grad=False)[:, 0]
    q = labels(40, 33, dtype, device=device)
    T = 0.3
    ref_lz = torch.logsumexp((mu - E) / T, -1)
    torch.testing.assert_close(tt.log_partition(E, T, mu), ref_lz, rtol=tol, atol=tol)
    p_ref = torch.softmax(-E.double() / T, -1)
    torch.testing.assert_close(tt.gibbs(E, T), p_ref.to(dtype), rtol=tol, atol=tol)
    torch.testing.assert_close(tt.gibbs(E, T, mu), torch.softmax((mu - E) / T, -1), rtol=tol, atol=tol)
    S_ref = -(p_ref * torch.log(p_ref)).sum(-1)
    torch.testing.assert_close(tt.gibbs_entropy(E, T), S_ref.to(dtype), rtol=4 * tol, atol=4 * tol)
    L_ref = -(q.double() * torch.log_softmax(-E.double() / T, -1)).sum(-1)
    torch.testing.assert_close(tt.cross_entropy(q, E, T), L_ref.to(dtype), rtol=4 * tol, atol=4 * tol)


@pytest.mark.parametrize("device", DEVICES)
def test_scipy_family_any_dim_and_keepdim(device):
    x = torch.randn(3, 4, 5, dtype=torch.float64, device=device)
    for dim in (0, 1, 2, -1, -2):
        torch.testing.assert_close(tt.logsumexp(x, dim), torch.logsumexp(x, dim))
        torch.testing.assert_close(tt.logsumexp(x, dim, keepdim=True), torch.logsumexp(x, dim, keepdim=True))
        torch.testing.assert_close(tt.softmax(x, dim), torch.softmax(x, dim))
        torch.testing.assert_close(tt.log_softmax(x, dim), torch.log_softmax(x, dim))
    torch.testing.assert_close(tt.logsumexp(x, (0, 2)), torch.logsumexp(x, (0, 2)))
    torch.testing.assert_close(tt.logsumexp(x, (0, 2), keepdim=True), torch.logsumexp(x, (0, 2), keepdim=True))
    # default dim=-1; 0-d input; integer input computes in the default dtype
    torch.testing.assert_close(tt.softmax(x), torch.softmax(x, -1))
    s = torch.tensor(1.5, dtype=torch.float64, device=device)
    torch.testing.assert_close(tt.logsumexp(s, 0), torch.logsumexp(s, 0))
    ints = torch.arange(12, device=device).reshape(3, 4)
    torch.testing.assert_close(tt.logsumexp(ints, 1), torch.logsumexp(ints, 1))
    torch.testing.assert_close(tt.softmax(x, 1, dtype=torch.float32), torch.softmax(x, 1, dtype=torch.float32))


def test_scipy_family_edge_cases_follow_torch():
    x = torch.tensor([[0.0, -float("inf"), 1.0], [float("inf"), 0.0, 1.0], [-float("inf")] * 3])
    torch.testing.assert_close(tt.logsumexp(x, 1), torch.logsumexp(x, 1))
    assert tt.logsumexp(torch.empty(3, 0), 1).eq(-float("inf")).all()
    assert tt.softmax(torch.empty(0, 4)).shape == (0, 4)
    torch.testing.assert_close(tt.softmax(x[:2]), torch.softmax(x[:2], -1), equal_nan=True)


def test_any_strides_and_batched_input_read_in_place():
    base = torch.randn(30, 20, dtype=torch.float64)
    for view in (base.t(), base[::3, 1::2], base.t()[2:9], base.expand(2, 30, 20)[1]):
        before = view.clone()
        torch.testing.assert_close(tt.gibbs(view, 0.7), torch.softmax(-view / 0.7, -1))
        torch.testing.assert_close(tt.log_partition(view, 0.7), torch.logsumexp(-view / 0.7, -1))
        torch.testing.assert_close(tt.softmax(view, 0), torch.softmax(view, 0))
        torch.testing.assert_close(tt.logsumexp(view, 0), torch.logsumexp(view, 0))
        assert torch.equal(view, before)  # inputs are never modified
    # (views x B x K): the last axis holds the states
    E3 = torch.randn(2, 7, 5, dtype=torch.float64)
    assert tt.log_partition(E3, 0.5).shape == (2, 7)
    torch.testing.assert_close(tt.gibbs(E3, 0.5), torch.softmax(-E3 / 0.5, -1))
    torch.testing.assert_close(tt.gibbs_entropy(E3.transpose(0, 1), 0.5).transpose(0, 1),
                               tt.gibbs_entropy(E3, 0.5))
    q3 = torch.softmax(torch.randn(2, 7, 5, dtype=torch.float64), -1)
    torch.testing.assert_close(tt.cross_entropy(q3, E3, 0.5), -(q3 * torch.log_softmax(-E3 / 0.5, -1)).sum(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cpu_input_reaches_the_core_without_a_copy(monkeypatch, dtype):
    """The kernel sees the tensor's own memory (its address, strides and dtype): half input too,
    which the kernel converts in registers (no converted copy is made by the op)."""
    from thermossl.torch import _kernels

    seen = {}
    original = _kernels._HOST.row_softmax

    def spy(dtype_name, a, *args, **kwargs):
        seen["dtype"], seen["matrix"] = dtype_name, a
        return original(dtype_name, a, *args, **kwargs)

    monkeypatch.setattr(_kernels._HOST, "row_softmax", spy)
    base = torch.randn(8, 6).to(dtype)
    view = base.t()
    out = tt.softmax(view)
    assert seen["matrix"] == (view.data_ptr(), 6, 8, 1, 6)
    assert seen["dtype"] == str(dtype).removeprefix("torch.")
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), torch.softmax(view.float(), -1), atol=1e-2 if dtype != torch.float32 else 1e-6,
                               rtol=0)


def test_forbidden_states_get_zero_probability_and_finite_gradients():
    E = torch.tensor([[0.0, float("inf"), 1.0], [2.0, 0.5, float("inf")]], dtype=torch.float64, requires_grad=True)
    p = tt.gibbs(E, 0.5)
    assert p[0, 1] == 0 and p[1, 2] == 0
    (p[:, 0].sum() + tt.gibbs_entropy(E, 0.5).sum() + tt.log_partition(E, 0.5).sum()).backward()
    assert torch.isfinite(E.grad).all()
    assert E.grad[0, 1] == 0 and E.grad[1, 2] == 0


# ----------------------------------------------------------------------------- gradients
GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T", [0.4, "tensor"])
def test_gradcheck_gibbs_family(device, T):
    T = torch.tensor(0.4, dtype=torch.float64) if T == "tensor" else T
    E = energies(device=device)
    mu = energies(5, 1, seed=7, device=device)[:, 0].detach().requires_grad_()
    q = labels(device=device).requires_grad_()
    assert gradcheck(lambda E, mu: tt.log_partition(E, T, mu), (E, mu), **GRADCHECK)
    assert gradcheck(lambda E: tt.log_partition(E, T), (E,), **GRADCHECK)
    assert gradcheck(lambda E, mu: tt.gibbs(E, T, mu), (E, mu), **GRADCHECK)
    assert gradcheck(lambda E: tt.gibbs_entropy(E, T), (E,), **GRADCHECK)
    assert gradcheck(lambda q, E: tt.cross_entropy(q, E, T), (q, E), **GRADCHECK)
    # unnormalised labels and a gradient for q alone
    assert gradcheck(lambda q: tt.cross_entropy(q * 1.7, E.detach(), T), (q,), **GRADCHECK)
    assert gradcheck(lambda E: tt.cross_entropy(q.detach(), E, T), (E,), **GRADCHECK)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_scipy_family(device):
    x = torch.randn(3, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    for dim in (0, 1, -1):
        assert gradcheck(lambda x: tt.logsumexp(x, dim), (x,), **GRADCHECK)
        assert gradcheck(lambda x: tt.logsumexp(x, dim, keepdim=True), (x,), **GRADCHECK)
        assert gradcheck(lambda x: tt.softmax(x, dim), (x,), **GRADCHECK)
        assert gradcheck(lambda x: tt.log_softmax(x, dim), (x,), **GRADCHECK)
    assert gradcheck(lambda x: tt.logsumexp(x, (0, 2)), (x,), **GRADCHECK)
    xt = torch.randn(5, 4, dtype=torch.float64, device=device).t().requires_grad_()  # strided leaf
    assert gradcheck(lambda x: tt.log_softmax(x), (xt,), **GRADCHECK)


def test_cross_entropy_gradients_are_the_theory_formulas():
    E, q, T = energies(), labels(), 0.3
    L = tt.cross_entropy(q.requires_grad_(), E, T)
    gq, gE = torch.autograd.grad(L.sum(), (q, E))
    p = torch.softmax(-E.detach() / T, -1)
    torch.testing.assert_close(gE, (q.detach() - p) / T)  # dL/dE = (q - p)/T for row-stochastic q
    torch.testing.assert_close(gq, -torch.log(p))  # dL/dq = -log p


def test_second_derivatives_are_refused():
    E = energies()
    for y in (tt.log_partition(E, 0.5).sum(), tt.gibbs_entropy(E, 0.5).sum(), tt.softmax(E)[:, 0].sum()):
        with pytest.raises(RuntimeError, match="first derivatives"):
            torch.autograd.grad(y, E, create_graph=True)
    (g,) = torch.autograd.grad(tt.log_partition(E, 0.5).sum(), E)  # first derivatives are fine
    assert torch.isfinite(g).all()


# ----------------------------------------------------------------------------- dtypes
# unit roundoff of the half types: one rounding of the float32 result is within u relative
HALF_BOUNDS = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_input_is_computed_in_float32_and_rounded_once(dtype):
    E = (torch.randn(64, 40) * 2).to(dtype)
    q = labels(64, 40, torch.float32).to(dtype)
    E32, q32 = E.float(), q.float()
    cases = [
        (tt.log_partition(E, 0.5), tt.log_partition(E32, 0.5)),
        (tt.gibbs(E, 0.5), tt.gibbs(E32, 0.5)),
        (tt.gibbs_entropy(E, 0.5), tt.gibbs_entropy(E32, 0.5)),
        (tt.cross_entropy(q, E, 0.5), tt.cross_entropy(q32, E32, 0.5)),
        (tt.logsumexp(E, 0), tt.logsumexp(E32, 0)),
        (tt.softmax(E, 1), tt.softmax(E32, 1)),
        (tt.log_softmax(E, 1), tt.log_softmax(E32, 1)),
    ]
    for half, single in cases:
        assert half.dtype == dtype
        assert torch.equal(half, single.to(dtype))  # float32 result, one rounding to the half type
        # stated bound: the unit roundoff of the half type, relative to the float32 result
        # (subnormal results of float16, below 2^-14, get the absolute half-ulp 2^-25)
        assert ((half.float() - single).abs() <= HALF_BOUNDS[dtype] * single.abs() + 2.0 ** -25).all()
    # gradients come back in the input dtype
    Eg = E.clone().requires_grad_()
    tt.cross_entropy(q, Eg, 0.5).sum().backward()
    assert Eg.grad.dtype == dtype
    E32g = E32.clone().requires_grad_()
    tt.cross_entropy(q32, E32g, 0.5).sum().backward()
    assert torch.equal(Eg.grad, E32g.grad.to(dtype))


def test_autocast_runs_in_float32_like_torch_softmax():
    lin = torch.nn.Linear(16, 10)
    x = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = lin(x)
        assert scores.dtype == torch.bfloat16
        out = tt.log_softmax(scores, 1)
        lz = tt.log_partition(-scores, 0.1)
        p = tt.gibbs(-scores, 0.1)
    assert out.dtype == lz.dtype == p.dtype == torch.float32
    torch.testing.assert_close(out, torch.log_softmax(scores.float(), 1))
    torch.testing.assert_close(lz, torch.logsumexp(scores.float() / 0.1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = tt.cross_entropy(p.detach(), -lin(x), 0.1).mean()
    loss.backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


# ----------------------------------------------------------------------------- temperatures and errors
def test_temperature_as_0d_tensor_equals_number():
    E = energies(requires_grad=False)
    for T in (torch.tensor(0.25), torch.tensor(0.25, dtype=torch.float64), torch.tensor(1)):
        Tf = float(T)
        torch.testing.assert_close(tt.log_partition(E, T), tt.log_partition(E, Tf))
        torch.testing.assert_close(tt.gibbs(E, T), tt.gibbs(E, Tf))
        torch.testing.assert_close(tt.sinkhorn(E, T, n_iter=3).q, tt.sinkhorn(E, Tf, n_iter=3).q)
    with pytest.raises(ValueError, match="T: gradients"):
        tt.gibbs(E, torch.tensor(0.5, requires_grad=True))
    with pytest.raises(ValueError, match="T must be finite and > 0"):
        tt.gibbs(E, torch.tensor(-1.0))
    with pytest.raises(ValueError, match="T must be finite and > 0"):
        tt.gibbs(E, 0.0)
    with pytest.raises(ValueError, match="0-d"):
        tt.gibbs(E, torch.tensor([0.5]))
    with pytest.raises(TypeError, match="T must be a real number"):
        tt.gibbs(E, "0.5")


def test_bad_input_raises_naming_the_argument():
    E = energies(requires_grad=False)
    bad = E.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="E contains NaN"):
        tt.log_partition(bad)
    forbidden = E.clone()
    forbidden[3] = float("inf")
    with pytest.raises(ValueError, match="forbidden"):
        tt.gibbs(forbidden)
    minus = E.clone()
    minus[0, 0] = -float("inf")
    with pytest.raises(ValueError, match="-inf"):
        tt.gibbs_entropy(minus)
    with pytest.raises(ValueError, match="E must have shape"):
        tt.gibbs(E[0])
    with pytest.raises(TypeError, match="E must be float16"):
        tt.gibbs(E.long())
    with pytest.raises(TypeError, match="E must be a torch.Tensor"):
        tt.gibbs(E.numpy())
    with pytest.raises(ValueError, match="q must have the shape of E"):
        tt.cross_entropy(labels()[:3], E)
    qbad = labels()
    qbad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="q contains NaN"):
        tt.cross_entropy(qbad, E)
    with pytest.raises(ValueError, match="mu must have shape"):
        tt.gibbs(E, 1.0, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="mu must be finite"):
        tt.gibbs(E, 1.0, torch.full((5,), float("inf"), dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one state"):
        tt.gibbs(torch.empty(3, 0))


def test_meta_tensors_use_the_fake_kernels():
    E = torch.empty(7, 5, device="meta")
    assert tt.gibbs(E, 0.5).shape == (7, 5)
    assert tt.log_partition(E, 0.5).shape == (7,)
    assert tt.softmax(torch.empty(2, 3, 4, device="meta"), 1).shape == (2, 3, 4)
    loss, grad, log_z = torch.ops.thermossl.cross_entropy(E, E, 0.5, None, True)
    assert loss.shape == (7,) and grad.shape == (7, 5) and log_z.shape == (7,)


# ----------------------------------------------------------------------------- sinkhorn
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sinkhorn_equals_the_numpy_solver(device, dtype):
    E = energies(50, 12, dtype, device=device, requires_grad=True)
    E_np = E.detach().cpu().numpy()
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for kwargs in ({"n_iter": 3}, {"tol": 1e-8}):
        # In float32 the charge error stalls near 1e-8 (float32 rounding), on one side of tol or the
        # other depending on the SIMD level's rounding: whichever it is, both solvers must end
        # alike, warn exactly when they did not converge, and give the same results.
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            r = tt.sinkhorn(E, 0.05 if "n_iter" in kwargs else 0.5, **kwargs)
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            ref = thermossl.sinkhorn(E_np, 0.05 if "n_iter" in kwargs else 0.5, **kwargs)
        for record, result in ((ours, r), (theirs, ref)):
            warned = [w for w in record if issubclass(w.category, RuntimeWarning) and "did not converge" in str(w.message)]
            assert len(warned) == (0 if "n_iter" in kwargs or bool(result.converged) else 1), [str(w.message) for w in record]
        if dtype == torch.float64 and "tol" in kwargs:
            assert bool(r.converged)
        assert isinstance(r, tt.SinkhornResult)
        assert not r.q.requires_grad  # no gradient through Sinkhorn (documented)
        for field in ("q", "f", "mu", "charges"):
            np.testing.assert_allclose(getattr(r, field).cpu().numpy(), getattr(ref, field), rtol=tol, atol=tol)
        assert int(r.n_iter) == ref.n_iter and bool(r.converged) == ref.converged
        assert float(r.err) == pytest.approx(ref.err, rel=1e-6, abs=1e-12)
    g = torch.Generator().manual_seed(3)
    w = torch.rand(50, generator=g, dtype=torch.float64) + 0.5
    c = torch.rand(12, generator=g, dtype=torch.float64) + 0.5
    w, c = (w / w.sum()).to(device), (c / c.sum()).to(device)
    stop = 1e-5 if dtype == torch.float32 else 1e-10
    r = tt.sinkhorn(E, 0.5, tol=stop, w=w, c=c)
    ref = thermossl.sinkhorn(E_np, 0.5, tol=stop, w=w.cpu().numpy(), c=c.cpu().numpy())
    np.testing.assert_allclose(r.q.cpu().numpy(), ref.q, rtol=tol * 10, atol=tol * 10)
    warm = tt.sinkhorn(E, 0.5, tol=stop, w=w, c=c, mu0=r.mu)
    assert int(warm.n_iter) <= 1


def test_sinkhorn_errors_and_warning():
    E = energies(20, 4, requires_grad=False)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        tt.sinkhorn(E, 0.05, n_iter=0)
    with pytest.raises(ValueError, match="w must have shape"):
        tt.sinkhorn(E, 0.05, w=torch.ones(3, dtype=torch.float64) / 3)
    with pytest.raises(ValueError, match="c must sum to 1"):
        tt.sinkhorn(E, 0.05, c=torch.ones(4, dtype=torch.float64))
    bad = E.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tt.sinkhorn(bad, 0.05, n_iter=3)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = tt.sinkhorn(E * 50, 0.01, tol=1e-12, max_iter=2)
    assert not bool(r.converged)


def test_import_thermossl_does_not_import_torch():
    code = "import sys, thermossl; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- half input in the kernels
# simd_level: the fixture of tests/conftest.py (each level this CPU runs)


def _kernel_rows(x, scale, q=None):
    """The row kernels' float32 results on x (any dtype) through thermossl.torch's binding."""
    from thermossl.torch import _kernels

    n, k = x.shape
    out = {name: torch.empty(n) for name in ("log_z", "entropy", "loss")}
    out.update({name: torch.empty(n, k) for name in ("p", "log_p", "grad", "grad_s")})
    _kernels.row_logsumexp(x, scale, None, out["log_z"])
    _kernels.row_softmax(x, scale, None, out["p"])
    _kernels.row_log_softmax(x, scale, None, out["log_p"])
    _kernels.row_entropy(x, scale, None, out["entropy"], None)
    _kernels.row_entropy_grad(x, scale, None, out["grad_s"], None)
    _kernels.row_cross_entropy(q, x, scale, None, out["loss"], out["grad"], torch.empty(n))
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_half_input_in_the_kernel_at_every_level(simd_level, dtype, layout):
    """The kernels read bfloat16/float16 matrices themselves: their float32 results equal the
    float32 kernels' on the same values to the bit, and are within the float32 bounds of
    test_simd_levels (log Z 2 eps, p 4 eps, S 8 eps, L 4 eps) of numpy in float64 on the half
    values converted exactly."""
    import numpy as np

    gen = torch.Generator().manual_seed(5)
    n, k, T = 48, 1031, 0.3
    E = (torch.randn(n, k, generator=gen) * 2).to(dtype)
    E[4, 9] = float("inf")  # a forbidden state
    q = torch.softmax(torch.randn(n, k, generator=gen), 1).to(dtype)
    q[4, 9] = 0
    if layout == "transposed":
        E, q = E.t().contiguous().t(), q.t().contiguous().t()
    half = _kernel_rows(E, -1.0 / T, q)
    single = _kernel_rows(E.float(), -1.0 / T, q.float())
    for name in half:
        assert torch.equal(half[name], single[name]), name
    # independent reference: numpy float64 on the exact values of the half elements
    E64, q64 = E.double().numpy(), q.double().numpy()
    x = -E64 / T
    m = x.max(1, keepdims=True)
    t = x - m
    log_z1 = np.log(np.exp(t).sum(1, keepdims=True))
    log_p = t - log_z1
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        S = -np.where(p > 0, p * log_p, 0).sum(1)
        L = -np.where(q64 > 0, q64 * log_p, 0).sum(1)
    lz = (m + log_z1)[:, 0]
    eps = float(np.finfo(np.float32).eps)
    assert np.max(np.abs(half["log_z"].numpy() - lz) / np.maximum(np.abs(lz), 1)) <= 2 * eps
    assert np.max(np.abs(half["p"].numpy() - p)) <= 4 * eps
    assert np.max(np.abs(half["entropy"].numpy() - S) / np.maximum(S, 1)) <= 8 * eps
    assert np.max(np.abs(half["loss"].numpy() - L) / np.maximum(L, 1)) <= 4 * eps
    finite = np.isfinite(log_p)
    assert np.max(np.abs(half["log_p"].numpy()[finite] - log_p[finite]) / np.maximum(np.abs(log_p[finite]), 1)) <= 4 * eps
    assert half["log_p"][4, 9] == -float("inf") and half["p"][4, 9] == 0 and half["grad"][4, 9] == 0
    grad_ref = (q64 - p * q64.sum(1, keepdims=True)) / T  # d loss / dE
    assert np.max(np.abs(half["grad"].numpy() - grad_ref)) <= 8 * eps / T


@pytest.mark.parametrize("n_iter", [3, None])
def test_sinkhorn_reads_scores_with_a_signed_scale(n_iter):
    """energy_sign=-1: the scores are read in place as E = -scores (no negated copy) and the
    result is the solver's on the negated energies, to the bit."""
    s = torch.randn(120, 17, dtype=torch.float32) * 2
    a = tt.sinkhorn(s, 0.3, n_iter=n_iter, energy_sign=-1)
    b = tt.sinkhorn(-s, 0.3, n_iter=n_iter)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="energy_sign must be 1 or -1"):
        tt.sinkhorn(s, 0.3, energy_sign=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_half_input_in_the_sinkhorn_solver_at_every_level(simd_level, dtype, layout):
    """The solver reads bfloat16/float16 matrices itself (each tile converted as it is packed):
    with uniform weights its float32 state equals the float32 solver's on the same values to
    the bit, in every mode (fixed iterations: the scaled form; tolerance; warm start; scores
    with a signed scale); weighted cold starts take a column pass of their own (double sums),
    within float32 rounding of the float32 solver; and both are within the float32 bounds of
    the float64 solver on the exact values."""
    import numpy as np

    import thermossl

    from thermossl.torch import _kernels

    gen = torch.Generator().manual_seed(8)
    n, k = 300, 37
    E = (torch.randn(n, k, generator=gen) * 0.5).to(dtype)
    E[5, 3] = float("inf")  # a forbidden state
    if layout == "transposed":
        E = E.t().contiguous().t()
    w = torch.rand(n, generator=gen) + 0.5
    w = (w / w.sum()).float()
    mu0 = torch.randn(k, generator=gen).mul(0.01)
    for kw in (dict(n_iter=3), dict(n_iter=None), dict(n_iter=2, mu0=mu0), dict(n_iter=3, energy_sign=-1),
               dict(n_iter=None, energy_sign=-1)):
        x = E if kw.get("energy_sign", 1) == 1 else -E  # scores: the forbidden state at -inf
        half = tt.sinkhorn(x, 0.05, **kw)
        single = tt.sinkhorn(x.float(), 0.05, **kw)
        assert half.q.dtype == dtype and half.f.dtype == dtype
        # q, f, mu: the float32 solver's values rounded once; charges and counts identical
        for name in ("q", "f", "mu"):
            assert torch.equal(getattr(half, name), getattr(single, name).to(dtype)), (kw, name)
        assert torch.equal(half.charges, single.charges) and int(half.n_iter) == int(single.n_iter), kw
    # bitwise on the kernel's float32 outputs (before the cast to the input dtype)
    outs = []
    for x in (E, E.float()):
        f, mu, q, ch = torch.empty(n), torch.empty(k), torch.empty(n, k), torch.empty(k, dtype=torch.float64)
        _kernels.sinkhorn(x, 0.05, None, None, None, 3, 1e-6, 1000, f, mu, q, ch, energy_sign=1.0)
        outs.append((f, mu, q, ch))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    # weighted: the converted column pass of the cold start (double sums) against float32 and float64
    outs = []
    for x in (E, E.float(), E.double()):
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        f, mu, q = torch.empty(n, dtype=dt), torch.empty(k, dtype=dt), torch.empty(n, k, dtype=dt)
        ch = torch.empty(k, dtype=torch.float64)
        _kernels.sinkhorn(x, 0.05, w.to(dt), None, None, 0, 1e-6, 1000, f, mu, q, ch, energy_sign=1.0)
        outs.append((f, mu, q, ch))
    (fh, muh, qh, chh), (f32, mu32, q32, ch32), (f64, mu64, q64, ch64) = outs
    assert torch.allclose(qh, q32, rtol=0, atol=2e-5) and torch.allclose(muh, mu32, rtol=0, atol=2e-5)
    assert torch.allclose(qh.double(), q64, rtol=0, atol=2e-5)
    assert torch.allclose(chh, ch64, rtol=0, atol=2e-6)
    ref = thermossl.sinkhorn(E.double().numpy(), 0.05, w=w.double().numpy(), tol=1e-6)
    np.testing.assert_allclose(qh.numpy(), ref.q, rtol=0, atol=2e-5)
