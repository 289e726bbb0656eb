"""TAMISeg: Text-Aligned Multi-scale Medical Image Segmentation with Semantic Encoder Distillation
(arXiv:2604.10912).

Blocks and where they come from in the paper:
    - Consistency-Aware Encoder (CAE), Sec. II-B: ResNet-50 through timm (``features_only``), four stages
      f_1..f_4. Phase I trains it with a light prediction head (:class:`ConsistencyAwareEncoder`) on an image
      and a strongly perturbed copy, loss Eqs. 1-6 (:class:`custom_nets.losses.ConsistencyAwareLoss`);
    - Semantic Encoder Distillation (SED), Sec. II-C: a light MLP phi_i per stage maps f_i to the teacher's
      width; Eq. 7 (:class:`custom_nets.losses.SemanticDistillationLoss`) pulls phi_i(f_i) toward a frozen
      DINOv3's patch features (:class:`custom_nets.backbones.FrozenViTTeacher`, training only, through
      :class:`custom_nets.engines.DistillationTrainer`); f_hat_i = phi_i(f_i);
    - Cross-modal Alignment (CMA), Sec. II-D, Eq. 8: visual queries, text keys/values
      (:class:`~custom_nets.blocks.TextCrossAttention`) give ft_1..ft_4;
    - Scale-Adaptive Decoder (SAD), Sec. II-E: three branches over (ft_1, ft_2), (ft_2, ft_3), (ft_3, ft_4)
      (:class:`ScaleBranch`: Eq. 9 upsample + concatenate, Eq. 10 residual convolutions, Eq. 11 ECA then
      spatial attention), fused by Eq. 12 and the head of Eq. 13. Ltotal = Lpred + lambda Ldistill (Eq. 14).

Where this departs from the paper, or fills what it leaves open:
    - the encoder's stages are ResNet-50's stem (stride 2, 64 channels) and layer1..layer3 (strides 4, 8, 16),
      as in the authors' code (``Stage1_CAE/network/model_stage1.py``, after ConDSeg); layer4 is not used;
    - phase I's light head is the authors' ``adjust`` head: a 1x1 conv-BN-ReLU to 64 channels per stage,
      upsampling to the input size, concatenation and a 1x1 convolution (here the conv-BN-ReLU runs before the
      upsampling, at each stage's own resolution, and the 1x1 fusion is applied before upsampling too);
    - f_hat_i = phi_i(f_i) (the distilled, teacher-width features feed the alignment). The paper says both
      "frozen CAE" (Fig. 2) and "fine-tuned end-to-end" (Sec. III-A); with a frozen encoder only this reading
      lets distillation change the segmentation. ``freeze_encoder`` switches between the two;
    - phi_i is 1x1 conv (C_i -> C_i), GELU, 1x1 conv (C_i -> D) (the paper: "a lightweight MLP");
    - the teacher's patch grid (stride 16) is resized bilinearly to each stage's grid, so Eq. 7 sums over
      the student's tokens, as its N = sum_i L_i says;
    - Eq. 8 gets a residual connection and a LayerNorm (see ``TextCrossAttention``); the text is the last hidden
      layer of the frozen text encoder; missing text is a learned null token. A 2D sine position code on the
      queries is a switch, ``query_positions``, off by default: neither the paper (Eq. 8) nor the authors' code
      (``pixel_classifier_condseg``: a shared cross-attention block, no positions) has one; it adds no parameters;
    - Eq. 11's "Pyramid Spatial Attention" is the CBAM-style spatial attention of the authors' ConDSeg decoder
      (``SpatialAttention``); the convolutions are conv-BN(-ReLU) as in that code;
    - Eq. 13: C_5 (3x3 conv-BN-ReLU) and C_6 (1x1) run at the finest branch's scale (stride 2), and the
      logits are upsampled bilinearly to the input size; the sigmoid is applied in the loss and in
      post-processing (the network returns logits);
    - ``decoder="plain"`` replaces the SAD (branches, fusion and head) by phase I's light prediction head
      (:class:`PlainDecoder`) on ft_1..ft_4: the "+ CMA + SED" row of the paper's Table II, whose decoder the
      paper does not describe; its baseline row is the CAE, which Sec. II-B trains with that light head, so this
      is our closest reading, not the paper's definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn
from torch.nn import functional as F

from custom_nets.backbones import create_image_encoder
from custom_nets.blocks import EfficientChannelAttention, SpatialAttention, TextCrossAttention, fill_missing_text

RESNET_STAGES = (0, 1, 2, 3)  # timm feature indices: stem (act1), layer1, layer2, layer3
DECODERS = ("scale_adaptive", "plain")  # TAMISeg(decoder=...): Eqs. 9-13, or phase I's light head (Table II, row 3)


def _conv(in_channels: int, out_channels: int, kernel_size: int, act: bool = True) -> Convolution:
    """2D conv-BN(-ReLU), the authors' CBR."""
    return Convolution(2, in_channels, out_channels, kernel_size=kernel_size, act="RELU" if act else None,
                       norm="BATCH", bias=False)


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _light_head(reduce: nn.ModuleList, fuse: nn.Conv2d, features: Sequence[torch.Tensor],
                size: Sequence[int]) -> torch.Tensor:
    """The authors' ``adjust`` head: ``fuse(cat(up(r_i(f_i))))`` at ``size``, computed as ``sum_i up(W_i r_i(f_i))
    + bias``: the 1x1 fusion and bilinear upsampling are both linear and commute, so the full-resolution maps have
    ``fuse``'s output channels, not 4 x width."""
    weights = fuse.weight.split(reduce[0].conv.out_channels, dim=1)
    logits = torch.stack([_up(F.conv2d(r(f), w), size) for r, f, w in zip(reduce, features, weights)]).sum(0)
    return logits if fuse.bias is None else logits + fuse.bias[None, :, None, None]


