"""Loading and checking decathlon-style datalists with ``image``, ``label`` and ``text`` keys.

A bundle calls :func:`load_datalist` while its config is parsed, so a bad datalist stops the run at
start-up, with every problem listed, before any output is written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

from monai.data import load_decathlon_datalist

from custom_nets.text.prompts import clean_sentence

logger = logging.getLogger(__name__)


class DatalistError(ValueError):
    """A datalist entry is missing a key, names a file that is absent, unreadable or outside the data root, or
    has a sentence that is empty or not a string."""


def _sentence_problem(text: object) -> str | None:
    """Why ``text`` is not a usable sentence (see :func:`~custom_nets.text.clean_sentence`), or None."""
    if not isinstance(text, str):
        return f"sentence in key 'text' is not a string but {type(text).__name__} {text!r}"
    if not clean_sentence(text):
        return f"empty sentence in key 'text' ({text!r}; white space, control and zero-width characters only)"
    return None


def _outside(path: str, root: str) -> bool:
    """Whether ``path`` lies outside the folder ``root`` (lexically, after making both absolute and normal)."""
    path, root = os.path.abspath(path), os.path.abspath(root)
    return os.path.commonpath([path, root]) != root


def _decode(loader, path: str) -> tuple[tuple[int, ...] | None, str | None]:
    """Decode ``path`` with the reader MONAI's ``LoadImage`` picks; (spatial shape, None) or (None, error text)."""
    try:
        image = loader(path)
    except Exception as e:  # noqa: BLE001 - any reader failure means MONAI cannot load the file for training
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"unreadable image: no MONAI reader decodes it ({type(e).__name__}: {first})"
    return tuple(image.shape[1:]), None


