"""Loading and checking decathlon-style datalists with ``image``, ``label`` and ``text`` keys.

A bundle calls :func:`load_datalist` while its config is parsed, so a bad datalist stops the run at
start-up, with every problem listed, before any output is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

_PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class DatalistError(ValueError):
    """A datalist entry is missing a key, names a file that is absent or unreadable, or has an empty sentence."""


def _check_pil_image(path: str) -> str | None:
    """Decode the file fully (PIL's ``verify`` misses truncated pixel data); the error text or None."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # noqa: BLE001 - any decoder failure means an unreadable image
        return f"unreadable image ({type(e).__name__}: {e})"
    return None


def check_datalist(
    items: Sequence[dict],
    keys: Sequence[str] = ("image", "label", "text"),
    file_keys: Sequence[str] = ("image", "label"),
    source: str = "datalist",
    verify_images: bool = False,
) -> None:
    """Check every item at once and raise a :class:`DatalistError` listing all problems found.

    Args:
        items: datalist entries with absolute paths (as :func:`load_datalist` gives them).
        keys: keys every item must have. ``text`` must be a non-empty string.
        file_keys: keys whose values are files that must exist.
        source: name of the datalist (file and split) used in messages.
        verify_images: also decode PNG/JPG/TIFF files, to catch corrupt or truncated ones at start-up.
    """
    if len(items) == 0:
        raise DatalistError(f"{source}: the split holds no items.")
    problems = []
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        for key in keys:
            if key not in item:
                problems.append(f"{where}: missing key '{key}' (has {sorted(item)})")
        text = item.get("text")
        if "text" in keys and "text" in item and (not isinstance(text, str) or not text.strip()):
            problems.append(f"{where}: empty sentence in key 'text' (image {item.get('image')!r})")
        for key in file_keys:
            if key not in item:
                continue
            path = item[key]
            if not os.path.isfile(path):
                problems.append(f"{where}: file of key '{key}' not found: {path}")
            elif verify_images and Path(path).suffix.lower() in _PIL_SUFFIXES:
                error = _check_pil_image(path)
                if error:
                    problems.append(f"{where}: {key} {path}: {error}")
    if problems:
        shown = problems[:50]
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DatalistError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(shown) + more)


def load_datalist(
    datalist: str | os.PathLike,
    data_root: str | os.PathLike,
    split: str = "training",
    keys: Sequence[str] = ("image", "label", "text"),
    file_keys: Sequence[str] = ("image", "label"),
    verify_images: bool = False,
    max_items: int | None = None,
) -> list[dict]:
    """Read one split of a decathlon-style datalist, make ``image``/``label`` paths absolute and check it.

    Args:
        datalist: the JSON file.
        data_root: folder the datalist's relative paths start from.
        split: ``training``, ``validation`` or ``test``.
        keys: keys every item must have (see :func:`check_datalist`).
        file_keys: keys naming files that must exist.
        verify_images: decode every 2D image once to catch corrupt files at start-up.
        max_items: keep only the first ``max_items`` items (quick runs); None keeps all.

    Example:
        >>> items = load_datalist("datalists/demo.json", "data/demo", "validation")  # doctest: +SKIP
    """
    datalist = os.fspath(datalist)
    if not os.path.isfile(datalist):
        raise DatalistError(f"datalist file not found: {datalist}")
    if not os.path.isdir(data_root):
        raise DatalistError(f"data root not found: {data_root} (datalist {datalist})")
    try:
        items = load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=split, base_dir=data_root)
    except ValueError as e:
        raise DatalistError(f"{datalist}: {e}") from e
    if max_items is not None:
        items = items[: int(max_items)]
    check_datalist(items, keys, file_keys, source=f"{datalist} ['{split}']", verify_images=verify_images)
    return items
