"""Weights of the trainable image encoders: where a bundle's encoder starts from.

The second phase of TAMISeg and C2Seg (config key ``encoder_init``) starts from the encoder of the bundle's first phase,
``pretrain.json`` (``"phase1"``, the papers' recipe: TAMISeg's consistency-pretrained CAE, C2Seg's stage I CaCL
encoder), from ImageNet weights (``"imagenet"``) or from random ones (``"scratch"``); the last two are the ablation
"phase I (stage I) skipped". The rule is stated here once: :func:`encoder_pretrained` gives the
timm ``pretrained`` flag the config builds the network with, :func:`initialize_encoder` loads phase I's weights.
"""

from __future__ import annotations

import os

import torch
from torch import nn

ENCODER_INITS = ("phase1", "imagenet", "scratch")


def encoder_pretrained(encoder_init: str, imagenet_weights: bool | str = True) -> bool | str:
    """The ``pretrained`` argument of the image encoder for ``encoder_init``: ``imagenet_weights`` (True, or a local
    weights file) only when the run starts from ImageNet; phase I's weights replace the encoder's afterwards, and
    ``"scratch"`` is random.

    Example:
        >>> encoder_pretrained("imagenet"), encoder_pretrained("phase1"), encoder_pretrained("scratch")
        (True, False, False)
    """
    if encoder_init not in ENCODER_INITS:
        raise ValueError(f"encoder_init must be one of {ENCODER_INITS}, got {encoder_init!r}")
    return imagenet_weights if encoder_init == "imagenet" else False

def load_encoder_weights(network: nn.Module, checkpoint: str, key: str = "model", module: str = "encoder") -> nn.Module:
    """Load the phase I part ``module`` (``encoder.*`` of a :class:`ConsistencyAwareEncoder` or
    :class:`C2SegContrastive` checkpoint, ``unet.*`` of an :class:`LCPDNDenoiser` one) into ``network``.

    Args:
        network: a :class:`TAMISeg`, :class:`C2Seg` or :class:`LCPDN` (anything with a ``module`` of the same
            configuration).
        checkpoint: path of phase I's ``model.pt`` (a plain state dict, or a dict holding one under ``key``).
        key: the entry holding the state dict when the file is a dict of several objects.
        module: the attribute of ``network`` (and prefix of the checkpoint's keys) to load.

    Raises:
        FileNotFoundError: naming the path and the command that makes it.
        ValueError: when the checkpoint's part does not fit (different backbone or widths).
    """
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"phase I checkpoint not found: {checkpoint}. Run phase I first "
            "(python -m monai.bundle run training --config_file \"['configs/train.json','configs/pretrain.json']\" ...), "
            "or set 'phase1_checkpoint' to its model.pt"
            + (", or start without it with --encoder_init imagenet|scratch" if module == "encoder" else "")
        )
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if key in state and isinstance(state[key], dict):
        state = state[key]
    prefix = module + "."
    part_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not part_state:
        raise ValueError(f"{checkpoint} holds no '{prefix}*' weights: is it a phase I checkpoint (the models/pretrain/model.pt "
                         "of the bundle's pretrain.json)?")
    try:
        getattr(network, module).load_state_dict(part_state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the phase I {module} in {checkpoint} does not fit this network's {module}: {e}") from e
    return network


def initialize_encoder(network: nn.Module, encoder_init: str, phase1_checkpoint: str | None,
                       module: str = "encoder") -> nn.Module:
    """Phase II start (config key ``encoder_init``): ``"phase1"`` loads ``module`` (the CAE, the CaCL encoder,
    LCPDN's denoiser) from ``phase1_checkpoint`` (the papers' recipe); ``"imagenet"`` and ``"scratch"`` keep what
    the network was built with (timm weights when its ``pretrained`` is set, else random): the ablation "phase I
    skipped"."""
    if encoder_init not in ENCODER_INITS:
        raise ValueError(f"encoder_init must be one of {ENCODER_INITS}, got {encoder_init!r}")
    if encoder_init == "phase1":
        if not phase1_checkpoint:
            raise ValueError("encoder_init is 'phase1' but phase1_checkpoint is empty")
        load_encoder_weights(network, phase1_checkpoint, module=module)
    return network
