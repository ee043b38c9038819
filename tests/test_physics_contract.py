"""The physics layer's documented contract, to the letter (issue 20, found by mutation testing):
the exact message of every error of thermo, demon, reservoirs, balancing and analysis (each
names its argument), the stroke records, the ledger's files, and summarize's edge cases."""
from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest

import thermossl
from thermossl import analysis, demon, reservoirs, thermo
from helpers import warning_frames_as_without_mutmut

inf, nan = np.inf, np.nan
E2 = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])
Q2 = np.full((2, 3), 1 / 3)


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    got = str(info.value) if exc is not KeyError else info.value.args[0]
    assert got == message, (got, message)


# ----------------------------------------------------------------------------- messages
MESSAGES = [
    # thermo
    (ValueError, "q must be a 2-D array of shape (N, K), got ndim=1", thermo.energy, np.ones(3) / 3, E2),
    (ValueError, "q must have the shape of E (2, 3), got (3, 2)", thermo.energy, np.full((3, 2), 0.5), E2),
    (ValueError, "q must be finite and nonnegative (row 1)", thermo.energy, np.array([[1 / 3] * 3, [1.5, -0.5, 0.0]]), E2),
    (ValueError, "q must be a label state with rows summing to 1 (row 1 sums to 0.75)", thermo.energy,
     np.array([[1 / 3] * 3, [0.25, 0.25, 0.25]]), E2),
    (ValueError, "E must be a 2-D array of shape (N, K), got ndim=1", thermo.loss, Q2, np.zeros(3), 1.0),
    (ValueError, "E must have at least one sample and one state, got shape (0, 3)", thermo.loss, np.zeros((0, 3)), np.zeros((0, 3)), 1.0),
    (ValueError, "q must have at least one sample and one state, got shape (0, 3)", thermo.entropy, np.zeros((0, 3))),
    (ValueError, "q must be a label state with rows summing to 1 (row 0 sums to 2.0)", thermo.charges, np.full((1, 2), 1.0)),
    # demon
    (ValueError, "q must be a 2-D array of shape (N, K), got ndim=1", demon.adiabatic, np.ones(3), E2, E2),
    (ValueError, "E_before must have shape (2, 3), got (3, 2)", demon.adiabatic, Q2, E2.T, E2),
    (ValueError, "E_after must have shape (2, 3), got (2, 2)", demon.adiabatic, Q2, E2, E2[:, :2]),
    (ValueError, "E must be a 2-D array of shape (N, K), got ndim=3", demon.isochoric, E2[None], Q2, Q2),
    (ValueError, "q_before must have shape (2, 3), got (1, 3)", demon.isochoric, E2, Q2[:1], Q2),
    (ValueError, "q_after must have shape (2, 3), got (2, 1)", demon.isochoric, E2, Q2, Q2[:, :1]),
    (TypeError, "reservoir must be a thermossl.reservoirs.Reservoir, got str", demon.Demon, 0.1, "sinkhorn"),
    # reservoirs
    (ValueError, "momentum must be in [0, 1), got 1.0", reservoirs.CenteringReservoir, 0.1, 1.0),
    (ValueError, "momentum must be in [0, 1), got -0.5", reservoirs.CenteringReservoir, 0.1, -0.5),
    (ValueError, "E must be a 2-D array of shape (N, K), got ndim=1", reservoirs.dino().assign, np.zeros(3)),
    (ValueError, "E must be finite for centering (the batch mean of the scores is not)", reservoirs.dino().assign,
     np.array([[0.0, inf], [1.0, 2.0]])),
    # balancing
    (TypeError, "n_iter must be an int, got float", thermossl.sinkhorn, E2, 0.1, None, None, 2.5),
    (ValueError, "n_iter must be >= 1, got 0", thermossl.sinkhorn, E2, 0.1, None, None, 0),
    (ValueError, "max_iter must be >= 1, got 0", thermossl.sinkhorn, E2, 0.1, None, None, None, 1e-6, 0),
    (ValueError, "mu0 must have shape (3,) (one value per state), got (2,)", thermossl.sinkhorn, E2, 0.1,
     None, None, None, 1e-6, 10, np.zeros(2)),
    (TypeError, "mu0 must be a real numeric array, got dtype <U1", thermossl.sinkhorn, E2, 0.1, None, None, None, 1e-6, 10,
     np.array(["a", "b", "c"])),
    (ValueError, "mu0 must be finite", thermossl.sinkhorn, E2, 0.1, None, None, None, 1e-6, 10, np.array([0, nan, 0])),
    (TypeError, "tol must be a real number, got str", thermossl.sinkhorn, E2, 0.1, None, None, None, "1e-6"),
    (TypeError, "tol must be a real number, got bool", thermossl.sinkhorn, E2, 0.1, None, None, None, True),
    (ValueError, "tol must be finite and > 0, got 0.0", thermossl.sinkhorn, E2, 0.1, None, None, None, 0.0),
    (ValueError, "tol must be finite and > 0, got inf", thermossl.sinkhorn, E2, 0.1, None, None, None, inf),
    (ValueError, "E must be a 2-D array of shape (N, K), got ndim=1", thermossl.sinkhorn, np.zeros(3), 0.1),
    (ValueError, "E must have at least one sample and one state, got shape (2, 0)", thermossl.sinkhorn, np.zeros((2, 0)), 0.1),
    (ValueError, "E contains NaN (row 1)", thermossl.sinkhorn, np.array([[0.0, 1.0], [nan, 0.0]]), 0.1),
    (ValueError, "E: every state of row 0 is forbidden (+inf energy); the row cannot be labelled", thermossl.sinkhorn,
     np.array([[inf, inf], [0.0, 0.0]]), 0.1),
    (ValueError, "E contains -inf (an infinite score) or E/T overflows (row 1)", thermossl.sinkhorn,
     np.array([[0.0, 1.0], [-inf, 0.0]]), 0.1),
    (ValueError, "infeasible: state 1 is forbidden (+inf energy) for every sample but its target charge c[1] > 0",
     thermossl.sinkhorn, np.array([[0.0, inf], [0.0, inf]]), 0.1),
    # analysis
    (ValueError, "reservoir must be one of ['dino', 'sela', 'swav'] or a Reservoir, got 'byol'", analysis.analyze,
     np.zeros((2, 3, 2)), 0.1, "byol"),
    (TypeError, "reservoir must be a name or a Reservoir, got int", analysis.analyze, np.zeros((2, 3, 2)), 0.1, 3),
    (ValueError, "scores must have shape (steps >= 2, N, K), got (1, 3, 2)", analysis.analyze, np.zeros((1, 3, 2))),
    (ValueError, "scores must have shape (steps >= 2, N, K), got (3, 2)", analysis.analyze, np.zeros((3, 2))),
    (ValueError, "ledger is empty", analysis.summarize, demon.Ledger(), 0.1),
]


