"""TAMISeg's semantic encoder distillation loss (Sec. II-C, Eq. 7)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class SemanticDistillationLoss(nn.Module):
    """``1 - (1/N) sum_i sum_j cos(phi_i(f_i)^(j), t_i^(j))`` over the N = sum_i L_i tokens of all levels.

    Eq. 7 is the negative mean cosine; we add 1 so the loss is 0 for aligned features (same gradient).
    Each teacher map is resized bilinearly to its student level's grid, so every student token has a target;
    the teacher is detached (gradients reach the student only).

    Args:
        student: list of (B, D, h_i, w_i), the projected features phi_i(f_i).
        teacher: list of the same length of (B, D, h, w) teacher patch maps.
    """

    def forward(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(student) != len(teacher):
            raise ValueError(f"{len(student)} student levels but {len(teacher)} teacher maps")
        total, count = 0.0, 0
        for s, t in zip(student, teacher):
            if s.shape[1] != t.shape[1]:
                raise ValueError(f"student width {s.shape[1]} differs from the teacher's {t.shape[1]}: "
                                 "set the network's feature_width to the teacher's embed_dim")
            t = F.interpolate(t.detach().to(s.dtype), size=s.shape[2:], mode="bilinear", align_corners=False)
            cos = F.cosine_similarity(s, t, dim=1)  # (B, h_i, w_i)
            total = total + cos.sum()
            count += cos.numel()
        return 1.0 - total / count
