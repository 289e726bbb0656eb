"""Metrics that ``monai.metrics`` lacks: whether a mask obeys its report sentence."""

from custom_nets.metrics.consistency import (
    CHECKS,
    LungFields,
    MaskFindings,
    TextConsistencyHandler,
    TextMaskConsistencyMetric,
    lung_fields,
    mask_findings,
)

__all__ = ["CHECKS", "LungFields", "MaskFindings", "TextConsistencyHandler", "TextMaskConsistencyMetric", "lung_fields", "mask_findings"]
