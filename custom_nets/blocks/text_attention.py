"""Text-guided attention blocks shared by the text-guided networks."""

from __future__ import annotations

import math

import torch
from monai.networks.blocks import MLPBlock
from torch import nn


def check_sine_channels(channels: int, name: str = "channels") -> None:
    """Refuse a width that :func:`sinusoidal_2d` cannot fill (a multiple of 4: sine and cosine of row and column);
    blocks call it when they are built, so that a wrong width fails there and not on the first forward pass."""
    if channels % 4:
        raise ValueError(f"{name} must be a multiple of 4 for a 2D sine position code, got {channels}")


def sinusoidal_2d(height: int, width: int, channels: int, device: torch.device | None = None) -> torch.Tensor:
    """(H*W, C) fixed 2D sine-cosine position code: half the channels encode the row, half the column."""
    check_sine_channels(channels)
    quarter = channels // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device) / quarter)
    ys = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freq
    xs = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freq
    row = torch.cat([ys.sin(), ys.cos()], 1)[:, None, :].expand(height, width, 2 * quarter)
    col = torch.cat([xs.sin(), xs.cos()], 1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([row, col], -1).reshape(height * width, channels)


class TextTokenProjection(nn.Module):
    """Project text tokens to the visual width, and optionally mix them into a fixed number of tokens (Eq. 2
    of HiMix: ``t_hat = ReLU(Conv1x1(t W_t))``, L -> L' tokens).

    With ``projected_tokens`` set, the 1x1 convolution runs over the token axis (tokens as channels, as in
    GuideDecoder), so the sentence is padded to ``max_tokens`` positions and padded tokens are zeroed first:
    the same sentence padded to any length gives the same L' tokens, and no padding is left to mask.

    Args:
        hidden_size: C, the visual width of the decoder stage (the width of the projected tokens).
        context_input_size: D, the width of the text tokens (W_t maps D -> C).
        max_tokens: L, the longest sentence accepted (the text encoder's ``max_length``).
        projected_tokens: L'; None keeps the L tokens (then the caller masks padding in attention).

    Example:
        >>> proj = TextTokenProjection(hidden_size=16, context_input_size=32, max_tokens=12, projected_tokens=6)
        >>> tokens, mask = proj(torch.randn(2, 9, 32), torch.ones(2, 9))
        >>> tokens.shape, mask.shape
        (torch.Size([2, 6, 16]), torch.Size([2, 6]))
    """

    def __init__(
        self, hidden_size: int, context_input_size: int, max_tokens: int, projected_tokens: int | None
    ) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.linear = nn.Linear(context_input_size, hidden_size)  # W_t
        self.token_mix = nn.Conv1d(max_tokens, projected_tokens, 1) if projected_tokens else None

    def forward(self, text: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text (B, L, D), mask (B, L) with 1 = token -> tokens (B, L' or L, C), mask of those tokens."""
        if text.ndim != 3 or text.shape[-1] != self.linear.in_features:
            raise ValueError(f"text must be (B, L, {self.linear.in_features}), got {tuple(text.shape)}")
        if mask.shape != text.shape[:2]:
            raise ValueError(f"mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(mask.shape)}")
        tokens = self.linear(text) * mask[..., None].to(text.dtype)
        if self.token_mix is None:
            return torch.relu(tokens), mask
        length = tokens.shape[1]
        if length > self.max_tokens:
            raise ValueError(f"sentence of {length} tokens; this network accepts at most {self.max_tokens}")
        tokens = nn.functional.pad(tokens, (0, 0, 0, self.max_tokens - length))
        tokens = torch.relu(self.token_mix(tokens))
        return tokens, torch.ones(tokens.shape[:2], dtype=mask.dtype, device=mask.device)


class TextGuidedAttentionLayer(nn.Module):
    """Cross-attention to text, self-attention and MLP with learnable residual scales (HiMix Eqs. 4-6):

        d_ca = d + beta_ca * LN(MHCA(d, t));  d_sa = d_ca + beta_sa * LN(MHSA(d_ca));  out = d_sa + beta_mlp * MLP(d_sa)

    Visual tokens are the queries; text tokens the keys and values, padding masked. A fixed 2D sine code
    is added to queries and keys of the visual tokens (not in the paper's equations; as in GuideDecoder, on
    which the HiMix code builds: attention alone is blind to where a token is, and report text is about place).

    Args:
        hidden_size: C, the visual width; the text tokens come already projected to C
            (:class:`TextTokenProjection`), so there is no separate ``context_input_size``.
        num_heads: attention heads (must divide C).
        mlp_ratio: MLP hidden width / C.
        dropout_rate: attention and MLP dropout.

    Example:
        >>> layer = TextGuidedAttentionLayer(hidden_size=16, num_heads=2)
        >>> layer(torch.randn(2, 64, 16), torch.randn(2, 5, 16), torch.ones(2, 5), sinusoidal_2d(8, 8, 16)).shape
        torch.Size([2, 64, 16])
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, batch_first=True)
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, batch_first=True)
        self.norm_ca = nn.LayerNorm(hidden_size)
        self.norm_sa = nn.LayerNorm(hidden_size)
        self.mlp = MLPBlock(hidden_size, int(hidden_size * mlp_ratio), dropout_rate=dropout_rate, act="GELU")
        self.beta_ca = nn.Parameter(torch.tensor(0.1))
        self.beta_sa = nn.Parameter(torch.tensor(0.1))
        self.beta_mlp = nn.Parameter(torch.tensor(0.1))

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """visual (B, N, C), text (B, L, C), text_mask (B, L) with 1 = token, pos (N, C) -> (B, N, C)."""
        if visual.ndim != 3 or visual.shape[-1] != self.cross_attn.embed_dim:
            raise ValueError(f"visual must be (B, N, {self.cross_attn.embed_dim}), got {tuple(visual.shape)}")
        b, n, c = visual.shape
        if text.ndim != 3 or text.shape[0] != b or text.shape[-1] != c:
            raise ValueError(f"text must be ({b}, L, {c}) (projected to the visual width), got {tuple(text.shape)}")
        if text_mask.shape != text.shape[:2]:
            raise ValueError(f"text_mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        if pos.shape != (n, c):
            raise ValueError(f"pos must be (N, C) = {(n, c)}, got {tuple(pos.shape)}")
        pad = text_mask == 0
        ca, _ = self.cross_attn(visual + pos, text, text, key_padding_mask=pad, need_weights=False)
        x = visual + self.beta_ca * self.norm_ca(ca)
        q = x + pos
        sa, _ = self.self_attn(q, q, x, need_weights=False)
        x = x + self.beta_sa * self.norm_sa(sa)
        return x + self.beta_mlp * self.mlp(x)


def fill_missing_text(
    null_token: torch.Tensor, batch_size: int, text_hidden: torch.Tensor | None, text_mask: torch.Tensor | None,
    num_layers: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put a learned null-text token where a sample has no text: ``text_hidden=None``, or an all-zero row of
    ``text_mask`` (a dropped or empty sentence). The null sample becomes one valid token.

    Args:
        null_token: (D,) learned embedding.
        batch_size: B (used when ``text_hidden`` is None).
        text_hidden: (B, H, L, D) hidden layers, or None.
        text_mask: (B, L) with 1 = token, or None (all tokens valid).
        num_layers: H, used when ``text_hidden`` is None.

    Returns:
        ``(text_hidden, text_mask)`` with every row holding at least one valid token.
    """
    device = null_token.device
    if text_hidden is None:
        hidden = null_token.expand(batch_size, num_layers, 1, -1)
        return hidden, torch.ones(batch_size, 1, dtype=torch.long, device=device)
    null_token = null_token.to(text_hidden.dtype)
    if text_mask is None:
        text_mask = torch.ones(text_hidden.shape[:1] + text_hidden.shape[2:3], dtype=torch.long, device=text_hidden.device)
    empty = text_mask.sum(1) == 0
    first = torch.zeros_like(text_mask)
    first[:, 0] = 1
    null_hidden = torch.zeros_like(text_hidden)
    null_hidden[:, :, 0] = null_token
    text_hidden = torch.where(empty[:, None, None, None], null_hidden, text_hidden)
    return text_hidden, torch.where(empty[:, None], first, text_mask)


class TextCrossAttention(nn.Module):
    """Cross-modal alignment of a visual feature map with text tokens (TAMISeg Eq. 8): visual tokens are the
    queries, text tokens the keys and values, ``Softmax((f W_q)(T W_k)^T / sqrt(d)) (T W_v)``, multi-head,
    padding masked.

    Departures from Eq. 8, which writes the attention output alone: the output is added to the visual
    feature, ``ft = f + W_o Attn(LN(f) + pos, T)``: without this residual every position would become a mixture
    of at most L text values and lose what the image showed there. ``pos`` is a fixed 2D sine position code
    added to the queries (as in :class:`TextGuidedAttentionLayer`): report sentences are about place ("upper
    left lung"), and attention from content alone cannot tell where a token is.

    Args:
        hidden_size: C, the visual (query) width: channels of the feature map and width of the attention.
        context_input_size: D, the width of the text tokens (keys and values; W_k, W_v map D -> C).
        num_heads: attention heads (must divide C).
        dropout_rate: attention dropout.
        positional: add the 2D sine code to the queries (C must be a multiple of 4).

    Example:
        >>> cma = TextCrossAttention(hidden_size=64, context_input_size=32, num_heads=4)
        >>> cma(torch.randn(2, 64, 8, 8), torch.randn(2, 9, 32), torch.ones(2, 9)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, hidden_size: int, context_input_size: int, num_heads: int, dropout_rate: float = 0.0,
                 positional: bool = True) -> None:
        super().__init__()
        if positional:
            check_sine_channels(hidden_size, "hidden_size")
        self.positional = positional
        self.norm = nn.LayerNorm(hidden_size)
        self.attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, kdim=context_input_size,
                                          vdim=context_input_size, batch_first=True)

    def forward(self, feature: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """feature (B, C, H, W), text (B, L, D), text_mask (B, L) with 1 = token -> (B, C, H, W)."""
        if feature.ndim != 4 or feature.shape[1] != self.attn.embed_dim:
            raise ValueError(f"feature must be (B, {self.attn.embed_dim}, H, W), got {tuple(feature.shape)}")
        if text.ndim != 3 or text.shape[0] != feature.shape[0] or text.shape[-1] != self.attn.kdim:
            raise ValueError(f"text must be ({feature.shape[0]}, L, {self.attn.kdim}), got {tuple(text.shape)}")
        if text_mask.shape != text.shape[:2]:
            raise ValueError(f"text_mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(text_mask.shape)}")
        b, c, h, w = feature.shape
        queries = self.norm(feature.flatten(2).transpose(1, 2))
        if self.positional:
            queries = queries + sinusoidal_2d(h, w, c, feature.device).to(queries.dtype)
        out, _ = self.attn(queries, text, text, key_padding_mask=text_mask == 0, need_weights=False)
        return feature + out.transpose(1, 2).reshape(b, c, h, w)


def masked_token_mean(tokens: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Mean of each sample's valid tokens: tokens (B, L, D), text_mask (B, L) with 1 = token -> (B, D); padding is
    left out. A sample without a valid token is a ValueError (:func:`valid_token_counts`).

    Example:
        >>> masked_token_mean(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[1, 1, 0]]))
        tensor([[2.]])
    """
    valid = (text_mask != 0).to(tokens.dtype).unsqueeze(-1)
    count = valid_token_counts(text_mask, tokens).to(tokens.dtype).unsqueeze(-1)
    return (tokens * valid).sum(dim=1) / count


def valid_token_counts(text_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Valid tokens per sample (B,) of ``text_mask`` (B, L), 1 = token; a sample without one is a ValueError (not
    checked on shape-only ``meta`` tensors, which FLOP counting uses)."""
    counts = (text_mask != 0).sum(dim=1)
    if not tokens.is_meta and bool((counts == 0).any()):
        raise ValueError("a sample has no valid text token (text_mask row of zeros)")
    return counts
