from .dispatch import ImageOrVolumed
from .intensity import LUNG_WINDOW, ct_window_range, window
from .mask import MASK_RULES, BinarizeMaskd, binarize
from .orientation import NETWORK_AXCODES, NetworkOrientationd, check_volume_geometry, radiograph_to_network
from .image import CheckImageLabelSized, EnsureChannelsd
from .text import RandFlipWithTextd, RecordTextd, SidecarTextd, SwapLateralityd
from .text_augment import RandAbbreviationd, RandClauseOrderd, RandNormalFindingd, RandParaphrased, RandTextRewrited, RandTypod

__all__ = ["ImageOrVolumed", "LUNG_WINDOW", "ct_window_range", "window", "MASK_RULES", "BinarizeMaskd", "binarize", "NETWORK_AXCODES",
           "NetworkOrientationd", "check_volume_geometry", "radiograph_to_network", "CheckImageLabelSized",
           "EnsureChannelsd", "RandFlipWithTextd", "RecordTextd", "SidecarTextd", "SwapLateralityd",
           "RandAbbreviationd", "RandClauseOrderd", "RandNormalFindingd", "RandParaphrased", "RandTextRewrited", "RandTypod"]
