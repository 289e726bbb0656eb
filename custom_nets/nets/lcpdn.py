"""LCPDN: Lightweight Cross-text-vision Prompting Diffusion Network (``../methods/lcpdn_paper.txt``; no code is
public). It builds on TextDiff (Feng et al., code ``chunmeifeng/TextDiff``) and on label-efficient segmentation with
diffusion features (Baranchuk et al.): a diffusion UNet trained as a denoiser is a frozen feature extractor on a
noisy image, and a light head segments from its decoder activations.

- :class:`LCPDNDenoiser` (phase I, ``pretrain.json``): MONAI's ``DiffusionModelUNet`` trained as a DDPM denoiser
  (``DiffusionInferer`` + ``DDPMScheduler``, MSE on the noise) on the training images, masks not needed, without
  a prompt (TextDiff's ADM is unconditional too).
- :class:`LCPDN` (phase II, ``train.json``), Fig. 1 (a):
    * image encoder (Sec. 3.2): a frozen CLIP ViT (timm ``vit_base_patch16_clip_224.openai``) gives patch tokens
      F^I (B, M, D) of its last block; text encoder (Sec. 3.2): frozen Clinical BioBERT through the project's
      ``TextEncoder`` (outside the network), its last hidden layer F^T (B, N, D);
    * CPRFL (Sec. 3.3, Eqs. 1-5): :class:`~custom_nets.blocks.TextVisionPrompt` turns (F^T, F^I) into the prompt
      TextProj(E), added to the UNet's timestep embedding M (Eq. 5, in the place of MONAI's class embedding:
      :class:`PromptableDiffusionUNet`), and the fused tokens Q* reach the UNet's cross-attention;
    * features (Sec. 3.3 Eq. 6, Sec. 4.2): the image noised to t in ``timesteps`` (50, 150, 250) with one fixed noise
      (the paper's "shared noise": a seeded generator, so a mask is deterministic), the three noisy copies in one
      batched pass of the frozen UNet; the activations of the decoder blocks ``feature_blocks`` ({4, 6, 8, 12} for
      QaTa-COV19 and MosMedData+, {6, 8, 12, 16} for MoNuSeg), each concatenated over the timesteps on channels;
    * LTFR (Sec. 3.4, Eqs. 7-11): at each scale, :class:`~custom_nets.blocks.TextVisionFusion` of the image features
      and the text tokens, then every scale upsampled (bilinear) to one size and concatenated (Eq. 11);
    * pixel classifier (Sec. 3.1, "a pixel-wise classifier"): TextDiff's ``pixel_classifier.decodes``, three 3x3
      convolutions 128, 32, out with batch norm and ReLU between.

Decoder block j (the paper's and ADM's ``output_blocks[j]``) is, in MONAI's UNet, level j // (R + 1) of ``up_blocks``
(R residual blocks per level, R + 1 in the decoder), position r = j % (R + 1) in it: for r < R the output of
``attentions[r]`` (levels with attention) or ``resnets[r]``; for r = R the level's output after its upsampler (ADM's
block 3k + 2 ends with the upsample too). With the paper's UNet (ADM 256: widths 256 x (1, 1, 2, 2, 4, 4), R = 2),
blocks 4, 6, 8, 12 are 1024 x 16^2, 512 x 32^2, 512 x 64^2 (upsampled), 256 x 128^2 (upsampled): the paper's
"{1024, 512, 512, 256}".

Where we filled in (the paper gives neither code nor these; each is in the model card's table too):
    - the UNet is MONAI's ``DiffusionModelUNet``; its decoder runs only up to the last feature block (the blocks
      after it, at the highest resolutions, do not change the features): the forward stops there;
    - phase II keeps the UNet frozen (TextDiff freezes its ADM, and the paper's 4.52 M trainable parameters leave
      no room for a trainable UNet); the segmentation loss still reaches the prompt through it;
    - cross-attention context: Q* of Eq. 2 (the prompt's tokens); the denoiser was pretrained with a zero context,
      so its cross-attention key/value weights start at their initialisation and phase II's prompt learns to
      use them as they are;
    - per scale, a 1x1 convolution maps the 3 x C_j timestep-concatenated channels to ``fusion_width`` (TextDiff's
      ``down`` convolutions map to 768) and a linear layer maps the text tokens to the same width: LTFR needs one D
      for image and text (Eq. 7);
    - Eq. 11's "uniform spatial resolution" is the largest feature map's (TextDiff upsamples to the 256 x 256 input
      before its classifier); the classifier's logits are upsampled (bilinear) to the input size;
    - a learned null token stands in for a missing sentence (text dropout in training, an empty prompt);
    - ``fusion="cross_attention"`` (Table 2's "LTFR replaced by a standard cross-attention"): image queries attend
      to the text tokens with a residual (:class:`~custom_nets.blocks.TextCrossAttention`, no positions unless
      ``positional``);
      ``positional=True`` (not in the paper; off in ``train.json``): a fixed 2D sine position code on the image side of
      either fusion (LTFR: in F_cat; the cross-attention: on its queries), so a pixel's fused feature knows where
      the pixel is, as HiMix's decoder (a 1D sine code with ``variant="authors_code"``, this 2D one with
      ``"paper"``) and C2Seg's BCAM (this 2D one) know it;
      ``use_prompt=False`` (Table 2's "CPRFL removed"): no image encoder and no prompt, the UNet sees its plain
      timestep embedding and a zero context.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn
from torch.nn import functional as F

from custom_nets.backbones import FrozenViTTeacher
from custom_nets.blocks import TextCrossAttention, TextVisionFusion, TextVisionPrompt, fill_missing_text

FUSIONS = ("ltfr", "cross_attention")  # LCPDN(fusion=...)


class PromptableDiffusionUNet(DiffusionModelUNet):
    """MONAI's ``DiffusionModelUNet`` whose class embedding is an added vector: ``forward(x, timesteps, context,
    prompt)`` adds ``prompt`` (B, time_embed_dim) to the timestep embedding, P = M + TextProj(E) (LCPDN Eq. 5).
    Without a prompt (denoiser pretraining, CPRFL off) it adds zeros and gives the cross-attention a zero context.

    Args:
        spatial_dims: 2.
        in_channels: image channels (the denoiser predicts noise of the same channels).
        channels: widths of the UNet's levels (the paper's ADM 256: 256, 256, 512, 512, 1024, 1024).
        attention_levels: levels with attention (ADM: at 32, 16 and 8 pixels, the last three of six).
        num_res_blocks: residual blocks per encoder level (the decoder has one more per level).
        num_head_channels: channels per attention head.
        norm_num_groups: group-norm groups.
        cross_attention_dim: width of the context tokens; None builds self-attention only (no context).

    Example:
        >>> unet = PromptableDiffusionUNet(2, 1, channels=(8, 8), attention_levels=(False, True), num_res_blocks=1,
        ...                                num_head_channels=8, norm_num_groups=8, cross_attention_dim=4)
        >>> x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 20])
        >>> unet(x, t, context=torch.randn(2, 3, 4), prompt=torch.randn(2, unet.time_embed_dim)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int],
                 attention_levels: Sequence[bool], num_res_blocks: int = 2, num_head_channels: int = 64,
                 norm_num_groups: int = 32, cross_attention_dim: int | None = None) -> None:
        super().__init__(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
                         num_res_blocks=num_res_blocks, channels=channels, attention_levels=attention_levels,
                         norm_num_groups=norm_num_groups, num_head_channels=num_head_channels,
                         with_conditioning=cross_attention_dim is not None, cross_attention_dim=cross_attention_dim,
                         num_class_embeds=1)
        self.time_embed_dim: int = self.time_embed[-1].out_features  # M's width (MONAI: 4 x channels[0])
        self.context_dim = cross_attention_dim
        self.class_embedding = nn.Identity()  # Eq. 5: the prompt is added where a class embedding would be

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                prompt: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if prompt is None:
            prompt = x.new_zeros(x.shape[0], self.time_embed_dim)
        if self.context_dim is not None and context is None:
            context = x.new_zeros(x.shape[0], 1, self.context_dim)
        return super().forward(x, timesteps, context=context, class_labels=prompt, **kwargs)