@pytest.mark.parametrize("exc, message, fn, args", [(m[0], m[1], m[2], m[3:]) for m in MESSAGES],
                         ids=[f"{m[2].__qualname__}-{i}" for i, m in enumerate(MESSAGES)])
def test_error_messages_name_the_argument(exc, message, fn, args):
    raises_exactly(exc, message, fn, *args)


@pytest.mark.parametrize(
    "relaxation, n_iter, exc, message",
    [
        ("fast", None, ValueError, "relaxation must be a number in (0, 2) or 'auto', got 'fast'"),
        ("auto", 3, ValueError, "relaxation='auto' needs the tolerance mode (n_iter=None); give a number with n_iter"),
        ([1.0], None, TypeError, "relaxation must be a number or 'auto', got list"),
        (True, None, TypeError, "relaxation must be a number or 'auto', got bool"),
        (2.0, None, ValueError, "relaxation must be in (0, 2), got 2.0"),
        (0.0, None, ValueError, "relaxation must be in (0, 2), got 0.0"),
    ],
)
def test_relaxation_messages(relaxation, n_iter, exc, message):
    raises_exactly(exc, message, thermossl.sinkhorn, E2, 0.1, n_iter=n_iter, relaxation=relaxation)


def test_relaxation_edges_are_accepted():
    for omega in (0.5, 1.9, np.float64(1.5), 1):
        res = thermossl.sinkhorn(E2, 0.5, relaxation=omega, tol=1e-10)
        assert res.converged and res.err <= 1e-10


def test_sinkhorn_does_not_warn_when_converged_and_warns_when_not():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        thermossl.sinkhorn(E2, 0.5, tol=1e-10)
        thermossl.sinkhorn(E2, 0.5, n_iter=1)  # fixed iterations never warn
    with pytest.warns(RuntimeWarning, match=r"^sinkhorn did not converge in max_iter=1 iterations: charge error "):
        thermossl.sinkhorn(E2, 0.05, tol=1e-14, max_iter=1)


def test_demon_order_messages():
    d = demon.Demon(0.1, reservoirs.swav())
    raises_exactly(RuntimeError, "feedback() called before measure()", d.feedback, E2)
    d.measure(E2)
    raises_exactly(RuntimeError, "measure() called twice without feedback(): complete the cycle first", d.measure, E2)
    raises_exactly(ValueError, "E must be a 2-D array of shape (N, K), got ndim=1", demon.Demon(0.1, reservoirs.swav()).measure, np.zeros(3))


