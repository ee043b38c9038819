"""Ledger.from_csv / Ledger.from_json: exact round trips, and every malformed file refused with a
ValueError that names the file and the line (CSV) or the row (JSON) — never a KeyError,
TypeError, AttributeError or RecursionError, never a silent conversion (t = 1.7 -> 1, true -> 1.0)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from thermossl.demon import LEDGER_FIELDS, Demon, Ledger
from thermossl.reservoirs import swav


@pytest.fixture(scope="module")
def ledger():
    rng = np.random.default_rng(0)
    demon = Demon(0.1, swav())
    E = rng.normal(size=(30, 4))
    for _ in range(3):
        demon.measure(E)
        E = E + 0.1 * rng.normal(size=E.shape)
        demon.feedback(E)
    rows = list(demon.ledger)
    rows[1]["eta"] = math.nan  # non-finite values round-trip too
    rows[2]["W_ext_over_TI"] = -math.inf
    return Ledger(rows)


def same(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert list(ra) == list(rb) == list(LEDGER_FIELDS)
        assert type(ra["t"]) is int and type(rb["t"]) is int
        for f in LEDGER_FIELDS:
            assert ra[f] == rb[f] or (math.isnan(ra[f]) and math.isnan(rb[f])), f


def test_round_trips_are_exact(ledger, tmp_path):
    ledger.to_csv(tmp_path / "l.csv")
    ledger.to_json(tmp_path / "l.json")
    same(Ledger.from_csv(tmp_path / "l.csv"), ledger)
    same(Ledger.from_json(tmp_path / "l.json"), ledger)
    # Columns in another order are the same ledger; blank lines are skipped.
    lines = (tmp_path / "l.csv").read_text().splitlines()
    cells = [line.split(",") for line in lines]
    order = list(reversed(range(len(cells[0]))))
    (tmp_path / "r.csv").write_text("\n\n".join(",".join(c[i] for i in order) for c in cells) + "\n")
    same(Ledger.from_csv(tmp_path / "r.csv"), ledger)


def csv_text(ledger, edit):
    """The CSV of `ledger` with edit(header, rows) applied (lists of cells)."""
    header = list(LEDGER_FIELDS)
    rows = [[repr(r[f]) for f in header] for r in ledger]
    edit(header, rows)
    return "\n".join(",".join(cells) for cells in [header, *rows]) + "\n"


def set_cell(row, field, value):
    def edit(header, rows):
        rows[row][header.index(field)] = value

    return edit


def drop_column(field):
    def edit(header, rows):
        i = header.index(field)
        del header[i]
        for r in rows:
            del r[i]

    return edit


def add_column(field):
    def edit(header, rows):
        header.append(field)
        for r in rows:
            r.append("0.0")

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (set_cell(1, "t", "1.7"), r"line 3: t must be an integer >= 0, got '1.7'"),
        (set_cell(0, "t", "-1"), r"line 2: t must be an integer >= 0"),
        (set_cell(0, "t", ""), r"line 2: t must be an integer >= 0, got ''"),
        (set_cell(2, "W", "true"), r"line 4: W must be a number, got 'true'"),
        (set_cell(0, "Q", ""), r"line 2: Q must be a number, got ''"),
        (drop_column("Sigma"), r"line 1 \(header\): not a ledger's fields: missing fields \['Sigma'\]"),
        (add_column("bogus"), r"line 1 \(header\): not a ledger's fields: unknown fields \['bogus'\]"),
        (add_column("W"), r"repeated fields \['W'\]"),
        (lambda h, rows: rows[1].append("1.0"), r"line 3: \d+ cells, the header has \d+"),
        (lambda h, rows: rows[0].pop(), r"line 2: \d+ cells, the header has \d+"),
    ],
)
def test_malformed_csv_is_refused_naming_file_and_line(ledger, tmp_path, edit, message):
    path = tmp_path / "ledger.csv"
    path.write_text(csv_text(ledger, edit))
    with pytest.raises(ValueError, match=message) as info:
        Ledger.from_csv(path)
    assert str(info.value).startswith(f"{path}, line ")


def test_csv_files_that_are_not_ledgers(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        Ledger.from_csv(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=f"{binary}: not a UTF-8 text file"):
        Ledger.from_csv(binary)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing fields"):
        Ledger.from_csv(other)
    with pytest.raises(FileNotFoundError):
        Ledger.from_csv(tmp_path / "missing.csv")


def json_payload(ledger):
    return {"fields": {f: "" for f in LEDGER_FIELDS},
            "rows": [{f: (v if isinstance(v, int) or math.isfinite(v) else repr(v)) for f, v in r.items()}
                     for r in ledger]}


def edit_row(i, **values):
    def edit(payload):
        payload["rows"][i].update(values)

    return edit


def drop_field(i, field):
    def edit(payload):
        del payload["rows"][i][field]

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (edit_row(1, t=1.7), r"row 1 \(rows\[1\]\): t must be an integer >= 0, got 1.7"),
        (edit_row(1, t=True), r"row 1 \(rows\[1\]\): t must be an integer >= 0, got True"),
        (edit_row(0, t="0"), r"t must be an integer >= 0, got '0'"),
        (edit_row(2, W=True), r"row 2 \(rows\[2\]\): W must be a number .*got True"),
        (edit_row(0, W="1.5"), r"W must be a number .*got '1.5'"),
        (edit_row(0, W=None), r"W must be a number .*got None"),
        (edit_row(0, W=[1.0]), r"W must be a number .*got \[1.0\]"),
        (edit_row(0, W=10**400), "too large for a float"),
        (drop_field(1, "Q"), r"row 1 \(rows\[1\]\): not a ledger's fields: missing fields \['Q'\]"),
        (edit_row(0, extra=1.0), r"row 0 \(rows\[0\]\): not a ledger's fields: unknown fields \['extra'\]"),
        (lambda p: p["rows"].append([1, 2]), r"row 3 \(rows\[3\]\): a row must be an object of fields, got list"),
        (lambda p: p.pop("rows"), r'not a JSON ledger \(an object with a "rows" list\)'),
        (lambda p: p.update(rows={"t": 0}), r'not a JSON ledger'),
    ],
)
def test_malformed_json_is_refused_naming_file_and_row(ledger, tmp_path, edit, message):
    payload = json_payload(ledger)
    edit(payload)
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=message) as info:
        Ledger.from_json(path)
    assert str(info.value).startswith(str(path))


def test_json_files_that_are_not_ledgers(ledger, tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text('{"rows": [\n{"t": 0,\n "W": }\n]}')
    with pytest.raises(ValueError, match=f"{path}, line 3, column 7: not JSON"):
        Ledger.from_json(path)
    path.write_text("[" * 100_000 + "]" * 100_000)  # json.load: RecursionError
    with pytest.raises(ValueError, match="nested too deeply"):
        Ledger.from_json(path)
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a JSON ledger"):
        Ledger.from_json(path)
    text = json.dumps(json_payload(ledger))
    path.write_text(text.replace('"t": 0,', '"t": 0, "t": 1,', 1))
    with pytest.raises(ValueError, match=r"repeats the keys \['t'\]"):
        Ledger.from_json(path)
    path.write_bytes(b"\x80\x81")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        Ledger.from_json(path)
    # JSON's own NaN/Infinity and the strings to_json writes are the same floats.
    payload = json_payload(ledger)
    payload["rows"][0]["eta"] = "nan"
    payload["rows"][0]["W_ext_over_TI"] = "-inf"
    path.write_text(json.dumps(payload).replace('"nan"', "NaN", 1))
    row = Ledger.from_json(path)[0]
    assert math.isnan(row["eta"]) and row["W_ext_over_TI"] == -math.inf
    assert_array_equal(Ledger.from_json(path).column("W"), ledger.column("W"))
