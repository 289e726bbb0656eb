from .himix import HiMix
from .tamiseg import ConsistencyAwareEncoder, TAMISeg, initialize_encoder, load_encoder_weights
from .unet import ImageOnlyUNet

__all__ = ["ConsistencyAwareEncoder", "HiMix", "ImageOnlyUNet", "TAMISeg", "initialize_encoder", "load_encoder_weights"]
