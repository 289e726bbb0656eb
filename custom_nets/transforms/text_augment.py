"""Training-time text augmentation: the report sentence rewritten the ways radiologists write it, its meaning kept.

Each transform rewrites the sentence under ``keys`` with probability ``prob`` (MONAI's ``RandomizableTransform``:
seeded by ``set_determinism`` / ``set_random_state``, so the same seed gives the same sentence). A rewrite is kept
only when it says nothing else than the input: the same zones, and any count or side it states equal to the input's
(:meth:`custom_nets.text.constraints.SentenceConstraints.kept_by`; it may leave out what the zones imply, as reports
do); otherwise the sentence stays as it was. Put them before
:class:`~custom_nets.transforms.RandFlipWithTextd` in the ``text_augmentation`` list of a bundle's config: the flip
then swaps the sides of whatever style came out, abbreviations included (RUZ <-> LUZ).

Every variant is a new sentence for the text encoder's cache (:class:`~custom_nets.text.TextFeatureCache`, bounded
LRU): the cost is more text-encoder passes, measured by ``scripts/benchmark.py``.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from custom_nets.text.constraints import parse_constraints
from custom_nets.text.normalize import expand_abbreviations
from custom_nets.text.rewrites import abbreviate, location_first, paraphrase, typos, with_normal_finding


class RandTextRewrited(RandomizableTransform, MapTransform):
    """Base of the text augmentations: with probability ``prob``, ``rewrite`` the sentence; keep the result only
    if it states the same constraints.

    Args:
        keys: the sentence's key(s).
        prob: probability of rewriting.
        allow_missing_keys: as in MONAI.
    """

    def __init__(self, keys: KeysCollection = "text", prob: float = 0.1, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def rewrite(self, sentence: str, rng: random.Random) -> str | None:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            self.randomize(None)
            if not self._do_transform or not isinstance(d[key], str):
                continue
            out = self.rewrite(d[key], random.Random(int(self.R.randint(2**31))))
            if out and out != d[key] and parse_constraints(d[key]).kept_by(parse_constraints(out)):
                d[key] = out
        return d


class RandParaphrased(RandTextRewrited):
    """Another head, noun, place wording and sentence shape (:func:`custom_nets.text.rewrites.paraphrase`)."""

    def rewrite(self, sentence: str, rng: random.Random) -> str | None:
        return paraphrase(sentence, rng)


class RandTypod(RandTextRewrited):
    """``n`` letters swapped or dropped in words that carry no constraint.

    Args:
        n: typos per sentence.
    """

    def __init__(self, keys: KeysCollection = "text", prob: float = 0.1, n: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.n = n

    def rewrite(self, sentence: str, rng: random.Random) -> str | None:
        return typos(sentence, rng, self.n)


class RandAbbreviationd(RandTextRewrited):
    """Places contracted to zone abbreviations ("upper left lung" -> "LUZ") or abbreviations expanded, whichever
    the sentence allows (both: one at random)."""

    def rewrite(self, sentence: str, rng: random.Random) -> str | None:
        expanded = expand_abbreviations(sentence)
        options = [s for s in (abbreviate(sentence), expanded if expanded != sentence else None) if s]
        return rng.choice(options) if options else None


class RandClauseOrderd(RandTextRewrited):
    """The places first, then the finding ("Upper left lung: unilateral pulmonary infection, one infected area.")."""

    def rewrite(self, sentence: str, rng: random.Random) -> str | None:
        return location_first(sentence)


class RandNormalFindingd(RandTextRewrited):
    """An unrelated normal finding appended ("No pleural effusion.")."""

    def rewrite(self, sentence: str, rng: random.Random) -> str | None:
        return with_normal_finding(sentence, rng)
