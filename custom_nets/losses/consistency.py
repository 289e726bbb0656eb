"""TAMISeg phase I loss (Sec. II-B, Eqs. 1-6): mask loss on an image and its perturbed copy, plus a symmetric
consistency term between each prediction and the other's binarised map."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn
from torch.nn import functional as F


def consistency_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Eq. 5: ``0.5 * [BCE(B(P_b, theta), P_a) + BCE(B(P_a, theta), P_b)]`` with ``P = sigmoid(logits)`` and
    ``B(P, theta) = [P >= theta]`` (Eq. 4; a step, so no gradient flows through the targets).

    Identical *binary* predictions give 0; identical soft ones do not (the term also pushes toward confident
    predictions), as Eq. 5 is written.

    The authors' code (``Stage1_CAE/utils/run_engine_stage1.py``, ``BinaryConsistencyLoss``, lines 102-116) sums
    the two terms without the 1/2 and binarises with ``P > 0.5``; here Eq. 5 as printed (``consistency_weight``
    2.0 in :class:`ConsistencyAwareLoss` gives the code's scale).
    """
    target_a = (torch.sigmoid(logits_a) >= threshold).to(logits_a.dtype).detach()
    target_b = (torch.sigmoid(logits_b) >= threshold).to(logits_b.dtype).detach()
    return 0.5 * (F.binary_cross_entropy_with_logits(logits_a, target_b)
                  + F.binary_cross_entropy_with_logits(logits_b, target_a))


class ConsistencyAwareLoss(nn.Module):
    """Eq. 6: ``Lmask(G, P_a) + Lmask(G, P_b) + Lcons(P_a, P_b)``, Lmask = BCE + Dice (Eqs. 1-3).

    The trainer sees one batch of 2B predictions: the B clean images first, then their B perturbed copies
    (as :class:`custom_nets.engines.PrepareBatchWithPerturbedView` builds it); the target is G twice.

    Args:
        threshold: theta of Eq. 4.
        consistency_weight: weight of Lcons (1 in the paper; 0 drops it, an ablation).

    Dice (Eq. 3) is computed per image and averaged (MONAI ``DiceCELoss``, BCE on logits).
    """

    def __init__(self, threshold: float = 0.5, consistency_weight: float = 1.0) -> None:
        super().__init__()
        self.threshold = threshold
        self.consistency_weight = consistency_weight
        self.mask_loss = DiceCELoss(sigmoid=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] % 2:
            raise ValueError(f"expected clean and perturbed views stacked on the batch axis (2B items), got {logits.shape[0]}")
        b = logits.shape[0] // 2
        p_a, p_b = logits[:b], logits[b:]
        loss = self.mask_loss(p_a, target[:b]) + self.mask_loss(p_b, target[b:])
        if self.consistency_weight:
            loss = loss + self.consistency_weight * consistency_loss(p_a, p_b, self.threshold)
        return loss
