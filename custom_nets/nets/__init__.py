from .himix import HiMix
from .tamiseg import ConsistencyAwareEncoder, TAMISeg
from .unet import ImageOnlyUNet

__all__ = ["ConsistencyAwareEncoder", "HiMix", "ImageOnlyUNet", "TAMISeg"]
