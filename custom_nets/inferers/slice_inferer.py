"""Volumes through a 2D network, slice by slice, with the preprocessing the 2D network was trained with.

The networks of this project are 2D. :class:`SliceWiseInferer` lets one ``inference.json`` take both: a 2D
image (``(B, C, H, W)``, already normalised and resized by the config's preprocessing) goes to the wrapped
inferer unchanged; a volume (``(B, C, X, Y, Z)``, windowed to 0..255) goes through MONAI's ``SliceInferer``
along the last (axial) axis, each slice normalised per channel, resized to the training size, segmented,
and its logits resized back (:class:`ResizingSliceNetwork`), so the output has the volume's exact grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SimpleInferer, SliceInferer
from torch import nn


class ResizingSliceNetwork(nn.Module):
    """Wrap a 2D network: per-image channel-wise normalisation, resize to ``image_size``, predict, resize back.

    Args:
        network: the trained 2D network (``image``, optional ``text_hidden``/``text_mask``), or any callable.
        image_size: the training size (H, W) of the bundle.
        in_channels: the network's input channels (a grey slice is repeated, colour averaged).
    """

    def __init__(self, network: Callable[..., torch.Tensor], image_size: Sequence[int], in_channels: int) -> None:
        super().__init__()
        self.network, self.image_size, self.in_channels = network, tuple(image_size), in_channels

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        size = x.shape[2:]
        if x.shape[1] != self.in_channels:
            x = x.mean(1, keepdim=True).expand(-1, self.in_channels, *size)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))  # as NormalizeIntensityd(channel_wise)
        logits = self.network(F.interpolate(x, size=self.image_size, mode="area"), *args, **kwargs)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class SliceWiseInferer(Inferer):
    """2D images through ``inferer``; volumes slice by slice through a 2D network.

    Args:
        image_size: the network's training size (H, W); every slice is resized to it and the logits back.
        in_channels: the network's input channels.
        inferer: the inferer for 2D inputs (default ``SimpleInferer``).
        slice_batch: slices per forward pass (memory against speed).

    Example (a tiny 2D network trained at 64 x 64; the volume keeps its own grid):
        >>> from monai.inferers import SlidingWindowInferer
        >>> from custom_nets.nets import ImageOnlyUNet
        >>> network = ImageOnlyUNet(in_channels=3, features=(8, 8, 16, 32, 64, 8)).eval()
        >>> inferer = SliceWiseInferer((64, 64), 3, SlidingWindowInferer((64, 64)))
        >>> with torch.no_grad():
        ...     inferer(torch.rand(1, 1, 100, 90, 3) * 255, network).shape  # a volume, slice by slice
        ...     inferer(torch.randn(2, 3, 64, 64), network).shape  # a 2D image batch, through the 2D inferer
        torch.Size([1, 1, 100, 90, 3])
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, image_size: Sequence[int], in_channels: int, inferer: Inferer | None = None,
                 slice_batch: int = 8) -> None:
        super().__init__()
        if len(image_size) != 2:
            raise ValueError(f"image_size must be (H, W) of the 2D network, got {image_size}")
        if slice_batch < 1:
            raise ValueError(f"slice_batch must be >= 1, got {slice_batch}")
        self.image_size, self.in_channels = tuple(image_size), in_channels
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.slice_batch = slice_batch

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if inputs.ndim == 4:
            return self.inferer(inputs, network, *args, **kwargs)
        if inputs.ndim != 5:
            raise ValueError(f"expected a 2D image batch (B, C, H, W) or a volume batch (B, C, X, Y, Z), got shape {tuple(inputs.shape)}")
        slices = SliceInferer(roi_size=inputs.shape[2:4], spatial_dim=2, sw_batch_size=self.slice_batch, progress=False)
        return slices(inputs, ResizingSliceNetwork(network, self.image_size, self.in_channels), *args, **kwargs)
