"""Command line ``thermossl`` (also ``python -m thermossl``):

- ``thermossl demo``: self-labelling SSL (SeLa, SwAV, DINO) on scikit-learn's handwritten digits
  with the demon's ledger, an evaluation table beside k-means, ledger files and plots;
- ``thermossl analyze RUN.npz``: the same ledger and plots for scores saved from any training;
- ``thermossl example`` (the default): a worked example through the kernels.

Bad use (a missing or unreadable file, wrong shapes, missing arrays, unknown option values, books
out of range) prints one line on stderr and exits with status 2; Ctrl-C prints one line and exits
with status 130. Outputs are staged in a hidden folder and moved into place only when every file
is written: a failed or interrupted command leaves nothing behind.

The worked example walks one batch of synthetic self-labelling scores through the kernels:
the Gibbs state of the student (T), self-labels balanced by a colder reservoir (T', SwAV's three
Sinkhorn iterations), the free energy, entropies, loss and relative entropy, the identities
G1-G4 and GGE1 of the theory page of the documentation closing to rounding, and one feedback step (an adiabatic stroke)
whose extracted work satisfies D1.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO, Union

import numpy as np

from . import __version__
from .balancing import sinkhorn
from .gibbs import cross_entropy, gibbs, gibbs_entropy, log_partition
from .special import log_softmax, logsumexp

__all__ = ["main", "run_example", "run_demo", "run_analyze", "UsageError"]

def _unit_rows(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_example(n: int, k: int, T: float, T_label: float, seed: int, out: Optional[TextIO] = None) -> dict[str, Any]:
    """Run the worked example through the kernels and print its report.

    Parameters
    ----------
    n : int
        Samples of the synthetic batch.
    k : int
        States (prototypes).
    T : float
        The student's temperature.
    T_label : float
        The reservoir temperature T' of the labels.
    seed : int
        Seed of the synthetic scores.
    out : text stream, optional
        Where the report goes (default: standard output).

    Returns
    -------
    dict of str to Any
        The figures of the report (the books and the residuals of the identities).
    """
    out = sys.stdout if out is None else out
    rng = np.random.default_rng(seed)
    # Scores as in SwAV/DINO: cosine similarity of L2-normalised embeddings and prototypes.
    embeddings = _unit_rows(rng, n, 32)
    prototypes = _unit_rows(rng, k, 32)
    E = -(embeddings @ prototypes.T)  # energies = -scores
    w = np.full(n, 1.0 / n)

    def books(E):
        log_z = log_partition(E, T)
        p = gibbs(E, T)
        return {
            "F": -T * w @ log_z,
            "U_p": w @ np.einsum("iy,iy->i", p, E),
            "S_p": w @ gibbs_entropy(E, T),
            "log_p": log_softmax(-E / T, axis=1),
        }

    # Self-labels from a colder reservoir: SwAV's balancing, the GGE at T' with potentials mu.
    labels = sinkhorn(E, T_label, n_iter=3)
    q = labels.q
    log_q = (labels.f[:, None] + labels.mu[None, :] - E) / T_label
    S_q = -w @ np.einsum("iy,iy->i", q, log_q)
    U_q = w @ np.einsum("iy,iy->i", q, E)
    charges = w @ q

    before = books(E)
    loss, grad = cross_entropy(q, E, T, grad=True)
    L = w @ loss
    D = w @ np.einsum("iy,iy->i", q, log_q - before["log_p"])
    residuals = {
        "G1  F = U[p] - T S[p]": before["F"] - (before["U_p"] - T * before["S_p"]),
        "G2  L = S[q] + D(q||p)": L - (S_q + D),
        "G3  F_T[q] - F = T D": (U_q - T * S_q - before["F"]) - T * D,
        "G4  L = (U[q] - F)/T": L - (U_q - before["F"]) / T,
        "GGE1 Phi_mu[q] = sum w f": (U_q - labels.mu @ charges - T_label * S_q) - w @ labels.f,
    }

    # Feedback: one gradient step on the energies with the labels held fixed (adiabatic stroke).
    step = 0.5 * T
    E_after = E - step * n * (w[:, None] * grad)  # dL/dE_iy = w_i (q - p)/T
    after = books(E_after)
    work = w @ np.einsum("iy,iy->i", q, E_after - E)
    D_after = w @ np.einsum("iy,iy->i", q, log_q - after["log_p"])
    L_after = w @ cross_entropy(q, E_after, T)
    extracted = -work
    residuals["D1  W_ext = T[D - D'] - dF"] = extracted - (T * (D - D_after) - (after["F"] - before["F"]))

    # The same partition functions by scipy, if it is installed, for a speed comparison.
    timings = {}
    x = -E / T
    t0 = time.perf_counter()
    logsumexp(x, axis=1)
    timings["thermossl.logsumexp"] = time.perf_counter() - t0
    try:
        import scipy.special

        t0 = time.perf_counter()
        scipy.special.logsumexp(x, axis=1)
        timings["scipy.special.logsumexp"] = time.perf_counter() - t0
    except ImportError:
        pass

    p = print
    p(f"thermossl {__version__} — worked example: {n} samples x {k} prototypes, T = {T}, T' = {T_label}", file=out)
    p("", file=out)
    p("state of the batch (weights 1/N)", file=out)
    p(f"  free energy        F      = {before['F']: .10f}", file=out)
    p(f"  energy of p        U[p]   = {before['U_p']: .10f}", file=out)
    p(f"  entropy of p       S[p]   = {before['S_p']: .10f}   (max log K = {np.log(k):.4f})", file=out)
    p(f"  energy of labels   U[q]   = {U_q: .10f}", file=out)
    p(f"  entropy of labels  S[q]   = {S_q: .10f}", file=out)
    p(f"  loss               L      = {L: .10f}", file=out)
    p(f"  relative entropy   D(q||p)= {D: .10f}", file=out)
    p(f"  label charges      N_y in [{charges.min():.6f}, {charges.max():.6f}] vs c = 1/K = {1 / k:.6f}; "
      f"error {labels.err:.3e} after {labels.n_iter} Sinkhorn iterations", file=out)
    p("", file=out)
    p(f"feedback step (labels fixed): W = {work:.6e}, W_ext = {extracted:.6e}, dF = {after['F'] - before['F']:.6e}", file=out)
    p(f"  loss {L:.8f} -> {L_after:.8f}; D(q||p) {D:.8f} -> {D_after:.8f}", file=out)
    p("", file=out)
    p("identities (residuals; float64 rounding is ~1e-16 x the terms)", file=out)
    for name, value in residuals.items():
        p(f"  {name:<30s} {value: .3e}", file=out)
    p("", file=out)
    for name, seconds in timings.items():
        p(f"  {name:<26s} {seconds * 1e3:8.3f} ms  (one call, {n}x{k} float64)", file=out)
    return {
        "residuals": residuals,
        "loss": (L, L_after),
        "work": work,
        "D": (D, D_after),
        "F": before["F"],
        "charge_error": labels.err,
    }


class UsageError(Exception):
    """Bad use of the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, no usage block
        raise UsageError(message)


