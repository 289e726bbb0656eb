"""A bundle's folder and its merged config, found the same way by every script.

``--bundle`` is a bundle name under ``bundles/`` (``himix``) or a bundle folder (``bundles/himix``,
``/models/my_himix``); ``--config`` files are names in the bundle's ``configs/`` (``demo.json``) or paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from monai.bundle import ConfigParser

#: the repository's bundles folder
BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def bundle_dir(bundle: str | os.PathLike, main: str = "inference.json") -> Path:
    """The folder of ``bundle`` (a name under ``bundles/`` or a folder) holding ``configs/<main>``.

    Example:
        >>> bundle_dir("himix").name
        'himix'
    """
    path = Path(bundle)
    candidates = [path] if path.is_absolute() or path.exists() or len(path.parts) > 1 else [BUNDLES / path, path]
    for folder in candidates:
        if (folder / "configs" / main).is_file():
            return folder
    raise FileNotFoundError(f"not a bundle: {candidates[0] / 'configs' / main} not found (--bundle {bundle}: a name under "
                            f"{BUNDLES} or a bundle folder)")


def config_files(bundle: str | os.PathLike, main: str = "train.json", overrides: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """``configs/<main>`` of the bundle, then each override (a name in ``configs/`` or a path); missing ones named."""
    configs = bundle_dir(bundle, main) / "configs"
    files = [configs / main] + [Path(o) if Path(o).is_file() else configs / o for o in overrides]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"config file(s) not found: {missing}")
    return files


def load_config(bundle: str | os.PathLike, *overrides: str | os.PathLike, main: str = "train.json") -> ConfigParser:
    """The bundle's ``configs/<main>`` with ``overrides`` merged on it, as ``--config_file "[main, ...]"`` reads them.

    Example:
        >>> load_config("unet", "demo.json")["bundle_root"]
        'bundles/unet'
    """
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files(bundle, main, overrides)])
    return parser


#: ``network_def`` arguments that fetch pretrained weights (HiMix, TAMISeg, C2Seg: ``pretrained``; LCPDN's frozen CLIP)
PRETRAINED_ARGUMENTS = ("pretrained", "image_encoder_pretrained")


def weights_from_checkpoint(parser: ConfigParser) -> ConfigParser:
    """Build ``network_def`` without fetching pretrained encoder weights (``imagenet_weights``, ``clip_weights``): a
    script that loads a trained checkpoint over the network needs none, and offline it could not get them.

    Example:
        >>> weights_from_checkpoint(load_config("himix"))["network_def"]["pretrained"]
        False
    """
    network = parser.get("network_def")
    for argument in PRETRAINED_ARGUMENTS:
        if isinstance(network, dict) and argument in network:
            parser[f"network_def#{argument}"] = False
    return parser


# ---------------------------------------------------------------- recipes: configs/recipes/<data set>.json

#: the config files whose settings a recipe may set (those a bundle has)
RECIPE_TARGETS = ("train.json", "pretrain.json", "evaluate.json")


def recipe_files(bundle: str | os.PathLike) -> dict[str, Path]:
    """``data set -> configs/recipes/<data set>.json`` of the bundle (empty when it has none).

    Example:
        >>> sorted(recipe_files("unet"))
        ['monuseg', 'mosmeddata_plus', 'qata_cov19']
    """
    folder = bundle_dir(bundle, "train.json") / "configs" / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def check_recipe(bundle: str | os.PathLike, recipe: str | os.PathLike) -> dict:
    """The recipe's settings, each checked to be a top-level setting the bundle has (a key of its ``train.json``,
    ``pretrain.json`` or ``evaluate.json``), so a typo is an error naming the file, the key and the nearest real key,
    never a setting silently added and ignored. Nested ids (``train#...``) are refused: a recipe must merge with
    ``evaluate.json`` too, which has no ``train`` section. ``recipe`` is a data set name or a path.

    Example:
        >>> check_recipe("unet", "monuseg")["learning_rate"]
        0.001
    """
    import difflib
    import json

    path = Path(recipe) if Path(recipe).is_file() else recipe_files(bundle).get(str(recipe))
    if path is None:
        raise FileNotFoundError(f"no recipe {recipe!r} for {bundle}: it has {sorted(recipe_files(bundle))}")
    try:
        settings = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: a recipe is a JSON object of settings, got {type(settings).__name__}")
    nested = [k for k in settings if "#" in k]
    if nested:
        raise ValueError(f"{path}: {nested}: a recipe sets top-level settings only (it is merged on evaluate.json too)")
    configs = bundle_dir(bundle, "train.json") / "configs"
    targets = [n for n in RECIPE_TARGETS if (configs / n).is_file()]
    known = {k for n in targets for k in json.loads((configs / n).read_text())}
    unknown = [k for k in settings if k not in known]
    if unknown:
        hints = "; ".join(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, sorted(known), 1)) else "")
                          for k in unknown)
        raise ValueError(f"{path}: not settings of the {Path(bundle).name} bundle ({', '.join(targets)}): {hints}")
    return settings


def recipe_commands(bundle: str, dataset: str, datalist: str | os.PathLike, data_root: str | os.PathLike) -> list[str]:
    """The training commands of ``bundle`` with its recipe for ``dataset`` (as ``scripts/prepare_data.py`` prints
    them): the first phase (``pretrain.json``) when the bundle has one, then ``train.json``, in one bundle root."""
    configs = f"bundles/{bundle}/configs"
    phases = [["pretrain.json"], []] if (bundle_dir(bundle, "train.json") / "configs" / "pretrain.json").is_file() else [[]]
    return [f"python -m monai.bundle run training --config_file \"['{configs}/train.json',"
            + "".join(f"'{configs}/{p}'," for p in phase) + f"'{configs}/recipes/{dataset}.json']\" "
            f"--bundle_root runs/{dataset}/{bundle} --datalist {datalist} --data_root {data_root}" for phase in phases]
