"""Bad input raises a clear ValueError/TypeError naming the argument; inputs are never modified."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose, assert_array_equal

import thermossl

inf, nan = np.inf, np.nan
E_OK = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])
Q_OK = np.full((2, 3), 1 / 3)

def labels_for(E):
    """A label state of E's shape where E has one; else a valid one, so errors name E."""
    return np.full(E.shape, 0.5) if isinstance(E, np.ndarray) and E.ndim == 2 else Q_OK


GIBBS_FUNCTIONS = {
    "log_partition": lambda E, T=1.0: thermossl.log_partition(E, T),
    "gibbs": lambda E, T=1.0: thermossl.gibbs(E, T),
    "gibbs_entropy": lambda E, T=1.0: thermossl.gibbs_entropy(E, T),
    "cross_entropy": lambda E, T=1.0: thermossl.cross_entropy(labels_for(E), E, T),
    "cross_entropy_grad": lambda E, T=1.0: thermossl.cross_entropy(labels_for(E), E, T, grad=True),
    "entropy_grad": lambda E, T=1.0: thermossl.entropy_grad(E, T),
}


@pytest.fixture(params=sorted(GIBBS_FUNCTIONS))
def fn(request):
    return GIBBS_FUNCTIONS[request.param]


@pytest.mark.parametrize("E", [np.zeros(3), np.zeros((2, 3, 1)), np.float64(1.0)])
def test_wrong_ndim(fn, E):
    with pytest.raises(ValueError, match=r"E must be a 2-D array"):
        fn(E)


@pytest.mark.parametrize("E", [np.array([["a", "b"]]), np.array([[None, 1.0]], dtype=object), np.ones((2, 2), complex)])
def test_non_numeric_dtype(fn, E):
    with pytest.raises(TypeError, match=r"^E "):
        fn(E)


