from .feature_attention import EfficientChannelAttention, SpatialAttention
from .layer_fusion import DynamicLayerFusion, split_layers
from .spectral import GaussianSpectrumRefinement
from .text_attention import (
    TextCrossAttention,
    TextGuidedAttentionLayer,
    TextTokenProjection,
    fill_missing_text,
    sinusoidal_2d,
)

__all__ = [
    "DynamicLayerFusion",
    "EfficientChannelAttention",
    "GaussianSpectrumRefinement",
    "SpatialAttention",
    "TextCrossAttention",
    "TextGuidedAttentionLayer",
    "TextTokenProjection",
    "fill_missing_text",
    "sinusoidal_2d",
    "split_layers",
]
