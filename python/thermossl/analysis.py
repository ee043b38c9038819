"""The books of a run: ledgers from saved scores, and a compact summary of any ledger.

``load_run(path)`` reads a run saved as ``.npz`` (the format ``thermossl analyze`` takes);
``analyze(scores, T, reservoir)`` replays it through a :class:`~thermossl.demon.Demon`, or with
``codes=`` through the labels recorded in training; ``summarize(ledger, T)`` gives the totals, the
largest residuals of the identities and whether the second-law bound (D2) held in every cycle;
``check_books(analysis)`` refuses a ledger that cannot be written and drawn (not finite, or
beyond ±``LARGEST_VALUE``).

The ``.npz`` format (loaded with ``allow_pickle=False``): the scores (logits, E = -scores) of
the same N samples (for example a fixed probe batch) after each training step, under a name
(the *key*, default ``scores``) as either

- one 3-D array ``<key>`` of shape (steps, N, K), or
- 2-D arrays ``<key>_0``, ``<key>_1``, ... of shape (N, K), ordered by their integer suffix
  (``scores_1`` beside ``scores_01`` is refused: the order would be ambiguous);

and optionally, in the same two forms:

- ``codes``: the labels used in training at each step (N, K), rows summing to 1 (to 1e-6, 1e-3
  for float32/float16; they are renormalised in float64; one-hot integers or booleans are fine).
  Cycle t then measures the recorded codes of step t instead of a reservoir's labels; the codes
  of the last step, if saved, are not used;
- ``teacher``: the teacher's scores at each step (DINO-style): cycle t measures the labels on the
  teacher's energies of step t (the reservoir's labels of them, or the recorded codes) and counts
  the work on the student's scores;

and ``weights``, (N,) sample weights summing to 1. Cycle t measures labels on step t's energies
and counts the work of the move to step t + 1's, so S steps give S - 1 cycles. Every array's size
is read from its ``.npy`` header and checked against the file (and against ``max_bytes``) before
any data is loaded.

With recorded codes there is no reservoir: the labels carry no chemical potentials, so the
ledger's ``mu_min``, ``mu_max``, ``mu_mean``, ``Sigma`` (the entropy production against the
reservoir, on the theory page of the documentation) and ``res_E2`` are nan ("not defined"); every other field, and the
residuals of the first law, D1, G1, G2 and G4, hold for any label state and are computed as usual.
``charge_err`` is sum_y abs(N_y - 1/K) of the codes.
"""
from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from ._typing import Float64Array
from ._validation import positive_temperature
from .demon import Demon, Ledger, PathLike
from .reservoirs import LabelState, Reservoir, dino, sela, swav
from .thermo import charges as label_charges

__all__ = [
    "RESERVOIRS", "Run", "load_run", "MissingArrayError", "load_scores", "analyze", "Analysis", "check_books", "summarize",
    "format_summary", "LARGEST_VALUE", "NAN_FIELDS", "GIVEN_LABELS_NAN_FIELDS",
]

#: Reservoir factories by method name (each takes keyword overrides, e.g. T=...).
RESERVOIRS = {"sela": sela, "swav": swav, "dino": dino}

#: Ledger fields that are nan by definition in some cycles: eta when D_before = 0, the
#: Sagawa-Ueda ratio when I = 0.
NAN_FIELDS = ("eta", "W_ext_over_TI")
#: Ledger fields that are nan in a replay of recorded codes (no reservoir, no potentials).
GIVEN_LABELS_NAN_FIELDS = ("mu_min", "mu_max", "mu_mean", "Sigma", "res_E2")
#: The largest magnitude of a ledger value that ``check_books`` lets through. The plots take
#: sums, differences and log-scale ranges of the values; matplotlib overflows from about 1e270.
LARGEST_VALUE = 1e200

# The parts of a run in an .npz archive: attribute name -> (what it is, the default key).
_PARTS = {"scores": "the scores", "codes": "the codes", "teacher": "the teacher's scores"}

# Before the lead's merge of issue 15, Demon.measure chains a replay's labels by shape; after it,
# only for the same sample ids (index=). A replay measures the same N samples each step, so it
# passes index=arange(N) whenever Demon.measure takes it: the labels chain in both versions.