def test_ledger_messages_and_column():
    raises_exactly(ValueError, "ledger row lacks fields ['W']", demon.Ledger, [{f: 0.0 for f in demon.LEDGER_FIELDS if f != "W"}])
    ledger = demon.Ledger([{f: float(i) for i, f in enumerate(demon.LEDGER_FIELDS)}])
    raises_exactly(KeyError, "nope", ledger.column, "nope")
    assert ledger.column("W").tolist() == [float(demon.LEDGER_FIELDS.index("W"))]
    assert repr(ledger) == "Ledger(1 cycles)"


def test_state_is_immutable_and_says_so():
    s = thermo.State(E2, 0.5, Q2)
    raises_exactly(AttributeError, "State is immutable", setattr, s, "U", 1.0)
    assert not s.N.flags.writeable
    assert repr(s).startswith("State(T=0.5, U=")


# ----------------------------------------------------------------------------- strokes
def test_stroke_records_are_complete():
    rng = np.random.default_rng(0)
    E, E_after = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q, q_after = np.full((5, 3), 1 / 3), np.eye(3)[[0, 1, 2, 0, 1]]
    w = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    work = demon.adiabatic(q, E, E_after, w)
    assert work.Q == 0.0 and isinstance(work.W, float)
    assert work.heat_per_sample.shape == (5,) and work.heat_per_sample.dtype == np.float64
    np.testing.assert_array_equal(work.heat_per_sample, np.zeros(5))
    np.testing.assert_allclose(work.work_per_sample, w * (q * (E_after - E)).sum(1), rtol=1e-14)
    heat = demon.isochoric(E, q, q_after, w)
    assert heat.W == 0.0 and isinstance(heat.Q, float)
    assert heat.work_per_sample.shape == (5,) and heat.work_per_sample.dtype == np.float64
    np.testing.assert_array_equal(heat.work_per_sample, np.zeros(5))
    np.testing.assert_allclose(heat.heat_per_sample, w * (E * (q_after - q)).sum(1), rtol=1e-14)
    general = demon.step(E, q, E_after, q_after, w)
    np.testing.assert_array_equal(general.work_per_sample, work.work_per_sample)
    np.testing.assert_allclose(general.heat_per_sample, w * (E_after * (q_after - q)).sum(1), rtol=1e-14)
    assert general.dU == general.W + general.Q
    # Uniform weights: 1/N per sample.
    uniform = demon.adiabatic(q, E, E_after)
    np.testing.assert_allclose(uniform.work_per_sample, (q * (E_after - E)).sum(1) / 5, rtol=1e-14)


def test_demon_reset_starts_new_books():
    rng = np.random.default_rng(1)
    E = [rng.normal(size=(6, 3)) for _ in range(3)]
    d = demon.Demon(0.1, reservoirs.dino())
    first = [d.measure(E[0]), d.feedback(E[1])]
    d.measure(E[1])
    d.feedback(E[2])
    d.reset()
    assert len(d.ledger) == 0 and d.labels is None and d.work_per_sample is None and d.heat_per_sample is None
    assert d.reservoir.center is None
    again = [d.measure(E[0]), d.feedback(E[1])]
    assert again[1] == first[1]  # the same first cycle: no labels or center carried over
    sela = reservoirs.sela()
    sela.assign(E[0])
    sela.reset()
    cold = sela.assign(E[0])
    assert cold.n_iter == reservoirs.sela().assign(E[0]).n_iter


def test_labels_property_follows_the_cycle():
    E = np.random.default_rng(2).normal(size=(6, 3))
    d = demon.Demon(0.1, reservoirs.swav())
    assert d.labels is None
    label = d.measure(E)
    assert d.labels is label.q
    d.feedback(E)
    assert d.labels is label.q


# ----------------------------------------------------------------------------- ledger files
def small_ledger():
    rows = []
    for t in range(2):
        row = {f: 0.1 * (i + 1) + t for i, f in enumerate(demon.LEDGER_FIELDS)}
        row["t"] = t
        rows.append(row)
    rows[1]["eta"] = nan
    rows[1]["W_ext_over_TI"] = -inf
    return demon.Ledger(rows)


