"""LCPDN's two text-vision blocks ("Lightweight Cross-text-vision Prompting Diffusion Network", paper Sec. 3.3 and
Sec. 3.4): the text-vision-alignment prompt of CPRFL (Eqs. 1-4) and the LTFR fusion at one scale (Eqs. 7-10).

- :class:`TextVisionPrompt` (CPRFL, Sec. 3.3): text tokens Q (N, D) attend to image patches K = V (M, D),
  ``A = softmax((Q W^Q)(K W^K)^T / sqrt(D))``, ``Z = A (V W^V)`` (Eq. 1); ``Q* = tanh(Z) * (Q W^Q)`` (Eq. 2);
  ``E = mean_n Q*_n`` (Eq. 3); ``TextProj(E) = E W_t + b_t`` (Eq. 4). The diffusion UNet adds TextProj(E) to its
  timestep embedding M: ``P = M + TextProj(E)`` (Eq. 5).
- :class:`TextVisionFusion` (LTFR, Sec. 3.4): the text tokens replicated or truncated to the M image positions
  (:func:`align_tokens`), ``F_cat = [F_img, F_text^]`` (Eq. 7), ``F_fuse = MLP(F_cat)`` (Eq. 8),
  ``F*_fuse = lambda F_fuse + (1 - lambda) F_img`` with ``lambda = sigmoid(.)`` per position (Eq. 9),
  ``H_fuse = F*_fuse * F_img`` (Eq. 10).

Where we filled in (the paper gives the equations, not these):
    - Eq. 1 is single-head with bias-free W^Q, W^K, W^V (Eq. 1 writes none; Eq. 4 writes its bias explicitly) and
      scale sqrt(D); padded text tokens are left out of the mean of Eq. 3 (a masked mean) and image patches have no
      padding;
    - W_t and b_t start at zero, so an untrained prompt leaves the timestep embedding as it is (P = M): the denoiser
      pretrained without prompts sees its own embedding at the start of segmentation training;
    - "replicated or truncated" (Eq. 7) is a raster tiling of the N tokens over the M positions, cut to M, padded
      tokens dropped first (a padded token would otherwise be tiled as if it were text);
    - the MLP of Eq. 8 is Linear(2D, D), GELU, Linear(D, D); lambda (Eq. 9) is sigmoid(Linear(2D, 1)) of F_cat, one
      weight per position ("position-dependent");
    - the product of Eq. 10 is element-wise ("augmented with visual information").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .text_attention import check_sine_channels, masked_token_mean, sinusoidal_2d, valid_token_counts


class TextVisionPrompt(nn.Module):
    """CPRFL's text-vision-alignment prompt block (LCPDN Sec. 3.3, Eqs. 1-4): the sentence's tokens attend to the
    image's patches, and the attended, gated tokens are averaged and projected to the width of the diffusion UNet's
    timestep embedding.

    Args:
        hidden_size: D, the width of the text tokens and of the attention (768 for Clinical BioBERT).
        time_embed_dim: d, the width of the UNet's timestep embedding.
        image_hidden_size: the width of the image patches; None (default) = D, the paper's case (CLIP ViT-B/16 is
            768 wide too): W^K and W^V are D x D. Otherwise they map the patch width to D (offline stand-ins).

    Example:
        >>> prompt = TextVisionPrompt(hidden_size=8, time_embed_dim=16)
        >>> text, mask, patches = torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0]] * 2), torch.randn(2, 9, 8)
        >>> prompt(text, mask, patches).shape  # TextProj(E), added to the timestep embedding (Eq. 5)
        torch.Size([2, 16])
    """

    def __init__(self, hidden_size: int, time_embed_dim: int, image_hidden_size: int | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.image_hidden_size = image_hidden_size or hidden_size
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)  # W^Q
        self.key = nn.Linear(self.image_hidden_size, hidden_size, bias=False)  # W^K
        self.value = nn.Linear(self.image_hidden_size, hidden_size, bias=False)  # W^V
        self.text_proj = nn.Linear(hidden_size, time_embed_dim)  # W_t, b_t (Eq. 4)
        nn.init.zeros_(self.text_proj.weight)
        nn.init.zeros_(self.text_proj.bias)

    def fused_tokens(self, text: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Q* (B, N, D) of Eq. 2 from text (B, N, D) and image patches (B, M, D_image)."""
        q = self.query(text)  # Q W^Q
        attn = torch.softmax(q @ self.key(patches).transpose(1, 2) / math.sqrt(self.hidden_size), dim=-1)  # A (Eq. 1)
        z = attn @ self.value(patches)  # Z (Eq. 1)
        return torch.tanh(z) * q  # Eq. 2

    def check(self, text: torch.Tensor, patches: torch.Tensor) -> None:
        if text.shape[-1] != self.hidden_size or patches.shape[-1] != self.image_hidden_size:
            raise ValueError(f"text must be {self.hidden_size} and patches {self.image_hidden_size} wide, got "
                             f"{tuple(text.shape)} and {tuple(patches.shape)}")

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, patches: torch.Tensor,
                return_tokens: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """text (B, N, D), text_mask (B, N) with 1 = token, patches (B, M, D_image) -> TextProj(E) (B, d), and
        Q* (B, N, D) too when ``return_tokens`` (LCPDN gives them to the UNet's cross-attention)."""
        self.check(text, patches)
        tokens = self.fused_tokens(text, patches)
        prompt = self.text_proj(masked_token_mean(tokens, text_mask))  # E (Eq. 3; padding left out), Eq. 4
        return (prompt, tokens) if return_tokens else prompt


