"""SwAVLoss and DINOLoss over 2 ranks (gloo) against the published algorithms run with
torch.distributed (issue 20's mutation testing of thermossl/torch/losses.py).

The losses' distributed branches (``_world() > 1``: the sharded Sinkhorn over every rank's rows,
the codes' log Z left empty, the all-reduced DINO center) run only with more than one rank, so
they run in two worker processes: this file, run as a script, is the worker. The workers import
the same thermossl as the test process (PYTHONPATH), so a mutant under test (mutmut's
MUTANT_UNDER_TEST, inherited) runs in them too. The test computes the single-process codes of the
global batch in this process (the rows each rank's codes must reproduce); each worker checks its
loss, gradient and DINO center against the published algorithms run over the group.

Cases: float32 without a queue, float32 with a queue (the codes are the last rows of Sinkhorn
over queue + batch), bfloat16 scores (converted for the host solver), the op's own outputs (mu,
charge errors, the empty log Z), and DINO's center over two steps.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
from helpers import run_gloo_ranks  # noqa: E402

WORLD, B, K, L = 2, 16, 10, 24  # ranks, per-rank batch, prototypes, per-rank queue rows


def global_inputs():
    """Global SwAV output (2 crops x WORLD*B rows, crop-major), queue (2, WORLD*L, K), DINO
    student (3 crops) and teacher (2 crops) of two steps."""
    g = torch.Generator().manual_seed(2024)
    swav = torch.nn.functional.normalize(torch.randn(2 * WORLD * B, K, generator=g), dim=1) * 3
    queue = torch.nn.functional.normalize(torch.randn(2, WORLD * L, K, generator=g), dim=2) * 3
    steps = [(torch.randn(3 * WORLD * B, K, generator=g) * 3, torch.randn(2 * WORLD * B, K, generator=g) * 3 + 0.5)
             for _ in range(2)]
    return swav, queue, steps


def local_rows(x, crops, rank, per_rank=B):
    """This rank's rows of every crop (crop-major), as a rank's model produces them."""
    per_crop = x.reshape(crops, -1, x.shape[-1])
    return per_crop[:, rank * per_rank:(rank + 1) * per_rank].reshape(-1, x.shape[-1]).contiguous()


def worker(out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import thermossl.torch as tt
    from torch_references import DINOReference, swav_loss

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == WORLD
    swav_out, queue, steps = global_inputs()
    record = {}
    for name, dtype, with_queue in (("f32", torch.float32, False), ("queue", torch.float32, True),
                                    ("bf16", torch.bfloat16, False)):
        x = local_rows(swav_out, 2, rank).to(dtype).requires_grad_()
        q = local_rows(queue.reshape(-1, K), 2, rank, L).reshape(2, L, K) if with_queue else None
        loss_fn = tt.SwAVLoss(keep_codes=True)
        loss = loss_fn(x, queue=q)
        (g,) = torch.autograd.grad(loss, x)
        xr = x.detach().float().requires_grad_()
        ref = swav_loss(xr, queue_scores=q, world_size=world, all_reduce=dist.all_reduce)
        (g_ref,) = torch.autograd.grad(ref, xr)
        assert loss.dtype == dtype and g.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        assert abs(loss.item() / ref.item() - 1) <= tol, (name, loss.item(), ref.item())
        assert float((g.float() - g_ref).abs().max() / g_ref.abs().max()) <= tol * 10, name
        record[name] = {"loss": loss.detach().float(), "grad": g.float(), "codes": loss_fn.last_codes.clone()}
    # a recorder on a rank measures that rank's codes of crop 0 (the loss has no log Z to give it)
    x = local_rows(swav_out, 2, rank)
    rec = tt.LedgerRecorder(T=0.1)
    tt.SwAVLoss(recorder=rec)(x)
    row = rec.feedback(x[:B] * 1.01)
    assert all(math.isfinite(v) for v in row.values()), row
    # the op's own outputs: Sinkhorn's mu and charge errors per assigned crop, no log Z when sharded
    x = local_rows(swav_out, 2, rank)
    out = torch.ops.thermossl.swav_loss(x, (0, 1), 2, 0.05, 3, 10.0, None, True)
    record["op"] = {"codes": out[2], "mu": out[3], "err": out[4], "log_z": out[5]}
    dino = tt.DINOLoss(K, 3, 0.04, 0.07, 1, 2)
    dino_ref = DINOReference(K, 3, 0.04, 0.07, 1, 2, all_reduce=dist.all_reduce, world_size=world)
    record["dino"] = []
    for epoch, (student, teacher) in enumerate(steps):
        s = local_rows(student, 3, rank).requires_grad_()
        t = local_rows(teacher, 2, rank)
        d = dino(s, t, epoch)
        r = dino_ref(s, t, epoch)
        assert abs(d.item() / r.item() - 1) <= 1e-5
        assert float((dino.center - dino_ref.center).abs().max()) <= 1e-6
        record["dino"].append({"loss": d.detach(), "center": dino.center.clone()})
    torch.save(record, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def run_ranks(out: Path):
    import thermossl

    # the workers import the thermossl this process imported (under mutation testing: the mutants)
    path = os.pathsep.join([str(Path(thermossl.__file__).parents[1]), str(Path(__file__).parent),
                            os.environ.get("PYTHONPATH", "")])
    run_gloo_ranks([sys.executable, __file__, out], WORLD, timeout=180,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def global_codes(x, queue):
    """The codes (2 * WORLD * B, K), mu (2, K), charge errors (2,) and log Z of one process's
    Sinkhorn over the global batch (each assigned crop with its whole queue)."""
    from thermossl.torch import losses

    codes = torch.empty(2 * WORLD * B, K)
    mu, err, log_z = losses._swav_codes_into(x, (0, 1), WORLD * B, 0.05, 3, queue, codes)
    return codes, mu, err, log_z


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_losses_over_two_ranks_equal_the_global_batch(tmp_path):
    """Only the codes are computed in this process (so that mutation testing runs this slow test
    against the code that decides between one process and a group); the workers check their
    losses, gradients and DINO centers against the published algorithms."""
    swav_out, queue, _ = global_inputs()
    single = {"f32": global_codes(swav_out, None), "queue": global_codes(swav_out, queue),
              "bf16": global_codes(swav_out.to(torch.bfloat16), None)}
    assert single["f32"][3].shape == (2 * WORLD * B,)  # one process: the codes' log Z of every row
    ranks = run_ranks(tmp_path)
    for name in ("f32", "queue", "bf16"):
        codes = single[name][0]
        for rank, r in enumerate(ranks):
            # the codes are the rows of Sinkhorn over every rank's rows (and queues)
            assert r[name]["codes"].dtype == torch.float32
            torch.testing.assert_close(r[name]["codes"], local_rows(codes, 2, rank), rtol=1e-5, atol=1e-7)
    _, mu, err, _ = single["f32"]
    for rank, r in enumerate(ranks):
        torch.testing.assert_close(r["op"]["codes"], local_rows(single["f32"][0], 2, rank), rtol=1e-5, atol=1e-7)
        # mu (up to its gauge) and the charge errors are the global solver's, the same on every rank
        assert r["op"]["mu"].dtype == r["op"]["err"].dtype == r["op"]["log_z"].dtype == torch.float64
        assert r["op"]["mu"].shape == (2, K) and r["op"]["err"].shape == (2,)
        torch.testing.assert_close(r["op"]["mu"] - r["op"]["mu"].mean(1, keepdim=True),
                                   mu - mu.mean(1, keepdim=True), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(r["op"]["err"], ranks[0]["op"]["err"], rtol=0, atol=0)
        torch.testing.assert_close(r["op"]["err"], err, rtol=1e-3, atol=1e-6)
        assert r["op"]["log_z"].shape == (0,)  # sharded: the codes' log Z is not computed
        assert len(r["dino"]) == 2


if __name__ == "__main__":
    worker(sys.argv[1])
