"""What a report sentence says a lesion mask must look like: how many lesions, on which side, in which zones.

:func:`parse_constraints` reads the three kinds of constraint that QaTa-COV19 / MosMedData+ sentences (LViT's
text annotations) state, in their template wording and in the usual clinical variants:

- **count**: "one/two/three infected areas", "2 lesions", "a single opacity", "no infected area" (0);
- **laterality**: "bilateral" (both lungs), "unilateral" (one lung, side not said), "left/right lung";
- **zones**: "upper left lung", "lower zone of the right lung", "left lower lobe", and the abbreviations
  RUZ/RMZ/RLZ/LUZ/LMZ/LLZ (zones) and RUL/RML/RLL/LUL/LLL (lobes).

Left and right are the *patient's* sides. Runs of levels ("middle lower left lung", as in LViT's QaTa-COV19
text) name each level; "all/whole/entire left lung" names its three zones. A lobe is taken for the zone of the
same level (upper lobe -> upper zone; the right middle lobe -> middle zone): lobes and zones do not coincide on
a frontal radiograph, so this is an approximation, kept because the demo and QaTa speak of zones. Anything else
in the sentence (an unrelated normal finding, "pulmonary infection") states no constraint. A negated mention, in
its clause (up to , . ;), states nothing: "no right lung involvement", "left lung clear"; "no infected area"
is a count of 0 only when nothing else in the sentence names a lesion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from custom_nets.text.prompts import LEVELS, NUMBER_WORDS, SIDES

_NUMBERS = {w: i for i, w in enumerate(NUMBER_WORDS)} | {"single": 1, "solitary": 1, "a": 1, "an": 1}
_LESION = r"(?:infected\s+areas?|areas?\s+of\s+infection|lesions?|opacit(?:y|ies)|foci|focus|consolidations?|regions?|patch(?:es)?)"
_COUNT = re.compile(rf"\b(\d+|{'|'.join(_NUMBERS)})\s+(?:\w+\s+)?{_LESION}\b")
_NONE = re.compile(rf"\bno\s+(?:\w+\s+)?{_LESION}\b")
_LEVEL = r"(?:upper|middle|mid|lower|all|whole|entire)"
#: a run of levels: "upper", "upper and middle", "middle lower" (LViT's QaTa-COV19 text), "middle/lower"
_LEVELS = rf"{_LEVEL}(?:\s*(?:,|and|/|&|-)?\s*{_LEVEL})*"
_SIDE_WORD = r"(?:left|right)"
#: a place named by levels then a side: "upper left lung", "middle lower right", "upper and middle left lung"
PLACE = re.compile(rf"\b({_LEVELS})\s+({_SIDE_WORD})(?:\s+lungs?)?\b", flags=re.IGNORECASE)
#: "upper left lung", "upper and middle left zones", "middle/lower right"
_LEVEL_SIDE = re.compile(rf"\b({_LEVELS})\s+({_SIDE_WORD})\b")
#: "left upper lobe", "right lower zone", "left upper and lower lobes", "right upper and left lower lobes"
_SIDE_LEVEL = re.compile(rf"\b({_SIDE_WORD})\s+({_LEVELS})\b(?!\s+(?:left|right)\b)")
#: "the upper zone of the left lung", "lower part of the right lung"
_LEVEL_OF_SIDE = re.compile(rf"\b({_LEVELS})\s+(?:zones?|lobes?|fields?|parts?|thirds?|portions?)\s+of\s+(?:the\s+)?({_SIDE_WORD})\s+lung\b")
_SIDE_ONLY = re.compile(rf"\b({_SIDE_WORD})\s*-?\s*(?:lung|hemithorax|sided?)\b")
_NEGATED_BEFORE = re.compile(r"\b(?:no|without|not|free\s+of)\b[^,.;]*$")
_NEGATED_AFTER = re.compile(r"^[^,.;]*?\b(?:is\s+|are\s+|remains?\s+)?(?:clear|normal|spared|unremarkable|unaffected|uninvolved)\b")
#: zone and lobe abbreviations -> (level, side)
ABBREVIATIONS: dict[str, tuple[str, str]] = {
    f"{s[0].upper()}{lv[0].upper()}{kind}": (lv, s) for s in SIDES for lv in LEVELS for kind in ("Z", "L")
    if not (s == "left" and lv == "middle" and kind == "L")  # the left lung has no middle lobe
}
_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\b")


@dataclass(frozen=True)
class SentenceConstraints:
    """The constraints one sentence states; None where it states none of that kind.

    Attributes:
        count: number of lesions (0 for "no infected area").
        sides: the patient's sides that hold lesions, when the sentence says which.
        n_sides: 1 (unilateral) or 2 (bilateral), when it says how many but maybe not which.
        zones: the (level, side) zones that hold lesions, when it names zones.
    """

    count: int | None = None
    sides: frozenset[str] | None = None
    n_sides: int | None = None
    zones: frozenset[tuple[str, str]] | None = None

    @property
    def stated(self) -> bool:
        """Whether the sentence states any constraint at all."""
        return any(v is not None for v in (self.count, self.sides, self.n_sides, self.zones))

    def kept_by(self, other: SentenceConstraints) -> bool:
        """Whether ``other`` (a rewrite's constraints) says nothing else than these: the same zones where these name
        zones, and every count or side it states equal to these (it may leave out what the zones imply, as "Opacities:
        LUZ, RLZ." leaves out "two" and "bilateral").

        Example:
            >>> a = parse_constraints("Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.")
            >>> a.kept_by(parse_constraints("Opacities: LUZ, RLZ.")), a.kept_by(parse_constraints("Opacity: LUZ."))
            (True, False)
        """
        if self.zones is not None and other.zones != self.zones:
            return False
        return all(theirs is None or theirs == ours for ours, theirs in
                   ((self.count, other.count), (self.sides, other.sides), (self.n_sides, other.n_sides), (self.zones, other.zones)))

    def describe(self) -> str:
        parts = []
        if self.count is not None:
            parts.append(f"count {self.count}")
        if self.sides is not None:
            parts.append("sides " + "+".join(sorted(self.sides)))
        elif self.n_sides is not None:
            parts.append(("unilateral", "bilateral")[self.n_sides - 1])
        if self.zones is not None:
            parts.append("zones " + ", ".join(f"{lv} {s}" for lv, s in sorted(self.zones)))
        return "; ".join(parts) or "nothing parsable"


def levels_of(words: str) -> list[str]:
    """The levels of a run: "mid" is middle; "all", "whole", "entire" are the three."""
    out = []
    for w in re.findall(_LEVEL, words.lower()):
        out.extend(LEVELS if w in ("all", "whole", "entire") else ["middle" if w == "mid" else w])
    return out


def _negated(text: str, start: int, end: int) -> bool:
    """Whether the clause around ``text[start:end]`` negates it: "no"/"without"/"not" before it, or "clear",
    "normal", "spared"... after it ("left lung clear"), within the clause (up to , . ;)."""
    return bool(_NEGATED_BEFORE.search(text[:start]) or _NEGATED_AFTER.search(text[end:]))


def parse_constraints(sentence: str | None) -> SentenceConstraints:
    """The count, laterality and zone constraints a report sentence states (see the module docstring).

    Example:
        >>> c = parse_constraints("Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.")
        >>> c.count, sorted(c.sides), c.n_sides, sorted(c.zones)
        (2, ['left', 'right'], 2, [('lower', 'right'), ('upper', 'left')])
        >>> parse_constraints("LUZ opacity.").zones
        frozenset({('upper', 'left')})
        >>> parse_constraints("Heart size normal.").stated
        False
    """
    if not sentence or not isinstance(sentence, str):
        return SentenceConstraints()
    text = _ABBREVIATION.sub(lambda m: "{} {} lung".format(*ABBREVIATIONS[m.group(1)]), sentence)
    text = " ".join(text.lower().replace("-", " - ").split())

    zones: set[tuple[str, str]] = set()
    spans: list[tuple[int, int]] = []
    for pattern, level_group in ((_LEVEL_OF_SIDE, 1), (_LEVEL_SIDE, 1), (_SIDE_LEVEL, 2)):
        for m in pattern.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in spans) or _negated(text, m.start(), m.end()):
                continue
            spans.append(m.span())
            side = m.group(2 if level_group == 1 else 1)
            zones.update((level, side) for level in levels_of(m.group(level_group)))
    sides = {side for _, side in zones}
    for m in _SIDE_ONLY.finditer(text):
        if not any(a <= m.start() < b for a, b in spans) and not _negated(text, m.start(), m.end()):
            sides.add(m.group(1))

    count = None
    if (m := _COUNT.search(text)) is not None:
        word = m.group(1)
        count = int(word) if word.isdigit() else _NUMBERS[word]
        if word in ("a", "an") and count == 1 and (zones and len(zones) > 1):
            count = None  # "a lesion in the upper and lower left lung" says one finding, not one component
    elif not zones and not sides and (_NONE.search(text) or re.search(r"\bno\s+(?:\w+\s+)?(?:pulmonary\s+)?infection\b", text)):
        count = 0  # "no infected area", and nothing found elsewhere in the sentence
    n_sides = 2 if re.search(r"\bbilateral(?:ly)?\b|\bboth\s+lungs\b", text) else (
        1 if re.search(r"\bunilateral(?:ly)?\b", text) else None)
    if n_sides is None and sides:
        n_sides = len(sides)
    return SentenceConstraints(count=count, sides=frozenset(sides) or None, n_sides=n_sides,
                               zones=frozenset(zones) or None)
