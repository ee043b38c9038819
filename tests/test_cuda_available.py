"""The CUDA entry points on any machine: no GPU needed (tests/test_cuda.py needs one)."""
from __future__ import annotations

import numpy as np
import pytest

import thermossl
import thermossl.cuda


class _FakeDeviceArray:
    """A non-numpy object that claims to live in CUDA memory."""

    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}


def test_is_available_never_raises():
    assert isinstance(thermossl.cuda.is_available(), bool)
    assert thermossl.cuda.device_count() >= 0


def test_numpy_and_cpu_tensors_are_not_device_arrays():
    assert not thermossl.cuda.is_device_array(np.zeros((2, 3)))
    assert not thermossl.cuda.is_device_array([[1.0, 2.0]])
    assert thermossl.cuda.is_device_array(_FakeDeviceArray())
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, 3)
    assert not thermossl.cuda.is_device_array(t)
    # CPU tensors keep using the CPU kernels.
    np.testing.assert_allclose(thermossl.log_partition(t, 1.0), np.log(3.0) * np.ones(2), rtol=1e-6)


@pytest.mark.skipif(thermossl.cuda.is_available(), reason="a CUDA device is available here")
@pytest.mark.parametrize(
    "call",
    [
        lambda E: thermossl.log_partition(E, 1.0),
        lambda E: thermossl.gibbs(E, 1.0),
        lambda E: thermossl.cross_entropy(E, E, 1.0),
        lambda E: thermossl.entropy_grad(E, 1.0),
        lambda E: thermossl.sinkhorn(E, 0.05, n_iter=3),
        lambda E: thermossl.logsumexp(E, axis=1),
        lambda E: thermossl.softmax(E, axis=1),
        lambda E: thermossl.thermo.ledger_rows(E, E, 1.0),
    ],
)
def test_device_array_without_cuda_raises_clearly(call):
    with pytest.raises(RuntimeError, match="CUDA"):
        call(_FakeDeviceArray())
