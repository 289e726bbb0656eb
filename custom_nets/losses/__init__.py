"""Method-specific loss terms, on top of ``monai.losses``."""

from .consistency import ConsistencyAwareLoss, consistency_loss
from .distillation import SemanticDistillationLoss

__all__ = ["ConsistencyAwareLoss", "SemanticDistillationLoss", "consistency_loss"]
