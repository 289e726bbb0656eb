"""Method-specific loss terms, on top of ``monai.losses``."""

from .cacl import CaCLLoss, CaCLTrainingLoss, cacl_loss_from_similarity, cacl_soft_targets
from .consistency import ConsistencyAwareLoss, consistency_loss
from .distillation import SemanticDistillationLoss

__all__ = [
    "CaCLLoss",
    "CaCLTrainingLoss",
    "ConsistencyAwareLoss",
    "SemanticDistillationLoss",
    "cacl_loss_from_similarity",
    "cacl_soft_targets",
    "consistency_loss",
]
