"""Phrasings of the demo's report sentences that training never sees: the held-out test of reading, not matching.

The demo's sentences follow QaTa-COV19's template ("Bilateral pulmonary infection, two infected areas, upper left
lung and lower right lung."), and training varies them with the text augmentation of
:mod:`custom_nets.transforms.text_augment`. ``datalists/demo_phrasing.json`` holds the demo's test images again,
each sentence written in a style that neither the template nor the augmentation grammar produces
(:data:`HELD_OUT_STYLES`), with the same lesion zones:

    telegraphic  abbreviations in a list, as in a worklist note: "Opacities: LUZ, RLZ."
    narrative    a radiologist's prose: "Chest radiograph shows patchy airspace opacification in the left upper
                 zone and the right lower zone, in keeping with infection."

Dice on it beside Dice on the template test split says whether a network learned the meaning or the template.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

from custom_nets.text.constraints import parse_constraints
from custom_nets.text.prompts import ZONES, as_zones
from custom_nets.text.rewrites import ABBREVIATION_OF
from custom_nets.utils.files import write_atomically

HELD_OUT_STYLES = ("telegraphic", "narrative")
_FINDINGS = ("patchy airspace opacification", "ill-defined consolidation", "ground-glass shadowing")
_ENDINGS = (", in keeping with infection.", ", consistent with pneumonia.", ".")
_MID = {"upper": "upper", "middle": "mid", "lower": "lower"}


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def phrase(zones: Sequence[tuple[str, str]], style: str, rng: random.Random) -> str:
    """A sentence naming exactly ``zones`` (each one lesion) in a held-out ``style``.

    Example:
        >>> phrase([("upper", "left"), ("lower", "right")], "telegraphic", random.Random(0))
        'Opacities: LUZ, RLZ.'
    """
    zones = sorted(zones, key=ZONES.index)
    if style == "telegraphic":
        noun = "Opacity" if len(zones) == 1 else "Opacities"
        return f"{noun}: {', '.join(ABBREVIATION_OF[z] for z in zones)}."
    if style == "narrative":
        places = _join([f"the {side} {_MID[level]} zone" for level, side in zones])
        return f"Chest radiograph shows {rng.choice(_FINDINGS)} in {places}{rng.choice(_ENDINGS)}"
    raise ValueError(f"unknown phrasing style {style!r}; styles are {HELD_OUT_STYLES}")


def write_phrasing_datalist(demo_datalist: str | os.PathLike, output: str | os.PathLike, seed: int = 0) -> dict:
    """``output``: the test items of ``demo_datalist`` (images, masks, zones) with their sentences in the held-out
    styles, alternating; each item records its ``style`` and the ``template`` sentence it replaces. Every sentence
    is checked to name the item's lesion zones (as the consistency metric parses it) before anything is written."""
    source = json.loads(Path(demo_datalist).read_text())
    items = []
    for i, item in enumerate(source["test"]):
        style = HELD_OUT_STYLES[i % len(HELD_OUT_STYLES)]
        zones = as_zones(item["lesion_zones"])
        text = phrase(zones, style, random.Random(f"{seed}:{i}"))
        if parse_constraints(text).zones != set(zones):
            raise ValueError(f"{style} sentence {text!r} does not name the zones {zones} of test item {i}")
        items.append({**item, "text": text, "style": style, "template": item["text"]})
    datalist = {"description": f"the demo's test split in held-out phrasings ({', '.join(HELD_OUT_STYLES)}); "
                               f"see custom_nets/data/phrasing.py", "seed": seed, "test": items}
    text = json.dumps(datalist, indent=1) + "\n"
    write_atomically(output, lambda tmp: Path(tmp).write_text(text))
    return datalist
