#!/usr/bin/env python
"""Write a checked datalist (image, label, text) for one of the papers' data sets from its published layout.

    python scripts/prepare_data.py qata_cov19 --root /data/QaTa-COV19            # LViT or CSV layout, detected
    python scripts/prepare_data.py mosmeddata_plus --root /data/MosMedData+
    python scripts/prepare_data.py monuseg --root /data/MoNuSeg
    python scripts/prepare_data.py kvasir_seg --root /data/Kvasir-SEG [--seed 0 | --split-file splits.json]
    python scripts/prepare_data.py cvc_clinicdb --root /data/CVC-ClinicDB

Writes ``datalists/<name>.json`` (``--out`` to change; an existing file is kept unless ``--overwrite``) and
prints a summary. Every check runs before anything is written; a failure names the file and row and
leaves no datalist behind. Train a bundle on it with ``--datalist <out> --data_root <root>``; the mask rule
recorded in the datalist applies unless ``--mask_rule`` is given. See docs/datasets.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from custom_nets.bundle import BUNDLES, recipe_commands, recipe_files
from custom_nets.data.converters import ConversionError, convert_csv_layout, convert_lvit, convert_polyps, write_datalist
from custom_nets.transforms.mask import MASK_RULES

ROOT = Path(__file__).resolve().parent.parent
TEXT_SETS = ("qata_cov19", "mosmeddata_plus", "monuseg")
POLYP_SETS = ("kvasir_seg", "cvc_clinicdb")


def detect_layout(root: Path) -> str:
    if (root / "Train_Folder").is_dir():
        return "lvit"
    if (root / "prompt").is_dir():
        return "csv"
    raise ConversionError(f"{root}: neither the LViT layout (Train_Folder/, Val_Folder/, Test_Folder/ and "
                          "*_text.xlsx) nor the CSV layout (prompt/, Images/, GTs/) found")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=TEXT_SETS + POLYP_SETS)
    p.add_argument("--root", required=True, help="where the data set was unpacked (the datalist's data root)")
    p.add_argument("--out", default=None, help="datalist path (default: datalists/<name>.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing datalist")
    p.add_argument("--layout", choices=("auto", "lvit", "csv"), default="auto", help="text sets only")
    p.add_argument("--mask-rule", choices=MASK_RULES, default=None,
                   help="binarisation: nonzero (> 0; default for PNG sets), 255 (== 255), half (>= 128; default "
                        "for the polyp sets, whose JPEG masks carry compression noise)")
    p.add_argument("--seed", type=int, default=0, help="polyp sets: seed of the 8:1:1 split")
    p.add_argument("--split-file", default=None, help='polyp sets: JSON {"training": [stems], "validation": ..., "test": ...}')
    args = p.parse_args(argv)

    root = Path(args.root)
    out = Path(args.out) if args.out else ROOT / "datalists" / f"{args.name}.json"
    if out.exists() and not args.overwrite:
        sys.exit(f"{out} exists; pass --overwrite to replace it")
    try:
        if args.name in POLYP_SETS:
            datalist, summary = convert_polyps(root, args.name, seed=args.seed, split_file=args.split_file,
                                               mask_rule=args.mask_rule or "half")
        else:
            layout = detect_layout(root) if args.layout == "auto" else args.layout
            convert = convert_lvit if layout == "lvit" else convert_csv_layout
            datalist, summary = convert(root, args.name, mask_rule=args.mask_rule or "nonzero")
        write_datalist(datalist, out, overwrite=args.overwrite)
    except (ConversionError, FileExistsError) as e:
        sys.exit(f"error: {e}\nnothing was written.")
    print("\n".join(summary.lines()))
    print(f"wrote {out} (mask rule '{datalist['mask_rule']}' recorded in it)\ntrain with: --datalist {out} --data_root {root}")
    with_recipe = [b.name for b in sorted(BUNDLES.iterdir()) if (b / 'configs' / 'train.json').is_file() and args.name in recipe_files(b.name)]
    if with_recipe:
        print(f"the authors' recipes for {args.name} (bundles/<bundle>/configs/recipes/{args.name}.json; sources in each model card):")
        for bundle in with_recipe:
            for command in recipe_commands(bundle, args.name, out, root):
                print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
