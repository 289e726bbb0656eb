"""Report-sentence utilities: lung-zone vocabulary, QaTa-COV19-style sentences, laterality swap.

The sentences follow the style of the QaTa-COV19 text annotations released with LViT, e.g.
"Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
Left and right are the *patient's* sides: in a radiograph the patient's left lung is on the image's right.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence

LEVELS = ("upper", "middle", "lower")
SIDES = ("left", "right")
#: the six lung zones, as (level, side) pairs, side being the patient's side
ZONES: tuple[tuple[str, str], ...] = tuple((level, side) for side in SIDES for level in LEVELS)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")

_LATERALITY = re.compile(r"\b(left|right)\b", flags=re.IGNORECASE)
#: zone and lobe abbreviations (RUZ, LLZ, RUL, ...): side, level, Zone or Lobe; upper case only, as reports write them
_ABBREVIATED_PLACE = re.compile(r"\b([RL])([UML])([ZL])\b")
_ZONE = re.compile(r"\b(upper|middle|lower)\s+(left|right)\b", flags=re.IGNORECASE)


def clean_sentence(text: object) -> str:
    """A sentence as the text encoder should see it: Unicode NFC, format and control characters (zero-width
    spaces, byte-order marks, direction marks, NUL) removed, runs of white space made one space, ends stripped.

    Empty afterwards means no sentence. Anything but a string is a TypeError naming its type and value.

    Example:
        >>> clean_sentence("  Upper\u200b left\tlung. ")
        'Upper left lung.'
        >>> clean_sentence("\u200b\u200b")
        ''
    """
    if not isinstance(text, str):
        raise TypeError(f"a sentence must be a string, got {type(text).__name__} {text!r}")
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return " ".join(text.split())


def _match_case(word: str, template: str) -> str:
    if template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word.capitalize()
    return word


def swap_laterality(sentence: str) -> str:
    """Swap the words "left" and "right" (whole words, case kept) and the sides of zone and lobe abbreviations
    (RUZ <-> LUZ, RLL <-> LLL; RML, which has no left twin, becomes LMZ, the left middle zone); nothing else changes.

    This is what a horizontal flip of the image does to the truth of a report sentence.

    Example:
        >>> swap_laterality("Unilateral pulmonary infection, one infected area, upper Left lung.")
        'Unilateral pulmonary infection, one infected area, upper Right lung.'
        >>> swap_laterality("Opacities in RUZ and LLL; RML clear.")
        'Opacities in LUZ and RLL; LMZ clear.'
    """

    def repl(m: re.Match) -> str:
        word = m.group(0)
        return _match_case("right" if word.lower() == "left" else "left", word)

    def abbreviation(m: re.Match) -> str:
        side, level, kind = m.groups()
        side = "L" if side == "R" else "R"
        return side + level + ("Z" if (side, level) == ("L", "M") else kind)

    return _ABBREVIATED_PLACE.sub(abbreviation, _LATERALITY.sub(repl, sentence))


_LEVEL_WORD = re.compile(r"\b(upper|middle|mid|lower)\b", flags=re.IGNORECASE)


def move_zones(sentence: str, levels: dict[str, str], swap_sides: bool = False) -> str:
    """The sentence with its level words mapped by ``levels`` ("upper" -> "lower"; "mid" stays "mid" where the
    level stays middle), left and right swapped when ``swap_sides``, and zone and lobe abbreviations changed to
    match (RUZ -> RLZ; a left middle lobe, which does not exist, becomes LMZ); wording and case otherwise kept.

    Every named zone (level, side) becomes (levels[level], other side if ``swap_sides``): a counterfactual in the
    sentence's own phrasing. The caller checks what the result parses to (a level word outside a place moves too).

    Example:
        >>> move_zones("Opacities: LUZ, RLZ.", {"upper": "middle", "lower": "upper"})
        'Opacities: LMZ, RUZ.'
        >>> move_zones("Consolidation in the left mid zone.", {"middle": "lower"}, swap_sides=True)
        'Consolidation in the right lower zone.'
    """
    unknown = sorted(set(levels) - set(LEVELS) | set(levels.values()) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; levels are {LEVELS}")

    def level(m: re.Match) -> str:
        word = m.group(0)
        old = "middle" if word.lower() == "mid" else word.lower()
        new = levels.get(old, old)
        return word if new == old else _match_case(new, word)

    def abbreviation(m: re.Match) -> str:
        side, lv, kind = m.groups()
        side = ("L" if side == "R" else "R") if swap_sides else side
        lv = {name[0].upper(): levels.get(name, name) for name in LEVELS}[lv][0].upper()
        return side + lv + ("Z" if (side, lv) == ("L", "M") else kind)

    out = _ABBREVIATED_PLACE.sub(abbreviation, _LEVEL_WORD.sub(level, sentence))
    if swap_sides:
        out = _LATERALITY.sub(lambda m: _match_case("right" if m.group(0).lower() == "left" else "left", m.group(0)), out)
    return out


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



def as_zones(candidates: Sequence[tuple[str, str] | str] | None) -> list[tuple[str, str]]:
    """Zones given as (level, side) pairs or "level side" strings (a datalist's ``distractor_zones``), as pairs.

    Example:
        >>> as_zones(["Upper left", ("lower", "right")])
        [('upper', 'left'), ('lower', 'right')]
    """
    return [tuple(z.lower().split()) if isinstance(z, str) else tuple(z) for z in candidates or []]


def replaced_zone_sentence(
    sentence: str, candidates: Sequence[tuple[str, str]] | None = None, seed: int = 0
) -> str | None:
    """A counterfactual sentence: as many zones as ``sentence`` names, none of them named by it.

    Args:
        sentence: the true sentence.
        candidates: zones to draw from first, as (level, side) pairs or "level side" strings (e.g. the
            look-alike distractors of a demo image); the rest of the six zones fill up when there are too few.
        seed: seed of the draw.

    Returns None when the sentence names no zone (nothing to replace).

    Example:
        >>> replaced_zone_sentence("Unilateral pulmonary infection, one infected area, upper left lung.",
        ...                        [("lower", "right")])
        'Unilateral pulmonary infection, one infected area, lower right lung.'
    """

    named = parse_zones(sentence)
    if not named:
        return None
    zones = as_zones(candidates)
    unknown = [z for z in zones if z not in ZONES]
    if unknown:
        raise ValueError(f"unknown lung zone(s) {unknown}; zones are {ZONES}")
    preferred = [z for z in zones if z not in named]
    rest = [z for z in ZONES if z not in named and z not in preferred]
    rng = random.Random(seed)
    rng.shuffle(preferred)
    rng.shuffle(rest)
    pool = preferred + rest
    return zone_sentence(sorted(pool[: len(named)], key=ZONES.index))
