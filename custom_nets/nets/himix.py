"""HiMix: Hierarchical Visual-Textual Mixing Network for lesion segmentation (Hwang, Sim, Kim).

Blocks and where they come from in the paper:
    - image encoder, Sec. 3.2: ConvNeXt-Tiny through timm (``features_only=True``), four stages f_1..f_4
      at strides 4, 8, 16, 32;
    - text, Sec. 3.2: every hidden layer of a frozen text encoder (computed outside the network, see
      ``custom_nets.text.TextEncoder``), split evenly into M groups J_m and mixed by DLFM (Eq. 1,
      :class:`~custom_nets.blocks.DynamicLayerFusion`); the highest group feeds the first (coarsest)
      decoder stage;
    - text projection, Eq. 2 (:class:`~custom_nets.blocks.TextTokenProjection`), to L' tokens;
    - ASRM, Eq. 3 (:class:`~custom_nets.blocks.GaussianSpectrumRefinement`), learnable sigma per stage;
    - decoder stage, Eqs. 4-8: cross-attention to text, self-attention, MLP, each with a learnable residual
      scale (:class:`~custom_nets.blocks.TextGuidedAttentionLayer`), then upsampling, skip concatenation and
      convolution (MONAI ``UnetrUpBlock``);
    - head, Eq. 9: upsampling to the input size and a 1x1 convolution (a logit map; the sigmoid of Eq. 9
      is applied in post-processing and in the loss).

Where this departs from the paper (which leaves details to its supplement):
    - DLFM's "lightweight gating head" is a linear map of each layer's mean token feature plus a per-layer
      bias (the paper does not specify its input);
    - a fixed 2D sine position code is added to the visual tokens' queries and keys (as in GuideDecoder);
    - the decoder stage's convolutions are MONAI's ``UnetrUpBlock`` (transposed-conv upsampling, residual
      conv block), as in GuideDecoder, on which the authors' code builds;
    - missing text (``text_hidden=None``, or an all-zero row of ``text_mask``) is replaced by a learned
      null-text token, so the network also runs from an image alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrUpBlock
from torch import nn

from custom_nets.backbones import create_image_encoder
from custom_nets.blocks import (
    DynamicLayerFusion,
    GaussianSpectrumRefinement,
    TextGuidedAttentionLayer,
    TextTokenProjection,
    fill_missing_text,
    sinusoidal_2d,
)


class HiMixDecoderStage(nn.Module):
    """One decoder stage m (Eqs. 2-8): ASRM, text-guided attention, upsampling with the skip feature f_m.

    Args:
        spatial_dims: 2.
        in_channels: C, the width of d_{m+1}; the blocks' ``hidden_size`` (visual width).
        skip_channels: the width of f_m (and of the stage's output).
        context_input_size: D, the text width (HiMix's ``text_hidden_size``).
        max_text_tokens: L, the longest accepted sentence.
        projected_tokens: L' of Eq. 2, or None.
        num_heads: attention heads (must divide C).
        use_asrm: apply ASRM (Eq. 3).
        dropout_rate: attention and MLP dropout.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        context_input_size: int,
        max_text_tokens: int,
        projected_tokens: int | None,
        num_heads: int,
        use_asrm: bool,
        dropout_rate: float,
    ) -> None:
        super().__init__()
        self.asrm = GaussianSpectrumRefinement() if use_asrm else nn.Identity()
        self.text_projection = TextTokenProjection(hidden_size=in_channels, context_input_size=context_input_size,
                                                   max_tokens=max_text_tokens, projected_tokens=projected_tokens)
        self.attention = TextGuidedAttentionLayer(hidden_size=in_channels, num_heads=num_heads,
                                                  dropout_rate=dropout_rate)
        self.up = UnetrUpBlock(spatial_dims, in_channels, skip_channels, kernel_size=3, upsample_kernel_size=2,
                               norm_name="BATCH", res_block=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.asrm(x)  # Eq. 3
        tokens, mask = self.text_projection(text, text_mask)  # Eq. 2
        visual = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        visual = self.attention(visual, tokens, mask, sinusoidal_2d(h, w, c, x.device).to(x.dtype))  # Eqs. 4-6
        x = visual.transpose(1, 2).reshape(b, c, h, w)
        return self.up(x, skip)  # Eqs. 7-8


class HiMix(nn.Module):
    """HiMix for 2D text-guided lesion segmentation.

    Args:
        spatial_dims: 2 (the paper's setting; the blocks are 2D).
        in_channels: image channels.
        out_channels: logit channels (1: lesion).
        backbone: timm name of the image encoder (the paper: ConvNeXt-Tiny, ``convnext_tiny``).
        pretrained: see :func:`custom_nets.backbones.create_image_encoder`.
        backbone_kwargs: extra ``timm.create_model`` arguments (reduced encoders for CPU runs and tests).
        text_hidden_size: D, the text encoder's width (768 for CXR-BERT); the blocks' ``context_input_size``.
        text_num_layers: H, the hidden layers it returns (12 for CXR-BERT).
        max_text_tokens: L, longest accepted sentence in tokens (the encoder's ``max_length``).
        projected_tokens: L' of Eq. 2; None keeps the sentence's tokens and masks padding in attention.
        num_heads: attention heads in every decoder stage (must divide the stage widths, the blocks' ``hidden_size``).
        use_dlfm: mix all text layers per stage (DLFM); False uses the last layer everywhere (ablation).
        use_asrm: spectrum refinement in every stage (ASRM); False skips it (ablation).
        dropout: attention/MLP dropout (the blocks' ``dropout_rate``).

    Forward: ``image`` (B, in_channels, H, W), ``text_hidden`` (B, text_num_layers, L, D) or None,
    ``text_mask`` (B, L) or None -> logits (B, out_channels, H, W). H and W must be multiples of 32.

    Example:
        >>> net = HiMix(in_channels=1, backbone_kwargs={"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
        ...             text_hidden_size=32, text_num_layers=4, num_heads=2)
        >>> net(torch.randn(2, 1, 64, 64), torch.randn(2, 4, 9, 32), torch.ones(2, 9)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "convnext_tiny",
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        text_hidden_size: int = 768,
        text_num_layers: int = 12,
        max_text_tokens: int = 24,
        projected_tokens: int | None = 24,
        num_heads: int = 8,
        use_dlfm: bool = True,
        use_asrm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"HiMix is a 2D network (CT goes slice by slice); got spatial_dims={spatial_dims}")
        self.encoder = create_image_encoder(backbone, in_channels, pretrained, **(backbone_kwargs or {}))
        widths: Sequence[int] = self.encoder.feature_info.channels()
        if len(widths) != 4:
            raise ValueError(f"expected a 4-stage image encoder, {backbone} gives {len(widths)} stages")
        self.text_num_layers = text_num_layers
        num_stages = len(widths) - 1  # M decoder stages, f_4 is d_{M+1}
        self.layer_fusion = DynamicLayerFusion(
            num_layers=text_num_layers, num_groups=num_stages, context_input_size=text_hidden_size
        ) if use_dlfm else None
        self.null_text = nn.Parameter(torch.randn(text_hidden_size) * 0.02)
        # stages[0] is the first (coarsest) decoder stage: f_4 -> f_3, text group M
        self.stages = nn.ModuleList(
            HiMixDecoderStage(spatial_dims, in_channels=widths[i + 1], skip_channels=widths[i],
                              context_input_size=text_hidden_size, max_text_tokens=max_text_tokens,
                              projected_tokens=projected_tokens, num_heads=num_heads, use_asrm=use_asrm,
                              dropout_rate=dropout)
            for i in reversed(range(num_stages))
        )
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=self.encoder.feature_info.reduction()[0], mode="bilinear", align_corners=False),
            UnetOutBlock(spatial_dims, widths[0], out_channels),
        )

    def forward(
        self, image: torch.Tensor, text_hidden: torch.Tensor | None = None, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        features = self.encoder(image)  # f_1..f_4
        text_hidden, text_mask = fill_missing_text(self.null_text.to(image.dtype), image.shape[0], text_hidden, text_mask,
                                                    self.text_num_layers)
        if self.layer_fusion is not None:
            groups = self.layer_fusion(text_hidden, text_mask)  # t_1..t_M, lowest layers first
        else:
            groups = [text_hidden[:, -1]] * len(self.stages)
        x = features[-1]  # d_{M+1} = f_I
        for stage, skip, text in zip(self.stages, reversed(features[:-1]), reversed(groups)):
            x = stage(x, skip, text, text_mask)
        return self.head(x)
