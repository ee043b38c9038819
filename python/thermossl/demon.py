"""Strokes, cycles and the learning demon's ledger (the theory page of the documentation).

State (E, q): energies and labels, energy U[q; E] = sum_i w_i sum_y q_iy E_iy.

- adiabatic stroke (parameters move, labels fixed): work W = sum w q (E' - E), no heat;
- isochoric stroke (labels move, energies fixed): heat Q = sum w E (q' - q), no work;
- a general step (E, q) -> (E', q') is split adiabatic-then-isochoric, so dU = W + Q exactly.

W > 0 is work done on the system; W < 0 is work extracted.

The demon runs cycles. ``measure(E, index=ids)`` is the isochoric stroke into the reservoir's GGE:
the labels of each sample jump from that sample's labels of its last measurement (known by its id
in ``index``; a sample never measured before, or any sample when no ``index`` is given, starts
from the Gibbs state of E at T) to the reservoir's q_t, exchanging heat Q_t and producing entropy
Sigma_t (the theory page of the documentation: labels belong to samples, not to row positions). ``feedback(E_after)`` is the
adiabatic stroke: the learner moves the energies with q_t fixed, doing work W_t; the demon extracts
W_ext = -W_t. Each completed cycle appends one row to ``ledger``.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass

import os
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

import numpy as np
import numpy.typing as npt

from . import _messages as msg
from ._backends import cpu
from ._typing import Float64Array
from ._validation import as_real_array, check_states, positive_temperature, potential, real_matrix
from .gibbs import _gibbs
from .reservoirs import LabelState, Reservoir
from .thermo import _ledger_rows, reduce, shannon_entropy
from .thermo import weights as validated_weights

__all__ = ["Stroke", "adiabatic", "isochoric", "step", "Ledger", "Demon", "LEDGER_FIELDS"]

#: A file system path.
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Stroke:
    """Work and heat of a stroke, and their per-sample terms w_i sum_y (...).

    Parameters
    ----------
    W : float
        Work.
    Q : float
        Heat.
    work_per_sample : numpy.ndarray, shape (N,)
        The per-sample terms of W (float64).
    heat_per_sample : numpy.ndarray, shape (N,)
        The per-sample terms of Q (float64).
    """

    W: float
    Q: float
    work_per_sample: Float64Array
    heat_per_sample: Float64Array

    @property
    def dU(self) -> float:
        """The energy change, W + Q (the first law, exact by construction of the split)."""
        return self.W + self.Q


def _check_matrix(a, name: str, shape=None) -> np.ndarray:
    """A user's (N, K) array, validated: real, 2-D and (when given) of `shape`. Not cast."""
    a = real_matrix(a, name)
    if shape is not None and a.shape != shape:
        raise ValueError(msg.SAME_SHAPE.format(name=name, shape=shape, got=a.shape))
    return a


def _difference_dot(u, v, w_rows):
    """Per-sample sum_y u (v - w) as float64 (N,)."""
    return cpu.row_difference_dot(u, v, w_rows)


def _weighted(w, rows):
    n = rows.shape[0]
    return rows / n if w is None else rows * w


def _adiabatic(q, E_before, E_after, w) -> Stroke:
    q, E_before, E_after = cpu.to_kernel(q, E_before, E_after)[0]
    work = _weighted(w, _difference_dot(q, E_after, E_before))
    return Stroke(W=float(work.sum()), Q=0.0, work_per_sample=work, heat_per_sample=np.zeros_like(work))


def _isochoric(E, q_before, q_after, w) -> Stroke:
    E, q_before, q_after = cpu.to_kernel(E, q_before, q_after)[0]
    heat = _weighted(w, _difference_dot(E, q_after, q_before))
    return Stroke(W=0.0, Q=float(heat.sum()), work_per_sample=np.zeros_like(heat), heat_per_sample=heat)


