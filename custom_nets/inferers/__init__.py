from .slice_inferer import ResizingSliceNetwork, SliceWiseInferer
from .text_inferer import TextInferer

__all__ = ["ResizingSliceNetwork", "SliceWiseInferer", "TextInferer"]
