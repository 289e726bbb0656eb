from .distillation import SemanticDistillation
from .metrics import EmptyAwareMetric, empty_ground_truth
from .outputs import StagedOutputDir, refuse_overwrite, write_atomically
from .prepare_batch import PrepareBatchWithPerturbedView, PrepareBatchWithSentences, PrepareBatchWithText

__all__ = [
    "EmptyAwareMetric",
    "PrepareBatchWithPerturbedView",
    "PrepareBatchWithSentences",
    "PrepareBatchWithText",
    "SemanticDistillation",
    "StagedOutputDir",
    "refuse_overwrite",
    "write_atomically",
    "empty_ground_truth",
]
