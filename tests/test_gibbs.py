"""Gibbs-state kernels (THEORY.md §2) against numpy/scipy references, finite differences and the
identities G1-G4."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from helpers import EPS32, EPS64, LAYOUTS, LOG_Z_BOUND32, backend, with_layout  # noqa: F401 (backend: a fixture)

inf = np.inf


# ----------------------------------------------------------------------------- references
# Independent float64 references written with numpy/scipy only.
def ref_log_z(E, T, mu=None):
    x = -np.asarray(E, np.float64) / T
    if mu is not None:
        x = x + np.asarray(mu, np.float64) / T
    return sp.logsumexp(x, axis=1)


def ref_p(E, T):
    return sp.softmax(-np.asarray(E, np.float64) / T, axis=1)


def xlogy0(p, v):
    """p * v with 0 where p == 0 (0 log 0 = 0, 0 * inf = 0)."""
    return np.where(p > 0, p * np.where(p > 0, v, 0.0), 0.0)


def ref_entropy(p):
    return -xlogy0(p, np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


def ref_cross_entropy(q, E, T):
    log_p = sp.log_softmax(-np.asarray(E, np.float64) / T, axis=1)
    return -xlogy0(np.asarray(q, np.float64), log_p).sum(axis=1)


def random_energies(rng, n, k, scale=3.0, forbidden=0.0, dtype=np.float64):
    E = rng.normal(size=(n, k)) * scale
    if forbidden:
        mask = rng.random((n, k)) < forbidden
        mask[np.arange(n), rng.integers(0, k, n)] = False  # keep one allowed state per row
        E[mask] = inf
    return E.astype(dtype)


def random_labels(rng, n, k, sharp=1.0):
    return sp.softmax(rng.normal(size=(n, k)) * sharp, axis=1)


# ----------------------------------------------------------------------------- values
@st.composite
def energy_cases(draw):
    n = draw(st.integers(1, 9))
    k = draw(st.integers(1, 9))
    T = draw(st.floats(1e-3, 1e3))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 1e2, 1e4]))  # |E|/T up to ~3e4
    seed = draw(st.integers(0, 2**32 - 1))
    forbidden = draw(st.sampled_from([0.0, 0.3]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layout = draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(seed)
    E = random_energies(rng, n, k, scale=magnitude * T, forbidden=forbidden, dtype=dtype)
    return E, T, layout


def close(ours, ref, dtype, scale=1.0):
    """float64: ~1e-13 relative; float32: the claimed accuracy, relative to max(|ref|, scale)."""
    eps = EPS32 if np.dtype(dtype) == np.float32 else EPS64
    bound = (16 if np.dtype(dtype) == np.float32 else 256) * eps * np.maximum(np.abs(ref), scale)
    err = np.abs(np.asarray(ours, np.float64) - ref)
    assert np.all(err <= bound), f"max error {np.max(err - bound)} above bound"


@given(energy_cases())
def test_log_partition_matches_reference(backend, case):
    E, T, layout = case
    E_view = with_layout(E, layout)
    ours = backend.host(thermossl.log_partition(backend(E_view), T))
    assert ours.dtype == E.dtype and ours.shape == (E.shape[0],)
    ref = ref_log_z(E, T)
    close(ours, ref, E.dtype, scale=np.max(np.abs(E[np.isfinite(E)]), initial=0) / T * 1e-3 + 1.0)


@given(energy_cases())
def test_gibbs_state_matches_reference(backend, case):
    E, T, layout = case
    p = backend.host(thermossl.gibbs(backend(with_layout(E, layout)), T))
    assert p.dtype == E.dtype and p.shape == E.shape and p.flags.c_contiguous
    ref = ref_p(E, T)
    atol = 8 * EPS32 if E.dtype == np.float32 else 64 * EPS64
    assert_allclose(p, ref, rtol=0, atol=atol)
    assert_array_equal(p[np.isinf(E)], 0.0)  # forbidden states: exactly zero probability
    assert_allclose(p.sum(axis=1), 1.0, rtol=atol * E.shape[1])


@given(energy_cases())
def test_entropy_matches_reference(backend, case):
    E, T, layout = case
    ours = backend.host(thermossl.gibbs_entropy(backend(with_layout(E, layout)), T))
    assert ours.dtype == E.dtype
    close(ours, ref_entropy(ref_p(E, T)), E.dtype)
    assert np.all(ours >= -16 * EPS32) and np.all(ours <= np.log(E.shape[1]) * (1 + 1e-5) + 1e-6)


@given(energy_cases(), st.booleans())
def test_cross_entropy_and_gradient_match_reference(backend, case, sharp_labels):
    E, T, layout = case
    rng = np.random.default_rng(E.shape[0] * 31 + E.shape[1])
    q = random_labels(rng, *E.shape, sharp=5.0 if sharp_labels else 1.0)
    q[np.isinf(E)] = 0.0  # labels only on allowed states (else L = inf: tested below)
    q /= q.sum(axis=1, keepdims=True)
    q = q.astype(E.dtype)
    loss, grad = thermossl.cross_entropy(backend(with_layout(q, layout)), backend(with_layout(E, layout)), T, grad=True)
    loss, grad = backend.host(loss), backend.host(grad)
    loss_only = backend.host(thermossl.cross_entropy(backend(q), backend(E), T))
    assert_array_equal(loss, loss_only)
    ref = ref_cross_entropy(q, E, T)
    close(loss, ref, E.dtype, scale=1.0)
    p = ref_p(E, T)
    ref_grad = (q.astype(np.float64) - p * q.astype(np.float64).sum(axis=1, keepdims=True)) / T
    atol = (16 * EPS32 if E.dtype == np.float32 else 256 * EPS64) / T
    assert_allclose(grad, ref_grad, rtol=0, atol=atol)


@given(energy_cases())
def test_entropy_grad_matches_reference(backend, case):
    E, T, layout = case
    ours = backend.host(thermossl.entropy_grad(backend(with_layout(E, layout)), T))
    p = ref_p(E, T)
    s = ref_entropy(p)[:, None]
    log_p = np.log(np.where(p > 0, p, 1.0))
    ref = np.where(p > 0, p * (log_p + s), 0.0) / T
    scale = np.max(np.abs(E[np.isfinite(E)]), initial=1.0) / T + np.log(E.shape[1]) + 1.0
    atol = (16 * EPS32 if E.dtype == np.float32 else 256 * EPS64) * scale / T
    assert_allclose(ours, ref, rtol=0, atol=atol)
    assert_array_equal(ours[np.isinf(E)], 0.0)


def test_chemical_potentials_and_column_partition():
    rng = np.random.default_rng(7)
    E = random_energies(rng, 300, 40, forbidden=0.1)
    mu = rng.normal(size=40)
    f = rng.normal(size=300)
    T = 0.3
    assert_allclose(thermossl.log_partition(E, T, mu=mu), ref_log_z(E, T, mu), rtol=64 * EPS64)
    assert_allclose(thermossl.gibbs(E, T, mu=mu), sp.softmax((mu - E) / T, axis=1), atol=64 * EPS64)
    col_ref = sp.logsumexp((f[:, None] - E) / T, axis=0)
    for layout in LAYOUTS:
        assert_allclose(thermossl.column_log_partition(with_layout(E, layout), T, f=f), col_ref, rtol=64 * EPS64)
    assert_allclose(thermossl.column_log_partition(E, T), sp.logsumexp(-E / T, axis=0), rtol=64 * EPS64)
    # Many rows: several blocks and threads, merged; a column that is forbidden everywhere.
    big = random_energies(rng, 5000, 17, scale=30.0)
    big[:, 3] = inf
    out = thermossl.column_log_partition(big.astype(np.float32), 0.5)
    ref = sp.logsumexp(-big / 0.5, axis=0)
    assert out[3] == -inf
    assert_allclose(out, ref, rtol=4 * EPS32)


# ----------------------------------------------------------------------------- identities
def books(E, q, T, w):
    """Weighted state functions of THEORY.md §2 from the kernels (sums over rows only)."""
    log_z = thermossl.log_partition(E, T)
    p = thermossl.gibbs(E, T)
    F = -T * np.dot(w, log_z)
    U_p = np.dot(w, xlogy0(p, E).sum(axis=1))
    U_q = np.dot(w, xlogy0(q, E).sum(axis=1))
    S_p = np.dot(w, thermossl.gibbs_entropy(E, T))
    S_q = np.dot(w, ref_entropy(q))
    L = np.dot(w, thermossl.cross_entropy(q, E, T))
    D = np.dot(w, xlogy0(q, np.log(np.where(q > 0, q, 1.0)) - np.log(np.where(p > 0, p, 1.0))).sum(axis=1))
    return F, U_p, U_q, S_p, S_q, L, D


@pytest.mark.parametrize("T", [0.05, 0.1, 1.0, 7.0])
@pytest.mark.parametrize("forbidden", [0.0, 0.2])
def test_identities_G1_to_G4(T, forbidden):
    rng = np.random.default_rng(int(T * 100) + int(forbidden * 10))
    n, k = 257, 33
    E = random_energies(rng, n, k, scale=2.0, forbidden=forbidden)
    q = random_labels(rng, n, k, sharp=3.0)
    q[np.isinf(E)] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    w = rng.random(n)
    w /= w.sum()
    F, U_p, U_q, S_p, S_q, L, D = books(E, q, T, w)
    scale = abs(U_q) + abs(F) + T * (S_p + S_q) + 1.0
    assert F == pytest.approx(U_p - T * S_p, abs=1e-13 * scale)  # (G1)
    assert L == pytest.approx(S_q + D, abs=1e-13 * scale / T)  # (G2)
    assert (U_q - T * S_q) - F == pytest.approx(T * D, abs=1e-13 * scale)  # (G3)
    assert D >= 0
    assert L == pytest.approx((U_q - F) / T, abs=1e-13 * scale / T)  # (G4)


def test_identities_hold_in_float32_to_stated_accuracy():
    rng = np.random.default_rng(11)
    E = random_energies(rng, 512, 3000, scale=1.0, dtype=np.float32)
    q = random_labels(rng, 512, 3000, sharp=2.0).astype(np.float32)
    T = 0.1
    w = np.full(512, 1 / 512)
    F, U_p, U_q, S_p, S_q, L, D = books(E, q, T, w)
    assert F == pytest.approx(U_p - T * S_p, rel=64 * EPS32)
    assert L == pytest.approx((U_q - F) / T, rel=64 * EPS32)


# ----------------------------------------------------------------------------- gradients
def test_gradients_against_finite_differences():
    rng = np.random.default_rng(5)
    n, k, T = 4, 6, 0.7
    E = random_energies(rng, n, k, scale=1.0)
    E[1, 2] = inf
    q = random_labels(rng, n, k)
    q[1, 2] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    h = 1e-6
    _, grad_L = thermossl.cross_entropy(q, E, T, grad=True)
    grad_S = thermossl.entropy_grad(E, T)
    p = thermossl.gibbs(E, T)
    for i in range(n):
        for y in range(k):
            if np.isinf(E[i, y]):
                continue
            Ep, Em = E.copy(), E.copy()
            Ep[i, y] += h
            Em[i, y] -= h
            dL = (thermossl.cross_entropy(q, Ep, T) - thermossl.cross_entropy(q, Em, T))[i] / (2 * h)
            dS = (thermossl.gibbs_entropy(Ep, T) - thermossl.gibbs_entropy(Em, T))[i] / (2 * h)
            dF = -T * (thermossl.log_partition(Ep, T) - thermossl.log_partition(Em, T))[i] / (2 * h)
            assert grad_L[i, y] == pytest.approx(dL, abs=1e-8)
            assert grad_S[i, y] == pytest.approx(dS, abs=1e-8)
            assert p[i, y] == pytest.approx(dF, abs=1e-8)  # dF/dE = p (per row, before w)


def test_unnormalised_labels_gradient_is_exact():
    rng = np.random.default_rng(6)
    E = random_energies(rng, 3, 5)
    q = rng.random((3, 5)) * 3  # not row-stochastic
    _, grad = thermossl.cross_entropy(q, E, 2.0, grad=True)
    h = 1e-6
    for y in range(5):
        Ep, Em = E.copy(), E.copy()
        Ep[:, y] += h
        Em[:, y] -= h
        fd = (thermossl.cross_entropy(q, Ep, 2.0) - thermossl.cross_entropy(q, Em, 2.0)) / (2 * h)
        assert_allclose(grad[:, y], fd, atol=1e-8)


# ----------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_ratios_are_stable(backend, dtype):
    # |E|/T up to 1e4 (and beyond): no overflow, no nan, probabilities still sum to 1.
    rng = np.random.default_rng(8)
    E = (rng.uniform(-1, 1, size=(64, 50)) * 1e3).astype(dtype)
    T = 0.1 if dtype == np.float64 else 0.1
    p = backend.host(thermossl.gibbs(backend(E), T))
    assert np.all(np.isfinite(p))
    assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-13)
    log_z = backend.host(thermossl.log_partition(backend(E), T))
    assert_allclose(log_z, ref_log_z(E, T), rtol=4 * (EPS32 if dtype == np.float32 else EPS64))
    assert np.all(np.isfinite(backend.host(thermossl.gibbs_entropy(backend(E), T))))
    loss, grad = thermossl.cross_entropy(backend(p), backend(E), T, grad=True)
    assert np.all(np.isfinite(backend.host(loss))) and np.all(np.isfinite(backend.host(grad)))
    E64 = rng.uniform(-1, 1, size=(8, 8)) * 1e300  # x = -E/T ~ 1e303: still finite
    assert np.all(np.isfinite(backend.host(thermossl.log_partition(backend(E64), 1e-3))))


def test_forbidden_label_gives_infinite_loss(backend):
    E = np.array([[0.0, inf], [1.0, 2.0]])
    q = np.array([[0.5, 0.5], [0.5, 0.5]])
    loss, grad = thermossl.cross_entropy(backend(q), backend(E), 1.0, grad=True)
    loss = backend.host(loss)
    assert loss[0] == inf and np.isfinite(loss[1])
    q = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert np.isfinite(backend.host(thermossl.cross_entropy(backend(q), backend(E), 1.0))).all()


def test_single_state_and_single_row():
    E = np.array([[2.5]])
    assert thermossl.log_partition(E, 0.5)[0] == pytest.approx(-5.0)
    assert thermossl.gibbs(E, 0.5)[0, 0] == 1.0
    assert thermossl.gibbs_entropy(E, 0.5)[0] == 0.0
    assert thermossl.entropy_grad(E, 0.5)[0, 0] == 0.0
    loss, grad = thermossl.cross_entropy(np.ones((1, 1)), E, 0.5, grad=True)
    assert loss[0] == pytest.approx(0.0, abs=1e-15) and grad[0, 0] == pytest.approx(0.0, abs=1e-15)


def test_zero_rows():
    E = np.zeros((0, 4), np.float32)
    assert thermossl.log_partition(E).shape == (0,)
    assert thermossl.gibbs(E).shape == (0, 4) and thermossl.gibbs(E).dtype == np.float32
    assert thermossl.gibbs_entropy(E).shape == (0,)
    assert thermossl.cross_entropy(E, E, grad=True)[1].shape == (0, 4)
    assert thermossl.entropy_grad(E).shape == (0, 4)
    assert thermossl.column_log_partition(E).tolist() == [-inf] * 4


def test_integer_energies_compute_in_float64():
    E = np.array([[1, 2, 3], [0, 0, 5]])
    out = thermossl.log_partition(E, 2)
    assert out.dtype == np.float64
    assert_allclose(out, ref_log_z(E, 2.0), rtol=4 * EPS64)


# ----------------------------------------------------------------------------- float32 claim
@pytest.mark.parametrize("T", [1.0, 0.1])
@pytest.mark.parametrize("scale", [1.0, 10.0, 1e2, 1e3, 1e4])
def test_float32_accuracy_claim(scale, T):
    """The accuracy stated in the README, against float64 on the same float32 inputs:
    log Z: 2 eps32 relative; p: 4 eps32 absolute; S: 8 eps32 and L: 4 eps32 relative to
    max(|value|, 1). Then the rows shifted so that log Z lands in [1, 1.15] (checked for log Z,
    the one quantity a row shift moves), where max(|log Z|, 1) = 1 while the argument's
    roundings stay: the hardest place for the log Z claim."""
    rng = np.random.default_rng(int(scale))
    E32 = (rng.normal(size=(1000, 3000)) * scale).astype(np.float32)
    E64 = E32.astype(np.float64)
    q32 = random_labels(rng, 1000, 3000).astype(np.float32)
    lz = ref_log_z(E64, T)
    assert np.all(np.abs(thermossl.log_partition(E32, T) - lz) <= LOG_Z_BOUND32 * np.maximum(np.abs(lz), 1))
    target = np.random.default_rng(int(scale) + 7).uniform(1.0, 1.15, size=E64.shape[0])
    S32 = (E64 + T * (ref_log_z(E64, T) - target)[:, None]).astype(np.float32)
    lz_s = ref_log_z(S32.astype(np.float64), T)
    assert np.all(np.abs(thermossl.log_partition(S32, T) - lz_s) <= LOG_Z_BOUND32 * np.maximum(np.abs(lz_s), 1))
    p = ref_p(E64, T)
    assert np.max(np.abs(thermossl.gibbs(E32, T) - p)) <= 4 * EPS32
    s = ref_entropy(p)
    assert np.all(np.abs(thermossl.gibbs_entropy(E32, T) - s) <= 8 * EPS32 * np.maximum(s, 1))
    L = ref_cross_entropy(q32, E64, T)
    assert np.all(np.abs(thermossl.cross_entropy(q32, E32, T) - L) <= 4 * EPS32 * np.maximum(L, 1))


# ----------------------------------------------------------------------------- every backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 7, 300, 3000, 5000])  # 5000 > 4096: the kernels' uncached path
def test_long_rows_and_potentials_match_reference(backend, dtype, k):
    rng = np.random.default_rng(k)
    E = random_energies(rng, 65, k, scale=3.0, forbidden=0.1 if k > 1 else 0.0, dtype=dtype)
    T = 0.5
    mu = np.linspace(-1, 1, k)
    x = backend(E)
    close(backend.host(thermossl.log_partition(x, T, mu=mu)), ref_log_z(E, T, mu), dtype)
    p = backend.host(thermossl.gibbs(x, T, mu=mu))
    atol = 8 * EPS32 if dtype == np.float32 else 64 * EPS64
    assert_allclose(p, sp.softmax((mu - np.asarray(E, np.float64)) / T, axis=1), rtol=0, atol=atol)
    close(backend.host(thermossl.gibbs_entropy(x, T)), ref_entropy(ref_p(E, T)), dtype, scale=np.log(k) + 1.0)
    q = random_labels(rng, *E.shape).astype(dtype)
    q[np.isinf(E)] = 0.0
    loss = backend.host(thermossl.cross_entropy(backend(q), x, T))
    close(loss, ref_cross_entropy(q, E, T), dtype, scale=np.max(np.abs(E[np.isfinite(E)])) / T + np.log(k))


def test_row_errors_name_the_row(backend):
    E = random_energies(np.random.default_rng(0), 6, 5)
    for bad, message in ((np.nan, r"E contains NaN \(row 3\)"), (-inf, "E contains -inf .* row 3")):
        b = E.copy()
        b[3, 1] = bad
        with pytest.raises(ValueError, match=message):
            thermossl.log_partition(backend(b), 1.0)
        with pytest.raises(ValueError, match=message):
            thermossl.entropy_grad(backend(b), 1.0)
    b = E.copy()
    b[2, :] = inf
    with pytest.raises(ValueError, match="every state of row 2 is forbidden"):
        thermossl.gibbs(backend(b), 1.0)
    with pytest.raises(ValueError, match=r"q contains NaN or inf \(row 4\)"):
        q = np.full(E.shape, 0.2)
        q[4, 0] = np.nan
        thermossl.cross_entropy(backend(q), backend(E), 1.0)
