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
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import thermossl
from thermossl import demon, distributed, reservoirs

import distributed_worker as worker

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


@needs_mpi
@pytest.mark.parametrize("size", [2, 3])
def test_mpi_matches_single_process(size, tmp_path):
    cmd = [find_mpiexec(), "-n", str(size), sys.executable, str(WORKER), "mpi", str(tmp_path)]
    run_checked(cmd, worker_env(), tmp_path)
    results, errors = load(tmp_path, size)
    check_ranks(results, size, errors)


# ----------------------------------------------------------------------------- torch.distributed
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs torch (torch.distributed with gloo)"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_torch
def test_torch_gloo_matches_single_process(tmp_path):
    size = 2
    env = worker_env()
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(size))
    procs = []
    for r in range(size):
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), "torch", str(tmp_path)], env={**env, "RANK": str(r)}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("torch.distributed workers hung")
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, f"torch worker failed ({p.returncode}):\n{out}\n{err}"
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
