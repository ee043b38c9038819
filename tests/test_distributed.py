"""Sharded balancing and ledgers (thermossl.distributed) against the single-process results.

In-process tests use SelfComm (one rank); the multi-process tests launch tests/distributed_worker.py under ``mpiexec -n 2`` and
``-n 3`` (uneven shards, a rank with a single row, a rank with none) and as a 2-process
torch.distributed gloo group, with a timeout so a hang fails instead of blocking. They are
skipped (with the reason) when mpi4py/mpiexec or torch is not installed: ``pip install
thermossl[mpi]`` brings mpi4py and an MPICH whose mpiexec lands in the venv.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from thermossl import demon, distributed, reservoirs
from thermossl.distributed.abort import _REPORT_GRACE

import distributed_worker as worker
from helpers import run_gloo_ranks

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 240  # seconds for a whole multi-process run (3 ranks on 2 cores included)
RTOL = ATOL = 1e-12


# ----------------------------------------------------------------------------- references
def reference(name):
    E, kw = worker.problems()[name]
    kw = dict(kw)
    T = kw.pop("T")
    return thermossl.sinkhorn(E, T, **kw)


def reference_ledger(name):
    T, rkw, weighted = worker.demon_configs()[name]
    d = demon.Demon(T, reservoirs.SinkhornReservoir(**rkw), w=worker.demon_weights() if weighted else None)
    energies = worker.demon_energies()
    for t in range(len(energies) - 1):
        d.measure(energies[t], index=np.arange(len(energies[t])))
        d.feedback(energies[t + 1])
    return d.ledger.to_numpy(), d.work_per_sample


def assert_ledgers_close(got, want):
    assert got.dtype.names == want.dtype.names
    assert_array_equal(got["t"], want["t"])
    for field in got.dtype.names[1:]:
        assert_allclose(got[field], want[field], rtol=RTOL, atol=ATOL, err_msg=field)


def check_ranks(results, size, errors):
    """Compare what the ranks wrote with the single-process references."""
    float32 = {"float32_fixed"}
    for shards_name, shards in (("uneven", worker.bounds(size)), ("empty", worker.bounds(size, empty_rank=True))):
        if shards_name == "empty" and size < 3:
            continue
        for name in worker.problems():
            ref = reference(name)
            key = f"{shards_name}/{name}"
            tol = dict(rtol=2e-5, atol=2e-5) if name in float32 else dict(rtol=RTOL, atol=ATOL)
            f = np.concatenate([results[r][key + "/f"] for r in range(size)])
            assert f.dtype == ref.f.dtype
            assert_allclose(f, ref.f, err_msg=key, **tol)
            if ref.q is not None:
                q = np.concatenate([results[r][key + "/q"] for r in range(size)])
                assert q.dtype == ref.q.dtype and q.shape == ref.q.shape
                assert_allclose(q, ref.q, err_msg=key, **tol)
            else:
                assert key + "/q" not in results[0]
            for r in range(size):
                stats = results[r][key + "/stats"]
                assert int(stats[0]) == ref.n_iter, key  # same iteration count, tolerance mode too
                assert stats[1] == pytest.approx(ref.err, rel=1e-6 if name in float32 else 1e-9, abs=1e-14)
                assert bool(stats[2]) == ref.converged
                assert int(stats[3]) == worker.N and int(stats[4]) == shards[r][0]
                assert_allclose(results[r][key + "/mu"], ref.mu, err_msg=key, **tol)
                assert_allclose(results[r][key + "/charges"], ref.charges, err_msg=key, **tol)
                # every rank holds bitwise the same global values
                assert_array_equal(results[r][key + "/mu"], results[0][key + "/mu"])
    for name in worker.demon_configs():
        want, want_work = reference_ledger(name)
        for r in range(size):
            assert_ledgers_close(results[r][f"demon/{name}"], want)
            assert_array_equal(results[r][f"demon/{name}"], results[0][f"demon/{name}"])
        work = np.concatenate([results[r][f"demon/{name}/work"] for r in range(size)])
        assert_allclose(work, want_work, rtol=RTOL, atol=1e-15)
    # Failures: every rank raised the same error, the one a single process raises.
    E, kw = worker.problems()["sela_tol"]
    E_nan = E.copy()
    E_nan[-1, 2] = np.nan
    with pytest.raises(ValueError) as single:
        thermossl.sinkhorn(E_nan, kw["T"], tol=kw["tol"], max_iter=kw["max_iter"])
    bad_row = worker.bounds(size)[size - 1][0]
    expected = {
        "nan_shard": ["ValueError", str(single.value)],
        "forbidden_row_fixed": [
            "ValueError", f"E: every state of row {bad_row} is forbidden (+inf energy); the row cannot be labelled"
        ],
        "raising_block": ["FileNotFoundError", "shard file missing"],
    }
    for r in range(size):
        assert errors[r].keys() == errors[0].keys()
        for label, error in errors[r].items():
            assert error is not None, f"rank {r}: {label} did not raise"
            assert error == errors[0][label], f"rank {r} raised {error}, rank 0 {errors[0][label]}"
        for label, error in expected.items():
            assert errors[r][label] == error
        assert errors[r]["bad_weights_shape"][1].startswith("w must have shape (")
        assert "differs between ranks" in errors[r]["mismatched_k"][1]
        assert errors[r]["bad_demon"][1].startswith("E_after must have shape")
        assert_allclose(results[r]["after_failures/mu"], reference("swav_fixed").mu, rtol=RTOL, atol=ATOL)


def load(out_dir, size):
    results = [dict(np.load(out_dir / f"rank{r}.npz")) for r in range(size)]
    errors = [json.loads((out_dir / f"rank{r}.json").read_text())["errors"] for r in range(size)]
    return results, errors


def worker_env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WORKER.parent), env.get("PYTHONPATH")]))
    return env


def run_checked(cmd, env, cwd, timeout=TIMEOUT):
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(map(str, cmd))} hung (no result in {timeout} s): {exc.stderr}")
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


# ----------------------------------------------------------------------------- MPI
def find_mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or find_mpiexec() is None,
    reason="needs mpi4py and mpiexec (pip install thermossl[mpi])",
)


@pytest.mark.requires("mpi")  # with THERMOSSL_REQUIRE=mpi (CI) a skip here fails: tests/conftest.py
@needs_mpi
@pytest.mark.parametrize("size", [2, 3])
def test_mpi_matches_single_process(size, tmp_path):
    cmd = [find_mpiexec(), "-n", str(size), sys.executable, str(WORKER), "mpi", str(tmp_path)]
    run_checked(cmd, worker_env(), tmp_path)
    results, errors = load(tmp_path, size)
    check_ranks(results, size, errors)


# ----------------------------------------------------------------------------- MPI: no hangs
# A rank that leaves the collective protocol (raises before a collective, gets a signal, has a
# KeyboardInterrupt escape a sharded call) must end the whole job within seconds, not leave the
# other rank waiting in an allreduce (before this guard: a hang, killed after 60 s). The bound is
# generous for a loaded 2-core machine (the jobs end in ~0.01 s after the event on it); the
# process timeout is far above it, so a hang fails the test instead of blocking the suite.
ENDS_WITHIN = 20.0  # seconds from the failure (or the signal) to the end of mpiexec
HANG_TIMEOUT = 120.0


def run_fault(tmp_path, case, runner, signal_rank=None, signum=None):
    """Run ``tests/distributed_worker.py CASE`` under ``mpiexec -n 2`` (through ``python -m
    thermossl.distributed`` when ``runner``); send ``signum`` to rank ``signal_rank`` once both ranks
    are inside the sharded iterations. Returns (exit status, output, seconds from the event to the end)."""
    import signal as signals
    import time

    cmd = [find_mpiexec(), "-n", "2", sys.executable, *(["-m", "thermossl.distributed"] if runner else []),
           str(WORKER), case, str(tmp_path)]
    # Its own session, so that a hang can be ended with every process mpiexec started.
    proc = subprocess.Popen(cmd, env=worker_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + HANG_TIMEOUT
    event = None
    try:
        if signum is not None:
            ready = [tmp_path / f"ready{r}" for r in range(2)]
            while not all(p.exists() for p in ready):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, HANG_TIMEOUT)
                time.sleep(0.02)
            time.sleep(0.3)  # well inside the call (rank 0 of "stall": blocked in MPI_Allreduce)
            event = time.time()
            os.kill(int(ready[signal_rank].read_text()), signum)
        output, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signals.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung (still running after {HANG_TIMEOUT} s):\n{output}")
    end = time.time()
    if event is None:
        event = float((tmp_path / "failed1").read_text())  # the time rank 1 raised
    return proc.returncode, output, end - event


@pytest.mark.requires("mpi")
@needs_mpi
def test_mpi_uncaught_exception_before_a_collective_ends_the_job(tmp_path):
    # Rank 1 raises before the collective, rank 0 waits in the sharded sinkhorn's first allreduce:
    # the runner prints rank 1's traceback once and aborts the job.
    status, output, seconds = run_fault(tmp_path, "raise_before", runner=True)
    assert status != 0, output
    assert seconds < ENDS_WITHIN, output
    assert output.count("RuntimeError: rank 1 failed before the collective") == 1, output
    assert "rank 1 of 2: uncaught RuntimeError; aborting the job" in output
    assert "thermossl/distributed/__main__.py" not in output  # the traceback starts in the program


@pytest.mark.requires("mpi")
@needs_mpi
def test_mpi_agreed_error_uncaught_under_the_runner_is_reported_by_its_rank(tmp_path):
    # A nan on rank 1: every rank raises the agreed ValueError, nobody catches it. Rank 1 prints the
    # traceback, rank 0 one line pointing at it (waiting a moment so rank 1's report gets out).
    program = ("import numpy as np\nfrom thermossl import distributed as dist\nc = dist.MPIComm()\n"
               "E = np.zeros((5, 3))\nE[2, 1] = np.nan if c.rank == 1 else 0.0\ndist.sinkhorn(E, 0.1, comm=c)\n")
    cmd = [find_mpiexec(), "-n", "2", sys.executable, "-m", "thermossl.distributed", "-c", program]
    try:
        proc = subprocess.run(cmd, env=worker_env(), cwd=tmp_path, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung: {exc.stderr}")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert output.count("ValueError: E contains NaN (row 7) (the error of rank 1, raised on every rank; its "
                        "traceback is on rank 1)") == 1, output
    assert output.count("rank 1 of 2: uncaught ValueError") == 1 and output.count("Traceback") == 1, output


@pytest.mark.requires("mpi")
@needs_mpi
@pytest.mark.parametrize(("case", "rank", "name"), [("long", 1, "SIGTERM"), ("stall", 0, "SIGINT")])
def test_mpi_signal_to_one_rank_ends_the_job(tmp_path, case, rank, name):
    # "long": both ranks in a sharded sinkhorn of 10**7 iterations, SIGTERM to rank 1.
    # "stall": rank 0 blocked inside MPI_Allreduce (rank 1 never comes): SIGINT to rank 0 — the
    # main thread never returns to Python there, the runner's watcher thread aborts the job.
    import signal as signals

    signum = getattr(signals, name)
    status, output, seconds = run_fault(tmp_path, case, runner=True, signal_rank=rank, signum=signum)
    assert status != 0, output
    assert seconds < ENDS_WITHIN, output
    assert output.count(f"rank {rank} of 2 received {name}; aborting the job") == 1, output


@pytest.mark.requires("mpi")
@needs_mpi
def test_mpi_interrupt_inside_a_sharded_call_ends_the_job_without_the_runner(tmp_path):
    # Plain `mpiexec python script.py`: SIGINT to rank 1 in the middle of a sharded sinkhorn raises
    # KeyboardInterrupt there (Python's own handler); the guard of the entry point reports it once
    # and aborts, instead of leaving rank 0 in the next allreduce.
    import signal as signals

    status, output, seconds = run_fault(tmp_path, "long", runner=False, signal_rank=1, signum=signals.SIGINT)
    assert status != 0, output
    assert seconds < ENDS_WITHIN, output
    assert output.count("KeyboardInterrupt escaped thermossl.distributed.sinkhorn") == 1, output
    assert output.count("\nKeyboardInterrupt\n") == 1, output  # the traceback, printed once


GUARD_SCRIPT = r"""
import sys, time, warnings
import numpy as np
from thermossl import distributed as dist