class LCPDNDenoiser(nn.Module):
    """LCPDN's phase I: the diffusion UNet alone, trained to predict the noise (``DiffusionInferer`` calls
    ``forward(x, timesteps, context)``); its ``unet.*`` weights start phase II's :class:`LCPDN`.

    Args: as :class:`PromptableDiffusionUNet`'s (``unet_channels`` is its ``channels``).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1,
                 unet_channels: Sequence[int] = (256, 256, 512, 512, 1024, 1024),
                 attention_levels: Sequence[bool] = (False, False, False, True, True, True),
                 num_res_blocks: int = 2, num_head_channels: int = 64, norm_num_groups: int = 32,
                 cross_attention_dim: int | None = 768) -> None:
        super().__init__()
        self.unet = PromptableDiffusionUNet(spatial_dims, in_channels, unet_channels, attention_levels,
                                            num_res_blocks, num_head_channels, norm_num_groups, cross_attention_dim)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, timesteps, context=context)


def _locate(unet: DiffusionModelUNet, index: int) -> tuple[nn.Module, int]:
    """(the ``up_blocks`` level holding decoder block ``index``, its position in the level)."""
    start = 0
    for level in unet.up_blocks:
        count = len(level.resnets)
        if index < start + count:
            return level, index - start
        start += count
    raise ValueError(f"decoder block {index} does not exist: this UNet's decoder has blocks 0..{start - 1}")


def decoder_block(unet: DiffusionModelUNet, index: int) -> nn.Module:
    """The module of ``unet`` whose output is decoder block ``index`` in the paper's (ADM's ``output_blocks``)
    numbering: see the module docstring.

    Example:
        >>> unet = PromptableDiffusionUNet(2, 1, channels=(8, 8), attention_levels=(False, True), num_res_blocks=1,
        ...                                num_head_channels=8, norm_num_groups=8)
        >>> [type(decoder_block(unet, j)).__name__ for j in range(4)]
        ['SpatialAttentionBlock', 'AttnUpBlock', 'DiffusionUNetResnetBlock', 'UpBlock']
    """
    level, position = _locate(unet, index)
    if position == len(level.resnets) - 1:
        return level
    attentions = getattr(level, "attentions", None)
    return attentions[position] if attentions is not None else level.resnets[position]


def decoder_block_channels(unet: DiffusionModelUNet, index: int) -> int:
    """Channels of decoder block ``index``: its level's width (attention and upsampling keep it)."""
    level, _ = _locate(unet, index)
    return level.resnets[-1].out_channels


