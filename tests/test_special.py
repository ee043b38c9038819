"""thermossl.logsumexp/softmax/log_softmax against scipy.special: values, dtypes, edge cases."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from helpers import EPS32, EPS64, LAYOUTS, backend, tol, with_layout  # noqa: F401 (backend: a fixture)

inf, nan = np.inf, np.nan


def scipy_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def ref_logsumexp(a, axis=None, keepdims=False, **kwargs):
    """scipy's logsumexp, except for zero-size input where scipy 1.17 raises for several axes:
    there the sum is empty, so the answer is -inf (sign -1, as scipy gives for one axis)."""
    if np.size(a) == 0:
        shape = np.sum(np.zeros(np.shape(a)), axis=axis, keepdims=keepdims).shape
        out = np.full(shape, -inf, dtype=np.asarray(a).dtype)
        return (out, np.sign(out)) if kwargs.get("return_sign") else out
    return scipy_quiet(sp.logsumexp, a, axis=axis, keepdims=keepdims, **kwargs)


def assert_same(ours, ref, dtype):
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape
    assert_allclose(ours, ref, rtol=tol(dtype), atol=tol(dtype), equal_nan=True)
    # Infinities must match exactly (sign included), not just be close.
    assert_array_equal(np.isposinf(ours), np.isposinf(ref))
    assert_array_equal(np.isneginf(ours), np.isneginf(ref))
    assert_array_equal(np.isnan(ours), np.isnan(ref))


EDGE_ROWS = [
    [1.0, 2.0, 3.0],
    [inf, 1.0, 0.0],
    [-inf, -inf, -inf],
    [inf, inf, 1.0],
    [inf, -inf, 0.0],
    [nan, 1.0, 2.0],
    [nan, inf, -inf],
    [-inf, 1.0, -inf],
    [0.0, -50.0, -1e-20],  # result near 0: needs scipy's log1p form
    [1e4, -1e4, 1e4],
    [-1e4, -1e4 + 1e-3, -2e4],
    [3.0, 3.0, 3.0],
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", EDGE_ROWS, ids=[str(r) for r in EDGE_ROWS])
def test_edge_rows_match_scipy(backend, row, dtype):
    a = np.array([row, row[::-1]], dtype=dtype)
    # Device arrays: the last axis of a 2-D array, without b or return_sign.
    for axis in (1, -1) if backend.device else (None, 0, 1, -1):
        x = backend(a)
        assert_same(backend.host(thermossl.logsumexp(x, axis=axis)), scipy_quiet(sp.logsumexp, a, axis=axis), dtype)
        assert_same(backend.host(thermossl.softmax(x, axis=axis)), scipy_quiet(sp.softmax, a, axis=axis), dtype)
        assert_same(backend.host(thermossl.log_softmax(x, axis=axis)), scipy_quiet(sp.log_softmax, a, axis=axis),
                    dtype)
        if backend.device:
            continue
        ours, sign = thermossl.logsumexp(a, axis=axis, return_sign=True)
        ref, ref_sign = scipy_quiet(sp.logsumexp, a, axis=axis, return_sign=True)
        assert_same(ours, ref, dtype)
        assert_same(sign, ref_sign, dtype)


WEIGHTED = [
    ([1.0, 2.0], [1.0, -1.0]),
    ([1.0, 1.0], [1.0, -1.0]),  # exact cancellation: sum 0
    ([inf, 1.0], [0.0, 1.0]),  # b = 0 hides an infinite term
    ([nan, 1.0], [0.0, 1.0]),  # ... and a nan
    ([inf, 1.0], [-1.0, 1.0]),
    ([1.0, 2.0], [-1.0, -1.0]),
    ([-inf, -inf], [1.0, 1.0]),
    ([inf, inf], [1.0, -1.0]),
    ([0.0, -30.0, 5.0], [2.0, 0.5, -1e-3]),
    ([2.0, 2.0, 1.0], [0.5, 0.25, 3.0]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a,b", WEIGHTED, ids=[f"{a}-{b}" for a, b in WEIGHTED])
def test_weighted_and_signed_match_scipy(a, b, dtype):
    a = np.array(a, dtype=dtype)
    b = np.array(b, dtype=dtype)
    assert_same(thermossl.logsumexp(a, b=b), scipy_quiet(sp.logsumexp, a, b=b), dtype)
    ours = thermossl.logsumexp(a, b=b, return_sign=True)
    ref = scipy_quiet(sp.logsumexp, a, b=b, return_sign=True)
    assert_same(ours[0], ref[0], dtype)
    assert_same(ours[1], ref[1], dtype)


def test_precise_near_zero_result():
    # log(1 + e^-50) = 1.93e-22: a plain log(sum) gives 0, scipy's log1p form the exact value.
    a = np.array([0.0, -50.0])
    assert thermossl.logsumexp(a) == pytest.approx(np.log1p(np.exp(-50.0)), rel=4 * EPS64)
    assert thermossl.logsumexp(a) == pytest.approx(sp.logsumexp(a), rel=4 * EPS64)


def test_dtypes_follow_scipy():
    ints = np.arange(6).reshape(2, 3)
    for fn in (thermossl.logsumexp, thermossl.softmax, thermossl.log_softmax):
        assert fn(ints, axis=1).dtype == np.float64
        assert fn(ints.astype(np.float32), axis=1).dtype == np.float32
        assert fn(ints.astype(np.float16), axis=1).dtype == np.float16
    assert thermossl.logsumexp(ints.astype(np.float32), b=np.ones(3)).dtype == np.float64
    assert thermossl.logsumexp(ints.astype(np.float32), b=np.ones(3, np.float32)).dtype == np.float32
    assert thermossl.logsumexp(np.array([True, False])).dtype == np.float64
    assert_allclose(thermossl.logsumexp(ints, axis=1), sp.logsumexp(ints, axis=1), rtol=4 * EPS64)


def test_scalar_and_list_inputs():
    assert isinstance(thermossl.logsumexp([1.0, 2.0]), np.float64)
    out, sign = thermossl.logsumexp([1.0, 2.0], return_sign=True)
    assert isinstance(out, np.float64) and isinstance(sign, np.float64)
    assert thermossl.logsumexp(3.0) == pytest.approx(3.0)
    assert thermossl.softmax(3.0) == 1.0
    assert thermossl.log_softmax(np.float32(3.0)) == 0.0
    assert_allclose(thermossl.softmax([1, 2, 3]), sp.softmax([1, 2, 3]), rtol=4 * EPS64)


def test_zero_size():
    for shape, axis in [((0,), None), ((0, 3), 1), ((0, 3), 0), ((3, 0), 1), ((2, 0, 4), 1)]:
        a = np.zeros(shape)
        ours, sign = thermossl.logsumexp(a, axis=axis, return_sign=True)
        ref, ref_sign = sp.logsumexp(a, axis=axis, return_sign=True)
        assert np.shape(ours) == np.shape(ref)
        assert_array_equal(ours, ref)
        assert_array_equal(sign, ref_sign)
        assert thermossl.softmax(a, axis=axis).shape == shape
        assert thermossl.log_softmax(a, axis=axis).shape == shape
    assert sp.softmax(np.zeros((0, 3)), axis=1).shape == thermossl.softmax(np.zeros((0, 3)), axis=1).shape
    # scipy 1.17 raises IndexError for several axes of a zero-size input; the sum is empty: -inf.
    assert thermossl.logsumexp(np.zeros((3, 0))) == -inf
    out, sign = thermossl.logsumexp(np.zeros((2, 0, 4)), axis=(0, 2), return_sign=True)
    assert_array_equal(out, np.full(0, -inf))
    assert_array_equal(thermossl.logsumexp(np.zeros((2, 3, 0)), axis=(0, 2)), np.full(3, -inf))


def test_keepdims_and_axis_tuples():
    a = np.random.default_rng(0).normal(size=(3, 4, 5))
    for axis in (None, 0, 1, 2, -1, (0, 2), (2, 0), (0, 1, 2), ()):
        for keepdims in (False, True):
            assert_same(
                thermossl.logsumexp(a, axis=axis, keepdims=keepdims),
                sp.logsumexp(a, axis=axis, keepdims=keepdims),
                np.float64,
            )
    for axis in (None, 0, (0, 2), (1, 2)):
        assert_same(thermossl.softmax(a, axis=axis), sp.softmax(a, axis=axis), np.float64)
        assert_same(thermossl.log_softmax(a, axis=axis), sp.log_softmax(a, axis=axis), np.float64)


def test_bad_axis_and_b():
    a = np.zeros((2, 3))
    with pytest.raises(np.exceptions.AxisError):
        thermossl.logsumexp(a, axis=2)
    with pytest.raises(ValueError, match="axis"):
        thermossl.softmax(a, axis=(0, 0))
    with pytest.raises(TypeError, match="axis"):
        thermossl.logsumexp(a, axis=1.5)
    with pytest.raises(ValueError, match="b"):
        thermossl.logsumexp(a, b=np.ones(4))
    with pytest.raises(TypeError, match="a must"):
        thermossl.logsumexp(np.array(["x", "y"]))
    with pytest.raises(TypeError, match="complex"):
        thermossl.softmax(np.ones(3, complex))
    with pytest.raises(TypeError, match="b must"):
        thermossl.logsumexp(a, b=np.array([None, None, None]))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts(layout, dtype):
    rng = np.random.default_rng(3)
    base = (rng.normal(size=(37, 53)) * 5).astype(dtype)
    base[3, 4] = -inf
    a = with_layout(base, layout)
    b = with_layout(rng.uniform(-1, 2, size=base.shape).astype(dtype), layout)
    before = a.copy()
    for axis in (None, 0, 1):
        assert_same(thermossl.logsumexp(a, axis=axis), sp.logsumexp(base, axis=axis), dtype)
        assert_same(thermossl.softmax(a, axis=axis), sp.softmax(base, axis=axis), dtype)
        assert_same(thermossl.log_softmax(a, axis=axis), sp.log_softmax(base, axis=axis), dtype)
        # Signed weights cancel: compare with float64 on the same values, allowing the error
        # the cancellation amplifies (condition number sum|b e^a| / |sum b e^a|).
        ours = thermossl.logsumexp(a, axis=axis, b=b, return_sign=True)
        ref = scipy_quiet(sp.logsumexp, base.astype(np.float64), axis=axis, b=np.asarray(b, np.float64), return_sign=True)
        magnitude = scipy_quiet(sp.logsumexp, base.astype(np.float64), axis=axis, b=np.abs(np.asarray(b, np.float64)))
        condition = np.exp(magnitude - ref[0])
        assert np.all(np.abs(ours[0] - ref[0]) <= tol(dtype) * (condition + np.abs(ref[0])))
        assert_array_equal(ours[1], ref[1])
    assert_array_equal(a, before)


def test_broadcast_b_and_large_parallel_inputs():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(700, 301)) * 20  # above the parallel threshold, several tiles
    b = rng.uniform(0, 2, size=(301,))  # broadcast: zero row stride
    assert_same(thermossl.logsumexp(a, axis=1, b=b), sp.logsumexp(a, axis=1, b=b), np.float64)
    assert_same(thermossl.logsumexp(a, axis=0, b=b), sp.logsumexp(a, axis=0, b=b), np.float64)
    assert_same(thermossl.softmax(a.T, axis=0), sp.softmax(a.T, axis=0), np.float64)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_inputs_are_not_modified(layout):
    """Writable inputs (the bindings could write through them) keep every value, in every layout,
    and the results are scipy's; read-only inputs are accepted and give the same results."""
    rng = np.random.default_rng(5)
    a = with_layout(rng.normal(size=(70, 130)) * 30, layout)  # several chunks per row
    a[3, 5], a[7, 64] = inf, -inf
    b = with_layout(np.abs(rng.normal(size=a.shape)), layout)
    b[2, :] = 0.0
    a_before, b_before = a.copy(), b.copy()
    results = {
        "lse1": thermossl.logsumexp(a, axis=1, b=b, return_sign=True),
        "lse0": thermossl.logsumexp(a, axis=0),
        "softmax": thermossl.softmax(a, axis=0),
        "log_softmax": thermossl.log_softmax(a, axis=None),
    }
    assert_array_equal(a, a_before)
    assert_array_equal(b, b_before)
    assert_same(results["lse1"][0], ref_logsumexp(a_before, axis=1, b=b_before, return_sign=True)[0], np.float64)
    assert_array_equal(results["lse1"][1], ref_logsumexp(a_before, axis=1, b=b_before, return_sign=True)[1])
    assert_same(results["lse0"], ref_logsumexp(a_before, axis=0), np.float64)
    assert_same(results["softmax"], scipy_quiet(sp.softmax, a_before, axis=0), np.float64)
    assert_same(results["log_softmax"], scipy_quiet(sp.log_softmax, a_before, axis=None), np.float64)
    a.flags.writeable = False
    b.flags.writeable = False
    assert_array_equal(thermossl.logsumexp(a, axis=1, b=b, return_sign=True)[0], results["lse1"][0])
    assert_array_equal(thermossl.softmax(a, axis=0), results["softmax"])
    assert_array_equal(thermossl.log_softmax(a, axis=None), results["log_softmax"])


