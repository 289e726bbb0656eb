from .dispatch import ImageOrVolumed, ct_window_range
from .mask import MASK_RULES, BinarizeMaskd, binarize
from .text import CheckImageLabelSized, EnsureChannelsd, RandFlipWithTextd, RecordTextd, SidecarTextd, SwapLateralityd

__all__ = ["ImageOrVolumed", "ct_window_range", "MASK_RULES", "BinarizeMaskd", "binarize", "CheckImageLabelSized",
           "EnsureChannelsd", "RandFlipWithTextd", "RecordTextd", "SidecarTextd", "SwapLateralityd"]