def align_tokens(text: torch.Tensor, text_mask: torch.Tensor, positions: int) -> torch.Tensor:
    """F_text^ of LTFR (Eq. 7): each sample's valid tokens tiled in order over ``positions`` and cut to it.

    Args:
        text: (B, N, D) tokens.
        text_mask: (B, N), 1 = token (padding is dropped before tiling).
        positions: M, the number of image positions.

    Example:
        >>> t = torch.arange(3.0).view(1, 3, 1)
        >>> align_tokens(t, torch.tensor([[1, 1, 0]]), 5).flatten().tolist()  # padding (2.0) dropped, 0 1 tiled
        [0.0, 1.0, 0.0, 1.0, 0.0]
    """
    counts = valid_token_counts(text_mask, text)  # (B,)
    order = torch.argsort((text_mask == 0).to(torch.int8), dim=1, stable=True)  # each row's valid tokens first, in order
    tiled = torch.arange(positions, device=text.device)[None] % counts[:, None]  # (B, M): 0 1 .. n-1 0 1 ..
    index = torch.gather(order, 1, tiled)
    return torch.gather(text, 1, index[..., None].expand(-1, -1, text.shape[-1]))


class TextVisionFusion(nn.Module):
    """LTFR at one scale (LCPDN Sec. 3.4, Eqs. 7-10): MLP fusion of each image position with its aligned text token,
    a sigmoid weight per position between the fused and the image feature, and a product with the image feature.

    Args:
        hidden_size: D, the width of the image features and text tokens at this scale.
        positional: add a fixed 2D sine position code to the image features in F_cat (Eq. 7), so that the MLP
            (Eq. 8) and lambda (Eq. 9) know where each position is; Eq. 9's residual and Eq. 10's product keep the
            plain F_img. Off is the paper (D must be a multiple of 4 when on).

    Example:
        >>> fusion = TextVisionFusion(hidden_size=8)
        >>> image, text, mask = torch.randn(2, 8, 4, 4), torch.randn(2, 5, 8), torch.ones(2, 5)
        >>> fusion(image, text, mask).shape  # H_fuse on the image grid
        torch.Size([2, 8, 4, 4])
    """

    def __init__(self, hidden_size: int, positional: bool = False) -> None:
        super().__init__()
        if positional:
            check_sine_channels(hidden_size, "hidden_size")
        self.hidden_size = hidden_size
        self.positional = positional
        self.mlp = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.GELU(),
                                 nn.Linear(hidden_size, hidden_size))  # Eq. 8
        self.weight = nn.Linear(2 * hidden_size, 1)  # lambda (Eq. 9), one per position

    def forward(self, image: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """image (B, D, H, W), text (B, N, D), text_mask (B, N) -> H_fuse (B, D, H, W)."""
        if image.ndim != 4 or image.shape[1] != self.hidden_size or text.shape[-1] != self.hidden_size:
            raise ValueError(f"image must be (B, {self.hidden_size}, H, W) and text (B, N, {self.hidden_size}), got "
                             f"{tuple(image.shape)} and {tuple(text.shape)}")
        b, d, h, w = image.shape
        f_img = image.flatten(2).transpose(1, 2)  # (B, M, D)
        f_where = f_img + sinusoidal_2d(h, w, d, image.device).to(image.dtype) if self.positional else f_img
        f_cat = torch.cat([f_where, align_tokens(text, text_mask, h * w)], dim=-1)  # Eq. 7
        lam = torch.sigmoid(self.weight(f_cat))  # Eq. 9's lambda
        fused = lam * self.mlp(f_cat) + (1 - lam) * f_img  # Eqs. 8-9
        return (fused * f_img).transpose(1, 2).reshape(b, d, h, w)  # Eq. 10