class StampedStderr:  # stderr that remembers when the abort report was written
    def __init__(self, stream):
        self.stream, self.report_at = stream, None
    def write(self, text):
        if "aborting the job" in text:
            self.report_at = time.monotonic()
        return self.stream.write(text)
    def flush(self):
        self.stream.flush()

sys.stderr = StampedStderr(sys.stderr)

class TwoRanks(dist.Communicator):
    # rank 0 of 2 with an identity allreduce; abort() ends the process as MPI_Abort would
    rank, size = 0, 2
    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = 0, interrupt_at
    def allreduce(self, x, op):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt  # as Python raises it after a SIGINT
        return np.array(x, dtype=np.float64, copy=True)
    def abort(self, code):
        sys.stderr.write(f"ABORT {code} {time.monotonic() - sys.stderr.report_at:.6f} s after the report\n")
        sys.stderr.flush()
        raise SystemExit(99)  # must not be taken for a return: the guard exits with code

E = np.random.default_rng(0).normal(size=(20, 4))
case = sys.argv[1]
if case == "agreed":  # errors agreed on every rank pass through: no abort
    try:
        dist.sinkhorn(np.array([[np.nan, 0.0]]), 0.1, comm=TwoRanks())
    except ValueError as exc:
        assert exc.thermossl_agreed, exc
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the not-converged warning is issued alike on every rank
        try:
            dist.sinkhorn(E, 0.01, tol=1e-300, max_iter=2, comm=TwoRanks())
        except RuntimeWarning as exc:
            print("warning raised:", exc)
    print("no abort")
