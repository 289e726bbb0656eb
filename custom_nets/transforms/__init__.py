from .text import CheckImageLabelSized, EnsureChannelsd, RandFlipWithTextd, SwapLateralityd

__all__ = ["CheckImageLabelSized", "EnsureChannelsd", "RandFlipWithTextd", "SwapLateralityd"]