def test_csv_file_format(tmp_path):
    ledger = small_ledger()
    ledger.to_csv(tmp_path / "l.csv")
    lines = (tmp_path / "l.csv").read_text().splitlines()
    assert lines[0] == ",".join(demon.LEDGER_FIELDS)
    assert len(lines) == 3
    assert lines[2].split(",")[0] == "1"
    values = dict(zip(demon.LEDGER_FIELDS, lines[2].split(",")))
    assert values["eta"] == "nan" and values["W_ext_over_TI"] == "-inf"
    assert float(values["W"]) == ledger[1]["W"]
    back = demon.Ledger.from_csv(tmp_path / "l.csv")
    assert isinstance(back[1]["t"], int) and back[1]["t"] == 1
    assert back[0] == ledger[0] and math.isnan(back[1]["eta"]) and back[1]["W_ext_over_TI"] == -inf


def test_json_file_format(tmp_path):
    ledger = small_ledger()
    ledger.to_json(tmp_path / "l.json")
    payload = json.loads((tmp_path / "l.json").read_text())
    assert list(payload) == ["fields", "rows"]
    assert payload["fields"] == {f: demon.Ledger.descriptions[f] for f in demon.LEDGER_FIELDS}
    assert payload["rows"][1]["eta"] == "nan" and payload["rows"][1]["W_ext_over_TI"] == "-inf"
    assert payload["rows"][0]["t"] == 0 and payload["rows"][0]["W"] == ledger[0]["W"]
    back = demon.Ledger.from_json(tmp_path / "l.json")
    assert back[0] == ledger[0] and math.isnan(back[1]["eta"]) and back[1]["W_ext_over_TI"] == -inf
    assert isinstance(back[1]["t"], int)


# ----------------------------------------------------------------------------- summarize edges
def rows_with(**columns):
    n = len(next(iter(columns.values())))
    rows = []
    for t in range(n):
        row = {f: 0.0 for f in demon.LEDGER_FIELDS}
        row["t"] = t
        row["eta"] = 0.5
        for name, values in columns.items():
            row[name] = values[t]
        rows.append(row)
    return demon.Ledger(rows)


def test_d2_tolerance_is_relative_to_the_terms():
    # all terms 0: the bound holds with equality
    s = analysis.summarize(rows_with(D_before=[0.0], dF=[0.0], W_ext=[0.0]), 0.1)
    assert s["D2_held"] == 1 and s["D2_every_cycle"]
    # terms ~1e-3 and a slack of -1e-14: within 1e-12 of the terms' size -> held
    s = analysis.summarize(rows_with(D_before=[1e-2], dF=[0.0], W_ext=[1e-3 + 1e-17]), 0.1)
    assert s["D2_held"] == 1
    # ...but a slack of -1e-13 against terms of 1e-3 is a violation (not within 1e-12 relative)
    s = analysis.summarize(rows_with(D_before=[1e-2], dF=[0.0], W_ext=[1e-3 + 1e-13]), 0.1)
    assert s["D2_held"] == 0 and not s["D2_every_cycle"]
    # the temperature multiplies D in the bound
    s = analysis.summarize(rows_with(D_before=[1.0], dF=[0.0], W_ext=[0.15]), 0.1)
    assert s["D2_held"] == 0
    s = analysis.summarize(rows_with(D_before=[1.0], dF=[0.0], W_ext=[0.15]), 0.2)
    assert s["D2_held"] == 1 and s["W_ext_bound"] == pytest.approx(0.2)
    # dF enters with its sign: W_ext + dF <= T D
    s = analysis.summarize(rows_with(D_before=[1.0], dF=[0.05], W_ext=[0.06]), 0.1)
    assert s["D2_held"] == 0 and s["W_ext_bound"] == pytest.approx(0.05)
    s = analysis.summarize(rows_with(D_before=[1.0], dF=[-0.05], W_ext=[0.14]), 0.1)
    assert s["D2_held"] == 1 and s["W_ext_bound"] == pytest.approx(0.15)


