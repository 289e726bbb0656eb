"""One preprocessing for 2D images and CT volumes: a branch chosen by the image's number of spatial dimensions."""

from __future__ import annotations


from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import Compose, InvertibleTransform, MapTransform


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
