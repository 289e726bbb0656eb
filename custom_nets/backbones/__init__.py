"""Image encoders through timm: the trainable backbones (``features_only``) and frozen teachers."""

from .timm_backbones import FrozenViTTeacher, create_image_encoder

__all__ = ["FrozenViTTeacher", "create_image_encoder"]
