from .dispatch import ImageOrVolumed, ct_window_range
from .mask import MASK_RULES, BinarizeMaskd, binarize
from .orientation import NETWORK_AXCODES, NetworkOrientationd, check_volume_geometry, radiograph_to_network
from .text import CheckImageLabelSized, EnsureChannelsd, RandFlipWithTextd, RecordTextd, SidecarTextd, SwapLateralityd

__all__ = ["ImageOrVolumed", "ct_window_range", "MASK_RULES", "BinarizeMaskd", "binarize", "NETWORK_AXCODES",
           "NetworkOrientationd", "check_volume_geometry", "radiograph_to_network", "CheckImageLabelSized",
           "EnsureChannelsd", "RandFlipWithTextd", "RecordTextd", "SidecarTextd", "SwapLateralityd"]
