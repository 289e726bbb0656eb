"""An inferer that brings the report sentence to any MONAI inferer.

MONAI's inferers call ``network(window, *args, **kwargs)``; MONAI Label's stock ``monaibundle`` app calls
``inferer(image, network)`` with the image alone. :class:`TextInferer` holds the frozen, cached
:class:`~custom_nets.text.TextEncoder`, encodes the sentence (from the call, or the ``prompt`` set in the
config, e.g. ``displayable_configs#prompt``) and runs the wrapped inferer image by image, giving every window
or slice of an image that image's text tensors (expanded to the window batch). With no sentence, the
networks' null-text path runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

from custom_nets.text.encoder import TextEncoder
from custom_nets.text.prompts import clean_sentence


class TextInferer(Inferer):
    """Wrap ``inferer`` so that the network also receives ``text_hidden`` and ``text_mask``.

    Args:
        text_encoder: the frozen encoder (None: image only, the network's null text).
        inferer: any MONAI inferer (``SimpleInferer``, ``SlidingWindowInferer``, ``SliceInferer``).
        prompt: default sentence when a call gives none (e.g. ``"@displayable_configs#prompt"``); empty or
            None means no text.

    Example (a random 4-layer, 32-wide BERT and a tiny HiMix, offline; a ``None`` sentence runs the null text):
        >>> from custom_nets.nets import HiMix
        >>> network = HiMix(in_channels=1, backbone_kwargs={"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)},
        ...                 text_hidden_size=32, text_num_layers=4, num_heads=2).eval()
        >>> inferer = TextInferer(TextEncoder("tiny-random-bert", max_length=24), SimpleInferer())
        >>> text = ["Unilateral pulmonary infection, one infected area, upper left lung.", None]
        >>> with torch.no_grad():
        ...     logits = inferer(torch.randn(2, 1, 64, 64), network, text=text)
        >>> logits.shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, text_encoder: TextEncoder | None, inferer: Inferer | None = None, prompt: str | None = None) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.prompt = prompt

    def sentences(self, batch_size: int, text: str | Sequence[str] | None) -> list[str | None]:
        """One sentence (or None: no text) per image, cleaned (:func:`~custom_nets.text.clean_sentence`); a single
        string is shared by the batch."""
        text = self.prompt if text is None else text
        if text is None or isinstance(text, str):
            return [clean_sentence(text or "") or None] * batch_size
        if len(text) != batch_size:
            raise ValueError(f"{len(text)} sentences for a batch of {batch_size} images")
        return [clean_sentence(s) or None if isinstance(s, str) else None for s in text]

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        *args: Any,
        text: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        outputs = []
        for i, sentence in enumerate(self.sentences(inputs.shape[0], text)):
            if sentence is None or self.text_encoder is None:
                outputs.append(self.inferer(inputs[i : i + 1], network, *args, **kwargs))
                continue
            hidden, mask = self.text_encoder([sentence])
            hidden, mask = hidden.to(inputs.device), mask.to(inputs.device)

            def with_text(window: torch.Tensor, *a: Any, _h=hidden, _m=mask, **kw: Any) -> torch.Tensor:
                n = window.shape[0]
                return network(window, *a, text_hidden=_h.expand(n, -1, -1, -1), text_mask=_m.expand(n, -1), **kw)

            outputs.append(self.inferer(inputs[i : i + 1], with_text, *args, **kwargs))
        return torch.cat(outputs, dim=0)
