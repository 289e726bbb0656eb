"""Report-sentence utilities: lung-zone vocabulary, QaTa-COV19-style sentences, laterality swap.

The sentences follow the style of the QaTa-COV19 text annotations released with LViT, e.g.
"Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
Left and right are the *patient's* sides: in a radiograph the patient's left lung is on the image's right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LEVELS = ("upper", "middle", "lower")
SIDES = ("left", "right")
#: the six lung zones, as (level, side) pairs, side being the patient's side
ZONES: tuple[tuple[str, str], ...] = tuple((level, side) for side in SIDES for level in LEVELS)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")

_LATERALITY = re.compile(r"\b(left|right)\b", flags=re.IGNORECASE)
_ZONE = re.compile(r"\b(upper|middle|lower)\s+(left|right)\b", flags=re.IGNORECASE)


def _match_case(word: str, template: str) -> str:
    if template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word.capitalize()
    return word


def swap_laterality(sentence: str) -> str:
    """Swap the words "left" and "right" (whole words, case kept); every other word stays.

    This is what a horizontal flip of the image does to the truth of a report sentence.

    Example:
        >>> swap_laterality("Unilateral pulmonary infection, one infected area, upper Left lung.")
        'Unilateral pulmonary infection, one infected area, upper Right lung.'
    """

    def repl(m: re.Match) -> str:
        word = m.group(0)
        return _match_case("right" if word.lower() == "left" else "left", word)

    return _LATERALITY.sub(repl, sentence)


def zone_sentence(zones: Sequence[tuple[str, str]]) -> str:
    """A QaTa-style sentence naming the given (level, side) zones, in the order given."""
    if not zones:
        return "No pulmonary infection, no infected area."
    sides = {side for _, side in zones}
    extent = "Bilateral" if len(sides) == 2 else "Unilateral"
    n = len(zones)
    areas = f"{NUMBER_WORDS[n]} infected area{'s' if n > 1 else ''}"
    places = " and ".join(f"{level} {side} lung" for level, side in zones)
    return f"{extent} pulmonary infection, {areas}, {places}."


def parse_zones(sentence: str) -> list[tuple[str, str]]:
    """The (level, side) zones a sentence names, in order of appearance."""
    return [(m.group(1).lower(), m.group(2).lower()) for m in _ZONE.finditer(sentence)]

