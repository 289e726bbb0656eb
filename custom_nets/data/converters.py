"""Converters from the published layouts of the papers' data sets to decathlon-style datalists with text.

Each converter reads a data set where the user unpacked it, checks it, and returns a datalist
(``training``/``validation``/``test`` lists of ``{"image", "label", "text", "text_source"}``, paths relative
to the data root) plus a :class:`Summary`. Nothing is written until every check has passed; then
:func:`write_datalist` writes to a temporary file and renames it. See ``docs/datasets.md``.

Layouts (as their publishers describe them; docs/datasets.md quotes the sources):
    - LViT (QaTa-COV19, MosMedData+, MoNuSeg): ``{Train,Val,Test}_Folder/{img,labelcol}`` with each split's
      table inside its folder, ``Train_Folder/Train_text.xlsx`` etc. (LViT's README; older copies keep the tables
      at the root, and LViT's own QaTa code reads one ``Train_Folder/Train_Val_text.xlsx`` for both training and
      validation: all are read, and two tables for one split that disagree are an error). Columns ``Image`` = the
      mask's file name and ``Description``; the image is the mask's name without its ``mask_`` prefix, or the
      file of ``img/`` with the mask's stem (MoNuSeg: ``.tif`` images, ``.png`` keys and masks), as LViT's
      ``ImageToImage2D`` pairs them.
    - CSV (GuideDecoder, "Ariadne's Thread"): ``prompt/{train,test}.csv`` (``val.csv`` where a release has one)
      with columns ``path``/``text`` (GuideDecoder) or ``Image``/``Description`` (its forks), the row naming the
      mask (``mask_`` prefix) or the image; images and masks under ``{Train,Val,Test}/Images`` and
      ``.../GTs`` (``Ground-truths`` in some copies), or ``Images``/``GTs`` at the root. Without ``val.csv`` the
      validation split is taken from ``train.csv`` as GuideDecoder's code does (first 80 % of the rows train,
      last 10 % validate, the 10 % between unused and reported).
    - Polyp sets without text (Kvasir-SEG: ``images/``, ``masks/``, JPEG, plus ``kavsir_bboxes.json``;
      CVC-ClinicDB: ``Original/``, ``Ground Truth/`` with ``.tif``, or the same under ``PNG/`` or ``TIF/``; a
      zip's extra top folder, ``Kvasir-SEG/Kvasir-SEG/``, is found): the sentence is derived from the mask
      (:func:`describe_polyps`) and marked ``"text_source": "derived"``.
Everywhere: suffixes in any case, hidden files (``.DS_Store``, ``._*`` resource forks) and non-images
(``Thumbs.db``) ignored.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from custom_nets.utils.files import write_atomically
from custom_nets.text.prompts import NUMBER_WORDS, clean_sentence
from custom_nets.transforms.mask import binarize

SPLITS = ("training", "validation", "test")
LVIT_FOLDERS = {"training": "Train", "validation": "Val", "test": "Test"}
CSV_FILES = {"training": "train", "validation": "val", "test": "test"}
#: published split sizes (training, validation, test)
PUBLISHED_COUNTS = {"qata_cov19": (5716, 1429, 2113), "mosmeddata_plus": (2183, 273, 273)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: the text tables' (key, sentence) columns: LViT and GuideDecoder's forks, GuideDecoder
TEXT_COLUMNS = (("Image", "Description"), ("path", "text"))
#: polyp size classes by the polyp's share of the image area: small below 2 %, large from 10 %
POLYP_SIZE_THRESHOLDS = (0.02, 0.10)


class ConversionError(ValueError):
    """The data set on disk does not match its layout; the message names the file (and row) at fault."""


@dataclass
class Summary:
    """What a converter found: counts per split and what it left out."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    unique_sentences: dict[str, int] = field(default_factory=dict)
    images_without_text: list[str] = field(default_factory=list)
    masks_without_image: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.name}: " + ", ".join(f"{s} {self.counts.get(s, 0)}" for s in SPLITS)]
        out.append("unique sentences: " + ", ".join(f"{s} {self.unique_sentences.get(s, 0)}" for s in SPLITS))
        out.append(f"images without text (left out): {len(self.images_without_text)}"
                   + (f", e.g. {self.images_without_text[:3]}" if self.images_without_text else ""))
        out.append(f"masks without image (left out): {len(self.masks_without_image)}"
                   + (f", e.g. {self.masks_without_image[:3]}" if self.masks_without_image else ""))
        out += [f"WARNING: {w}" for w in self.warnings]
        return out


