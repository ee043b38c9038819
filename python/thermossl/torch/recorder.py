"""The learning demon inside a torch training loop (the theory page of the documentation).

::

    recorder = LedgerRecorder(T=0.1, reservoir=thermossl.reservoirs.swav(), every=10)
    for x in loader:
        scores = model(x)                      # (B, K) prototype scores, E = -scores
        loss = ...
        recorder.measure(scores, codes)        # measurement stroke (isochoric): labels, heat
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        if recorder.recording:                 # only on the cycles being recorded
            with torch.no_grad():
                recorder.feedback(model(x))    # feedback stroke (adiabatic): work
    recorder.ledger.to_csv("ledger.csv")       # a thermossl.demon.Ledger

or pass ``recorder=`` to :class:`SwAVLoss`/:class:`DINOLoss`, which then measure on their own
labels (chemical potentials and log-partition functions) in ``forward``; ``feedback`` stays the
caller's, after the step.

How the books are kept. The scores are read in place by the ledger kernel with the signed scale
+1/T (E = -scores: no negated copy). Measurement (labels q from the caller or the reservoir,
the labels before the stroke being the Gibbs state p of the scores at T): one fused ledger pass
of q against p gives U[q], S[q], the charges, and U[p], S[p] of the labels before; one
log-sum-exp pass weighted by mu gives sum_y p_y mu_y (the charges of p against mu); the
log-partition function of the labels' GGE comes with the labels (Sinkhorn's f, DINO's softmax)
or takes one more log-sum-exp pass. Feedback: one fused ledger pass of q against the scores after
the step (and before it, when they are another view), and the work sum_y q_y (E'_y - E_y) of
each sample in one read of q and the two score matrices. Heat is U[q] - U[p] of the ledger pass.
With ``index=`` (labels chained per sample id) the recorder runs :class:`thermossl.demon.Demon`'s
general path instead (numpy views of CPU tensors, a host copy of CUDA ones).

CUDA tensors (and ``deferred=True`` on the CPU): every pass runs on the tensors' device and the
cycle's sums stay there as a small float64 vector; nothing is copied to the host and nothing
synchronises per step. The rows reach :attr:`ledger` in batches: one copy of all pending cycles
when ``ledger`` is read, :meth:`flush` is called, or ``flush_every`` cycles are pending. In that
mode ``measure`` returns the label state with device tensors and ``feedback`` returns None (the
row is in the ledger after the next flush); rows with non-finite sums (nan scores, labels that
are not a label state) raise ``ValueError`` at the flush, naming the cycle.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from . import _kernels
from .. import reservoirs as _reservoirs
from ..demon import Demon, Ledger, cycle_row
from ..gibbs import gibbs as _gibbs
from ..reservoirs import LabelState, Reservoir

__all__ = ["LedgerRecorder"]

_NEEDED = ("energy_q", "energy_p", "log_z", "entropy_q", "entropy_p", "relative_entropy", "loss")
# Layout of a measured cycle's device vector (float64): the measurement's sums, then the
# feedback's, then (min, max, mean) of mu and the charge error; the charges follow (K).
_MEASURED = ("Q", "U_start", "U_measured", "S_q", "Sigma", "D_prev_to_new")
_BEFORE = ("log_z", "relative_entropy", "loss", "energy_q", "entropy_p", "energy_p")
_AFTER = ("log_z", "relative_entropy", "loss", "energy_q")


class _Labels(Reservoir):
    """The recorder's reservoir for Demon's path (``index=``): labels handed over by the caller
    for one measurement, or else those of the wrapped reservoir."""

    def __init__(self, inner: Reservoir):
        self.inner = inner
        self.T = inner.T
        self.given: Optional[LabelState] = None

    def assign(self, E, w=None) -> LabelState:
        if self.given is not None:
            label, self.given = self.given, None
            return label
        return self.inner.assign(E, w)

    def reset(self) -> None:
        self.given = None
        self.inner.reset()


def _scores(scores, name: str) -> Tensor:
    """The scores as the kernels read them: 2-D, float32 or float64 (half converted), detached."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, prototypes), got ndim={scores.dim()}")
    s = scores.detach()
    if s.dtype not in (torch.float32, torch.float64):
        s = s.float()
    return s


def _energies(scores: Tensor, name: str) -> np.ndarray:
    """E = -scores as a numpy array, for Demon's path (one pass; a host copy of CUDA scores)."""
    return np.negative(_scores(scores, name).cpu().numpy())


