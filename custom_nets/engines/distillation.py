"""Training-time wrapper adding feature distillation from a frozen teacher to a MONAI trainer."""

from __future__ import annotations

import torch
from torch import nn

from custom_nets.losses import SemanticDistillationLoss


class SemanticDistillation(nn.Module):
    """Wrap a student network so that, in training mode, each forward pass also computes
    ``weight * Ldistill(student features, teacher features)``; the trainer's loss adds it through
    :class:`custom_nets.losses.AuxiliaryLossSum` (TAMISeg Eq. 14: Ltotal = Lpred + lambda Ldistill).

    The student must accept ``return_features=True`` and then return ``(logits, features)``. In eval mode, or
    with ``teacher=None`` or ``weight=0`` (ablation "distillation off"), this is the student alone. Checkpoints
    and exports take the student (the teacher is never part of the model).

    Args:
        student: e.g. :class:`custom_nets.nets.TAMISeg`.
        teacher: e.g. :class:`custom_nets.backbones.FrozenViTTeacher`, or None.
        weight: lambda.

    Example (JSON config)::

        "train_network": {"_target_": "custom_nets.engines.SemanticDistillation",
                          "student": "@network", "teacher": "@teacher", "weight": "@distill_weight"}
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, weight: float = 1.0) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher if weight else None
        self.weight = weight
        self.loss = SemanticDistillationLoss()
        self._pending: torch.Tensor | None = None
        self.last_value: torch.Tensor | None = None  # the latest Ldistill (unweighted, detached), for logging

    def forward(self, image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not self.training or self.teacher is None:
            return self.student(image, *args, **kwargs)
        logits, features = self.student(image, *args, return_features=True, **kwargs)
        value = self.loss(features, self.teacher(image))
        self.last_value = value.detach()  # a tensor: no device sync on the training step
        self._pending = self.weight * value
        return logits

    def pop_auxiliary_loss(self) -> torch.Tensor | None:
        """The term of the latest training forward pass (once), or None."""
        value, self._pending = self._pending, None
        return value
