"""Thread control of the kernels, and one OpenMP runtime beside PyTorch."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import thermossl


def test_set_and_get_num_threads_round_trip():
    before = thermossl.get_num_threads()
    try:
        thermossl.set_num_threads(1)
        assert thermossl.get_num_threads() == 1
        # A kernel still gives the same answer on one thread.
        E = np.random.default_rng(0).normal(size=(300, 700))
        one = thermossl.log_partition(E, 0.3)
        thermossl.set_num_threads(max(2, before))
        assert thermossl.get_num_threads() == (max(2, before) if thermossl._core.openmp else 1)
        np.testing.assert_array_equal(thermossl.log_partition(E, 0.3), one)
    finally:
        thermossl.set_num_threads(before)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (True, TypeError), (2.0, TypeError), ("2", TypeError)])
def test_set_num_threads_refuses_bad_counts(bad, error):
    with pytest.raises(error, match="^n "):
        thermossl.set_num_threads(bad)


_ONE_RUNTIME = """
import threadpoolctl
{imports}
import thermossl
openmp = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
assert len(openmp) == 1, openmp   # one OpenMP runtime in the process, shared by both packages
# threadpoolctl sees and limits thermossl's threads ...
with threadpoolctl.threadpool_limits(1, user_api="openmp"):
    assert thermossl.get_num_threads() == 1
    assert torch.get_num_threads() == 1
# ... and thermossl's setting is torch's: the same runtime.
thermossl.set_num_threads(2)
assert torch.get_num_threads() == 2, torch.get_num_threads()
torch.set_num_threads(1)
assert thermossl.get_num_threads() == 1
print("ok", openmp[0]["filepath"])
"""


@pytest.mark.skipif(not thermossl._core.openmp, reason="this build has no OpenMP")
@pytest.mark.parametrize("imports", ["import torch", "import thermossl\nimport torch"], ids=["torch-first", "thermossl-first"])
def test_one_openmp_runtime_beside_torch(imports):
    pytest.importorskip("torch")
    pytest.importorskip("threadpoolctl")
    script = textwrap.dedent(_ONE_RUNTIME).format(imports=imports)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
