#!/usr/bin/env python
"""Write a CT-like NIfTI volume from a demo radiograph, to try the volume path.

    python scripts/make_demo_volume.py data/demo/images/test_0000.png data/demo/images/ct_test_0000.nii.gz

Each axial slice is the picture mapped back through the lung window to HU; its mask is the picture's mask.
"""

from __future__ import annotations

import argparse
import sys

from custom_nets.data.demo import write_demo_volume


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", help="a demo PNG (e.g. data/demo/images/test_0000.png)")
    p.add_argument("output", help="the .nii.gz to write")
    p.add_argument("--slices", type=int, default=3)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = p.parse_args(argv)
    try:
        path = write_demo_volume(args.image, args.output, args.slices, overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.slices} slices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
