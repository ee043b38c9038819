"""Plain-torch references of the published SSL losses, written from the papers and their code
(SwAV: Caron et al. 2020, main_swav.py's training loop and distributed_sinkhorn; DINO: Caron et
al. 2021, main_dino.py's DINOLoss). Used by the tests and by bench/bench_torch_losses.py."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def swav_sinkhorn(out, epsilon=0.05, iterations=3, world_size=1, all_reduce=None):
    """SwAV's distributed_sinkhorn: Q = exp(out/eps)^T (K x B), normalised to total mass 1, then
    alternately rows (prototypes) to 1/K and columns (samples) to 1/B; columns summing to 1."""
    Q = torch.exp(out / epsilon).t()
    B = Q.shape[1] * world_size
    K = Q.shape[0]
    sum_Q = torch.sum(Q)
    if all_reduce is not None:
        all_reduce(sum_Q)
    Q /= sum_Q
    for _ in range(iterations):
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        if all_reduce is not None:
            all_reduce(sum_of_rows)
        Q /= sum_of_rows
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def swav_loss(output, temperature=0.1, epsilon=0.05, iterations=3, crops_for_assign=(0, 1), nmb_crops=(2,),
              queue_scores=None, world_size=1, all_reduce=None):
    """SwAV's training-loop loss on the stacked prototype scores of all crops."""
    bs = output.shape[0] // int(np.sum(nmb_crops))
    loss = 0
    for i, crop_id in enumerate(crops_for_assign):
        with torch.no_grad():
            out = output[bs * crop_id: bs * (crop_id + 1)].detach()
            if queue_scores is not None:
                out = torch.cat((queue_scores[i], out))
            q = swav_sinkhorn(out, epsilon, iterations, world_size, all_reduce)[-bs:]
        subloss = 0
        for v in np.delete(np.arange(np.sum(nmb_crops)), crop_id):
            x = output[bs * v: bs * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / (np.sum(nmb_crops) - 1)
    return loss / len(crops_for_assign)


class DINOReference(torch.nn.Module):
    """DINO's DINOLoss: teacher centering + sharpening, multi-crop cross-entropy, EMA center."""

    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs,
                 student_temp=0.1, center_momentum=0.9, all_reduce=None, world_size=1):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ncrops = ncrops
        self.all_reduce = all_reduce
        self.world_size = world_size
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp,
        ))

    def forward(self, student_output, teacher_output, epoch):
        student_out = student_output / self.student_temp
        student_out = student_out.chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(2)
        total_loss = 0
        n_loss_terms = 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True)
        if self.all_reduce is not None:
            self.all_reduce(batch_center)
        batch_center = batch_center / (len(teacher_output) * self.world_size)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)