elif case == "sinkhorn":
    dist.sinkhorn(E, 0.1, n_iter=50, comm=TwoRanks(interrupt_at=6))
elif case == "agreement":
    with dist.agreement(TwoRanks()):
        raise KeyboardInterrupt
elif case == "exit":
    with dist.agreement(TwoRanks()):
        sys.exit(7)
"""


@pytest.mark.parametrize(("case", "status", "escaped"), [
    ("agreed", 0, None), ("sinkhorn", 130, "KeyboardInterrupt escaped thermossl.distributed.sinkhorn"),
    ("agreement", 130, "KeyboardInterrupt escaped a thermossl.distributed.agreement block"),
    ("exit", 7, "SystemExit escaped a thermossl.distributed.agreement block"),
])
def test_guard_aborts_on_unagreed_failures_only(tmp_path, case, status, escaped):
    # No MPI needed: a 2-rank communicator whose abort() reports. An error agreed on every rank (and
    # the not-converged warning, which every rank issues alike) propagates; a KeyboardInterrupt or
    # SystemExit escaping a collective aborts with 128 + SIGINT or the exit status, reported once.
    script = tmp_path / "guard.py"
    script.write_text(GUARD_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == status, proc.stderr
    if escaped is None:
        assert "no abort" in proc.stdout and "warning raised: sinkhorn did not converge" in proc.stdout, proc.stdout + proc.stderr
        assert "ABORT" not in proc.stderr
    else:
        assert proc.stderr.count(escaped) == 1 and f"ABORT {status}" in proc.stderr, proc.stderr
        assert "rank 0 of 2" in proc.stderr
        # The report is written, then MPI_Abort waits so that mpiexec forwards it before the
        # teardown (without the pause, a CI run lost the whole report).
        pause = float(re.search(r"ABORT \d+ ([0-9.]+) s after the report", proc.stderr).group(1))
        assert pause >= _REPORT_GRACE > 0, proc.stderr


def test_runner_usage_and_single_process(tmp_path):
    # python -m thermossl.distributed without a program: usage, status 2; with one process the
    # program's own exit status and traceback are Python's (nothing to abort).
    proc = subprocess.run([sys.executable, "-m", "thermossl.distributed"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2 and "usage: python -m thermossl.distributed" in proc.stderr
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("the runner needs mpi4py")
    proc = subprocess.run([sys.executable, "-m", "thermossl.distributed", "-c", "import sys; print(sys.argv); sys.exit(3)",
                           "a"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 3 and "['-c', 'a']" in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "thermossl.distributed", "-c", "raise KeyError('k')"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1 and proc.stderr.count("KeyError: 'k'") == 1, proc.stderr


# ----------------------------------------------------------------------------- torch.distributed
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs torch (torch.distributed with gloo)"
)


@pytest.mark.requires("torch")
@needs_torch
def test_torch_gloo_matches_single_process(tmp_path):
    size = 2
    run_gloo_ranks([sys.executable, WORKER, "torch", tmp_path], size, timeout=TIMEOUT, env=worker_env(), cwd=tmp_path)
    results, errors = load(tmp_path, size)
    check_ranks(results, size, errors)


# ----------------------------------------------------------------------------- in-process
def test_self_comm_matches_single_process():
    for name, (E, kw) in worker.problems().items():
        kw = dict(kw)
        T = kw.pop("T")
        ref = thermossl.sinkhorn(E, T, **kw)
        got = distributed.sinkhorn(E, T, comm=None, **kw)
        tol = dict(rtol=2e-5, atol=2e-5) if E.dtype == np.float32 else dict(rtol=RTOL, atol=ATOL)
        assert got.n_iter == ref.n_iter and got.converged == ref.converged
        assert got.mu.dtype == ref.mu.dtype and got.f.dtype == ref.f.dtype
        assert_allclose(got.mu, ref.mu, **tol)
        assert_allclose(got.f, ref.f, **tol)
        assert_allclose(got.charges, ref.charges, **tol)
        if ref.q is not None:
            assert_allclose(got.q, ref.q, **tol)
        assert got.n_total == E.shape[0] and got.offset == 0


def test_not_converged_warning_points_at_the_callers_line():
    # As thermossl.sinkhorn and the single-process reservoir: the warning names the user's line
    # (this file), not a line inside thermossl, for each sharded entry point.
    E = np.random.default_rng(0).normal(size=(50, 4))

    def reservoir():
        return distributed.ShardedSinkhornReservoir(T=0.01, tol=1e-300, max_iter=2)

    calls = {
        "sinkhorn": lambda: distributed.sinkhorn(E, 0.01, tol=1e-300, max_iter=2),
        "reservoir.assign": lambda: reservoir().assign(E),
        "Demon.measure": lambda: distributed.Demon(1.0, reservoir()).measure(E),
    }
    for name, call in calls.items():
        with pytest.warns(RuntimeWarning, match="did not converge") as record:
            call()
        assert [w.filename for w in record] == [__file__], (name, [(w.filename, w.lineno) for w in record])


def test_self_comm_ledger_matches_single_process():
    for name, (T, rkw, weighted) in worker.demon_configs().items():
        want, _ = reference_ledger(name)
        d = distributed.Demon(T, distributed.ShardedSinkhornReservoir(**rkw), w=worker.demon_weights() if weighted else None)
        energies = worker.demon_energies()
        for t in range(len(energies) - 1):
            d.measure(energies[t], index=np.arange(len(energies[t])))
            d.feedback(energies[t + 1])
        assert_ledgers_close(d.ledger.to_numpy(), want)


def test_validation_messages_match_single_process():
    E = np.random.default_rng(0).normal(size=(10, 4))
    cases = [
        dict(T=-1.0), dict(T=0.1, w=np.ones(9) / 9), dict(T=0.1, c=np.ones(4)), dict(T=0.1, n_iter=0),
        dict(T=0.1, tol=0.0), dict(T=0.1, mu0=np.zeros(3)), dict(T=0.1, max_iter=1.5), dict(T=0.1, w=np.ones(10) / 5),
    ]
    for kw in cases:
        kw = dict(kw)
        T = kw.pop("T")
        with pytest.raises((ValueError, TypeError)) as want:
            thermossl.sinkhorn(E, T, **kw)
        with pytest.raises(type(want.value)) as got:
            distributed.sinkhorn(E, T, **kw)
        assert str(got.value) == str(want.value)
    with pytest.raises(ValueError, match="E must be a 2-D array"):
        distributed.sinkhorn(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="at least one sample"):
        distributed.sinkhorn(np.zeros((0, 3)), 0.1)


def test_failure_is_marked_and_agreement_passes_through():
    with pytest.raises(ValueError) as info:
        distributed.sinkhorn(np.array([[np.nan, 0.0]]), 0.1)
    assert info.value.thermossl_rank == 0
    with pytest.raises(KeyError):
        with distributed.agreement(None):
            raise KeyError("x")
    with distributed.agreement() as comm:
        assert comm.size == 1


def test_as_comm_and_lazy_imports():
    assert isinstance(distributed.as_comm(None), distributed.SelfComm)
    with pytest.raises(TypeError, match="comm must be"):
        distributed.as_comm(object())
    code = "import sys, thermossl, thermossl.distributed; assert 'mpi4py' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(TypeError, match="sharded"):
        distributed.Demon(0.1, reservoirs.swav())


def test_self_comm_underflowing_charge_takes_the_two_pass_update():
    # Column 0's charge underflows at T = 1e-3 (exp(-5e4)): that iteration takes the exact
    # column log-sum-exp (two passes, the stable fallback), as the single-process solver does.
    rng = np.random.default_rng(8)
    E = rng.uniform(0, 1, size=(400, 8))
    E[:, 0] += 50.0
    ref = thermossl.sinkhorn(E, 1e-3, tol=1e-9, max_iter=5000)
    got = distributed.sinkhorn(E, 1e-3, tol=1e-9, max_iter=5000, comm=None)
    assert got.converged and got.n_iter == ref.n_iter
    assert_allclose(got.mu, ref.mu, rtol=1e-9, atol=1e-12)
    assert_allclose(got.q, ref.q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_core_sinkhorn_pass_is_the_solver_pass(dtype):
    # One fused pass at the converged mu reproduces f and the charges of thermossl.sinkhorn.
    from thermossl import _core

    rng = np.random.default_rng(3)
    E = rng.normal(size=(500, 70)).astype(dtype)
    E[rng.random(E.shape) < 0.05] = np.inf
    w = rng.uniform(0.5, 1.0, size=500)
    w /= w.sum()
    ref = thermossl.sinkhorn(E, 0.2, w=w.astype(dtype), n_iter=4)
    f = np.empty(500)
    charges = np.empty(70)
    q = np.empty_like(E)
    status, index = _core.sinkhorn_pass(E, 0.2, w.astype(dtype).astype(np.float64), ref.mu.astype(np.float64),
                                        f, charges, q)
    assert (status, index) == (0, -1)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert_allclose(f, ref.f, **tol)
    assert_allclose(charges, ref.charges, **tol)
    assert_allclose(q, ref.q, **tol)
    E[17, :] = np.inf
    assert _core.sinkhorn_pass(E, 0.2, w, np.zeros(70), f, charges)[0:2] == (2, 17)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", [dict(n_iter=3), dict(tol=1e-7), dict(tol=1e-7, relaxation="auto")])
def test_energy_sign_reads_scores_as_negated_energies(dtype, mode):
    # energy_sign=-1 (the torch losses' sharded paths): the solver reads scores s with the
    # energies -s through a signed scale, no negated copy; the result is bitwise that of -s.
    rng = np.random.default_rng(5)
    s = rng.normal(size=(300, 12)).astype(dtype)
    s[rng.random(s.shape) < 0.05] = -np.inf  # forbidden states: E = +inf
    got = distributed.sinkhorn(s, 0.1, comm=None, energy_sign=-1, **mode)
    ref = distributed.sinkhorn(-s, 0.1, comm=None, **mode)
    for field in ("q", "f", "mu", "charges"):
        assert_array_equal(getattr(got, field), getattr(ref, field), err_msg=field)
    assert (got.n_iter, got.err, got.converged) == (ref.n_iter, ref.err, ref.converged)
    # and the single-process solver on the energies
    single = thermossl.sinkhorn(-s, 0.1, **mode)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=RTOL, atol=ATOL)
    assert_allclose(got.q, single.q, **tol)
    with pytest.raises(ValueError, match="energy_sign must be 1 or -1"):
        distributed.sinkhorn(s, 0.1, comm=None, energy_sign=2)


def test_core_sinkhorn_pass_energy_sign_is_the_pass_on_negated_energies():
    from thermossl import _core

    rng = np.random.default_rng(4)
    s = rng.normal(size=(200, 30)).astype(np.float32)
    w = np.full(200, 1 / 200)
    mu = rng.normal(size=30) * 0.1
    out = [(np.empty(200), np.empty(30), np.empty_like(s)) for _ in range(2)]
    assert _core.sinkhorn_pass(s, 0.2, w, mu, *out[0], energy_sign=-1.0) == (0, -1)
    assert _core.sinkhorn_pass(-s, 0.2, w, mu, *out[1]) == (0, -1)
    for a, b in zip(*out):
        assert_array_equal(a, b)
    with pytest.raises(ValueError, match="energy_sign"):
        _core.sinkhorn_pass(s, 0.2, w, mu, *out[0], energy_sign=0.5)
