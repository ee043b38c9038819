"""The command line: the worked example, ``demo`` (the README's main job), ``analyze``, bad use."""
from __future__ import annotations

import io
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from thermossl import analysis
from thermossl.cli import UsageError, _Outputs, main, run_analyze, run_demo, run_example
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
    huge = tmp_path / "huge.npz"
    huge_header_npz(huge)  # was a MemoryError traceback, exit 1
    for path, message in ((bad, "3-D"), (junk, "not a readable .npz"), (huge, "declares shape (3, 100000, 100000)")):
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


# ---------------------------------------------------------------------------------------------
# The contract: every failure is one line on stderr, exit 2, nothing written (issue 14, item 4);
# Ctrl-C is one line, exit 130, nothing written; analyze takes codes and array names (issue 15).


def drifting_scores(steps=4, n=30, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(scale=0.1, size=(steps, n, k)), axis=0)


def huge_header_npz(path):
    """An .npz whose 'scores' header declares (3, 100000, 100000) float64 (224 GiB), 64 bytes stored."""
    import io
    import zipfile

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (3, 100000, 100000)})
    buffer.write(b"\0" * 64)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scores.npy", buffer.getvalue())


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line_error(err, message):
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("thermossl: error: ") and message in err, err
    assert "Traceback" not in err


def _run_with(tmp_path, **arrays):
    run = tmp_path / "run.npz"
    np.savez(run, **arrays)
    return str(run)


FAILURES = {
    "huge header": (lambda d: huge_header_npz(d / "run.npz") or [str(d / "run.npz")],
                    "declares shape (3, 100000, 100000) float64 (223.5 GiB) but the file stores 64 bytes"),
    "scores x 1e300": (lambda d: [_run_with(d, scores=drifting_scores() * 1e300)], "the books are out of range"),
    "T = 1e-300": (lambda d: [_run_with(d, scores=drifting_scores()), "--T", "1e-300"], "the books are out of range"),
    "scores_1 beside scores_01": (
        lambda d: [_run_with(d, scores_0=drifting_scores()[0], scores_1=drifting_scores()[1], scores_01=drifting_scores()[2])],
        "'scores_01' and 'scores_1' both give step 1"),
    "logits without --scores-key": (lambda d: [_run_with(d, logits=drifting_scores(), weights=np.full(30, 1 / 30))],
                                    "(keys found: 'logits', 'weights'); name the array with --scores-key"),
    "missing --codes-key": (lambda d: [_run_with(d, scores=drifting_scores()), "--codes-key", "labels"],
                            "no 'labels' or 'labels_<t>' arrays (keys found: 'scores')"),
    "missing --teacher-key": (lambda d: [_run_with(d, scores=drifting_scores()), "--teacher-key", "ema"],
                              "no 'ema' or 'ema_<t>' arrays"),
    "codes and --reservoir": (
        lambda d: [_run_with(d, scores=drifting_scores(), codes=np.full((3, 30, 5), 0.2)), "--reservoir", "sela"],
        "--reservoir applies only to a reservoir's labels (--ignore-codes"),
    "codes and --T-label": (
        lambda d: [_run_with(d, scores=drifting_scores(), codes=np.full((3, 30, 5), 0.2)), "--T-label", "0.1"],
        "--T-label applies only"),
    "codes not label states": (lambda d: [_run_with(d, scores=drifting_scores(), codes=np.full((3, 30, 5), 0.3))],
                               "'codes' must be label states, rows summing to 1 (step 0, row 0 sums to 1.5"),
    "teacher not finite": (lambda d: [_run_with(d, scores=drifting_scores(), teacher=np.full((4, 30, 5), np.nan))],
                           "the teacher's scores ('teacher') must be finite"),
    "weights not a distribution": (lambda d: [_run_with(d, scores=drifting_scores(), weights=np.ones(30))], "w"),
    "--codes-key with --ignore-codes": (lambda d: [_run_with(d, scores=drifting_scores()), "--codes-key", "c",
                                                   "--ignore-codes"], "exclude each other"),
    "missing file": (lambda d: [str(d / "nothing.npz")], "no such file"),
    "output inside a file": (lambda d: [_run_with(d, scores=drifting_scores()), "--out", str(d / "run.npz" / "x")],
                             "is a file, not a folder"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_every_analyze_failure_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, message = FAILURES[case]
    args = make(tmp_path)
    before = files_under(tmp_path)
    argv = ["analyze", *args] + ([] if "--out" in args else ["--out", str(tmp_path / "books" / "run1")])
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err, message)
    assert files_under(tmp_path) == before  # no output folder, no staging folder, nothing


def test_demo_with_one_prototype_is_one_line_exit_2(tmp_path, capsys):
    assert main(["demo", "--prototypes", "1", "--out", str(tmp_path / "d")]) == 2
    one_line_error(capsys.readouterr().err, "argument --prototypes: must be >= 2, got 1")
    assert files_under(tmp_path) == []
    with pytest.raises(UsageError, match="--prototypes must be >= 2"):  # the Python entry point too
        run_demo(["swav"], 1, 0, tmp_path / "d", n_prototypes=1)
    assert files_under(tmp_path) == []


@pytest.fixture
def existing_output(tmp_path):
    """An output folder that already holds a user's file and an old ledger."""
    out = tmp_path / "books"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "ledger.csv").write_text("old")
    return out


def _failing_plots(exception, after_files=2):
    """A save_plots that writes `after_files` figures, then raises `exception`."""

    def save_plots(ledger, out_dir, T, **kwargs):
        for i in range(after_files):
            (pathlib.Path(out_dir) / f"figure{i}.png").write_bytes(b"\x89PNG partial")
        raise exception

    return save_plots


