"""textseg-bundles: text-guided medical image segmentation networks and pipeline parts for MONAI bundles."""

from . import backbones, data, engines, inferers, losses, nets, text, transforms

__version__ = "0.1.0"
__all__ = ["backbones", "data", "engines", "inferers", "losses", "nets", "text", "transforms"]
