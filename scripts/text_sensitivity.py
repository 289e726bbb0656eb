#!/usr/bin/env python
"""Does a trained bundle read the report text, and robustly? Test Dice and text-mask consistency under
sentence rewrites that keep the meaning and rewrites that change it.

    python scripts/text_sensitivity.py --bundle himix --config demo.json --bundle-root runs/demo/himix

Every image of the split is segmented with its true sentence and with each rewrite
(``custom_nets/evaluation/perturbations.py``), the mask always compared with the *true* mask:
    meaning kept      upper case, typos, zone abbreviations (LUZ), synonyms ("opacity"), location first, an extra
                      normal finding, the redundant first clause dropped;
    meaning changed   laterality swapped (where that changes the zones), zones replaced (the image's look-alike
                      distractors first, when the datalist lists ``distractor_zones``), count changed.
A network that reads the text loses little Dice under the first kind and much under the second; an image-only
bundle (unet) gives the same masks under all of them. "consistent" is the share of masks that obey what the
rewrite means (``custom_nets/metrics``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from custom_nets.data import load_datalist
from custom_nets.evaluation.casewise import TrainedBundle
from custom_nets.evaluation.perturbations import KINDS
from custom_nets.evaluation.robustness import format_table, text_robustness

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="himix", help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on train.json, e.g. demo.json")
    p.add_argument("--bundle-root", default=None, help="where models/model.pt is (default: bundles/<bundle>)")
    p.add_argument("--checkpoint", default=None, help="checkpoint path (default: <bundle-root>/models/model.pt)")
    p.add_argument("--datalist", default=str(ROOT / "datalists" / "demo.json"))
    p.add_argument("--data-root", default=str(ROOT / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--max-items", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rewrites", nargs="*", default=list(KINDS), choices=KINDS, help="rewrites to run (default: all)")
    args = p.parse_args(argv)

    try:
        model = TrainedBundle(args.bundle, args.config, args.bundle_root, args.checkpoint)
        items = load_datalist(args.datalist, args.data_root, args.split, keys=("image", "label"), max_items=args.max_items)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if not any(item.get("text") for item in items):
        sys.exit(f"error: no item of the '{args.split}' split of {args.datalist} has a sentence ('text'): nothing to rewrite")
    print(f"bundle {args.bundle}, checkpoint {model.checkpoint}, {args.split} split: {len(items)} images")
    if not model.reads_text:
        print("image-only bundle (text_encoder is null): the sentence is not read, every rewrite gives the clean masks")
    print("\n".join(format_table(text_robustness(model, items, args.seed, args.rewrites))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
