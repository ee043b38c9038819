"""One rank of the 2-process gloo tests of thermossl.torch's losses (tests/test_torch_distributed.py).

    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python tests/torch_losses_worker.py OUT_DIR

Every rank builds the same global batches (global_batches() below, imported by the test too),
takes its samples of every crop, runs SwAVLoss (Sinkhorn over both ranks' rows) and DINOLoss
(center all-reduced) for a few steps, and writes OUT_DIR/rank<r>.pt: losses, gradients of its rows,
codes, centers, and the same for the plain-torch references run with torch.distributed.
"""
from __future__ import annotations

import os
import sys

import torch

B, K, NCROPS = 24, 12, 4  # per-rank batch, prototypes, DINO crops


def global_batches(world: int, steps: int = 3):
    """Per step: SwAV output (2 crops x world*B rows, crop-major), DINO student (NCROPS crops) and
    teacher (2 crops) outputs, for the whole global batch."""
    g = torch.Generator().manual_seed(123)
    out = []
    for _ in range(steps):
        swav = torch.nn.functional.normalize(torch.randn(2 * world * B, K, generator=g), dim=1) * 3
        student = torch.randn(NCROPS * world * B, K, generator=g) * 3
        teacher = torch.randn(2 * world * B, K, generator=g) * 3 + 0.5
        out.append((swav, student, teacher))
    return out


SELA_ROWS = 150


def sela_scores(world: int):
    """The scores of a whole data set (world * SELA_ROWS samples), rank-major."""
    g = torch.Generator().manual_seed(7)
    return torch.randn(world * SELA_ROWS, K, generator=g) * 2


def local_rows(x: torch.Tensor, crops: int, world: int, rank: int) -> torch.Tensor:
    """This rank's samples of every crop, crop-major (the layout a rank's model produces)."""
    per_crop = x.reshape(crops, world * B, K)
    return per_crop[:, rank * B:(rank + 1) * B].reshape(crops * B, K).contiguous()


def main(out_dir: str) -> None:
    import torch.distributed as dist

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import thermossl.torch as tt
    from torch_references import DINOReference, swav_loss

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    all_reduce = dist.all_reduce
    swav = tt.SwAVLoss(keep_codes=True)
    dino = tt.DINOLoss(K, NCROPS, 0.04, 0.07, 2, 5)
    dino_ref = DINOReference(K, NCROPS, 0.04, 0.07, 2, 5, all_reduce=all_reduce, world_size=world)
    record = {"swav": [], "dino": []}
    for epoch, (s_out, student, teacher) in enumerate(global_batches(world)):
        x = local_rows(s_out, 2, world, rank).requires_grad_()
        loss = swav(x)
        (g,) = torch.autograd.grad(loss, x)
        ref = swav_loss(x, world_size=world, all_reduce=all_reduce)
        (g_ref,) = torch.autograd.grad(ref, x)
        record["swav"].append({"loss": loss.detach(), "grad": g, "codes": swav.last_codes.clone(),
                               "ref_loss": ref.detach(), "ref_grad": g_ref})
        s = local_rows(student, NCROPS, world, rank).requires_grad_()
        t = local_rows(teacher, 2, world, rank)
        d = dino(s, t, epoch)
        (gd,) = torch.autograd.grad(d, s)
        r = dino_ref(s, t, epoch)
        (gr,) = torch.autograd.grad(r, s)
        record["dino"].append({"loss": d.detach(), "grad": gd, "center": dino.center.clone(),
                               "ref_loss": r.detach(), "ref_grad": gr, "ref_center": dino_ref.center.clone()})
    sela = tt.SeLaLabels()
    scores = sela_scores(world)
    record["sela"] = [sela.update(scores[rank * SELA_ROWS:(rank + 1) * SELA_ROWS]).clone(),
                      sela.update(scores[rank * SELA_ROWS:(rank + 1) * SELA_ROWS] * 1.01).clone(), sela.n_iter]
    torch.save(record, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
