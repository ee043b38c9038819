"""The command line: the worked example, ``demo`` (the README's main job), ``analyze``, bad use."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from thermossl.cli import main, run_analyze, run_example
from thermossl.demon import Ledger


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["example", "--n", "0"], "--n"),
        (["example", "--T", "-1"], "--T"),
        (["nope"], "invalid choice"),
        (["example", "--k", "x"], "--k"),
        (["demo", "--method", "byol"], "--method"),
        (["demo", "--epochs", "0"], "--epochs"),
        (["analyze"], "RUN.npz"),
        (["analyze", "missing-run.npz"], "no such file"),
        (["analyze", "run.npz", "--reservoir", "x"], "--reservoir"),
        (["analyze", "run.npz", "--T", "0"], "--T"),
    ],
)
def test_bad_use_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("thermossl: error:") and message in err, err
    assert "Traceback" not in err


def test_bad_files_exit_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, scores=np.zeros((2, 4)))  # 2-D: not (steps, N, K)
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    for path, message in ((bad, "3-D"), (junk, "not a readable .npz")):
        proc = subprocess.run([sys.executable, "-m", "thermossl", "analyze", str(path)],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert not list(tmp_path.glob("thermossl-analysis/*"))  # nothing written


def test_analyze_writes_the_books_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    scores = np.cumsum(rng.normal(scale=0.1, size=(5, 40, 6)), axis=0)
    run = tmp_path / "run.npz"
    np.savez(run, **{f"scores_{t}": s for t, s in enumerate(scores)})
    out = tmp_path / "books"
    report = io.StringIO()
    figures = run_analyze(run, 0.1, "sela", out, stream=report)
    assert figures["summary"]["cycles"] == 4
    for name in ("ledger.csv", "ledger.json", "summary.json", "cycles.png", "work_heat.png",
                 "feedback_bound.png", "information.png", "work_distribution.png", "overview.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(Ledger.from_csv(out / "ledger.csv")) == 4
    assert "4 cycles" in report.getvalue()


def test_demo_trains_evaluates_and_writes(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    proc = subprocess.run(
        [sys.executable, "-m", "thermossl", "demo", "--method", "all", "--epochs", "2", "--out", str(tmp_path / "d"),
         "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for method in ("sela", "swav", "dino"):
        folder = tmp_path / "d" / method
        ledger = Ledger.from_json(folder / "ledger.json")
        # default batch for 2 epochs: max(8, ceil(1797 / 20)) = 90, so 1797 // 90 = 19 steps per epoch
        assert len(ledger) == 2 * 19
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["method"] == method and summary["D2_every_cycle"]
        assert 0.0 <= summary["evaluation"]["nmi"] <= 1.0
        assert (folder / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert method in proc.stdout
    assert "k-means (K=10)" in proc.stdout and "NMI" in proc.stdout