def create_cae_encoder(
    spatial_dims: int, in_channels: int, backbone: str, pretrained: bool | str, backbone_kwargs: dict | None
) -> nn.Module:
    """The CAE backbone: a timm ResNet with the stem and the first three stages as features (2D only)."""
    if spatial_dims != 2:
        raise ValueError(f"TAMISeg is a 2D network (CT goes slice by slice); got spatial_dims={spatial_dims}")
    kwargs = {"out_indices": RESNET_STAGES, **(backbone_kwargs or {})}
    encoder = create_image_encoder(backbone, in_channels, pretrained, **kwargs)
    if len(encoder.feature_info.channels()) != 4:
        raise ValueError(f"expected 4 encoder stages from {backbone}, got {encoder.feature_info.channels()}")
    return encoder


class ConsistencyAwareEncoder(nn.Module):
    """Phase I network N_pre (Sec. II-B): the CAE backbone with a light prediction head.

    Train it with :class:`custom_nets.losses.ConsistencyAwareLoss` on a batch holding each image and its
    perturbed copy; :class:`TAMISeg` then loads ``encoder.*`` from its checkpoint
    (:func:`load_encoder_weights`).

    Args:
        spatial_dims: 2.
        in_channels: image channels.
        out_channels: logit channels (1).
        backbone: timm ResNet name (the paper: ResNet-50).
        pretrained: see :func:`custom_nets.backbones.create_image_encoder` (ImageNet weights for ``resnet50.tv_in1k``).
        backbone_kwargs: extra ``timm.create_model`` arguments (reduced encoders: ``layers``, ``channels``).
        head_width: per-stage width of the head (64 in the authors' code).

    Example:
        >>> net = ConsistencyAwareEncoder(in_channels=1, backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]})
        >>> net(torch.randn(2, 1, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "resnet50",
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        head_width: int = 64,
    ) -> None:
        super().__init__()
        self.encoder = create_cae_encoder(spatial_dims, in_channels, backbone, pretrained, backbone_kwargs)
        widths = self.encoder.feature_info.channels()
        self.reduce = nn.ModuleList(_conv(c, head_width, 1) for c in widths)
        self.fuse = nn.Conv2d(len(widths) * head_width, out_channels, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return _light_head(self.reduce, self.fuse, self.encoder(image), image.shape[2:])


class PlainDecoder(nn.Module):
    """``decoder="plain"``: phase I's light prediction head on the aligned features ft_1..ft_4 in place of the SAD
    (Table II, "+ CMA + SED"): a 1x1 conv-BN-ReLU to ``width`` per level, upsampled to the input size, concatenated
    and fused by a 1x1 convolution (the authors' ``adjust``, without its sigmoid). No branches, no ECA, no spatial
    attention.
    """

    def __init__(self, in_channels: int, out_channels: int, num_levels: int = 4, width: int = 64) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(_conv(in_channels, width, 1) for _ in range(num_levels))
        self.fuse = nn.Conv2d(num_levels * width, out_channels, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        return _light_head(self.reduce, self.fuse, features, size)


class ScaleBranch(nn.Module):
    """One SAD branch (Eqs. 9-11): upsample ft_{i+1}, concatenate with ft_i, residual convolutions, ECA, spatial
    attention.

        F1 = C1(cat); F2 = ReLU(C2(F1) + F1); F3 = ReLU(C3(F2) + F2 + F1); F4 = ReLU(C4(F3) + F3 + F2 + F1)

    C1, C4 are 1x1 and C2, C3 3x3 convolutions (with batch norm).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.c1 = _conv(2 * in_channels, out_channels, 1)
        self.c2 = _conv(out_channels, out_channels, 3, act=False)
        self.c3 = _conv(out_channels, out_channels, 3, act=False)
        self.c4 = _conv(out_channels, out_channels, 1, act=False)
        self.eca = EfficientChannelAttention(in_channels=out_channels)
        self.spatial = SpatialAttention()

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        f1 = self.c1(torch.cat([_up(coarse, fine.shape[2:]), fine], 1))  # Eq. 9, C1
        f2 = torch.relu(self.c2(f1) + f1)  # Eq. 10
        f3 = torch.relu(self.c3(f2) + f2 + f1)
        f4 = torch.relu(self.c4(f3) + f3 + f2 + f1)
        return self.spatial(self.eca(f4))  # Eq. 11


class TAMISeg(nn.Module):
    """TAMISeg (phase II network) for 2D text-guided segmentation.

    Args:
        spatial_dims: 2.
        in_channels: image channels.
        out_channels: logit channels (1: lesion).
        backbone: timm ResNet name (the paper: ResNet-50).
        pretrained: see :func:`custom_nets.backbones.create_image_encoder`; phase I weights are loaded
            afterwards with :func:`load_encoder_weights`.
        backbone_kwargs: extra ``timm.create_model`` arguments (reduced encoders for CPU runs and tests).
        feature_width: D, width of f_hat_i = phi_i(f_i); equals the teacher's width when distilling (384 for
            DINOv3 ViT-S/16); the cross-attention's ``hidden_size`` (query width).
        decoder_width: width of the SAD branches (128, as in ConDSeg's decoder).
        text_hidden_size: the text encoder's width (768 for CXR-BERT); the cross-attention's ``context_input_size``.
        num_heads: heads of the cross-modal attention (must divide ``feature_width``).
        use_text: False skips the cross-modal alignment (ft_i = f_hat_i; ablation "text off").
        freeze_encoder: keep the CAE's weights and batch-norm statistics fixed (the "frozen CAE" reading).
        dropout: attention dropout (the cross-attention's ``dropout_rate``).
        query_positions: add a fixed 2D sine position code to the cross-attention's queries (the attention's
            ``positional``). Off by default: Eq. 8 and the authors' code have none. No parameters: checkpoints load
            either way, but a network trained with it must run with it.
        decoder: ``"scale_adaptive"`` (the SAD, Eqs. 9-13) or ``"plain"`` (:class:`PlainDecoder`, phase I's light
            head on ft_1..ft_4: Table II without SAD). The two have different parameters (``branches.*``, ``head.*``
            against ``plain_decoder.*``).
        plain_width: per-level width of the plain decoder (64, the authors' ``adjust`` head).

    Forward: ``image`` (B, in_channels, H, W), ``text_hidden`` (B, layers, L, text_hidden_size) or None,
    ``text_mask`` (B, L) or None -> logits (B, out_channels, H, W); H and W multiples of 16. With
    ``return_features=True`` it returns ``(logits, [f_hat_1..f_hat_4])`` for the distillation loss.

    Example:
        >>> net = TAMISeg(in_channels=1, backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
        ...               feature_width=32, decoder_width=16, text_hidden_size=24, num_heads=2)
        >>> net(torch.randn(2, 1, 64, 64), torch.randn(2, 3, 7, 24), torch.ones(2, 7)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "resnet50",
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        feature_width: int = 384,
        decoder_width: int = 128,
        text_hidden_size: int = 768,
        num_heads: int = 8,
        use_text: bool = True,
        freeze_encoder: bool = False,
        dropout: float = 0.0,
        query_positions: bool = False,
        decoder: str = "scale_adaptive",
        plain_width: int = 64,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.encoder = create_cae_encoder(spatial_dims, in_channels, backbone, pretrained, backbone_kwargs)
        widths = self.encoder.feature_info.channels()
        self.freeze_encoder = freeze_encoder
        self.query_positions = bool(query_positions)
        self.decoder_kind = decoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        # SED: phi_i (Sec. II-C)
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 1), nn.GELU(), nn.Conv2d(c, feature_width, 1)) for c in widths
        )
        # CMA: one cross-attention per scale (Eq. 8)
        self.use_text = use_text
        # learned null text; absent with text off (an unused parameter would also stall DDP)
        self.null_text = nn.Parameter(torch.randn(text_hidden_size) * 0.02) if use_text else None
        self.alignment = nn.ModuleList(
            TextCrossAttention(hidden_size=feature_width, context_input_size=text_hidden_size, num_heads=num_heads,
                               dropout_rate=dropout, positional=self.query_positions)
            for _ in widths
        ) if use_text else None
        if decoder == "scale_adaptive":
            # SAD: small, medium, large branches (Eqs. 9-11), fusion and head (Eqs. 12-13)
            self.branches = nn.ModuleList(ScaleBranch(feature_width, decoder_width) for _ in range(3))
            self.head = nn.Sequential(_conv(3 * decoder_width, decoder_width, 3),
                                      nn.Conv2d(decoder_width, out_channels, 1))
            self.plain_decoder = None
        else:  # Table II without SAD: phase I's light head on ft_1..ft_4
            self.branches = self.head = None
            self.plain_decoder = PlainDecoder(feature_width, out_channels, len(widths), plain_width)

    def train(self, mode: bool = True) -> TAMISeg:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # frozen CAE: batch-norm statistics stay those of phase I
        return self

    def forward(
        self,
        image: torch.Tensor,
        text_hidden: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        distilled = [phi(f) for phi, f in zip(self.projections, self.encoder(image))]  # f_hat_1..f_hat_4
        aligned = distilled
        if self.alignment is not None:
            text_hidden, text_mask = fill_missing_text(self.null_text.to(image.dtype), image.shape[0], text_hidden,
                                                       text_mask, num_layers=1)
            text = text_hidden[:, -1]  # last hidden layer (B, L, D)
            aligned = [cma(f, text, text_mask) for cma, f in zip(self.alignment, distilled)]  # ft_1..ft_4
        if self.plain_decoder is not None:
            logits = self.plain_decoder(aligned, image.shape[2:])
        else:
            small, medium, large = (branch(aligned[i], aligned[i + 1]) for i, branch in enumerate(self.branches))
            size = small.shape[2:]
            fused = torch.cat([small, _up(medium, size), _up(large, size)], 1)  # Eq. 12
            logits = _up(self.head(fused), image.shape[2:])  # Eq. 13 (sigmoid outside)
        return (logits, distilled) if return_features else logits
