from .mask import MASK_RULES, BinarizeMaskd, binarize
from .text import CheckImageLabelSized, EnsureChannelsd, RandFlipWithTextd, RecordTextd, SidecarTextd, SwapLateralityd

__all__ = ["MASK_RULES", "BinarizeMaskd", "binarize", "CheckImageLabelSized", "EnsureChannelsd", "RandFlipWithTextd", "RecordTextd", "SidecarTextd",
           "SwapLateralityd"]