# ---------------------------------------------------------------- files, masks, text tables


def _require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ConversionError(f"folder not found: {path}")
    return path


def _image_files(folder: Path) -> dict[str, Path]:
    """File name -> path of the images in ``folder`` (not recursive; hidden files such as ``._x.png`` skipped)."""
    return {p.name: p for p in sorted(_require_dir(folder).iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()}


def load_mask(path: Path, rule: str = "nonzero") -> np.ndarray:
    """A mask file as a boolean (H, W) array; 3-channel masks are collapsed (any channel), then binarised.

    Args:
        rule: ``"nonzero"`` (> 0, as LViT), ``"255"`` (== 255 only) or ``"half"`` (>= 128, for JPEG masks
            whose compression noise makes > 0 too loose); see :func:`custom_nets.transforms.binarize`.
    """
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - any decoder failure
        raise ConversionError(f"{path}: unreadable mask ({type(e).__name__}: {e})") from e
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)  # RGB(A) masks: the lesion is wherever a colour channel is on
    return binarize(arr, rule)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e


def check_same_size(image: Path, mask: Path) -> None:
    image_wh, mask_wh = image_size(image), image_size(mask)
    if image_wh != mask_wh:
        raise ConversionError(f"size mismatch: image {image} is {image_wh}, mask {mask} is {mask_wh} "
                              "(width, height); masks are never resized by the converter")


def read_text_table(path: Path) -> dict[str, str]:
    """Key (column ``Image``, or GuideDecoder's ``path``) -> sentence (``Description``, or ``text``) of a table.

    Sentences are cleaned by :func:`~custom_nets.text.clean_sentence`. Raises :class:`ConversionError` naming
    the file and the row (as a spreadsheet shows it: header = row 1) for a missing column, an empty sentence
    (white space, control and zero-width characters only), a cell that is not text (a number) or a key given
    twice with different sentences.
    """
    import pandas as pd

    if not path.is_file():
        raise ConversionError(f"text file not found: {path}")
    try:
        table = pd.read_excel(path) if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv(path)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"{path}: cannot read the table ({type(e).__name__}: {e})") from e
    columns = next((pair for pair in TEXT_COLUMNS if all(c in table.columns for c in pair)), None)
    if columns is None:
        raise ConversionError(f"{path}: columns {' or '.join(map(str, TEXT_COLUMNS))} expected; found {list(table.columns)}")
    text: dict[str, str] = {}
    rows: dict[str, int] = {}
    for i, (key, sentence) in enumerate(zip(table[columns[0]], table[columns[1]])):
        row = i + 2
        if not isinstance(key, str) or not key.strip():
            raise ConversionError(f"{path}, row {row}: empty 'Image' key")
        key = key.strip()
        if not isinstance(sentence, str) and not pd.isna(sentence):
            raise ConversionError(f"{path}, row {row}: the sentence for '{key}' is not text but "
                                  f"{type(sentence).__name__} {sentence!r}")
        sentence = clean_sentence(sentence) if isinstance(sentence, str) else ""
        if not sentence:
            raise ConversionError(f"{path}, row {row}: empty sentence for '{key}'")
        if key in text and text[key] != sentence:
            raise ConversionError(f"{path}, rows {rows[key]} and {row}: '{key}' has two different sentences: "
                                  f"{text[key]!r} and {sentence!r}")
        text[key], rows[key] = sentence, row
    return text


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _finish(name: str, datalist: dict, summary: Summary) -> tuple[dict, Summary]:
    for split in SPLITS:
        items = datalist.get(split, [])
        if not items:
            raise ConversionError(f"{name}: split '{split}' has no items")
        summary.counts[split] = len(items)
        summary.unique_sentences[split] = len({item["text"] for item in items})
    expected = PUBLISHED_COUNTS.get(name)
    if expected and tuple(summary.counts[s] for s in SPLITS) != expected:
        msg = (f"{name}: split sizes {tuple(summary.counts[s] for s in SPLITS)} differ from the published "
               f"{expected} (training, validation, test)")
        summary.warnings.append(msg)
        warnings.warn(msg, stacklevel=2)
    return datalist, summary


def _pair_item(image: Path, mask: Path, sentence: str, root: Path, source: str) -> dict:
    check_same_size(image, mask)
    return {"image": _relative(image, root), "label": _relative(mask, root), "text": sentence, "text_source": source}


