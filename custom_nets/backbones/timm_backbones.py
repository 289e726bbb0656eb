"""timm backbones: ``features_only`` encoders for the networks, and frozen ViT teachers for distillation.

Weights come from timm's pretrained tags (``convnext_tiny.fb_in1k``, ``resnet50.tv_in1k``,
``vit_small_patch16_dinov3.lvd1689m``: Hugging Face hub ids under ``timm/``), from a local weights file,
or nowhere (random weights, which is how every config also runs offline).
"""

from __future__ import annotations

import logging
from pathlib import Path

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


def _weights_help(option: str, hub_id: str | None = None) -> str:
    """How to go on without the weights (``option``: the config key that sets them, or several joined by '/')."""
    options = option.split("/")
    off = " or ".join(f"`--{o} False`" for o in options)
    download = f"`huggingface-cli download {hub_id}`" if hub_id else "`timm.create_model(name, pretrained=True)`"
    return (f"Turn them off with {off} (random weights, as demo.json does), give a local weights file with "
            f"`--{options[0]} /path/to/weights.safetensors` (passed to timm as pretrained_cfg_overlay=dict(file=...)), "
            f"or fetch them once where the hub is reachable ({download}).")


def ensure_pretrained_weights(name: str, pretrained: bool | str, option: str = "imagenet_weights") -> None:
    """Stop a run at start-up, before anything is written, when ``name``'s pretrained weights are wanted but can
    be had neither from a local file, nor from the local cache, nor from the hub (the download, when it works,
    fills the cache that ``timm.create_model`` then reads).

    Args:
        name: timm model name with its pretrained tag (``convnext_tiny.fb_in1k``).
        pretrained: as :func:`create_image_encoder`'s: False (nothing to check), True, or a local weights file.
        option: the config key that sets ``pretrained``, named in the error.

    Raises:
        RuntimeError: naming the model, the file or the hub id, the option that turns the weights off, and how to
            use a local weights file.
    """
    if not pretrained:
        return
    if isinstance(pretrained, str):
        if not Path(pretrained).is_file():
            raise RuntimeError(f"local weights file for timm model '{name}' not found: {pretrained}. "
                               + _weights_help(option))
        return
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:  # weights by URL only (none of the bundles' models): timm's own load reports a failure
        return
    from huggingface_hub import hf_hub_download

    reasons = []
    for filename in dict.fromkeys([cfg.hf_hub_filename or "model.safetensors", "pytorch_model.bin"]):
        try:
            hf_hub_download(hub_id, filename)
            return
        except Exception as e:  # noqa: BLE001 - offline, not cached, no such file: try the next, then report
            reasons.append(f"{filename}: {type(e).__name__}")
    raise RuntimeError(f"pretrained weights for timm model '{name}' (hub id {hub_id}) are neither in the local cache "
                       f"nor reachable ({'; '.join(reasons)}); nothing was written. " + _weights_help(option, hub_id))


def _create(name: str, pretrained: bool | str, **kwargs) -> nn.Module:
    flag = _pretrained_kwargs(pretrained, kwargs)
    try:
        return timm.create_model(name, pretrained=flag, **kwargs)
    except Exception as e:  # hub unreachable, weights file missing or not matching
        if not flag:
            raise
        raise RuntimeError(f"could not load pretrained weights for timm model '{name}' (pretrained={pretrained!r}): "
                           f"{e}. " + _weights_help("imagenet_weights/teacher_pretrained")) from e


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

    TAMISeg's distillation teacher (used only while training) and LCPDN's frozen CLIP image encoder (its last
    block's patch tokens, Sec. 3.2). Always in eval mode, without gradients. Images with one channel are repeated
    to three.

    Args:
        name: timm name (``vit_small_patch16_dinov3.lvd1689m``: DINOv3 ViT-S/16; the TAMISeg authors' code uses
            DINOv3 ViT-B/16, ``vit_base_patch16_dinov3.lvd1689m`` in timm, 768 wide).
        pretrained: see :func:`create_image_encoder`; False gives random weights (tests, offline demo).
        num_layers: how many final blocks to return, first to last.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``depth``, ``embed_dim`` for a tiny teacher).
        normalization: what the teacher is given (:meth:`prepare`):

            - ``"student"``: the student's input as it is (in the bundles: normalised per image and channel);
            - ``"imagenet"``: each image and channel rescaled to [0, 1] by its own minimum and maximum, then
              normalised with ImageNet's mean and std, the statistics DINOv3 was trained with (the authors' code
              feeds ``(x - mean) / std`` of an image in [0, 1]). The min-max rescale undoes any per-channel
              ``a x + b`` with ``a > 0``: a z-scored image, the raw 0..255 one and the code's x / 255 all give
              the same teacher input, exactly the code's where every channel spans 0..255 (a stretch otherwise).
              A constant channel becomes 0 before the ImageNet step.
            - ``"pretrained"``: the same min-max rescale, then the mean and std of the model's own pretrained
              config (CLIP's for ``vit_base_patch16_clip_224.openai``, ImageNet's for DINOv3).
        input_size: resize the image (bilinear) to this square size first, e.g. 224 for a ViT with a fixed
            position grid (CLIP); None keeps the input's size (DINOv3's RoPE takes any multiple of the patch).
        warn_random_weights: warn when built without pretrained weights (a teacher's are never loaded later;
            LCPDN's encoder, part of its checkpoint, turns this off).

    Forward: image (B, C, H, W) with H, W multiples of the patch size -> list of ``num_layers`` tensors
    (B, embed_dim, H / patch, W / patch).
    """

    #: ``normalization`` values
    NORMALIZATIONS = ("student", "imagenet", "pretrained")
    #: ImageNet statistics (timm's ``IMAGENET_DEFAULT_MEAN``/``_STD``; the authors' ``train.py``, lines 293-294)
    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

    def __init__(
        self,
        name: str = "vit_small_patch16_dinov3.lvd1689m",
        pretrained: bool | str = False,
        num_layers: int = 4,
        model_kwargs: dict | None = None,
        normalization: str = "student",
        input_size: int | None = None,
        warn_random_weights: bool = True,
    ) -> None:
        super().__init__()
        if normalization not in self.NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {self.NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.input_size = input_size
        self.model = _create(name, pretrained, num_classes=0, **(model_kwargs or {}))
        cfg = self.model.pretrained_cfg if normalization == "pretrained" else {}
        mean, std = cfg.get("mean", self.IMAGENET_MEAN), cfg.get("std", self.IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if not pretrained and warn_random_weights:
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
    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """The teacher's input: three channels, normalised as ``normalization`` says."""
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        if self.input_size is not None and tuple(image.shape[2:]) != (self.input_size, self.input_size):
            image = torch.nn.functional.interpolate(image, size=(self.input_size, self.input_size), mode="bilinear",
                                                    align_corners=False)
        if self.normalization != "student":
            low, high = image.amin(dim=(2, 3), keepdim=True), image.amax(dim=(2, 3), keepdim=True)
            image = (image - low) / (high - low).clamp_min(torch.finfo(image.dtype).eps)
            image = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        return image

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(
            self.prepare(image), indices=self.num_layers, norm=True, output_fmt="NCHW", intermediates_only=True
        )
