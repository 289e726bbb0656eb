"""C2Seg's Bidirectional Complementary Attention Module (BCAM) with the K-Gate fusion ("Towards Text-Mask Consistency in
Medical Image Segmentation", ICLR 2026, poster Sec. "Stage II: BCAM + K-Gate inject language into space", Fig. 3).

The poster's diagnosis: most fusion modules are vision-centric (language modulates visual features but never forms an
explicit spatial representation on the pixel grid). BCAM runs two paths on a feature map x (B, C, H, W) and the text
tokens T (B, L, D):

- vision-dominant: "each pixel attends to token semantics and stays on the original image grid":
  ``F_v = MHA(Q = LN(x) + pos, K = V = T)`` (pixels are the queries, padded tokens masked), (B, C, H, W);
- language-dominant: "each token projects influence back onto spatial locations, forming a language-guided feature
  map". Token l attends to the pixels, ``A_ln = softmax_n(q_l . k_n / sqrt(d))`` with ``q = T W_q``,
  ``k = (LN(x) + pos) W_k``; it gathers what it attended, ``u_l = T_l W_t + sum_n A_ln (LN(x_n) W_v)``; and paints
  itself back where it attended, ``F_l(n) = W_o (1 / L_valid) sum_l m_l (A_ln / max_n' A_ln') u_l``, (B, C, H, W),
  with m_l the text mask;
- K-Gate fusion: ``[g_v, g_l] = KANGate([F_v, F_l])`` per pixel and channel, ``out = x + g_v * F_v + g_l * F_l``
  ("suppresses noisy modality-specific activations before fusion").

Multi-head throughout (the language path per head). MONAI's ``CrossAttentionBlock`` takes no key padding mask, so the
vision path is ``nn.MultiheadAttention`` (as :class:`~custom_nets.blocks.TextCrossAttention`), and the language path is
written out: it needs the attention map itself, not only its product with the values.

Where we filled in (the poster names the paths, not their equations):
    - painting weights ``A_ln / max_n' A_ln'`` = ``exp(z_ln - max_n' z_ln')`` (z the logits): each token paints with
      weight 1 where it attended most and less elsewhere, independent of the grid size. The raw ``A^T`` would make a
      token's map sum to 1 over the grid (vanishing at 224 x 224), and ``N A`` would make a peaked token's map as large
      as N; the average over the valid tokens (1 / L_valid) keeps the map's scale independent of sentence length;
    - what a token paints, ``u_l``, is its own projected embedding plus what it gathered from the pixels (a residual
      token update, as in a transformer decoder's query): the token's semantics put on the grid, made image-aware;
    - padding: masked keys in the vision path; in the language path padded tokens get painting weight 0 and do not
      count in L_valid. Every sample must hold one valid token (see :func:`~custom_nets.blocks.fill_missing_text`);
    - a fixed 2D sine code ``pos`` on the pixel queries (vision path) and pixel keys (language path): the text is
      about place ("lower left lung", "bilateral") and attention from content alone cannot tell where a pixel is;
      ``positional=False`` removes it. LayerNorm on the pixels before both paths;
    - fusion ``out = x + g_v F_v + g_l F_l``: the gate sees both paths ([F_v, F_l], 2C channels) and gives one gate per
      path and channel (2C); the residual keeps what the image showed. ``gate="mlp"`` is the ablation's sigmoid MLP
      gate; ``gate="none"`` sums the paths ungated;
    - one path alone (the poster's Table 3 ablation, ``paths="vision"`` or ``"language"``): ``out = x + g * F`` with
      the gate on that path only (C -> C), so the ablation removes a path, not the gating.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .kan import KANGate, SigmoidMLPGate
from .text_attention import check_sine_channels, sinusoidal_2d

GATES = ("kan", "mlp", "none")  # BidirectionalCrossAttention(gate=...): K-Gate, sigmoid MLP gate (ablation), no gate
PATHS = ("both", "vision", "language")  # BidirectionalCrossAttention(paths=...): BCAM, or one path alone (ablation)


class BidirectionalCrossAttention(nn.Module):
    """BCAM: vision-dominant and language-dominant cross-attention on a feature map, fused through a gate (see the
    module docstring for the equations and what we filled in).

    Args:
        hidden_size: C, the visual width (channels of the feature map, width of both paths).
        context_input_size: D, the width of the text tokens.
        num_heads: attention heads (must divide C).
        dropout_rate: attention dropout (on the vision path's weights and the language path's gathering weights).
        gate: ``"kan"`` (K-Gate), ``"mlp"`` (sigmoid MLP gate) or ``"none"``.
        positional: add the fixed 2D sine code to the pixel queries and keys (C a multiple of 4).
        paths: ``"both"`` (BCAM), or ``"vision"`` / ``"language"`` for one path alone (ablation); the other path's
            layers are then not built.
        gate_kwargs: extra arguments of the gate (:class:`~custom_nets.blocks.KANGate`: ``hidden_channels``,
            ``grid_size``, ``spline_order``, ``grid_range``; :class:`~custom_nets.blocks.SigmoidMLPGate`:
            ``hidden_channels``).

    Example:
        >>> bcam = BidirectionalCrossAttention(hidden_size=16, context_input_size=12, num_heads=2)
        >>> x, text, mask = torch.randn(2, 16, 8, 8), torch.randn(2, 5, 12), torch.tensor([[1, 1, 1, 0, 0]] * 2)
        >>> vision_map, language_map = bcam.paths(x, text, mask)
        >>> vision_map.shape, language_map.shape, bcam(x, text, mask).shape
        (torch.Size([2, 16, 8, 8]), torch.Size([2, 16, 8, 8]), torch.Size([2, 16, 8, 8]))
    """

    def __init__(self, hidden_size: int, context_input_size: int, num_heads: int, dropout_rate: float = 0.0,
                 gate: str = "kan", positional: bool = True, paths: str = "both",
                 gate_kwargs: dict | None = None) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide hidden_size ({hidden_size})")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        if paths not in PATHS:
            raise ValueError(f"paths must be one of {PATHS}, got {paths!r}")
        if positional:
            check_sine_channels(hidden_size, "hidden_size")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.positional = positional
        self.norm = nn.LayerNorm(hidden_size)
        # vision-dominant path: pixels query the tokens
        self.vision_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, kdim=context_input_size,
                                                 vdim=context_input_size, batch_first=True) if paths != "language" else None
        # language-dominant path: tokens query the pixels, then paint themselves back
        self.language = paths != "vision"
        if self.language:
            self.lang_query = nn.Linear(context_input_size, hidden_size)  # W_q
            self.lang_key = nn.Linear(hidden_size, hidden_size)  # W_k
            self.lang_value = nn.Linear(hidden_size, hidden_size)  # W_v
            self.lang_token = nn.Linear(context_input_size, hidden_size)  # W_t
            self.lang_out = nn.Linear(hidden_size, hidden_size)  # W_o
        self.context_input_size = context_input_size
        self.attn_drop = nn.Dropout(dropout_rate)
        gate_kwargs = gate_kwargs or {}
        width = (2 if paths == "both" else 1) * hidden_size  # the gate sees the paths built, one gate per path/channel
        if gate == "kan":
            self.gate: nn.Module | None = KANGate(width, width, **gate_kwargs)
        elif gate == "mlp":
            self.gate = SigmoidMLPGate(width, width, **gate_kwargs)
        else:
            self.gate = None

    def _check(self, feature: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> None:
        if feature.ndim != 4 or feature.shape[1] != self.hidden_size:
            raise ValueError(f"feature must be (B, {self.hidden_size}, H, W), got {tuple(feature.shape)}")
        d = self.context_input_size
        if text.ndim != 3 or text.shape[0] != feature.shape[0] or text.shape[-1] != d:
            raise ValueError(f"text must be ({feature.shape[0]}, L, {d}), got {tuple(text.shape)}")
        if text_mask.shape != text.shape[:2]:
            raise ValueError(f"text_mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        if not bool((text_mask != 0).any(dim=1).all()):
            raise ValueError("every sample needs at least one valid token (text_mask row of zeros); "
                             "put a null token there first (custom_nets.blocks.fill_missing_text)")

    def _language_path(self, keys: torch.Tensor, values: torch.Tensor, text: torch.Tensor,
                       text_mask: torch.Tensor) -> torch.Tensor:
        """keys, values (B, N, C) pixels, text (B, L, D), text_mask (B, L) -> language-guided map (B, N, C)."""
        b, n, c = values.shape
        length, h = text.shape[1], self.num_heads
        d = c // h
        q = self.lang_query(text).view(b, length, h, d).transpose(1, 2)  # (B, h, L, d)
        k = self.lang_key(keys).view(b, n, h, d).transpose(1, 2)  # (B, h, N, d)
        v = self.lang_value(values).view(b, n, h, d).transpose(1, 2)  # (B, h, N, d)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, L, N)
        attn = torch.softmax(logits, dim=-1)  # A: each token's distribution over the pixels
        tokens = self.lang_token(text).view(b, length, h, d).transpose(1, 2) + self.attn_drop(attn) @ v  # u
        valid = (text_mask != 0).to(values.dtype)[:, None, :, None]  # (B, 1, L, 1)
        paint = torch.exp(logits - logits.amax(dim=-1, keepdim=True)) * valid  # A / max A, padded tokens 0
        out = paint.transpose(-1, -2) @ tokens / valid.sum(dim=2, keepdim=True)  # (B, h, N, d)
        return self.lang_out(out.transpose(1, 2).reshape(b, n, c))

    def paths(self, feature: torch.Tensor, text: torch.Tensor,
              text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feature (B, C, H, W), text (B, L, D), text_mask (B, L) with 1 = token -> (vision-dominant map,
        language-dominant map), both (B, C, H, W), before the gate and the residual; a path not built
        (``paths``) is None."""
        self._check(feature, text, text_mask)
        b, c, height, width = feature.shape
        pixels = self.norm(feature.flatten(2).transpose(1, 2))  # (B, N, C)
        located = pixels
        if self.positional:
            located = pixels + sinusoidal_2d(height, width, c, feature.device).to(pixels.dtype)
        maps: list[torch.Tensor | None] = [None, None]
        if self.vision_attn is not None:
            vision, _ = self.vision_attn(located, text, text, key_padding_mask=text_mask == 0, need_weights=False)
            maps[0] = vision.transpose(1, 2).reshape(b, c, height, width)
        if self.language:
            language = self._language_path(located, pixels, text, text_mask)
            maps[1] = language.transpose(1, 2).reshape(b, c, height, width)
        return maps[0], maps[1]

    def forward(self, feature: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """feature (B, C, H, W), text (B, L, D), text_mask (B, L) with 1 = token -> (B, C, H, W):
        ``feature + g_v * F_v + g_l * F_l``."""
        built = [m for m in self.paths(feature, text, text_mask) if m is not None]
        if self.gate is None:
            return feature + sum(built)
        gates = self.gate(torch.cat(built, dim=1)).chunk(len(built), dim=1)
        return feature + sum(g * m for g, m in zip(gates, built))