def test_all_undefined_efficiencies_give_nan_quietly():
    ledger = rows_with(eta=[nan, nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = analysis.summarize(ledger, 0.1)
    assert math.isnan(s["eta_median"])


def test_analysis_record_and_temperature():
    scores = np.random.default_rng(3).normal(size=(3, 8, 4))
    result = analysis.analyze(scores, T=0.25, reservoir=reservoirs.swav())
    assert result.T == 0.25 and result.work_cycle == 1 and len(result.ledger) == 2
    row = result.ledger[0]
    assert row["res_G4"] == pytest.approx(0.0, abs=1e-12)
    # T is the representation temperature of the ledger: F = -T sum w log Z
    lz = np.log(np.exp(scores[0] / 0.25).sum(axis=1))
    assert row["F_before"] == pytest.approx(-0.25 * lz.mean(), rel=1e-12)
    for name in analysis.RESERVOIRS:
        assert len(analysis.analyze(scores, reservoir=name).ledger) == 2


def test_load_scores_messages(tmp_path):
    cases = [
        ({"scores": np.zeros((3, 4))}, "'scores' must be 3-D (steps, N, K), got shape (3, 4)"),
        ({"scores": np.zeros((1, 4, 3))}, "need the scores of at least 2 steps for one cycle, got 1"),
        ({"scores": np.zeros((2, 0, 3))}, "scores need N >= 1 samples and K >= 2 states, got shape (0, 3)"),
        ({"scores": np.zeros((2, 4, 1))}, "scores need N >= 1 samples and K >= 2 states, got shape (4, 1)"),
        ({"scores_0": np.zeros((4, 3)), "scores_1": np.zeros((5, 3))},
         "'scores_1' must be 2-D of the shape of 'scores_0' (4, 3), got (5, 3)"),
        ({"logits": np.zeros((2, 4, 3))}, "no 'scores' or 'scores_<t>' arrays (keys found: 'logits')"),
        ({"scores": np.full((2, 4, 3), nan)}, "scores ('scores') must be finite"),
        ({"scores": np.zeros((2, 4, 3)), "weights": np.ones(3)}, "'weights' must have shape (4,), got (3,)"),
        ({"scores": np.array([[["a", "b"]], [["c", "d"]]])}, "'scores' must hold real numbers, got dtype <U1"),
        ({"scores": np.zeros((2, 4, 3)), "scores_0": np.zeros((4, 3))},
         "holds both 'scores' and 'scores_<t>' arrays; keep one form"),
    ]
    for i, (arrays, message) in enumerate(cases):
        path = tmp_path / f"run{i}.npz"
        np.savez(path, **arrays)
        raises_exactly(ValueError, f"{path}: {message}", analysis.load_scores, path)
    raises_exactly(FileNotFoundError, f"{tmp_path / 'missing.npz'}: no such file", analysis.load_scores, tmp_path / "missing.npz")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 3, 4)))
    raises_exactly(ValueError, f"{single}: a single .npy array, not an .npz archive of scores", analysis.load_scores, single)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="^" + re.escape(f"{junk}: not a readable .npz archive (")):
        analysis.load_scores(junk)
    # integer and bool scores are real numbers; numbered arrays load in step order with weights
    path = tmp_path / "ints.npz"
    w = np.array([0.5, 0.25, 0.25])
    np.savez(path, scores_1=np.ones((3, 2), int), scores_0=np.zeros((3, 2), int), weights=w)
    scores, weights = analysis.load_scores(path)
    assert scores.tolist() == [np.zeros((3, 2)).tolist(), np.ones((3, 2)).tolist()]
    np.testing.assert_array_equal(weights, w)


# ----------------------------------------------------------------------------- defaults and records
class WrongShapeReservoir(reservoirs.Reservoir):
    T = 0.1

    def assign(self, E, w=None):
        good = reservoirs.swav().assign(E, w)
        return reservoirs.LabelState(good.q[:, :2] / good.q[:, :2].sum(1, keepdims=True), good.mu[:2],
                                     good.charges[:2], 0.0, 0.05, "sinkhorn")


def test_demon_messages_name_labels_and_previous_labels():
    d = demon.Demon(0.1, reservoirs.swav())
    raises_exactly(TypeError, "E must be a real numeric array, got dtype <U1", d.measure, np.array([["a", "b"]]))
    raises_exactly(ValueError, "q_before must have shape (2, 3), got (1, 3)", d.measure, E2, q_before=Q2[:1])
    raises_exactly(ValueError, "labels must have shape (2, 3), got (2, 2)", demon.Demon(0.1, WrongShapeReservoir()).measure, E2)
    d.measure(E2)
    raises_exactly(ValueError, "E_before must have shape (2, 3), got (3, 2)", d.feedback, E2, E_before=E2.T)
    raises_exactly(TypeError, "E must be a real numeric array, got dtype <U1", reservoirs.dino().assign, np.array([["a", "b"]]))


