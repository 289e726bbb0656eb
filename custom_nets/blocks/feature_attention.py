"""Channel and spatial attention over convolutional feature maps (used by TAMISeg's decoder, Eq. 11)."""

from __future__ import annotations

import math

import torch
from torch import nn


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al., ECA-Net, CVPR 2020): global average pooling, a 1D convolution across channels with an
    adaptive kernel size ``k = |log2(C) / gamma + b / gamma|_odd``, sigmoid, channel re-weighting.

    Args:
        in_channels: C, the channels of the feature map (the output has the same).
        gamma, b: the kernel-size rule of the ECA paper (2 and 1).

    Example:
        >>> EfficientChannelAttention(64)(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, in_channels: int, gamma: int = 2, b: int = 1) -> None:
        super().__init__()
        k = int(abs(math.log2(in_channels) / gamma + b / gamma))
        k = k if k % 2 else k + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))[:, None, :]  # (B, 1, C)
        w = torch.sigmoid(self.conv(w))[:, 0, :, None, None]
        return x * w


class SpatialAttention(nn.Module):
    """Spatial attention: channel-wise mean and max maps, a k x k convolution, sigmoid, position re-weighting
    (CBAM's spatial branch). With several kernel sizes the maps of each are summed (a pyramid of receptive
    fields).

    TAMISeg's Eq. 11 names this "Pyramid Spatial Attention" and cites PSANet; the ConDSeg decoder on which the
    authors build uses this CBAM-style module (one 7 x 7 kernel), which is the default here. PSANet's
    point-wise attention would need an (HW x HW) map per image (16384^2 entries at the finest decoder scale).

    Args:
        kernel_sizes: odd kernel sizes; (7,) is CBAM.

    Example:
        >>> SpatialAttention()(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, kernel_sizes: tuple[int, ...] = (7,)) -> None:
        super().__init__()
        if not kernel_sizes or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd and non-empty, got {kernel_sizes}")
        self.convs = nn.ModuleList(nn.Conv2d(2, 1, k, padding=k // 2, bias=False) for k in kernel_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(sum(conv(maps) for conv in self.convs))
