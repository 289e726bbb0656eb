#!/usr/bin/env python
"""Write the demo referring data set (PNG images, masks, one report sentence each) and its datalist.

    python scripts/make_demo_data.py --data-root data/demo --datalist datalists/demo.json

Beside the datalist, ``<name>_phrasing.json`` (``datalists/demo_phrasing.json``) holds the test split again with its
sentences in phrasings training never sees (``custom_nets/data/phrasing.py``).

Deterministic: the same seed gives the same bytes. See ``custom_nets/data/demo.py`` for what it draws.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from pathlib import Path

from custom_nets.data.demo import write_demo_dataset
from custom_nets.data.phrasing import write_phrasing_datalist


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="data/demo", help="folder for images/ and masks/ (default: data/demo)")
    p.add_argument("--datalist", default="datalists/demo.json", help="datalist JSON to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-val", type=int, default=60)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing data root / different datalist")
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        datalist = write_demo_dataset(
            args.data_root, args.datalist, args.seed, args.n_train, args.n_val, args.n_test, args.size, args.overwrite
        )
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    phrasing = Path(args.datalist).with_name(Path(args.datalist).stem + "_phrasing.json")
    write_phrasing_datalist(args.datalist, phrasing, args.seed)
    for split in ("training", "validation", "test"):
        sentences = Counter(item["text"] for item in datalist[split])
        print(f"{split:>10}: {len(datalist[split]):4d} images, {len(sentences):3d} unique sentences")
    print(f"wrote {args.data_root}, {args.datalist} and {phrasing} (the test split in held-out phrasings) in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
