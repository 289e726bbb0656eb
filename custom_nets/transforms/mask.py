"""Mask binarisation shared by the data-set converters and the bundles' load transforms.

The same rule must hold where a converter derives text from a mask and where a bundle trains on it, so
both call :func:`binarize`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

#: ``nonzero``: > 0 (LViT's rule; 0/1 and 0/255 masks); ``255``: == 255 only; ``half``: >= 128, for JPEG
#: masks (Kvasir-SEG) whose compression noise makes > 0 far too loose
MASK_RULES = ("nonzero", "255", "half")


def binarize(mask: np.ndarray | torch.Tensor, rule: str = "nonzero") -> np.ndarray | torch.Tensor:
    """A boolean mask of the same shape by ``rule`` (one of :data:`MASK_RULES`)."""
    if rule == "nonzero":
        return mask > 0
    if rule == "255":
        return mask == 255
    if rule == "half":
        return mask >= 128
    raise ValueError(f"mask rule must be one of {MASK_RULES}, got {rule!r}")


class BinarizeMaskd(MapTransform):
    """Binarise masks by a :data:`MASK_RULES` rule, to the input's float type (0. / 1.).

    Args:
        keys: mask keys.
        rule: ``"nonzero"`` (default), ``"255"`` or ``"half"``; a data set's converter names the rule it used.
    """

    def __init__(self, keys: KeysCollection, rule: str = "nonzero", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if rule not in MASK_RULES:
            raise ValueError(f"mask rule must be one of {MASK_RULES}, got {rule!r}")
        self.rule = rule

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            d[key] = binarize(mask, self.rule).to(mask.dtype if mask.is_floating_point() else torch.float32)
        return d
