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
