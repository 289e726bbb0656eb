from .himix import HiMix
from .unet import ImageOnlyUNet

__all__ = ["HiMix", "ImageOnlyUNet"]
