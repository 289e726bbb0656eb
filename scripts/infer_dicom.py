#!/usr/bin/env python
"""Segment every study under a folder with a trained bundle: CT series, radiographs, NIfTI volumes.

    python scripts/infer_dicom.py --bundle bundles/himix --config demo.json --bundle-root runs/demo/himix \
        --input /data/studies --output /data/seg --sentences reports.csv        # or --text "..."

Series are grouped by SeriesInstanceUID (files searched recursively). Each CT series gives ``seg.nii.gz``
(the source's affine) and ``seg.dcm`` (DICOM SEG referencing the source instances); a radiograph gives
``mask.png`` and ``seg.dcm``; a NIfTI volume gives ``seg.nii.gz``. ``<output>/manifest.json`` has one row
per series; a rerun skips what is done with the same inputs and retries what failed. Every argument, the
sentences and the inputs are checked before any work: an error is one ``error:`` line, exit 1, nothing written.
See docs/clinical_inference.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from custom_nets.clinical.batch import check_sentences, discover, read_sentences, run_batch
from custom_nets.clinical.inference import BundleSegmenter
from custom_nets.transforms.intensity import LUNG_WINDOW
from custom_nets.text.prompts import clean_sentence
from custom_nets.utils import check_writable_dir


def _listed(items: list[str], limit: int = 10) -> str:
    return ", ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


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
    p.add_argument("--allow-missing-text", action="store_true",
                   help="segment series that have no sentence with the network's null text (otherwise an error)")
    p.add_argument("--window", type=float, nargs=2, default=LUNG_WINDOW, metavar=("CENTRE", "WIDTH"),
                   help=f"CT window in HU (default: lung {LUNG_WINDOW})")
    p.add_argument("--slice-batch", type=int, default=8)
    p.add_argument("--no-seg", action="store_true", help="skip DICOM SEG outputs")
    p.add_argument("--overwrite", action="store_true",
                   help="redo series whose outputs were made with other inputs (sentence, window, checkpoint, bundle)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    # everything is checked before anything is written: arguments, output folder, bundle (with the window and slice
    # batch), sentences, inputs
    try:
        default_text = None
        if args.text is not None:
            default_text = clean_sentence(args.text)
            if not default_text:
                raise ValueError(f"--text is empty: {args.text!r}")
        check_writable_dir(args.output, "--output")
        if not args.no_seg:
            try:
                import highdicom  # noqa: F401
            except ImportError:
                raise ValueError("DICOM SEG output needs highdicom: pip install -c constraints.txt -e '.[dicom]' (or pass --no-seg)") from None
        segmenter = BundleSegmenter(args.bundle, args.config, args.bundle_root, args.checkpoint, tuple(args.window),
                                    args.slice_batch, args.device)
        sentences = read_sentences(args.sentences) if args.sentences else {}
        jobs = discover(args.input)
        if not jobs:
            raise ValueError(f"no DICOM or NIfTI files found under {args.input}")
        missing, unmatched = check_sentences(jobs, sentences, default_text)
        if missing and not args.allow_missing_text:
            how = f"no row of {args.sentences} matches them" if args.sentences else "neither --sentences nor --text was given"
            raise ValueError(f"{len(missing)} series have no sentence ({how}): "
                             f"{_listed([f'{j.id} ({j.files[0]})' for j in missing])}; add their sentences, or pass "
                             "--allow-missing-text to segment them without text")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if unmatched:
        print(f"warning: {len(unmatched)} uid(s) of {args.sentences} match no series, study or NIfTI file: {_listed(unmatched)}")
    if missing:
        print(f"note: {len(missing)} series run without text (--allow-missing-text): {_listed([j.id for j in missing])}")

    def progress(todo):
        return tqdm(todo, unit="series", desc=f"segmenting ({len(jobs) - len(todo)} already done)", dynamic_ncols=True)

    try:  # series done earlier with other inputs are refused here, before any work, unless --overwrite
        manifest = run_batch(jobs, segmenter, args.output, sentences, default_text, write_seg=not args.no_seg,
                             progress=progress, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:  # ValueError: an unreadable manifest
        sys.exit(f"error: {e}")
    counts = Counter(row["status"] for job_id, row in manifest.items() if job_id in {j.id for j in jobs})
    print(f"{len(jobs)} series found; manifest {Path(args.output) / 'manifest.json'}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for job_id, row in sorted(manifest.items()):
        if row["status"] == "failed":
            print(f"  failed {job_id}: {row['error']}")
    return 0 if counts.get("failed", 0) == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
