"""Ledger.from_csv on a file the csv module cannot parse (found by mutation testing, issue 20): a
ValueError naming the file, the line and csv's reason."""
from __future__ import annotations

import csv

import pytest

from thermossl.demon import LEDGER_FIELDS, Ledger


@pytest.mark.parametrize("line", [1, 2])
def test_csv_the_csv_module_refuses_names_file_and_line(line, tmp_path):
    # A cell longer than csv's field size limit: csv.Error, whatever the cell holds.
    path = tmp_path / "ledger.csv"
    huge = "1" * (csv.field_size_limit() + 10)
    rows = [",".join(LEDGER_FIELDS), ",".join("0" for _ in LEDGER_FIELDS)]
    rows[line - 1] = huge + "," + rows[line - 1]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(csv.Error) as reference:  # csv's own words, from csv itself
        list(csv.reader([huge]))
    with pytest.raises(ValueError) as info:
        Ledger.from_csv(path)
    assert str(info.value) == f"{path}, line {line}: not a CSV ledger ({reference.value})"


# ----------------------------------------------------------------------------- demon messages
import json  # noqa: E402

import numpy as np  # noqa: E402

from thermossl import reservoirs  # noqa: E402
from thermossl.demon import Demon  # noqa: E402
from thermossl.reservoirs import LabelState  # noqa: E402

E43 = np.random.default_rng(0).normal(size=(4, 3))


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


def test_header_with_several_problems_lists_them_all(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text(",".join(["x", *LEDGER_FIELDS[1:], "y"]) + "\n", encoding="utf-8")
    raises_exactly(ValueError, f"{path}, line 1 (header): not a ledger's fields: missing fields ['t']; unknown fields "
                   "['x', 'y']", Ledger.from_csv, path)


def test_json_infinities_as_strings_are_read(tmp_path):
    d = Demon(0.5, reservoirs.swav())
    d.measure(E43)
    d.feedback(E43 + 0.1)
    path = tmp_path / "ledger.json"
    d.ledger.to_json(path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["rows"][0]["eta"], payload["rows"][0]["I"] = "inf", "-inf"
    path.write_text(json.dumps(payload), encoding="utf-8")
    row = Ledger.from_json(path)[0]
    assert row["eta"] == np.inf and row["I"] == -np.inf


def test_repeated_ids_are_refused():
    raises_exactly(ValueError, "index must not repeat an id within one measurement (one row per sample)",
                   Demon(0.5, reservoirs.swav()).measure, E43, index=[1, 2, 2, 3])


def test_chained_labels_of_another_state_count_are_refused():
    d = Demon(0.5, reservoirs.swav())
    d.measure(E43, index=[0, 1, 2, 3])
    d.feedback(E43)
    raises_exactly(ValueError, "E has 5 states but the demon keeps labels of 3 states for earlier samples; call "
                   "reset() to start new books", d.measure, np.zeros((4, 5)), index=[0, 1, 2, 3])


class _FixedLabels(reservoirs.Reservoir):
    """A reservoir written elsewhere that returns uniform labels with the given mu."""

    def __init__(self, mu):
        self.mu = mu

    def assign(self, E, w=None) -> LabelState:
        q = np.full(E.shape, 1 / E.shape[1])
        return LabelState(q=q, mu=self.mu, charges=q.mean(axis=0), charge_err=0.0, T=0.5, method="fixed")


def test_a_reservoirs_potentials_are_checked_by_name():
    raises_exactly(ValueError, "mu must have shape (3,) (one value per state), got (4,)",
                   Demon(0.5, _FixedLabels(np.zeros(4))).measure, E43)


def test_ids_beyond_float64_integers_stay_distinct():
    # 2**53 and 2**53 + 1 are distinct int64 ids (one float64 value): not a repeated id.
    big = 2**53
    d = Demon(0.5, reservoirs.swav())
    label = d.measure(E43, index=np.array([big, big + 1, 0, 1], dtype=np.int64))
    assert label.q.shape == (4, 3)
