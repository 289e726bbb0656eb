"""One preprocessing for 2D images and CT volumes: a branch chosen by the image's number of spatial dimensions."""

from __future__ import annotations

import math

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import Compose, InvertibleTransform, MapTransform


#: the CT window centres and widths (HU) accepted: finite, and wide enough for any clinical window (metal included)
CT_WINDOW_CENTRE_RANGE = (-2000.0, 5000.0)
CT_WINDOW_MAX_WIDTH = 10000.0


def ct_window_range(centre: float | str, width: float | str) -> tuple[float, float]:
    """The HU range ``(low, high)`` of a CT window given as centre and width (strings from a UI are accepted).

    Both must be finite numbers: the centre within :data:`CT_WINDOW_CENTRE_RANGE`, the width in
    ``(0, CT_WINDOW_MAX_WIDTH]``; anything else is a ValueError naming the value (a NaN window would give an
    all-zero mask without a word). Booleans are refused, since ``True`` is not a window.

    Example:
        >>> ct_window_range(-600, 1500)  # lung window
        (-1350.0, 150.0)
    """
    values = []
    for name, value in (("centre", centre), ("width", width)):
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"CT window centre and width must be numbers (HU), got centre={centre!r}, width={width!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"CT window {name} must be a finite number of HU, got {value!r}")
        values.append(number)
    centre, width = values
    low, high = CT_WINDOW_CENTRE_RANGE
    if not low <= centre <= high:
        raise ValueError(f"CT window centre must be within [{low:g}, {high:g}] HU, got {centre}")
    if not width > 0:
        raise ValueError(f"CT window width must be > 0 HU, got {width}")
    if width > CT_WINDOW_MAX_WIDTH:
        raise ValueError(f"CT window width must be at most {CT_WINDOW_MAX_WIDTH:g} HU, got {width}")
    return centre - width / 2, centre + width / 2


class ImageOrVolumed(MapTransform, InvertibleTransform):
    """Apply ``image_transforms`` to 2D images (C, H, W) and ``volume_transforms`` to volumes (C, X, Y, Z).

    The branch is chosen from the first key's number of spatial dimensions, on the way in and on the way back
    (``Invertd`` with the enclosing ``Compose`` inverts the branch that ran), so one ``inference.json`` takes
    radiographs and CT volumes alike.

    Args:
        keys: the image key (the first one decides the branch).
        image_transforms: transforms (or a ``Compose``) for 2D images.
        volume_transforms: transforms (or a ``Compose``) for volumes.
    """

    def __init__(self, keys: KeysCollection, image_transforms: Sequence[Callable] | Compose,
                 volume_transforms: Sequence[Callable] | Compose, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        as_compose = lambda t: t if isinstance(t, Compose) else Compose(list(t))  # noqa: E731
        self.branches = {2: as_compose(image_transforms), 3: as_compose(volume_transforms)}

    def _branch(self, data: Mapping[Hashable, Any]) -> Compose | None:
        present = list(self.key_iterator(data))  # a missing key raises KeyError unless allow_missing_keys
        if not present:
            return None
        key = present[0]
        image = data[key]
        spatial_dims = image.ndim - 1  # channel first
        if spatial_dims not in self.branches:
            source = getattr(image, "meta", {}).get("filename_or_obj", key)
            raise ValueError(f"{source}: expected a 2D image (C, H, W) or a volume (C, X, Y, Z) under '{key}', "
                             f"got shape {tuple(image.shape)}")
        return self.branches[spatial_dims]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        branch = self._branch(data)
        return dict(data) if branch is None else branch(dict(data))

    def inverse(self, data: Mapping[Hashable, Any]) -> dict:
        branch = self._branch(data)
        if branch is None or not any(isinstance(t, InvertibleTransform) for t in branch.flatten().transforms):
            return dict(data)
        return branch.inverse(dict(data))