def _check_codes(codes, shape) -> Tensor:
    if not isinstance(codes, Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if tuple(codes.shape) != tuple(shape):
        raise ValueError(f"codes must have the shape of the scores {tuple(shape)}, got {tuple(codes.shape)}")
    return codes.detach()


class LedgerRecorder:
    """Records the demon's cycles of a torch training loop into :attr:`ledger`.

    Parameters
    ----------
    T : float
        The representation temperature (the student softmax: SwAV's ``temperature``, DINO's
        ``student_temp``), > 0.
    reservoir : thermossl.reservoirs.Reservoir, optional
        Where labels come from when ``measure`` gets no codes (default
        :func:`thermossl.reservoirs.swav`); its T' is also the label temperature of given codes
        unless ``T_label`` is passed.
    every : int, optional
        Record one cycle in ``every`` (the other steps cost nothing).
    w : array_like, shape (B,), optional
        Fixed sample weights (default 1/B per batch).
    deferred : bool, optional
        Keep the books on the tensors' device and copy them to the host in batches of up to
        ``flush_every`` cycles (default: True for CUDA tensors, False on the CPU; see the module
        documentation).
    flush_every : int, optional
        The most deferred cycles kept on the device before one copy to the host.

    Raises
    ------
    ValueError
        If ``every`` or ``flush_every`` is not an int >= 1 or ``T`` is not finite and > 0.
    """

    def __init__(self, T: float, reservoir: Optional[Reservoir] = None, every: int = 1,
                 w: Optional[npt.ArrayLike] = None, deferred: Optional[bool] = None, flush_every: int = 64) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be an int >= 1, got {flush_every!r}")
        self._labels = _Labels(reservoir if reservoir is not None else _reservoirs.swav())
        self.demon = Demon(T, self._labels, w=w)
        self.T = self.demon.T
        self.every = every
        self.deferred = deferred
        self.flush_every = flush_every
        self.steps = 0  # measure() calls so far, recorded or not
        self._pending = None  # the open cycle: "demon" (Demon's path) or a dict
        self._queue = []  # deferred cycles: (device vector, device charges)
        self._work = None
        self._heat = None

    # ------------------------------------------------------------------ books
    @property
    def ledger(self) -> Ledger:
        """The books: a :class:`thermossl.demon.Ledger`, one row per recorded cycle (deferred
        cycles are copied in first: one host transfer for all of them)."""
        self.flush()
        return self.demon.ledger

    @property
    def recording(self) -> bool:
        """True between a recorded measure() and its feedback()."""
        return self._pending is not None

    @property
    def work_per_sample(self) -> Optional[npt.NDArray[np.float64]]:
        """Per-sample work of the last recorded cycle (numpy (B,)), for the work distribution."""
        if self._work is None:
            return self.demon.work_per_sample
        return self._work.cpu().numpy()

    @property
    def heat_per_sample(self) -> Optional[npt.NDArray[np.float64]]:
        """Per-sample heat of the last recorded measurement (numpy (B,))."""
        if self._heat is None:
            return self.demon.heat_per_sample
        return self._heat.cpu().numpy()

    def flush(self) -> None:
        """Copy the deferred cycles to the host (one transfer) and append their ledger rows.

        Raises
        ------
        ValueError
            If a deferred cycle has non-finite sums (nan or infinite scores, or codes that are not
            a label state), naming the cycle.
        """
        if not self._queue:
            return
        queue, self._queue = self._queue, []
        sums = torch.stack([v for v, _ in queue]).cpu().numpy()
        charges = torch.stack([c for _, c in queue]).cpu().numpy()
        for values, charge in zip(sums, charges):
            self._append(values, charge)

    def _append(self, values: np.ndarray, charges: np.ndarray):
        t = len(self.demon.ledger)
        if not (np.all(np.isfinite(values[:-4])) and np.all(np.isfinite(charges))):
            raise ValueError(f"LedgerRecorder: cycle {t} has non-finite sums (nan or infinite scores, or codes "
                             "that are not a label state: rows of nonnegative numbers summing to 1)")
        m = len(_MEASURED)
        b = m + 1 + len(_BEFORE)
        measured = dict(zip(_MEASURED, (float(v) for v in values[:m])))
        row = cycle_row(t, self.T, float(values[m]), (float(v) for v in values[m + 1:b]),
                        (float(v) for v in values[b:b + len(_AFTER)]), measured["Q"], measured["U_start"],
                        measured["U_measured"], measured["S_q"], measured["Sigma"], measured["D_prev_to_new"],
                        charges, float(values[-1]), tuple(float(v) for v in values[-4:-1]))
        self.demon.ledger.append(row)
        return self.demon.ledger[-1]

    # ------------------------------------------------------------------ strokes
    def measure(self, scores: Tensor, codes: Optional[Tensor] = None, index: Optional[npt.ArrayLike] = None, *,
                mu: Union[Tensor, npt.ArrayLike, None] = None, T_label: Optional[float] = None,
                charge_err: Optional[float] = None, log_z_label: Optional[Tensor] = None) -> Optional[LabelState]:
        """The measurement stroke on ``scores`` (energies E = -scores) before the optimiser step.

        The scores are kept by reference until ``feedback`` (not copied): do not modify them in
        place in between.

        Parameters
        ----------
        scores : torch.Tensor, shape (B, K)
            The student's scores.
        codes : torch.Tensor, shape (B, K), optional
            The labels the loss uses, rows summing to 1 (SwAV's codes, DINO's teacher probabilities);
            None lets the recorder's reservoir assign them.
        index : array_like of int, shape (B,), optional
            The samples' ids, passed on to ``Demon.measure(E, index=...)`` (chaining each sample's
            labels across cycles) only when given; without it every batch is taken as new samples,
            whose measurement starts from their own Gibbs state.
        mu : torch.Tensor or array_like, shape (K,), optional
            The codes' chemical potentials when known (Sinkhorn's mu; DINO's -center); otherwise they
            are estimated from the codes, mu_y = mean_i (T' log q_iy + E_iy) in the gauge
            sum_y mu_y = 0 — exact when the codes are a GGE of these scores at T' with every state
            allowed (q > 0); where codes are 0 the mean runs over the finite terms only, and the
            estimate is approximate.
            Whatever their source (given, estimated or the reservoir's), the books take mu in the
            gauge sum_y mu_y = 0 (mu is defined up to a common constant): where a
            reservoir keeps another gauge (centering's mu = -C), ``mu_min``, ``mu_max`` and
            ``mu_mean`` differ from the numpy Demon's by that constant, and every other field agrees.
        T_label : float, optional
            The label temperature T' of given codes (default: the reservoir's).
        charge_err : float, optional
            The codes' charge error, when the loss knows it.
        log_z_label : torch.Tensor, shape (B,), optional
            The log-partition function of the labels' GGE at mu when known (-f/T' of Sinkhorn; the
            log Z of DINO's teacher softmax), saving one pass.

        Returns
        -------
        thermossl.reservoirs.LabelState or None
            The label state on a recorded step (device tensors when the books are deferred), None on
            the others.

        Raises
        ------
        RuntimeError
            If called twice without :meth:`feedback` on a recorded step.
        ValueError
            If the scores or codes have the wrong shape or are not finite label states.
        """
        step = self.steps
        self.steps += 1
        if self._pending is not None:
            raise RuntimeError("measure() called twice without feedback(): complete the recorded cycle first")
        if step % self.every:
            return None
        if index is not None:
            return self._measure_by_demon(scores, codes, index, mu, T_label, charge_err)
        s = _scores(scores, "scores")
        T_label = float(self._labels.T if T_label is None else T_label)
        if codes is None:
            label = self._labels.inner._assign(np.negative(s.cpu().numpy()), self.demon._sample_weights(s.shape[0]))
            q = torch.from_numpy(np.ascontiguousarray(label.q)).to(device=s.device, dtype=s.dtype)
            mu, T_label, charge_err = torch.as_tensor(label.mu, device=s.device), float(label.T), label.charge_err
            if label.f is not None:
                log_z_label = torch.as_tensor(-np.asarray(label.f, dtype=np.float64) / T_label, device=s.device)
        else:
            q = _check_codes(codes, s.shape).to(dtype=s.dtype)
        self._pending = self._measured(s, q, mu, T_label, charge_err, log_z_label)
        return self._pending["label"]

    def _measure_by_demon(self, scores, codes, index, mu, T_label, charge_err):
        """Demon's general path (labels chained per sample id), on numpy."""
        E = _energies(scores, "scores")
        if codes is not None:
            self._labels.given = self._given_labels(E, codes, mu, T_label, charge_err)
        try:
            label = self.demon.measure(E, index=index)
        finally:
            self._labels.given = None
        self._pending = "demon"
        return label

    def _given_labels(self, E, codes, mu, T_label, charge_err) -> LabelState:
        q = _check_codes(codes, E.shape)
        q = (q if q.dtype in (torch.float32, torch.float64) else q.float()).cpu().numpy()
        T_label = float(self._labels.T if T_label is None else T_label)
        if mu is None:
            with np.errstate(divide="ignore", invalid="ignore"):  # q = 0 at E = inf: nan, dropped below
                terms = T_label * np.log(q.astype(np.float64)) + E
            terms[~np.isfinite(terms)] = np.nan
            with warnings.catch_warnings():  # a state forbidden in every row: mu 0, set below
                warnings.simplefilter("ignore", RuntimeWarning)
                mu = np.nanmean(terms, axis=0)
            mu = np.where(np.isfinite(mu), mu, 0.0)
        else:
            mu = (mu.detach().cpu().numpy() if isinstance(mu, Tensor) else np.asarray(mu)).astype(np.float64)
        mu = mu - mu.mean()
        # The charges with the demon's sample weights, as Demon books them (sum_i w_i q_iy).
        w = self.demon._sample_weights(q.shape[0])
        charges = q.mean(axis=0, dtype=np.float64) if w is None else w @ q.astype(np.float64)
        if charge_err is None:
            charge_err = float(np.abs(charges - 1.0 / q.shape[1]).sum())
        return LabelState(q=q, mu=mu, charges=charges, charge_err=float(charge_err), T=T_label, method="given")

    def _weights(self, n: int, like: Tensor):
        w = self.demon._sample_weights(n)
        return None if w is None else torch.as_tensor(w, dtype=torch.float64, device=like.device)

    def _reduce(self, w, rows: Tensor) -> Tensor:
        """sum_i w_i rows_i (mean for uniform weights), a 0-d float64 tensor on the rows' device."""
        return rows.mean() if w is None else torch.dot(w, rows)

    def _ledger(self, q: Tensor, s: Tensor, w, charges: bool = False):
        """One fused ledger pass of q against the Gibbs state of the scores s at T (signed scale
        +1/T: E = -s): per-row float64 tensors, and the charges when asked."""
        n, k = s.shape
        rows = {name: torch.empty(n, dtype=torch.float64, device=s.device) for name in _NEEDED}
        out = torch.empty(k, dtype=torch.float64, device=s.device)
        _kernels.ledger_rows(q, s, 1.0 / self.T, None, None if w is None else w.to(s.dtype), rows, out)
        return rows, (out if charges else None)

    def _measured(self, s: Tensor, q: Tensor, mu, T_label: float, charge_err, log_z_label) -> dict:
        """The measurement's sums (device tensors) for labels q of the scores s (see the module
        documentation for the passes)."""
        n, k = s.shape
        w = self._weights(n, s)
        if mu is None:  # estimate from the codes, mu_y = mean_i (T' log q_iy + E_iy)
            terms = T_label * torch.log(q.to(torch.float64)) - s.to(torch.float64)
            terms = torch.where(torch.isfinite(terms), terms, torch.full((), math.nan, dtype=torch.float64,
                                                                          device=s.device))
            mu = torch.nan_to_num(torch.nanmean(terms, 0), nan=0.0, posinf=0.0, neginf=0.0)
            log_z_label = None
        mu_raw = torch.as_tensor(mu).detach().to(device=s.device, dtype=torch.float64)
        shift_mean = mu_raw.mean()
        mu = mu_raw - shift_mean  # the gauge sum_y mu_y = 0 of uniform targets
        rows, charges = self._ledger(q, s, w, charges=True)
        # sum_y p_y mu_y of the Gibbs state p at T: one log-sum-exp pass weighted by mu.
        p_mu = _kernels.softmax_expectation(s, 1.0 / self.T, mu, rows["log_z"])
        # log Z of the labels' GGE at (T', mu): given by the loss, or one log-sum-exp pass.
        if log_z_label is None:
            lz = torch.empty(n, dtype=s.dtype, device=s.device)
            _kernels.row_logsumexp(s, 1.0 / T_label, (mu / T_label).contiguous(), lz)
            log_z_label = lz.to(torch.float64)
        else:
            log_z_label = torch.as_tensor(log_z_label).detach().to(device=s.device, dtype=torch.float64)
            log_z_label = log_z_label - shift_mean / T_label
        U_q, U_p = -rows["energy_q"], -rows["energy_p"]  # energies of E = -s
        heat = U_q - U_p
        d_prev = -rows["entropy_p"] + (U_p - p_mu) / T_label + log_z_label  # D(p || GGE(T', mu)) per row
        Q, U_start, U_measured = self._reduce(w, heat), self._reduce(w, U_p), self._reduce(w, U_q)
        S_q, S_prev = self._reduce(w, rows["entropy_q"]), self._reduce(w, rows["entropy_p"])
        mu_charges = torch.dot(mu, charges) - self._reduce(w, p_mu)  # mu . (N[q] - N[p])
        sigma = (S_q - S_prev) - (Q - mu_charges) / T_label
        if charge_err is None:
            charge_err = (charges - 1.0 / k).abs().sum()
        charge_err = torch.as_tensor(charge_err, dtype=torch.float64).to(s.device)
        measured = torch.stack([Q, U_start, U_measured, S_q, sigma, self._reduce(w, d_prev)])
        self._heat = heat / n if w is None else heat * w
        deferred = self.deferred if self.deferred is not None else s.is_cuda
        label = LabelState(q=q if deferred else q.cpu().numpy(), mu=mu if deferred else mu.cpu().numpy(),
                           charges=charges if deferred else charges.cpu().numpy(),
                           charge_err=charge_err if deferred else float(charge_err), T=T_label, method="given")
        return {"s": s, "q": q, "w": w, "rows": rows, "charges": charges, "measured": measured,
                "mu_summary": torch.stack([mu.min(), mu.max(), mu.mean()]), "charge_err": charge_err,
                "label": label, "deferred": deferred}

    @torch.compiler.disable
    def _measure_from_loss(self, scores, codes, mu, err, T_label, log_z_label=None):
        """The measurement of a loss's forward (SwAVLoss, DINOLoss) on its own labels."""
        if self._pending is not None:
            return None  # a forward without an optimiser step in between (evaluation): not a cycle
        return self.measure(scores, codes, mu=mu, T_label=T_label, charge_err=None if err is None else float(err),
                            log_z_label=log_z_label)

    def feedback(self, scores_after: Tensor, scores_before: Optional[Tensor] = None) -> Optional[dict[str, float]]:
        """The feedback stroke after the optimiser step.

        Parameters
        ----------
        scores_after : torch.Tensor, shape (B, K)
            The scores of the same samples (and view) after the step.
        scores_before : torch.Tensor, shape (B, K), optional
            The view the loss trained on when it differs from the measured one (SwAV's swapped
            prediction: view b); default: the measured scores.

        Returns
        -------
        dict of str to float or None
            The ledger row of the completed cycle, or None when this step was not recorded (or the
            books are deferred: the row reaches the ledger at the next flush).

        Raises
        ------
        ValueError
            If the scores do not have the measured shape.
        """
        pending = self._pending
        if pending is None:
            return None
        if isinstance(pending, str):
            E_after = _energies(scores_after, "scores_after")
            E_before = None if scores_before is None else _energies(scores_before, "scores_before")
            self._pending = None
            return self.demon.feedback(E_after, E_before)
        s, q, w = pending["s"], pending["q"], pending["w"]
        s_after = _scores(scores_after, "scores_after")
        if s_after.shape != s.shape:
            raise ValueError(f"scores_after must have the shape of the measured scores {tuple(s.shape)}, "
                             f"got {tuple(s_after.shape)}")
        s_after = s_after.to(device=s.device, dtype=s.dtype)
        if scores_before is None:
            s_before, rows_b = s, pending["rows"]
        else:
            s_before = _scores(scores_before, "scores_before")
            if s_before.shape != s.shape:
                raise ValueError(f"scores_before must have the shape of the measured scores {tuple(s.shape)}, "
                                 f"got {tuple(s_before.shape)}")
            s_before = s_before.to(device=s.device, dtype=s.dtype)
            rows_b = self._ledger(q, s_before, w)[0]
        rows_a = self._ledger(q, s_after, w)[0]
        self._pending = None
        # work per sample: sum_y q (E' - E) = -sum_y q (s' - s), one read of q and both scores
        work = -_kernels.row_difference_dot(q, s_after, s_before).to(s.device)
        work = work / s.shape[0] if w is None else work * w

        def sums(rows, fields):
            return [self._reduce(w, -rows[f] if f.startswith("energy") else rows[f]) for f in fields]

        W = work.sum()
        values = torch.cat([pending["measured"], torch.stack([W] + sums(rows_b, _BEFORE) + sums(rows_a, _AFTER)),
                            pending["mu_summary"], pending["charge_err"].reshape(1)])
        self._work = work
        if pending["deferred"]:
            self._queue.append((values, pending["charges"]))
            if len(self._queue) >= self.flush_every:
                self.flush()
            return None
        self.flush()
        return self._append(values.cpu().numpy(), pending["charges"].cpu().numpy())

    def reset(self) -> None:
        """New books: empty ledger, no pending measurement, step count 0."""
        self.demon.reset()
        self.steps = 0
        self._pending = None
        self._queue = []
        self._work = self._heat = None

    def __repr__(self) -> str:
        return f"LedgerRecorder(T={self.T:g}, every={self.every}, cycles={len(self.demon.ledger) + len(self._queue)})"