# ---------------------------------------------------------------- LViT layout (QaTa-COV19, MosMedData+, MoNuSeg)


def _image_for_mask(mask_name: str, images: dict[str, Path]) -> Path | None:
    """LViT's rule: the mask's name without ``mask_``; else an image with the same stem (MoNuSeg: .tif/.png)."""
    candidate = mask_name.replace("mask_", "", 1) if mask_name.startswith("mask_") else mask_name
    if candidate in images:
        return images[candidate]
    stem = Path(candidate).stem
    same_stem = [p for n, p in images.items() if Path(n).stem == stem]
    return same_stem[0] if len(same_stem) == 1 else None


def _lvit_tables(root: Path, base: Path, folder: str) -> tuple[Path, dict[str, str]]:
    """The text table of one LViT split: where LViT publishes it (inside the split folder), an older copy at the
    root, or LViT code's combined ``Train_Folder/Train_Val_text.xlsx`` (training and validation); two that
    disagree are an error naming both."""
    candidates = [base / f"{folder}_text{ext}" for ext in (".xlsx", ".csv")] + [root / f"{folder}_text{ext}" for ext in (".xlsx", ".csv")]
    found = [p for p in candidates if p.is_file()]
    if not found and folder in ("Train", "Val"):
        found = [p for p in (root / "Train_Folder" / f"Train_Val_text{ext}" for ext in (".xlsx", ".csv")) if p.is_file()]
    if not found:
        raise ConversionError(f"text table of the {folder} split not found: looked for "
                              + ", ".join(str(c) for c in candidates)
                              + f" (LViT publishes it inside the split folder, as {candidates[0]})")
    tables = [(p, read_text_table(p)) for p in found]
    for p, table in tables[1:]:
        if table != tables[0][1]:
            raise ConversionError(f"two different text tables for the {folder} split: {tables[0][0]} and {p}; keep one")
    return tables[0]


def convert_lvit(root: str | os.PathLike, name: str, mask_rule: str = "nonzero") -> tuple[dict, Summary]:
    """QaTa-COV19, MosMedData+ or MoNuSeg as LViT distributes them (see the module docstring).

    ``mask_rule`` is recorded in the datalist for the bundles' ``--mask_rule`` (these sets' text is given,
    not derived from the masks).
    """
    root = Path(root)
    _require_dir(root)
    summary = Summary(name)
    datalist: dict = {"name": name, "layout": "lvit", "mask_rule": mask_rule}
    combined_keys: dict[Path, set[str]] = {}  # a Train_Val table: keys used by either split
    for split, folder in LVIT_FOLDERS.items():
        base = _require_dir(root / f"{folder}_Folder")
        images, masks = _image_files(base / "img"), _image_files(base / "labelcol")
        table_path, text = _lvit_tables(root, base, folder)
        combined = table_path.stem.startswith("Train_Val_text")
        items, used_images = [], set()
        for key, sentence in text.items():
            if key not in masks:
                if combined:
                    continue  # the other split's row
                raise ConversionError(f"{table_path}: key '{key}' matches no mask in {base / 'labelcol'}")
            combined_keys.setdefault(table_path, set()).add(key)
            image = _image_for_mask(key, images)
            if image is None:
                summary.masks_without_image.append(_relative(masks[key], root))
                continue
            used_images.add(image.name)
            items.append(_pair_item(image, masks[key], sentence, root, "annotated"))
        summary.images_without_text += [_relative(p, root) for n, p in images.items() if n not in used_images]
        datalist[split] = items
    for table_path, used in combined_keys.items():
        if table_path.stem.startswith("Train_Val_text"):
            unused = sorted(set(read_text_table(table_path)) - used)
            if unused:
                raise ConversionError(f"{table_path}: {len(unused)} key(s) match no mask of Train_Folder or Val_Folder, "
                                      f"e.g. {unused[:3]}")
    return _finish(name, datalist, summary)


# ---------------------------------------------------------------- CSV layout (prompt/*.csv, Images/, GTs/)


CSV_SPLIT_FOLDERS = {"training": "Train", "validation": "Val", "test": "Test"}
CSV_MASK_FOLDERS = ("GTs", "Ground-truths")
#: GuideDecoder's split of train.csv when no val.csv is published: rows [0, 80 %) train, [90 %, 100 %) validate
GUIDEDECODER_SPLIT = (0.8, 0.9)


