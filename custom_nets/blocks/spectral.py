"""Frequency-domain refinement of decoder features.

:class:`GaussianSpectrumRefinement` is HiMix's Adaptive Spectrum Refinement Module (ASRM, HiMix Sec. 3.3,
Eq. 3): ``d_hat = IFFT(FFT(d) * g_sigma) + d`` with a learnable Gaussian bandwidth sigma.
"""

from __future__ import annotations

import torch
from torch import nn


class GaussianSpectrumRefinement(nn.Module):
    """Gaussian filter in the 2D Fourier domain with a learnable bandwidth, added back to its input (Eq. 3).

    The filter map ``g(u, v) = exp(-(u^2 + v^2) / (2 sigma^2))`` is built on centred, normalised frequencies
    (``u, v`` in [-0.5, 0.5)), so sigma means the same at every feature-map size; ``log sigma`` is the
    learned parameter, keeping sigma positive.

    Args:
        init_sigma: initial bandwidth in normalised frequency units (the paper does not give one; 0.25 passes
            the low half of the spectrum at first, and training moves it).

    Example:
        >>> asrm = GaussianSpectrumRefinement()
        >>> asrm(torch.randn(2, 8, 14, 14)).shape
        torch.Size([2, 8, 14, 14])
    """

    def __init__(self, init_sigma: float = 0.25) -> None:
        super().__init__()
        if init_sigma <= 0:
            raise ValueError(f"init_sigma must be > 0, got {init_sigma}")
        self.log_sigma = nn.Parameter(torch.tensor(float(init_sigma)).log())

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    def gaussian(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        fy = torch.fft.fftfreq(height, device=device)
        fx = torch.fft.fftfreq(width, device=device)
        radius2 = fy[:, None] ** 2 + fx[None, :] ** 2
        return torch.exp(-radius2 / (2 * self.sigma**2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> same shape."""
        spectrum = torch.fft.fft2(x.float(), norm="ortho")
        filtered = torch.fft.ifft2(spectrum * self.gaussian(x.shape[-2], x.shape[-1], x.device), norm="ortho").real
        return filtered.to(x.dtype) + x
