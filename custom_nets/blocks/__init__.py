from .layer_fusion import DynamicLayerFusion, split_layers
from .spectral import GaussianSpectrumRefinement
from .text_attention import TextGuidedAttentionLayer, TextTokenProjection, sinusoidal_2d

__all__ = [
    "DynamicLayerFusion",
    "split_layers",
    "GaussianSpectrumRefinement",
    "TextGuidedAttentionLayer",
    "TextTokenProjection",
    "sinusoidal_2d",
]
