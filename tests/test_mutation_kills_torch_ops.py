"""thermossl.torch's operators: every argument error to the letter (the message names the argument),
empty and degenerate shapes against torch's own functions, and the autograd formulas against
independent references; written to kill the survivors of mutation testing of torch/ops.py
(issue 20). Each check is on public behaviour, so it holds whatever the op's internals."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import thermossl.torch as tt  # noqa: E402

E43 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
META3 = torch.zeros(3, device="meta")


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc
    assert str(info.value) == message


# ----------------------------------------------------------------------------- argument errors
ERRORS = [
    # the temperature, as a number and as a 0-d tensor (validated where its value is known)
    (lambda: tt.gibbs(E43, torch.tensor([0.5])), ValueError,
     "T must be a number or a 0-d tensor, got a tensor of shape (1,)"),
    (lambda: tt.gibbs(E43, torch.ones(2, 2)), ValueError,
     "T must be a number or a 0-d tensor, got a tensor of shape (2, 2)"),
    (lambda: tt.gibbs(E43, torch.tensor(0.5j)), TypeError, "T must be real, got dtype torch.complex64"),
    (lambda: tt.gibbs(E43, torch.tensor(True)), TypeError, "T must be real, got dtype torch.bool"),
    (lambda: tt.log_partition(E43, torch.tensor(0.5, requires_grad=True)), ValueError,
     "T: gradients with respect to the temperature are not supported; pass T.detach()"),
    (lambda: tt.gibbs(E43, True), TypeError, "T must be a real number or a 0-d tensor, got bool"),
    (lambda: tt.gibbs(E43, "0.5"), TypeError, "T must be a real number or a 0-d tensor, got str"),
    (lambda: tt.gibbs(E43, None), TypeError, "T must be a real number or a 0-d tensor, got NoneType"),
    (lambda: tt.gibbs(E43, math.inf), ValueError, "T must be finite and > 0, got inf"),
    (lambda: tt.gibbs(E43, math.nan), ValueError, "T must be finite and > 0, got nan"),
    (lambda: tt.gibbs(E43, 0.0), ValueError, "T must be finite and > 0, got 0.0"),
    (lambda: tt.gibbs(E43, 0), ValueError, "T must be finite and > 0, got 0.0"),
    (lambda: tt.gibbs(E43, -1e-300), ValueError, "T must be finite and > 0, got -1e-300"),
    (lambda: tt.gibbs(E43, torch.tensor(-2.0)), ValueError, "T must be finite and > 0, got -2.0"),
    (lambda: tt.gibbs(E43, torch.tensor(0.0)), ValueError, "T must be finite and > 0, got 0.0"),
    (lambda: tt.log_partition(E43, torch.tensor(math.inf)), ValueError, "T must be finite and > 0, got inf"),
    (lambda: tt.gibbs_entropy(E43, torch.tensor(math.nan)), ValueError, "T must be finite and > 0, got nan"),
    # E
    (lambda: tt.gibbs([[1.0]]), TypeError, "E must be a torch.Tensor, got list"),
    (lambda: tt.log_partition(E43.to_sparse()), TypeError,
     "E must be a dense (strided) tensor, got layout torch.sparse_coo"),
    (lambda: tt.gibbs(E43.long()), TypeError, "E must be float16, bfloat16, float32 or float64, got torch.int64"),
    (lambda: tt.gibbs(E43.to(torch.complex128)), TypeError,
     "E must be float16, bfloat16, float32 or float64, got torch.complex128"),
    (lambda: tt.gibbs(E43[0]), ValueError, "E must have shape (N, K) or (..., N, K), got ndim=1"),
    (lambda: tt.gibbs_entropy(E43[0, 0]), ValueError, "E must have shape (N, K) or (..., N, K), got ndim=0"),
    (lambda: tt.gibbs(torch.empty(3, 0)), ValueError,
     "E must have at least one state per row (K >= 1), got shape (3, 0)"),
    (lambda: tt.log_partition(torch.empty(1, 0)), ValueError,
     "E must have at least one state per row (K >= 1), got shape (1, 0)"),
    (lambda: tt.gibbs(torch.empty(2, 1, 0)), ValueError,
     "E must have at least one state per row (K >= 1), got shape (2, 1, 0)"),
    # mu
    (lambda: tt.gibbs(E43, 1.0, [0.0, 0.0, 0.0]), TypeError, "mu must be a torch.Tensor, got list"),
    (lambda: tt.gibbs(E43, 1.0, torch.zeros(3, dtype=torch.int32)), TypeError,
     "mu must be float16, bfloat16, float32 or float64, got torch.int32"),
    (lambda: tt.gibbs(E43, 1.0, torch.zeros(4)), ValueError,
     "mu must have shape (3,) (one value per state), got (4,)"),
    (lambda: tt.log_partition(E43, 1.0, torch.zeros(1, 3)), ValueError,
     "mu must have shape (3,) (one value per state), got (1, 3)"),
    (lambda: tt.gibbs(E43, 1.0, META3), ValueError, "mu must be on E's device cpu, got meta"),
    (lambda: tt.gibbs(E43, 1.0, torch.tensor([0.0, math.nan, 0.0])), ValueError, "mu must be finite"),
    (lambda: tt.log_partition(E43, 1.0, torch.tensor([0.0, -math.inf, 0.0])), ValueError, "mu must be finite"),
    # cross_entropy's q
    (lambda: tt.cross_entropy(E43.numpy(), E43), TypeError, "q must be a torch.Tensor, got ndarray"),
    (lambda: tt.cross_entropy(E43.long(), E43), TypeError,
     "q must be float16, bfloat16, float32 or float64, got torch.int64"),
    (lambda: tt.cross_entropy(E43[:2], E43), ValueError, "q must have the shape of E (4, 3), got (2, 3)"),
    (lambda: tt.cross_entropy(E43.t(), E43), ValueError, "q must have the shape of E (4, 3), got (3, 4)"),
    (lambda: tt.cross_entropy(E43.to("meta"), E43), ValueError, "q must be on E's device cpu, got meta"),
    (lambda: tt.cross_entropy(E43, E43.long()), TypeError,
     "E must be float16, bfloat16, float32 or float64, got torch.int64"),
    # the torch-style reductions
    (lambda: tt.logsumexp([1.0]), TypeError, "input must be a torch.Tensor, got list"),
    (lambda: tt.softmax(E43.to_sparse()), TypeError,
     "input must be a dense (strided) tensor, got layout torch.sparse_coo"),
    (lambda: tt.log_softmax(E43.to(torch.complex64)), TypeError,
     "input: complex input (dtype torch.complex64) is not supported"),
    (lambda: tt.logsumexp(E43, 2), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got 2)"),
    (lambda: tt.logsumexp(E43, -3), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got -3)"),
    (lambda: tt.logsumexp(torch.ones(3), 1), IndexError,
     "Dimension out of range (expected to be in range of [-1, 0], but got 1)"),
    (lambda: tt.logsumexp(torch.tensor(1.0), 1), IndexError,
     "Dimension out of range (expected to be in range of [-1, 0], but got 1)"),
    (lambda: tt.softmax(torch.ones(2, 3, 4), 3), IndexError,
     "Dimension out of range (expected to be in range of [-3, 2], but got 3)"),
    (lambda: tt.log_softmax(torch.ones(2, 3, 4), -4), IndexError,
     "Dimension out of range (expected to be in range of [-3, 2], but got -4)"),
    (lambda: tt.logsumexp(E43, True), TypeError, "dim must be an int or a tuple of ints, got True"),
    (lambda: tt.logsumexp(E43, 1.0), TypeError, "dim must be an int or a tuple of ints, got 1.0"),
    (lambda: tt.logsumexp(E43, (0, "1")), TypeError, "dim must be an int or a tuple of ints, got (0, '1')"),
    (lambda: tt.softmax(E43, None), TypeError, "dim must be an int or a tuple of ints, got None"),
    (lambda: tt.logsumexp(E43, (0, -2)), ValueError, "dim (0, -2) names a dimension twice"),
    (lambda: tt.logsumexp(E43, [1, 1]), ValueError, "dim [1, 1] names a dimension twice"),
    # sinkhorn
    (lambda: tt.sinkhorn(E43, 0.1, energy_sign=True), ValueError, "energy_sign must be 1 or -1, got True"),
    (lambda: tt.sinkhorn(E43, 0.1, energy_sign=0), ValueError, "energy_sign must be 1 or -1, got 0"),
    (lambda: tt.sinkhorn(E43, 0.1, energy_sign=-2), ValueError, "energy_sign must be 1 or -1, got -2"),
    (lambda: tt.sinkhorn(E43, 0.1, tol=True), ValueError, "tol must be a finite number > 0, got True"),
    (lambda: tt.sinkhorn(E43, 0.1, tol="1e-6"), ValueError, "tol must be a finite number > 0, got '1e-6'"),
    (lambda: tt.sinkhorn(E43, 0.1, tol=math.inf), ValueError, "tol must be a finite number > 0, got inf"),
    (lambda: tt.sinkhorn(E43, 0.1, tol=math.nan), ValueError, "tol must be a finite number > 0, got nan"),
    (lambda: tt.sinkhorn(E43, 0.1, tol=0), ValueError, "tol must be a finite number > 0, got 0"),
    (lambda: tt.sinkhorn(E43, 0.1, tol=-1e-6), ValueError, "tol must be a finite number > 0, got -1e-06"),
    (lambda: tt.sinkhorn(E43, 0.1, n_iter=np.int64(0)), ValueError, "n_iter must be >= 1, got 0"),
    (lambda: tt.sinkhorn(E43, 0.1, n_iter="3"), TypeError, "n_iter must be an int, got str"),
    (lambda: tt.sinkhorn(E43, 0.1, max_iter=None), TypeError, "max_iter must be an int, got NoneType"),
    (lambda: tt.sinkhorn(E43, 0.1, max_iter=-5), ValueError, "max_iter must be >= 1, got -5"),
    (lambda: tt.sinkhorn(E43, 0.0), ValueError, "T must be finite and > 0, got 0.0"),
    (lambda: tt.sinkhorn(E43, torch.tensor(-1.0)), ValueError, "T must be finite and > 0, got -1.0"),
    (lambda: tt.sinkhorn(E43.long(), 0.1), TypeError, "E must be float16, bfloat16, float32 or float64, got torch.int64"),
    (lambda: tt.sinkhorn(E43, 0.1, w=[0.25] * 4), TypeError, "w must be a torch.Tensor, got list"),
    (lambda: tt.sinkhorn(E43, 0.1, w=torch.ones(3) / 3), ValueError,
     "w must have shape (4,) (one value per sample), got (3,)"),
    (lambda: tt.sinkhorn(E43, 0.1, w=torch.ones(4, device="meta") / 4), ValueError,
     "w must be on E's device cpu, got meta"),
    (lambda: tt.sinkhorn(E43, 0.1, c=torch.ones(4) / 4), ValueError,
     "c must have shape (3,) (one value per state), got (4,)"),
    (lambda: tt.sinkhorn(E43, 0.1, c=torch.ones(3, dtype=torch.int64)), TypeError,
     "c must be float16, bfloat16, float32 or float64, got torch.int64"),
    (lambda: tt.sinkhorn(E43, 0.1, c=META3), ValueError, "c must be on E's device cpu, got meta"),
    (lambda: tt.sinkhorn(E43, 0.1, mu0=torch.zeros(1, 3)), ValueError,
     "mu0 must have shape (3,) (one value per state), got (1, 3)"),
    (lambda: tt.sinkhorn(E43, 0.1, mu0=META3), ValueError, "mu0 must be on E's device cpu, got meta"),
    (lambda: tt.sinkhorn(E43, 0.1, mu0=(0.0, 0.0, 0.0)), TypeError, "mu0 must be a torch.Tensor, got tuple"),
]


@pytest.mark.parametrize("call, exc, message", ERRORS, ids=[m for _, _, m in ERRORS])
def test_argument_errors_to_the_letter(call, exc, message):
    raises_exactly(exc, message, call)


def test_a_temperature_that_requires_grad_is_taken_without_grad_mode():
    # the refusal is about gradients: under no_grad such a T is read as a number
    T = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        p = tt.gibbs(E43, T)
    torch.testing.assert_close(p, torch.softmax(-E43 / 0.5, -1), rtol=1e-14, atol=0)


def test_integer_temperatures_and_numpy_counts_are_accepted():
    torch.testing.assert_close(tt.gibbs(E43, 2), torch.softmax(-E43 / 2, -1), rtol=1e-14, atol=0)
    torch.testing.assert_close(tt.gibbs(E43, np.float32(0.5)), torch.softmax(-E43 / 0.5, -1), rtol=1e-6, atol=0)
    a = tt.sinkhorn(E43, 0.5, n_iter=np.int32(3), max_iter=np.int64(7))
    b = tt.sinkhorn(E43, 0.5, n_iter=3)
    assert int(a.n_iter) == 3
    assert torch.equal(a.q, b.q)


# ----------------------------------------------------------------------------- empty and degenerate shapes
@pytest.mark.parametrize("shape", [(0, 3), (0, 0), (2, 0, 0), (0, 4, 0), (3, 0, 2)])
def test_empty_batches_follow_torch(shape):
    E = torch.zeros(shape, dtype=torch.float64)
    assert tt.log_partition(E).shape == shape[:-1]
    assert tt.gibbs(E, 0.5).shape == shape
    assert tt.gibbs_entropy(E).shape == shape[:-1]
    assert tt.cross_entropy(E, E).shape == shape[:-1]
    assert tt.softmax(E, -1).shape == torch.softmax(E, -1).shape
    assert tt.log_softmax(E, 0).shape == torch.log_softmax(E, 0).shape
    torch.testing.assert_close(tt.logsumexp(E, -1), torch.logsumexp(E, -1))
    torch.testing.assert_close(tt.logsumexp(E, 0, keepdim=True), torch.logsumexp(E, 0, keepdim=True))


# ----------------------------------------------------------------------------- values against numpy
def numpy_gibbs(E, T, mu=None):
    """(log Z, p, S) of each row of E in float64 numpy, independently of the package."""
    x = (-(np.asarray(E, dtype=np.float64)) + (0.0 if mu is None else np.asarray(mu, dtype=np.float64))) / T
    m = x.max(-1, keepdims=True)
    log_z = (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]
    p = np.exp(x - log_z[..., None])
    S = -(p * np.log(p)).sum(-1)
    return log_z, p, S


def test_the_defaults_are_T_1_and_the_last_axis():
    E = torch.randn(2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    log_z, p, S = numpy_gibbs(E.numpy(), 1.0)
    np.testing.assert_allclose(tt.log_partition(E).numpy(), log_z, rtol=1e-13)
    np.testing.assert_allclose(tt.gibbs(E).numpy(), p, rtol=1e-13)
    np.testing.assert_allclose(tt.gibbs_entropy(E).numpy(), S, rtol=1e-13)
    q = torch.softmax(torch.randn(2, 5, 4, dtype=torch.float64), -1)
    np.testing.assert_allclose(tt.cross_entropy(q, E).numpy(), -(q.numpy() * np.log(p)).sum(-1), rtol=1e-13)
    np.testing.assert_allclose(tt.logsumexp(E).numpy(), numpy_gibbs(-E.numpy(), 1.0)[0], rtol=1e-13)
    np.testing.assert_allclose(tt.softmax(E).numpy(), numpy_gibbs(-E.numpy(), 1.0)[1], rtol=1e-13)
    np.testing.assert_allclose(tt.log_softmax(E).numpy(), np.log(numpy_gibbs(-E.numpy(), 1.0)[1]), rtol=1e-13)
    r = tt.sinkhorn(E[0], 0.5)  # tol 1e-6, max_iter 1000, uniform w and c, energies (not scores)
    assert bool(r.converged) and 1 < int(r.n_iter) < 1000 and float(r.err) <= 1e-6
    np.testing.assert_allclose(r.q.sum(0).numpy() / 5, np.full(4, 0.25), atol=1e-6)
    scores = tt.sinkhorn(-E[0], 0.5, energy_sign=-1)
    torch.testing.assert_close(scores.q, r.q, rtol=0, atol=0)


@pytest.mark.parametrize("T", [0.3, "tensor"])
def test_the_gibbs_family_with_potentials_against_numpy(T):
    g = torch.Generator().manual_seed(5)
    E = torch.randn(3, 4, 6, dtype=torch.float64, generator=g) * 2
    mu = torch.randn(6, dtype=torch.float64, generator=g)
    Tv = torch.tensor(0.3, dtype=torch.float64) if T == "tensor" else T
    log_z, p, S = numpy_gibbs(E.numpy(), 0.3, mu.numpy())
    np.testing.assert_allclose(tt.log_partition(E, Tv, mu).numpy(), log_z, rtol=1e-13)
    np.testing.assert_allclose(tt.gibbs(E, Tv, mu).numpy(), p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(tt.gibbs_entropy(E, Tv).numpy(), numpy_gibbs(E.numpy(), 0.3)[2], rtol=1e-12, atol=1e-13)
    # float32 potentials with float64 energies: computed in float64
    np.testing.assert_allclose(tt.gibbs(E, Tv, mu.float()).numpy(), numpy_gibbs(E.numpy(), 0.3, mu.float().numpy())[1],
                               rtol=1e-12, atol=1e-300)


def test_mixed_dtypes_of_cross_entropy_compute_in_the_wider_one():
    g = torch.Generator().manual_seed(6)
    E = torch.randn(5, 7, dtype=torch.float64, generator=g)
    q = torch.rand(5, 7, dtype=torch.float64, generator=g)  # unnormalised labels
    _, p, _ = numpy_gibbs(E.numpy(), 0.7)
    for qq, EE, dtype in ((q.float(), E, torch.float64), (q, E.float(), torch.float64),
                          (q.half(), E.float(), torch.float32)):
        L = tt.cross_entropy(qq, EE, 0.7)
        assert L.dtype == dtype
        _, pp, _ = numpy_gibbs(EE.double().numpy(), 0.7)
        ref = -(qq.double().numpy() * np.log(pp)).sum(-1)
        np.testing.assert_allclose(L.double().numpy(), ref, rtol=1e-13 if dtype == torch.float64 else 1e-5)


# ----------------------------------------------------------------------------- gradients
def test_gradients_against_numpy_formulas_with_tensor_temperature_and_potentials():
    g = torch.Generator().manual_seed(7)
    E = torch.randn(2, 3, 5, dtype=torch.float64, generator=g).requires_grad_()
    mu = torch.randn(5, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(2, 3, dtype=torch.float64, generator=g)
    T = torch.tensor(0.6, dtype=torch.float64)
    log_z, p, S = numpy_gibbs(E.detach().numpy(), 0.6, mu.detach().numpy())
    wn = w.numpy()[..., None]
    # log Z: dE = -w p / T, dmu = sum w p / T
    gE, gmu = torch.autograd.grad((tt.log_partition(E, T, mu) * w).sum(), (E, mu))
    np.testing.assert_allclose(gE.numpy(), -wn * p / 0.6, rtol=1e-12)
    np.testing.assert_allclose(gmu.numpy(), (wn * p).sum((0, 1)) / 0.6, rtol=1e-12)
    # gibbs against a weight V on p: dE = -p (V - sum V p) / T, dmu = -dE summed over rows
    V = torch.randn(2, 3, 5, dtype=torch.float64, generator=g)
    gE, gmu = torch.autograd.grad((tt.gibbs(E, T, mu) * V).sum(), (E, mu))
    centred = p * (V.numpy() - (V.numpy() * p).sum(-1, keepdims=True))
    np.testing.assert_allclose(gE.numpy(), -centred / 0.6, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(gmu.numpy(), centred.sum((0, 1)) / 0.6, rtol=1e-11, atol=1e-15)
    # entropy: dS/dE = p (log p + S) / T
    _, p0, S0 = numpy_gibbs(E.detach().numpy(), 0.6)
    (gE,) = torch.autograd.grad((tt.gibbs_entropy(E, T) * w).sum(), (E,))
    np.testing.assert_allclose(gE.numpy(), wn * p0 * (np.log(p0) + S0[..., None]) / 0.6, rtol=1e-11, atol=1e-15)
    # cross-entropy of unnormalised q: dE = (q - p sum q) / T, dq = E / T + log Z
    q = torch.rand(2, 3, 5, dtype=torch.float64, generator=g).requires_grad_()
    gq, gE = torch.autograd.grad((tt.cross_entropy(q, E, T) * w).sum(), (q, E))
    qn = q.detach().numpy()
    log_z0 = numpy_gibbs(E.detach().numpy(), 0.6)[0]
    np.testing.assert_allclose(gE.numpy(), wn * (qn - p0 * qn.sum(-1, keepdims=True)) / 0.6, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(gq.numpy(), wn * (E.detach().numpy() / 0.6 + log_z0[..., None]), rtol=1e-12)


def test_gradients_keep_the_dtype_of_each_input():
    g = torch.Generator().manual_seed(8)
    E = torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_()
    mu = torch.zeros(3, dtype=torch.float32, requires_grad=True)
    q = torch.softmax(torch.randn(4, 3, generator=g), -1).requires_grad_()  # float32
    for op in (tt.log_partition, tt.gibbs):
        gE, gmu = torch.autograd.grad(op(E, 0.5, mu).sum() if op is tt.log_partition else op(E, 0.5, mu)[:, 0].sum(),
                                      (E, mu))
        assert gE.dtype == torch.float64 and gmu.dtype == torch.float32
    gq, gE = torch.autograd.grad(tt.cross_entropy(q, E, 0.5).sum(), (q, E))
    assert gq.dtype == torch.float32 and gE.dtype == torch.float64
    _, p, _ = numpy_gibbs(E.detach().numpy(), 0.5)
    np.testing.assert_allclose(gq.numpy(), -np.log(p), rtol=1e-6)


def test_the_cross_entropy_op_without_its_gradient():
    E = E43.clone().requires_grad_()
    q = torch.softmax(E43, -1)
    loss, grad, log_z = torch.ops.thermossl.cross_entropy(q, E, 0.5, None, False)
    assert grad.shape == (0, 3)
    assert loss.requires_grad and not grad.requires_grad and not log_z.requires_grad
    np.testing.assert_allclose(log_z.detach().numpy(), numpy_gibbs(E43.numpy(), 0.5)[0], rtol=1e-13)
    raises_exactly(RuntimeError, "thermossl cross_entropy was called without its gradient; call it with grad enabled",
                   loss.sum().backward)
    # the gradient in q alone needs no fused gradient
    qg = q.clone().requires_grad_()
    loss, grad, log_z = torch.ops.thermossl.cross_entropy(qg, E43, 0.5, None, False)
    (gq,) = torch.autograd.grad(loss.sum(), (qg,))
    np.testing.assert_allclose(gq.numpy(), -np.log(numpy_gibbs(E43.numpy(), 0.5)[1]), rtol=1e-13)
    # with it: the fused gradient is an output but not differentiable
    loss, grad, log_z = torch.ops.thermossl.cross_entropy(q, E, 0.5, None, True)
    assert grad.shape == (4, 3) and not grad.requires_grad and not log_z.requires_grad


def test_second_derivatives_are_refused_with_the_message():
    E = E43.clone().requires_grad_()
    q = torch.softmax(E43, -1)
    for y in (tt.log_partition(E, 0.5).sum(), tt.gibbs(E, 0.5)[:, 0].sum(), tt.gibbs_entropy(E, 0.5).sum(),
              tt.cross_entropy(q, E, 0.5).sum(), tt.logsumexp(E, 0).sum(), tt.softmax(E)[:, 0].sum(),
              tt.log_softmax(E)[:, 0].sum()):
        raises_exactly(RuntimeError, "thermossl.torch ops support first derivatives only (create_graph=True is not supported)",
                       torch.autograd.grad, y, E, create_graph=True)


# ----------------------------------------------------------------------------- the torch-style reductions
def test_every_dim_and_dtype_argument_against_torch():
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    for dim in (0, 1, 2, -1, -2, -3):
        torch.testing.assert_close(tt.logsumexp(x, dim), torch.logsumexp(x, dim), rtol=1e-14, atol=0)
        torch.testing.assert_close(tt.softmax(x, dim), torch.softmax(x, dim), rtol=1e-14, atol=0)
        torch.testing.assert_close(tt.log_softmax(x, dim), torch.log_softmax(x, dim), rtol=1e-14, atol=0)
    for dims in ((0, 2), [-1, 0], (-3, -2, -1), (1,)):
        torch.testing.assert_close(tt.logsumexp(x, dims), torch.logsumexp(x, dims), rtol=1e-14, atol=0)
        torch.testing.assert_close(tt.logsumexp(x, dims, keepdim=True), torch.logsumexp(x, dims, keepdim=True),
                                   rtol=1e-14, atol=0)
    x32 = x.float()
    for fn, ref in ((tt.softmax, torch.softmax), (tt.log_softmax, torch.log_softmax)):
        out = fn(x32, 1, dtype=torch.float64)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, ref(x32, 1, dtype=torch.float64), rtol=1e-14, atol=0)
    # 0-d input: one element on axis 0 (or -1)
    s = torch.tensor(0.7, dtype=torch.float64)
    for dim in (0, -1):
        assert tt.logsumexp(s, dim).shape == () and float(tt.logsumexp(s, dim)) == pytest.approx(0.7, rel=1e-15)
        assert tt.softmax(s, dim).shape == () and float(tt.softmax(s, dim)) == 1.0
        assert tt.log_softmax(s, dim).shape == () and float(tt.log_softmax(s, dim)) == 0.0
    # integers compute in the default dtype
    ints = torch.arange(6).reshape(2, 3)
    torch.testing.assert_close(tt.logsumexp(ints, 1), torch.logsumexp(ints.float(), 1))
    assert tt.softmax(ints, 0).dtype == torch.get_default_dtype()


def test_float_types_without_a_kernel_are_refused_by_name():
    x = torch.zeros(2, 3).to(torch.float8_e4m3fn)
    raises_exactly(TypeError, "input must be float16, bfloat16, float32 or float64, got torch.float8_e4m3fn",
                   tt.logsumexp, x)


# ----------------------------------------------------------------------------- the CUDA route, on the CPU
class OnCuda(torch.Tensor):
    """A CPU tensor that says it is a CUDA tensor (as in test_mutation_kills_torch_kernels_device)."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def is_cuda(self):
        return True


