"""The ``prepare_batch`` every bundle's trainer, evaluator and inferer use.

It encodes ``batch["text"]`` (a list of sentences after collation) with the frozen, cached
:class:`~custom_nets.text.TextEncoder` and hands the network ``text_hidden`` and ``text_mask`` as keyword
arguments, so the call becomes ``network(image, text_hidden=..., text_mask=...)`` in MONAI's
``SupervisedTrainer``/``SupervisedEvaluator`` (whose iteration unpacks ``(inputs, targets, args, kwargs)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines import PrepareBatch

from custom_nets.text.encoder import TextEncoder


def _image_and_label(
    batchdata: Mapping[str, Any], image_key: str, label_key: str, device: Any, non_blocking: bool, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's image and (optional) label on ``device``."""
    if not isinstance(batchdata, Mapping) or image_key not in batchdata:
        raise ValueError(f"the batch must be a dict with key '{image_key}'")
    image = batchdata[image_key].to(device=device, non_blocking=non_blocking, **kwargs)
    label = batchdata.get(label_key)
    if isinstance(label, torch.Tensor):
        label = label.to(device=device, non_blocking=non_blocking, **kwargs)
    return image, label


class PrepareBatchWithText(PrepareBatch):
    """Turn a batch ``{"image", "label", "text"}`` into ``(image, label, (), {"text_hidden", "text_mask"})``.

    Args:
        text_encoder: the frozen encoder; None for image-only networks (then ``(image, label)`` is returned
            and the text is not encoded at all).
        image_key: key of the image batch.
        label_key: key of the label batch; a batch without it gives ``label=None`` (inference).
        text_key: key of the sentences.
        text_dropout: probability of dropping a sample's sentence during training; a dropped sample gets an
            all-zero ``text_mask`` row, which the networks read as "no text" and answer with their learned
            null-text embedding. Keep 0 for evaluation and inference.
        seed: seed of the dropout draws (reproducible runs).

    Example (JSON config)::

        "prepare_batch": {"_target_": "custom_nets.engines.PrepareBatchWithText",
                          "text_encoder": "@text_encoder", "text_dropout": 0.1}
    """

    def __init__(
        self,
        text_encoder: TextEncoder | None = None,
        image_key: str = "image",
        label_key: str = "label",
        text_key: str = "text",
        text_dropout: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= text_dropout <= 1.0:
            raise ValueError(f"text_dropout must lie in [0, 1], got {text_dropout}")
        self.text_encoder = text_encoder
        self.image_key, self.label_key, self.text_key = image_key, label_key, text_key
        self.text_dropout = text_dropout
        self._generator = torch.Generator().manual_seed(seed)

    def encode(self, sentences: Sequence[str], device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """``{"text_hidden", "text_mask"}`` for a list of sentences, on ``device``."""
        if self.text_encoder is None:
            raise ValueError("this PrepareBatchWithText has no text_encoder")
        hidden, mask = self.text_encoder(list(sentences))
        if self.text_dropout > 0:
            drop = torch.rand(len(mask), generator=self._generator) < self.text_dropout
            mask = mask.masked_fill(drop[:, None].to(mask.device), 0)
        return {"text_hidden": hidden.to(device), "text_mask": mask.to(device)}

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[torch.Tensor, torch.Tensor | None, tuple, dict]:
        image, label = _image_and_label(batchdata, self.image_key, self.label_key, device, non_blocking, **kwargs)
        if self.text_encoder is None:
            return image, label
        if self.text_key not in batchdata:
            raise KeyError(f"the batch has no '{self.text_key}' key; this network needs a sentence per image")
        return image, label, (), self.encode(batchdata[self.text_key], device)


class PrepareBatchWithSentences(PrepareBatch):
    """Turn a batch into ``(image, label, (), {"text": sentences or None})`` for a text-aware inferer.

    Inference configs use this with :class:`~custom_nets.inferers.TextInferer`, which encodes the sentences
    itself (and falls back to its configured prompt when the batch has no ``text``), so the same inferer
    serves datalists, ``displayable_configs#prompt`` and MONAI Label requests.

    Args:
        image_key: key of the image batch.
        label_key: key of the label batch (optional).
        text_key: key of the sentences; a batch without it passes ``text=None``.
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", text_key: str = "text") -> None:
        self.image_key, self.label_key, self.text_key = image_key, label_key, text_key

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict]:
        image, label = _image_and_label(batchdata, self.image_key, self.label_key, device, non_blocking, **kwargs)
        text = batchdata.get(self.text_key)
        return image, label, (), {"text": list(text) if text is not None else None}


class PrepareBatchWithPerturbedView(PrepareBatch):
    """TAMISeg phase I: stack each image and its perturbed copy on the batch axis, ``(cat[I, I'], cat[G, G])``.

    The network then runs once on 2B images, and :class:`custom_nets.losses.ConsistencyAwareLoss` splits the
    predictions back into P_a (first B) and P_b (last B). A batch without the perturbed key (validation) gives
    the clean images alone.

    Args:
        image_key: key of the clean images.
        view_key: key of the perturbed copies (made by the data pipeline).
        label_key: key of the masks.
    """

    def __init__(self, image_key: str = "image", view_key: str = "image_perturbed", label_key: str = "label") -> None:
        self.image_key, self.view_key, self.label_key = image_key, view_key, label_key

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image, label = _image_and_label(batchdata, self.image_key, self.label_key, device, non_blocking, **kwargs)
        if self.view_key not in batchdata:
            return image, label
        view = batchdata[self.view_key].to(device=device, non_blocking=non_blocking, **kwargs)
        if view.shape != image.shape:
            raise ValueError(f"'{self.view_key}' has shape {tuple(view.shape)}, '{self.image_key}' {tuple(image.shape)}")
        return torch.cat([image, view]), (torch.cat([label, label]) if label is not None else None)
