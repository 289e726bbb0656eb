"""Ignite handlers that MONAI's ``monai.handlers`` lacks."""

from .final_checkpoint import FinalCheckpoint
from .staged_output import StagedOutputDir

__all__ = ["FinalCheckpoint", "StagedOutputDir"]
