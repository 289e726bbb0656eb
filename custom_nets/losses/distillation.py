"""TAMISeg's semantic encoder distillation loss (Sec. II-C, Eq. 7)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: ``level_weighting`` values: every token of every level counts once (Eq. 7), or every level counts once
LEVEL_WEIGHTINGS = ("token", "level")


class SemanticDistillationLoss(nn.Module):
    """``1 - mean cos(phi_i(f_i)^(j), t_i^(j))``, the mean taken as ``level_weighting`` says.

    - ``"token"`` (default, Eq. 7 as written): ``(1/N) sum_i sum_j`` over the N = sum_i L_i tokens of all levels.
      Each level then weighs in proportion to its token count: with TAMISeg's strides 2, 4, 8, 16 that is
      16^2 : 4^2 : 2^2 : 1 = 75.3 %, 18.8 %, 4.7 %, 1.2 % at any input size (at 256 x 256: 16384, 4096, 1024
      and 256 of 21760 tokens), so the stride-2 level dominates.
    - ``"level"``: ``(1/4) sum_i (1/L_i) sum_j``, each level's mean cosine counting equally, as the authors' code
      does (``TextDiff_code/train.py``: every level resized to 16 x 16 tokens, one ``cosine_loss`` per level,
      the four averaged).

    Eq. 7 is the negative mean cosine; we add 1 so the loss is 0 for aligned features (same gradient).
    Each teacher map is resized bilinearly to its student level's grid, so every student token has a target;
    the teacher is detached (gradients reach the student only). Every image has the same token count per level,
    so both means are also means over the batch.

    Args:
        level_weighting: ``"token"`` or ``"level"``.

    Forward:
        student: list of (B, D, h_i, w_i), the projected features phi_i(f_i).
        teacher: list of the same length of (B, D, h, w) teacher patch maps.

    Example:
        >>> s = [torch.ones(1, 2, 2, 2), torch.ones(1, 2, 1, 1)]
        >>> t = [torch.ones(1, 2, 1, 1), -torch.ones(1, 2, 1, 1)]  # level 1 aligned (4 tokens), level 2 opposed (1)
        >>> round(SemanticDistillationLoss("token")(s, t).item(), 3), SemanticDistillationLoss("level")(s, t).item()
        (0.4, 1.0)
    """

    def __init__(self, level_weighting: str = "token") -> None:
        super().__init__()
        if level_weighting not in LEVEL_WEIGHTINGS:
            raise ValueError(f"level_weighting must be one of {LEVEL_WEIGHTINGS}, got {level_weighting!r}")
        self.level_weighting = level_weighting

    def forward(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(student) != len(teacher):
            raise ValueError(f"{len(student)} student levels but {len(teacher)} teacher maps")
        cosines = []
        for s, t in zip(student, teacher):
            if s.shape[1] != t.shape[1]:
                raise ValueError(f"student width {s.shape[1]} differs from the teacher's {t.shape[1]}: "
                                 "set the network's feature_width to the teacher's embed_dim")
            t = F.interpolate(t.detach().to(s.dtype), size=s.shape[2:], mode="bilinear", align_corners=False)
            cosines.append(F.cosine_similarity(s, t, dim=1))  # (B, h_i, w_i)
        if self.level_weighting == "level":
            return 1.0 - torch.stack([c.mean() for c in cosines]).mean()
        return 1.0 - sum(c.sum() for c in cosines) / sum(c.numel() for c in cosines)
