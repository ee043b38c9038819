"""examples/torch_swav.py and examples/torch_dino.py run end to end with few epochs, keep the
demon's books (one cycle per step, closing to rounding) and write the ledger and its plots."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from thermossl.demon import Ledger  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STEPS_PER_EPOCH = 1797 // 256


@pytest.mark.parametrize("name", ["torch_swav", "torch_dino"])
def test_example_runs_and_writes_its_books(name, tmp_path):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--epochs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for file in ("ledger.csv", "ledger.json", "summary.json", "overview.png", "cycles.png", "work_heat.png"):
        assert (out / file).stat().st_size > 0, file
    ledger = Ledger.from_csv(out / "ledger.csv")
    assert len(ledger) == 2 * STEPS_PER_EPOCH
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cycles"] == len(ledger) and summary["epochs"] == 2
    # float32 scores: the books close to float32 rounding
    assert summary["max_abs_res_first_law"] < 1e-5 and summary["max_abs_res_D1"] < 1e-5
    assert 0.0 <= summary["nmi"] <= 1.0


def test_example_rejects_bad_epochs():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "torch_swav.py"), "--epochs", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--epochs must be >= 1" in proc.stderr