finite_or_special = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, width=32),
    st.sampled_from([inf, -inf, nan, 0.0, -0.0]),
)


@st.composite
def arrays_and_axes(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))
    special = draw(st.booleans())
    elements = finite_or_special if special else st.floats(-1e3, 1e3, allow_nan=False, width=32)
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    if a.ndim >= 2 and draw(st.booleans()):
        a = np.asfortranarray(a)
    ndim = a.ndim
    axis = draw(
        st.one_of(
            st.none(),
            st.integers(-ndim, ndim - 1),
            st.lists(st.integers(0, ndim - 1), unique=True, min_size=1, max_size=ndim).map(tuple),
        )
    )
    return a, axis


@given(arrays_and_axes(), st.booleans())
def test_logsumexp_matches_scipy_property(case, keepdims):
    a, axis = case
    ref = ref_logsumexp(a, axis=axis, keepdims=keepdims)
    assert_same(thermossl.logsumexp(a, axis=axis, keepdims=keepdims), ref, a.dtype)


@given(arrays_and_axes())
def test_signed_logsumexp_matches_scipy_property(case):
    a, axis = case
    b = np.sin(np.arange(a.size, dtype=a.dtype).reshape(a.shape) * 1.7)  # mixed signs, some near 0
    ours = thermossl.logsumexp(a, axis=axis, b=b, return_sign=True)
    ref = ref_logsumexp(a, axis=axis, b=b, return_sign=True)
    # A sum that cancels to near zero loses relative accuracy in any summation order: compare
    # the log-magnitude with an absolute tolerance scaled by the largest term.
    big = np.max(np.abs(a[np.isfinite(a)]), initial=1.0)
    mask = np.isfinite(ref[0]) & (ref[0] > np.log(big) - 30 if big > 0 else True)
    assert_allclose(np.where(mask, ours[0], 0), np.where(mask, ref[0], 0), rtol=tol(a.dtype), atol=1e-3)
    assert_array_equal(np.isnan(ours[0]), np.isnan(ref[0]))
    assert_array_equal(np.where(mask, ours[1], 0), np.where(mask, ref[1], 0))


