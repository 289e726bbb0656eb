from .handlers import StagedOutputDir
from .prepare_batch import PrepareBatchWithText

__all__ = ["PrepareBatchWithText", "StagedOutputDir"]