def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _temperature(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _key(text):
    if not text:
        raise argparse.ArgumentTypeError("an array name must not be empty")
    return text


# ---------------------------------------------------------------------------------------------
# Outputs: staged in a hidden folder, moved into place only when everything is written.


@contextlib.contextmanager
def _sigint_held(reraise: bool):
    """Hold Ctrl-C (SIGINT) while moving files into place or cleaning up, so neither is left half
    done; afterwards a held Ctrl-C raises KeyboardInterrupt (``reraise``) or is dropped (the
    command is ending anyway). Only the main thread can set signal handlers: elsewhere, no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        # None: a handler not installed from Python (embedding); the default is the best restore.
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if held and reraise:
        raise KeyboardInterrupt


class _Outputs:
    """The output folder of a command, written all or nothing.

    Checked when made (before any work): the folder, if it exists, is a writable folder, else its
    nearest existing parent is. ``stage()`` makes a hidden staging folder (inside the output folder
    when it exists, else in that parent: the same file system, so the final moves are renames);
    ``commit()`` moves the staged files into place; ``discard()`` deletes the staging folder. A
    failed or interrupted command therefore leaves no half-written file and no empty folder.
    """

    def __init__(self, path, subfolders=()):
        self.path = Path(path)
        self.staging = None
        existing = self.path
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        where = str(self.path)
        if not existing.is_dir():
            what = "the output folder" if existing == self.path else f"{str(existing)!r} in the output folder's path"
            raise UsageError(f"cannot create the output folder {where!r}: {what} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            if existing == self.path:
                raise UsageError(f"the output folder {where!r} is not writable")
            raise UsageError(f"cannot create the output folder {where!r}: {str(existing)!r} is not writable")
        self.anchor = existing
        self.exists = existing == self.path
        for name in subfolders:
            sub = self.path / name
            if sub.exists() and not sub.is_dir():
                raise UsageError(f"cannot write into {str(sub)!r}: a file, not a folder")

    def stage(self) -> Path:
        with _sigint_held(reraise=True):  # a Ctrl-C now finds the staging folder recorded
            try:
                self.staging = Path(tempfile.mkdtemp(prefix=".thermossl-partial-", dir=self.anchor))
            except OSError as exc:
                raise UsageError(f"cannot create the output folder {str(self.path)!r} (writing in {str(self.anchor)!r}): "
                                 f"{exc.strerror or exc}") from None
        return self.staging

    def commit(self) -> None:
        with _sigint_held(reraise=True):
            try:
                if self.exists:  # the output folder exists: move the files in
                    _move_contents(self.staging, self.path)
                    self.staging.rmdir()
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(self.staging, self.path)
            except OSError as exc:
                raise UsageError(f"cannot move the outputs into {str(self.path)!r}: {exc.strerror or exc}") from None
            finally:
                self.discard()

    def discard(self) -> None:
        if self.staging is not None and self.staging.exists():
            with _sigint_held(reraise=False):
                shutil.rmtree(self.staging, ignore_errors=True)
        self.staging = None


def _move_contents(source: Path, target: Path) -> None:
    """Move every file under `source` to the same place under `target` (replacing files there)."""
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if destination.is_dir():
                _move_contents(entry, destination)
                entry.rmdir()
            else:
                os.rename(entry, destination)
        else:
            os.replace(entry, destination)


def _json_safe(value):
    """nan and inf as strings (as Ledger.to_json), so summary.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _check_books(books, where):
    """The ledger and work of `books` (an Analysis or a training result) finite and drawable."""
    from .analysis import NAN_FIELDS, check_books

    try:
        check_books(books.ledger, getattr(books, "nan_fields", NAN_FIELDS), books.work_per_sample)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _write_books(ledger, summary, out: Path, T, work_per_sample, work_cycle, extra=None):
    """ledger.csv, ledger.json, summary.json and the plots into `out` (a staging folder); returns
    the file names written."""
    out.mkdir(exist_ok=True)
    written = [out / "ledger.csv", out / "ledger.json", out / "summary.json"]
    try:
        ledger.to_csv(written[0])
        ledger.to_json(written[1])
        with open(written[2], "w") as handle:
            json.dump(_json_safe({**summary, **(extra or {})}), handle, indent=1)
        try:
            from .plots import save_plots
        except ImportError as exc:  # pragma: no cover - plots.py imports matplotlib lazily
            save_plots = None
            print(f"thermossl: plots skipped ({exc})", file=sys.stderr)
        if save_plots is not None:
            try:
                written += save_plots(ledger, out, T, work_per_sample=work_per_sample, work_cycle=work_cycle)
            except ImportError as exc:
                print(f"thermossl: plots skipped ({exc})", file=sys.stderr)
            except (OverflowError, ValueError, FloatingPointError) as exc:
                raise UsageError(f"the plots cannot be drawn ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    return [w.name for w in written]


def _evaluation_table(rows) -> str:
    header = f"{'method':<16s} {'NMI':>7s} {'ARI':>7s} {'k-NN acc':>9s} {'clusters':>9s} {'W total':>10s} {'seconds':>8s}"
    lines = [header, "-" * len(header)]
    for name, r in rows:
        w = f"{r['W']:+10.4f}" if "W" in r else f"{'':>10s}"
        secs = f"{r['seconds']:8.1f}" if "seconds" in r else f"{'':>8s}"
        used = f"{r['clusters_used']:>9d}" if "clusters_used" in r else f"{'':>9s}"
        lines.append(f"{name:<16s} {r['nmi']:7.3f} {r['ari']:7.3f} {r['knn']:9.3f} {used} {w} {secs}")
    return "\n".join(lines)


def run_demo(methods: Sequence[str], epochs: int, seed: int, out_dir: Union[str, os.PathLike[str]], n_prototypes: int = 10,
             progress: bool = True, stream: Optional[TextIO] = None) -> dict[str, Any]:
    """Train each method on the digits, keep its books, evaluate beside k-means.

    The files are staged and moved into ``out_dir`` only when every method has trained and every
    file is written (several methods: one folder per method). See the command-line page of the
    documentation.

    Parameters
    ----------
    methods : sequence of str
        Among 'sela', 'swav', 'dino'.
    epochs : int
        Training epochs per method.
    seed : int
        Seed of the run.
    out_dir : str or os.PathLike
        Where the ledgers, summaries and plots go.
    n_prototypes : int, optional
        Prototypes (label states), >= 2.
    progress : bool, optional
        Show a progress bar (tqdm, when installed).
    stream : text stream, optional
        Where the report goes (default: standard output).

    Returns
    -------
    dict of str to Any
        The summary and evaluation of each method.

    Raises
    ------
    UsageError
        For bad options (the command prints it and exits with status 2).
    """
    from . import ssl
    from .analysis import format_summary, summarize

    stream = sys.stdout if stream is None else stream
    if n_prototypes < 2:
        raise UsageError(f"--prototypes must be >= 2 (labels need at least 2 states), got {n_prototypes}")
    outputs = _Outputs(out_dir, subfolders=methods if len(methods) > 1 else ())
    try:
        X, y, image_shape = ssl.load_digits()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    p = lambda *a: print(*a, file=stream)  # noqa: E731
    p(f"thermossl {__version__} demo: {', '.join(methods)} on scikit-learn's handwritten digits "
      f"({X.shape[0]} images 8x8, {len(np.unique(y))} classes; labels used only to evaluate), "
      f"K = {n_prototypes} prototypes, {epochs} epochs, seed {seed}")
    baseline = ssl.kmeans_baseline(ssl.Views.fit(X, image_shape).clean(X), y, n_prototypes, seed)
    trained = []
    for method in methods:
        started = time.perf_counter()
        try:
            result = ssl.train(X, method=method, n_prototypes=n_prototypes, epochs=epochs, seed=seed,
                               image_shape=image_shape, progress=progress)
        except ValueError as exc:
            raise UsageError(f"{method}: {exc}") from None
        seconds = time.perf_counter() - started
        _check_books(result, method)
        scores = ssl.evaluate(result, X, y, seed)
        summary = summarize(result.ledger, result.T)
        p("")
        p(f"{method}: T = {result.T:g}, T' = {result.T_label:g}, loss {result.history[0]:.4f} -> "
          f"{result.history[-1]:.4f} over {epochs} epochs, {seconds:.1f} s")
        p(format_summary(summary))
        trained.append((method, result, scores, summary, seconds))
    # Every method trained: write the books into the staging folder, then move them into place.
    results, rows, notes = {}, [], []
    try:
        staging = outputs.stage()
        for method, result, scores, summary, seconds in trained:
            sub = "" if len(methods) == 1 else method
            extra = {"method": method, "T": result.T, "T_label": result.T_label, "evaluation": scores,
                     "kmeans": baseline, "seconds": seconds, "history": result.history.tolist(),
                     "options": {k: v for k, v in result.options.items() if k != "progress"}}
            names = _write_books(result.ledger, summary, staging / sub, result.T, result.work_per_sample,
                                 result.work_cycle, extra)
            method_out = outputs.path / sub if sub else outputs.path
            notes.append(f"{method}: wrote {len(names)} files to {method_out}/ ({', '.join(names)})")
            rows.append((method, {**scores, "W": summary["W"], "seconds": seconds}))
            results[method] = {"evaluation": scores, "summary": summary, "seconds": seconds, "out": str(method_out)}
        outputs.commit()
    finally:
        outputs.discard()
    rows.append((f"k-means (K={n_prototypes})", baseline))
    p("")
    for note in notes:
        p(note)
    p("")
    p("evaluation against the true digits: NMI/ARI of the self-labels, 5-NN cosine accuracy of the")
    p("representation (backbone features) in 5-fold CV; baseline: k-means and 5-NN on the standardised pixels")
    p(_evaluation_table(rows))
    return {"methods": results, "kmeans": baseline}


def run_analyze(path: Union[str, os.PathLike[str]], T: float, reservoir: Optional[str],
                out_dir: Union[str, os.PathLike[str]], T_label: Optional[float] = None,
                stream: Optional[TextIO] = None, *, scores_key: str = "scores", codes_key: Optional[str] = None,
                teacher_key: Optional[str] = None, weights_key: Optional[str] = None,
                ignore_codes: bool = False) -> dict[str, Any]:
    """Ledger, summary and plots of scores saved from a user's training run.

    Parameters
    ----------
    path : str or os.PathLike
        The .npz run (see :func:`thermossl.analysis.load_run`).
    T : float
        The representation temperature.
    reservoir : {'sela', 'swav', 'dino'} or None
        Where the labels come from (None: 'swav', or the recorded codes).
    out_dir : str or os.PathLike
        Where the ledger, summary and plots go.
    T_label : float, optional
        The reservoir temperature T' (default: the reservoir's).
    stream : text stream, optional
        Where the report goes (default: standard output).
    scores_key : str, optional
        The name of the scores in the archive.
    codes_key, teacher_key, weights_key : str, optional
        Names of the recorded codes, teacher scores and weights: None takes the default name
        ('codes', 'teacher', 'weights') when the archive holds it; a name given must be there.
    ignore_codes : bool, optional
        Replay a reservoir even when the archive holds codes. With codes (unless
        ``ignore_codes``) the replay uses them as the labels, and ``reservoir`` and ``T_label``
        must be None.

    Returns
    -------
    dict of str to Any
        The summary of the books.

    Raises
    ------
    UsageError
        For bad options or a run not in the documented format (the command prints it and exits
        with status 2).
    """
    from .analysis import RESERVOIRS, MissingArrayError, analyze, format_summary, load_run, summarize

    stream = sys.stdout if stream is None else stream
    require = [part for part, key in (("codes", codes_key), ("teacher", teacher_key), ("weights", weights_key))
               if key is not None]
    if ignore_codes and codes_key is not None:
        raise UsageError("--codes-key and --ignore-codes exclude each other")
    try:
        run = load_run(path, scores_key=scores_key, codes_key=None if ignore_codes else (codes_key or "codes"),
                       teacher_key=teacher_key or "teacher", weights_key=weights_key or "weights", require=require)
    except MissingArrayError as exc:  # the keys found are listed; a default name may be the wrong one
        hint = "; name the array with --scores-key" if exc.part == "scores" and scores_key == "scores" else ""
        raise UsageError(f"{exc}{hint}") from None
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if run.codes is not None and (reservoir is not None or T_label is not None):
        given = "--reservoir" if reservoir is not None else "--T-label"
        raise UsageError(f"{path}: the run carries codes ('{run.keys['codes']}'), the labels of the replay: {given} "
                         f"applies only to a reservoir's labels (--ignore-codes replays a reservoir instead)")
    outputs = _Outputs(out_dir)
    if run.codes is not None:
        res = None
        labels = f"recorded codes '{run.keys['codes']}'"
    else:
        name = reservoir or "swav"
        res = RESERVOIRS[name](**({} if T_label is None else {"T": T_label}))
        labels = f"reservoir {res!r}"
    try:
        analysis = analyze(run.scores, T, res, run.weights, codes=run.codes, teacher=run.teacher)
    except (ValueError, TypeError, ArithmeticError) as exc:  # e.g. weights that are not a distribution
        raise UsageError(f"{path}: {exc}") from None
    _check_books(analysis, f"{path} at T = {T:g}")
    summary = summarize(analysis.ledger, T)
    extra = {"source": str(path), "T": T, "labels": labels, "keys": run.keys, "steps": list(run.steps)}
    if run.teacher is not None:
        extra["measured_on"] = f"the teacher's scores '{run.keys['teacher']}'"
    try:
        outputs.stage()
        names = _write_books(analysis.ledger, summary, outputs.staging, T, analysis.work_per_sample,
                             analysis.work_cycle, extra)
        outputs.commit()
    finally:
        outputs.discard()
    s = run.scores.shape
    measured = f", labels measured on '{run.keys['teacher']}'" if run.teacher is not None else ""
    print(f"thermossl {__version__} analyze {path}: {s[0]} steps of {s[1]} samples x {s[2]} states "
          f"('{run.keys['scores']}'), T = {T:g}, labels: {labels}{measured}", file=stream)
    print(format_summary(summary), file=stream)
    print(f"  wrote {len(names)} files to {outputs.path}/ ({', '.join(names)})", file=stream)
    return {"summary": summary, "out": str(outputs.path), "analysis": analysis}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="thermossl", description="Thermodynamics of self-supervised learning.")
    parser.add_argument("--version", action="version", version=f"thermossl {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    demo = sub.add_parser("demo", help="SeLa/SwAV/DINO on the digits: ledger, evaluation, plots")
    demo.add_argument("--method", choices=["sela", "swav", "dino", "all"], default="all",
                      help="one SSL method (files in OUT), or all three (default; files in OUT/<method>)")
    demo.add_argument("--epochs", type=_positive_int, default=100, help="training epochs (default 100)")
    demo.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed (default 0)")
    demo.add_argument("--prototypes", type=_int_at_least(2), default=10, help="prototypes K >= 2 (default 10)")
    demo.add_argument("--out", default="thermossl-demo", help="output folder (default ./thermossl-demo)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")

    an = sub.add_parser("analyze", help="ledger and plots for scores saved from your own training (.npz)")
    an.add_argument("run", metavar="RUN.npz", help="scores per step: 'scores' (steps, N, K) or 'scores_<t>' (N, K)")
    an.add_argument("--T", type=_temperature, default=0.1, help="representation (student) temperature (default 0.1)")
    an.add_argument("--reservoir", choices=["sela", "swav", "dino"], default=None,
                    help="where the labels come from when the run has no codes (default swav)")
    an.add_argument("--T-label", type=_temperature, default=None, help="reservoir temperature T' (default: the method's)")
    an.add_argument("--scores-key", type=_key, default="scores", metavar="NAME",
                    help="the student's scores: NAME (steps, N, K) or NAME_<t> (N, K) (default scores)")
    an.add_argument("--codes-key", type=_key, default=None, metavar="NAME",
                    help="the labels used in training, (N, K) per step: the replay uses them instead of a "
                         "reservoir (default: 'codes' when the run has it)")
    an.add_argument("--teacher-key", type=_key, default=None, metavar="NAME",
                    help="the teacher's scores per step: labels are measured on them (default: 'teacher' when present)")
    an.add_argument("--weights-key", type=_key, default=None, metavar="NAME",
                    help="(N,) sample weights (default: 'weights' when present)")
    an.add_argument("--ignore-codes", action="store_true", help="replay a reservoir even if the run has codes")
    an.add_argument("--out", default="thermossl-analysis", help="output folder (default ./thermossl-analysis)")

    ex = sub.add_parser("example", help="worked example through the kernels (the default command)")
    ex.add_argument("--n", type=_positive_int, default=4096, help="samples in the batch (default 4096)")
    ex.add_argument("--k", type=_positive_int, default=300, help="prototypes / states (default 300)")
    ex.add_argument("--T", type=_temperature, default=0.1, help="student temperature T (default 0.1)")
    ex.add_argument("--T-label", type=_temperature, default=0.05, help="label reservoir temperature T' (default 0.05, SwAV)")
    ex.add_argument("--seed", type=_nonnegative_int, default=0)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``thermossl``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, 2 for bad use or a failure (one line on stderr, nothing written), 130
        when interrupted (Ctrl-C; nothing written).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["example", *argv])
        if args.command == "demo":
            methods = ["sela", "swav", "dino"] if args.method == "all" else [args.method]
            run_demo(methods, args.epochs, args.seed, args.out, args.prototypes, progress=not args.no_progress)
        elif args.command == "analyze":
            run_analyze(args.run, args.T, args.reservoir, args.out, args.T_label, scores_key=args.scores_key,
                        codes_key=args.codes_key, teacher_key=args.teacher_key, weights_key=args.weights_key,
                        ignore_codes=args.ignore_codes)
        else:
            run_example(args.n, args.k, args.T, args.T_label, args.seed)
    except UsageError as exc:
        print(f"thermossl: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("thermossl: error: out of memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thermossl: interrupted", file=sys.stderr)
        return 130
    return 0