def check_datalist(
    items: Sequence[dict],
    keys: Sequence[str] = ("image", "label", "text"),
    file_keys: Sequence[str] = ("image", "label"),
    source: str = "datalist",
    verify_images: bool = False,
    data_root: str | os.PathLike | None = None,
    allow_outside_data_root: bool = False,
) -> None:
    """Check every item at once and raise a :class:`DatalistError` listing all problems found.

    Args:
        items: datalist entries with absolute paths (as :func:`load_datalist` gives them).
        keys: keys every item must have. ``text`` must be a string that is not empty once white space, control
            and zero-width characters are removed (:func:`~custom_nets.text.clean_sentence`).
        file_keys: keys whose values are files that must exist.
        source: name of the datalist (file and split) used in messages.
        verify_images: also decode every file of ``file_keys`` with MONAI's ``LoadImage`` (the readers the
            bundles' ``LoadImaged`` uses: PIL, ITK, NIfTI, DICOM, ...), whatever its suffix, to catch corrupt,
            truncated or non-image files at start-up, and check that an item's files have the same spatial size.
        data_root: the folder the datalist's paths are relative to; unless ``allow_outside_data_root``, a file
            outside it is a problem. None: not checked.
        allow_outside_data_root: accept files outside ``data_root`` (e.g. ``../x.png`` or an absolute path).
    """
    if len(items) == 0:
        raise DatalistError(f"{source}: the split holds no items.")
    loader = None
    if verify_images:
        from monai.transforms import LoadImage

        loader = LoadImage(image_only=True, ensure_channel_first=True)
    problems = []
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        for key in keys:
            if key not in item:
                problems.append(f"{where}: missing key '{key}' (has {sorted(item)})")
        if "text" in keys and "text" in item:
            problem = _sentence_problem(item["text"])
            if problem:
                problems.append(f"{where}: {problem} (image {item.get('image')!r})")
        shapes = {}
        for key in file_keys:
            if key not in item:
                continue
            path = item[key]
            if data_root is not None and not allow_outside_data_root and _outside(path, data_root):
                problems.append(
                    f"{where}: file of key '{key}' is outside the data root {os.path.abspath(data_root)}: {path} "
                    "(set allow_outside_data_root to True, e.g. --allow_outside_data_root True, to allow it)"
                )
            elif not os.path.isfile(path):
                problems.append(f"{where}: file of key '{key}' not found: {path}")
            elif loader is not None:
                shape, error = _decode(loader, path)
                if error:
                    problems.append(f"{where}: {key} {path}: {error}")
                else:
                    shapes[key] = shape
        if len(set(shapes.values())) > 1:
            detail = ", ".join(f"{k} {item[k]} has size {s}" for k, s in shapes.items())
            problems.append(f"{where}: image/mask size mismatch: {detail}")
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
    allow_outside_data_root: bool = False,
) -> list[dict]:
    """Read one split of a decathlon-style datalist, make ``image``/``label`` paths absolute and check it.

    Args:
        datalist: the JSON file.
        data_root: folder the datalist's relative paths start from.
        split: ``training``, ``validation`` or ``test``.
        keys: keys every item must have (see :func:`check_datalist`).
        file_keys: keys naming files that must exist.
        verify_images: decode every file once with MONAI's readers to catch corrupt or non-image files, and
            image/mask size mismatches, at start-up.
        max_items: keep only the first ``max_items`` items (quick runs); None keeps all.
        allow_outside_data_root: accept paths that lead out of ``data_root`` (``../x.png``, absolute paths);
            by default they are problems, so a datalist cannot reach files elsewhere unasked.

    Example (a small demo data set in a temporary folder):
        >>> import tempfile
        >>> from custom_nets.data.demo import write_demo_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> root, datalist = os.path.join(tmp.name, "demo"), os.path.join(tmp.name, "demo.json")
        >>> _ = write_demo_dataset(root, datalist, n_train=2, n_val=1, n_test=1, size=32)
        >>> items = load_datalist(datalist, root, "validation")
        >>> len(items), items[0]["image"] == os.path.join(root, "images", "val_0000.png")
        (1, True)
        >>> os.remove(items[0]["label"])  # a missing mask stops the run at start-up, naming the item
        >>> try:
        ...     load_datalist(datalist, root, "validation")
        ... except DatalistError as e:
        ...     print(str(e).replace(tmp.name, "<tmp>"))
        <tmp>/demo.json ['validation']: 1 problem(s):
          <tmp>/demo.json ['validation'][0]: file of key 'label' not found: <tmp>/demo/masks/val_0000.png
        >>> tmp.cleanup()
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
    check_datalist(items, keys, file_keys, source=f"{datalist} ['{split}']", verify_images=verify_images,
                   data_root=data_root, allow_outside_data_root=allow_outside_data_root)
    return items


def datalist_mask_rule(datalist: str | os.PathLike, mask_rule: str | None = None) -> str:
    """The mask rule a run uses, and the log line saying where it came from.

    An explicit ``mask_rule`` (``--mask_rule``) wins; else the rule the data-set converter recorded in the datalist
    (``"mask_rule"``: Kvasir-SEG's JPEG masks need ``half``); else ``nonzero``.

    Example:
        >>> datalist_mask_rule("datalists/demo.json", "255")
        '255'
    """
    from custom_nets.transforms.mask import MASK_RULES

    recorded = None
    if os.path.isfile(datalist):
        try:
            with open(datalist) as f:
                recorded = json.load(f).get("mask_rule")
        except (OSError, ValueError, AttributeError):
            recorded = None  # load_datalist names an unreadable datalist
    if mask_rule is not None:
        rule, source = mask_rule, "given (--mask_rule, or a recipe's mask_rule)" + (f"; the datalist says {recorded!r}" if recorded and recorded != mask_rule else "")
    elif recorded is not None:
        rule, source = recorded, f"recorded in the datalist {os.fspath(datalist)}"
    else:
        rule, source = "nonzero", "the default; the datalist records none"
    if rule not in MASK_RULES:
        raise DatalistError(f"mask rule {rule!r} ({source}) is not one of {list(MASK_RULES)}")
    logger.info(f"mask rule '{rule}': {source}")
    return rule
