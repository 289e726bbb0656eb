from .dispatch import ImageOrVolumed
from .intensity import LUNG_WINDOW, ct_window_range, window
from .mask import MASK_RULES, BinarizeMaskd, binarize
from .orientation import NETWORK_AXCODES, NetworkOrientationd, check_volume_geometry, radiograph_to_network
from .image import CheckImageLabelSized, EnsureChannelsd
from .text import RandFlipWithTextd, RecordTextd, SidecarTextd, SwapLateralityd

__all__ = ["ImageOrVolumed", "LUNG_WINDOW", "ct_window_range", "window", "MASK_RULES", "BinarizeMaskd", "binarize", "NETWORK_AXCODES",
           "NetworkOrientationd", "check_volume_geometry", "radiograph_to_network", "CheckImageLabelSized",
           "EnsureChannelsd", "RandFlipWithTextd", "RecordTextd", "SidecarTextd", "SwapLateralityd"]
