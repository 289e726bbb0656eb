from .distillation import DISTILL_LOSS, DistillationTrainer
from .metrics import EmptyAwareMetric, empty_ground_truth
from .plan import log_training_plan
from .prepare_batch import PrepareBatchWithPerturbedView, PrepareBatchWithSentences, PrepareBatchWithText

__all__ = [
    "DISTILL_LOSS",
    "DistillationTrainer",
    "EmptyAwareMetric",
    "PrepareBatchWithPerturbedView",
    "PrepareBatchWithSentences",
    "PrepareBatchWithText",
    "empty_ground_truth",
    "log_training_plan",
]
