from .encoder import TextEncoder, TextEncoderUnavailableError, TextFeatureCache
from .prompts import LEVELS, SIDES, ZONES, clean_sentence, parse_zones, swap_laterality, zone_sentence

__all__ = [
    "TextEncoder",
    "TextEncoderUnavailableError",
    "TextFeatureCache",
    "LEVELS",
    "SIDES",
    "ZONES",
    "clean_sentence",
    "parse_zones",
    "swap_laterality",
    "zone_sentence",
]
