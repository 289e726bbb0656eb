from .bcam import BidirectionalCrossAttention
from .feature_attention import EfficientChannelAttention, SpatialAttention
from .himix_code import (
    NyquistGaussianFilter,
    PrePostNormAttentionLayer,
    StaticLayerFusion,
    TokenMixProjection,
    sinusoidal_1d,
)
from .kan import KANGate, KANLinear, SigmoidMLPGate
from .layer_fusion import DynamicLayerFusion, split_layers
from .spectral import GaussianSpectrumRefinement
from .text_vision_prompt import TextVisionFusion, TextVisionPrompt, align_tokens
from .text_attention import (
    check_sine_channels,
    TextCrossAttention,
    TextGuidedAttentionLayer,
    TextTokenProjection,
    fill_missing_text,
    masked_token_mean,
    sinusoidal_2d,
)

__all__ = [
    "BidirectionalCrossAttention",
    "DynamicLayerFusion",
    "EfficientChannelAttention",
    "GaussianSpectrumRefinement",
    "KANGate",
    "KANLinear",
    "NyquistGaussianFilter",
    "PrePostNormAttentionLayer",
    "SigmoidMLPGate",
    "SpatialAttention",
    "StaticLayerFusion",
    "TextCrossAttention",
    "TextGuidedAttentionLayer",
    "TextTokenProjection",
    "TextVisionFusion",
    "TextVisionPrompt",
    "TokenMixProjection",
    "align_tokens",
    "check_sine_channels",
    "fill_missing_text",
    "masked_token_mean",
    "sinusoidal_1d",
    "sinusoidal_2d",
    "split_layers",
]
