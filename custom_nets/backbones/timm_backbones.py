"""timm backbones: ``features_only`` encoders for the networks, and frozen ViT teachers for distillation.

Weights come from timm's pretrained tags (``convnext_tiny.fb_in1k``, ``resnet50.tv_in1k``,
``vit_small_patch16_dinov3.lvd1689m``: Hugging Face hub ids under ``timm/``), from a local weights file,
or nowhere (random weights, which is how every config also runs offline).
"""

from __future__ import annotations

import logging

import timm
import torch
from torch import nn

logger = logging.getLogger(__name__)


def _pretrained_kwargs(pretrained: bool | str, kwargs: dict) -> bool:
    """timm's ``pretrained`` flag; a string is a local weights file, passed through ``pretrained_cfg_overlay``."""
    if isinstance(pretrained, str) and pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": pretrained}
        return True
    return bool(pretrained)


def _create(name: str, pretrained: bool | str, **kwargs) -> nn.Module:
    flag = _pretrained_kwargs(pretrained, kwargs)
    try:
        return timm.create_model(name, pretrained=flag, **kwargs)
    except Exception as e:  # hub unreachable, weights file missing or not matching
        if not flag:
            raise
        raise RuntimeError(
            f"could not load pretrained weights for timm model '{name}' (pretrained={pretrained!r}): {e}. "
            "Offline, give a local weights file as 'pretrained' or set it to false for random weights."
        ) from e


def create_image_encoder(name: str, in_channels: int, pretrained: bool | str = False, **kwargs) -> nn.Module:
    """A timm backbone with ``features_only=True``.

    Args:
        name: timm model name, optionally with a pretrained tag (``convnext_tiny.fb_in1k``).
        in_channels: image channels (timm adapts pretrained stem weights to 1 channel).
        pretrained: False (random), True (timm's weights for ``name``, from the local cache when offline)
            or the path of a local weights file.
        kwargs: passed to ``timm.create_model`` (e.g. ``out_indices``, or ``depths``/``dims``/``layers``/
            ``channels`` for a reduced encoder).
    """
    return _create(name, pretrained, features_only=True, in_chans=in_channels, **kwargs)


class FrozenViTTeacher(nn.Module):
    """A frozen timm ViT (DINOv3 by default) giving the normalised patch maps of its last ``num_layers`` blocks.

    Used only while training (semantic encoder distillation of TAMISeg); never part of an exported network.
    Always in eval mode, without gradients. Images with one channel are repeated to three.

    Args:
        name: timm name (``vit_small_patch16_dinov3.lvd1689m``: DINOv3 ViT-S/16).
        pretrained: see :func:`create_image_encoder`; False gives random weights (tests, offline demo).
        num_layers: how many final blocks to return, first to last.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``depth``, ``embed_dim`` for a tiny teacher).

    Forward: image (B, C, H, W) with H, W multiples of the patch size -> list of ``num_layers`` tensors
    (B, embed_dim, H / patch, W / patch).
    """

    def __init__(
        self,
        name: str = "vit_small_patch16_dinov3.lvd1689m",
        pretrained: bool | str = False,
        num_layers: int = 4,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.model = _create(name, pretrained, num_classes=0, **(model_kwargs or {}))
        if not pretrained:
            logger.warning("teacher '%s' has random weights (pretrained=false): distillation then pulls the "
                           "student toward random features; give the real weights for a faithful run", name)
        depth = len(getattr(self.model, "blocks", ()))
        if not 0 < num_layers <= depth:
            raise ValueError(f"teacher '{name}' has {depth} blocks; cannot take its last {num_layers}")
        self.num_layers = num_layers
        self.embed_dim: int = self.model.embed_dim
        self.model.requires_grad_(False)
        self.eval()  # frozen: batch statistics and dropout stay off

    def train(self, mode: bool = True) -> FrozenViTTeacher:
        return super().train(False)  # frozen: batch statistics and dropout stay off

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        return self.model.forward_intermediates(
            image, indices=self.num_layers, norm=True, output_fmt="NCHW", intermediates_only=True
        )
