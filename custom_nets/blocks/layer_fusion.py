"""Mixing the hidden layers of a frozen text encoder.

:class:`DynamicLayerFusion` is HiMix's Dynamic Layer Fusion Module (DLFM, HiMix Sec. 3.2, Eq. 1): the
encoder's H hidden layers are split evenly into M groups (the paper's index sets J_m, lowest layers first),
and each group is reduced to one embedding ``t_m = sum_j w_j p_j`` with softmax weights from a light gating
head.
"""

from __future__ import annotations

import torch
from torch import nn


def split_layers(num_layers: int, num_groups: int) -> list[list[int]]:
    """Evenly split layer indices 0..num_layers-1 into ``num_groups`` consecutive groups (J_1..J_M).

    Example:
        >>> split_layers(12, 3)
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    """
    if num_groups < 1 or num_layers < num_groups:
        raise ValueError(f"cannot split {num_layers} layers into {num_groups} groups")
    bounds = [round(g * num_layers / num_groups) for g in range(num_groups + 1)]
    return [list(range(bounds[g], bounds[g + 1])) for g in range(num_groups)]


class DynamicLayerFusion(nn.Module):
    """Softmax-weighted sum of the text layers of each group (DLFM, Eq. 1).

    The paper's "lightweight gating head" produces the logits alpha_j; here it is a linear map of each
    layer's masked mean token feature, so the mixture can depend on the sentence, plus a learned per-layer
    bias (with a zero linear map it reduces to a static learnable logit vector).

    Args:
        num_layers: H, the hidden layers the text encoder returns.
        num_groups: M, the decoder stages.
        context_input_size: D, the width of each text layer (the text encoder's width).

    Returns (forward): a list of M tensors (B, L, D), group 1 (lowest layers) first.

    Example:
        >>> dlfm = DynamicLayerFusion(num_layers=12, num_groups=3, context_input_size=32)
        >>> [t.shape for t in dlfm(torch.randn(2, 12, 7, 32), torch.ones(2, 7))]
        [torch.Size([2, 7, 32]), torch.Size([2, 7, 32]), torch.Size([2, 7, 32])]
    """

    def __init__(self, num_layers: int, num_groups: int, context_input_size: int) -> None:
        super().__init__()
        self.groups = split_layers(num_layers, num_groups)
        self.gate = nn.Linear(context_input_size, 1, bias=False)
        nn.init.zeros_(self.gate.weight)  # start as a plain average inside each group
        self.layer_bias = nn.Parameter(torch.zeros(num_layers))

    def layer_logits(self, text_hidden: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, H) logits alpha_j, one per layer."""
        num_layers, width = self.layer_bias.shape[0], self.gate.in_features
        if text_hidden.ndim != 4 or text_hidden.shape[1] != num_layers or text_hidden.shape[-1] != width:
            raise ValueError(f"text_hidden must be (B, {num_layers}, L, {width}), got {tuple(text_hidden.shape)}")
        if text_mask.shape != text_hidden.shape[:1] + text_hidden.shape[2:3]:
            raise ValueError(f"text_mask must be (B, L) = {(text_hidden.shape[0], text_hidden.shape[2])}, "
                             f"got {tuple(text_mask.shape)}")
        m = text_mask[:, None, :, None].to(text_hidden.dtype)
        pooled = (text_hidden * m).sum(2) / m.sum(2).clamp_min(1.0)  # (B, H, D)
        return self.gate(pooled).squeeze(-1) + self.layer_bias

    def forward(self, text_hidden: torch.Tensor, text_mask: torch.Tensor) -> list[torch.Tensor]:
        logits = self.layer_logits(text_hidden, text_mask)
        out = []
        for group in self.groups:
            w = torch.softmax(logits[:, group], dim=1)  # (B, |J_m|)
            out.append(torch.einsum("bj,bjld->bld", w, text_hidden[:, group]))
        return out