def adiabatic(q: npt.ArrayLike, E_before: npt.ArrayLike, E_after: npt.ArrayLike,
              w: Optional[npt.ArrayLike] = None) -> Stroke:
    """The adiabatic stroke: labels fixed, energies E_before -> E_after.

    W = sum_i w_i sum_y q_iy (E'_iy - E_iy), Q = 0.

    Parameters
    ----------
    q : array_like, shape (N, K)
        The labels.
    E_before, E_after : array_like, shape (N, K)
        Energies before and after the stroke.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    Stroke
        Its work and heat.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If an array is not 2-D or not of the shape of the first, or ``w`` is not a probability
        vector of length N; the message names the argument.
    """
    q = _check_matrix(q, "q")
    E_before, E_after = (_check_matrix(a, name, q.shape) for a, name in ((E_before, "E_before"), (E_after, "E_after")))
    return _adiabatic(q, E_before, E_after, validated_weights(w, q.shape[0]))


def isochoric(E: npt.ArrayLike, q_before: npt.ArrayLike, q_after: npt.ArrayLike,
              w: Optional[npt.ArrayLike] = None) -> Stroke:
    """The isochoric stroke: energies fixed, labels q_before -> q_after.

    Q = sum_i w_i sum_y E_iy (q'_iy - q_iy), W = 0.

    Parameters
    ----------
    E : array_like, shape (N, K)
        The energies.
    q_before, q_after : array_like, shape (N, K)
        Labels before and after the stroke.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    Stroke
        Its work and heat.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If an array is not 2-D or not of the shape of the first, or ``w`` is not a probability
        vector of length N; the message names the argument.
    """
    E = _check_matrix(E, "E")
    q_before, q_after = (_check_matrix(a, name, E.shape) for a, name in ((q_before, "q_before"), (q_after, "q_after")))
    return _isochoric(E, q_before, q_after, validated_weights(w, E.shape[0]))


def step(E: npt.ArrayLike, q: npt.ArrayLike, E_after: npt.ArrayLike, q_after: npt.ArrayLike,
         w: Optional[npt.ArrayLike] = None) -> Stroke:
    """A general step (E, q) -> (E', q'), split adiabatic then isochoric.

    W = sum w q (E' - E), Q = sum w E' (q' - q), so U[q'; E'] - U[q; E] = W + Q exactly.

    Parameters
    ----------
    E : array_like, shape (N, K)
        Energies before the step.
    q : array_like, shape (N, K)
        Labels before the step.
    E_after : array_like, shape (N, K)
        Energies after the step.
    q_after : array_like, shape (N, K)
        Labels after the step.
    w : array_like, shape (N,), optional
        Sample weights, > 0, summing to 1 (default 1/N).

    Returns
    -------
    Stroke
        Its work and heat.

    Raises
    ------
    TypeError
        If an array is not real.
    ValueError
        If an array is not 2-D or not of the shape of the first, or ``w`` is not a probability
        vector of length N; the message names the argument.
    """
    q = _check_matrix(q, "q")
    E, E_after, q_after = (
        _check_matrix(a, name, q.shape) for a, name in ((E, "E_before"), (E_after, "E_after"), (q_after, "q_after"))
    )
    w = validated_weights(w, q.shape[0])
    work = _adiabatic(q, E, E_after, w)
    heat = _isochoric(E_after, q, q_after, w)
    return Stroke(W=work.W, Q=heat.Q, work_per_sample=work.work_per_sample, heat_per_sample=heat.heat_per_sample)


