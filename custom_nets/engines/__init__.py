from .outputs import StagedOutputDir, refuse_overwrite
from .prepare_batch import PrepareBatchWithText

__all__ = ["PrepareBatchWithText", "StagedOutputDir", "refuse_overwrite"]