def on_cuda(t):
    return torch.Tensor._make_subclass(OnCuda, t)


def test_cuda_half_input_is_converted_to_float32_and_other_input_is_read_as_it_is():
    from thermossl.torch import ops
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.arange(6.0).reshape(2, 3).to(dtype)
        assert ops._row_input(x) is x  # the CPU kernels read half input themselves
        converted = ops._row_input(on_cuda(x))
        assert converted.dtype == torch.float32 and torch.equal(converted, x.float())
    for dtype in (torch.float32, torch.float64):
        x = on_cuda(torch.arange(6.0, dtype=dtype).reshape(2, 3))
        assert ops._row_input(x) is x


def test_cuda_rows_are_checked_after_one_synchronisation():
    from thermossl.torch import ops
    assert ops._check_rows(on_cuda(torch.tensor([0.5, -3.0])), "E") is None
    with pytest.raises(ValueError) as nan_row:
        ops._check_rows(on_cuda(torch.tensor([0.5, math.nan, 1.0])), "teacher_output")
    with pytest.raises(ValueError) as host:
        ops._check_rows(torch.tensor([0.5, math.nan, 1.0]), "teacher_output")
    assert str(nan_row.value) == str(host.value) and "teacher_output" in str(nan_row.value)
    assert "row 1" in str(nan_row.value)