class _FeaturesCollected(Exception):
    """Raised by the last feature block's hook: the rest of the UNet is not needed."""


class LCPDN(nn.Module):
    """LCPDN's segmentation network (phase II): frozen denoiser features at three noise levels, prompted by text and
    image (CPRFL), fused with the text at each scale (LTFR), and a pixel classifier. See the module docstring for the
    blocks and what we filled in.

    Args:
        spatial_dims: 2.
        in_channels: image channels.
        out_channels: logit channels (1: lesion).
        unet_channels, attention_levels, num_res_blocks, num_head_channels, norm_num_groups: the denoiser's UNet
            (:class:`PromptableDiffusionUNet`); must match phase I's.
        text_hidden_size: D, the width of the frozen text encoder's tokens (768 for Clinical BioBERT); also the
            prompt's width and the UNet's cross-attention context width.
        image_encoder: timm name of the frozen CLIP ViT (patch tokens); ignored when ``use_prompt`` is False.
        image_encoder_pretrained: its pretrained weights (True, a local file, or False: random, for tests).
        image_encoder_kwargs: extra ``timm.create_model`` arguments (a tiny stand-in: ``depth``, ``embed_dim``...).
        image_encoder_input_size: the encoder's input size (224 for CLIP ViT-B/16); images are resized to it.
        timesteps: the noise levels t of the features (paper: 50, 150, 250).
        feature_blocks: decoder blocks whose activations are used (paper numbering, see :func:`decoder_block`).
        num_train_timesteps: the DDPM schedule's length (linear betas 1e-4..2e-2, as ADM and phase I).
        noise_seed: seed of the one fixed noise shared by every image and timestep.
        fusion_width: the width LTFR works at, per scale.
        classifier_channels: widths of the pixel classifier's hidden convolutions (TextDiff: 128, 32).
        use_prompt: CPRFL on (Eqs. 1-5); False is Table 2's "CPRFL removed".
        fusion: ``"ltfr"`` (Eqs. 7-10) or ``"cross_attention"`` (Table 2's replacement).
        num_heads: heads of the cross-attention replacement.
        positional: a fixed 2D sine position code on the image side of the fusion (not in the paper; False is the
            paper). ``fusion_width`` must then be a multiple of 4.
        prompt_cross_attention: give Q* to the UNet's cross-attention (needs ``attention_levels`` and a UNet built
            with cross-attention, as phase I builds it when this is True).

    Example:
        >>> net = LCPDN(unet_channels=(8, 8), attention_levels=(False, True), num_res_blocks=1, num_head_channels=8,
        ...             norm_num_groups=8, text_hidden_size=16, image_encoder_kwargs=dict(depth=1, embed_dim=16,
        ...             num_heads=2, img_size=32), image_encoder_input_size=32, feature_blocks=(1, 3),
        ...             fusion_width=8, classifier_channels=(8, 4))
        >>> net(torch.randn(2, 1, 32, 32), torch.randn(2, 1, 5, 16), torch.ones(2, 5)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        unet_channels: Sequence[int] = (256, 256, 512, 512, 1024, 1024),
        attention_levels: Sequence[bool] = (False, False, False, True, True, True),
        num_res_blocks: int = 2,
        num_head_channels: int = 64,
        norm_num_groups: int = 32,
        text_hidden_size: int = 768,
        image_encoder: str = "vit_base_patch16_clip_224.openai",
        image_encoder_pretrained: bool | str = False,
        image_encoder_kwargs: dict | None = None,
        image_encoder_input_size: int | None = 224,
        timesteps: Sequence[int] = (50, 150, 250),
        feature_blocks: Sequence[int] = (4, 6, 8, 12),
        num_train_timesteps: int = 1000,
        noise_seed: int = 40,
        fusion_width: int = 128,
        classifier_channels: Sequence[int] = (128, 32),
        use_prompt: bool = True,
        fusion: str = "ltfr",
        num_heads: int = 8,
        prompt_cross_attention: bool = True,
        positional: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"LCPDN is a 2D network (CT goes slice by slice); got spatial_dims={spatial_dims}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if not timesteps or any(not 0 <= t < num_train_timesteps for t in timesteps):
            raise ValueError(f"timesteps must be in [0, {num_train_timesteps}), got {list(timesteps)}")
        self.timesteps = tuple(int(t) for t in timesteps)
        self.feature_blocks = tuple(int(j) for j in feature_blocks)
        self.noise_seed = noise_seed
        self.prompt_cross_attention = prompt_cross_attention and use_prompt
        self.unet = PromptableDiffusionUNet(spatial_dims, in_channels, unet_channels, attention_levels, num_res_blocks,
                                            num_head_channels, norm_num_groups,
                                            text_hidden_size if prompt_cross_attention else None)
        self.unet.requires_grad_(False)  # phase II: the denoiser is a frozen feature extractor
        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps)
        self._blocks = [decoder_block(self.unet, j) for j in self.feature_blocks]  # checks the indices
        widths = [decoder_block_channels(self.unet, j) for j in self.feature_blocks]

        self.null_text = nn.Parameter(torch.zeros(text_hidden_size))
        self.image_encoder = self.prompt = None
        if use_prompt:  # CPRFL (Sec. 3.3)
            self.image_encoder = FrozenViTTeacher(image_encoder, image_encoder_pretrained, num_layers=1,
                                                  model_kwargs=image_encoder_kwargs, normalization="pretrained",
                                                  input_size=image_encoder_input_size, warn_random_weights=False)
            self.prompt = TextVisionPrompt(text_hidden_size, self.unet.time_embed_dim,
                                           image_hidden_size=self.image_encoder.embed_dim)
        self.image_projections = nn.ModuleList(nn.Conv2d(len(self.timesteps) * c, fusion_width, 1) for c in widths)
        self.text_projections = nn.ModuleList(nn.Linear(text_hidden_size, fusion_width) for _ in widths)
        if fusion == "ltfr":
            self.fusions = nn.ModuleList(TextVisionFusion(fusion_width, positional=positional) for _ in widths)
        else:
            self.fusions = nn.ModuleList(TextCrossAttention(fusion_width, fusion_width, num_heads,
                                                            positional=positional) for _ in widths)
        layers, width = [], len(widths) * fusion_width
        for hidden in classifier_channels:  # TextDiff's pixel_classifier.decodes: conv, BN, ReLU
            layers.append(Convolution(2, width, hidden, kernel_size=3, act="RELU", norm="BATCH"))
            width = hidden
        layers.append(Convolution(2, width, out_channels, kernel_size=3, conv_only=True))
        self.classifier = nn.Sequential(*layers)

    def train(self, mode: bool = True) -> LCPDN:
        super().train(mode)
        self.unet.eval()  # frozen (group norm has no running statistics; this keeps any dropout off)
        return self

    def fixed_noise(self, image: torch.Tensor) -> torch.Tensor:
        """The shared noise (one image's shape, the same for every image and timestep): seeded, so deterministic."""
        generator = torch.Generator().manual_seed(self.noise_seed)
        noise = torch.randn(image.shape[1:], generator=generator, dtype=torch.float32)
        return noise.to(device=image.device, dtype=image.dtype).expand_as(image)

    def unet_features(self, image: torch.Tensor, prompt: torch.Tensor | None,
                      context: torch.Tensor | None) -> list[torch.Tensor]:
        """Decoder activations of ``feature_blocks`` (Eq. 6): one batched UNet pass over the image noised to every t;
        each block's (B, T * C_j, h, w), timesteps concatenated on channels."""
        b, n = image.shape[0], len(self.timesteps)
        t = torch.tensor(self.timesteps, device=image.device).repeat_interleave(b)  # (T * B,), t-major
        noisy = self.scheduler.add_noise(image.repeat(n, 1, 1, 1), self.fixed_noise(image).repeat(n, 1, 1, 1), t)
        if prompt is not None:
            prompt = prompt.repeat(n, 1)
        if context is not None:
            context = context.repeat(n, 1, 1)
        captured: dict[int, torch.Tensor] = {}

        def keep(j: int):
            def hook(module, args, output):
                captured[j] = output
                if len(captured) == len(self._blocks):
                    raise _FeaturesCollected
            return hook

        handles = [block.register_forward_hook(keep(j)) for j, block in zip(self.feature_blocks, self._blocks)]
        try:
            self.unet(noisy, t, context=context, prompt=prompt)
        except _FeaturesCollected:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return [torch.cat(captured[j].split(b), dim=1) for j in self.feature_blocks]

    def text_tokens(self, image: torch.Tensor, text_hidden: torch.Tensor | None,
                    text_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """F^T (B, N, D), the last hidden layer, and its mask; the null token where a sample has no sentence."""
        text_hidden, text_mask = fill_missing_text(self.null_text.to(image.dtype), image.shape[0], text_hidden,
                                                   text_mask, num_layers=1)
        return text_hidden[:, -1], text_mask

    def prompt_and_context(self, image: torch.Tensor, text: torch.Tensor,
                           text_mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """CPRFL (Eqs. 1-4): TextProj(E) for Eq. 5 and Q* for the UNet's cross-attention; (None, None) when off."""
        if self.prompt is None:
            return None, None
        patches = self.image_encoder(image)[-1].flatten(2).transpose(1, 2)  # F^I (B, M, D_image)
        prompt, tokens = self.prompt(text, text_mask, patches, return_tokens=True)
        return prompt, tokens if self.prompt_cross_attention else None

    def forward(self, image: torch.Tensor, text_hidden: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        text, text_mask = self.text_tokens(image, text_hidden, text_mask)
        features = self.unet_features(image, *self.prompt_and_context(image, text, text_mask))
        size = max((f.shape[2:] for f in features), key=lambda s: s[0] * s[1])
        fused = []
        for feature, project, project_text, fusion in zip(features, self.image_projections, self.text_projections,
                                                           self.fusions):
            h = fusion(project(feature), project_text(text), text_mask)  # Eqs. 7-10 at this scale
            fused.append(F.interpolate(h, size=size, mode="bilinear", align_corners=False))
        logits = self.classifier(torch.cat(fused, dim=1))  # Eq. 11, then the pixel classifier
        return F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=False)
