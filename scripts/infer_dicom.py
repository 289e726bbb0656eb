#!/usr/bin/env python
"""Segment every study under a folder, or found on a PACS, with a trained bundle: CT series, radiographs, NIfTI volumes.

    python scripts/infer_dicom.py --bundle bundles/himix --config demo.json --bundle-root runs/demo/himix \
        --input /data/studies --output /data/seg --sentences reports.csv        # or --text "..."
    DICOMWEB_USER=... DICOMWEB_PASSWORD=... python scripts/infer_dicom.py --bundle bundles/himix ... \
        --dicomweb https://pacs.example.org/dicom-web --study 1.2.840... --output /data/seg     # or --query Modality=CT

Series are grouped by SeriesInstanceUID (files searched recursively). Each CT series gives ``seg.nii.gz``
(the source's affine) and ``seg.dcm`` (DICOM SEG referencing the source instances); a radiograph gives
``mask.png`` and ``seg.dcm``; a NIfTI volume gives ``seg.nii.gz``. ``<output>/manifest.json`` has one row
per series; a rerun skips what is done with the same inputs and retries what failed. The sentence of a study is
its structured report's Findings (else Impression) when it has one, else the CSV's, else --text. With --dicomweb,
series are found (QIDO-RS), retrieved (WADO-RS) into a temporary folder and each SEG is stored back (STOW-RS); the
manifest records the remote UIDs and the stored SEG's. Every argument, the sentences, the inputs and the server are
checked before any work: an error is one ``error:`` line, exit 1, nothing written. Exit 2: some series failed;
3: the server was lost or refused us mid-run (a rerun resumes). See docs/clinical_inference.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from custom_nets.clinical.batch import check_sentences, discover, read_sentences, run_batch
from custom_nets.clinical.dicomweb import UPLOAD_FAILED, Pacs, PacsError, parse_query, remote_jobs, run_remote_batch
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="folder of studies (searched recursively)")
    source.add_argument("--dicomweb", metavar="URL", help="DICOMweb root of a PACS, e.g. http://127.0.0.1:8042/dicom-web "
                        "(credentials: DICOMWEB_USER and DICOMWEB_PASSWORD, or a netrc file)")
    p.add_argument("--study", action="append", default=[], metavar="UID", help="with --dicomweb: a study to segment (repeatable)")
    p.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                   help="with --dicomweb: a QIDO-RS filter on series, e.g. Modality=CT, StudyDate=20260101-20260131 (repeatable)")
    p.add_argument("--ca-bundle", default=None, help="with --dicomweb: CA certificate file to verify the server's TLS with")
    p.add_argument("--timeout", type=float, default=60.0, help="with --dicomweb: seconds to wait for each answer")
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
    pacs, found = None, None
    try:
        if args.dicomweb is None and (args.study or args.query or args.ca_bundle):
            raise ValueError("--study, --query and --ca-bundle go with --dicomweb")
        if args.dicomweb is not None and not (args.study or args.query):
            raise ValueError("--dicomweb needs --study UID or --query KEY=VALUE (e.g. --query Modality=CT): which series?")
        query = parse_query(args.query)
        default_text = None
        if args.text is not None:
            default_text = clean_sentence(args.text)
            if not default_text:
                raise ValueError(f"--text is empty: {args.text!r}")
        check_writable_dir(args.output, "--output")
        if args.dicomweb is not None:
            pacs = Pacs(args.dicomweb, args.ca_bundle, args.timeout)
            pacs.check()  # server down or credentials refused: said now, nothing written
        if not args.no_seg:
            try:
                import highdicom  # noqa: F401
            except ImportError:
                raise ValueError("DICOM SEG output needs highdicom: pip install -c constraints.txt -e '.[dicom]' (or pass --no-seg)") from None
        segmenter = BundleSegmenter(args.bundle, args.config, args.bundle_root, args.checkpoint, tuple(args.window),
                                    args.slice_batch, args.device)
        sentences = read_sentences(args.sentences) if args.sentences else {}
        if pacs is not None:
            found = remote_jobs(pacs, pacs.find_series(args.study, query))
            jobs, reports = found.jobs, found.reports
            if not jobs:
                raise ValueError(f"no CT series or radiograph found on {pacs.url} for {args.study or query} "
                                 f"(other series: {dict(found.ignored) or 'none'})")
        else:
            jobs = discover(args.input)
            reports = None
            if not jobs:
                raise ValueError(f"no DICOM or NIfTI files found under {args.input}")
        missing, unmatched = check_sentences(jobs, sentences, default_text, reports)
        if missing and not args.allow_missing_text:
            how = f"no row of {args.sentences} matches them" if args.sentences else "neither --sentences nor --text was given"
            raise ValueError(f"{len(missing)} series have no sentence ({how}): "
                             f"{_listed([f'{j.id} ({j.files[0] if j.files else j.study_uid})' for j in missing])}; add their "
                             "sentences, or pass "
                             "--allow-missing-text to segment them without text")
    except (FileNotFoundError, ValueError, PacsError) as e:
        sys.exit(f"error: {e}")
    if pacs is not None and pacs.plain_http_with_credentials:
        print(f"warning: credentials ({pacs.auth_source}) go to {pacs.url} over plain http, unencrypted; use https")
    if found is not None and found.ignored:
        print(f"note: series of other modalities left aside: {dict(sorted(found.ignored.items()))}")
    if found is not None and found.reports:
        print(f"note: {len(found.reports)} stud{'y' if len(found.reports) == 1 else 'ies'} take their sentence from a "
              "structured report (Findings, else Impression)")
    reports_found = [j for j in jobs if j.kind == "report"]
    if reports_found:
        print(f"note: {len(reports_found)} structured report(s) found; "
              + ", ".join(f"{j.files[0]}: {'no Findings or Impression text' if j.report is None else j.report.section}"
                          for j in reports_found[:10]))
    jobs = [j for j in jobs if j.kind != "report"]
    if unmatched:
        print(f"warning: {len(unmatched)} uid(s) of {args.sentences} match no series, study or NIfTI file: {_listed(unmatched)}")
    if missing:
        print(f"note: {len(missing)} series run without text (--allow-missing-text): {_listed([j.id for j in missing])}")

    def progress(todo):
        done = "" if pacs is not None else f" ({len(jobs) - len(todo)} already done)"  # over DICOMweb: each job is checked
        return tqdm(todo, unit="series", desc=f"segmenting{done}", dynamic_ncols=True)

    stopped = None
    try:  # series done earlier with other inputs are refused here, before any work, unless --overwrite
        if pacs is not None:
            manifest, stopped = run_remote_batch(pacs, found, segmenter, args.output, sentences, default_text,
                                                 write_seg=not args.no_seg, progress=progress, overwrite=args.overwrite)
        else:
            manifest = run_batch(jobs + reports_found, segmenter, args.output, sentences, default_text,
                                 write_seg=not args.no_seg, progress=progress, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:  # ValueError: an unreadable manifest
        sys.exit(f"error: {e}")
    counts = Counter(row["status"] for job_id, row in manifest.items() if job_id in {j.id for j in jobs})
    print(f"{len(jobs)} series found; manifest {Path(args.output) / 'manifest.json'}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for job_id, row in sorted(manifest.items()):
        if row["status"] == "failed":
            print(f"  failed {job_id}: {row['error']}")
        elif row.get("stored", {}).get("status") == UPLOAD_FAILED:
            print(f"  {job_id}: {UPLOAD_FAILED} ({row['stored']['error']}); a rerun uploads it again")
    if stopped:
        left = [j.id for j in jobs if manifest.get(j.id, {}).get("status") != "done"]
        print(f"error: stopped: {stopped}; {len(left)} series not done, the manifest keeps the rest: rerun to resume")
        return 3
    uploads_failed = any(manifest.get(j.id, {}).get("stored", {}).get("status") == UPLOAD_FAILED for j in jobs)
    return 0 if counts.get("failed", 0) == 0 and not uploads_failed else 2


if __name__ == "__main__":
    sys.exit(main())