LEDGER_FIELDS = (
    "t",
    "W", "Q", "dU", "W_ext",
    "U_start", "U_measured", "U_end",
    "F_before", "F_after", "dF",
    "S_q", "S_p", "D_before", "D_after", "L_before", "L_after",
    "Sigma", "I", "H_N", "charge_err", "mu_min", "mu_max", "mu_mean",
    "eta", "W_ext_over_TI",
    "res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2",
)
_FIELD_DOC = {
    "t": "cycle index, from 0",
    "W": "work of the feedback stroke, sum w q_t (E_after - E_before)",
    "Q": "heat of the measurement stroke, sum w E (q_t - q_prev)",
    "dU": "energy change over the cycle, from the stroke end points",
    "W_ext": "extracted work, -W",
    "U_start": "U[q_prev; E] before the measurement",
    "U_measured": "U[q_t; E] after the measurement",
    "U_end": "U[q_t; E_after] after the feedback",
    "F_before": "free energy of the Gibbs state of E_before at T",
    "F_after": "free energy of the Gibbs state of E_after at T",
    "dF": "F_after - F_before",
    "S_q": "entropy of the labels S[q_t]",
    "S_p": "entropy of the Gibbs state S[p] of E_before",
    "D_before": "D(q_t || p(E_before))",
    "D_after": "D(q_t || p(E_after))",
    "L_before": "loss L[q_t, E_before]",
    "L_after": "loss L[q_t, E_after]",
    "Sigma": "entropy production of the measurement, dS - (Q - mu.dN)/T'",
    "I": "information of the labels, H(N) - S[q_t]",
    "H_N": "entropy of the charges, -sum N log N",
    "charge_err": "sum_y |N_y - c_y| of q_t",
    "mu_min": "smallest chemical potential", "mu_max": "largest chemical potential",
    "mu_mean": "mean chemical potential",
    "eta": "feedback efficiency 1 - D_after / D_before",
    "W_ext_over_TI": "Sagawa-Ueda-style ratio W_ext / (T I) (a diagnostic)",
    "res_first_law": "dU - (W + Q)",
    "res_D1": "W_ext - (T (D_before - D_after) - dF)",
    "res_G1": "F - (U[p] - T S[p]) at E_before",
    "res_G2": "L - (S[q] + D) at E_before",
    "res_G4": "L - (U[q] - F)/T at E_before",
    "res_E2": "Sigma - D(q_prev || q_t)",
}


