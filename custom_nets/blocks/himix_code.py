"""HiMix's decoder blocks as the authors' public code builds them (``JaeyoonSSim/HiMix``, ``utils/layers_himix.py`` and
``utils/model_himix.py``), for ``HiMix(variant="authors_code")``.

The paper (Hwang, Sim, Kim, Secs. 3.2-3.3) leaves these details out; where the code and the paper's equations
differ, these blocks follow the code and say so. The paper's reading of the same equations is in
:mod:`custom_nets.blocks.layer_fusion`, :mod:`custom_nets.blocks.spectral` and :mod:`custom_nets.blocks.text_attention`.

- :func:`sinusoidal_1d`: the code's ``PositionalEncoding`` (1D sine-cosine code over a token index);
- :class:`StaticLayerFusion`: DLFM (Eq. 1) as ``HiMix.attention_weights`` in ``model_himix.py``;
- :class:`NyquistGaussianFilter`: ASRM (Eq. 3) as the code's ``LFM``;
- :class:`TokenMixProjection`: Eq. 2 as ``DecoderLayer.text_project``;
- :class:`PrePostNormAttentionLayer`: Eqs. 4-6 as ``DecoderLayer.forward``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from custom_nets.blocks.layer_fusion import split_layers


def sinusoidal_1d(length: int, channels: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, C) fixed 1D sine-cosine code, interleaved (sine on even channels, cosine on odd ones), the
    formula of ``PositionalEncoding`` in the authors' ``utils/layers_himix.py`` (Vaswani et al.).

    The authors add it to flattened image tokens (row-major index over H x W) and to the L' projected text
    tokens alike.

    Example:
        >>> pe = sinusoidal_1d(5, 8)
        >>> pe.shape, pe[0, 0].item(), pe[0, 1].item()
        (torch.Size([5, 8]), 0.0, 1.0)
    """
    if channels % 2:
        raise ValueError(f"channels must be even for a sine-cosine code, got {channels}")
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div_term = torch.exp(torch.arange(0, channels, 2, device=device, dtype=torch.float32) * -(math.log(10000.0) / channels))
    pe = torch.zeros(length, channels, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


class StaticLayerFusion(nn.Module):
    """DLFM (HiMix Eq. 1) as the authors' code runs it: one learnable logit per text layer, a softmax inside each
    group, no input to the "gating head".

    In ``utils/model_himix.py`` the logits are ``nn.Parameter(torch.ones(3, 4))`` (3 groups of 4 of CXR-BERT's 12
    layers, ``hidden_states[1:5]``, ``[5:9]``, ``[9:13]``), softmax over each row; the weights are the same for every
    sentence. Here they are stored flat, one per layer (``ones(H)``), so that layer counts that do not split evenly
    (the tests' tiny encoders) work too; for 12 layers in 3 groups this is the code's ``ones(3, 4)`` row by row.

    Args:
        num_layers: H, the hidden layers the text encoder returns (embedding output excluded).
        num_groups: M, the decoder stages.

    Returns (forward): a list of M tensors (B, L, D), group 1 (lowest layers) first.

    Example:
        >>> dlfm = StaticLayerFusion(num_layers=12, num_groups=3)
        >>> [t.shape for t in dlfm(torch.randn(2, 12, 7, 32))]
        [torch.Size([2, 7, 32]), torch.Size([2, 7, 32]), torch.Size([2, 7, 32])]
    """

    def __init__(self, num_layers: int, num_groups: int) -> None:
        super().__init__()
        self.groups = split_layers(num_layers, num_groups)
        self.logits = nn.Parameter(torch.ones(num_layers))

    def weights(self) -> list[torch.Tensor]:
        """The softmax weights w_j of each group (lowest group first)."""
        return [torch.softmax(self.logits[group], dim=0) for group in self.groups]

    def forward(self, text_hidden: torch.Tensor, text_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """text_hidden (B, H, L, D); ``text_mask`` is accepted for the same call as DynamicLayerFusion and unused."""
        num_layers = self.logits.shape[0]
        if text_hidden.ndim != 4 or text_hidden.shape[1] != num_layers:
            raise ValueError(f"text_hidden must be (B, {num_layers}, L, D), got {tuple(text_hidden.shape)}")
        return [torch.sum(text_hidden[:, group] * w.view(1, -1, 1, 1).to(text_hidden.dtype), dim=1)
                for group, w in zip(self.groups, self.weights())]


class NyquistGaussianFilter(nn.Module):
    """ASRM (HiMix Eq. 3) as the authors' ``LFM`` in ``utils/layers_himix.py``:
    ``out = x + Re(IFFT2(FFT2(x) * (1 - g)))`` with ``g(y, x) = exp(-((y - H//2)^2 + (x - W//2)^2) / (2 sigma^2))``.

    The Gaussian is laid on the *unshifted* spectrum (no ``fftshift``), in index units, centred at index
    (H//2, W//2): that is the highest frequency (Nyquist), not DC. ``1 - g`` therefore removes the frequencies
    near Nyquist and keeps the others in proportion to their distance from it: in effect a low-pass filter added
    back to its input. (The code names the map ``high_filter``; the paper's Eq. 3 multiplies by a Gaussian map g
    without saying where it is centred.) sigma is learnable, one per decoder stage, initialised at 5.0
    (``DecoderLayer.sig`` in the code), in frequency-index units, so the same sigma covers more of the spectrum of
    a small map than of a large one: at sigma 5, DC passes whole on a 56 x 56 map (``1 - g`` = 1.00) but is
    damped on a 7 x 7 map (0.30), where every frequency is damped. The FFT uses PyTorch's default normalisation;
    for an odd side the filter is not conjugate-symmetric and, as in the code, the real part of the inverse
    transform is kept.

    Departures from the code: the transforms run on the input's device (the code moves them to the CPU and back,
    same numbers); the output has the input's dtype (the code returns float32).

    Args:
        init_sigma: initial bandwidth in frequency-index units (the code's 5.0).

    Example:
        >>> lfm = NyquistGaussianFilter()
        >>> lfm(torch.randn(2, 8, 14, 14)).shape
        torch.Size([2, 8, 14, 14])
        >>> keep = lfm.filter_map(56, 56, torch.device("cpu")).detach()
        >>> round(float(keep[0, 0]), 2), float(keep[28, 28])  # DC passes, the Nyquist index is removed
        (1.0, 0.0)
    """

    def __init__(self, init_sigma: float = 5.0) -> None:
        super().__init__()
        self.sigma = nn.Parameter(torch.tensor(float(init_sigma)))

    def filter_map(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(H, W) map ``1 - g`` multiplying the unshifted spectrum."""
        yv, xv = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                                torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
        g = torch.exp(-((yv - height // 2) ** 2 + (xv - width // 2) ** 2) / (2 * self.sigma**2))
        return 1 - g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> same shape."""
        xf = x.float()
        spectrum = torch.fft.fft2(xf) * self.filter_map(x.shape[-2], x.shape[-1], x.device)
        filtered = torch.fft.ifft2(spectrum, s=x.shape[-2:]).real
        return (xf + filtered).to(x.dtype)


class TokenMixProjection(nn.Module):
    """Eq. 2 of HiMix as ``DecoderLayer.text_project`` in the authors' code: a 1x1 convolution over the token axis
    (L -> L' tokens, the D text channels untouched), GELU, then ``W_t`` (a linear map D -> C) and LeakyReLU.

    The paper writes ``ReLU(Conv(t W_t))`` (project first, then mix tokens, ReLU); the code mixes first, with a
    GELU between, and ends with LeakyReLU (slope 0.01). The code always feeds ``max_tokens`` (24) positions,
    padding included (CXR-BERT's outputs at [PAD]); here padded positions are zero (the project's text encoder
    cuts padding and pads with zeros) and the sentence is padded to ``max_tokens`` with zeros.

    Args:
        hidden_size: C, the visual width of the decoder stage.
        context_input_size: D, the width of the text tokens.
        max_tokens: L, the positions the token convolution reads (the text encoder's ``max_length``).
        projected_tokens: L' (24, 12, 9 in the code's three stages).

    Example:
        >>> proj = TokenMixProjection(hidden_size=16, context_input_size=32, max_tokens=24, projected_tokens=12)
        >>> proj(torch.randn(2, 9, 32), torch.ones(2, 9)).shape
        torch.Size([2, 12, 16])
    """

    def __init__(self, hidden_size: int, context_input_size: int, max_tokens: int, projected_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.token_mix = nn.Conv1d(max_tokens, projected_tokens, kernel_size=1, stride=1)
        self.act_mix = nn.GELU()
        self.linear = nn.Linear(context_input_size, hidden_size)  # W_t
        self.act = nn.LeakyReLU()

    def forward(self, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """text (B, L, D), mask (B, L) with 1 = token -> (B, L', C)."""
        if text.ndim != 3 or text.shape[-1] != self.linear.in_features:
            raise ValueError(f"text must be (B, L, {self.linear.in_features}), got {tuple(text.shape)}")
        if mask.shape != text.shape[:2]:
            raise ValueError(f"mask must be (B, L) = {tuple(text.shape[:2])}, got {tuple(mask.shape)}")
        length = text.shape[1]
        if length > self.max_tokens:
            raise ValueError(f"sentence of {length} tokens; this network accepts at most {self.max_tokens}")
        tokens = text * mask[..., None].to(text.dtype)
        tokens = nn.functional.pad(tokens, (0, 0, 0, self.max_tokens - length))
        return self.act(self.linear(self.act_mix(self.token_mix(tokens))))


class PrePostNormAttentionLayer(nn.Module):
    """Eqs. 4-6 of HiMix as ``DecoderLayer.forward`` in the authors' ``utils/layers_himix.py``:

        a = LN_ca_in(d);  d_ca = d + beta_ca * LN_ca(MHCA(a + pos_v, t + pos_t, t))
        s = LN_sa_in(d_ca);  d_sa = d_ca + beta_sa * LN_sa(MHSA(s + pos_v, s + pos_v, s))
        out = d_sa + beta_mlp * Linear(Dropout_0.1(ReLU(Linear(d_sa))))      (C -> C/2 -> C)

    As in the code: a LayerNorm before *and* after each attention (the paper's Eqs. 4-5 show only the one after),
    none before the MLP; the three residual scales start at 1.421; the MLP narrows to C/2 with ReLU and dropout
    0.1 after the activation only; 1D sine positions (:func:`sinusoidal_1d`) on the visual queries and keys and
    on the text keys (not on values); no attention dropout; no key padding mask (the L' tokens are mixtures of
    every position). The code's ``DecoderLayer.norm`` is never used and is left out here.

    Args:
        hidden_size: C, the visual width (text tokens already projected to C).
        num_heads: attention heads (8 in the code).
        dropout_rate: attention dropout (0 in the code).
        mlp_dropout_rate: MLP dropout (0.1 in the code).
        beta_init: initial residual scales (1.421 in the code).

    Example:
        >>> layer = PrePostNormAttentionLayer(hidden_size=16, num_heads=2)
        >>> layer(torch.randn(2, 64, 16), torch.randn(2, 9, 16)).shape
        torch.Size([2, 64, 16])
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout_rate: float = 0.0, mlp_dropout_rate: float = 0.1,
                 beta_init: float = 1.421) -> None:
        super().__init__()
        self.norm_ca_in = nn.LayerNorm(hidden_size)  # the code's norm2
        self.cross_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, batch_first=True)
        self.norm_ca = nn.LayerNorm(hidden_size)  # cross_attn_norm
        self.norm_sa_in = nn.LayerNorm(hidden_size)  # norm1
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout_rate, batch_first=True)
        self.norm_sa = nn.LayerNorm(hidden_size)  # self_attn_norm
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size // 2), nn.ReLU(), nn.Dropout(mlp_dropout_rate),
                                 nn.Linear(hidden_size // 2, hidden_size))  # lin1, relu, dropout, lin2
        self.beta_ca = nn.Parameter(torch.tensor(float(beta_init)))  # scale1
        self.beta_sa = nn.Parameter(torch.tensor(float(beta_init)))  # scale2
        self.beta_mlp = nn.Parameter(torch.tensor(float(beta_init)))  # scale3

    def forward(self, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """visual (B, N, C) in row-major order of the feature map, text (B, L', C) -> (B, N, C)."""
        if visual.ndim != 3 or visual.shape[-1] != self.cross_attn.embed_dim:
            raise ValueError(f"visual must be (B, N, {self.cross_attn.embed_dim}), got {tuple(visual.shape)}")
        b, n, c = visual.shape
        if text.ndim != 3 or text.shape[0] != b or text.shape[-1] != c:
            raise ValueError(f"text must be ({b}, L', {c}) (projected to the visual width), got {tuple(text.shape)}")
        pos_v = sinusoidal_1d(n, c, visual.device).to(visual.dtype)
        pos_t = sinusoidal_1d(text.shape[1], c, visual.device).to(visual.dtype)
        a = self.norm_ca_in(visual)
        ca, _ = self.cross_attn(a + pos_v, text + pos_t, text, need_weights=False)
        x = visual + self.beta_ca * self.norm_ca(ca)
        s = self.norm_sa_in(x)
        sa, _ = self.self_attn(s + pos_v, s + pos_v, s, need_weights=False)
        x = x + self.beta_sa * self.norm_sa(sa)
        return x + self.beta_mlp * self.mlp(x)
