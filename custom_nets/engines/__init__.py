from .outputs import StagedOutputDir, refuse_overwrite
from .prepare_batch import PrepareBatchWithSentences, PrepareBatchWithText

__all__ = ["PrepareBatchWithSentences", "PrepareBatchWithText", "StagedOutputDir", "refuse_overwrite"]