def _physical_memory() -> Optional[int]:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


@dataclass(frozen=True)
class _Header:
    """What an array's .npy header declares, checked against what the archive stores."""

    key: str
    shape: tuple
    dtype: np.dtype
    nbytes: int


class _Archive:
    """An .npz archive read in two steps: the headers of the arrays a run uses (sizes checked
    against the file and a byte budget, nothing loaded), then their data."""

    def __init__(self, path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ValueError(f"{path}: a folder, not an .npz archive") from None
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            if _is_npy(path):
                raise ValueError(f"{path}: a single .npy array, not an .npz archive of scores") from None
            raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
        # np.load's names: the members' names without ".npy".
        self.members = {}
        for info in self.zip.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            self.members.setdefault(name, info)
        self.keys = sorted(self.members)

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def header(self, key) -> _Header:
        info = self.members[key]
        where = f"{self.path}: '{key}'"
        try:
            with self.zip.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    shape = None
                offset = member.tell()
        except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as exc:
            raise ValueError(f"{where} could not be read ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"{where} is not a stored numpy array ({exc})") from None
        if shape is None:
            raise ValueError(f"{where}: .npy format version {version[0]}.{version[1]} is not supported (1.0, 2.0)")
        if dtype.hasobject:
            raise ValueError(f"{where} holds Python objects (dtype {dtype}); pickles are not loaded")
        nbytes = math.prod(shape) * dtype.itemsize
        stored = info.file_size - offset
        if nbytes != stored:
            raise ValueError(
                f"{where}: its header declares shape {shape} {dtype} ({_size(nbytes)}) but the file "
                f"stores {_size(max(stored, 0))} of data"
            )
        return _Header(key, tuple(shape), dtype, nbytes)

    def load(self, key) -> np.ndarray:
        info = self.members[key]
        try:
            with self.zip.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path}: '{key}' could not be read ({exc})") from None


def _is_npy(path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def _find(archive: _Archive, key: str):
    """The archive's arrays for a part under `key`: ('stacked', [key]) for one 3-D array,
    ('numbered', [(t, name), ...]) by step, or None when there are none."""
    pattern = re.compile(rf"^{re.escape(key)}_(\d+)$")
    numbered = sorted((int(m.group(1)), name) for name in archive.keys if (m := pattern.match(name)))
    for (t, name), (u, other) in zip(numbered, numbered[1:]):
        if t == u:
            raise ValueError(
                f"{archive.path}: '{name}' and '{other}' both give step {t}: the order of the steps is "
                f"ambiguous; keep one spelling"
            )
    if key in archive.keys:
        if numbered:
            raise ValueError(f"{archive.path}: holds both '{key}' and '{key}_<t>' arrays; keep one form")
        return "stacked", [key]
    if numbered:
        return "numbered", numbered
    return None


class MissingArrayError(ValueError):
    """A part of a run is not in the archive (a ValueError).

    Parameters
    ----------
    message : str
        The error message (names the file and lists the archive's arrays).
    part : str
        The missing part: 'scores', 'codes', 'teacher' or 'weights' (also the attribute ``part``).
    """

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


def _keys_found(archive) -> str:
    return ", ".join(repr(k) for k in archive.keys) if archive.keys else "none"


@dataclass(frozen=True)
class Run:
    """A training run read from an .npz archive.

    Parameters
    ----------
    scores : numpy.ndarray, shape (S, N, K)
        The student's scores per step.
    steps : tuple of int
        The S step numbers (0..S-1 for a stacked array, the integer suffixes of numbered ones).
    weights : numpy.ndarray, shape (N,), optional
        Sample weights, or None.
    codes : numpy.ndarray, shape (S - 1, N, K), optional
        float64 label states used in training (rows summing to 1), or None.
    teacher : numpy.ndarray, shape (S - 1, N, K), optional
        The teacher's scores per step, or None.
    keys : dict of str to str, optional
        The archive's names of each part.
    """

    scores: npt.NDArray[Any]
    steps: tuple[int, ...]
    weights: Optional[npt.NDArray[Any]] = None
    codes: Optional[Float64Array] = None
    teacher: Optional[npt.NDArray[Any]] = None
    keys: dict[str, Optional[str]] = field(default_factory=dict)


def load_run(path: PathLike, *, scores_key: str = "scores", codes_key: Optional[str] = "codes",
             teacher_key: Optional[str] = "teacher", weights_key: Optional[str] = "weights",
             require: Iterable[str] = (), max_bytes: Union[int, str, None] = "auto") -> Run:
    """Read a run saved as .npz (the format of the module's docstring and the command-line page of the documentation).

    The scores are required, under ``scores_key``. Codes, teacher scores and weights are read when
    the archive holds them under their keys. Sizes are checked from the arrays' headers before any
    data is read.

    Parameters
    ----------
    path : str or os.PathLike
        The .npz (or .npy) file.
    scores_key : str, optional
        The name of the scores.
    codes_key, teacher_key, weights_key : str or None, optional
        The names of the recorded codes, the teacher's scores and the sample weights (None: not
        read).
    require : iterable of str, optional
        Parts ('codes', 'teacher', 'weights') that must be there.
    max_bytes : int, "auto" or None, optional
        The most bytes the arrays read may declare together (``"auto"``: half the machine's physical
        memory; None: no limit).

    Returns
    -------
    Run
        The arrays of the run.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    MissingArrayError
        If a required array is missing (the message lists the archive's arrays).
    ValueError
        Naming the file and the array, for anything not in the documented format (shapes, dtypes,
        sizes beyond the file or ``max_bytes``, ambiguous step numbers, codes that are not label
        states, bad keys).
    """
    keys = {"scores": scores_key, "codes": codes_key, "teacher": teacher_key, "weights": weights_key}
    if not isinstance(scores_key, str) or not scores_key:
        raise ValueError(f"scores_key must be a non-empty string, got {scores_key!r}")
    for part in require:
        if part not in ("codes", "teacher", "weights") or keys[part] is None:
            raise ValueError(f"require: cannot require {part!r} (with key {keys.get(part)!r})")
    used = [k for k in keys.values() if k is not None]
    if len(set(used)) != len(used):
        raise ValueError(f"the keys must differ, got {keys}")
    if max_bytes == "auto":
        memory = _physical_memory()
        max_bytes = None if memory is None else memory // 2
    with _Archive(path) as archive:
        found = {}
        for part, key in keys.items():
            if key is None:
                continue
            if part == "weights":
                hit = ("stacked", [key]) if key in archive.keys else None
            else:
                hit = _find(archive, key)
            if hit is None and (part == "scores" or part in require):
                forms = f"'{key}'" if part == "weights" else f"'{key}' or '{key}_<t>'"
                raise MissingArrayError(f"{path}: no {forms} arrays (keys found: {_keys_found(archive)})", part)
            if hit is not None:
                found[part] = hit
        # Sizes from the headers, before any data is read.
        headers = {}
        for part, (form, names) in found.items():
            headers[part] = [archive.header(name if form == "stacked" else name[1]) for name in names]
        total = sum(h.nbytes for hs in headers.values() for h in hs)
        if any(form == "numbered" for form, _ in found.values()):
            total += sum(h.nbytes for part, hs in headers.items() if found[part][0] == "numbered" for h in hs)
        if max_bytes is not None and total > max_bytes:
            raise ValueError(
                f"{path}: the arrays to read declare {_size(total)} (with the copy that stacks numbered "
                f"steps), more than the limit of {_size(max_bytes)}"
            )
        parts = {part: _read_part(archive, part, keys[part], found[part], headers[part]) for part in found}
    return _assemble(path, parts, keys)


def _read_part(archive, part, key, hit, headers):
    """(array, steps) of a part: stacked (S, N, K) with steps 0..S-1, or numbered (N, K) arrays
    stacked in step order with their step numbers."""
    form, names = hit
    where = archive.path
    if part == "weights":
        return archive.load(key), None
    for h in headers:
        if h.dtype.kind not in "biuf" or (h.dtype.kind == "b" and part != "codes"):
            raise ValueError(f"{where}: '{h.key}' must hold real numbers, got dtype {h.dtype}")
        if h.dtype.kind == "f" and h.dtype.itemsize > 8:
            raise ValueError(f"{where}: '{h.key}': extended precision ({h.dtype}) is not supported; save float64")
    if form == "stacked":
        (h,) = headers
        if len(h.shape) != 3:
            raise ValueError(f"{where}: '{key}' must be 3-D (steps, N, K), got shape {h.shape}")
        return archive.load(key), tuple(range(h.shape[0]))
    first = headers[0]
    for h in headers:
        if len(h.shape) != 2 or h.shape != first.shape:
            raise ValueError(f"{where}: '{h.key}' must be 2-D of the shape of '{first.key}' {first.shape}, got {h.shape}")
    arrays = [archive.load(h.key) for h in headers]
    return np.stack(arrays), tuple(t for t, _ in names)


def _assemble(path, parts, keys) -> Run:
    scores, steps = parts["scores"]
    skey = keys["scores"]
    if scores.shape[0] < 2:
        raise ValueError(f"{path}: need the scores of at least 2 steps for one cycle, got {scores.shape[0]}")
    if scores.shape[1] < 1 or scores.shape[2] < 2:
        raise ValueError(f"{path}: scores need N >= 1 samples and K >= 2 states, got shape {scores.shape[1:]}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{path}: scores ('{skey}') must be finite")
    n, k = scores.shape[1:]
    out = {"scores": scores, "steps": steps, "keys": {p: keys[p] for p in parts}}
    for part in ("teacher", "codes"):
        if part not in parts:
            continue
        array, part_steps = parts[part]
        key = keys[part]
        if array.shape[1:] != (n, k):
            raise ValueError(f"{path}: '{key}' must hold (N, K) = {(n, k)} per step like the scores, got {array.shape[1:]}")
        # One per cycle (the steps but the last); the last step's, when saved, is not used.
        if part_steps == steps or part_steps == steps[:-1]:
            array = array[: len(steps) - 1]
        else:
            raise ValueError(
                f"{path}: '{key}' must have the steps of the scores {_steps_text(steps)} (the last may be left "
                f"out), got {_steps_text(part_steps)}"
            )
        if part == "teacher":
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{path}: the teacher's scores ('{key}') must be finite")
            out["teacher"] = array
        else:
            out["codes"] = _label_states(path, key, array)
    if "weights" in parts:
        weights, _ = parts["weights"]
        if weights.shape != (n,):
            raise ValueError(f"{path}: '{keys['weights']}' must have shape ({n},), got {weights.shape}")
        if weights.dtype.kind not in "iuf" or weights.dtype.itemsize > 8:
            raise ValueError(f"{path}: '{keys['weights']}' must hold real numbers, got dtype {weights.dtype}")
        out["weights"] = weights
    return Run(**out)


def _steps_text(steps) -> str:
    steps = list(steps)
    if len(steps) > 6:
        return f"({steps[0]}, {steps[1]}, ..., {steps[-1]}; {len(steps)} steps)"
    return f"{tuple(steps)}"


def _label_states(path, key, codes) -> np.ndarray:
    """Codes as float64 label states: finite, >= 0, rows summing to 1 (to 1e-6; 1e-3 for float32
    and float16), renormalised."""
    codes64 = codes.astype(np.float64)
    bad = ~np.isfinite(codes64) | (codes64 < 0)
    if bad.any():
        t, i, y = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{path}: '{key}' must be finite and >= 0 (step {t}, row {i}, state {y}: {float(codes64[t, i, y])!r})")
    sums = codes64.sum(axis=2)
    tolerance = 1e-3 if codes.dtype.kind == "f" and codes.dtype.itemsize < 8 else 1e-6
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        t, i = (int(v) for v in np.argwhere(off)[0])
        raise ValueError(f"{path}: '{key}' must be label states, rows summing to 1 (step {t}, row {i} sums to {float(sums[t, i])!r})")
    return codes64 / sums[:, :, None]


def load_scores(path: PathLike) -> tuple[npt.NDArray[Any], Optional[npt.NDArray[Any]]]:
    """The scores and weights of a run saved as .npz under the default keys (see :func:`load_run`).

    Parameters
    ----------
    path : str or os.PathLike
        The .npz file.

    Returns
    -------
    scores : numpy.ndarray, shape (steps, N, K)
        The scores per step.
    weights : numpy.ndarray, shape (N,), or None
        The sample weights, when saved.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file and the array when it is not in the documented format.
    """
    run = load_run(path, codes_key=None, teacher_key=None)
    return run.scores, run.weights


class _GivenLabels(Reservoir):
    """A "reservoir" that hands out recorded label states, one per call, in order (the codes used
    in training); ``reset()`` rewinds. Given labels are not a GGE of a known reservoir: the
    LabelState's mu (zeros) and T (1.0) are placeholders that only keep the Demon's arithmetic
    defined, and :func:`analyze` sets the ledger fields that depend on them to nan
    (``GIVEN_LABELS_NAN_FIELDS``). charge_err is sum_y abs(N_y - 1/K)."""

    T = 1.0

    def __init__(self, codes):
        self.codes = codes  # (cycles, N, K) float64 label states, validated by the caller
        self._next = 0

    def assign(self, E, w=None) -> LabelState:
        if self._next >= len(self.codes):
            raise RuntimeError(f"recorded codes exhausted after {len(self.codes)} cycles")
        q = self.codes[self._next]
        if np.shape(E) != q.shape:
            raise ValueError(f"E must have the shape of the recorded codes {q.shape}, got {np.shape(E)}")
        self._next += 1
        occupation = label_charges(q, w)
        return LabelState(
            q=q, mu=np.zeros(q.shape[1]), charges=occupation,
            charge_err=float(np.abs(occupation - 1.0 / q.shape[1]).sum()), T=self.T, method="given",
        )

    def reset(self) -> None:
        self._next = 0

    def __repr__(self) -> str:
        return f"recorded codes ({len(self.codes)} cycles)"


@dataclass(frozen=True)
class Analysis:
    """The ledger of a replayed run and the per-sample work of its last cycle.

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books, one row per cycle.
    work_per_sample : numpy.ndarray, shape (N,)
        The per-sample work of cycle ``work_cycle``.
    work_cycle : int
        The cycle of ``work_per_sample`` (the last).
    T : float
        The representation temperature.
    labels : str, optional
        'reservoir' (the reservoir's labels) or 'given' (recorded codes).
    nan_fields : tuple of str, optional
        The ledger fields that may be nan (``NAN_FIELDS``, and with given labels
        ``GIVEN_LABELS_NAN_FIELDS``, which are then nan in every cycle).
    """

    ledger: Ledger
    work_per_sample: Float64Array
    work_cycle: int
    T: float
    labels: str = "reservoir"
    nan_fields: tuple[str, ...] = NAN_FIELDS


def analyze(scores: npt.ArrayLike, T: float = 0.1, reservoir: Union[str, Reservoir, None] = None,
            weights: Optional[npt.ArrayLike] = None, *, codes: Optional[npt.ArrayLike] = None,
            teacher: Optional[npt.ArrayLike] = None) -> Analysis:
    """Replay saved scores through a demon at temperature T.

    The labels of cycle t come from a reservoir measuring step t's energies, or are the codes
    recorded in training. With ``teacher`` the measurement is on the teacher's energies of step t
    and the feedback's work on the student's scores, from step t to t + 1 (as DINO's books in
    :func:`thermossl.ssl.train`).

    Parameters
    ----------
    scores : array_like, shape (steps, N, K)
        The scores per step (steps >= 2); E = -scores.
    T : float, optional
        The representation temperature, > 0.
    reservoir : {'sela', 'swav', 'dino'} or thermossl.reservoirs.Reservoir, optional
        Where the labels come from (None: 'swav'); not with ``codes``.
    weights : array_like, shape (N,), optional
        Sample weights summing to 1.
    codes : array_like, shape (steps - 1, N, K), optional
        Label states recorded in training (e.g. :attr:`Run.codes`).
    teacher : array_like, shape (steps - 1, N, K), optional
        The teacher's scores per step.

    Returns
    -------
    Analysis
        The ledger and the last cycle's per-sample work.

    Raises
    ------
    TypeError
        If ``reservoir`` is neither a name nor a Reservoir.
    ValueError
        If a shape is wrong, ``T`` is not finite and > 0, ``reservoir`` is an unknown name or is
        given with ``codes``, or the demon refuses the energies or labels (nan, forbidden rows).
    """
    T = positive_temperature(T)
    scores = np.asarray(scores)
    if scores.ndim != 3 or scores.shape[0] < 2:
        raise ValueError(f"scores must have shape (steps >= 2, N, K), got {scores.shape}")
    cycles, n, k = scores.shape[0] - 1, scores.shape[1], scores.shape[2]
    if codes is not None:
        if reservoir is not None:
            raise ValueError("give codes (recorded labels) or a reservoir, not both")
        codes = np.asarray(codes, dtype=np.float64)
        if codes.shape != (cycles, n, k):
            raise ValueError(f"codes must have shape (steps - 1, N, K) = {(cycles, n, k)}, got {codes.shape}")
        reservoir = _GivenLabels(codes)
    elif reservoir is None or isinstance(reservoir, str):
        name = "swav" if reservoir is None else reservoir
        if name not in RESERVOIRS:
            raise ValueError(f"reservoir must be one of {sorted(RESERVOIRS)} or a Reservoir, got {reservoir!r}")
        reservoir = RESERVOIRS[name]()
    elif not isinstance(reservoir, Reservoir):
        raise TypeError(f"reservoir must be a name or a Reservoir, got {type(reservoir).__name__}")
    if teacher is not None:
        teacher = np.asarray(teacher)
        if teacher.shape != (cycles, n, k):
            raise ValueError(f"teacher must have shape (steps - 1, N, K) = {(cycles, n, k)}, got {teacher.shape}")
    demon = Demon(T, reservoir, w=weights)
    # The same N samples every step: their labels chain from cycle to cycle.
    same_samples = {"index": np.arange(n)}
    for t in range(cycles):
        if teacher is None:
            demon.measure(-scores[t], **same_samples)
            demon.feedback(-scores[t + 1])
        else:
            demon.measure(-teacher[t], **same_samples)
            demon.feedback(-scores[t + 1], E_before=-scores[t])
    ledger, labels, nan_fields = demon.ledger, "reservoir", NAN_FIELDS
    if codes is not None:
        undefined = dict.fromkeys(GIVEN_LABELS_NAN_FIELDS, math.nan)
        ledger = Ledger({**row, **undefined} for row in ledger)
        labels, nan_fields = "given", NAN_FIELDS + GIVEN_LABELS_NAN_FIELDS
    return Analysis(ledger, demon.work_per_sample, len(ledger) - 1, T, labels, nan_fields)


def check_books(ledger: Ledger, nan_fields: Sequence[str] = NAN_FIELDS, work_per_sample: Optional[npt.ArrayLike] = None,
                largest: float = LARGEST_VALUE) -> None:
    """Refuse books that cannot be written and drawn faithfully.

    Such values come from scores, or 1/T, beyond any trained model's range (the plots overflow from
    about 1e270).

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books.
    nan_fields : sequence of str, optional
        Fields allowed to be nan.
    work_per_sample : array_like, optional
        Per-sample work to check too.
    largest : float, optional
        The largest magnitude allowed.

    Raises
    ------
    ValueError
        Naming the field and the cycle of the first ledger value that is not finite (nan is allowed
        in ``nan_fields``) or exceeds ``largest`` in magnitude, or the first such per-sample work.
    """
    columns = {f: np.asarray(ledger.column(f), dtype=np.float64) for f in ledger.fields}
    t = columns["t"]
    for name, values in columns.items():
        allowed = np.isnan(values) if name in nan_fields else np.zeros(values.shape, bool)
        bad = ~allowed & ~(np.abs(values) <= largest)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"the books are out of range: {name} = {values[i]:.6g} in cycle {int(t[i])} "
                             f"(ledger values must be finite and within ±{largest:g})")
    if work_per_sample is not None:
        work = np.asarray(work_per_sample, dtype=np.float64)
        bad = ~(np.abs(work) <= largest)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"the books are out of range: the work of sample {i} is {work[i]:.6g} "
                             f"(it must be finite and within ±{largest:g})")


