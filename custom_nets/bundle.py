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
