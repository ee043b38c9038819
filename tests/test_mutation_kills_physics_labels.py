"""Recorded and chained labels, and unreadable runs (issue 20, mutation testing, physics group).

- ``analyze(codes=...)`` hands the recorded codes out through ``_GivenLabels``: the label state
  of each cycle (weighted charges, charge error, placeholders mu = 0 and T = 1) against numpy;
  its own errors when it is driven past the codes or with energies of another shape.
- A demon chains each sample's labels by id: labels of a float64 cycle keep their precision when
  the next measurement is float32 (the cycle's sums are float64, checked against numpy); the id
  store keeps the wider dtype of the labels it is given (float64 labels are never rounded to
  float32; a float32 run stays float32: chained by id books what the same labels given as
  q_before book).
- ``Demon(w=)`` refuses weights that are not real numbers, as every function taking w does.
- A run file that cannot be opened is named as such, not taken for a .npy array; a member whose
  data fail their CRC after a valid header is named with the reader's error.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import scipy.special as sp

from thermossl import analysis, reservoirs, thermo
from thermossl.demon import Demon


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


def label_states(rng, cycles, n, k):
    q = rng.uniform(0.05, 1.0, size=(cycles, n, k))
    return q / q.sum(axis=2, keepdims=True)


# ----------------------------------------------------------------------------- recorded codes
def test_given_labels_hand_out_the_codes_with_weighted_charges():
    rng = np.random.default_rng(0)
    codes = label_states(rng, 3, 7, 4)
    w = rng.uniform(0.2, 1.0, 7)
    w /= w.sum()
    given = analysis._GivenLabels(codes)
    E = rng.normal(size=(7, 4))
    for t in range(3):
        label = given.assign(E, w if t != 1 else None)
        weights = w if t != 1 else np.full(7, 1 / 7)
        charges = weights @ codes[t]
        np.testing.assert_array_equal(label.q, codes[t])
        np.testing.assert_allclose(label.charges, charges, rtol=1e-14)
        assert label.charge_err == pytest.approx(np.abs(charges - 0.25).sum(), rel=1e-13)
        np.testing.assert_array_equal(label.mu, np.zeros(4))
        assert label.T == 1.0 and label.method == "given"
    raises_exactly(RuntimeError, "recorded codes exhausted after 3 cycles", given.assign, E, w)
    given.reset()
    raises_exactly(ValueError, "E must have the shape of the recorded codes (7, 4), got (7, 5)",
                   given.assign, np.zeros((7, 5)))
    np.testing.assert_array_equal(given.assign(E).q, codes[0])  # a refused call does not advance
    assert repr(given) == "recorded codes (3 cycles)"


def test_analyze_with_codes_and_weights_books_the_weighted_charges():
    """analyze(codes=, weights=): each cycle's charge error and H_N are those of the weighted
    charges sum_i w_i q_iy of its codes (numpy), not of the unweighted mean."""
    rng = np.random.default_rng(1)
    steps, n, k = 4, 9, 3
    scores = rng.normal(size=(steps, n, k))
    codes = label_states(rng, steps - 1, n, k)
    w = rng.uniform(0.1, 1.0, n)
    w /= w.sum()
    ledger = analysis.analyze(scores, T=0.2, weights=w, codes=codes).ledger
    for t, row in enumerate(ledger):
        charges = w @ codes[t]
        unweighted = np.abs(codes[t].mean(axis=0) - 1 / k).sum()
        err = np.abs(charges - 1 / k).sum()
        assert abs(err - unweighted) > 1e-3
        assert row["charge_err"] == pytest.approx(err, rel=1e-13)
        assert row["H_N"] == pytest.approx(-(charges * np.log(charges)).sum(), rel=1e-13)


# ----------------------------------------------------------------------------- chained labels
def test_float64_labels_chained_into_a_float32_measurement_keep_their_precision():
    """Cycle 1 in float64, cycle 2 (the same ids) in float32: the labels chained from cycle 1
    start cycle 2 unrounded, so U_start = sum_i w_i sum_y q1_iy E2_iy and Q are float64 sums."""
    rng = np.random.default_rng(2)
    n, k = 12, 5
    w = rng.uniform(0.2, 1.0, n)
    w /= w.sum()
    E1 = rng.normal(size=(n, k))
    E2 = (E1 + 0.3 * rng.normal(size=(n, k))).astype(np.float32)
    d = Demon(0.1, reservoirs.sela(tol=1e-7), w=w)
    ids = np.arange(n)
    q1 = d.measure(E1, index=ids).q
    assert q1.dtype == np.float64
    d.feedback(E1 * 0.9)
    label2 = d.measure(E2, index=ids)
    row = d.feedback(E2 * np.float32(0.9))
    E2_64 = E2.astype(np.float64)
    q2 = np.asarray(label2.q, dtype=np.float64)
    U_start = float(w @ (q1 * E2_64).sum(axis=1))
    Q = float(w @ ((q2 - q1) * E2_64).sum(axis=1))
    # q1 rounded to float32 moves U_start by ~1e-8 of its size
    rounded = float(w @ (q1.astype(np.float32).astype(np.float64) * E2_64).sum(axis=1))
    assert abs(rounded - U_start) > 1e-10 * abs(U_start)
    assert row["U_start"] == pytest.approx(U_start, rel=1e-13)
    assert row["Q"] == pytest.approx(Q, rel=1e-11, abs=1e-13)


def weights_and_energies(rng, n, k):
    w = rng.uniform(0.2, 1.0, n)
    return w / w.sum(), rng.normal(size=(n, k))


def assert_U_start_is_from(row, q, w, E):
    """The cycle started from labels q (float64): U_start = sum_i w_i sum_y q_iy E_iy to 1e-13,
    where q rounded to float32 moves it by ~1e-8 of its size."""
    U_start = float(w @ (q * E).sum(axis=1))
    rounded = float(w @ (q.astype(np.float32).astype(np.float64) * E).sum(axis=1))
    assert abs(rounded - U_start) > 1e-10 * abs(U_start)
    assert row["U_start"] == pytest.approx(U_start, rel=1e-13)


def test_float64_labels_stay_float64_when_a_float32_batch_of_other_samples_is_stored():
    """Samples A measured in float64, then a float32 batch of other samples B: the store keeps
    A's labels in float64, so a third cycle of A starts from them unrounded (the survivor
    _LabelStore.update 21 stored everything in the dtype of the last batch)."""
    rng = np.random.default_rng(5)
    n, k = 12, 5
    w, E = weights_and_energies(rng, n, k)
    A, B = np.arange(n), np.arange(n, 2 * n)
    d = Demon(0.1, reservoirs.sela(tol=1e-7), w=w)
    q1 = d.measure(E, index=A).q
    assert q1.dtype == np.float64
    d.feedback(E * 0.9)
    E2 = (E + 0.3 * rng.normal(size=(n, k))).astype(np.float32)
    d.measure(E2, index=B)
    d.feedback(E2 * np.float32(0.9))
    E3 = E - 0.2 * rng.normal(size=(n, k))
    d.measure(E3, index=A)
    assert_U_start_is_from(d.feedback(E3 * 0.9), q1, w, E3)


def test_float64_labels_stored_over_float32_ones_stay_float64():
    """Samples A measured in float32, then again in float64: the store widens to float64 for
    the new labels, so a third cycle starts from them unrounded (the survivor
    _LabelStore.update 22 kept the store's float32)."""
    rng = np.random.default_rng(6)
    n, k = 12, 5
    w, E = weights_and_energies(rng, n, k)
    A = np.arange(n)
    d = Demon(0.1, reservoirs.sela(tol=1e-7), w=w)
    d.measure(E.astype(np.float32), index=A)
    d.feedback(E.astype(np.float32) * np.float32(0.9))
    E2 = E + 0.3 * rng.normal(size=(n, k))
    q2 = d.measure(E2, index=A).q
    assert q2.dtype == np.float64
    d.feedback(E2 * 0.9)
    E3 = E - 0.2 * rng.normal(size=(n, k))
    d.measure(E3, index=A)
    assert_U_start_is_from(d.feedback(E3 * 0.9), q2, w, E3)


def test_unseen_samples_start_from_the_float64_gibbs_state_beside_float32_stored_labels():
    """Samples A measured in float32, then a float64 batch of A and new samples B: A starts from
    its stored float32 labels, B from the Gibbs state of the float64 energies at T, unrounded
    (U_start against numpy to 1e-13; the survivor _LabelStore.chained 22 rounded the batch's
    starting labels to the store's float32)."""
    rng = np.random.default_rng(8)
    n, k, T = 12, 5, 0.1
    _, E = weights_and_energies(rng, n, k)
    A, B = np.arange(n), np.arange(n, 2 * n)
    d = Demon(T, reservoirs.sela(tol=1e-5))
    q1 = d.measure(E.astype(np.float32), index=A).q
    assert q1.dtype == np.float32
    d.feedback(E.astype(np.float32) * np.float32(0.9))
    E2 = rng.normal(size=(2 * n, k))
    d.measure(E2, index=np.concatenate((A, B)))
    gibbs_B = sp.softmax(-E2[n:] / T, axis=1)
    q_start = np.concatenate((q1.astype(np.float64), gibbs_B))
    assert_U_start_is_from(d.feedback(E2 * 0.9), q_start, np.full(2 * n, 1 / (2 * n)), E2)


def test_float32_labels_chained_by_id_are_the_labels_given_as_q_before():
    """A float32 run chained by id books each cycle exactly as a run given the last labels as
    q_before (float32): the store keeps float32 labels float32, so the measurement stays in the
    float32 kernels (the survivors _LabelStore.update 15, 19, 20 widened the store to float64,
    which moves the chained cycle's sums to float64 arithmetic: the last check shows that this
    changes the row)."""
    rng = np.random.default_rng(7)
    n, k = 40, 7
    w, E = weights_and_energies(rng, n, k)
    energies = [(E + 0.3 * t * rng.normal(size=(n, k))).astype(np.float32) for t in range(3)]
    chained = Demon(0.1, reservoirs.sela(tol=1e-4), w=w)
    given = Demon(0.1, reservoirs.sela(tol=1e-4), w=w)
    ids = np.arange(n)
    labels = [None]
    for E_t in energies:
        chained.measure(E_t, index=ids)
        label = given.measure(E_t, q_before=labels[-1])
        assert label.q.dtype == np.float32
        row_chained = chained.feedback(E_t * np.float32(0.9))
        assert row_chained == given.feedback(E_t * np.float32(0.9))  # every field, bit for bit
        labels.append(label.q)
    # the same second cycle from the float64 copy of the first labels books other values
    wide = Demon(0.1, reservoirs.sela(tol=1e-4), w=w)
    wide.measure(energies[0])
    wide.feedback(energies[0] * np.float32(0.9))
    wide.measure(energies[1], q_before=labels[1].astype(np.float64))
    assert wide.feedback(energies[1] * np.float32(0.9)) != given.ledger[1]


# ----------------------------------------------------------------------------- unreadable runs
def test_a_run_path_that_cannot_be_opened_is_not_taken_for_a_npy_array(tmp_path):
    """A path under a regular file cannot be opened (ENOTDIR, also as root): the error says the
    archive is not readable, with the system's reason, and does not call it a .npy array."""
    parent = tmp_path / "plain-file"
    parent.write_bytes(b"\x93NUMPY not a folder")
    path = parent / "run.npz"
    with pytest.raises(ValueError) as info:
        analysis.load_run(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable .npz archive (")
    assert "Not a directory" in message and ".npy" not in message.replace("run.npz", "")


def test_a_member_whose_data_fail_their_crc_is_named(tmp_path):
    """A valid header and the declared number of bytes, but data that do not match the stored
    CRC-32: loading names the member and zipfile's reason."""
    # large enough that reading the header does not reach the end of the member (where zipfile
    # checks the CRC): the error comes from loading the data
    scores = np.arange(2 * 200 * 250, dtype=np.float64).reshape(2, 200, 250) / 7.0
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, scores)
    path = tmp_path / "run.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("scores.npy", buffer.getvalue())
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(scores.tobytes())
    assert at > 0
    raw[at + scores.nbytes // 2] ^= 0x01  # one bit of one value
    path.write_bytes(bytes(raw))
    with analysis._Archive(path) as archive:  # the header alone reads fine
        assert archive.header("scores").shape == scores.shape
    raises_exactly(ValueError, f"{path}: 'scores' could not be read (Bad CRC-32 for file 'scores.npy')",
                   analysis.load_run, path)




# ----------------------------------------------------------------------------- fixed weights
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_demon_keeps_a_copy_of_its_weights(dtype):
    """Weights changed in place by the caller after the demon was made do not change its books:
    the cycle's U_measured = sum_i w_i sum_y q_iy E_iy with the weights given (numpy)."""
    rng = np.random.default_rng(3)
    n, k = 10, 4
    w = rng.uniform(0.2, 1.0, n)
    w = (w / w.sum()).astype(dtype)
    given = w.astype(np.float64)
    E = rng.normal(size=(n, k))
    d = Demon(0.1, reservoirs.sela(tol=1e-7), w=w)
    w[:] = w[::-1].copy()  # the caller reuses the array
    q = d.measure(E).q
    row = d.feedback(E * 0.9)
    assert row["U_measured"] == pytest.approx(float(given @ (q * E).sum(axis=1)), rel=1e-13)
    assert abs(float(w.astype(np.float64) @ (q * E).sum(axis=1)) - row["U_measured"]) > 1e-6


NOT_REAL_WEIGHTS = [
    (np.array([0.5 + 0.25j, 0.5]), "w must be real; complex input (dtype complex128) is not supported"),
    (["0.5", "0.5"], "w must be a real numeric array, got dtype <U3"),
] + ([(np.array([0.5, 0.5], dtype=np.longdouble),
       f"w: extended precision ({np.dtype(np.longdouble)}) is not supported; use float64")]
     if np.dtype(np.longdouble).itemsize > 8 else [])  # long double is float64 on some platforms


@pytest.mark.parametrize("w, message", NOT_REAL_WEIGHTS)
def test_the_demon_refuses_weights_that_are_not_real_numbers(w, message):
    """Demon(w=) refuses what every function taking w refuses, when the demon is made (found by
    the survivors Demon.__init__ 12, 14: a float64 cast at construction dropped the imaginary
    part of complex weights with only numpy's ComplexWarning, parsed strings, and rounded
    extended precision, so the demon ran where thermo.energy(w=) raises)."""
    raises_exactly(TypeError, message, Demon, 0.1, reservoirs.sela(), w=w)
    E = np.random.default_rng(4).normal(size=(2, 3))
    raises_exactly(TypeError, message, thermo.energy, np.full((2, 3), 1 / 3), E, w=w)  # the same refusal


# ----------------------------------------------------------------------------- energies named in errors
class UniformLabels(reservoirs.Reservoir):
    """A reservoir that accepts any energies: uniform labels (so the demon's own passes meet them)."""

    T = 1.0

    def assign(self, E, w=None):
        n, k = np.shape(E)
        q = np.full((n, k), 1.0 / k)
        return reservoirs.LabelState(q=q, mu=np.zeros(k), charges=q.mean(axis=0), charge_err=0.0, T=1.0,
                                     method="uniform")


def test_an_infinite_score_is_named_after_the_energies_it_is_in():
    rng = np.random.default_rng(4)
    E = rng.normal(size=(5, 3))
    bad = E.copy()
    bad[2, 1] = -np.inf
    d = Demon(0.1, UniformLabels())
    with pytest.raises(ValueError, match=r"^E contains -inf \(an infinite score\) or E/T overflows in row 2"):
        d.measure(bad)
    d = Demon(0.1, UniformLabels())  # labels before given: the demon's own ledger pass meets the -inf first
    with pytest.raises(ValueError, match=r"^E contains -inf \(an infinite score\) or E/T overflows in row 2"):
        d.measure(bad, q_before=np.full((5, 3), 1 / 3))
    d = Demon(0.1, UniformLabels())
    d.measure(E)
    with pytest.raises(ValueError, match=r"^E_after contains -inf \(an infinite score\) or E/T overflows in row 2; energies must be > -inf$"):
        d.feedback(bad)
    d = Demon(0.1, UniformLabels())
    d.measure(E)
    with pytest.raises(ValueError, match=r"^E_before contains -inf \(an infinite score\) or E/T overflows in row 2; energies must be > -inf$"):
        d.feedback(E, E_before=bad)