@pytest.mark.parametrize(
    "exception, status, message",
    [
        (KeyboardInterrupt(), 130, "thermossl: interrupted\n"),
        (OverflowError("cannot convert float infinity to integer"), 2,
         "thermossl: error: the plots cannot be drawn (OverflowError: cannot convert float infinity to integer)\n"),
        (OSError(28, "No space left on device"), 2, "No space left on device\n"),
    ],
)
@pytest.mark.parametrize("into_existing", [False, True])
def test_a_failure_while_writing_leaves_nothing_behind(exception, status, message, into_existing, tmp_path,
                                                       existing_output, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import thermossl.plots

    monkeypatch.setattr(thermossl.plots, "save_plots", _failing_plots(exception))
    run = _run_with(tmp_path, scores=drifting_scores())
    out = existing_output if into_existing else tmp_path / "new" / "books"
    before = files_under(tmp_path)
    assert main(["analyze", run, "--out", str(out)]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(message) and "Traceback" not in err, err
    assert files_under(tmp_path) == before
    assert (existing_output / "ledger.csv").read_text() == "old"


def test_outputs_move_into_an_existing_folder(tmp_path, existing_output, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import thermossl.plots

    names = ["cycles.png", "work_heat.png", "feedback_bound.png", "information.png", "work_distribution.png",
             "overview.png"]

    def quick_plots(ledger, out_dir, T, **kwargs):  # the files, not the drawing (test_plots draws)
        paths = [pathlib.Path(out_dir) / name for name in names]
        for path in paths:
            path.write_bytes(b"\x89PNG")
        return paths

    monkeypatch.setattr(thermossl.plots, "save_plots", quick_plots)
    scores = drifting_scores()
    run = _run_with(tmp_path, logits=scores)
    assert main(["analyze", run, "--scores-key", "logits", "--out", str(existing_output)]) == 0
    assert set(files_under(existing_output)) == {"ledger.csv", "ledger.json", "summary.json", "notes.txt", *names}
    assert (existing_output / "notes.txt").read_text() == "mine"
    expected = analysis.analyze(scores, 0.1, "swav")  # --scores-key logits: the same books
    assert_array_equal(Ledger.from_csv(existing_output / "ledger.csv").to_numpy(), expected.ledger.to_numpy())
    summary = json.loads((existing_output / "summary.json").read_text())
    assert summary["keys"] == {"scores": "logits"} and summary["cycles"] == 3
    out = capsys.readouterr().out
    assert "('logits')" in out and f"wrote 9 files to {existing_output}/" in out


def test_analyze_replays_the_recorded_codes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    scores = drifting_scores()
    rng = np.random.default_rng(3)
    codes = np.eye(5)[rng.integers(0, 5, size=(4, 30))]
    run = _run_with(tmp_path, **{f"s_{t}": s for t, s in enumerate(scores)}, **{f"c_{t}": c for t, c in enumerate(codes)})
    out = tmp_path / "books"
    assert main(["analyze", run, "--scores-key", "s", "--codes-key", "c", "--T", "0.5", "--out", str(out)]) == 0
    ledger = Ledger.from_json(out / "ledger.json")
    expected = analysis.analyze(scores, 0.5, codes=codes[:-1]).ledger
    for field in Ledger.fields:  # nan where nan
        assert_array_equal(ledger.column(field), expected.column(field), err_msg=field)
    # The labels are the codes: the work of cycle t is sum w q_t (E_{t+1} - E_t) over the codes.
    W = [(codes[t] * (scores[t] - scores[t + 1])).sum() / 30 for t in range(3)]
    np.testing.assert_allclose(ledger.column("W"), W, rtol=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == "recorded codes 'c'" and summary["Sigma"] == "nan"  # strict JSON: nan as a string
    assert summary["steps"] == [0, 1, 2, 3]
    text = capsys.readouterr().out
    assert "labels: recorded codes 'c'" in text and "Sigma = n/a" in text


def test_ctrl_c_during_demo_exits_130_with_one_line_and_nothing_written(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "thermossl", "demo", "--method", "swav", "--epochs", "1000", "--no-progress",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        header = proc.stdout.readline()  # printed once the data are loaded; training follows
        assert "demo: swav" in header, header + proc.stderr.read()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr == "thermossl: interrupted\n"
    assert files_under(tmp_path) == []  # no output folder, no staging folder


def test_outputs_merge_into_existing_subfolders(tmp_path):
    out = tmp_path / "demo"
    (out / "swav").mkdir(parents=True)
    (out / "swav" / "mine.txt").write_text("kept")
    (out / "swav" / "ledger.csv").write_text("old")
    outputs = _Outputs(out, subfolders=("sela", "swav"))
    staging = outputs.stage()
    assert staging.parent == out and staging.name.startswith(".thermossl-partial-")
    for method in ("sela", "swav"):
        (staging / method).mkdir()
        (staging / method / "ledger.csv").write_text(method)
    outputs.commit()
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "sela", "sela/ledger.csv", "swav", "swav/ledger.csv", "swav/mine.txt"]
    assert (out / "swav" / "ledger.csv").read_text() == "swav" and (out / "swav" / "mine.txt").read_text() == "kept"
    # A new folder deep under a missing parent: staged in the nearest existing folder, then renamed.
    outputs = _Outputs(tmp_path / "a" / "b" / "c")
    staging = outputs.stage()
    assert staging.parent == tmp_path and not (tmp_path / "a").exists()
    (staging / "f").write_text("x")
    outputs.commit()
    assert (tmp_path / "a" / "b" / "c" / "f").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "demo"]
