"""One rank of the sharded-balancing tests (tests/test_distributed.py launches it).

    mpiexec -n 3 python tests/distributed_worker.py mpi OUT_DIR
    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python tests/distributed_worker.py torch OUT_DIR
    mpiexec -n 2 python [-m thermossl.distributed] tests/distributed_worker.py (raise_before | long | stall) OUT_DIR

Every rank builds the same global problems from fixed seeds (problems() below, which the test
imports too), takes its rows, runs thermossl.distributed and writes OUT_DIR/rank<r>.npz: its
rows of q and f, the global mu/n_iter/err/charges, the ledgers, and the errors of the failure
cases (type and message).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

N, K = 203, 11


def bounds(size: int, n: int = N, empty_rank: bool = False):
    """Uneven row shards: 2 ranks 150 + 53; 3 ranks 1 + 119 + 83 (a rank with a single row), or
    with ``empty_rank`` a middle rank with none."""
    if size == 1:
        cuts = [0, n]
    elif size == 2:
        cuts = [0, 150, n]
    elif empty_rank:
        cuts = [0, 100] + [100] * (size - 2) + [n]
    else:
        cuts = [0, 1] + [1 + (r * (n - 1)) // (size - 1) for r in range(1, size)]
    return list(zip(cuts[:-1], cuts[1:]))


def problems():
    """Global Sinkhorn problems: name -> (E, kwargs of thermossl.sinkhorn)."""
    rng = np.random.default_rng(20240611)
    E = rng.normal(size=(N, K))
    w = rng.uniform(0.2, 1.0, N)
    w /= w.sum()
    c = rng.uniform(0.5, 1.5, K)
    c /= c.sum()
    E_inf = E.copy()
    E_inf[rng.random((N, K)) < 0.1] = np.inf
    E_inf[np.isinf(E_inf).all(1), 0] = 0.5
    return {
        "swav_fixed": (E, dict(T=0.05, n_iter=3)),
        "fixed_w_c": (E * 3.0, dict(T=0.2, n_iter=7, w=w, c=c)),
        "sela_tol": (E, dict(T=0.1, tol=1e-10, max_iter=2000)),
        "sela_auto_relaxed": (E, dict(T=0.1, tol=1e-10, max_iter=2000, relaxation="auto")),
        "fixed_relaxed": (E, dict(T=0.2, n_iter=6, relaxation=1.4)),
        "tol_w_c_inf": (E_inf, dict(T=0.3, tol=1e-9, w=w, c=c)),
        "warm_start": (E, dict(T=0.1, tol=1e-9, mu0=np.linspace(-0.2, 0.2, K))),
        "warm_no_q": (E, dict(T=0.25, n_iter=4, mu0=np.linspace(0.1, -0.1, K), return_q=False)),
        "float32_fixed": (E.astype(np.float32), dict(T=0.1, n_iter=5)),
    }


def demon_energies(cycles: int = 4):
    """The energies of a few learning cycles (global), a fixed drift so every rank knows them."""
    rng = np.random.default_rng(7)
    E0 = rng.normal(size=(N, K))
    drift = 0.1 * rng.normal(size=(N, K))
    return [E0 + t * drift for t in range(cycles + 1)]


def demon_configs():
    """name -> (T of the demon, reservoir kwargs, use non-uniform weights)."""
    return {
        "sela": (0.1, dict(T=0.04, tol=1e-9, max_iter=5000, warm_start=True, relaxation="auto"), False),
        "swav_w": (0.1, dict(T=0.05, n_iter=3, warm_start=False), True),
    }


def demon_weights():
    rng = np.random.default_rng(8)
    w = rng.uniform(0.5, 1.5, N)
    return w / w.sum()


def run(comm, out_dir: str) -> None:
    from thermossl import distributed as dist

    comm = dist.as_comm(comm)
    rank, size = comm.rank, comm.size
    out = {}
    errors = {}
    for shards_name, shards in (("uneven", bounds(size)), ("empty", bounds(size, empty_rank=True))):
        if shards_name == "empty" and size < 3:
            continue
        lo, hi = shards[rank]
        for name, (E, kw) in problems().items():
            kw = dict(kw)
            T = kw.pop("T")
            if kw.get("w") is not None:
                kw["w"] = kw["w"][lo:hi]
            res = dist.sinkhorn(E[lo:hi], T, comm=comm, **kw)
            key = f"{shards_name}/{name}"
            if res.q is not None:
                out[key + "/q"] = res.q
            out[key + "/f"] = res.f
            out[key + "/mu"] = res.mu
            out[key + "/charges"] = res.charges
            out[key + "/stats"] = np.array([res.n_iter, res.err, res.converged, res.n_total, res.offset])

    # The sharded ledger.
    lo, hi = bounds(size)[rank]
    energies = demon_energies()
    for name, (T, rkw, weighted) in demon_configs().items():
        reservoir = dist.ShardedSinkhornReservoir(comm=comm, **rkw)
        d = dist.Demon(T, reservoir, w=demon_weights()[lo:hi] if weighted else None, comm=comm)
        for t in range(len(energies) - 1):
            d.measure(energies[t][lo:hi], index=np.arange(lo, hi))  # global ids of this shard
            d.feedback(energies[t + 1][lo:hi])
        out[f"demon/{name}"] = d.ledger.to_numpy()
        out[f"demon/{name}/work"] = d.work_per_sample

    # Failure cases: every rank must raise the same error.
    E, kw = problems()["sela_tol"]
    kw = dict(kw)
    T = kw.pop("T")
    bad = size - 1  # the last rank gets the bad input

    def attempt(label, fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - recorded for the test to compare
            errors[label] = [type(exc).__name__, str(exc)]
        else:
            errors[label] = None

    def nan_shard():
        E_bad = E[lo:hi].copy()
        if rank == bad:
            E_bad[-1, 2] = np.nan
        dist.sinkhorn(E_bad, T, comm=comm, **kw)

    def bad_weights_shape():
        w = np.full(hi - lo, 1.0 / N)
        if rank == bad:
            w = w[:-1]
        dist.sinkhorn(E[lo:hi], T, w=w, comm=comm, **kw)

    def forbidden_row_fixed():
        E_bad = E[lo:hi].copy()
        if rank == bad:
            E_bad[0, :] = np.inf
        dist.sinkhorn(E_bad, 0.05, n_iter=3, comm=comm)

    def mismatched_k():
        dist.sinkhorn(E[lo:hi, : K - (rank == bad)], T, comm=comm, **kw)

    def bad_demon():
        d = dist.Demon(0.1, dist.ShardedSinkhornReservoir(T=0.05, n_iter=3, comm=comm), comm=comm)
        E0 = energies[0][lo:hi]
        d.measure(E0)
        E1 = energies[1][lo:hi].copy()
        if rank == bad:
            E1 = E1[:, :-1]  # wrong shape in the feedback stroke
        d.feedback(E1)

    def raising_block():
        with dist.agreement(comm):
            if rank == bad:
                raise FileNotFoundError("shard file missing")

    attempt("nan_shard", nan_shard)
    attempt("bad_weights_shape", bad_weights_shape)
    attempt("forbidden_row_fixed", forbidden_row_fixed)
    attempt("mismatched_k", mismatched_k)
    attempt("bad_demon", bad_demon)
    attempt("raising_block", raising_block)
    # After all the failures the ranks are still in step: one more collective works.
    res = dist.sinkhorn(E[lo:hi], 0.05, n_iter=3, comm=comm)
    out["after_failures/mu"] = res.mu

    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **out)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"rank": rank, "size": size, "errors": errors}, handle)


def fault(case: str, out_dir: str) -> None:
    """The MPI fault cases (tests/test_distributed.py, test_mpi_*_ends_the_job): every rank runs a
    sharded Sinkhorn of 10**7 fixed iterations (hours; one fused pass over 4000 x 50 rows, a few ms,
    per iteration) and writes OUT_DIR/ready<rank> (its pid) at its 5th allreduce, when it is inside
    the iterations. Instead, rank 1
    - ``raise_before``: raises before entering the collective (writing OUT_DIR/failed1, the time);
    - ``stall``: never enters it (writes ready1 and sleeps), so rank 0 blocks in its first allreduce
      (ready0 is written just before it) and stays in MPI: only a signal watcher can act there."""
    import time

    from mpi4py import MPI

    from thermossl import distributed as dist

    class ReadyComm(dist.MPIComm):
        calls = 0

        def allreduce(self, x, op):
            self.calls += 1
            if self.calls == (1 if case == "stall" else 5):
                path = os.path.join(out_dir, f"ready{self.rank}")
                with open(path + ".tmp", "w") as handle:
                    handle.write(str(os.getpid()))
                os.replace(path + ".tmp", path)
            return super().allreduce(x, op)

    comm = ReadyComm(MPI.COMM_WORLD)
    E = np.random.default_rng(comm.rank).normal(size=(4000, 50))
    if case == "raise_before" and comm.rank == 1:
        with open(os.path.join(out_dir, f"failed{comm.rank}"), "w") as handle:
            handle.write(repr(time.time()))
        raise RuntimeError("rank 1 failed before the collective")
    if case == "stall" and comm.rank == 1:
        with open(os.path.join(out_dir, "ready1"), "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(3600)
    dist.sinkhorn(E, 0.05, n_iter=10**7, comm=comm)
    raise SystemExit("unreachable: 10**7 iterations finished")


def main() -> None:
    engine, out_dir = sys.argv[1], sys.argv[2]
    if engine in ("raise_before", "long", "stall"):
        fault(engine, out_dir)
    elif engine == "mpi":
        from mpi4py import MPI

        run(MPI.COMM_WORLD, out_dir)  # a raw mpi4py communicator
    elif engine == "torch":
        import datetime

        import torch.distributed as tdist

        tdist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
        try:
            from thermossl.distributed import TorchComm

            run(TorchComm(), out_dir)
        finally:
            tdist.destroy_process_group()
    else:
        raise SystemExit(f"unknown engine {engine!r}")


if __name__ == "__main__":
    main()