def test_sinkhorn_vectors_that_require_grad_give_results_without_a_graph():
    g = torch.Generator().manual_seed(10)
    w = torch.full((4,), 0.25, dtype=torch.float64, requires_grad=True)
    c = torch.full((3,), 1 / 3, dtype=torch.float64, requires_grad=True)
    mu0 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    E = torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_()
    r = tt.sinkhorn(E, 0.5, n_iter=5, w=w, c=c, mu0=mu0)
    ref = tt.sinkhorn(E.detach(), 0.5, n_iter=5, w=w.detach(), c=c.detach(), mu0=mu0.detach())
    for field in r._fields:
        assert not getattr(r, field).requires_grad, field
        torch.testing.assert_close(getattr(r, field), getattr(ref, field), rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- round 7 kills
@pytest.mark.parametrize("T,shown", [(0.0, "0.0"), (-1.0, "-1.0"), (math.inf, "inf"), (math.nan, "nan")])
@pytest.mark.parametrize("op", ["log_partition", "gibbs", "gibbs_entropy", "cross_entropy", "sinkhorn"])
def test_number_T_is_refused_before_dispatch(op, T, shown):
    """A temperature given as a number is checked before the op is dispatched, so tensors without
    data (meta here; fake tensors under torch.compile) get the error a CPU tensor gets."""
    E = torch.zeros(4, 3, device="meta")
    fn = getattr(tt, op)
    args = (torch.zeros(4, 3, device="meta"), E, T) if op == "cross_entropy" else (E, T)
    raises_exactly(ValueError, f"T must be finite and > 0, got {shown}", fn, *args)
