"""A MONAI trainer with TAMISeg's semantic encoder distillation from a frozen teacher (paper Sec. II-C, Eq. 7;
the total loss of Sec. II-E, Eq. 14)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys
from torch import nn

from custom_nets.losses import SemanticDistillationLoss

#: ``engine.state.output`` keys this trainer adds: the unweighted Ldistill of the iteration (detached, for logging),
#: and the student's features between the forward pass and the loss (removed once used)
DISTILL_LOSS = "distill_loss"
STUDENT_FEATURES = "student_features"


class DistillationTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` whose loss is ``Lpred + distill_weight * Ldistill`` (TAMISeg Eq. 14).

    The hand-off is explicit and lives in ``engine.state.output``: the training forward pass runs the student
    with ``return_features=True`` and keeps its features under ``"student_features"``; on MONAI's
    ``IterationEvents.LOSS_COMPLETED`` (before the backward pass) the trainer runs the frozen teacher on the same
    images, adds ``distill_weight * Ldistill`` to ``"loss"`` and records the unweighted term as ``"distill_loss"``.
    Everything else (AMP, gradient accumulation, handlers, DDP) is ``SupervisedTrainer``'s. With ``teacher=None``
    or ``distill_weight=0`` (ablation "distillation off", and phase I) it is ``SupervisedTrainer``.

    The training forward pass is whole images (as ``SimpleInferer``); evaluation, checkpoints and exports use the
    student alone (the teacher is never part of the model).

    Args:
        args, kwargs: ``SupervisedTrainer``'s (``network`` is the student, or the student in
            ``DistributedDataParallel``; it must accept ``return_features=True`` and then return
            ``(logits, features)``).
        teacher: e.g. :class:`custom_nets.backbones.FrozenViTTeacher`, or None.
        distill_weight: lambda of Eq. 14.
        distill_loss: ``(student features, teacher features) -> Tensor`` (default
            :class:`custom_nets.losses.SemanticDistillationLoss`, Eq. 7).

    Example (JSON config)::

        "trainer": {"_target_": "custom_nets.engines.DistillationTrainer", "network": "@train_network",
                    "teacher": "@teacher", "distill_weight": "@distill_weight", "loss_function": "@loss", ...}
    """

    def __init__(self, *args: Any, teacher: nn.Module | None = None, distill_weight: float = 1.0,
                 distill_loss: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.distill_weight = float(distill_weight)
        self.teacher = teacher.to(self.state.device) if teacher is not None and self.distill_weight else None
        self.distill_loss = distill_loss if distill_loss is not None else SemanticDistillationLoss()
        if self.teacher is not None:
            self.inferer = self._student_forward
            self.add_event_handler(IterationEvents.LOSS_COMPLETED, self._add_distillation)

    def _student_forward(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The training forward pass: logits for ``loss_function``, features kept for the teacher's term."""
        logits, features = network(inputs, *args, return_features=True, **kwargs)
        self.state.output[STUDENT_FEATURES] = features
        return logits

    def _add_distillation(self, engine: DistillationTrainer) -> None:
        output = engine.state.output
        features: Sequence[torch.Tensor] = output.pop(STUDENT_FEATURES)
        value = self.distill_loss(features, self.teacher(output[Keys.IMAGE]))
        output[DISTILL_LOSS] = value.detach()  # a tensor: no device sync on the training step
        output[Keys.LOSS] = output[Keys.LOSS] + self.distill_weight * value
