"""CUDA kernels against the CPU kernels, on a GPU (skipped without one).

Every public function given torch CUDA tensors (and CuPy arrays when CuPy is installed) must
equal the CPU result on the same data: float64 to 1e-12 relative (with an absolute floor at the
scale of the quantity where it passes through 0), float32 at the accuracy the CPU tests state
(README "Accuracy"). The results stay on the device, of the input's kind, and no matrix-sized
copy of the input is made (torch's allocator counter).
"""
from __future__ import annotations

import numpy as np
import pytest

import thermossl
import thermossl.cuda

torch = pytest.importorskip("torch", reason="the CUDA tests drive the kernels through torch CUDA tensors")
if not thermossl.cuda.is_available() or not torch.cuda.is_available():
    pytest.skip(
        "no CUDA device (thermossl.cuda.is_available() is False: built without CUDA, or no driver/GPU)",
        allow_module_level=True,
    )

from numpy.testing import assert_allclose  # noqa: E402

from helpers import EPS32  # noqa: E402

DTYPES = (np.float32, np.float64)
DEV = "cuda"


def energies(n=513, k=300, dtype=np.float64, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(n, k))).astype(dtype)


def dev(a):
    return torch.from_numpy(np.ascontiguousarray(a)).to(DEV)


def host(t):
    assert isinstance(t, torch.Tensor) and t.is_cuda, "results must stay on the device as torch tensors"
    return t.cpu().numpy()


def close(ours, ref, dtype, rel32=4 * EPS32, abs_scale=1.0):
    """float64: 1e-12 relative (absolute floor 1e-12 * abs_scale); float32: rel32 relative + floor."""
    if np.dtype(dtype) == np.float64:
        assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * abs_scale)
    else:
        assert_allclose(ours, ref, rtol=rel32, atol=rel32 * abs_scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 7, 300, 3000, 5000])  # 5000 > 4096: the uncached path