def test_reservoir_defaults_and_records():
    sela = reservoirs.sela()
    assert (sela.T, sela.tol, sela.max_iter, sela.warm_start, sela.relaxation) == (1 / 25, 1e-6, 1000, True, "auto")
    assert repr(sela) == "SinkhornReservoir(T=0.04, tol=1e-06, max_iter=1000, warm_start=True, relaxation='auto')"
    assert repr(reservoirs.swav(relaxation=1.5)) == "SinkhornReservoir(T=0.05, n_iter=3, warm_start=False, relaxation=1.5)"
    swav = reservoirs.swav()
    assert (swav.T, swav.n_iter, swav.warm_start, swav.relaxation) == (0.05, 3, False, 1.0)
    dino = reservoirs.dino()
    assert (dino.T, dino.momentum) == (0.04, 0.9)
    assert reservoirs.CenteringReservoir(0.1).momentum == 0.9
    assert repr(dino) == "CenteringReservoir(T=0.04, momentum=0.9)"
    frozen = reservoirs.CenteringReservoir(0.1, momentum=0.0)  # m = 0: the center is the last batch mean
    E = np.random.default_rng(4).normal(size=(6, 3))
    frozen.assign(E)
    np.testing.assert_allclose(frozen.center, -E.mean(axis=0), rtol=1e-15)
    label = dino.assign(E)
    assert (label.method, label.n_iter, label.converged, label.T, label.f) == ("centering", 0, False, 0.04, None)
    label = swav.assign(E)
    assert (label.method, label.n_iter, label.T) == ("sinkhorn", 3, 0.05)
    np.testing.assert_array_equal(label.f, thermossl.sinkhorn(E, 0.05, n_iter=3).f)


