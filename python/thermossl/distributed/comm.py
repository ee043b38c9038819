"""Communicators: the small, engine-agnostic protocol the sharded algorithms sum over samples with
(``rank``, ``size``, ``allreduce`` of a float64 vector with "sum" or "max"), and its adapters for
MPI (mpi4py), ``torch.distributed`` and one process. mpi4py and torch are imported only when an
adapter is made."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # for annotations only: torch is imported when a TorchComm is made
    import torch

__all__ = ["Communicator", "SelfComm", "MPIComm", "TorchComm", "as_comm"]


class Communicator:
    """The protocol the sharded algorithms need: ``rank``, ``size`` and
    ``allreduce(x, op)`` -> a new float64 array, the elementwise ``"sum"`` or ``"max"`` of the
    ranks' 1-D float64 arrays ``x`` (every rank passes the same length). All ranks must receive
    bitwise the same result (true of MPI's built-in reductions and of gloo/NCCL all_reduce): the
    stopping rule of a tolerance run is evaluated on every rank from it."""

    rank: int = 0
    size: int = 1

    def allreduce(self, x: npt.NDArray[np.float64], op: str) -> npt.NDArray[np.float64]:  # pragma: no cover - interface
        """The elementwise sum or max of the ranks' vectors.

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            This rank's float64 vector (every rank passes the same length).
        op : {"sum", "max"}
            The reduction.

        Returns
        -------
        numpy.ndarray, shape (n,)
            A new float64 array, bitwise the same on every rank.

        Raises
        ------
        ValueError
            If ``op`` is not "sum" or "max".
        """
        raise NotImplementedError


def _check_op(op: str) -> None:
    if op not in ("sum", "max"):
        raise ValueError(f"op must be 'sum' or 'max', got {op!r}")


class SelfComm(Communicator):
    """One process: the allreduce is the identity."""

    rank = 0
    size = 1

    def allreduce(self, x: npt.ArrayLike, op: str) -> npt.NDArray[np.float64]:
        """The elementwise sum or max of the ranks' vectors.

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            This rank's float64 vector (every rank passes the same length).
        op : {"sum", "max"}
            The reduction.

        Returns
        -------
        numpy.ndarray, shape (n,)
            A new float64 array, bitwise the same on every rank.

        Raises
        ------
        ValueError
            If ``op`` is not "sum" or "max".
        """
        _check_op(op)
        return np.array(x, dtype=np.float64, copy=True)

    def __repr__(self) -> str:
        return "SelfComm()"


class MPIComm(Communicator):
    """An mpi4py communicator; ``pip install "thermossl[mpi]"``.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator (default ``MPI.COMM_WORLD``).

    Raises
    ------
    ImportError
        If mpi4py is not installed.
    """

    def __init__(self, comm: Optional[Any] = None) -> None:
        from mpi4py import MPI  # lazy: thermossl does not need mpi4py

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def allreduce(self, x: npt.ArrayLike, op: str) -> npt.NDArray[np.float64]:
        """The elementwise sum or max of the ranks' vectors.

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            This rank's float64 vector (every rank passes the same length).
        op : {"sum", "max"}
            The reduction.

        Returns
        -------
        numpy.ndarray, shape (n,)
            A new float64 array, bitwise the same on every rank.

        Raises
        ------
        ValueError
            If ``op`` is not "sum" or "max".
        """
        _check_op(op)
        send = np.ascontiguousarray(x, dtype=np.float64)
        recv = np.empty_like(send)
        self.comm.Allreduce(send, recv, op=self._mpi.SUM if op == "sum" else self._mpi.MAX)
        return recv

    def abort(self, code: int = 1) -> None:
        """End every process of the job (``MPI_Abort``).

        The last resort when this rank cannot take part in the collectives the others wait in (see the
        failure behaviour on the scale-out page of the documentation).

        Parameters
        ----------
        code : int, optional
            The job's exit status.
        """
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"MPIComm(rank={self.rank}, size={self.size})"


class TorchComm(Communicator):
    """``torch.distributed`` (an initialised default process group, or ``group``).

    Vectors travel as float64 tensors on ``device``.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup, optional
        The process group (default: the default group).
    device : str or torch.device, optional
        Where the vectors travel: by default the current CUDA device for the NCCL backend, the CPU
        otherwise (gloo, mpi).

    Raises
    ------
    ImportError
        If torch is not installed.
    RuntimeError
        If torch.distributed is not initialised.
    """

    def __init__(self, group: Optional[Any] = None, device: Union[str, torch.device, None] = None) -> None:
        import torch  # lazy: thermossl does not need torch
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised: call torch.distributed.init_process_group first")
        self._torch = torch
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        if device is None:
            backend = str(dist.get_backend(group)).lower()
            device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        self.device = torch.device(device)

    def allreduce(self, x: npt.ArrayLike, op: str) -> npt.NDArray[np.float64]:
        """The elementwise sum or max of the ranks' vectors.

        Parameters
        ----------
        x : numpy.ndarray, shape (n,)
            This rank's float64 vector (every rank passes the same length).
        op : {"sum", "max"}
            The reduction.

        Returns
        -------
        numpy.ndarray, shape (n,)
            A new float64 array, bitwise the same on every rank.

        Raises
        ------
        ValueError
            If ``op`` is not "sum" or "max".
        """
        _check_op(op)
        torch = self._torch
        tensor = torch.from_numpy(np.array(x, dtype=np.float64, copy=True)).to(self.device)
        reduce_op = self._dist.ReduceOp.SUM if op == "sum" else self._dist.ReduceOp.MAX
        self._dist.all_reduce(tensor, op=reduce_op, group=self.group)
        return tensor.cpu().numpy().astype(np.float64, copy=False)

    def __repr__(self) -> str:
        return f"TorchComm(rank={self.rank}, size={self.size}, device={self.device})"


def as_comm(comm: Optional[Any]) -> Communicator:
    """A :class:`Communicator` from what a user passes as ``comm``.

    Parameters
    ----------
    comm : None, Communicator, mpi4py.MPI.Comm or torch.distributed.ProcessGroup
        None (one process), a Communicator, a raw mpi4py communicator, a torch.distributed process
        group, or any object with ``rank``, ``size`` and ``allreduce``.

    Returns
    -------
    Communicator
        The adapter (``comm`` itself when it already is one).

    Raises
    ------
    TypeError
        If ``comm`` is none of these.
    """
    if comm is None:
        return SelfComm()
    if isinstance(comm, Communicator):
        return comm
    module = type(comm).__module__ or ""
    if module.startswith("mpi4py"):
        return MPIComm(comm)
    if module.startswith("torch"):
        return TorchComm(group=comm)
    if all(hasattr(comm, a) for a in ("rank", "size", "allreduce")):
        return comm  # duck-typed communicator
    raise TypeError(
        "comm must be None, a thermossl.distributed.Communicator, an mpi4py communicator or a "
        f"torch.distributed process group, got {type(comm).__name__}"
    )
