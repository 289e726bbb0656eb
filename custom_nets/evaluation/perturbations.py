"""Rewrites of a report sentence for robustness tests: some keep its meaning, some change it.

A network that reads the sentence should lose little Dice (against the *true* mask) under the first kind and
much under the second. Every rewrite is deterministic given ``seed``; one that cannot apply to a sentence (a
sentence that names no zone cannot have its zones replaced) returns None and the case is left out of that row.

Meaning kept (:data:`PRESERVING`):
    upper_case      the whole sentence in capitals;
    typos           three letters swapped or dropped in words that carry no constraint ("pulmonray");
    abbreviations   each place as its zone abbreviations ("upper left lung" -> "LUZ", "middle lower left lung"
                    -> "LMZ and LLZ");
    synonyms        "infected area(s)" -> "opacity/opacities", "pulmonary infection" -> "lung infection";
    location_first  the zones first, then the finding ("Upper left lung and lower right lung: bilateral ...");
    extra_clause    an unrelated normal finding appended ("No pleural effusion.");
    missing_finding the first clause dropped where the rest says all the sentence said ("Two infected areas,
                    upper left lung and ..."; not "Bilateral ..., two infected areas.", whose laterality would go).
Meaning changed (:data:`CHANGING`):
    laterality      left and right swapped (only where that changes the zones named);
    zones           the named zones replaced by as many others (look-alike distractors first);
    count           one zone added (from one) or dropped (from two or more), rewritten in the template with
                    its count word and extent: the count changes, and with it one zone (so this row does not
                    isolate counting).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from custom_nets.text.constraints import ABBREVIATIONS, PLACE, levels_of, parse_constraints
from custom_nets.text.prompts import ZONES, as_zones, replaced_zone_sentence, swap_laterality, zone_sentence

PRESERVING = ("upper_case", "typos", "abbreviations", "synonyms", "location_first", "extra_clause", "missing_finding")
CHANGING = ("laterality", "zones", "count")
KINDS = PRESERVING + CHANGING
#: words a typo must leave alone: they carry the count, side and zones
_PROTECTED = re.compile(r"^(?:left|right|upper|middle|lower|bilateral|unilateral|one|two|three|four|five|six|no|lung|lungs)$", re.I)
_ABBREVIATION_OF = {zone: abbr for abbr, zone in ABBREVIATIONS.items() if abbr.endswith("Z")}
_EXTRA = ("No pleural effusion.", "Heart size is normal.", "No pneumothorax.")


def _typos(sentence: str, rng: random.Random, n: int = 3) -> str:
    words = re.findall(r"[A-Za-z]{5,}", sentence)
    candidates = [i for i, m in enumerate(re.finditer(r"[A-Za-z]{5,}", sentence)) if not _PROTECTED.match(words[i])]
    if not candidates:
        return sentence
    chosen = {rng.choice(candidates) for _ in range(n)}
    out, last = [], 0
    for i, m in enumerate(re.finditer(r"[A-Za-z]{5,}", sentence)):
        word = m.group(0)
        if i in chosen:
            k = rng.randrange(1, len(word) - 2)
            word = word[:k] + word[k + 1] + word[k] + word[k + 2:] if rng.random() < 0.5 else word[:k] + word[k + 1:]
        out.append(sentence[last:m.start()] + word)
        last = m.end()
    return "".join(out) + sentence[last:]


def _places(sentence: str) -> tuple[str, str] | None:
    """``(finding, places)``: the sentence split before its first place ("Bilateral ..., two infected areas",
    "upper left lung and lower right lung")."""
    m = PLACE.search(sentence)
    if m is None:
        return None
    return sentence[:m.start()].rstrip(" ,;:"), sentence[m.start():].rstrip(" .")


def _abbreviated(m: re.Match) -> str:
    """A place as zone abbreviations: "upper left lung" -> "LUZ", "middle lower left lung" -> "LMZ and LLZ"."""
    side = m.group(2).lower()
    names = [_ABBREVIATION_OF[(level, side)] for level in dict.fromkeys(levels_of(m.group(1)))]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def perturb(sentence: str, kind: str, seed: int = 0, distractor_zones: Sequence | None = None) -> str | None:
    """The ``kind`` rewrite of ``sentence`` (see the module docstring), or None where it does not apply.

    Example:
        >>> s = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
        >>> perturb(s, "abbreviations")
        'Bilateral pulmonary infection, two infected areas, LUZ and RLZ.'
        >>> perturb(s, "location_first")
        'Upper left lung and lower right lung: bilateral pulmonary infection, two infected areas.'
        >>> perturb(s, "count")
        'Unilateral pulmonary infection, one infected area, upper left lung.'
    """
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {kind!r}; kinds are {KINDS}")
    rng = random.Random(f"{seed}:{kind}:{sentence}")
    said = parse_constraints(sentence)
    zones = sorted(said.zones or (), key=ZONES.index)
    if kind == "upper_case":
        return sentence.upper()
    if kind == "typos":
        out = _typos(sentence, rng)
        return out if out != sentence else None
    if kind == "abbreviations":
        out = PLACE.sub(_abbreviated, sentence)
        return out if out != sentence and parse_constraints(out) == said else None
    if kind == "synonyms":
        out = re.sub(r"\binfected areas\b", "opacities", sentence, flags=re.I)
        out = re.sub(r"\binfected area\b", "opacity", out, flags=re.I)
        out = re.sub(r"\bpulmonary infection\b", "lung infection", out, flags=re.I)
        return out if out != sentence else None
    if kind == "location_first":
        split = _places(sentence)
        if split is None or not split[0]:
            return None
        finding, places = split
        out = f"{places[:1].upper()}{places[1:]}: {finding[:1].lower()}{finding[1:]}."
        return out if parse_constraints(out) == said else None
    if kind == "extra_clause":
        return f"{sentence.rstrip()} {rng.choice(_EXTRA)}"
    if kind == "missing_finding":  # only where the rest still says all the sentence said
        head, sep, rest = sentence.partition(",")
        rest = rest.strip()
        if not sep or not rest or parse_constraints(rest) != said:
            return None
        return rest[:1].upper() + rest[1:]
    if not zones:  # the meaning-changing rewrites need zones to change
        return None
    if kind == "laterality":
        out = swap_laterality(sentence)
        return out if parse_constraints(out).zones != said.zones else None
    if kind == "zones":
        out = replaced_zone_sentence(sentence, distractor_zones, seed=seed)  # the template's own counterfactual
        if out is not None and not (parse_constraints(out).zones or set()) & said.zones:
            return out
        others = as_zones(distractor_zones)
        free = list(dict.fromkeys(z for z in others + rng.sample(ZONES, len(ZONES)) if z not in said.zones))
        return zone_sentence(sorted(free[:len(zones)], key=ZONES.index)) if len(free) >= len(zones) else None
    # count: add one zone to a single one (a look-alike distractor first), else drop the last
    if len(zones) == 1:
        others = [z for z in as_zones(distractor_zones) if z not in zones] or [z for z in ZONES if z not in zones]
        new = zones + [rng.choice(others)]
    else:
        new = zones[:-1]
    return zone_sentence(sorted(set(new), key=ZONES.index))