def test_centering_mean_is_accumulated_in_float64():
    # float32 scores whose float32 running sum loses the small terms: 2^24 + 1 + 1
    E = -np.array([[2.0**24, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    res = reservoirs.CenteringReservoir(0.1, momentum=0.0)
    res.assign(E)
    assert res.center[0] == (2.0**24 + 2.0) / 3


def test_ledger_table_types():
    table = small_ledger().to_numpy()
    assert table.dtype["t"] == np.int64 and table.dtype["W"] == np.float64
    assert table["t"].tolist() == [0, 1]


def test_single_state_label_rows_and_float32_tolerance():
    q1 = np.ones((3, 1))
    assert thermo.entropy(q1) == 0.0 and thermo.charges(q1).tolist() == [1.0]
    assert thermo.information(q1) == 0.0
    # float32 labels: rows summing to 1 within float32 rounding (1e-3) are accepted, weighted or not
    rng = np.random.default_rng(5)
    q = rng.uniform(0.1, 1.0, size=(40, 5))
    q /= q.sum(axis=1, keepdims=True)
    q32 = q.astype(np.float32)
    q32[0] *= np.float32(1 + 1e-4)
    w = rng.uniform(0.5, 1.5, 40)
    w /= w.sum()
    S = thermo.entropy(q32, w)
    ref = -(w @ (q32.astype(np.float64) * np.log(q32.astype(np.float64))).sum(1))
    assert S == pytest.approx(ref, rel=1e-6)
    np.testing.assert_allclose(thermo.charges(q32, w), w @ q32.astype(np.float64), rtol=1e-6)
    np.testing.assert_allclose(thermo.charges(q32), q32.astype(np.float64).mean(0), rtol=1e-6)
    assert thermo.charges(q32, w).dtype == np.float64
    # ...but float64 labels are held to 1e-6
    q64 = q.copy()
    q64[0] *= 1 + 1e-4
    with pytest.raises(ValueError, match=r"^q must be a label state with rows summing to 1 \(row 0 sums to 1.0001"):
        thermo.charges(q64)


def test_load_scores_more_cases(tmp_path):
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    raises_exactly(ValueError, f"{empty}: no 'scores' or 'scores_<t>' arrays (keys found: none)", analysis.load_scores, empty)
    one = tmp_path / "one.npz"
    np.savez(one, scores=np.zeros((2, 1, 2)))  # N = 1, K = 2: the smallest run
    assert analysis.load_scores(one)[0].shape == (2, 1, 2)
    crc = tmp_path / "crc.npz"
    np.savez(crc, scores=np.arange(24.0).reshape(2, 3, 4))
    data = bytearray(crc.read_bytes())
    data[data.find(b"NUMPY") + 200] ^= 0xFF
    crc.write_bytes(bytes(data))
    raises_exactly(ValueError, f"{crc}: 'scores' could not be read (Bad CRC-32 for file 'scores.npy')",
                   analysis.load_scores, crc)


def test_analyze_defaults_and_the_smallest_run():
    scores = np.random.default_rng(6).normal(size=(2, 5, 3))
    result = analysis.analyze(scores)
    assert result.T == 0.1 and len(result.ledger) == 1 and result.work_cycle == 0
    lz = np.log(np.exp(scores[0] / 0.1).sum(axis=1))
    assert result.ledger[0]["F_before"] == pytest.approx(-0.1 * lz.mean(), rel=1e-12)


def test_d2_scale_counts_the_free_energy_change():
    # T D = 1, dF = 1: bound 0; W_ext = 1e-13 over it, within 1e-12 of the terms' size (~2)
    s = analysis.summarize(rows_with(D_before=[10.0], dF=[1.0], W_ext=[1e-13]), 0.1)
    assert s["D2_held"] == 1


def test_format_summary_lines():
    rows = rows_with(D_before=[1.0, 2.0], dF=[0.0, 0.0], W_ext=[0.01, 0.02])
    text = analysis.format_summary(analysis.summarize(rows, 0.1))
    lines = text.split("\n")
    assert len(lines) == 6 and lines[0] == "ledger: 2 cycles"
    assert lines[4].strip().startswith("D2 (W_ext + dF <= T D) held in 2/2 cycles")


def test_sinkhorn_reservoir_passes_its_settings_through():
    E = np.random.default_rng(7).normal(size=(30, 4))
    res = reservoirs.SinkhornReservoir(0.05)
    assert (res.n_iter, res.tol, res.max_iter, res.c, res.warm_start, res.relaxation) == (None, 1e-6, 1000, None, True, 1.0)
    raises_exactly(TypeError, "E must be a real numeric array, got dtype <U1", res.assign, np.array([["a", "b"]]))
    with pytest.warns(RuntimeWarning, match="max_iter=3"):
        label = reservoirs.SinkhornReservoir(0.05, tol=1e-14, max_iter=3).assign(E)
    assert label.n_iter == 3 and not label.converged
    relaxed = reservoirs.SinkhornReservoir(0.05, n_iter=2, relaxation=1.5).assign(E)
    np.testing.assert_array_equal(relaxed.q, thermossl.sinkhorn(E, 0.05, n_iter=2, relaxation=1.5).q)
    assert not np.allclose(relaxed.q, thermossl.sinkhorn(E, 0.05, n_iter=2).q)
    c = np.array([0.1, 0.2, 0.3, 0.4])
    targeted = reservoirs.SinkhornReservoir(0.05, c=list(c), tol=1e-12).assign(E)
    np.testing.assert_allclose(targeted.charges, c, atol=1e-12)


def test_stroke_messages_name_the_argument_for_non_numeric_input():
    raises_exactly(TypeError, "q must be a real numeric array, got dtype <U1", demon.adiabatic, np.array([["a"]]), E2, E2)
    raises_exactly(TypeError, "E_after must be a real numeric array, got dtype <U1", demon.adiabatic, Q2, E2, np.array([["a"]]))


def test_ledger_rows_contract():
    """thermo.ledger_rows (README: the fused per-row kernel behind State): messages, K = 1,
    dtype promotion of mixed float32/float64 input, and mu."""
    raises_exactly(TypeError, "q must be a real numeric array, got dtype <U1", thermo.energy, np.array([["a"]]), E2)
    raises_exactly(TypeError, "E must be a real numeric array, got dtype <U1", thermo.energy, Q2, np.array([["a"]]))
    assert thermo.energy(np.ones((2, 1)), np.array([[1.5], [-0.5]])) == 0.5  # a single state
    rng = np.random.default_rng(8)
    E = rng.normal(size=(50, 6)) * 5
    q = rng.uniform(0.1, 1, size=(50, 6))
    q /= q.sum(1, keepdims=True)
    E32, q32 = E.astype(np.float32), q.astype(np.float32)
    ref = thermo.State(E32.astype(np.float64), 0.3, q)
    for E_in, q_in in ((E32, q), (E32.astype(np.float64), q)):
        got = thermo.State(E_in, 0.3, q_in)  # any float64 operand: computed in float64
        assert got.L == pytest.approx(ref.L, rel=1e-14) and got.D == pytest.approx(ref.D, rel=1e-13, abs=1e-15)
    ref2 = thermo.State(E, 0.3, q32.astype(np.float64))
    got = thermo.State(E, 0.3, q32)
    assert got.L == pytest.approx(ref2.L, rel=1e-14)
    # float32 labels within float32 rounding of a label state are accepted with float32 energies
    q_off = q32.copy()
    q_off[0] *= np.float32(1 + 1e-4)
    assert thermo.energy(q_off, E32) == pytest.approx(float(np.mean((q_off.astype(np.float64) * E32).sum(1))), rel=1e-6)
    rows, charges, w = thermo.ledger_rows(q, E, 0.3, mu=np.linspace(-1, 1, 6))
    rows32, _, _ = thermo.ledger_rows(q, E, 0.3, mu=np.linspace(-1, 1, 6).astype(np.float32))
    np.testing.assert_allclose(rows32["log_z"], rows["log_z"], rtol=1e-7)
    ref_lz = np.log(np.exp((np.linspace(-1, 1, 6) - E) / 0.3).sum(1))
    np.testing.assert_allclose(rows["log_z"], ref_lz, rtol=1e-13)
    assert w is None and charges.shape == (6,)
    raises_exactly(TypeError, "mu must be a real numeric array, got dtype <U1", thermo.ledger_rows, q, E, 0.3,
                   mu=np.array(["a"] * 6))
    raises_exactly(ValueError, "mu must have shape (6,) (one value per state), got (5,)", thermo.ledger_rows, q, E, 0.3,
                   mu=np.zeros(5))
    raises_exactly(ValueError, "mu must be finite", thermo.ledger_rows, q, E, 0.3,
                   mu=np.array([0, 0, np.nan, 0, 0, 0]))


def test_sinkhorn_default_iteration_limit():
    E = np.random.default_rng(9).normal(size=(20, 4)) * 5
    with pytest.warns(RuntimeWarning, match="max_iter=1000"):
        res = thermossl.sinkhorn(E, 0.01, tol=1e-300)
    assert res.n_iter == 1000 and not res.converged


def test_sinkhorn_edges_messages_and_warning_location():
    assert thermossl.sinkhorn(np.array([[0.3, -0.2]]), 0.1, n_iter=2).q.shape == (1, 2)  # N = 1
    assert thermossl.sinkhorn(np.array([[0.3], [-0.2]]), 0.1, n_iter=2).q.tolist() == [[1.0], [1.0]]  # K = 1
    raises_exactly(ValueError, "w must have shape (2,) (one value per sample), got (3,)", thermossl.sinkhorn, E2, 0.1,
                   np.ones(3) / 3)
    raises_exactly(ValueError, "c must have shape (3,) (one value per state), got (2,)", thermossl.sinkhorn, E2, 0.1,
                   None, np.ones(2) / 2)
    raises_exactly(ValueError, "w must have shape (2,) (one value per sample), got (3,)", thermo.energy, Q2, E2,
                   np.ones(3) / 3)
    with pytest.warns(RuntimeWarning) as record, warning_frames_as_without_mutmut():
        thermossl.sinkhorn(E2, 0.01, tol=1e-300, max_iter=2)
    assert record[0].filename == __file__  # stacklevel: the warning points at the caller
    mu0 = np.array([0.1, -0.2, 0.1])
    a = thermossl.sinkhorn(E2, 0.1, n_iter=2, mu0=mu0.astype(np.float32))
    b = thermossl.sinkhorn(E2, 0.1, n_iter=2, mu0=mu0.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(a.q, b.q)


def test_undefined_ratios_are_nan_and_small_information_is_kept():
    fresh = demon.Demon(0.1, reservoirs.swav())
    assert fresh.work_per_sample is None and fresh.heat_per_sample is None and len(fresh.ledger) == 0
    # K = 1: D_before = 0 and I = 0 exactly: eta and W_ext/(T I) are undefined (nan), not errors
    d = demon.Demon(0.1, reservoirs.dino())
    d.measure(np.array([[0.5], [1.0]]))
    row = d.feedback(np.array([[0.25], [2.0]]))
    assert row["D_before"] == 0.0 and row["I"] == 0.0
    assert math.isnan(row["eta"]) and math.isnan(row["W_ext_over_TI"])
    # K = 2: 0 < I < log 2 < 1, and the ratio is W_ext / (T I)
    rng = np.random.default_rng(10)
    E = rng.normal(size=(40, 2))
    d = demon.Demon(0.1, reservoirs.swav())
    d.measure(E)
    row = d.feedback(E + 0.1 * rng.normal(size=E.shape))
    assert 0 < row["I"] < 1
    assert row["W_ext_over_TI"] == pytest.approx(row["W_ext"] / (0.1 * row["I"]), rel=1e-12)


def test_an_empty_label_contributes_nothing_to_H_N():
    q = np.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
    s = thermo.State(E2, 1.0, q)
    N = q.mean(axis=0)
    assert s.H_N == pytest.approx(-(N[:2] * np.log(N[:2])).sum(), rel=1e-14)
    assert thermo.information(q) == pytest.approx(s.I, rel=1e-14)


def test_float32_label_rows_off_by_more_than_1e_3_are_refused():
    q = np.full((2, 4), 0.25, dtype=np.float32)
    q[1] *= np.float32(1.01)
    raises_exactly(ValueError, "q must be a label state with rows summing to 1 (row 1 sums to 1.0099999904632568)",
                   thermo.charges, q)
