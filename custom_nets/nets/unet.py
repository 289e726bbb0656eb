"""Image-only baseline: MONAI's BasicUNet with the text arguments of the project's network interface.

Every network in this project is called as ``network(image, text_hidden=None, text_mask=None)``. This one
ignores the text, so it gives the image-only reference of every results table (in the papers' tables, UNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet


class ImageOnlyUNet(BasicUNet):
    """``monai.networks.nets.BasicUNet`` that accepts and ignores ``text_hidden`` and ``text_mask``.

    Args:
        spatial_dims: 2 for the radiographs and slices of this project.
        in_channels: image channels.
        out_channels: 1 (a lesion logit map).
        features: six channel counts, as in BasicUNet.

    Example:
        >>> net = ImageOnlyUNet(spatial_dims=2, in_channels=1, out_channels=1, features=(8, 8, 16, 32, 64, 8))
        >>> net(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        **kwargs,
    ) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, features=features, **kwargs)

    def forward(  # type: ignore[override]
        self, image: torch.Tensor, text_hidden: torch.Tensor | None = None, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return super().forward(image)
