"""Label budgets: a seeded subset of the training split, for label-efficient and low-data work.

LCPDN, for one, trains on 5 MoNuSeg images and on 150 QaTa-COV19 images. ``--train_items N`` or
``--train_fraction F`` with ``--train_seed S`` choose such a subset of the *training* split only (validation
and test stay whole); the same seed gives the same subset. :func:`write_training_subset` records which items
were chosen beside the checkpoint, so a result can be repeated.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

from custom_nets.data.datalist import DatalistError
from custom_nets.utils.files import write_atomically

logger = logging.getLogger(__name__)


def training_subset(items: list[dict], train_items: int | None = None, train_fraction: float | None = None,
                    seed: int = 0) -> list[dict]:
    """A seeded subset of the training items (in their datalist order), or all of them when no budget is set.

    Args:
        items: the training split's items.
        train_items: keep this many (1 .. all).
        train_fraction: keep this share, in (0, 1]; rounded, at least one item.
        seed: the subset's seed.

    Example:
        >>> items = [{"image": f"{i}.png"} for i in range(10)]
        >>> [d["image"] for d in training_subset(items, train_items=3, seed=1)]
        ['1.png', '2.png', '4.png']
    """
    if train_items is not None and train_fraction is not None:
        raise DatalistError(f"give train_items or train_fraction, not both (got {train_items} and {train_fraction})")
    if train_items is None and train_fraction is None:
        return items
    if train_fraction is not None:
        if isinstance(train_fraction, bool) or not 0 < float(train_fraction) <= 1:
            raise DatalistError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
        count = max(1, round(float(train_fraction) * len(items)))
    else:
        if isinstance(train_items, bool) or int(train_items) != train_items or not 1 <= int(train_items) <= len(items):
            raise DatalistError(f"train_items must be a whole number from 1 to the {len(items)} training items, got {train_items!r}")
        count = int(train_items)
    chosen = sorted(random.Random(int(seed)).sample(range(len(items)), count))
    logger.info(f"label budget: {count} of {len(items)} training items (seed {seed})")
    return [items[i] for i in chosen]


def write_training_subset(path: str | os.PathLike, items: list[dict], data_root: str | os.PathLike,
                          train_items: int | None = None, train_fraction: float | None = None, seed: int = 0,
                          datalist: str | os.PathLike | None = None) -> Path | None:
    """Record the training items a budgeted run used (image paths relative to ``data_root`` and their stems), as
    JSON, beside the checkpoint; nothing is written when no budget is set. Returns the path written.
    """
    if train_items is None and train_fraction is None:
        return None
    root = Path(data_root).resolve()
    images = [os.path.relpath(Path(item["image"]).resolve(), root) for item in items]
    record = {"datalist": None if datalist is None else os.fspath(datalist), "data_root": os.fspath(data_root),
              "train_items": train_items, "train_fraction": train_fraction, "train_seed": seed,
              "count": len(images), "images": images, "stems": [Path(p).name.split(".")[0] for p in images]}
    text = json.dumps(record, indent=1) + "\n"
    logger.info(f"label budget: the {len(images)} training items are listed in {path}")
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text))
