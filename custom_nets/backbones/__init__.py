"""Image encoders through timm: the trainable backbones (``features_only``), frozen teachers, and their weights."""

from .timm_backbones import FrozenViTTeacher, create_image_encoder, ensure_pretrained_weights
from .weights import ENCODER_INITS, encoder_pretrained, initialize_encoder, load_encoder_weights

__all__ = ["ENCODER_INITS", "FrozenViTTeacher", "create_image_encoder", "encoder_pretrained", "ensure_pretrained_weights",
           "initialize_encoder", "load_encoder_weights"]
