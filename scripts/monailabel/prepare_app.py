#!/usr/bin/env python
"""Place a trained bundle into the project's MONAI Label app (run with MONAI Label's environment).

    .venv-monailabel/bin/python scripts/monailabel/prepare_app.py --app runs/monailabel/apps/textseg \
        --bundle himix --bundle-root runs/demo/himix --config demo.json

The app (``scripts/monailabel/app``, MONAI Label's stock bundle tasks with checked requests) reads
``model/<name>/configs/inference.json`` (and ``train.json`` for training) and ``model/<name>/models/model.pt``.
This writes the bundle's ``inference.json`` and ``train.json`` with the override files merged in (MONAI Label
reads one file each), its ``metadata.json``, and copies the checkpoint; all under a temporary name, then renamed. An existing
``model/<name>`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from custom_nets.bundle import bundle_dir, load_config

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app", required=True, help="the MONAI Label app folder (a copy of scripts/monailabel/app)")
    p.add_argument("--bundle", required=True, help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--bundle-root", required=True, help="where the trained models/model.pt is")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on inference.json")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    try:
        configs = bundle_dir(args.bundle) / "configs"
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    checkpoint = Path(args.bundle_root) / "models" / "model.pt"
    app = Path(args.app)
    for path, what in ((configs / "inference.json", "bundle config"), (checkpoint, "checkpoint"), (app / "main.py", "MONAI Label app")):
        if not path.is_file():
            sys.exit(f"{what} not found: {path}")
    target = app / "model" / configs.parent.name  # the bundle's name, whether --bundle gave a name or a folder
    if target.exists() and not args.overwrite:
        sys.exit(f"{target} exists; pass --overwrite to replace it")
    merged = {}
    for name in ("inference.json", "train.json"):  # train.json: for MONAI Label's BundleTrainTask
        if (configs / name).is_file():
            parser = load_config(args.bundle, *args.config, main=name)
            merged[name] = parser.get()
            merged[name]["bundle_root"] = str(target)  # MONAI Label sets it too; keeps the file valid alone
    if "train.json" in merged:
        # training from MONAI Label fine-tunes the served model in place (it loads model.pt first): allowed here
        merged["train.json"]["overwrite"] = True
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (staging / "configs").mkdir()
        (staging / "models").mkdir()
        for name, config in merged.items():
            (staging / "configs" / name).write_text(json.dumps(config, indent=4))
        shutil.copy2(configs / "metadata.json", staging / "configs" / "metadata.json")
        shutil.copy2(checkpoint, staging / "models" / "model.pt")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print(f"placed {target.name} ({' + '.join(['inference.json', *args.config])}, {checkpoint}) in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
