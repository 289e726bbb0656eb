"""Image transforms the bundles share: channels brought to the network's count, image and mask sizes checked."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


def _source(d: Mapping, key: Hashable) -> str:
    value = d.get(key)
    meta = getattr(value, "meta", None) or {}
    return str(meta.get("filename_or_obj", key))


class CheckImageLabelSized(MapTransform):
    """Raise a ValueError naming both files when image and label spatial sizes differ (after loading)."""

    def __init__(self, keys: KeysCollection = ("image", "label"), allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        present = list(self.key_iterator(d))
        shapes = {k: tuple(d[k].shape[1:]) for k in present}
        if len(set(shapes.values())) > 1:
            detail = ", ".join(f"{k} {_source(d, k)} has size {shapes[k]}" for k in present)
            raise ValueError(f"image/mask size mismatch: {detail}")
        return d


class EnsureChannelsd(MapTransform):
    """Bring channel-first images to ``channels`` channels: grey to RGB by repetition, RGB(A) to grey by the
    mean of the colour channels. Masks use ``channels=1`` (any non-zero channel is foreground then: max).

    Args:
        keys: keys to convert.
        channels: 1 or 3.
        reduce: ``"mean"`` (images) or ``"max"`` (masks) when going to one channel.
    """

    def __init__(self, keys: KeysCollection, channels: int = 1, reduce: str = "mean", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        self.channels, self.reduce = channels, reduce

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            c = img.shape[0]
            if c == self.channels:
                continue
            if c == 1 and self.channels == 3:
                d[key] = img.repeat(3, *([1] * (img.ndim - 1)))
            elif c in (3, 4) and self.channels == 1:
                colour = img[:3]
                d[key] = colour.mean(0, keepdim=True) if self.reduce == "mean" else colour.amax(0, keepdim=True)
            else:
                raise ValueError(f"{_source(d, key)}: cannot turn {c} channels into {self.channels} (key '{key}')")
        return d