class Ledger:
    """The demon's books: one row (a dict of floats, 't' an int) per completed cycle.

    The fields and their meaning are ``Ledger.fields`` and ``Ledger.descriptions`` (the ledger
    section of the theory page of the documentation).

    Parameters
    ----------
    rows : iterable of mapping, optional
        Rows to start with, each with every field of ``LEDGER_FIELDS``.

    Raises
    ------
    ValueError
        If a row lacks a field.
    """

    fields = LEDGER_FIELDS
    descriptions = _FIELD_DOC

    def __init__(self, rows: Iterable[Mapping[str, float]] = ()) -> None:
        self._rows: list[dict[str, float]] = []
        for row in rows:
            self.append(row)

    def append(self, row: Mapping[str, float]) -> None:
        """Add one cycle's row.

        Parameters
        ----------
        row : mapping of str to float
            A value for every field of ``LEDGER_FIELDS`` (others are ignored).

        Raises
        ------
        ValueError
            If the row lacks a field.
        """
        missing = [f for f in self.fields if f not in row]
        if missing:
            raise ValueError(f"ledger row lacks fields {missing}")
        self._rows.append({f: (int(row[f]) if f == "t" else float(row[f])) for f in self.fields})

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, float]:
        return dict(self._rows[index])

    def __iter__(self) -> Iterator[dict[str, float]]:
        return (dict(r) for r in self._rows)

    def column(self, field: str) -> npt.NDArray[Any]:
        """One field over the cycles.

        Parameters
        ----------
        field : str
            A name of ``LEDGER_FIELDS``.

        Returns
        -------
        numpy.ndarray, shape (cycles,)
            Its values (int for 't', float64 otherwise).

        Raises
        ------
        KeyError
            If ``field`` is not a ledger field.
        """
        if field not in self.fields:
            raise KeyError(field)
        return np.array([r[field] for r in self._rows])

    def to_numpy(self) -> npt.NDArray[np.void]:
        """The ledger as a structured array.

        Returns
        -------
        numpy.ndarray, shape (cycles,)
            One record per cycle ('t' int64, every other field float64).
        """
        dtype = [(f, np.int64 if f == "t" else np.float64) for f in self.fields]
        return np.array([tuple(r[f] for f in self.fields) for r in self._rows], dtype=dtype)

    def totals(self) -> dict[str, float]:
        """Sums over the cycles of W, Q, dU, W_ext and Sigma, and the number of cycles.

        Returns
        -------
        dict of str to float
            Keys 'cycles' (an int), 'W', 'Q', 'dU', 'W_ext', 'Sigma'.
        """
        out: dict[str, float] = {"cycles": len(self._rows)}
        for f in ("W", "Q", "dU", "W_ext", "Sigma"):
            out[f] = float(math.fsum(r[f] for r in self._rows))
        return out

    def to_csv(self, path: PathLike) -> None:
        """Write a header line and one line per cycle; floats round-trip exactly (repr).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced).

        Raises
        ------
        OSError
            If the file cannot be written.
        """
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.fields)
            for r in self._rows:
                writer.writerow([repr(r[f]) for f in self.fields])

    @classmethod
    def from_csv(cls, path: PathLike) -> Ledger:
        """Read a ledger written by :meth:`to_csv`.

        Parameters
        ----------
        path : str or os.PathLike
            The CSV file.

        Returns
        -------
        Ledger
            The ledger it holds.

        Raises
        ------
        ValueError
            Naming the file and the line, for anything but a ledger: a header without exactly the
            ledger's fields (the missing and the extra ones are named), a line with too few or too many
            cells, a 't' that is not an integer >= 0, a value that is not a number ('nan' and 'inf' are
            numbers), a file that is not UTF-8 text.
        OSError
            If the file cannot be read.
        """
        rows = []
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
                if header is None:
                    raise ValueError(f"{path}: empty file, no header line")
                cls._check_names(header, f"{path}, line {reader.line_num} (header)")
                for cells in reader:
                    where = f"{path}, line {reader.line_num}"
                    if not cells:  # a blank line
                        continue
                    if len(cells) != len(header):
                        raise ValueError(f"{where}: {len(cells)} cells, the header has {len(header)}")
                    row = dict(zip(header, cells))
                    rows.append({name: cls._parse_cell(name, row[name], where) for name in cls.fields})
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
            except csv.Error as exc:
                raise ValueError(f"{path}, line {reader.line_num}: not a CSV ledger ({exc})") from None
        return cls(rows)

    def to_json(self, path: PathLike) -> None:
        """Write ``{"fields": {name: description}, "rows": [...]}``; nan and inf as JSON strings.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced).

        Raises
        ------
        OSError
            If the file cannot be written.
        """

        def encode(v):
            return v if isinstance(v, int) or math.isfinite(v) else repr(v)

        payload = {
            "fields": {f: self.descriptions[f] for f in self.fields},
            "rows": [{f: encode(r[f]) for f in self.fields} for r in self._rows],
        }
        with open(path, "w") as handle:
            json.dump(payload, handle, indent=1)

    @classmethod
    def from_json(cls, path: PathLike) -> Ledger:
        """Read a ledger written by :meth:`to_json`.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file.

        Returns
        -------
        Ledger
            The ledger it holds.

        Raises
        ------
        ValueError
            Naming the file (and the line of a JSON syntax error, or the row), for anything else: no
            "rows" list, a row that is not an object, missing, extra or repeated fields (named), a 't'
            that is not an integer >= 0, a value that is not a number (true/false are not numbers; the
            strings "nan", "inf" and "-inf" stand for those floats).
        OSError
            If the file cannot be read.
        """

        def unique_keys(pairs):
            names = [name for name, _ in pairs]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{path}: an object repeats the keys {repeated}")
            return dict(pairs)

        try:
            with open(path, encoding="utf-8") as handle:
                payload = json.load(handle, object_pairs_hook=unique_keys)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to be a ledger") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
            raise ValueError(f'{path}: not a JSON ledger (an object with a "rows" list)')
        rows = []
        for i, row in enumerate(payload["rows"]):
            where = f"{path}, row {i} (rows[{i}])"
            if not isinstance(row, dict):
                raise ValueError(f"{where}: a row must be an object of fields, got {type(row).__name__}")
            cls._check_names(list(row), where)
            rows.append({name: cls._parse_json_value(name, row[name], where) for name in cls.fields})
        return cls(rows)

    # Validation of what the readers parse (errors say where: "FILE, line N" or "FILE, row N").
    @classmethod
    def _check_names(cls, names, where) -> None:
        missing = [f for f in cls.fields if f not in names]
        extra = [n for n in names if n not in cls.fields]
        repeated = sorted({n for n in names if names.count(n) > 1})
        problems = []
        if missing:
            problems.append(f"missing fields {missing}")
        if extra:
            problems.append(f"unknown fields {extra}")
        if repeated:
            problems.append(f"repeated fields {repeated}")
        if problems:
            raise ValueError(f"{where}: not a ledger's fields: {'; '.join(problems)}")

    @staticmethod
    def _parse_cell(name, text, where):
        if name == "t":
            if not (text.isascii() and text.isdigit()):
                raise ValueError(f"{where}: t must be an integer >= 0, got {text!r}")
            return int(text)
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{where}: {name} must be a number, got {text!r}") from None

    @staticmethod
    def _parse_json_value(name, value, where):
        if name == "t":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}: t must be an integer >= 0, got {value!r}")
            return value
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'{where}: {name} must be a number (or "nan", "inf", "-inf"), got {value!r}')
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{where}: {name} is too large for a float: {value!r}") from None

    def __repr__(self) -> str:
        return f"Ledger({len(self)} cycles)"


