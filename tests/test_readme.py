"""The README's ledger example runs as written and its books close."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_ledger_example_runs(tmp_path, monkeypatch):
    if not README.exists():
        pytest.fail("README.md not found beside tests/")
    text = README.read_text()
    match = re.search(r"<!-- ledger-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its ledger example"
    code = match.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 11
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    ledger = namespace["d"].ledger
    assert len(ledger) == 20
    table = ledger.to_numpy()
    assert np.max(np.abs(table["res_first_law"])) < 1e-10
    assert np.max(np.abs(table["res_D1"])) < 1e-10
    assert (tmp_path / "ledger.csv").exists()
    # the step is a descent step on the loss: the loss falls over the run
    assert table["L_after"][-1] < table["L_before"][0]
