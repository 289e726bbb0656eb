"""Ignite handlers that MONAI's ``monai.handlers`` lacks."""

from .staged_output import StagedOutputDir

__all__ = ["StagedOutputDir"]