def _gibbs_of(E: np.ndarray, T: float) -> np.ndarray:
    """The Gibbs state of validated energies (a real 2-D array) at T, in E's own kernel dtype."""
    check_states(E.shape)
    (E,), _ = cpu.to_kernel(E)
    return _gibbs(E, T)


def _checked_label(label: LabelState, shape: tuple):
    """What the demon reads of a reservoir's answer, checked once as it comes in: the labels (a
    real array of E's shape, not cast), the reservoir temperature T' and its shift mu / T'."""
    labels = _check_matrix(label.q, "labels", shape)
    Tl = positive_temperature(label.T)
    return labels, Tl, potential(label.mu, shape[1], Tl, "mu", "state")


def _sample_ids(index, n: int) -> np.ndarray:
    """Validated sample ids: (n,) distinct integers, as int64."""
    ids = np.asarray(index)
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"index must be an array of integer sample ids, got dtype {ids.dtype}")
    if ids.shape != (n,):
        raise ValueError(f"index must have shape ({n},) (one id per row of E), got {ids.shape}")
    ids = ids.astype(np.int64)
    if np.unique(ids).size != n:
        raise ValueError("index must not repeat an id within one measurement (one row per sample)")
    return ids


class _LabelStore:
    """Each sample's labels of its last completed cycle, by sample id: ids (M,) sorted int64 and
    their labels (M, K), looked up and updated with searchsorted (no per-sample Python loop)."""

    def __init__(self):
        self.ids = np.empty(0, dtype=np.int64)
        self.q = None

    def _find(self, ids):
        pos = np.searchsorted(self.ids, ids)
        found = pos < self.ids.size
        found[found] = self.ids[pos[found]] == ids[found]
        return pos, found

    def chained(self, ids, q_gibbs):
        """q_gibbs with the rows of samples seen before replaced by their stored labels."""
        if self.q is None or not self.ids.size:
            return q_gibbs
        if self.q.shape[1] != q_gibbs.shape[1]:
            raise ValueError(
                f"E has {q_gibbs.shape[1]} states but the demon keeps labels of {self.q.shape[1]} states "
                "for earlier samples; call reset() to start new books"
            )
        pos, found = self._find(ids)
        if not found.any():
            return q_gibbs
        out = np.array(q_gibbs, dtype=np.result_type(q_gibbs.dtype, self.q.dtype))
        out[found] = self.q[pos[found]]
        return out

    def update(self, ids, q):
        """Store q's rows as the labels of samples ids (overwriting what those ids had)."""
        q = np.asarray(q)
        if self.q is None or self.q.shape[1] != q.shape[1]:
            order = np.argsort(ids)
            self.ids, self.q = ids[order], np.array(q[order])
            return
        pos, found = self._find(ids)
        self.q = self.q.astype(np.result_type(self.q.dtype, q.dtype), copy=False)
        self.q[pos[found]] = q[found]
        if not found.all():
            ids_all = np.concatenate((self.ids, ids[~found]))
            q_all = np.concatenate((self.q, q[~found]))
            order = np.argsort(ids_all, kind="stable")
            self.ids, self.q = ids_all[order], q_all[order]


