from .distillation import SemanticDistillation
from .outputs import StagedOutputDir, refuse_overwrite, write_atomically
from .prepare_batch import PrepareBatchWithPerturbedView, PrepareBatchWithSentences, PrepareBatchWithText

__all__ = [
    "PrepareBatchWithPerturbedView",
    "PrepareBatchWithSentences",
    "PrepareBatchWithText",
    "SemanticDistillation",
    "StagedOutputDir",
    "refuse_overwrite",
    "write_atomically",
]
