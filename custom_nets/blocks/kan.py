"""Kolmogorov-Arnold layers and C2Seg's K-Gate ("Towards Text-Mask Consistency in Medical Image Segmentation",
ICLR 2026, poster Sec. "Stage II: BCAM + K-Gate": "KAN-based nonlinear gating suppresses noisy modality-specific
activations before fusion"), with the ablation's sigmoid MLP gate.

A KAN layer (Liu et al., 2024, "KAN: Kolmogorov-Arnold Networks", Sec. 2.2, residual activation functions) puts a
learnable univariate function on every input-output edge and sums them: ``y_o = sum_i phi_oi(x_i)``, with
``phi_oi(x) = w_oi SiLU(x) + sum_c c_oic B_c(x)``: a SiLU base branch plus a B-spline of order k on a grid of G
intervals (G + k basis functions B_c, learnable coefficients c).

Why not ``pykan`` (KindXiaoming/pykan 0.2.8, ``kan/KANLayer.py``, read from the PyPI wheel): its
``KANLayer.forward`` takes (batch, in_dim) and builds the spline output per edge as a (batch, in_dim, out_dim) tensor
(``coef2curve``: ``einsum('ijk,jlk->ijl', B, coef)``), then scales, masks and clones it again (``postspline``,
``postacts``, returned for its plotting and pruning tools) before summing over the inputs. Gating every pixel of a
224 x 224 map for a batch of 32 is 1.6 M rows; with 64 input and 64 output channels one such tensor is
1.6 M x 64 x 64 x 4 B = 26 GB. Measured on 4096 rows, 64 -> 64, G = 5, k = 3 (CPU, one thread): pykan keeps 174 MB
for backward (2.7 such tensors) plus 128 MB of returned clones, and takes 0.88 s forward + backward;
:class:`KANLinear` keeps 11 MB and takes 0.16 s, and gives the same outputs (4.8e-7) with pykan's parameters copied
in. Scaled to 1.6 M rows: about 118 GB for pykan against 4.4 GB. Importing pykan also imports its symbolic tools
(sympy, scikit-learn, matplotlib, pandas). :class:`KANLinear` (as efficient-kan does) never forms per-edge outputs:
it evaluates the G + k bases per input, (rows, in, G + k), and contracts them with the coefficients in one matmul,
``F.linear(B.flatten(1), c.flatten(1))``; under autograd the Cox-de Boor recursion is checkpointed (recomputed in
backward), which is what brings the kept memory from 98 MB to 11 MB above. Same function class (pykan's ``scale_sp``
is folded into c); we drop what pykan adds for symbolic regression (grid updates from samples, pruning masks,
symbolic fronts).

Where we filled in (the poster names the K-Gate but not its form):
    - The gate is ``sigmoid(KAN(LayerNorm(x)))`` per position (channels first, like a 1x1 convolution): sigmoid
      gives the bounded (0, 1) gate of the usual gating; LayerNorm over channels puts the inputs on the spline grid
      (features of any scale would otherwise fall outside it, where only the SiLU branch acts);
    - grid range (-2, 2) for the gate (the LayerNorm'd inputs lie mostly there), G = 5 intervals, order k = 3 (cubic),
      pykan's and efficient-kan's defaults for G and k; one KAN layer by default (``hidden_channels`` adds a second);
    - initialisation: the base weights as ``nn.Linear``'s, the spline coefficients N(0, 0.1^2 / in_features), so a
      fresh layer is close to a SiLU-linear one (pykan's small ``noise_scale`` idea);
    - the ablation's gate, :class:`SigmoidMLPGate`, is ``sigmoid(Linear(GELU(Linear(LayerNorm(x)))))`` with the same
      normalisation, input and output widths, so the comparison changes only the nonlinearity (its parameters differ:
      a KAN edge has G + k + 1 = 9 of them, so one 2C -> 2C KAN layer has 36 C^2 weights, the MLP with hidden width
      2C has 8 C^2).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


class KANLinear(nn.Module):
    """A B-spline KAN layer on the last dimension: ``y_o = sum_i [w_oi SiLU(x_i) + sum_c c_oic B_c(x_i)]``.

    The grid is uniform over ``grid_range`` with ``grid_size`` intervals, extended by ``spline_order`` knots on
    each side, so the ``grid_size + spline_order`` bases sum to 1 inside ``grid_range`` and are 0 beyond the extended
    knots (there only the SiLU branch acts). Bases by the Cox-de Boor recursion.

    Args:
        in_features: input width.
        out_features: output width.
        grid_size: G, grid intervals over ``grid_range``.
        spline_order: k (3: cubic).
        grid_range: (low, high) of the grid.
        spline_init_scale: std of the initial coefficients, times 1 / sqrt(in_features).

    Example:
        >>> kan = KANLinear(4, 3)
        >>> kan(torch.randn(2, 5, 4)).shape, kan.spline_weight.shape  # (out, in, G + k) coefficients
        (torch.Size([2, 5, 3]), torch.Size([3, 4, 8]))
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5, spline_order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), spline_init_scale: float = 0.1) -> None:
        super().__init__()
        if grid_size < 1 or spline_order < 0:
            raise ValueError(f"need grid_size >= 1 and spline_order >= 0, got {grid_size}, {spline_order}")
        low, high = float(grid_range[0]), float(grid_range[1])
        if not high > low:
            raise ValueError(f"grid_range must be (low, high) with high > low, got {grid_range}")
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        step = (high - low) / grid_size
        knots = low + step * torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32)
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())  # (in, G + 2k + 1)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5))  # as nn.Linear
        nn.init.normal_(self.spline_weight, std=spline_init_scale / math.sqrt(in_features))

    def b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, in, G + k): the B-spline bases of every input on its grid (Cox-de Boor)."""
        grid = self.grid.to(x.dtype)
        x = x.unsqueeze(-1)
        bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)  # order 0: (N, in, G + 2k)
        for p in range(1, self.spline_order + 1):
            left = (x - grid[:, : -(p + 1)]) / (grid[:, p:-1] - grid[:, : -(p + 1)])
            right = (grid[:, p + 1:] - x) / (grid[:, p + 1:] - grid[:, 1:-p])
            bases = left * bases[..., :-1] + right * bases[..., 1:]
        return bases

    @torch.jit.unused
    def _b_splines_recomputed(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`b_splines` under activation checkpointing: autograd keeps x (N, in) and recomputes the recursion's
        intermediates in backward, instead of keeping about 3 (k + 1) tensors of (N, in, G + 2k) for it."""
        return checkpoint(self.b_splines, x, use_reentrant=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected last dimension {self.in_features}, got {tuple(x.shape)}")
        flat = x.reshape(-1, self.in_features)
        base = F.linear(F.silu(flat), self.base_weight)
        if torch.is_grad_enabled() and not torch.jit.is_scripting():
            bases = self._b_splines_recomputed(flat)
        else:
            bases = self.b_splines(flat)
        spline = F.linear(bases.flatten(1), self.spline_weight.flatten(1))
        return (base + spline).reshape(x.shape[:-1] + (self.out_features,))


def _channels_last(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.ndim < 2 or x.shape[1] != channels:
        raise ValueError(f"expected (B, {channels}, ...) channels first, got {tuple(x.shape)}")
    return x.movedim(1, -1)


class KANGate(nn.Module):
    """K-Gate: ``g = sigmoid(KAN(LayerNorm(x)))`` at every position, channels first; g in [0, 1] (open interval but for
    float saturation), differentiable in x and in every spline coefficient.

    Args:
        in_channels: channels of the gate's input (in C2Seg's fusion: the two paths concatenated, 2C).
        out_channels: gate channels (2C: one gate per path and channel).
        hidden_channels: width of a second KAN layer's input; None: one KAN layer.
        grid_size: G of the KAN layers.
        spline_order: k of the KAN layers.
        grid_range: spline grid range (inputs are LayerNorm'd first).

    Example:
        >>> gate = KANGate(in_channels=8, out_channels=8)
        >>> g = gate(torch.randn(2, 8, 4, 4) * 100)
        >>> g.shape, bool(g.min() >= 0 and g.max() <= 1)
        (torch.Size([2, 8, 4, 4]), True)
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None, grid_size: int = 5,
                 spline_order: int = 3, grid_range: tuple[float, float] = (-2.0, 2.0)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.norm = nn.LayerNorm(in_channels)
        widths = [in_channels] + ([hidden_channels] if hidden_channels else []) + [out_channels]
        self.layers = nn.Sequential(*[KANLinear(a, b, grid_size, spline_order, grid_range)
                                      for a, b in zip(widths[:-1], widths[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_channels, *spatial) -> gate (B, out_channels, *spatial) in [0, 1]."""
        h = self.layers(self.norm(_channels_last(x, self.in_channels)))
        return torch.sigmoid(h).movedim(-1, 1)


class SigmoidMLPGate(nn.Module):
    """The ablation's gate (K-Gate replaced by a sigmoid MLP gate): ``sigmoid(W_2 GELU(W_1 LayerNorm(x)))`` per
    position.

    Args:
        in_channels: channels of the gate's input.
        out_channels: gate channels.
        hidden_channels: MLP hidden width (default: ``in_channels``).

    Example:
        >>> SigmoidMLPGate(in_channels=8, out_channels=4)(torch.randn(2, 8, 3, 3)).shape
        torch.Size([2, 4, 3, 3])
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        hidden = hidden_channels or in_channels
        self.norm = nn.LayerNorm(in_channels)
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.GELU(), nn.Linear(hidden, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_channels, *spatial) -> gate (B, out_channels, *spatial) in [0, 1]."""
        return torch.sigmoid(self.mlp(self.norm(_channels_last(x, self.in_channels)))).movedim(-1, 1)