def cycle_row(t: int, T: float, W: float, before, after, Q: float, U_start: float, U_measured: float, S_q: float,
              Sigma: float, D_prev_to_new: float, charges, charge_err: float, mu_summary) -> dict:
    """The ledger row of a completed cycle from its sums over samples (shared by
    :class:`Demon` and thermossl.torch's LedgerRecorder): W the work of the feedback stroke;
    ``before`` = (log Z, D, L, U[q], S[p], U[p]) of the labels against the Gibbs state before
    the step, ``after`` = (log Z, D, L, U[q]) after it; Q, U_start, U_measured, S_q, Sigma and
    D(q_prev || q) of the measurement; the charges (K,) of the labels, their error and
    (min, max, mean) of mu."""
    log_z_b, D_before, L_before, U_b, S_p, U_p = before
    log_z_a, D_after, L_after, U_a = after
    F_before = -T * log_z_b
    F_after = -T * log_z_a
    H_N = shannon_entropy(charges)
    information = H_N - S_q
    W_ext = -W
    dF = F_after - F_before
    dU = (U_measured - U_start) + (U_a - U_b)
    mu_min, mu_max, mu_mean = mu_summary
    return {
        "t": t,
        "W": W, "Q": Q, "dU": dU, "W_ext": W_ext,
        "U_start": U_start, "U_measured": U_measured, "U_end": U_a,
        "F_before": F_before, "F_after": F_after, "dF": dF,
        "S_q": S_q, "S_p": S_p, "D_before": D_before, "D_after": D_after,
        "L_before": L_before, "L_after": L_after,
        "Sigma": Sigma, "I": information, "H_N": H_N,
        "charge_err": charge_err,
        "mu_min": mu_min, "mu_max": mu_max, "mu_mean": mu_mean,
        "eta": 1.0 - D_after / D_before if D_before > 0 else math.nan,
        "W_ext_over_TI": W_ext / (T * information) if information > 0 else math.nan,
        "res_first_law": dU - (W + Q),
        "res_D1": W_ext - (T * (D_before - D_after) - dF),
        "res_G1": F_before - (U_p - T * S_p),
        "res_G2": L_before - (S_q + D_before),
        "res_G4": L_before - (U_b - F_before) / T,
        "res_E2": Sigma - D_prev_to_new,
    }


def _mu_summary(mu):
    return float(np.min(mu)), float(np.max(mu)), float(np.mean(mu))