def _csv_folders(root: Path, split: str) -> tuple[Path, Path]:
    """``Images`` and ``GTs`` (or ``Ground-truths``) of a split: under ``<root>/<Train|Val|Test>`` as GuideDecoder's
    config has them, else at the root."""
    for base in (root / CSV_SPLIT_FOLDERS[split], root):
        masks = next((base / m for m in CSV_MASK_FOLDERS if (base / m).is_dir()), None)
        if (base / "Images").is_dir() and masks is not None:
            return base / "Images", masks
    raise ConversionError(f"{root}: no Images/ and GTs/ (or Ground-truths/) for the {split} split, under "
                          f"{root / CSV_SPLIT_FOLDERS[split]} or {root}")


def _csv_pair(key: str, images: dict[str, Path], masks: dict[str, Path], table_path: Path) -> tuple[Path | None, Path]:
    """(image, mask) a row names: the mask (``mask_`` prefix, GuideDecoder) or the image (its mask: same name or
    ``mask_`` + name); the image is None when the mask has none."""
    if key in masks and key not in images:
        return _image_for_mask(key, images), masks[key]
    if key in images:
        mask = masks.get(key) or masks.get(f"mask_{key}")
        if mask is None:
            raise ConversionError(f"{table_path}: image '{key}' has no mask (looked for '{key}' and 'mask_{key}')")
        return images[key], mask
    raise ConversionError(f"{table_path}: key '{key}' matches no image and no mask")


def convert_csv_layout(root: str | os.PathLike, name: str, mask_rule: str = "nonzero") -> tuple[dict, Summary]:
    """QaTa-COV19 / MosMedData+ in GuideDecoder's CSV layout (see the module docstring)."""
    root = Path(root)
    _require_dir(root)
    summary = Summary(name)
    datalist: dict = {"name": name, "layout": "csv", "mask_rule": mask_rule}
    tables = {split: root / "prompt" / f"{stem}.csv" for split, stem in CSV_FILES.items()}
    rows: dict[str, list[tuple[str, str]]] = {}
    for split in ("training", "test"):
        rows[split] = list(read_text_table(tables[split]).items())
    if tables["validation"].is_file():
        rows["validation"] = list(read_text_table(tables["validation"]).items())
        folders = {split: _csv_folders(root, split) for split in SPLITS}
    else:  # GuideDecoder: validation rows come from train.csv, and its images from the training folders
        train_rows, n = rows["training"], len(rows["training"])
        cut, start = int(GUIDEDECODER_SPLIT[0] * n), int(GUIDEDECODER_SPLIT[1] * n)
        rows["training"], rows["validation"] = train_rows[:cut], train_rows[start:]
        datalist["validation_from"] = f"{tables['training'].name} rows [{start}, {n}) (GuideDecoder's split)"
        if start > cut:
            summary.warnings.append(f"no {tables['validation'].name}: validation is the last 10 % of "
                                    f"{tables['training'].name} as in GuideDecoder's code; its rows {cut}..{start - 1} "
                                    f"({start - cut}) are in no split")
        folders = {"training": _csv_folders(root, "training"), "validation": _csv_folders(root, "training"),
                   "test": _csv_folders(root, "test")}
    used_images: set[Path] = set()
    for split in SPLITS:
        images, masks = (_image_files(f) for f in folders[split])
        items = []
        for key, sentence in rows[split]:
            image, mask = _csv_pair(key, images, masks, tables[split] if split in rows else tables["training"])
            if image is None:
                summary.masks_without_image.append(_relative(mask, root))
                continue
            used_images.add(image)
            items.append(_pair_item(image, mask, sentence, root, "annotated"))
        datalist[split] = items
    all_images = {p for split in SPLITS for p in _image_files(folders[split][0]).values()}
    summary.images_without_text = sorted(_relative(p, root) for p in all_images - used_images)
    return _finish(name, datalist, summary)


# ---------------------------------------------------------------- polyp sets with derived text


