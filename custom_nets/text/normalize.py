"""Normalisation before the text encoder: what is free to undo in a report sentence, the same at training and inference.

Optional (``TextEncoder(normalize=True)``, the bundles' ``text_normalization``): every sentence that reaches the
encoder, in training, evaluation, the bundle inferer, MONAI Label and ``scripts/infer_dicom.py`` alike, passes through
:func:`normalize_sentence` inside :class:`~custom_nets.text.TextEncoder`, so no path can see other text than the
network trained on. It

- cleans the string (:func:`~custom_nets.text.clean_sentence`: control and zero-width characters, white space runs);
- expands zone and lobe abbreviations to the words of the training sentences: ``LUZ`` -> "upper left lung", ``RLL``
  -> "right lower lobe" (the table: :data:`EXPANSIONS`);
- writes a sentence typed in capitals in sentence case ("BILATERAL ..." -> "Bilateral ...").

It changes no meaning: the parsed constraints (count, sides, zones) of the result are those of the input
(``tests/test_text_augmentation.py`` checks it over every demo sentence).
"""

from __future__ import annotations

import re

from custom_nets.text.constraints import ABBREVIATIONS
from custom_nets.text.prompts import clean_sentence

#: abbreviation -> words: zones as the training sentences name them ("upper left lung"), lobes as lobes
#: (from the parser's table, :data:`custom_nets.text.constraints.ABBREVIATIONS`)
EXPANSIONS: dict[str, str] = {abbr: f"{level} {side} lung" if abbr.endswith("Z") else f"{side} {level} lobe"
                              for abbr, (level, side) in ABBREVIATIONS.items()}
_ABBREVIATION = re.compile(r"\b(" + "|".join(EXPANSIONS) + r")\b")


def expand_abbreviations(sentence: str) -> str:
    """Zone and lobe abbreviations written out.

    Example:
        >>> expand_abbreviations("LUZ and RLZ opacities.")
        'upper left lung and lower right lung opacities.'
    """
    return _ABBREVIATION.sub(lambda m: EXPANSIONS[m.group(1)], sentence)


def normalize_sentence(sentence: str) -> str:
    """The sentence cleaned, its abbreviations expanded, and in sentence case when it was typed in capitals.

    Example:
        >>> normalize_sentence("  BILATERAL PULMONARY INFECTION, TWO INFECTED AREAS, LUZ AND RLZ. ")
        'Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.'
    """
    text = clean_sentence(sentence)
    letters = [c for c in _ABBREVIATION.sub("", text) if c.isalpha()]
    shouted = len(letters) >= 8 and all(c.isupper() for c in letters)
    text = expand_abbreviations(text)
    if shouted:
        text = text.lower()
    return text[:1].upper() + text[1:]
