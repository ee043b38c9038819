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
labels (and chemical potentials) in ``forward``; ``feedback`` stays the caller's, after the step.

The books are kept by :class:`thermossl.demon.Demon` on numpy views of CPU tensors (no copy of
the scores; the energies E = -scores cost one negation pass per stroke). CUDA tensors are copied
to the host on the cycles being recorded (one synchronisation per recorded stroke).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from .. import reservoirs as _reservoirs
from ..demon import Demon, Ledger
from ..gibbs import gibbs as _gibbs
from ..reservoirs import LabelState, Reservoir

__all__ = ["LedgerRecorder"]


class _Labels(Reservoir):
    """The recorder's reservoir: labels handed over by the caller (codes of a loss) for one
    measurement, or else those of the wrapped reservoir."""

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


def _energies(scores: Tensor, name: str) -> np.ndarray:
    """E = -scores as a numpy array (one pass; the scores are read in place on the CPU)."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, prototypes), got ndim={scores.dim()}")
    s = scores.detach()
    if s.dtype not in (torch.float32, torch.float64):
        s = s.float()
    return np.negative(s.cpu().numpy())


def _labels(codes: Tensor, shape) -> np.ndarray:
    if not isinstance(codes, Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if tuple(codes.shape) != tuple(shape):
        raise ValueError(f"codes must have the shape of the scores {tuple(shape)}, got {tuple(codes.shape)}")
    c = codes.detach()
    if c.dtype not in (torch.float32, torch.float64):
        c = c.float()
    return c.cpu().numpy()


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

    Raises
    ------
    ValueError
        If ``every`` is not an int >= 1 or ``T`` is not finite and > 0.
    """

    def __init__(self, T: float, reservoir: Optional[Reservoir] = None, every: int = 1,
                 w: Optional[npt.ArrayLike] = None) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self._labels = _Labels(reservoir if reservoir is not None else _reservoirs.swav())
        self.demon = Demon(T, self._labels, w=w)
        self.T = self.demon.T
        self.every = every
        self.steps = 0  # measure() calls so far, recorded or not
        self._pending = False

    @property
    def ledger(self) -> Ledger:
        """The books: a :class:`thermossl.demon.Ledger`, one row per recorded cycle."""
        return self.demon.ledger

    @property
    def recording(self) -> bool:
        """True between a recorded measure() and its feedback()."""
        return self._pending

    @property
    def work_per_sample(self) -> Optional[npt.NDArray[np.float64]]:
        """Per-sample work of the last recorded cycle (numpy (B,)), for the work distribution."""
        return self.demon.work_per_sample

    def measure(self, scores: Tensor, codes: Optional[Tensor] = None, index: Optional[npt.ArrayLike] = None, *,
                mu: Union[Tensor, npt.ArrayLike, None] = None, T_label: Optional[float] = None,
                charge_err: Optional[float] = None) -> Optional[LabelState]:
        """The measurement stroke on ``scores`` (energies E = -scores) before the optimiser step.

        Parameters
        ----------
        scores : torch.Tensor, shape (B, K)
            The student's scores (CUDA scores are copied to the host on recorded steps).
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
            sum_y mu_y = 0 — exact when the codes are a GGE of these scores at T'.
        T_label : float, optional
            The label temperature T' of given codes (default: the reservoir's).
        charge_err : float, optional
            The codes' charge error, when the loss knows it.

        Returns
        -------
        thermossl.reservoirs.LabelState or None
            The label state on a recorded step, None on the others.

        Raises
        ------
        RuntimeError
            If called twice without :meth:`feedback` on a recorded step.
        ValueError
            If the scores or codes have the wrong shape or are not finite label states.
        """
        step = self.steps
        self.steps += 1
        if self._pending:
            raise RuntimeError("measure() called twice without feedback(): complete the recorded cycle first")
        if step % self.every:
            return None
        E = _energies(scores, "scores")
        if codes is not None:
            self._labels.given = self._given_labels(E, codes, mu, T_label, charge_err)
        try:
            if index is not None:
                label = self.demon.measure(E, index=index)
            else:
                label = self.demon.measure(E, q_before=_gibbs(E, self.T))
        finally:
            self._labels.given = None
        self._pending = True
        return label

    def _given_labels(self, E, codes, mu, T_label, charge_err) -> LabelState:
        q = _labels(codes, E.shape)
        T_label = float(self._labels.T if T_label is None else T_label)
        if mu is None:
            with np.errstate(divide="ignore"):
                terms = T_label * np.log(q.astype(np.float64)) + E
            terms[~np.isfinite(terms)] = np.nan
            mu = np.nanmean(terms, axis=0)
            mu = np.where(np.isfinite(mu), mu, 0.0)
        else:
            mu = (mu.detach().cpu().numpy() if isinstance(mu, Tensor) else np.asarray(mu)).astype(np.float64)
        mu = mu - mu.mean()  # gauge sum_y c_y mu_y = 0 for uniform targets
        charges = q.mean(axis=0, dtype=np.float64)
        if charge_err is None:
            charge_err = float(np.abs(charges - 1.0 / q.shape[1]).sum())
        return LabelState(q=q, mu=mu, charges=charges, charge_err=float(charge_err), T=T_label, method="given")

    @torch.compiler.disable
    def _measure_from_loss(self, scores, codes, mu, err, T_label):
        """The measurement of a loss's forward (SwAVLoss, DINOLoss) on its own labels."""
        if self._pending:
            return None  # a forward without an optimiser step in between (evaluation): not a cycle
        return self.measure(scores, codes, mu=mu, T_label=T_label,
                            charge_err=None if err is None else float(err))

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
            The ledger row of the completed cycle, or None when this step was not recorded.

        Raises
        ------
        ValueError
            If the scores do not have the measured shape.
        """
        if not self._pending:
            return None
        E_after = _energies(scores_after, "scores_after")
        E_before = None if scores_before is None else _energies(scores_before, "scores_before")
        self._pending = False
        return self.demon.feedback(E_after, E_before)

    def reset(self) -> None:
        """New books: empty ledger, no pending measurement, step count 0."""
        self.demon.reset()
        self.steps = 0
        self._pending = False

    def __repr__(self) -> str:
        return f"LedgerRecorder(T={self.T:g}, every={self.every}, cycles={len(self.ledger)})"
