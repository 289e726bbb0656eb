"""Method-specific loss terms, on top of ``monai.losses``."""

from .consistency import ConsistencyAwareLoss, consistency_loss
from .distillation import AuxiliaryLossSum, SemanticDistillationLoss

__all__ = ["AuxiliaryLossSum", "ConsistencyAwareLoss", "SemanticDistillationLoss", "consistency_loss"]