class Demon:
    """The learning demon: measurement (labels from a reservoir) and feedback (learning), in cycles.

    The books follow the samples: ``measure(E, index=ids)`` with ``ids`` the (N,) integer ids of
    E's rows chains each sample from its own last labels (kept per id, across cycles and batches
    of any size); samples not seen before start from the Gibbs state of E at T. Without ``index``
    every row starts from the Gibbs state of E at T — rows are never matched by position, so two
    minibatches of other samples with one shape do not chain. ``q_before=`` sets the labels
    before the stroke explicitly (the id store is still updated when ``index`` is given). The
    cycle and the ledger's identities: the theory page of the documentation.

    Parameters
    ----------
    T : float
        The representation temperature (the student softmax), > 0.
    reservoir : thermossl.reservoirs.Reservoir
        Supplies the labels at its own temperature T'.
    w : array_like, shape (N,), optional
        Fixed sample weights (default 1/N per batch); the demon keeps a copy.

    Attributes
    ----------
    ledger : Ledger
        The books, one row per completed cycle.
    work_per_sample, heat_per_sample : numpy.ndarray or None
        The per-sample terms of the last cycle's work and heat (float64 (N,)).

    Raises
    ------
    TypeError
        If ``reservoir`` is not a :class:`~thermossl.reservoirs.Reservoir`, or ``w`` is not real
        numbers (complex, strings, extended precision).
    ValueError
        If ``T`` is not finite and > 0.
    """

    def __init__(self, T: float, reservoir: Reservoir, w: Optional[npt.ArrayLike] = None) -> None:
        self.T = positive_temperature(T)
        if not isinstance(reservoir, Reservoir):
            raise TypeError(f"reservoir must be a thermossl.reservoirs.Reservoir, got {type(reservoir).__name__}")
        self.reservoir = reservoir
        # Real numbers, refused like every other function's w (a float64 cast would drop the
        # imaginary part of complex weights and parse strings); their length and sum are checked
        # per batch, from this dtype, as thermo's functions check theirs. A copy: a caller reusing
        # their weights array must not change the books of later cycles.
        self._w = None if w is None else np.array(as_real_array(w, "w"))
        self.ledger = Ledger()
        self.work_per_sample: Optional[Float64Array] = None  # (N,) w_i sum_y q_iy (E'_iy - E_iy) of the last cycle
        self.heat_per_sample: Optional[Float64Array] = None  # (N,) w_i sum_y E_iy (q_iy - q_prev_iy) of the last cycle
        self._q_prev: Optional[npt.NDArray[Any]] = None
        self._pending: Optional[dict[str, Any]] = None
        self._store = _LabelStore()

    @property
    def labels(self) -> Optional[npt.NDArray[Any]]:
        """The labels of the last measurement (None before the first)."""
        return self._pending["label"].q if self._pending is not None else self._q_prev

    def measure(self, E: npt.ArrayLike, q_before: Optional[npt.ArrayLike] = None,
                index: Optional[npt.ArrayLike] = None) -> LabelState:
        """The isochoric stroke: labels move to the reservoir's GGE of E.

        Parameters
        ----------
        E : array_like, shape (N, K)
            The energies (= -scores) of the batch.
        q_before : array_like, shape (N, K), optional
            Labels before the stroke, overriding the chained ones.
        index : array_like of int, shape (N,), optional
            Distinct integer ids of E's rows. A sample measured before (by id) starts from its labels
            of then; the others, and every row when index is None, from gibbs(E, T).

        Returns
        -------
        thermossl.reservoirs.LabelState
            The reservoir's label state.

        Raises
        ------
        RuntimeError
            If called twice without :meth:`feedback` in between.
        TypeError
            If an array is not real, or ``index`` is not integer.
        ValueError
            If ``E`` is not 2-D, ``q_before`` does not have E's shape, ``index`` is not N distinct ids,
            or the reservoir's labels are not a label state; the message names the argument.
        """
        if self._pending is not None:
            raise RuntimeError("measure() called twice without feedback(): complete the cycle first")
        E = real_matrix(E, "E")
        ids = None if index is None else _sample_ids(index, E.shape[0])
        w = self._sample_weights(E.shape[0])
        if q_before is not None:
            q_before = _check_matrix(q_before, "q_before", E.shape)
        if q_before is None:
            q_before = _gibbs_of(E, self.T)
            if ids is not None:
                q_before = self._store.chained(ids, q_before)
        label = self.reservoir._assign(E, w)
        labels, Tl, shift = _checked_label(label, E.shape)
        E_k, q_prev, q_t = cpu.to_kernel(E, q_before, labels)[0]
        # Rows of the old labels against the new GGE: U[q_prev], S[q_prev], N[q_prev], D(q_prev||q_t).
        prev_rows, prev_charges = self._ledger_rows(q_prev, E_k, Tl, w, shift)
        # Rows of the new labels against the representation's Gibbs state at T.
        rows, charges = self._ledger_rows(q_t, E_k, self.T, w)
        heat = _weighted(w, _difference_dot(E_k, q_t, q_prev))
        k = charges.shape[0]
        sums = self._sum_over_samples(np.concatenate((
            [heat.sum(), reduce(w, prev_rows["entropy_q"]), reduce(w, rows["entropy_q"]),
             reduce(w, prev_rows["energy_q"]), reduce(w, prev_rows["relative_entropy"]), reduce(w, rows["energy_q"])],
            charges, prev_charges,
        )))
        Q, S_prev, S_t, U_start, D_prev_to_new, U_measured = (float(v) for v in sums[:6])
        charges, prev_charges = sums[6 : 6 + k], sums[6 + k :]
        sigma = (S_t - S_prev) - (Q - float(label.mu @ (charges - prev_charges))) / Tl
        self._pending = {
            "E": E_k, "w": w, "label": label, "labels": labels, "rows": rows, "charges": charges, "heat": heat, "Q": Q,
            "U_start": U_start, "U_measured": U_measured, "S_q": S_t, "Sigma": sigma,
            "D_prev_to_new": D_prev_to_new, "ids": ids,
        }
        return label

    def feedback(self, E_after: npt.ArrayLike, E_before: Optional[npt.ArrayLike] = None) -> dict[str, float]:
        """The adiabatic stroke with the measured labels fixed; closes the cycle.

        Parameters
        ----------
        E_after : array_like, shape (N, K)
            Energies after the learning step.
        E_before : array_like, shape (N, K), optional
            Energies the work is counted from (default: the measured energies); pass view b's energies
            for SwAV's swapped prediction (the labels come from view a, the work is done on view b).

        Returns
        -------
        dict of str to float
            The cycle's ledger row (also appended to :attr:`ledger`).

        Raises
        ------
        RuntimeError
            If called before :meth:`measure`.
        TypeError
            If an array is not real.
        ValueError
            If an array does not have the measured shape, or holds nan; the message names the argument.
        """
        if self._pending is None:
            raise RuntimeError("feedback() called before measure()")
        pending = self._pending
        T = self.T
        w = pending["w"]
        # Labels (checked by measure), energies after and before, in one shape and one kernel dtype.
        labels = pending["labels"]
        E_a = _check_matrix(E_after, "E_after", labels.shape)
        E_b = pending["E"] if E_before is None else _check_matrix(E_before, "E_before", labels.shape)
        q_t, E_a, E_b = cpu.to_kernel(labels, E_a, E_b)[0]
        rows_b = pending["rows"] if E_before is None else self._ledger_rows(q_t, E_b, T, w, name="E_before")[0]
        rows_a = self._ledger_rows(q_t, E_a, T, w, name="E_after")[0]
        work = _weighted(w, _difference_dot(q_t, E_a, E_b))
        fields_b = ("log_z", "relative_entropy", "loss", "energy_q", "entropy_p", "energy_p")
        fields_a = ("log_z", "relative_entropy", "loss", "energy_q")
        sums = self._sum_over_samples(np.array(
            [work.sum()] + [reduce(w, rows_b[f]) for f in fields_b] + [reduce(w, rows_a[f]) for f in fields_a]
        ))
        row = cycle_row(
            len(self.ledger), T, float(sums[0]), (float(v) for v in sums[1:7]), (float(v) for v in sums[7:11]),
            pending["Q"], pending["U_start"], pending["U_measured"], pending["S_q"], pending["Sigma"],
            pending["D_prev_to_new"], pending["charges"], pending["label"].charge_err,
            _mu_summary(pending["label"].mu))
        self.ledger.append(row)
        self.work_per_sample = work
        self.heat_per_sample = pending["heat"]
        self._q_prev = pending["label"].q
        if pending["ids"] is not None:
            self._store.update(pending["ids"], q_t)
        self._pending = None
        return self.ledger[-1]

    # Hooks for samples sharded across processes (thermossl.distributed.Demon overrides them).
    def _sample_weights(self, n: int):
        """The weights of this process's n samples: validated float64 (n,), or None for uniform 1/n."""
        return validated_weights(self._w, n) if self._w is not None else None

    def _ledger_rows(self, q, E, T, w, shift=None, name: str = "E"):
        """Per-row sums of a ledger row and this process's charges sum_i w_i q_iy (validated
        arguments: q, E of one shape and kernel dtype; shift = mu/T float64 or None; errors about
        the energies name them ``name``)."""
        return _ledger_rows(q, E, T, w, shift, name=name)

    def _sum_over_samples(self, partial: np.ndarray) -> np.ndarray:
        """Sums over samples from this process's partial sums (a float64 vector): in one process,
        the partial sums themselves; sharded, their sum over every process."""
        return partial

    def reset(self) -> None:
        """Start new books: empty ledger, no previous labels, the reservoir reset."""
        self.ledger = Ledger()
        self._q_prev = None
        self._pending = None
        self._store = _LabelStore()
        self.work_per_sample = None
        self.heat_per_sample = None
        self.reservoir.reset()
