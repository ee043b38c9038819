"""thermossl.torch._kernels' CUDA routing, run on the CPU (issue 20's mutation testing).

Without a GPU the CUDA kernels cannot run, but the Python side of the route to them can: which
binding a wrapper picks, the head it binds (dtype name, device ordinal, the current stream of that
device), the Sinkhorn workspace it allocates on the device, the arguments after the head (shared
with the host route) and the torch fallbacks that have no CUDA kernel yet. These tests run that
code with CPU tensors that say they live on a CUDA device (``OnDevice``) and a stand-in ``_cuda``
module whose kernels record the head of each call and compute with the host bindings on the same
memory; the values are checked against plain torch (or thermossl's numpy API for Sinkhorn), and
every call's head against the device the tensor names.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import thermossl  # noqa: E402
from thermossl import _core  # noqa: E402
from thermossl.torch import _kernels  # noqa: E402

STREAM_BASE = 7000  # the stand-in stream of device d is STREAM_BASE + d
CURRENT_DEVICE = 3  # the stand-in current device (for a tensor on "cuda" without an index)
CUDA_KERNELS = ("row_logsumexp", "row_softmax", "row_log_softmax", "row_entropy", "row_cross_entropy",
                "row_entropy_grad", "ledger_rows")  # the names thermossl._cuda has (no half kernels)


class OnDevice(torch.Tensor):
    """A CPU tensor that says it is a CUDA tensor on ``on_device`` (ops return plain tensors)."""

    __torch_function__ = torch._C._disabled_torch_function_impl
    on_device = torch.device("cuda", 1)

    @property
    def is_cuda(self):
        return True

    @property
    def device(self):
        return self.on_device


def on(t, device=torch.device("cuda", 1)):
    moved = torch.Tensor._make_subclass(OnDevice, t)
    moved.on_device = device
    return moved


class StandInCuda:
    """thermossl._cuda's functions, computed by the host bindings (thermossl._core.pointers) on the
    addresses given; ``calls`` records (name, dtype, device, stream) of each call, and the
    workspace and check interval of the Sinkhorn calls."""

    def __init__(self, workspace_bytes):
        self.calls = []
        self.workspace_bytes = workspace_bytes
        for name in CUDA_KERNELS:
            setattr(self, name, self._kernel(name))

    def _kernel(self, name):
        host = getattr(_core.pointers, name)

        def kernel(dtype, device, stream, *args):
            self.calls.append((name, dtype, device, stream))
            return host(dtype, *args)
        return kernel

    def sinkhorn_workspace_bytes(self, n, k):
        self.sizes = (n, k)
        return self.workspace_bytes

    def sinkhorn(self, dtype, device, stream, E, T, w, c, mu0, fixed, tol, limit, f, mu, q, charges, workspace,
                 check_every, energy_sign):
        self.calls.append(("sinkhorn", dtype, device, stream))
        self.workspace, self.check_every = workspace, check_every
        # the device solver is plain Sinkhorn (no over-relaxation)
        return _core.pointers.sinkhorn(dtype, E, T, w, c, mu0, fixed, tol, limit, f, mu, q, charges, 1.0, energy_sign)


@pytest.fixture
def cuda(monkeypatch):
    """The stand-in device: _kernels' _cuda module, an available device, its streams, and
    torch.empty on a CUDA device allocating on the CPU (recorded in ``cuda.device_allocations``)."""
    stand_in = StandInCuda(workspace_bytes=8 * 40)
    stand_in.device_allocations = []
    monkeypatch.setattr(_kernels, "_cuda", stand_in)
    monkeypatch.setattr(_kernels._device, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: CURRENT_DEVICE)
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device: types.SimpleNamespace(cuda_stream=STREAM_BASE + device))
    empty = torch.empty

    def device_empty(*shape, device=None, **kwargs):
        if device is not None and torch.device(device).type == "cuda":
            t = on(empty(*shape, **kwargs), torch.device(device))
            stand_in.device_allocations.append((torch.device(device), t))
            return t
        return empty(*shape, device=device, **kwargs)

    monkeypatch.setattr(torch, "empty", device_empty)
    return stand_in


def plain(t):
    """The tensor without its device costume (a CPU torch.Tensor over the same memory)."""
    return t.as_subclass(torch.Tensor) if isinstance(t, torch.Tensor) else t


def close(got, ref, **tolerances):
    torch.testing.assert_close(plain(got), plain(ref), **tolerances)


def heads(cuda, device=1):
    return [(name, dtype, d, stream - STREAM_BASE) for name, dtype, d, stream in cuda.calls]


def scores(n=9, k=6, dtype=torch.float64, seed=0):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2


def labels(n=9, k=6, dtype=torch.float64, seed=1):
    return torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=dtype), 1)


TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


# ----------------------------------------------------------------------------------- row kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device, ordinal", [(torch.device("cuda", 1), 1), (torch.device("cuda"), CURRENT_DEVICE)])
def test_row_kernels_take_the_device_head_and_the_shared_arguments(cuda, dtype, device, ordinal):
    a = scores(dtype=dtype).t().contiguous().t()  # column-major: the strides travel
    n, k = a.shape
    shift = torch.linspace(-0.5, 0.5, k, dtype=torch.float64)
    x = (-0.7 * a.double() + shift)
    ref_lse = torch.logsumexp(x, 1)
    ref_p = torch.softmax(x, 1)
    tol = TOL[dtype]
    name = {torch.float32: "float32", torch.float64: "float64"}[dtype]

    out = on(torch.empty(n, dtype=dtype), device)
    _kernels.row_logsumexp(on(a, device), -0.7, on(shift, device), out)
    close(out.double(), ref_lse, rtol=tol, atol=tol)

    p, log_z = on(torch.empty(n, k, dtype=dtype), device), on(torch.empty(n, dtype=dtype), device)
    _kernels.row_softmax(on(a, device), -0.7, on(shift, device), p, log_z)
    close(p.double(), ref_p, rtol=tol, atol=tol)
    close(log_z.double(), ref_lse, rtol=tol, atol=tol)

    log_p = on(torch.empty(n, k, dtype=dtype), device)
    _kernels.row_log_softmax(on(a, device), -0.7, on(shift, device), log_p)
    close(log_p.double(), torch.log_softmax(x, 1), rtol=tol, atol=tol)

    x0 = -0.7 * a.double()  # the entropy kernels without a shift
    p0 = torch.softmax(x0, 1)
    entropy, log_z0 = on(torch.empty(n, dtype=dtype), device), on(torch.empty(n, dtype=dtype), device)
    _kernels.row_entropy(on(a, device), -0.7, None, entropy, log_z0)
    close(entropy.double(), -(p0 * torch.log_softmax(x0, 1)).sum(1), rtol=tol, atol=tol)
    close(log_z0.double(), torch.logsumexp(x0, 1), rtol=tol, atol=tol)

    grad = on(torch.empty(n, k, dtype=dtype), device)
    _kernels.row_entropy_grad(on(a, device), -0.7, None, grad, log_z0)
    a64 = a.double().requires_grad_(True)
    s = -(torch.softmax(-0.7 * a64, 1) * torch.log_softmax(-0.7 * a64, 1)).sum()
    (ref_grad,) = torch.autograd.grad(s, a64)
    close(grad.double(), ref_grad, rtol=tol, atol=tol)

    calls = ["row_logsumexp", "row_softmax", "row_log_softmax", "row_entropy", "row_entropy_grad"]
    assert heads(cuda) == [(c, name, ordinal, ordinal) for c in calls]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_and_its_blocks_on_the_device(cuda, dtype):
    a, q = scores(dtype=dtype), labels(dtype=dtype)
    n, k = a.shape
    x = 0.8 * a.double()
    q64 = q.double()
    ref_loss = -(q64 * torch.log_softmax(x, 1)).sum(1)
    ref_grad = 0.8 * (torch.softmax(x, 1) * q64.sum(1, keepdim=True) - q64)
    tol = TOL[dtype]
    loss, grad, log_z = on(torch.empty(n, dtype=dtype)), on(torch.empty(n, k, dtype=dtype)), on(torch.empty(n, dtype=dtype))
    _kernels.row_cross_entropy(on(q), on(a), 0.8, None, loss, grad, log_z)
    close(loss.double(), ref_loss, rtol=tol, atol=tol)
    close(grad.double(), ref_grad, rtol=tol, atol=tol)
    close(log_z.double(), torch.logsumexp(x, 1), rtol=tol, atol=tol)

    # rows 3..6 of a against rows 1..4 of q, into rows 3..6 of the outputs
    loss.fill_(-1), grad.fill_(-1), log_z.fill_(-1)
    _kernels.row_cross_entropy_block(on(q), 1, on(a), 3, 4, 0.8, loss, grad, log_z)
    xb, qb = x[3:7], q64[1:5]
    close(loss[3:7].double(), -(qb * torch.log_softmax(xb, 1)).sum(1), rtol=tol, atol=tol)
    close(grad[3:7].double(), 0.8 * (torch.softmax(xb, 1) * qb.sum(1, keepdim=True) - qb),
                               rtol=tol, atol=tol)
    close(log_z[3:7].double(), torch.logsumexp(xb, 1), rtol=tol, atol=tol)
    assert bool((loss[:3] == -1).all()) and bool((loss[7:] == -1).all()) and bool((grad[7:] == -1).all())
    name = "float32" if dtype == torch.float32 else "float64"
    assert heads(cuda) == [("row_cross_entropy", name, 1, 1)] * 2


def test_labels_of_another_dtype_are_refused_on_the_device(cuda):
    # only CPU half scores have the mixed-dtype kernel; the CUDA module has none (the callers
    # convert the labels to the scores' dtype first)
    a, q = scores(), labels(dtype=torch.float32)
    n, k = a.shape
    with pytest.raises(ValueError) as info:
        _kernels.row_cross_entropy(on(q), on(a), 1.0, None, on(torch.empty(n, dtype=torch.float64)), None,
                                   on(torch.empty(n, dtype=torch.float64)))
    assert str(info.value) == ("thermossl.torch kernels: labels torch.float32 (9, 6) on cuda:1 do not match scores "
                               "torch.float64 (9, 6) on cuda:1")
    assert cuda.calls == []


# ----------------------------------------------------------------------------------- Sinkhorn
@pytest.mark.parametrize("workspace_bytes, words", [(8 * 40, 40), (8 * 40 + 1, 41), (8 * 40 + 7, 41)])
def test_sinkhorn_on_the_device_gets_its_workspace_and_the_shared_arguments(cuda, workspace_bytes, words):
    cuda.workspace_bytes = workspace_bytes
    E = scores(12, 8)[:, :5]  # rows 8 apart: the workspace is sized by the shape, not the strides
    n, k = E.shape
    w = torch.linspace(1, 2, n, dtype=torch.float64)
    c = torch.linspace(2, 1, k, dtype=torch.float64)
    w, c = w / w.sum(), c / c.sum()
    device = torch.device("cuda", 2)
    f, mu, q = (on(torch.empty(shape, dtype=torch.float64), device) for shape in ((n,), (k,), (n, k)))
    charges = on(torch.empty(k, dtype=torch.float64), device)
    # relaxation 1.7 is not the device's: its solver runs plain Sinkhorn (the stand-in's 1.0)
    iterations, err, converged, status, index = _kernels.sinkhorn(
        on(E, device), 0.5, on(w, device), on(c, device), None, 0, 1e-10, 500, f, mu, q, charges, energy_sign=-1.0,
        relaxation=1.7)
    ref = thermossl.sinkhorn(-E.numpy(), 0.5, w=w.numpy(), c=c.numpy(), tol=1e-10, max_iter=500, relaxation=1.0)
    assert (iterations, converged, status) == (ref.n_iter, True, 0)
    np.testing.assert_allclose(q.numpy(), ref.q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mu.numpy(), ref.mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f.numpy(), ref.f, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(charges.numpy(), ref.charges, rtol=1e-12, atol=1e-15)
    assert err == pytest.approx(ref.err, rel=1e-9, abs=1e-16)
    assert heads(cuda) == [("sinkhorn", "float64", 2, 2)]
    assert cuda.sizes == (n, k) and cuda.check_every == 8
    ((where, workspace),) = cuda.device_allocations
    assert where == device and workspace.dtype == torch.float64 and workspace.shape == (words,)
    assert cuda.workspace == workspace.data_ptr()


def test_sinkhorn_on_the_device_with_a_warm_start_and_fixed_iterations(cuda):
    E = scores(10, 4)
    n, k = E.shape
    ref = thermossl.sinkhorn(E.numpy(), 0.7, n_iter=3, mu0=np.array([0.1, -0.2, 0.3, -0.2]))
    f, mu, q = (on(torch.empty(shape, dtype=torch.float64)) for shape in ((n,), (k,), (n, k)))
    mu0 = on(torch.tensor([0.1, -0.2, 0.3, -0.2], dtype=torch.float64))
    result = _kernels.sinkhorn(on(E), 0.7, None, None, mu0, 3, 1e-6, 1000, f, mu, q, None, energy_sign=1.0)
    assert result[0] == 3 and result[3] == 0
    np.testing.assert_allclose(q.numpy(), ref.q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mu.numpy(), ref.mu, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swav_codes_on_the_device(cuda, dtype):
    s = scores(16, 5, dtype=dtype)
    q = torch.empty(16, 5, dtype=dtype)
    f, mu, err = _kernels.sinkhorn_codes(on(s), 0.3, 3, on(q), "ctx: ")
    ref = thermossl.sinkhorn(-s.double().numpy(), 0.3, n_iter=3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert f.dtype == np.float64 and mu.dtype == np.float64 and isinstance(err, float)
    np.testing.assert_allclose(q.double().numpy(), ref.q, rtol=tol, atol=tol)
    np.testing.assert_allclose(f, ref.f, rtol=tol, atol=tol)
    np.testing.assert_allclose(mu, ref.mu, rtol=tol, atol=tol)
    assert err == pytest.approx(ref.err, rel=1e-3, abs=1e-7)
    # f and mu in the kernel dtype on the scores' device; no charges asked for
    assert [(where, t.dtype, tuple(t.shape)) for where, t in cuda.device_allocations[:2]] == [
        (torch.device("cuda", 1), dtype, (16,)), (torch.device("cuda", 1), dtype, (5,))]
    name = "float32" if dtype == torch.float32 else "float64"
    assert heads(cuda) == [("sinkhorn", name, 1, 1)]


def test_swav_codes_on_the_device_name_a_bad_row(cuda):
    s = scores(6, 3)
    s[4] = float("nan")
    with pytest.raises(ValueError) as info:
        _kernels.sinkhorn_codes(on(s), 0.3, 3, on(torch.empty(6, 3, dtype=torch.float64)), "SwAVLoss: output ")
    assert str(info.value).startswith("SwAVLoss: output ") and "row 4" in str(info.value)


@pytest.mark.parametrize("bad, message", [
    (float("nan"), "SwAVLoss: output contains NaN (row 4)"),
    (float("inf"), "SwAVLoss: output contains -inf (an infinite score) or E/T overflows (row 4)"),
])
def test_swav_codes_name_a_bad_row_in_the_callers_words(bad, message):
    # the solver's message is about E; the codes read scores: "E " gives way to the caller's prefix
    s = scores(6, 3)
    s[4, 1] = bad
    with pytest.raises(ValueError) as info:
        _kernels.sinkhorn_codes(s, 0.3, 3, torch.empty(6, 3, dtype=torch.float64), "SwAVLoss: output ")
    assert str(info.value) == message


# ----------------------------------------------------------------------------------- ledger rows
@pytest.mark.parametrize("weighted", [False, True])
def test_ledger_rows_on_the_device(cuda, weighted):
    s, q = scores(), labels()
    n, k = s.shape
    w = torch.linspace(1, 3, n, dtype=torch.float64) if weighted else None
    scale = 1 / 0.4
    rows = {name: on(torch.full((n,), -1.0, dtype=torch.float64)) for name in ("energy_q", "log_z", "entropy_q", "loss")}
    charges = on(torch.empty(k, dtype=torch.float64))
    _kernels.ledger_rows(on(q), on(s), scale, None, None if w is None else on(w), rows, charges)
    # the kernel's sums over the matrix it reads (here scores at the scale 1/T): sum_y q_y a_y,
    # log Z of exp(s/T), S[q] = -sum q log q, L = -sum_y q_y log p_y
    close(rows["energy_q"], (q * s).sum(1), rtol=1e-12, atol=1e-12)
    close(rows["log_z"], torch.logsumexp(scale * s, 1), rtol=1e-12, atol=1e-12)
    close(rows["entropy_q"], -(q * torch.log(q)).sum(1), rtol=1e-12, atol=1e-12)
    close(rows["loss"], -(q * torch.log_softmax(scale * s, 1)).sum(1), rtol=1e-12, atol=1e-12)
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64) if w is None else w
    close(charges, (weights[:, None] * q).sum(0), rtol=1e-12, atol=1e-14)
    assert heads(cuda) == [("ledger_rows", "float64", 1, 1)]


# ----------------------------------------------------------------------------------- torch fallbacks
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_difference_dot_on_the_device_by_torch(cuda, dtype):
    u = labels(7, 5, dtype=dtype)
    u[2, 1] = 0.0
    v, w = scores(7, 5, dtype=dtype, seed=3), scores(7, 5, dtype=dtype, seed=4)
    v[2, 1] = float("inf")  # u = 0 there: skipped, not nan
    w[3] = v[3]  # v = w: skipped
    v[3, 0] = w[3, 0] = float("inf")
    out = _kernels.row_difference_dot(on(u), on(v), on(w))
    diff = torch.where((u != 0) & (v != w), u.double() * (v.double() - w.double()), torch.zeros((), dtype=torch.float64))
    assert out.dtype == torch.float64  # summed in float64 whatever the labels' dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    close(out, diff.sum(1), rtol=tol, atol=tol)
    assert out[3] == 0 and bool(torch.isfinite(out).all())
    host = _kernels.row_difference_dot(u, v, w)
    close(out, host, rtol=tol, atol=tol)
    assert cuda.calls == []  # no kernel on the device: torch's


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_expectation_on_the_device_by_torch(cuda, dtype):
    a = scores(8, 5, dtype=dtype)
    v = torch.linspace(-1.0, 2.0, 5, dtype=torch.float64)
    log_z = torch.logsumexp(1.3 * a.double(), 1)
    got = _kernels.softmax_expectation(on(a), 1.3, v, log_z)
    ref = (torch.softmax(1.3 * a.double(), 1) * v).sum(1)
    assert got.dtype == torch.float64
    close(got, ref, rtol=1e-12, atol=1e-12)
    close(got, _kernels.softmax_expectation(a, 1.3, v, log_z),
                               rtol=TOL[dtype], atol=TOL[dtype])
    assert cuda.calls == []


# ----------------------------------------------------------------------------------- errors
def test_a_cuda_tensor_without_the_cuda_kernels_or_a_device_is_refused(cuda, monkeypatch):
    a = on(scores())
    out = on(torch.empty(9, dtype=torch.float64))
    monkeypatch.setattr(_kernels, "_cuda", None)
    with pytest.raises(RuntimeError) as info:
        _kernels.row_logsumexp(a, 1.0, None, out)
    assert str(info.value) == (
        "thermossl.torch got a CUDA tensor, but thermossl was built without its CUDA kernels "
        "(rebuild with nvcc available, THERMOSSL_CUDA=ON), or move the tensor to the CPU")
    monkeypatch.setattr(_kernels, "_cuda", cuda)
    monkeypatch.setattr(_kernels._device, "is_available", lambda: False)
    with pytest.raises(RuntimeError) as info:
        _kernels.row_logsumexp(a, 1.0, None, out)
    assert str(info.value) == "thermossl.torch got a CUDA tensor, but no CUDA device is available to thermossl"
    assert cuda.calls == []


def test_half_tensors_have_no_cuda_kernel(cuda):
    a = on(scores(dtype=torch.bfloat16))
    with pytest.raises(KeyError):
        _kernels.row_logsumexp(a, 1.0, None, on(torch.empty(9, dtype=torch.float32)))
    assert cuda.calls == []


# ----------------------------------------------------------------------------------- operand checks
# The kernels take addresses and cannot check them: every operand read or written whole is checked
# in _kernels (shape, dtype, layout, device), so a caller's bug is an error, never a stray write.
def test_outputs_of_another_dtype_shape_or_layout_are_refused_before_any_kernel_runs():
    a = scores()  # (9, 6) float64
    with pytest.raises(ValueError) as info:
        _kernels.row_logsumexp(a, 1.0, None, torch.empty(9, dtype=torch.float32))
    assert str(info.value) == ("thermossl.torch kernels: out must be a contiguous torch.float64 tensor of shape (9,) "
                               "on cpu, got torch.float32 (9,) on cpu")
    with pytest.raises(ValueError, match=r"p must be a contiguous torch.float64 tensor of shape \(9, 6\) on cpu, "
                                         r"got torch.float64 \(6, 9\) on cpu"):
        _kernels.row_softmax(a, 1.0, None, torch.empty(9, 6, dtype=torch.float64).t())
    with pytest.raises(ValueError, match=r"p must be a contiguous .* got torch.float64 \(9, 6\) on cpu"):
        _kernels.row_softmax(a, 1.0, None, torch.empty(6, 9, dtype=torch.float64).t())  # not contiguous
    with pytest.raises(ValueError, match=r"shift must be a contiguous torch.float64 tensor of shape \(6,\) on cpu, "
                                         r"got torch.float32 \(6,\) on cpu"):
        _kernels.row_log_softmax(a, 1.0, torch.zeros(6), torch.empty(9, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"entropy must be .* got None"):
        _kernels.row_entropy(a, 1.0, None, None, None)
    with pytest.raises(ValueError, match=r"log_z must be a contiguous torch.float64 tensor of shape \(9,\)"):
        _kernels.row_entropy_grad(a, 1.0, None, torch.empty(9, 6, dtype=torch.float64), torch.empty(8, dtype=torch.float64))
    # half input: the outputs are float32
    half = a.to(torch.bfloat16)
    out = torch.empty(9, dtype=torch.float32)
    _kernels.row_logsumexp(half, 1.0, None, out)
    close(out, torch.logsumexp(half.float(), 1), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"out must be a contiguous torch.float32 tensor"):
        _kernels.row_logsumexp(half, 1.0, None, torch.empty(9, dtype=torch.bfloat16))


def test_labels_and_blocks_are_checked():
    a, q = scores(), labels()
    n, k = a.shape
    loss, grad, log_z = torch.empty(n, dtype=torch.float64), torch.empty(n, k, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    with pytest.raises(ValueError) as info:
        _kernels.row_cross_entropy(q[:, :5], a, 1.0, None, loss, grad, log_z)
    assert str(info.value) == ("thermossl.torch kernels: labels torch.float64 (9, 5) on cpu do not match scores "
                               "torch.float64 (9, 6) on cpu")
    with pytest.raises(ValueError, match="labels torch.float64 \\(8, 6\\) on cpu do not match"):
        _kernels.row_cross_entropy(q[:8], a, 1.0, None, loss, grad, log_z)
    with pytest.raises(ValueError, match="labels torch.float32 \\(9, 6\\) on cpu do not match scores torch.float64"):
        _kernels.ledger_rows(q.float(), a, 1.0, None, None, {}, None)
    # float32 labels are read by the mixed kernel against CPU half scores only, and a 1-D label vector never
    _kernels.row_cross_entropy(q.float(), a.half(), 1.0, None, loss.float(), None, log_z.float())
    with pytest.raises(ValueError, match="labels torch.float64 \\(54,\\)"):
        _kernels.row_cross_entropy_block(q.reshape(-1), 0, a, 0, 3, 1.0, loss, grad, log_z)
    # a block of labels may come from a taller matrix, within its rows and the scores' rows
    tall = torch.cat([q, q])
    _kernels.row_cross_entropy_block(tall, 15, a, 6, 3, 1.0, loss, grad, log_z)
    close(loss[6:9], -(q[6:9] * torch.log_softmax(a[6:9], 1)).sum(1), rtol=1e-12, atol=1e-12)
    for q_row0, a_row0, rows in ((16, 6, 3), (0, 7, 3), (-1, 0, 3), (0, -1, 3), (0, 0, -1)):
        with pytest.raises(ValueError) as info:
            _kernels.row_cross_entropy_block(tall, q_row0, a, a_row0, rows, 1.0, loss, grad, log_z)
        assert str(info.value) == (f"thermossl.torch kernels: rows {q_row0}..{q_row0 + rows} of labels (18, 6) "
                                   f"against rows {a_row0}..{a_row0 + rows} of scores (9, 6)")
    with pytest.raises(ValueError, match=r"grad must be a contiguous torch.float64 tensor of shape \(9, 6\)"):
        _kernels.row_cross_entropy_block(q, 0, a, 0, 9, 1.0, loss, grad[:8], log_z)
    # an empty block (at the very end of both) is allowed and writes nothing
    loss.fill_(7), grad.fill_(7), log_z.fill_(7)
    before = (loss.clone(), grad.clone(), log_z.clone())
    _kernels.row_cross_entropy_block(tall, 18, a, 9, 0, 1.0, loss, grad, log_z)
    assert all(torch.equal(x, y) for x, y in zip(before, (loss, grad, log_z)))


def test_sinkhorn_and_ledger_operands_are_checked():
    E = scores()
    n, k = E.shape
    f, mu, q = torch.empty(n, dtype=torch.float64), torch.empty(k, dtype=torch.float64), torch.empty(n, k, dtype=torch.float64)
    cases = [
        ({"charges": torch.empty(k)}, "charges must be a contiguous torch.float64 tensor of shape (6,) on cpu, "
                                      "got torch.float32 (6,) on cpu"),
        ({"f": torch.empty(k, dtype=torch.float64)}, "f must be a contiguous torch.float64 tensor of shape (9,) on "
                                                     "cpu, got torch.float64 (6,) on cpu"),
        ({"mu": None}, "mu must be a contiguous torch.float64 tensor of shape (6,) on cpu, got None"),
        ({"q": torch.empty(n, k)}, "q must be a contiguous torch.float64 tensor of shape (9, 6) on cpu, "
                                   "got torch.float32 (9, 6) on cpu"),
        ({"w": torch.full((k,), 1 / k, dtype=torch.float64)}, "w must be a contiguous torch.float64 tensor of shape "
                                                               "(9,) on cpu, got torch.float64 (6,) on cpu"),
        ({"c": torch.full((n,), 1 / n, dtype=torch.float64)}, "c must be a contiguous torch.float64 tensor of shape "
                                                               "(6,) on cpu, got torch.float64 (9,) on cpu"),
        ({"mu0": torch.zeros(k)}, "mu0 must be a contiguous torch.float64 tensor of shape (6,) on cpu, "
                                  "got torch.float32 (6,) on cpu"),
    ]
    for change, message in cases:
        args = {"w": None, "c": None, "mu0": None, "f": f, "mu": mu, "q": q, "charges": None, **change}
        with pytest.raises(ValueError) as info:
            _kernels.sinkhorn(E, 0.5, args["w"], args["c"], args["mu0"], 2, 1e-6, 10, args["f"], args["mu"],
                              args["q"], args["charges"], energy_sign=1.0)
        assert str(info.value) == "thermossl.torch kernels: " + message
    q_labels = labels()
    with pytest.raises(ValueError) as info:
        _kernels.ledger_rows(q_labels, E, 1.0, None, None, {"loss": torch.empty(n)}, None)
    assert str(info.value) == ("thermossl.torch kernels: loss must be a contiguous torch.float64 tensor of shape (9,) "
                               "on cpu, got torch.float32 (9,) on cpu")
    with pytest.raises(ValueError, match=r"w must be a contiguous torch.float64 tensor of shape \(9,\)"):
        _kernels.ledger_rows(q_labels, E, 1.0, None, torch.ones(n), {}, None)
    with pytest.raises(ValueError, match=r"charges must be a contiguous torch.float64 tensor of shape \(6,\)"):
        _kernels.ledger_rows(q_labels, E, 1.0, None, None, {}, torch.empty(n, dtype=torch.float64))
    with pytest.raises(ValueError, match="rows: unknown ledger field name"):
        _kernels.ledger_rows(q_labels, E, 1.0, None, None, {"lost": torch.empty(n, dtype=torch.float64)}, None)


def test_operands_on_another_device_are_refused(cuda):
    a = on(scores())
    with pytest.raises(ValueError) as info:
        _kernels.row_logsumexp(a, 1.0, None, torch.empty(9, dtype=torch.float64))
    assert str(info.value) == ("thermossl.torch kernels: out must be a contiguous torch.float64 tensor of shape (9,) "
                               "on cuda:1, got torch.float64 (9,) on cpu")
    with pytest.raises(ValueError, match="labels torch.float64 \\(9, 6\\) on cpu do not match scores torch.float64 "
                                         "\\(9, 6\\) on cuda:1"):
        _kernels.row_cross_entropy(labels(), a, 1.0, None, on(torch.empty(9, dtype=torch.float64)), None, None)
    assert cuda.calls == []


def _bad(shape):
    return torch.empty(shape, dtype=torch.float32)  # float64 kernels: the wrong dtype


@pytest.mark.parametrize("call, name, shape", [
    (lambda a, n, k: _kernels.row_logsumexp(a, 1.0, None, _bad(n)), "out", "(9,)"),
    (lambda a, n, k: _kernels.row_softmax(a, 1.0, None, _bad((n, k))), "p", "(9, 6)"),
    (lambda a, n, k: _kernels.row_softmax(a, 1.0, None, torch.empty(n, k, dtype=torch.float64), _bad(n)),
     "log_z", "(9,)"),
    (lambda a, n, k: _kernels.row_log_softmax(a, 1.0, None, _bad((n, k))), "log_p", "(9, 6)"),
    (lambda a, n, k: _kernels.row_entropy(a, 1.0, None, _bad(n), None), "entropy", "(9,)"),
    (lambda a, n, k: _kernels.row_entropy(a, 1.0, None, torch.empty(n, dtype=torch.float64), _bad(n)),
     "log_z", "(9,)"),
    (lambda a, n, k: _kernels.row_entropy_grad(a, 1.0, None, _bad((n, k)), None), "grad", "(9, 6)"),
    (lambda a, n, k: _kernels.row_entropy_grad(a, 1.0, None, torch.empty(n, k, dtype=torch.float64), _bad(n)),
     "log_z", "(9,)"),
    (lambda a, n, k: _kernels.row_cross_entropy(labels(), a, 1.0, None, _bad(n), None, None), "loss", "(9,)"),
    (lambda a, n, k: _kernels.row_cross_entropy(labels(), a, 1.0, None, torch.empty(n, dtype=torch.float64),
                                                _bad((n, k)), None), "grad", "(9, 6)"),
    (lambda a, n, k: _kernels.row_cross_entropy(labels(), a, 1.0, None, torch.empty(n, dtype=torch.float64), None,
                                                _bad(n)), "log_z", "(9,)"),
    (lambda a, n, k: _kernels.row_cross_entropy_block(labels(), 0, a, 0, 2, 1.0, _bad(n),
                                                      torch.empty(n, k, dtype=torch.float64),
                                                      torch.empty(n, dtype=torch.float64)), "loss", "(9,)"),
    (lambda a, n, k: _kernels.row_cross_entropy_block(labels(), 0, a, 0, 2, 1.0, torch.empty(n, dtype=torch.float64),
                                                      torch.empty(n, k, dtype=torch.float64), _bad(n)),
     "log_z", "(9,)"),
])
def test_each_operand_is_named_in_its_error(call, name, shape):
    a = scores()
    with pytest.raises(ValueError) as info:
        call(a, *a.shape)
    assert str(info.value) == (f"thermossl.torch kernels: {name} must be a contiguous torch.float64 tensor of shape "
                               f"{shape} on cpu, got torch.float32 {shape} on cpu")
