#!/usr/bin/env python
"""Segment every study under a folder with a trained bundle: CT series, radiographs, NIfTI volumes.

    python scripts/infer_dicom.py --bundle bundles/himix --config demo.json --bundle-root runs/demo/himix \
        --input /data/studies --output /data/seg --sentences reports.csv        # or --text "..."

Series are grouped by SeriesInstanceUID (files searched recursively). Each CT series gives ``seg.nii.gz``
(the source's affine) and ``seg.dcm`` (DICOM SEG referencing the source instances); a radiograph gives
``mask.png`` and ``seg.dcm``; a NIfTI volume gives ``seg.nii.gz``. ``<output>/manifest.json`` has one row
per series; a rerun skips what is done and retries what failed. See docs/clinical_inference.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from custom_nets.clinical.batch import discover, read_sentences, run_batch
from custom_nets.clinical.inference import BundleSegmenter
from custom_nets.clinical.io import LUNG_WINDOW


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/himix")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on inference.json, e.g. demo.json")
    p.add_argument("--bundle-root", default=None, help="where models/model.pt is (default: the bundle folder)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--input", required=True, help="folder of studies (searched recursively)")
    p.add_argument("--output", required=True, help="output folder (manifest.json and one folder per series)")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--sentences", default=None, help="CSV with columns uid (study or series UID, or NIfTI file name), sentence")
    text.add_argument("--text", default=None, help="one sentence for every series")
    p.add_argument("--window", type=float, nargs=2, default=LUNG_WINDOW, metavar=("CENTRE", "WIDTH"),
                   help=f"CT window in HU (default: lung {LUNG_WINDOW})")
    p.add_argument("--slice-batch", type=int, default=8)
    p.add_argument("--no-seg", action="store_true", help="skip DICOM SEG outputs")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    try:
        segmenter = BundleSegmenter(args.bundle, args.config, args.bundle_root, args.checkpoint, tuple(args.window),
                                    args.slice_batch, args.device)
        sentences = read_sentences(args.sentences) if args.sentences else {}
        jobs = discover(args.input)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if not args.no_seg:
        try:
            import highdicom  # noqa: F401
        except ImportError:
            sys.exit("error: DICOM SEG output needs highdicom: pip install -c constraints.txt -e '.[dicom]' (or pass --no-seg)")

    def progress(todo):
        return tqdm(todo, unit="series", desc=f"segmenting ({len(jobs) - len(todo)} already done)", dynamic_ncols=True)

    manifest = run_batch(jobs, segmenter, args.output, sentences, args.text, write_seg=not args.no_seg, progress=progress)
    counts = Counter(row["status"] for row in manifest.values())
    print(f"{len(jobs)} series found; manifest {Path(args.output) / 'manifest.json'}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for job_id, row in sorted(manifest.items()):
        if row["status"] == "failed":
            print(f"  failed {job_id}: {row['error']}")
    return 0 if counts.get("failed", 0) == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
