from .distillation import SemanticDistillation
from .metrics import EmptyAwareMetric, empty_ground_truth
from .prepare_batch import PrepareBatchWithPerturbedView, PrepareBatchWithSentences, PrepareBatchWithText

__all__ = [
    "EmptyAwareMetric",
    "PrepareBatchWithPerturbedView",
    "PrepareBatchWithSentences",
    "PrepareBatchWithText",
    "SemanticDistillation",
    "empty_ground_truth",
]
