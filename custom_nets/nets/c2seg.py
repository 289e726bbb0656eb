"""C2Seg: Consistency-enhanced Two-stage Segmentation ("Towards Text-Mask Consistency in Medical Image Segmentation",
Gui, Tu, Sha, Du; ICLR 2026). Built from the poster (``C2Seg`` in one sentence: "soft neighborhood-aware alignment
and bidirectional spatial fusion so the predicted mask actually follows the clinical text"); no code is public.

- Stage I, :class:`C2SegContrastive` (poster "Stage I: CaCL reduces false negatives"): the trainable image encoder
  and two projections, trained with :class:`custom_nets.losses.CaCLLoss` against the frozen text encoder ("Frozen
  text encoder + finetune visual encoder keeps semantics stable while learning better visual-spatial alignment").
- Stage II, :class:`C2Seg` (poster "Stage II: BCAM + K-Gate inject language into space", Fig. 3): the stage I
  encoder, a U-Net decoder, and a :class:`~custom_nets.blocks.BidirectionalCrossAttention` (BCAM with the K-Gate)
  after each of the decoder's three coarsest stages; loss BCE + Dice (the bundle's ``DiceCELoss``).

The text encoder sits outside both networks (project design): they take ``text_hidden`` (B, H, L, D), the frozen
encoder's hidden layers from :class:`custom_nets.text.TextEncoder`, and ``text_mask`` (B, L), and use the last layer.

Where we filled in (the poster gives neither code nor these; each is in the model card too):
    - image encoder: timm ``resnet18`` (features_only, strides 2..32, widths 64/64/128/256/512): 11.18 M of the
      poster's 18.92 M; with the U-Net decoder (3.10 M) and three BCAMs at widths 256/128/64 with CLIP's 512-wide
      tokens (4.45 M) the network has 18.74 M trainable parameters (1 % under the poster's count; ResNet-34 would
      give 28.8 M, a ConvNeXt/Swin-T encoder alone 28 M). ImageNet weights (``resnet18.tv_in1k``) before stage I;
    - decoder: MONAI's ``UpCat`` (transposed-convolution upsampling, concatenation with the encoder's skip, two
      3x3 conv-norm-act) per level, widths following the encoder's; a 1x1 head on the stride-2 map, its logits
      bilinearly upsampled to the input size;
    - where language enters: BCAM on the decoder's stride-16, -8 and -4 maps (where a mask's count and place are
      decided; GuideDecoder, the peer of the project's HiMix, also fuses text in the decoder). Not at stride 32 (a
      512-wide K-Gate alone would be 9.4 M) nor at stride 2 (attention over 112 x 112 pixels);
    - text tokens: the last hidden layer of the frozen encoder, padding masked; a learned null token where a sample
      has no sentence (text dropout in training, an empty prompt at inference);
    - stage I embeddings: image = CLIP's attention pooling of the stride-32 map (timm ``AttentionPool2d``: a query
      from the mean feature attends over the position-embedded map, then a linear projection to a 256-wide joint
      space), text = mean of the valid tokens of the last layer through a linear projection to 256. The sentences
      differ mostly in place ("upper left", "lower right"), which global average pooling erases; CLIP's ResNets
      pool with attention for the same reason. On the demo, stage I's loss stayed at 2 ln B (every image equally
      similar to every sentence) for 10 epochs with either pooling, and fell only over 30 epochs (with attention
      pooling; mean pooling was not run that long). ``image_pooling="mean"`` keeps global average pooling as a
      switch. The similarity M of the soft targets is the cosine of the frozen token means (no projection: "frozen
      language space").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.basic_unet import UpCat
from timm.layers import AttentionPool2d
from torch import nn
from torch.nn import functional as F

from custom_nets.backbones import create_image_encoder
from custom_nets.blocks import BidirectionalCrossAttention, fill_missing_text, masked_token_mean

IMAGE_POOLINGS = ("attention", "mean")  # C2SegContrastive(image_pooling=...)
#: decoder stages that get a BCAM, counted from the coarsest (stride 16, 8, 4 for a stride-32 encoder)
FUSION_STAGES = 3


def _encoder(spatial_dims: int, in_channels: int, backbone: str, pretrained: bool | str,
             backbone_kwargs: dict | None) -> nn.Module:
    if spatial_dims != 2:
        raise ValueError(f"C2Seg is a 2D network (CT goes slice by slice); got spatial_dims={spatial_dims}")
    encoder = create_image_encoder(backbone, in_channels, pretrained, **(backbone_kwargs or {}))
    if len(encoder.feature_info.channels()) != 5:
        raise ValueError(f"expected 5 feature levels (strides 2..32) from {backbone}, got "
                         f"{encoder.feature_info.reduction()}")
    return encoder


class C2SegContrastive(nn.Module):
    """Stage I network: the trainable image encoder with the projections of CaCL (poster "Stage I").

    Args:
        spatial_dims: 2.
        in_channels: image channels.
        backbone: timm name of the image encoder (``resnet18`` family; 5 feature levels).
        pretrained: ImageNet weights for the encoder (see :func:`custom_nets.backbones.create_image_encoder`).
        backbone_kwargs: extra ``timm.create_model`` arguments (reduced encoders for CPU runs and tests).
        text_hidden_size: D, the frozen text encoder's width (512 for CLIP's text tower).
        embed_dim: width of the joint image-text space.
        image_pooling: ``"attention"`` (CLIP's attention pooling with learned positions, timm ``AttentionPool2d``,
            positions for a 7 x 7 map resampled to other sizes) or ``"mean"`` (global average pooling and a linear
            projection).
        num_heads: heads of the attention pooling.

    Forward: ``image`` (B, in_channels, H, W), ``text_hidden`` (B, layers, L, D), ``text_mask`` (B, L) ->
    ``(image_embeddings, text_embeddings, frozen_text_embeddings)``, (B, embed_dim), (B, embed_dim), (B, D): the
    arguments of :class:`custom_nets.losses.CaCLLoss` (the trainer's face: ``CaCLTrainingLoss``).
    :class:`C2Seg` loads ``encoder.*`` from its checkpoint (``custom_nets.backbones.initialize_encoder``).

    Example:
        >>> net = C2SegContrastive(in_channels=1, backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
        ...                        text_hidden_size=24, embed_dim=16, num_heads=2)
        >>> v, t, e = net(torch.randn(2, 1, 64, 64), torch.randn(2, 3, 7, 24), torch.ones(2, 7))
        >>> v.shape, t.shape, e.shape
        (torch.Size([2, 16]), torch.Size([2, 16]), torch.Size([2, 24]))
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, backbone: str = "resnet18",
                 pretrained: bool | str = False, backbone_kwargs: dict | None = None, text_hidden_size: int = 512,
                 embed_dim: int = 256, image_pooling: str = "attention", num_heads: int = 8) -> None:
        super().__init__()
        if image_pooling not in IMAGE_POOLINGS:
            raise ValueError(f"image_pooling must be one of {IMAGE_POOLINGS}, got {image_pooling!r}")
        self.encoder = _encoder(spatial_dims, in_channels, backbone, pretrained, backbone_kwargs)
        deepest = self.encoder.feature_info.channels()[-1]
        if image_pooling == "attention":
            self.image_projection: nn.Module = AttentionPool2d(deepest, feat_size=7, out_features=embed_dim,
                                                              num_heads=num_heads)
        else:
            self.image_projection = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(deepest, embed_dim))
        self.text_projection = nn.Linear(text_hidden_size, embed_dim)

    def forward(self, image: torch.Tensor, text_hidden: torch.Tensor,
                text_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if text_hidden is None:
            raise ValueError("stage I needs a sentence per image (text_hidden is None)")
        if text_mask is None:
            text_mask = torch.ones(text_hidden.shape[0], text_hidden.shape[2], device=text_hidden.device)
        deepest = self.encoder(image)[-1]
        frozen = masked_token_mean(text_hidden[:, -1], text_mask)  # frozen language space (no gradient reaches it)
        return self.image_projection(deepest), self.text_projection(frozen), frozen


class C2Seg(nn.Module):
    """C2Seg's stage II network for 2D text-guided segmentation (see the module docstring for the blocks and what we
    filled in).

    Args:
        spatial_dims: 2.
        in_channels: image channels.
        out_channels: logit channels (1: lesion).
        backbone: timm name of the image encoder (5 feature levels, strides 2..32).
        pretrained: ImageNet weights for the encoder; stage I's weights are loaded afterwards
            (``custom_nets.backbones.initialize_encoder``).
        backbone_kwargs: extra ``timm.create_model`` arguments (reduced encoders for CPU runs and tests).
        text_hidden_size: D, the frozen text encoder's width (512 for CLIP's text tower); BCAM's
            ``context_input_size``.
        num_heads: attention heads of each BCAM (must divide the fused decoder widths).
        gate: BCAM's fusion gate: ``"kan"`` (K-Gate), ``"mlp"`` (the ablation's sigmoid MLP gate) or ``"none"``.
        paths: ``"both"`` (BCAM), ``"vision"`` or ``"language"`` (the ablation's single path).
        use_text: False builds no BCAM (the image-only decoder; no null token either).
        positional: the fixed 2D sine code on BCAM's pixel queries and keys.
        dropout: BCAM's attention dropout.
        gate_kwargs: extra arguments of the gate (e.g. KAN ``grid_size``).

    Forward: ``image`` (B, in_channels, H, W) with H and W multiples of 32, ``text_hidden`` (B, layers, L, D) or
    None, ``text_mask`` (B, L) or None -> logits (B, out_channels, H, W).

    Example:
        >>> net = C2Seg(in_channels=1, backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
        ...             text_hidden_size=24, num_heads=2)
        >>> net(torch.randn(2, 1, 64, 64), torch.randn(2, 3, 7, 24), torch.ones(2, 7)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "resnet18",
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        text_hidden_size: int = 512,
        num_heads: int = 8,
        gate: str = "kan",
        paths: str = "both",
        use_text: bool = True,
        positional: bool = True,
        dropout: float = 0.0,
        gate_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.encoder = _encoder(spatial_dims, in_channels, backbone, pretrained, backbone_kwargs)
        widths: Sequence[int] = self.encoder.feature_info.channels()  # strides 2, 4, 8, 16, 32
        act, norm = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), ("instance", {"affine": True})
        # decoder, coarsest first: stage i upsamples to the stride of widths[-2 - i] and merges that skip
        self.decoder = nn.ModuleList(
            UpCat(spatial_dims, widths[j + 1], widths[j], widths[j], act, norm, bias=True)
            for j in reversed(range(len(widths) - 1))
        )
        self.use_text = use_text
        self.null_text = nn.Parameter(torch.randn(text_hidden_size) * 0.02) if use_text else None
        self.fusion = nn.ModuleList(
            BidirectionalCrossAttention(hidden_size=widths[-2 - i], context_input_size=text_hidden_size,
                                        num_heads=num_heads, dropout_rate=dropout, gate=gate, positional=positional,
                                        paths=paths, gate_kwargs=gate_kwargs)
            for i in range(FUSION_STAGES)
        ) if use_text else None
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, image: torch.Tensor, text_hidden: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        if image.shape[-1] % 32 or image.shape[-2] % 32:
            raise ValueError(f"C2Seg needs H and W multiples of 32, got {tuple(image.shape[-2:])}")
        features = self.encoder(image)
        text = None
        if self.fusion is not None:
            text_hidden, text_mask = fill_missing_text(self.null_text.to(image.dtype), image.shape[0], text_hidden,
                                                       text_mask, num_layers=1)
            text = text_hidden[:, -1]  # last hidden layer (B, L, D)
        x = features[-1]
        for i, up in enumerate(self.decoder):
            x = up(x, features[-2 - i])
            if self.fusion is not None and i < len(self.fusion):
                x = self.fusion[i](x, text, text_mask)  # BCAM + K-Gate
        return F.interpolate(self.head(x), size=image.shape[2:], mode="bilinear", align_corners=False)
