from .outputs import StagedOutputDir, refuse_overwrite, write_atomically
from .prepare_batch import PrepareBatchWithSentences, PrepareBatchWithText

__all__ = ["PrepareBatchWithSentences", "PrepareBatchWithText", "StagedOutputDir", "refuse_overwrite", "write_atomically"]
