"""thermossl.thermo: state functions against numpy references, the identities G1-G4 and
GGE1-GGE2, and State."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from thermossl import thermo
from helpers import EPS32, LAYOUTS, backend, with_layout  # noqa: F401 (backend: a fixture)
from helpers import stand_in_device  # noqa: F401 (a fixture)

inf = np.inf


def xlogy0(a, b):
    return np.where(a > 0, a * np.where(a > 0, b, 0.0), 0.0)


def reference(q, E, T, w):
    """Every state function in float64 numpy/scipy."""
    q = np.asarray(q, np.float64)
    E = np.asarray(E, np.float64)
    log_z = sp.logsumexp(-E / T, axis=1)
    p = sp.softmax(-E / T, axis=1)
    log_p = sp.log_softmax(-E / T, axis=1)
    log_q = np.log(np.where(q > 0, q, 1.0))
    N = w @ q
    return {
        "U": w @ xlogy0(q, E).sum(1),
        "U_p": w @ xlogy0(p, E).sum(1),
        "F": -T * (w @ log_z),
        "S": -(w @ xlogy0(q, log_q).sum(1)),
        "S_p": -(w @ xlogy0(p, np.log(np.where(p > 0, p, 1.0))).sum(1)),
        "D": w @ xlogy0(q, log_q - log_p).sum(1),
        "L": -(w @ xlogy0(q, log_p).sum(1)),
        "N": N,
        "H_N": -np.sum(xlogy0(N, np.log(np.where(N > 0, N, 1.0)))),
    }


def random_case(rng, n=120, k=15, forbidden=0.1, dtype=np.float64):
    E = rng.normal(size=(n, k)) * 2
    mask = rng.random((n, k)) < forbidden
    mask[np.arange(n), rng.integers(0, k, n)] = False
    E[mask] = inf
    q = sp.softmax(rng.normal(size=(n, k)) * 3, axis=1)
    q[mask] = 0.0
    q[0, :] = 0.0  # a one-hot row: 0 log 0 terms
    q[0, np.flatnonzero(~mask[0])[0]] = 1.0
    q /= q.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    return E.astype(dtype), q.astype(dtype), w


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("T", [0.05, 1.0, 10.0])
def test_functions_match_reference(backend, T, layout):
    rng = np.random.default_rng(int(T * 100))
    E, q, w = random_case(rng)
    ref = reference(q, E, T, w)
    Ev, qv = backend(with_layout(E, layout)), backend(with_layout(q, layout))
    assert thermo.energy(qv, Ev, w) == pytest.approx(ref["U"], rel=1e-13, abs=1e-13)
    assert thermo.free_energy(Ev, T, w) == pytest.approx(ref["F"], rel=1e-13)
    assert thermo.relative_entropy(qv, Ev, T, w) == pytest.approx(ref["D"], rel=1e-12)
    assert thermo.loss(qv, Ev, T, w) == pytest.approx(ref["L"], rel=1e-13)
    state = thermo.State(Ev, T, qv, w)
    for name in ("U", "U_p", "F", "S", "S_p", "D", "L", "H_N"):
        assert getattr(state, name) == pytest.approx(ref[name], rel=1e-12, abs=1e-13), name
    assert_allclose(state.N, ref["N"], rtol=1e-13)
    assert state.I == pytest.approx(ref["H_N"] - ref["S"], rel=1e-12)
    assert state.F_T == pytest.approx(ref["U"] - T * ref["S"], rel=1e-12)
    if backend.device:
        return  # the label-only functions (entropy, charges, information) have no CUDA kernel
    assert thermo.entropy(qv, w) == pytest.approx(ref["S"], rel=1e-13)
    assert_allclose(thermo.charges(qv, w), ref["N"], rtol=1e-13)
    assert thermo.information(qv, w) == pytest.approx(ref["H_N"] - ref["S"], rel=1e-12)
    # I as defined: sum w q log(q / N)
    direct = w @ xlogy0(q, np.log(np.where(q > 0, q, 1.0)) - np.log(ref["N"])).sum(1)
    assert thermo.information(q, w) == pytest.approx(direct, rel=1e-12)


def test_default_weights_are_uniform():
    rng = np.random.default_rng(1)
    E, q, _ = random_case(rng, forbidden=0.0)
    n = E.shape[0]
    assert thermo.loss(q, E, 0.3) == pytest.approx(thermo.loss(q, E, 0.3, np.full(n, 1 / n)), rel=1e-14)
    assert_allclose(thermo.charges(q), q.mean(axis=0), rtol=1e-13)


@pytest.mark.parametrize("seed", range(5))
def test_identities_G1_to_G4_float64(backend, seed):
    rng = np.random.default_rng(100 + seed)
    T = float(rng.uniform(0.02, 5.0))
    E, q, w = random_case(rng, n=200, k=31)
    s = thermo.State(backend(E), T, backend(q), w)
    scale = abs(s.U) + abs(s.F) + T * (s.S + s.S_p) + 1.0
    assert s.F - (s.U_p - T * s.S_p) == pytest.approx(0.0, abs=1e-13 * scale)  # G1
    assert s.L - (s.S + s.D) == pytest.approx(0.0, abs=1e-13 * scale / T)  # G2
    assert (s.F_T - s.F) - T * s.D == pytest.approx(0.0, abs=1e-13 * scale)  # G3
    assert s.D >= 0
    assert s.L - (s.U - s.F) / T == pytest.approx(0.0, abs=1e-13 * scale / T)  # G4


def test_gibbs_state_has_zero_relative_entropy(backend):
    rng = np.random.default_rng(2)
    E, _, w = random_case(rng)
    s = thermo.State(backend(E), 0.7, w=w)  # q = Gibbs(E, T)
    assert abs(s.D) < 1e-14
    assert s.F == pytest.approx(s.F_T, abs=1e-13)


def test_relative_entropy_keeps_accuracy_near_zero():
    # q a hair away from p: D ~ 1e-10 is recovered to ~1e-6 relative, not lost to L - S.
    rng = np.random.default_rng(3)
    E = rng.normal(size=(300, 20))
    p = thermossl.gibbs(E, 1.0)
    q = p * (1 + 1e-5 * rng.normal(size=p.shape))
    q /= q.sum(axis=1, keepdims=True)
    exact = np.mean(np.sum(q * (np.log(q) - np.log(p)), axis=1))
    assert thermo.relative_entropy(q, E, 1.0) == pytest.approx(exact, rel=1e-5)


def test_gge_identities_with_sinkhorn_potentials():
    rng = np.random.default_rng(4)
    n, k, Tl = 150, 12, 0.2
    E = rng.normal(size=(n, k))
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    res = thermossl.sinkhorn(E, Tl, w=w, n_iter=5)
    # GGE1: Phi_mu[q*] = U[q*] - mu.N[q*] - T' S[q*] = sum w f
    s = thermo.State(E, 1.0, res.q, w)
    phi_star = s.U - res.mu @ s.N - Tl * s.S
    assert phi_star == pytest.approx(w @ res.f, abs=1e-12)
    # GGE2: Phi_mu[q] - Phi_mu[q*] = T' D(q||q*) with q* = GGE(E, T', mu) = Gibbs(E - mu, T')
    for _ in range(3):
        q = sp.softmax(rng.normal(size=(n, k)) * 2, axis=1)
        sq = thermo.State(E, 1.0, q, w)
        phi = sq.U - res.mu @ sq.N - Tl * sq.S
        d = thermo.relative_entropy(q, E - res.mu, Tl, w)
        assert phi - phi_star == pytest.approx(Tl * d, abs=1e-12)
        assert d > 0


def test_float32_state_to_stated_accuracy(backend):
    rng = np.random.default_rng(5)
    E, q, w = random_case(rng, n=500, k=300, forbidden=0.0)
    s32 = thermo.State(backend(E.astype(np.float32)), 0.1, backend(q.astype(np.float32)), w)
    ref = reference(q.astype(np.float32), E.astype(np.float32), 0.1, w)
    for name in ("U", "F", "S", "S_p", "L"):
        assert getattr(s32, name) == pytest.approx(ref[name], rel=16 * EPS32, abs=16 * EPS32), name
    assert s32.D == pytest.approx(ref["D"], rel=1e-4, abs=64 * EPS32)


def test_bad_input():
    E = np.array([[0.0, 1.0], [2.0, 3.0]])
    q = np.array([[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match="rows summing to 1"):
        thermo.loss(q * 2, E, 1.0)
    with pytest.raises(ValueError, match="finite and nonnegative"):
        thermo.entropy(np.array([[1.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="q must have the shape of E"):
        thermo.energy(q[:1], E)
    with pytest.raises(ValueError, match="w must sum to 1"):
        thermo.free_energy(E, 1.0, w=np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="w must have shape"):
        thermo.charges(q, w=np.ones(3) / 3)
    with pytest.raises(ValueError, match="E contains NaN"):
        thermo.State(np.array([[np.nan, 1.0], [0.0, 0.0]]), 1.0, q)
    with pytest.raises(ValueError, match="T must be finite"):
        thermo.relative_entropy(q, E, 0.0)
    with pytest.raises(ValueError, match="every state of row 1 is forbidden"):
        thermo.State(np.array([[0.0, 1.0], [inf, inf]]), 1.0, q)
    s = thermo.State(E, 1.0, q)
    with pytest.raises(AttributeError):
        s.U = 0.0
    with pytest.raises(ValueError):
        s.N[0] = 1.0


# ----------------------------------------------------------------------------- device routing
# The device branches of ledger_rows, State and free_energy run on the CPU with the stand-in
# device backend (torch CPU tensors): results of the input's kind, equal bitwise to numpy's, and
# w, mu given as device arrays taken to the host.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_ledger_state_and_free_energy_with_device_w_and_mu(stand_in_device, dtype):
    torch = stand_in_device
    rng = np.random.default_rng(41)
    E = (2 * rng.normal(size=(30, 5))).astype(dtype)
    q = thermossl.gibbs((2 * rng.normal(size=(30, 5))).astype(dtype), 1.0)
    w = rng.uniform(0.2, 1.8, 30)
    w /= w.sum()
    mu = np.linspace(-0.3, 0.4, 5)
    T = 0.7
    ref_rows, ref_charges, _ = thermo.ledger_rows(q, E, T, w, mu=mu)
    ref_state, ref_gibbs_state = thermo.State(E, T, q, w), thermo.State(E, T, None, w)
    ref_F = thermo.free_energy(E, T, w)
    # the F of the ledger is the reference's: -T sum_i w_i log Z_i with Z_i at shift mu
    log_z = sp.logsumexp(-(E.astype(np.float64) - mu) / T, axis=1)
    assert_allclose(ref_rows["log_z"], log_z, rtol=1e-5 if dtype == np.float32 else 1e-12)
    for wrap in (lambda x: x, torch.from_numpy):  # w, mu as host arrays and as device arrays
        rows, charges, w_valid = thermo.ledger_rows(torch.from_numpy(q), torch.from_numpy(E), T, wrap(w), mu=wrap(mu))
        assert set(rows) == set(ref_rows)
        for field, ref_row in ref_rows.items():
            assert isinstance(rows[field], torch.Tensor) and rows[field].dtype == torch.float64, field
            assert_array_equal(rows[field].numpy(), ref_row)
        assert isinstance(charges, torch.Tensor)
        assert_array_equal(charges.numpy(), ref_charges)
        assert_array_equal(np.asarray(w_valid), w)
        for state, ref in ((thermo.State(torch.from_numpy(E), T, torch.from_numpy(q), wrap(w)), ref_state),
                           (thermo.State(torch.from_numpy(E), T, None, wrap(w)), ref_gibbs_state)):
            for name in ("T", "U", "U_p", "F", "F_T", "S", "S_p", "D", "L", "H_N", "I"):
                value = getattr(state, name)
                assert type(value) is float and value == getattr(ref, name), name  # host floats
            assert isinstance(state.N, np.ndarray) and not state.N.flags.writeable
            assert_array_equal(state.N, ref.N)
        F = thermo.free_energy(torch.from_numpy(E), T, wrap(w))
        assert type(F) is float and F == ref_F
    assert_allclose(ref_F, -T * np.dot(w, sp.logsumexp(-E.astype(np.float64) / T, axis=1)),
                    rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_ledger_rows_device_and_host_arguments_do_not_mix(stand_in_device):
    # q and E both decide the backend: a device array with a host array is an error, whichever
    # is on the device (not a silent copy to the host), and so is a dtype mismatch on the device.
    torch = stand_in_device
    rng = np.random.default_rng(42)
    E = rng.normal(size=(6, 3))
    q = thermossl.gibbs(rng.normal(size=(6, 3)), 1.0)
    with pytest.raises(TypeError, match="q must be a CUDA device array"):
        thermo.ledger_rows(q, torch.from_numpy(E), 1.0)
    with pytest.raises(TypeError, match="E must be a CUDA device array"):
        thermo.ledger_rows(torch.from_numpy(q), E, 1.0)
    with pytest.raises(TypeError, match="dtype float32"):
        thermo.ledger_rows(torch.from_numpy(q.astype(np.float32)), torch.from_numpy(E), 1.0)


def test_label_state_names_the_argument():
    q = np.full((2, 2), 0.5)
    assert thermo.label_state(q) is q or np.array_equal(thermo.label_state(q), q)
    assert thermo.label_state(q, (2, 2)).shape == (2, 2)
    for args, error, message in [
        ((q, (2, 3)), ValueError, "q must have the shape of E (2, 3), got (2, 2)"),
        ((q, (2, 3), "labels"), ValueError, "labels must have the shape of E (2, 3), got (2, 2)"),
        ((["a"],), TypeError, "q must be a real numeric array, got dtype <U1"),
        ((np.ones(3), None, "labels"), ValueError, "labels must be a 2-D array of shape (N, K), got ndim=1"),
    ]:
        with pytest.raises(error) as info:
            thermo.label_state(*args)
        assert str(info.value) == message


def test_ledger_argument_errors_exact():
    q, E = np.full((3, 4), 0.25), np.zeros((3, 4))
    forbidden = np.full((3, 4), np.inf)
    cases = [
        (lambda: thermo.ledger_rows(q[:, :3], E, 1.0), "q must have the shape of E (3, 4), got (3, 3)"),
        (lambda: thermo.ledger_rows(q, forbidden, 1.0),
         "E: every state of row 0 is forbidden (+inf energy); a Gibbs state needs at least one finite energy per row"),
        (lambda: thermo.ledger_rows(q.astype(np.float32), E.astype(np.float32), 1e-39),
         "T=1e-39 is too small for float32 data: 1/T overflows float32 (need T >= 2.94e-39); pass float64 data"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message
    assert np.isfinite(thermo.ledger_rows(q, E, 1e-39)[0]["log_z"]).all()  # float64 takes that T


def test_label_mass_tolerance_follows_the_label_dtype():
    # float32 labels may be off 1 by rounding of their own dtype (1e-3), float64 ones by 1e-6.
    q = np.full((3, 4), 0.25)
    q[0, 0] += 2e-5
    N = thermo.charges(q.astype(np.float32))
    assert_allclose(N, q.mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="row 0 sums to"):
        thermo.charges(q)


def test_energy_is_the_weighted_label_energy():
    rng = np.random.default_rng(43)
    E = rng.normal(size=(20, 5))
    q = thermossl.gibbs(rng.normal(size=(20, 5)), 1.0)
    w = rng.uniform(0.1, 2.0, 20)
    w /= w.sum()
    assert_allclose(thermo.energy(q, E, w), np.dot(w, (q * E).sum(axis=1)), rtol=1e-13)
    assert_allclose(thermo.energy(q, E), (q * E).sum(axis=1).mean(), rtol=1e-13)


def test_device_input_runs_the_device_kernels(stand_in_device, monkeypatch):
    # Device energies are computed by the device kernels on the caller's memory (no host copy):
    # each public function calls the backend's kernel, and gives the numpy result.
    torch = stand_in_device
    from thermossl._backends import cuda as cuda_backend

    calls = []
    stand_in = cuda_backend._cuda

    class Counting:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(stand_in, name)

    monkeypatch.setattr(cuda_backend, "_cuda", Counting())
    rng = np.random.default_rng(44)
    E = rng.normal(size=(10, 4))
    q = thermossl.gibbs(rng.normal(size=(10, 4)), 1.0)
    w = rng.uniform(0.5, 1.5, 10)
    w /= w.sum()
    t, qt = torch.from_numpy(E), torch.from_numpy(q)
    for call, reference, kernel in [
        (lambda: thermo.free_energy(t, 0.5, w), thermo.free_energy(E, 0.5, w), "row_logsumexp"),
        (lambda: thermo.energy(qt, t, w), thermo.energy(q, E, w), "ledger_rows"),
        (lambda: thermo.State(t, 0.5, None, w).F, thermo.State(E, 0.5, None, w).F, "ledger_rows"),
        (lambda: thermo.State(t, 0.5, qt, w).D, thermo.State(E, 0.5, q, w).D, "ledger_rows"),
    ]:
        calls.clear()
        assert call() == reference
        assert kernel in calls, (kernel, calls)


def test_free_energy_of_no_samples_is_an_error():
    with pytest.raises(ValueError) as info:
        thermo.free_energy(np.zeros((0, 3)), 1.0)
    assert str(info.value) == "E must have at least one sample and one state, got shape (0, 3)"
    assert thermo.free_energy(np.zeros((1, 3)), 1.0) == pytest.approx(-np.log(3), rel=1e-14)  # N = 1 is fine


def test_weighted_state_and_charges_against_numpy():
    # Absolute references (numpy), so that a weight dropped anywhere on the way shows.
    rng = np.random.default_rng(45)
    E = rng.normal(size=(25, 4))
    q = thermossl.gibbs(rng.normal(size=(25, 4)), 1.0)
    w = rng.uniform(0.05, 2.0, 25)
    w /= w.sum()
    T = 0.6
    log_z = sp.logsumexp(-E / T, axis=1)
    p = np.exp(-E / T - log_z[:, None])
    gibbs_state = thermo.State(E, T, None, w)
    assert_allclose(gibbs_state.F, -T * np.dot(w, log_z), rtol=1e-13)
    assert_allclose(gibbs_state.U, np.dot(w, (p * E).sum(axis=1)), rtol=1e-12)
    assert_allclose(gibbs_state.N, w @ p, rtol=1e-12)
    labelled = thermo.State(E, T, q, w)
    assert_allclose(labelled.U, np.dot(w, (q * E).sum(axis=1)), rtol=1e-12)
    assert_allclose(labelled.N, w @ q, rtol=1e-12)
    rows, charges, _ = thermo.ledger_rows(q, E, T, w)
    assert_allclose(charges, w @ q, rtol=1e-12)
    assert_allclose(rows["energy_q"], (q * E).sum(axis=1), rtol=1e-12)


def test_unweighted_means_of_rows_near_the_float_limit_do_not_overflow():
    # Each row is finite and so is their mean; summing the rows before dividing by N overflows.
    E = np.full((2, 3), -1.5e308)
    q = np.full((2, 3), 1.0 / 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning reaches the caller
        assert thermo.energy(q, E) == pytest.approx(-1.5e308, rel=1e-15)
        assert thermo.free_energy(E, 1.0) == pytest.approx(-1.5e308, rel=1e-15)
    E[1] = [-1.5e308, -1.0, 0.0]
    expected = np.mean((q * E).sum(axis=1) / 2.0) * 2.0  # the same mean, without the overflow
    assert thermo.energy(q, E) == pytest.approx(expected, rel=1e-15)
