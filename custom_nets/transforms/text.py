"""Dictionary transforms for the report sentence: kept true to a flipped image, recorded, read from a sidecar."""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandFlipd, Transform

from custom_nets.text.prompts import clean_sentence, swap_laterality


class RandFlipWithTextd(RandFlipd):
    """Random flip across the patient's left-right axis that swaps "left"/"right" in the sentence with it.

    In a radiograph the patient's left is on the image's right; a horizontal flip moves each lung to the
    other side, so a sentence naming "upper left lung" must then say "upper right lung" to stay true.

    Args:
        keys: image-like keys to flip (image, label).
        text_key: key of the sentence to rewrite when the flip happens.
        prob: probability of flipping.
        spatial_axis: the left-right axis. MONAI's readers index 2D images as (x, y) (PIL, ITK and NIfTI
            alike), so the image's horizontal axis is spatial axis 0, the default.
        allow_missing_keys: as in MONAI.
    """

    def __init__(
        self,
        keys: KeysCollection,
        text_key: str = "text",
        prob: float = 0.5,
        spatial_axis: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob=prob, spatial_axis=spatial_axis, allow_missing_keys=allow_missing_keys)
        self.text_key = text_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict:
        d = super().__call__(data, lazy=lazy)
        if self._do_transform and self.text_key in d:
            d[self.text_key] = swap_laterality(d[self.text_key])
        return d


class SwapLateralityd(MapTransform):
    """Swap "left"/"right" in text keys (no image change): a counterfactual sentence for checks."""

    def __call__(self, data: Mapping[Hashable, str]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = swap_laterality(d[key])
        return d


class RecordTextd(Transform):
    """Record in ``d[result_key]`` which sentence the network was given, for the caller to see.

    MONAI Label returns ``d["result"]`` as the JSON part of its response; our inference configs add this as
    the last post-transform so that an annotator (or a script) sees whether the mask was guided by a
    sentence or made by the null-text path.

    Args:
        text_key: the item's own sentence (a datalist's ``text``); it wins over ``prompt``, as in
            :class:`~custom_nets.inferers.TextInferer`.
        prompt: the configured prompt (``"@displayable_configs#prompt"``).
        result_key: where to write ``{"text_prompt": sentence, "null_text": bool}``.
    """

    def __init__(self, text_key: str = "text", prompt: str | None = None, result_key: str = "result") -> None:
        self.text_key, self.prompt, self.result_key = text_key, prompt, result_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        text = d.get(self.text_key)
        sentence = clean_sentence(text) if isinstance(text, str) else ""
        sentence = sentence or clean_sentence(self.prompt or "")  # as TextInferer chooses
        result = dict(d.get(self.result_key) or {})
        result.update({"text_prompt": sentence, "null_text": not sentence})
        d[self.result_key] = result
        return d


class SidecarTextd(Transform):
    """Give an item without a sentence the one its sidecar file holds (MONAI Label training).

    MONAI Label's ``BundleTrainTask`` builds the datalist from its datastore with ``image`` and ``label``
    only. The sentences then live in a sidecar JSON file in the studies folder, ``{image id: sentence}``,
    where the id is the image's file name without extension (MONAI Label's image id) or the full file
    name. Items that already have a sentence (our datalists) pass unchanged.

    Args:
        sidecar_name: file name of the sidecar, looked up in each image's folder.
        text_key: key of the sentence.
        image_key: key of the image path.
    """

    def __init__(self, sidecar_name: str = "sentences.json", text_key: str = "text", image_key: str = "image") -> None:
        self.sidecar_name, self.text_key, self.image_key = sidecar_name, text_key, image_key
        self._tables: dict[str, dict[str, str]] = {}

    def _table(self, folder: str) -> dict[str, str]:
        if folder not in self._tables:
            path = os.path.join(folder, self.sidecar_name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no sentence for the images of {folder}: sidecar {path} not found")
            with open(path) as f:
                table = json.load(f)
            if not isinstance(table, dict):
                raise ValueError(f"{path}: expected a JSON object {{image id: sentence}}")
            wrong = {k: v for k, v in table.items() if not isinstance(v, str)}
            if wrong:
                key, value = next(iter(wrong.items()))
                raise ValueError(f"{path}: the sentence of '{key}' is not a string but {type(value).__name__} {value!r}")
            self._tables[folder] = dict(table)
        return self._tables[folder]

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        text = d.get(self.text_key)
        if isinstance(text, str) and clean_sentence(text):
            return d
        image = str(d[self.image_key])
        folder, name = os.path.split(image)
        table = self._table(folder)
        image_id = name.split(".")[0]
        sentence = clean_sentence(table.get(image_id) or table.get(name) or "")
        if not sentence:
            raise KeyError(f"{os.path.join(folder, self.sidecar_name)}: no sentence for image id '{image_id}' ({image})")
        d[self.text_key] = sentence
        return d