@given(arrays_and_axes())
def test_softmax_matches_scipy_property(case):
    a, axis = case
    if a.size == 0:  # scipy raises for some of these (max of an empty axis); ours is empty
        assert thermossl.softmax(a, axis=axis).shape == a.shape
        assert thermossl.log_softmax(a, axis=axis).dtype == a.dtype
        return
    assert_same(thermossl.softmax(a, axis=axis), scipy_quiet(sp.softmax, a, axis=axis), a.dtype)
    assert_same(thermossl.log_softmax(a, axis=axis), scipy_quiet(sp.log_softmax, a, axis=axis), a.dtype)


@pytest.mark.parametrize("k", [1, 7, 1023, 1024, 1025, 3000, 5000])
def test_long_rows_float32_accuracy(backend, k):
    # Rows longer than the kernels' summation chunk (1024) stay within the float32 accuracy.
    rng = np.random.default_rng(k)
    a = (rng.normal(size=(8, k)) * 4).astype(np.float32)
    ref = sp.logsumexp(a.astype(np.float64), axis=1)
    assert_allclose(backend.host(thermossl.logsumexp(backend(a), axis=1)), ref, rtol=2 * EPS32)
    assert_allclose(backend.host(thermossl.softmax(backend(a), axis=1)), sp.softmax(a.astype(np.float64), axis=1),
                    atol=8 * EPS32, rtol=0)