def test_ragged_input(fn):
    with pytest.raises(TypeError, match=r"^E "):
        fn([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("T", [0.0, -1.0, nan, inf, -inf])
def test_bad_temperature_value(fn, T):
    with pytest.raises(ValueError, match=r"^T must be finite and > 0"):
        fn(E_OK, T)


@pytest.mark.parametrize("T", ["1.0", None, True, np.array([1.0, 2.0]), [1.0], 1 + 2j])
def test_bad_temperature_type(fn, T):
    with pytest.raises(TypeError, match=r"^T must be"):
        fn(E_OK, T)


def test_temperature_accepts_numpy_scalars(fn):
    """numpy scalars, 0-d arrays and ints are temperatures with the value of the Python float."""
    def outputs(T):
        out = fn(E_OK, T)
        return out if isinstance(out, tuple) else (out,)

    for T in (np.float32(0.5), np.float64(0.5), np.int64(2), np.array(0.5), 2, np.array(2, dtype=np.int32)):
        for got, want in zip(outputs(T), outputs(float(T))):
            assert_array_equal(got, want)
    # ...and the value is used: a scalar read as 1 or dropped would pass the loop above.
    assert not np.allclose(outputs(np.float32(0.5))[0], outputs(2.0)[0])
    assert_allclose(thermossl.log_partition(E_OK, np.float32(0.5)), sp.logsumexp(-E_OK / 0.5, axis=1), rtol=1e-14)


def test_nan_in_energies(fn):
    E = E_OK.copy()
    E[1, 2] = nan
    with pytest.raises(ValueError, match=r"E contains NaN \(row 1\)"):
        fn(E)


def test_all_states_forbidden(fn):
    E = E_OK.copy()
    E[0, :] = inf
    with pytest.raises(ValueError, match=r"every state of row 0 is forbidden"):
        fn(E)


def test_infinite_score(fn):
    E = E_OK.copy()
    E[1, 0] = -inf
    with pytest.raises(ValueError, match=r"E contains -inf"):
        fn(E)


def test_no_states(fn):
    with pytest.raises(ValueError, match=r"at least one state"):
        fn(np.zeros((3, 0)))


def test_cross_entropy_shapes_and_labels():
    with pytest.raises(ValueError, match=r"q must have the shape of E"):
        thermossl.cross_entropy(np.ones((2, 4)), E_OK)
    with pytest.raises(TypeError, match=r"^q "):
        thermossl.cross_entropy(np.array([["x"] * 3] * 2), E_OK)
    q = Q_OK.copy()
    q[0, 1] = nan
    with pytest.raises(ValueError, match=r"q contains NaN"):
        thermossl.cross_entropy(q, E_OK)


def test_potentials_are_checked():
    with pytest.raises(ValueError, match=r"mu must have shape \(3,\)"):
        thermossl.log_partition(E_OK, mu=np.zeros(2))
    with pytest.raises(ValueError, match=r"mu must be finite"):
        thermossl.gibbs(E_OK, mu=np.array([0.0, nan, 0.0]))
    with pytest.raises(ValueError, match=r"f must have shape \(2,\)"):
        thermossl.column_log_partition(E_OK, f=np.zeros(3))
    E = E_OK.copy()
    E[0, 0] = nan
    with pytest.raises(ValueError, match=r"E contains NaN \(column 0\)"):
        thermossl.column_log_partition(E)


def test_inputs_are_never_modified():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(50, 20))
    E[3, 4] = inf
    q = sp.softmax(rng.normal(size=(50, 20)), axis=1)
    q[3, 4] = 0.0
    mu = rng.normal(size=20)
    copies = [E.copy(), q.copy(), mu.copy()]
    for arr in (E, q, mu):
        arr.flags.writeable = False  # any write would raise
    thermossl.log_partition(E, 0.3, mu=mu)
    thermossl.column_log_partition(E, 0.3)
    thermossl.gibbs(E, 0.3, mu=mu)
    thermossl.gibbs_entropy(E, 0.3)
    thermossl.cross_entropy(q, E, 0.3, grad=True)
    thermossl.entropy_grad(E, 0.3)
    for arr, copy in zip((E, q, mu), copies):
        assert_array_equal(arr, copy)


def test_core_rejects_misuse_without_crashing():
    # The bindings check again what the Python layer checks; calling them wrongly raises.
    core = thermossl._core
    a = np.zeros((2, 3))
    with pytest.raises(TypeError, match="float32 or float64"):
        core.row_logsumexp(np.zeros((2, 3), np.int64), 1.0, None, None, np.empty(2, np.int64), None)
    with pytest.raises(ValueError, match="out"):
        core.row_logsumexp(a, 1.0, None, None, np.empty(3), None)
    with pytest.raises(ValueError, match="out"):
        core.row_logsumexp(a, 1.0, None, None, np.empty(2, np.float32), None)
    with pytest.raises(ValueError, match="must be 2-D"):
        core.row_softmax(np.zeros(3), 1.0, None, np.empty(3), None)
    with pytest.raises(ValueError, match="shift"):
        core.row_entropy(a, 1.0, np.zeros(4), np.empty(2), None)
    with pytest.raises(ValueError, match="q must have the shape"):
        core.row_cross_entropy(np.zeros((2, 2)), a, 1.0, None, np.empty(2), None, None)
    ro = np.empty(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        core.row_logsumexp(a, 1.0, None, None, ro, None)
    with pytest.raises(TypeError, match="b must be a numpy array"):
        core.row_logsumexp(a, 1.0, None, [1, 2], np.empty(2), None)


def test_concurrent_calls_are_independent():
    # Kernels release the GIL and keep no global state: threads calling at once get the
    # same answers as sequential calls.
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(400, 300)) * (i + 1) for i in range(6)]
    expected = [thermossl.log_partition(E, 0.5) for E in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(5):
            results[i] = thermossl.log_partition(inputs[i], 0.5)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert_array_equal(got, want)
    assert_allclose(expected[0], sp.logsumexp(-inputs[0] / 0.5, axis=1), rtol=1e-14)
