from .text_inferer import TextInferer

__all__ = ["TextInferer"]
