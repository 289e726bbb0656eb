from .unet import ImageOnlyUNet

__all__ = ["ImageOnlyUNet"]
