"""Test helpers: memory layouts and tolerances (importable because pytest puts tests/ on sys.path)."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
# The float32 log Z claim (docs/guide.md "Accuracy"): 2 eps32 x max(|log Z|, 1). It was 1 eps32
# until rows shifted so that log Z lands just above 1 (where the result's own rounding is half an
# eps and the argument's roundings, ~2^-24 |t| per term, do not shrink with |log Z|) measured up
# to 1.55 eps32 at baseline, 1.57 at avx2 and 1.77 at avx512 (1.57 before its table exp), the
# earlier rounds' code included (test_simd_levels.py::test_float32_log_z_just_above_one).
LOG_Z_BOUND32 = 2 * EPS32

LAYOUTS = ("C", "F", "strided", "reversed", "transposed-copy")


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as `a` (2-D) in another memory layout; never a C-contiguous copy except 'C'."""
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":  # every other row and every third column of a bigger buffer
        n, k = a.shape
        big = np.full((2 * n + 1, 3 * k + 2), 12345.0, dtype=a.dtype)
        big[1::2, 2::3][:n, :k] = a
        view = big[1::2, 2::3][:n, :k]
        assert not view.flags.c_contiguous or a.size <= 1
        return view
    if layout == "reversed":  # negative strides on both axes
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "transposed-copy":  # a transposed view of a C array (Fortran order, other path)
        return np.ascontiguousarray(a.T).T
    raise ValueError(layout)


def tol(dtype) -> float:
    """A relative tolerance for comparing a kernel result with a float64 reference."""
    return 16 * EPS32 if np.dtype(dtype) == np.float32 else 64 * EPS64


# ----------------------------------------------------------------------------- backends
# The kernel tests (test_gibbs, test_special, test_balancing, test_thermo) take the `backend`
# fixture: the same test runs on numpy input (the CPU backend) and, where a GPU is present, on
# torch CUDA tensors and CuPy arrays (the CUDA backend), so GPU parity is those tests. Without a
# GPU (or torch/CuPy) the device parameters are skipped, saying why. Test modules import the
# fixture: `from helpers import backend  # noqa: F401`.
import pytest  # noqa: E402

BACKENDS = ("numpy", "torch-cuda", "cupy")


class ArrayBackend:
    """How a test hands its numpy data to thermossl (``backend(a)``) and reads a result back
    (``backend.host(x)``: numpy, after checking the result is of the input's kind)."""

    def __init__(self, name: str, to_device=None, to_host=None):
        self.name = name
        self.device = to_device is not None
        self._to_device = to_device
        self._to_host = to_host

    def __call__(self, a):
        return self._to_device(np.ascontiguousarray(a)) if self.device else a

    def host(self, x):
        return self._to_host(x) if self.device else x

    def __repr__(self) -> str:
        return self.name


def _device_backend(name: str) -> ArrayBackend:
    import thermossl.cuda

    if name == "torch-cuda":
        torch = pytest.importorskip("torch", reason="torch-cuda: torch is not installed")
        if not (thermossl.cuda.is_available() and torch.cuda.is_available()):
            pytest.skip("torch-cuda: no CUDA device (thermossl built without CUDA, or no driver/GPU)")

        def to_host(t):
            assert isinstance(t, torch.Tensor) and t.is_cuda, "results must stay on the device as torch tensors"
            return t.cpu().numpy()

        return ArrayBackend(name, lambda a: torch.from_numpy(a).to("cuda"), to_host)
    cupy = pytest.importorskip("cupy", reason="cupy: CuPy is not installed")
    if not thermossl.cuda.is_available():
        pytest.skip("cupy: no CUDA device (thermossl built without CUDA, or no driver/GPU)")

    def to_host(x):
        assert isinstance(x, cupy.ndarray), "results must stay on the device as CuPy arrays"
        return cupy.asnumpy(x)

    return ArrayBackend(name, cupy.asarray, to_host)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> ArrayBackend:
    """numpy, torch CUDA or CuPy input for the kernel tests (session scope: hypothesis-friendly)."""
    if request.param == "numpy":
        return ArrayBackend("numpy")
    return _device_backend(request.param)


# --------------------------------------------------------------------------- mutation testing
_MUTMUT_TRAMPOLINE = os.path.join("mutmut", "mutation", "trampoline.py")


@contextlib.contextmanager
def warning_frames_as_without_mutmut():
    """Make warnings.warn(stacklevel=...) point where it would without mutmut.

    Under mutmut 3 (tools/mutation.sh) every mutated function is called through a trampoline
    frame in mutmut/mutation/trampoline.py, so a warning whose stacklevel names the user's line
    points into mutmut instead and a test of the warning's location fails for the unmutated code.
    Inside this context (only when mutmut is loaded; elsewhere it does nothing) warnings.warn
    counts its stacklevel over the frames that are not trampolines, which is exactly the count
    without mutmut, so the test still fails for a mutant with a wrong stacklevel."""
    if "mutmut" not in sys.modules:
        yield
        return
    original = warnings.warn

    def warn(message, category=None, stacklevel=1, source=None):
        frame, frames, counted = sys._getframe(1), 1, 1  # warn's caller is stacklevel 1
        while counted < stacklevel and frame.f_back is not None:
            frame, frames = frame.f_back, frames + 1
            if not frame.f_code.co_filename.endswith(_MUTMUT_TRAMPOLINE):
                counted += 1
        original(message, category, stacklevel=frames + 1, source=source)  # + 1: this frame

    warnings.warn = warn
    try:
        yield
    finally:
        warnings.warn = original


# --------------------------------------------------------------------------- device routing on the CPU
@pytest.fixture
def stand_in_device(monkeypatch):
    """Route torch CPU tensors to the CUDA backend, whose kernels then run on the CPU core
    (tests/test_backends.py's stand-in ``_cuda`` module): a device result must equal the numpy
    result bitwise. Reaches the device branches of the Python layer without a GPU. Returns torch."""
    torch = pytest.importorskip("torch", reason="the stand-in device arrays are torch CPU tensors")
    from test_backends import _StandInCuda

    from thermossl import _backends
    from thermossl._backends import cuda as cuda_backend

    def is_tensor(x):
        return isinstance(x, torch.Tensor)

    monkeypatch.setattr(_backends, "is_device_array", is_tensor)
    monkeypatch.setattr(cuda_backend, "is_device_array", is_tensor)
    monkeypatch.setattr(cuda_backend, "_cuda", _StandInCuda)
    monkeypatch.setattr(cuda_backend, "_stream", lambda like: 0)
    return torch


def run_gloo_ranks(argv, world: int, timeout: float, env=None, cwd=None) -> None:
    """Run ``argv`` once per rank as torch.distributed workers rendezvousing over loopback
    (RANK, WORLD_SIZE, MASTER_ADDR and a free MASTER_PORT set on top of ``env``, default the
    test's environment); fail the test when they hang past ``timeout`` seconds (killing them) or
    one exits non-zero (with its output)."""
    import socket
    import subprocess

    import pytest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**(os.environ if env is None else env), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([str(a) for a in argv], env={**base, "RANK": str(r)}, cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("torch.distributed workers hung")
    for rank, (p, (out, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed ({p.returncode}):\n{out}\n{err[-3000:]}"
