"""The worked example (README's main-job command) and its command line."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from thermossl.cli import main, run_example


def test_example_books_close_and_feedback_lowers_the_loss():
    report = io.StringIO()
    figures = run_example(n=300, k=17, T=0.1, T_label=0.05, seed=3, out=report)
    for name, residual in figures["residuals"].items():
        assert abs(residual) < 1e-12, name
    L_before, L_after = figures["loss"]
    assert L_after < L_before
    D_before, D_after = figures["D"]
    assert 0 <= D_after < D_before
    assert 0 < figures["charge_error"] < 0.5  # three SwAV iterations: balanced, not converged
    text = report.getvalue()
    assert "G1" in text and "D1" in text and "GGE1" in text and "300 samples x 17 prototypes" in text


def test_module_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "thermossl", "example", "--n", "64", "--k", "5", "--seed", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "identities" in proc.stdout


@pytest.mark.parametrize("argv", [["example", "--n", "0"], ["example", "--T", "-1"], ["nope"], ["example", "--k", "x"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
