"""SwAVLoss and DINOLoss in 2 processes (torch.distributed, gloo) equal the single-process run on
the whole global batch, and the published algorithms run with torch.distributed."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed  # noqa: E402

if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import thermossl.torch as tt  # noqa: E402
from helpers import run_gloo_ranks  # noqa: E402
from torch_losses_worker import B, K, NCROPS, SELA_ROWS, global_batches, local_rows, sela_scores  # noqa: E402

WORKER = Path(__file__).with_name("torch_losses_worker.py")
WORLD = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_losses")
    run_gloo_ranks([sys.executable, WORKER, out], WORLD, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_swav_two_ranks_equal_one_process(ranks):
    single = tt.SwAVLoss(keep_codes=True)
    for step, (s_out, _, _) in enumerate(global_batches(WORLD)):
        x = s_out.clone().requires_grad_()
        loss = single(x)
        (g,) = torch.autograd.grad(loss, x)
        # the global loss is the mean of the ranks' losses (equal shards) ...
        mean = sum(r["swav"][step]["loss"] for r in ranks) / WORLD
        assert abs(mean.item() / loss.item() - 1) <= 1e-6
        for rank, r in enumerate(ranks):
            rec = r["swav"][step]
            # ... its codes are the rows of the global Sinkhorn ...
            torch.testing.assert_close(rec["codes"], local_rows(single.last_codes, 2, WORLD, rank),
                                       rtol=1e-5, atol=1e-7)
            # ... and a rank's gradient is WORLD x the global one on its rows (DDP averages them)
            assert rel(rec["grad"] / WORLD, local_rows(g, 2, WORLD, rank)) <= 1e-5
            # the published distributed loop, run with torch.distributed, agrees
            assert abs(rec["loss"].item() / rec["ref_loss"].item() - 1) <= 1e-6
            assert rel(rec["grad"], rec["ref_grad"]) <= 1e-5


def test_dino_two_ranks_equal_one_process(ranks):
    single = tt.DINOLoss(K, NCROPS, 0.04, 0.07, 2, 5)
    for epoch, (_, student, teacher) in enumerate(global_batches(WORLD)):
        s = student.clone().requires_grad_()
        loss = single(s, teacher, epoch)
        (g,) = torch.autograd.grad(loss, s)
        mean = sum(r["dino"][epoch]["loss"] for r in ranks) / WORLD
        assert abs(mean.item() / loss.item() - 1) <= 1e-6
        for rank, r in enumerate(ranks):
            rec = r["dino"][epoch]
            assert rel(rec["center"], single.center) <= 1e-6  # the all-reduced center
            assert rel(rec["grad"] / WORLD, local_rows(g, NCROPS, WORLD, rank)) <= 1e-5
            assert abs(rec["loss"].item() / rec["ref_loss"].item() - 1) <= 1e-6
            assert rel(rec["grad"], rec["ref_grad"]) <= 1e-5
            assert rel(rec["center"], rec["ref_center"]) <= 1e-6


def test_sela_two_ranks_equal_one_process(ranks):
    single = tt.SeLaLabels()
    scores = sela_scores(WORLD)
    q1 = single.update(scores)
    q2 = single.update(scores * 1.01)
    for rank, r in enumerate(ranks):
        rows = slice(rank * SELA_ROWS, (rank + 1) * SELA_ROWS)
        torch.testing.assert_close(r["sela"][0], q1[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(r["sela"][1], q2[rows], rtol=1e-10, atol=1e-12)
        assert r["sela"][2] == single.n_iter  # the same iterations with the warm start
