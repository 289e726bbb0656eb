"""textseg-bundles: text-guided medical image segmentation networks and pipeline parts for MONAI bundles."""

from . import data, engines, inferers, nets, text, transforms

__version__ = "0.1.0"
__all__ = ["data", "engines", "inferers", "nets", "text", "transforms"]