def describe_polyps(mask: np.ndarray, thresholds: tuple[float, float] = POLYP_SIZE_THRESHOLDS,
                    min_fraction: float = 0.001) -> str:
    """A sentence from a polyp mask: the number of polyps and the size class of each.

    Polyps are 8-connected components of at least ``min_fraction`` of the image (smaller specks are mask
    noise); a polyp is small below ``thresholds[0]`` of the image area, large from ``thresholds[1]``,
    medium between.

    Example:
        >>> m = np.zeros((100, 100), bool); m[10:20, 10:20] = True; m[50:90, 50:90] = True
        >>> describe_polyps(m)
        'Two polyps, one large and one small.'
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    areas = ndimage.sum_labels(mask, labels, range(1, n + 1)) / mask.size if n else np.array([])
    areas = sorted((a for a in areas if a >= min_fraction), reverse=True)
    if not areas:
        return "No polyp."
    classes = ["small" if a < thresholds[0] else "large" if a >= thresholds[1] else "medium" for a in areas]
    if len(classes) == 1:
        return f"One {classes[0]} polyp."
    count = NUMBER_WORDS[len(classes)] if len(classes) < len(NUMBER_WORDS) else str(len(classes))
    groups = [(c, classes.count(c)) for c in ("large", "medium", "small") if c in classes]
    parts = [f"{NUMBER_WORDS[k] if k < len(NUMBER_WORDS) else k} {c}" for c, k in groups]
    return f"{count.capitalize()} polyps, " + (" and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]) + "."


POLYP_LAYOUTS = {
    "kvasir_seg": [("images", "masks")],
    "cvc_clinicdb": [("Original", "Ground Truth"), ("PNG/Original", "PNG/Ground Truth"), ("TIF/Original", "TIF/Ground Truth")],
}


def split_names(names: Sequence[str], seed: int = 0, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                split_file: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Split file names 8:1:1 from a seed, or as a JSON split file ``{"training": [names], ...}`` says."""
    if split_file is not None:
        path = Path(split_file)
        try:
            given = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConversionError(f"split file {path}: {e}") from e
        known = set(names)
        out = {}
        for split in SPLITS:
            listed = given.get(split, [])
            unknown = [n for n in listed if n not in known]
            if unknown:
                raise ConversionError(f"split file {path}, split '{split}': {len(unknown)} unknown name(s), e.g. {unknown[:3]}")
            out[split] = list(listed)
        return out
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n_train, n_val = round(len(order) * ratios[0]), round(len(order) * ratios[1])
    return {"training": order[:n_train], "validation": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}


def convert_polyps(root: str | os.PathLike, name: str, seed: int = 0, split_file: str | os.PathLike | None = None,
                   mask_rule: str = "half") -> tuple[dict, Summary]:
    """Kvasir-SEG or CVC-ClinicDB: pairs by file stem, sentences derived from the masks."""
    root = Path(root)
    _require_dir(root)
    layouts = POLYP_LAYOUTS[name]

    def find(base: Path) -> tuple[Path, Path] | None:
        return next(((base / i, base / m) for i, m in layouts if (base / i).is_dir() and (base / m).is_dir()), None)

    found = find(root)
    nested = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if found is None and len(nested) == 1:  # a zip's extra top folder: Kvasir-SEG/Kvasir-SEG/images
        found = find(nested[0])
    if found is None:
        raise ConversionError(f"{root}: none of the {name} layouts found; expected folders "
                              + " or ".join(f"'{i}' and '{m}'" for i, m in layouts))
    images = {Path(n).stem: p for n, p in _image_files(found[0]).items()}
    masks = {Path(n).stem: p for n, p in _image_files(found[1]).items()}
    summary = Summary(name)
    summary.masks_without_image = [_relative(p, root) for s, p in masks.items() if s not in images]
    missing_masks = [_relative(p, root) for s, p in images.items() if s not in masks]
    if missing_masks:
        raise ConversionError(f"{found[1]}: no mask for {len(missing_masks)} image(s), e.g. {missing_masks[:3]}")
    splits = split_names(list(images), seed, split_file=split_file)
    datalist: dict = {"name": name, "layout": "polyp", "mask_rule": mask_rule, "seed": None if split_file else seed,
                      "text_derivation": {"size_thresholds": list(POLYP_SIZE_THRESHOLDS), "min_fraction": 0.001}}
    for split, stems in splits.items():
        items = []
        for stem in stems:
            sentence = describe_polyps(load_mask(masks[stem], mask_rule))
            items.append(_pair_item(images[stem], masks[stem], sentence, root, "derived"))
        datalist[split] = items
    return _finish(name, datalist, summary)


# ---------------------------------------------------------------- writing


def write_datalist(datalist: dict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write to a temporary file beside ``path`` and rename; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    text = json.dumps(datalist, indent=1) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))
    return path
