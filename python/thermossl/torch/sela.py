"""SeLa's label optimiser (Asano et al. 2020) over a whole data set, for a torch training loop.

SeLa alternates: (1) with the network fixed, find the label state q of every sample that
minimises U[q] - T' S[q] with equal cluster sizes — Sinkhorn to tolerance on the energies
E = -scores of the whole data set at T' = 1/lambda (lambda = 25); (2) train the network on those
labels with a cross-entropy. ``SeLaLabels`` does step (1): ``update(scores)`` solves for the labels
(warm-started from the previous solution's chemical potentials, adaptive over-relaxation), and
``labels(index)`` / ``targets(index)`` hand them out per batch. With an initialised
torch.distributed group, each rank passes the scores of its own shard of the data set and the
balancing is global (thermossl.distributed.sinkhorn: one all-reduce of the charges per
iteration); each rank keeps its rows.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from . import _kernels
from .ops import _check_tensor

__all__ = ["SeLaLabels"]


class SeLaLabels:
    """Self-labels of a whole data set by Sinkhorn to tolerance (SeLa's step 1).

    T: reservoir temperature T' = 1/lambda (SeLa: lambda = 25). tol, max_iter: the charge error
    sum_y abs(N_y - 1/K) to reach and the iteration limit. relaxation: over-relaxation of the
    mu-update (``"auto"``: adaptive, the same labels in fewer iterations; 1.0: plain Sinkhorn).
    warm_start: start each update from the last chemical potentials.

    After ``update``: ``q`` (N, K) soft labels (rows sum to 1; on the scores' device, float64 by
    default as SeLa solves in double), ``mu`` (K,), ``n_iter``, ``err``, ``converged``.

    Parameters
    ----------
    T : float, optional
        Reservoir temperature T' = 1/lambda, > 0.
    tol : float, optional
        The charge error to reach.
    max_iter : int, optional
        The iteration limit.
    relaxation : float or {"auto"}, optional
        Over-relaxation of the mu-update.
    warm_start : bool, optional
        Start each update from the last chemical potentials.
    dtype : torch.dtype, optional
        The dtype Sinkhorn solves in.

    Raises
    ------
    ValueError
        If ``T`` is not finite and > 0.
    """

    def __init__(self, T: float = 1.0 / 25.0, tol: float = 1e-6, max_iter: int = 1000,
                 relaxation: Union[float, str] = "auto", warm_start: bool = True,
                 dtype: torch.dtype = torch.float64) -> None:
        if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
            raise ValueError(f"T must be a finite number > 0, got {T!r}")
        self.T = float(T)
        self.tol = tol
        self.max_iter = max_iter
        self.relaxation = relaxation
        self.warm_start = bool(warm_start)
        self.dtype = dtype
        self.q: Optional[Tensor] = None
        self.mu: Optional[np.ndarray] = None
        self.n_iter = 0
        self.err = math.nan
        self.converged = False

    @torch.no_grad()
    def update(self, scores: Tensor) -> Tensor:
        """Solve for the labels of every sample from the scores of the whole data set.

        Parameters
        ----------
        scores : torch.Tensor, shape (N, K)
            The scores of every sample (this rank's shard when torch.distributed is initialised).

        Returns
        -------
        torch.Tensor, shape (N, K)
            q, the soft labels.

        Raises
        ------
        ValueError
            If ``scores`` is not a non-empty 2-D tensor, or Sinkhorn refuses it (as
            :func:`thermossl.sinkhorn`).
        """
        import torch.distributed as dist

        scores = _check_tensor(scores, "scores")
        if scores.dim() != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
            raise ValueError(f"scores must have shape (N, K) with N, K >= 1, got {tuple(scores.shape)}")
        # E = -scores: the kernel reads the scores with a signed scale (no negated copy).
        s = scores.detach().to(self.dtype)
        mu0 = self.mu if self.warm_start and self.mu is not None and self.mu.shape == (s.shape[1],) else None
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        q, _, mu, n_iter, err, converged = _kernels.sela_sinkhorn(
            s, self.T, self.tol, self.max_iter, mu0, self.relaxation, distributed=distributed)
        self.q, self.mu = q, np.asarray(mu, dtype=np.float64)
        self.n_iter, self.err, self.converged = int(n_iter), float(err), bool(converged)
        return q

    def _require(self) -> Tensor:
        if self.q is None:
            raise RuntimeError("SeLaLabels has no labels yet: call update(scores) first")
        return self.q

    def targets(self, index: Union[Tensor, slice, Sequence[int], npt.ArrayLike]) -> Tensor:
        """Soft labels q[index] of a batch.

        Parameters
        ----------
        index : torch.Tensor, slice or sequence of int
            The samples' positions in the scores given to :meth:`update`.

        Returns
        -------
        torch.Tensor, shape (B, K)
            Their soft labels.

        Raises
        ------
        RuntimeError
            Before the first :meth:`update`.
        """
        return self._require()[index]

    def labels(self, index: Union[Tensor, slice, Sequence[int], npt.ArrayLike, None] = None) -> Tensor:
        """Hard labels argmax_y q (as SeLa trains on), of a batch or of every sample.

        Parameters
        ----------
        index : torch.Tensor, slice or sequence of int, optional
            The samples' positions (default: every sample).

        Returns
        -------
        torch.Tensor, shape (B,)
            Their hard labels (int64).

        Raises
        ------
        RuntimeError
            Before the first :meth:`update`.
        """
        q = self._require()
        return (q if index is None else q[index]).argmax(1)
