"""Rewrites of a report sentence that keep what it says (count, sides, zones): shared by the robustness tests
(:mod:`custom_nets.evaluation.perturbations`) and the training-time text augmentation
(:mod:`custom_nets.transforms.text_augment`). Each takes a ``random.Random`` where it draws, and returns None where
it does not apply; the callers check the parsed constraints of the result."""

from __future__ import annotations

import random
import re

from custom_nets.text.constraints import ABBREVIATIONS, PLACE, levels_of, parse_constraints
from custom_nets.text.prompts import NUMBER_WORDS, ZONES

#: words a typo must leave alone: they carry the count, side and zones
PROTECTED = re.compile(r"^(?:left|right|upper|middle|lower|bilateral|unilateral|one|two|three|four|five|six|no|lung|lungs)$", re.I)
#: (level, side) -> zone abbreviation ("LUZ")
ABBREVIATION_OF = {zone: abbr for abbr, zone in ABBREVIATIONS.items() if abbr.endswith("Z")}
#: normal findings a report adds that say nothing of the lesions
NORMAL_FINDINGS = ("No pleural effusion.", "Heart size is normal.", "No pneumothorax.", "The mediastinum is not widened.",
                   "Costophrenic angles are sharp.")
_WORD = re.compile(r"[A-Za-z]{5,}")


def typos(sentence: str, rng: random.Random, n: int = 3) -> str | None:
    """``n`` letters swapped or dropped in words that carry no constraint ("pulmonray")."""
    words = [m for m in _WORD.finditer(sentence) if not PROTECTED.match(m.group(0))]
    if not words:
        return None
    chosen = {rng.randrange(len(words)) for _ in range(n)}
    out, last = [], 0
    for i, m in enumerate(words):
        word = m.group(0)
        if i in chosen:
            k = rng.randrange(1, len(word) - 2)
            word = word[:k] + word[k + 1] + word[k] + word[k + 2:] if rng.random() < 0.5 else word[:k] + word[k + 1:]
        out.append(sentence[last:m.start()] + word)
        last = m.end()
    result = "".join(out) + sentence[last:]
    return result if result != sentence else None


def split_places(sentence: str) -> tuple[str, str] | None:
    """``(finding, places)``: the sentence split before its first place ("Bilateral ..., two infected areas",
    "upper left lung and lower right lung")."""
    m = PLACE.search(sentence)
    if m is None:
        return None
    return sentence[:m.start()].rstrip(" ,;:"), sentence[m.start():].rstrip(" .")


def _abbreviated(m: re.Match) -> str:
    side = m.group(2).lower()
    names = [ABBREVIATION_OF[(level, side)] for level in dict.fromkeys(levels_of(m.group(1)))]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def abbreviate(sentence: str) -> str | None:
    """Each place as its zone abbreviations: "upper left lung" -> "LUZ", "middle lower left lung" -> "LMZ and LLZ"."""
    out = PLACE.sub(_abbreviated, sentence)
    return out if out != sentence else None


def location_first(sentence: str) -> str | None:
    """The places first, then the finding: "Upper left lung and lower right lung: bilateral ... two infected areas."."""
    split = split_places(sentence)
    if split is None or not split[0]:
        return None
    finding, places = split
    return f"{places[:1].upper()}{places[1:]}: {finding[:1].lower()}{finding[1:]}."


def with_normal_finding(sentence: str, rng: random.Random) -> str:
    """An unrelated normal finding appended ("No pleural effusion.")."""
    return f"{sentence.rstrip()} {rng.choice(NORMAL_FINDINGS)}"


_HEADS = ("pulmonary infection", "lung infection", "pneumonia", "infection")
_NOUNS = (("infected area", "infected areas"), ("opacity", "opacities"), ("lesion", "lesions"),
          ("area of consolidation", "areas of consolidation"))


def _place(zone: tuple[str, str], rng: random.Random) -> str:
    level, side = zone
    mid = "mid" if level == "middle" and rng.random() < 0.5 else level  # "mid zone", as reports often say
    return rng.choice((f"{level} {side} lung", f"{side} {mid} zone", f"{mid} zone of the {side} lung", f"{side} {level} lobe"
                       if (level, side) != ("middle", "left") else f"{side} {mid} zone"))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def paraphrase(sentence: str, rng: random.Random) -> str | None:
    """The sentence said another way, from a small grammar that keeps its zones and states no other count or side:
    another head ("lung infection", "pneumonia"), noun ("opacities", "lesions"), place wording ("left upper zone",
    "mid zone of the right lung", "right lower lobe") and sentence shape, terse ones ("Opacities: ...") leaving out
    what the zones imply. None for a sentence that names no zone or whose lesion count is not one per zone."""
    said = parse_constraints(sentence)
    if not said.zones or said.count != len(said.zones):
        return None
    zones = sorted(said.zones, key=ZONES.index)
    count, sides = len(zones), {side for _, side in zones}
    laterality = "Bilateral" if len(sides) == 2 else "Unilateral"
    singular, plural = rng.choice(_NOUNS)
    noun = singular if count == 1 else plural
    number = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    places = _join([_place(z, rng) for z in zones])
    head = rng.choice(_HEADS)
    shape = rng.randrange(6)
    if shape == 0:
        out = f"{laterality} {head}, {number} {noun}, {places}."
    elif shape == 1:
        out = f"{number.capitalize()} {noun} in the {places}; {laterality.lower()} {head}."
    elif shape == 2:
        out = f"{laterality} {head} with {number} {noun}: {places}."
    elif shape == 3:  # terse, as in a worklist note: what the zones imply (count, sides) is left out
        out = f"{noun.capitalize()}: {places}."
    elif shape == 4:
        out = f"{noun.capitalize()} in the {places}."
    else:
        out = f"{places[:1].upper()}{places[1:]}: {noun}."
    return out if said.kept_by(parse_constraints(out)) else None