def summarize(ledger: Ledger, T: float) -> dict[str, Any]:
    """Totals, extremes and the laws' residuals of a ledger at representation temperature T.

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    T : float
        The representation temperature, > 0.

    Returns
    -------
    dict of str to Any
        ``cycles``, the totals ``W``, ``Q``, ``dU``, ``W_ext``, ``Sigma``, ``W_ext_bound``;
        ``D2_held`` counts the cycles with W_ext + dF <= T D(q_t||p_t) up to rounding (1e-12 of the
        terms' size) and ``D2_every_cycle`` says whether all did; ``L_first``, ``L_last``,
        ``I_mean``, ``charge_err_last``, ``eta_median``; ``max_abs_res_*`` are the largest residuals
        of the identities in the ledger (nan when the identity does not apply: E2 with recorded
        codes).

    Raises
    ------
    ValueError
        If the ledger is empty or ``T`` is not finite and > 0.
    """
    if len(ledger) == 0:
        raise ValueError("ledger is empty")
    T = positive_temperature(T)
    col = ledger.column
    totals = ledger.totals()
    bound = T * col("D_before") - col("dF")
    slack = bound - col("W_ext")
    scale = np.abs(T * col("D_before")) + np.abs(col("dF")) + np.abs(col("W_ext")) + 1e-300
    held = slack >= -1e-12 * scale
    out = {
        "cycles": totals["cycles"],
        "W": totals["W"],
        "Q": totals["Q"],
        "dU": totals["dU"],
        "W_ext": totals["W_ext"],
        "Sigma": totals["Sigma"],
        "W_ext_bound": float(math.fsum(bound)),
        "D2_held": int(held.sum()),
        "D2_every_cycle": bool(held.all()),
        "L_first": float(col("L_before")[0]),
        "L_last": float(col("L_after")[-1]),
        "I_mean": float(np.mean(col("I"))),
        "charge_err_last": float(col("charge_err")[-1]),
        "eta_median": float(np.nanmedian(col("eta"))) if np.any(np.isfinite(col("eta"))) else math.nan,
    }
    for name in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2"):
        out["max_abs_" + name] = float(np.max(np.abs(col(name))))
    return out


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few lines for a terminal; a nan (a quantity not defined for these books) reads n/a.

    Parameters
    ----------
    summary : mapping
        The result of :func:`summarize`.

    Returns
    -------
    str
        The lines, joined by newlines.
    """
    s = summary

    def fmt(value, spec):
        return "n/a" if isinstance(value, float) and math.isnan(value) else format(value, spec)

    lines = [
        f"ledger: {s['cycles']} cycles",
        f"  work W = {s['W']:+.6f}   extracted W_ext = {s['W_ext']:+.6f}   (bound sum T D - dF = {s['W_ext_bound']:+.6f})",
        f"  heat Q = {s['Q']:+.6f}   dU = {s['dU']:+.6f}   entropy production Sigma = {fmt(s['Sigma'], '.6f')}",
        f"  loss {s['L_first']:.4f} -> {s['L_last']:.4f}   mean information I = {s['I_mean']:.4f} nats   "
        f"last charge error {s['charge_err_last']:.2e}",
        f"  D2 (W_ext + dF <= T D) held in {s['D2_held']}/{s['cycles']} cycles   median efficiency eta = "
        f"{fmt(s['eta_median'], '.3f')}",
        f"  largest residuals: first law {s['max_abs_res_first_law']:.1e}, D1 {s['max_abs_res_D1']:.1e}, "
        f"G1 {s['max_abs_res_G1']:.1e}, G2 {s['max_abs_res_G2']:.1e}, G4 {s['max_abs_res_G4']:.1e}, "
        f"E2 {fmt(s['max_abs_res_E2'], '.1e')}",
    ]
    return "\n".join(lines)