def test_log_partition_gibbs_entropy(dtype, k):
    E = energies(257, k, dtype)
    T = 0.5
    mu = np.linspace(-1, 1, k)
    for kw in ({}, {"mu": mu}):
        close(host(thermossl.log_partition(dev(E), T, **kw)), thermossl.log_partition(E, T, **kw), dtype,
              rel32=EPS32)
        close(host(thermossl.gibbs(dev(E), T, **kw)), thermossl.gibbs(E, T, **kw), dtype, rel32=4 * EPS32,
              abs_scale=1e-3)
    close(host(thermossl.gibbs_entropy(dev(E), T)), thermossl.gibbs_entropy(E, T), dtype, rel32=8 * EPS32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_transposed_inputs(dtype):
    E = energies(300, 200, dtype)
    T = 0.3
    ref = thermossl.gibbs(E, T)
    big = torch.full((600, 400), 1e4, dtype=getattr(torch, np.dtype(dtype).name), device=DEV)
    big[::2, ::2] = dev(E)
    close(host(thermossl.gibbs(big[::2, ::2], T)), ref, dtype, abs_scale=1e-3)
    transposed = dev(np.ascontiguousarray(E.T)).T
    close(host(thermossl.gibbs(transposed, T)), ref, dtype, abs_scale=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [300, 5000])
def test_cross_entropy_and_entropy_grad(dtype, k):
    E = energies(129, k, dtype)
    T = 0.1
    q = thermossl.gibbs(energies(129, k, dtype, seed=1), 0.05)
    loss, grad = thermossl.cross_entropy(dev(q), dev(E), T, grad=True)
    ref_loss, ref_grad = thermossl.cross_entropy(q, E, T, grad=True)
    close(host(loss), ref_loss, dtype, rel32=2 * EPS32)
    close(host(grad), ref_grad, dtype, rel32=16 * EPS32, abs_scale=1 / T)
    close(host(thermossl.entropy_grad(dev(E), T)), thermossl.entropy_grad(E, T), dtype, rel32=16 * EPS32,
          abs_scale=1 / T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scipy_style_last_axis(dtype):
    a = energies(100, 77, dtype)
    close(host(thermossl.logsumexp(dev(a), axis=1)), thermossl.logsumexp(a, axis=1), dtype, rel32=EPS32)
    close(host(thermossl.logsumexp(dev(a), axis=-1, keepdims=True)), thermossl.logsumexp(a, axis=1, keepdims=True),
          dtype, rel32=EPS32)
    close(host(thermossl.softmax(dev(a), axis=1)), thermossl.softmax(a, axis=1), dtype, abs_scale=1e-3)
    close(host(thermossl.log_softmax(dev(a), axis=1)), thermossl.log_softmax(a, axis=1), dtype, abs_scale=10)
    with pytest.raises(NotImplementedError):
        thermossl.logsumexp(dev(a), axis=0)


def test_special_values_match_cpu():
    E = energies(6, 5, np.float64)
    E[1, 2] = np.inf  # forbidden state: p exactly 0
    p = host(thermossl.gibbs(dev(E), 1.0))
    assert p[1, 2] == 0.0
    a = E.copy()
    a[2, :] = -np.inf
    a[3, 1] = np.inf
    a[4, 0] = np.nan
    close(host(thermossl.logsumexp(dev(a), axis=1)), thermossl.logsumexp(a, axis=1), np.float64)
    assert_allclose(host(thermossl.softmax(dev(a), axis=1)), thermossl.softmax(a, axis=1), equal_nan=True)
    assert_allclose(host(thermossl.log_softmax(dev(a), axis=1)), thermossl.log_softmax(a, axis=1), equal_nan=True)
    for bad, message in ((np.nan, "NaN"), (-np.inf, "-inf")):
        b = E.copy()
        b[3, 1] = bad
        with pytest.raises(ValueError, match=message):
            thermossl.log_partition(dev(b), 1.0)
    b = E.copy()
    b[2, :] = np.inf
    with pytest.raises(ValueError, match="forbidden"):
        thermossl.gibbs(dev(b), 1.0)


def swav_torch(scores, eps=0.05, iters=3):
    """SwAV's published distributed_sinkhorn (single process)."""
    Q = torch.exp(scores / eps).t()
    B, K = Q.shape[1], Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(iters):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sinkhorn_fixed_matches_cpu_and_swav(dtype):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2048, 32)); X /= np.linalg.norm(X, axis=1, keepdims=True)
    P = rng.normal(size=(300, 32)); P /= np.linalg.norm(P, axis=1, keepdims=True)
    E = (-(X @ P.T)).astype(dtype)
    ref = thermossl.sinkhorn(E, 0.05, n_iter=3)
    res = thermossl.sinkhorn(dev(E), 0.05, n_iter=3)
    assert res.n_iter == ref.n_iter == 3
    close(host(res.q), ref.q, dtype, rel32=64 * EPS32, abs_scale=1e-3)
    close(host(res.f), ref.f, dtype, rel32=64 * EPS32, abs_scale=1e-2)
    close(host(res.mu), ref.mu, dtype, rel32=64 * EPS32, abs_scale=1e-2)
    assert res.err == pytest.approx(ref.err, rel=1e-9 if dtype == np.float64 else 1e-4, abs=1e-12)
    swav = swav_torch(dev(-E.astype(np.float64))).cpu().numpy()
    assert_allclose(host(res.q), swav, rtol=0, atol=1e-10 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sinkhorn_tolerance_warm_and_weights(dtype):
    E = energies(1000, 50, dtype, scale=1.0)
    rng = np.random.default_rng(4)
    w = rng.uniform(0.5, 1.5, 1000); w /= w.sum()
    c = rng.uniform(0.5, 1.5, 50); c /= c.sum()
    tol = 1e-6 if dtype == np.float64 else 1e-4
    ref = thermossl.sinkhorn(E, 1 / 25, w=w, c=c, tol=tol)
    for check_every in (1, 8):
        res = thermossl.cuda.sinkhorn(dev(E), 1 / 25, w=w, c=c, tol=tol, check_every=check_every)
        # float32 rounding may move the stop by one iteration at the tolerance boundary
        slack = 0 if dtype == np.float64 else 1
        assert abs(res.n_iter - ref.n_iter) <= slack and res.converged
        rel = 1e-10 if dtype == np.float64 else 1e-3
        assert_allclose(host(res.q), ref.q, rtol=rel, atol=rel * 1e-2)
        assert_allclose(host(res.mu), ref.mu, rtol=rel, atol=rel)
    warm_ref = thermossl.sinkhorn(E + 1e-3, 1 / 25, w=w, c=c, tol=tol, mu0=ref.mu)
    warm = thermossl.sinkhorn(dev(E + 1e-3), 1 / 25, w=w, c=c, tol=tol, mu0=ref.mu)
    assert abs(warm.n_iter - warm_ref.n_iter) <= (0 if dtype == np.float64 else 1)


def test_sinkhorn_errors_match_cpu():
    E = energies(20, 5, np.float64)
    E[:, 3] = np.inf
    with pytest.raises(ValueError, match="state 3"):
        thermossl.sinkhorn(dev(E), 0.1, n_iter=3)
    E = energies(20, 5, np.float64)
    E[7, :] = np.inf
    with pytest.raises(ValueError, match="row 7"):
        thermossl.sinkhorn(dev(E), 0.1, n_iter=3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ledger_rows_and_state(dtype):
    E = energies(300, 40, dtype)
    q = thermossl.gibbs(energies(300, 40, dtype, seed=5), 0.5)
    q[0, :5] = 0  # zero labels
    q[0] /= q[0].sum()
    rng = np.random.default_rng(6)
    w = rng.uniform(0.5, 1.5, 300); w /= w.sum()
    rows, charges, _ = thermossl.thermo.ledger_rows(dev(q), dev(E), 0.2, w)
    ref_rows, ref_charges, _ = thermossl.thermo.ledger_rows(q, E, 0.2, w)
    for field, ref in ref_rows.items():
        close(host(rows[field]), ref, dtype, rel32=64 * EPS32, abs_scale=float(np.abs(ref).max()) + 1)
    close(host(charges), ref_charges, dtype, rel32=64 * EPS32)
    state, ref_state = thermossl.thermo.State(dev(E), 0.2, dev(q), w), thermossl.thermo.State(E, 0.2, q, w)
    assert state.L == pytest.approx(ref_state.L, rel=1e-12 if dtype == np.float64 else 1e-5)
    assert state.D == pytest.approx(ref_state.D, rel=1e-9 if dtype == np.float64 else 1e-3, abs=1e-12)


def test_zero_copy_and_caller_stream():
    n, k = 4096, 3000
    E = torch.randn(n, k, device=DEV)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        p = thermossl.gibbs(E, 0.1)
        lz = thermossl.log_partition(E, 0.1)
        res = thermossl.sinkhorn(E, 0.05, n_iter=3)
    stream.synchronize()
    matrix = n * k * 4
    # Outputs: p and q (one matrix each) plus O(N + K) vectors; a copy of E would add a third.
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 2 * matrix + 4 * 1024 * 1024, f"peak {peak} bytes: a matrix-sized copy was made"
    assert p.device == E.device and res.q.device == E.device and lz.dtype == E.dtype


def test_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    E = energies(64, 30, np.float32)
    out = thermossl.gibbs(cupy.asarray(E), 0.5)
    assert isinstance(out, cupy.ndarray)
    close(cupy.asnumpy(out), thermossl.gibbs(E, 0.5), np.float32, abs_scale=1e-3)
