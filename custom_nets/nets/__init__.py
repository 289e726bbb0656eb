from .c2seg import C2Seg, C2SegContrastive
from .himix import HiMix
from .lcpdn import LCPDN, LCPDNDenoiser, PromptableDiffusionUNet
from .tamiseg import ConsistencyAwareEncoder, TAMISeg
from .unet import ImageOnlyUNet

__all__ = ["C2Seg", "C2SegContrastive", "ConsistencyAwareEncoder", "HiMix", "ImageOnlyUNet", "LCPDN", "LCPDNDenoiser", "PromptableDiffusionUNet", "TAMISeg"]
