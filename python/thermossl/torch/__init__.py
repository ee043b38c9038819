"""thermossl for PyTorch: custom operators, SwAV and DINO losses, and the demon's ledger in a
torch training loop. Needs ``pip install "thermossl[torch]"``; ``import thermossl`` alone never
imports torch.

- ops (``torch.library`` custom ops, autograd, fake kernels, autocast; CPU and CUDA tensors):
  :func:`log_partition`, :func:`gibbs`, :func:`gibbs_entropy`, :func:`cross_entropy`,
  :func:`logsumexp`, :func:`softmax`, :func:`log_softmax`, :func:`sinkhorn`;
- losses (``nn.Module``): :class:`SwAVLoss`, :class:`DINOLoss`; SeLa's label optimiser over a
  whole data set: :class:`SeLaLabels`;
- :class:`LedgerRecorder`: measurement and feedback strokes of the learning demon around an
  optimiser step, into a :class:`thermossl.demon.Ledger`.
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('thermossl.torch needs PyTorch: pip install "thermossl[torch]"') from exc

from . import ops as _ops
from .ops import (
    SinkhornResult,
    cross_entropy,
    gibbs,
    gibbs_entropy,
    log_partition,
    log_softmax,
    logsumexp,
    sinkhorn,
    softmax,
)
from .losses import DINOLoss, SwAVLoss
from .recorder import LedgerRecorder
from .sela import SeLaLabels

__all__ = [*_ops.__all__, "SwAVLoss", "DINOLoss", "LedgerRecorder", "SeLaLabels"]
