"""HiMix: Hierarchical Visual-Textual Mixing Network for lesion segmentation (Hwang, Sim, Kim).

Two variants of the decoder (``variant``), on the same image encoder:

``variant="authors_code"`` (the bundle's default) builds the decoder as the authors' public code does
(``JaeyoonSSim/HiMix``: ``utils/model_himix.py`` class ``HiMix``, ``utils/layers_himix.py`` classes ``Decoder``,
``DecoderLayer``, ``LFM``, ``PositionalEncoding``), block by block:
    - image encoder, paper Sec. 3.2: ConvNeXt-Tiny, four stages at strides 4, 8, 16, 32 (the code: Hugging Face
      ``facebook/convnext-tiny-224``, ``hidden_states[1:]``; here timm's ``convnext_tiny`` with
      ``features_only=True``, the same architecture and ImageNet-1k weights, without the final LayerNorm that
      the code computes only for its unused pooled output);
    - DLFM, Sec. 3.2 Eq. 1 (:class:`~custom_nets.blocks.StaticLayerFusion`): as the code's
      ``attention_weights = nn.Parameter(torch.ones(3, 4))``, softmax per group, the same weights for every
      sentence; groups of consecutive layers, the highest group to the first decoder stage;
    - text projection, Eq. 2 (:class:`~custom_nets.blocks.TokenMixProjection`): as ``DecoderLayer.text_project``:
      Conv1d over the 24 token positions to L' tokens, GELU, Linear D -> C, LeakyReLU (the paper's order is
      Linear, Conv, ReLU); L' = 24, 12, 9 in the three stages (``Decoder(..., text_len)`` in ``HiMix.__init__``);
    - ASRM, Sec. 3.3 Eq. 3 (:class:`~custom_nets.blocks.NyquistGaussianFilter`): as ``LFM``: x + IFFT(FFT(x)(1 - g))
      with g a Gaussian at index (H//2, W//2) of the unshifted spectrum (the highest frequency), learnable sigma
      per stage starting at 5.0: a low-pass filter added back to its input;
    - decoder stage, Eqs. 4-6 (:class:`~custom_nets.blocks.PrePostNormAttentionLayer`): as ``DecoderLayer``:
      LayerNorm before and after each attention, residual scales starting at 1.421, MLP C -> C/2 -> C with ReLU
      and dropout 0.1, 1D sine positions on image tokens (queries and keys) and text tokens (keys), 8 heads;
    - Eqs. 7-8: MONAI ``UnetrUpBlock(2, C, C_skip, 3, 2, norm_name="BATCH")`` as in the code's ``Decoder``
      (``res_block=False``, MONAI's default: transposed convolution, then two 3x3 conv + BatchNorm + LeakyReLU);
    - head, Eq. 9: MONAI ``SubpixelUpsample(2, C_1, C_1 // 4, 4)`` (learned sub-pixel x4 upsampling, 96 -> 24
      channels at full size) and ``UnetOutBlock`` (1x1 convolution), as ``decoder1`` and ``out`` in the code.
    Departures from the code: the network returns logits (the code applies the sigmoid inside the network and
    feeds probabilities to ``DiceCELoss``; here the sigmoid is in the loss and the post-processing); missing text
    is a learned null-text token (the code has no image-only path); padded token positions are zero (the code
    reads CXR-BERT's outputs at [PAD] positions); the code's unused modules (``DecoderLayer.norm``, the vision
    and text ``project_head`` s, the encoder's final LayerNorm) are left out.

``variant="paper"`` is this project's reading of the paper's equations, below.

Blocks of ``variant="paper"`` and where they come from in the paper:
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

Where ``variant="paper"`` departs from the paper (which leaves details to its supplement):
    - DLFM's "lightweight gating head" is a linear map of each layer's mean token feature plus a per-layer
      bias (the paper does not specify its input);
    - a fixed 2D sine position code is added to the visual tokens' queries and keys (GuideDecoder and the
      authors' code add a 1D code over the flattened tokens);
    - the decoder stage's convolutions are MONAI's ``UnetrUpBlock`` with its residual conv block
      (``res_block=True``; GuideDecoder and the authors' code use MONAI's default, ``res_block=False``);
    - missing text (``text_hidden=None``, or an all-zero row of ``text_mask``) is replaced by a learned
      null-text token, so the network also runs from an image alone.

Where ``variant="paper"`` departs from the authors' code (besides the above): DLFM reads the sentence (the code's
logits are static); text projection Linear, Conv, ReLU in the paper's order (the code: Conv, GELU, Linear,
LeakyReLU), padding masked, L' = 24 in every stage (the code: 24, 12, 9); ASRM a Gaussian low-pass centred at DC
in normalised frequency, sigma 0.25 (the code: one minus a Gaussian at the Nyquist index, sigma 5 index units);
LayerNorm only after each attention, residual scales from 0.1, MLP C -> 4C -> C with GELU (the code: LayerNorm
before and after, 1.421, C -> C/2 -> C with ReLU and dropout 0.1); bilinear upsampling of the last decoder
feature (the code: ``SubpixelUpsample``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import SubpixelUpsample, UnetOutBlock, UnetrUpBlock
from torch import nn

from custom_nets.backbones import create_image_encoder
from custom_nets.blocks import (
    DynamicLayerFusion,
    GaussianSpectrumRefinement,
    NyquistGaussianFilter,
    PrePostNormAttentionLayer,
    StaticLayerFusion,
    TextGuidedAttentionLayer,
    TextTokenProjection,
    TokenMixProjection,
    check_sine_channels,
    fill_missing_text,
    sinusoidal_2d,
)

#: the decoder variants of :class:`HiMix`
VARIANTS = ("authors_code", "paper")
#: L' per decoder stage (coarsest first) in the authors' code: ``Decoder(..., 24)``, ``(..., 12)``, ``(..., 9)``
AUTHORS_PROJECTED_TOKENS = (24, 12, 9)


class HiMixDecoderStage(nn.Module):
    """One decoder stage m of ``variant="paper"`` (Sec. 3.3, Eqs. 2-8): ASRM, text-guided attention, upsampling with
    the skip feature f_m. Follows the authors' code in the order of the blocks and in MONAI's ``UnetrUpBlock``;
    departs from it as listed in the module docstring (:class:`HiMixCodeDecoderStage` is the code's stage).

    Args:
        spatial_dims: 2.
        in_channels: C, the width of d_{m+1}; the blocks' ``hidden_size`` (visual width), a multiple of 4 (2D sine code).
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
        check_sine_channels(in_channels, "in_channels")  # its 2D position code, refused here and not in forward
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


class HiMixCodeDecoderStage(nn.Module):
    """One decoder stage m of ``variant="authors_code"`` (Sec. 3.3) as the authors' code builds it (``Decoder`` and
    ``DecoderLayer`` in ``utils/layers_himix.py``): text projection (Eq. 2), ASRM as ``LFM`` (Eq. 3), attention
    layer (Eqs. 4-6), MONAI ``UnetrUpBlock`` without residual block (Eqs. 7-8). Departs from the code only in
    that padded token positions are zero (the code reads CXR-BERT's outputs there) and in leaving out the code's
    unused ``DecoderLayer.norm``.

    Args:
        spatial_dims: 2.
        in_channels: C, the width of d_{m+1}.
        skip_channels: the width of f_m (and of the stage's output).
        context_input_size: D, the text width.
        max_text_tokens: L, the token positions the projection reads (24 in the code).
        projected_tokens: L' of this stage (24, 12 or 9 in the code).
        num_heads: attention heads (8 in the code).
        use_asrm: apply ASRM (``LFM``).
        dropout_rate: attention dropout (0 in the code); the MLP's dropout is the code's 0.1.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        context_input_size: int,
        max_text_tokens: int,
        projected_tokens: int,
        num_heads: int,
        use_asrm: bool,
        dropout_rate: float,
    ) -> None:
        super().__init__()
        self.asrm = NyquistGaussianFilter() if use_asrm else nn.Identity()
        self.text_projection = TokenMixProjection(hidden_size=in_channels, context_input_size=context_input_size,
                                                  max_tokens=max_text_tokens, projected_tokens=projected_tokens)
        self.attention = PrePostNormAttentionLayer(hidden_size=in_channels, num_heads=num_heads,
                                                   dropout_rate=dropout_rate)
        self.up = UnetrUpBlock(spatial_dims, in_channels, skip_channels, kernel_size=3, upsample_kernel_size=2,
                               norm_name="BATCH", res_block=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.text_projection(text, text_mask)  # Eq. 2
        x = self.asrm(x)  # Eq. 3
        visual = self.attention(x.flatten(2).transpose(1, 2), tokens)  # Eqs. 4-6
        x = visual.transpose(1, 2).reshape(b, c, h, w)
        return self.up(x, skip)  # Eqs. 7-8


def _per_stage(projected_tokens, num_stages: int, variant: str) -> list[int | None]:
    """L' of each decoder stage (coarsest first) from ``projected_tokens``."""
    if projected_tokens == "auto":
        projected_tokens = AUTHORS_PROJECTED_TOKENS if variant == "authors_code" else 24
    if projected_tokens is None or isinstance(projected_tokens, int):
        per_stage = [projected_tokens] * num_stages
    else:
        per_stage = [None if t is None else int(t) for t in projected_tokens]
        if len(per_stage) != num_stages:
            raise ValueError(f"projected_tokens gives {len(per_stage)} values for {num_stages} decoder stages")
    if variant == "authors_code" and any(t is None for t in per_stage):
        raise ValueError("variant='authors_code' projects the text to L' tokens in every stage; projected_tokens "
                         f"cannot be None there, got {projected_tokens}")
    return per_stage


class HiMix(nn.Module):
    """HiMix for 2D text-guided lesion segmentation, with the decoder of the authors' code (``variant="authors_code"``,
    the default) or of this project's reading of the paper (``variant="paper"``).

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
        projected_tokens: L' of Eq. 2: an int for every stage, a sequence of one per stage (coarsest first), or
            ``"auto"``: (24, 12, 9) for ``authors_code`` (the authors' code), 24 in every stage for ``paper``.
            With ``paper``, None keeps the sentence's tokens and masks padding in attention.
        num_heads: attention heads in every decoder stage (must divide the stage widths, the blocks' ``hidden_size``).
        use_dlfm: mix all text layers per stage (DLFM); False uses the last layer everywhere (ablation).
        use_asrm: spectrum refinement in every stage (ASRM); False skips it (ablation).
        dropout: attention dropout, and with ``paper`` also the MLP's (the blocks' ``dropout_rate``); ``authors_code``
            keeps the code's MLP dropout of 0.1.
        variant: ``"authors_code"`` (the decoder of the authors' public code) or ``"paper"`` (this project's reading of
            the paper's equations); see the module docstring.

    Forward: ``image`` (B, in_channels, H, W), ``text_hidden`` (B, text_num_layers, L, D) or None,
    ``text_mask`` (B, L) or None -> logits (B, out_channels, H, W). H and W must be multiples of 32.

    Example:
        >>> net = HiMix(in_channels=1, backbone_kwargs={"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
        ...             text_hidden_size=32, text_num_layers=4, num_heads=2)
        >>> net(torch.randn(2, 1, 64, 64), torch.randn(2, 4, 9, 32), torch.ones(2, 9)).shape
        torch.Size([2, 1, 64, 64])
        >>> paper = HiMix(in_channels=1, backbone_kwargs={"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
        ...               text_hidden_size=32, text_num_layers=4, num_heads=2, variant="paper")
        >>> paper(torch.randn(2, 1, 64, 64), torch.randn(2, 4, 9, 32), torch.ones(2, 9)).shape
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
        projected_tokens: int | Sequence[int | None] | str | None = "auto",
        num_heads: int = 8,
        use_dlfm: bool = True,
        use_asrm: bool = True,
        dropout: float = 0.0,
        variant: str = "authors_code",
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        if spatial_dims != 2:
            raise ValueError(f"HiMix is a 2D network (CT goes slice by slice); got spatial_dims={spatial_dims}")
        self.encoder = create_image_encoder(backbone, in_channels, pretrained, **(backbone_kwargs or {}))
        widths: Sequence[int] = self.encoder.feature_info.channels()
        if len(widths) != 4:
            raise ValueError(f"expected a 4-stage image encoder, {backbone} gives {len(widths)} stages")
        self.text_num_layers = text_num_layers
        num_stages = len(widths) - 1  # M decoder stages, f_4 is d_{M+1}
        tokens_per_stage = _per_stage(projected_tokens, num_stages, variant)  # coarsest stage first
        if variant == "authors_code":
            self.layer_fusion = StaticLayerFusion(num_layers=text_num_layers, num_groups=num_stages) if use_dlfm else None
            self.null_text = nn.Parameter(torch.randn(text_hidden_size) * 0.02)
            self.stages = nn.ModuleList(
                HiMixCodeDecoderStage(spatial_dims, in_channels=widths[i + 1], skip_channels=widths[i],
                                      context_input_size=text_hidden_size, max_text_tokens=max_text_tokens,
                                      projected_tokens=tokens_per_stage[num_stages - 1 - i], num_heads=num_heads,
                                      use_asrm=use_asrm, dropout_rate=dropout)
                for i in reversed(range(num_stages))
            )
            head_channels = max(widths[0] // 4, 1)  # the code: SubpixelUpsample(2, 96, 24, 4)
            self.head = nn.Sequential(
                SubpixelUpsample(spatial_dims, widths[0], head_channels,
                                 scale_factor=self.encoder.feature_info.reduction()[0]),
                UnetOutBlock(spatial_dims, head_channels, out_channels),
            )
            return
        self.layer_fusion = DynamicLayerFusion(
            num_layers=text_num_layers, num_groups=num_stages, context_input_size=text_hidden_size
        ) if use_dlfm else None
        self.null_text = nn.Parameter(torch.randn(text_hidden_size) * 0.02)
        # stages[0] is the first (coarsest) decoder stage: f_4 -> f_3, text group M
        self.stages = nn.ModuleList(
            HiMixDecoderStage(spatial_dims, in_channels=widths[i + 1], skip_channels=widths[i],
                              context_input_size=text_hidden_size, max_text_tokens=max_text_tokens,
                              projected_tokens=tokens_per_stage[num_stages - 1 - i], num_heads=num_heads,
                              use_asrm=use_asrm, dropout_rate=dropout)
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
        return self.head(x)  # Eq. 9 without its sigmoid: logits
