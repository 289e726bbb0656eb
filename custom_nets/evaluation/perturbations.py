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
    zones           the named zones replaced by as many others (look-alike distractors first): a template sentence
                    is rewritten as the template; any other phrasing keeps its own words, its level and side
                    words moved (:func:`relocated`: "Opacity: LMZ." -> "Opacity: RUZ.");
    count           one zone added (from one) or dropped (from two or more), rewritten in the template with
                    its count word and extent: the count changes, and with it one zone (so this row does not
                    isolate counting).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence

from custom_nets.text.constraints import parse_constraints
from custom_nets.text.prompts import LEVELS, ZONES, as_zones, move_zones, replaced_zone_sentence, swap_laterality, zone_sentence
from custom_nets.text.rewrites import abbreviate, location_first, typos, with_normal_finding

PRESERVING = ("upper_case", "typos", "abbreviations", "synonyms", "location_first", "extra_clause", "missing_finding")
CHANGING = ("laterality", "zones", "count")
KINDS = PRESERVING + CHANGING


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
        return typos(sentence, rng)
    if kind == "abbreviations":
        out = abbreviate(sentence)
        return out if out is not None and parse_constraints(out) == said else None
    if kind == "synonyms":
        out = re.sub(r"\binfected areas\b", "opacities", sentence, flags=re.I)
        out = re.sub(r"\binfected area\b", "opacity", out, flags=re.I)
        out = re.sub(r"\bpulmonary infection\b", "lung infection", out, flags=re.I)
        return out if out != sentence else None
    if kind == "location_first":
        out = location_first(sentence)
        return out if out is not None and parse_constraints(out) == said else None
    if kind == "extra_clause":
        return with_normal_finding(sentence, rng)
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
        out = relocated(sentence, distractor_zones, seed=seed)  # another phrasing, in its own words
        if out is not None:
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


def relocated(sentence: str, distractor_zones: Sequence | None = None, seed: int = 0) -> str | None:
    """``sentence`` in its own words with every zone it names moved to a zone it does not name: its level words
    permuted and its sides swapped or not (:func:`~custom_nets.text.prompts.move_zones`), the one mapping of the
    eleven whose zones are disjoint from the named ones, cover most of ``distractor_zones`` and parse back as
    exactly the moved zones with the same count and number of sides (ties broken by ``seed``); None when no
    mapping qualifies or the sentence names no zone.

    Example:
        >>> relocated("Chest radiograph shows consolidation in the left mid zone.", ["upper right"])
        'Chest radiograph shows consolidation in the right upper zone.'
    """
    said = parse_constraints(sentence)
    if not said.zones:
        return None
    prefer = set(as_zones(distractor_zones))
    candidates = []
    for order in itertools.permutations(LEVELS):
        levels = dict(zip(LEVELS, order))
        for swap in (False, True):
            moved = {(levels[level], ("right" if side == "left" else "left") if swap else side) for level, side in said.zones}
            if moved & said.zones:
                continue
            out = move_zones(sentence, levels, swap)
            got = parse_constraints(out)
            if got.zones == moved and got.count == said.count and got.n_sides == said.n_sides:
                candidates.append((-len(moved & prefer), out))
    if not candidates:
        return None
    best = min(score for score, _ in candidates)
    return random.Random(f"{seed}:relocated:{sentence}").choice(sorted(out for score, out in candidates if score == best))
