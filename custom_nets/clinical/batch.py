"""Batch segmentation of a folder of studies: discovery, sentences, a resumable manifest.

A *job* is one CT series (DICOM files grouped by SeriesInstanceUID), one radiograph (a DX/CR instance) or
one NIfTI volume. A structured report (SR) is no job: its Findings (else Impression) text is the sentence of every
job of its study (:mod:`custom_nets.clinical.reports`), before the CSV and ``--text``. The manifest (``<output>/manifest.json``) has one row per job: status (``done`` or
``failed``), kind, source, sentence and where it came from, outputs, seconds, error, and ``made_with``: what made the result
(sentence, CT window, bundle, version, checkpoint and config hashes). It is rewritten (temp file + rename)
after every job, so a crash loses at most the job in flight. A rerun skips jobs that are done with the same
``made_with`` (and whose outputs exist), retries failed ones, and re-runs changed ones only when asked to
replace their outputs. Files that are no DICOM (or corrupt, or whose UIDs are not DICOM UIDs) become failed
rows of their own, keyed by their path.

Output folders are named from validated UIDs (digits and dots) or from the input's path relative to the input
folder (cleaned, with a hash), and every write path is checked to stay inside the output folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from custom_nets.clinical.io import (
    CT_MODALITIES,
    RADIOGRAPH_MODALITIES,
    ClinicalInputError,
    group_series,
    load_dicom_series,
    load_nifti,
    load_radiograph,
)
from custom_nets.clinical.outputs import save_dicom_seg, save_nifti, save_png
from custom_nets.clinical.reports import Report, is_report, newest_reports, report_of
from custom_nets.utils.files import write_atomically
from custom_nets.text.prompts import clean_sentence
from custom_nets.utils import is_dicom_uid, path_inside, safe_component

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IGNORED_NAMES = {"manifest.json", "DICOMDIR"}


@dataclass
class Job:
    """One unit of work; ``id`` names its output folder and manifest row."""

    id: str
    kind: str  # "ct_series", "radiograph", "nifti", "invalid", or "report" (an SR: a sentence, not segmented)
    files: list[str]
    study_uid: str = ""
    series_uid: str = ""
    error: str = ""  # set for "invalid" jobs: found but not segmentable
    relative_path: str = ""  # the input's path relative to the input folder (NIfTI: a sentence key)
    report: Report | None = None  # "report" jobs: the Findings/Impression text, None when the SR has neither


@dataclass
class Row:
    status: str
    kind: str
    source: str
    sentence: str = ""
    sentence_source: str = ""  # "report: SR <uid> (Findings)", "csv: <uid>", "--text" or "none"
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    made_with: dict = field(default_factory=dict)


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def discover(input_dir: str | os.PathLike) -> list[Job]:
    """Every job under ``input_dir`` (searched recursively), in a stable order."""
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES and not p.name.startswith("."))

    def file_id(prefix: str, path: Path) -> str:  # unique per path relative to the input folder
        return f"{prefix}_{safe_component(path.relative_to(root).as_posix())}"

    jobs = [Job(file_id("nifti", p), "nifti", [str(p)], relative_path=p.relative_to(root).as_posix())
            for p in files if _is_nifti(p)]
    series, errors = group_series(p for p in files if not _is_nifti(p))
    for uid, members in list(series.items()):
        if not is_dicom_uid(uid):  # a corrupt header or a hostile one: never a folder name
            del series[uid]
            for p, _ in members:
                errors[str(p)] = f"{p}: SeriesInstanceUID {uid!r} is not a DICOM UID (digits and dots, at most 64 characters)"
    for path, error in sorted(errors.items()):
        jobs.append(Job(file_id("file", Path(path)), "invalid", [path], error=error))
    for uid, members in sorted(series.items()):
        paths, header = [p for p, _ in members], members[0][1]
        modality, study = str(getattr(header, "Modality", "?")), str(getattr(header, "StudyInstanceUID", ""))
        if all(is_report(h) for _, h in members):  # the SR's content tree is in the header (it has no pixel data)
            for p, h in members:
                jobs.append(Job(f"report_{safe_component(str(getattr(h, 'SOPInstanceUID', p.name)))}", "report", [str(p)],
                                study, uid, report=report_of(h)))
        elif modality in CT_MODALITIES:
            jobs.append(Job(f"series_{uid}", "ct_series", [str(p) for p in paths], study, uid))
        elif modality in RADIOGRAPH_MODALITIES:
            for p, h in members:  # headers read once, by group_series
                sop = str(getattr(h, "SOPInstanceUID", ""))
                if is_dicom_uid(sop):
                    jobs.append(Job(f"image_{sop}", "radiograph", [str(p)], study, uid))
                else:
                    jobs.append(Job(file_id("file", p), "invalid", [str(p)], study, uid,
                                    error=f"{p}: SOPInstanceUID {sop!r} is not a DICOM UID (digits and dots, at most 64 characters)"))
        else:
            jobs.append(Job(f"series_{uid}", "invalid", [str(p) for p in paths], study, uid,
                            error=f"series {uid} ({paths[0].parent}): modality {modality}, expected CT or a radiograph "
                                  f"({'/'.join(RADIOGRAPH_MODALITIES)})"))
    return jobs


def read_sentences(csv_path: str | os.PathLike) -> dict[str, str]:
    """``uid -> sentence`` from a CSV with columns ``uid`` (study or series UID, or a NIfTI file name) and ``sentence``.

    Parsed strictly, every error naming the file and row: UTF-8 (a byte-order mark, as spreadsheet programs
    write, is accepted), a header with both columns, exactly as many fields in each row as in the header (an
    unquoted comma in a sentence is an error, not a cut sentence), a non-empty uid and sentence in each row, and
    one sentence per uid (a repeated uid with the same sentence is accepted).
    """
    path = Path(csv_path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                         "save the file as UTF-8 (\"CSV UTF-8\" in spreadsheet programs)") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as e:
        raise ValueError(f"{path}: not a valid CSV file ({e})") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if not {"uid", "sentence"} <= set(header):
        raise ValueError(f"{path}: columns 'uid' and 'sentence' expected in the first row, found {rows[0] if rows else []}")
    uid_col, sentence_col = header.index("uid"), header.index("sentence")
    out: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            hint = " (a comma in a sentence? quote the sentence)" if len(row) > len(header) else ""
            raise ValueError(f"{path}, row {i}: {len(row)} fields, the header has {len(header)}{hint}: {row}")
        uid, sentence = row[uid_col].strip(), clean_sentence(row[sentence_col])
        if not uid:
            raise ValueError(f"{path}, row {i}: empty uid")
        if not sentence:
            raise ValueError(f"{path}, row {i}: no sentence for uid {uid} (leave the row out, or give the report sentence)")
        if uid in out and out[uid] != sentence:
            raise ValueError(f"{path}, rows {first_row[uid]} and {i}: two different sentences for uid {uid}")
        out[uid] = sentence
        first_row.setdefault(uid, i)
    return out


def reports_of(jobs: Iterable[Job]) -> dict[str, Report]:
    """``study UID -> Report`` from the SR jobs found (the newest report of each study)."""
    return newest_reports(j.report for j in jobs if j.kind == "report" and j.report is not None)


def _sentence_keys(job: Job) -> list[str]:
    nifti = [job.relative_path, Path(job.files[0]).name] if job.kind == "nifti" else []
    return [k for k in (job.series_uid, job.study_uid, *nifti) if k]


def sentence_and_source(job: Job, sentences: dict[str, str], default: str | None,
                        reports: dict[str, Report] | None = None) -> tuple[str, str]:
    """The job's sentence and where it came from: its study's report (SR), else the CSV (series UID first, then
    study UID, then the NIfTI path relative to the input folder, then its file name), else ``default`` (--text)."""
    report = (reports or {}).get(job.study_uid) if job.study_uid else None
    if report is not None:
        return report.text, report.source
    key = next((k for k in _sentence_keys(job) if k in sentences), None)
    if key is not None:
        return sentences[key], f"csv: {key}"
    return (default, "--text") if default else ("", "none")


def sentence_for(job: Job, sentences: dict[str, str], default: str | None, reports: dict[str, Report] | None = None) -> str:
    """The job's sentence (see :func:`sentence_and_source`)."""
    return sentence_and_source(job, sentences, default, reports)[0]


def check_sentences(jobs: list[Job], sentences: dict[str, str], default: str | None,
                    reports: dict[str, Report] | None = None) -> tuple[list[Job], list[str]]:
    """Before any work: the segmentable jobs that would run without a sentence, and the sentence uids that match no job.

    ``reports`` (default: the SR jobs among ``jobs``) give their studies' sentences first.
    A bare NIfTI file name that names files in several folders is a ValueError: give their relative paths.
    """
    reports = reports_of(jobs) if reports is None else reports
    runnable = [j for j in jobs if j.kind not in ("invalid", "report")]
    by_name: dict[str, list[str]] = {}
    for j in runnable:
        if j.kind == "nifti":
            by_name.setdefault(Path(j.files[0]).name, []).append(j.relative_path)
    ambiguous = {name: paths for name, paths in by_name.items() if len(paths) > 1 and name in sentences}
    if ambiguous:
        name, paths = next(iter(ambiguous.items()))
        raise ValueError(f"sentence uid {name!r} names {len(paths)} NIfTI files ({', '.join(paths)}); use their paths "
                         "relative to --input as uids")
    missing = [j for j in runnable if not sentence_for(j, sentences, default, reports)]
    used = {k for j in jobs for k in _sentence_keys(j)}
    return missing, sorted(set(sentences) - used)


def load_manifest(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: unreadable manifest ({e}); move it away to start afresh") from e


def save_manifest(manifest: dict[str, dict], path: Path) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True)
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def is_done(row: dict | None, output_dir: Path, made_with: dict | None = None) -> bool:
    """Done, with every output present and (when given) made with the same inputs."""
    return (bool(row) and row.get("status") == "done" and all((output_dir / o).is_file() for o in row.get("outputs", []))
            and (made_with is None or row.get("made_with") == made_with))


def job_made_with(segmenter, sentence: str) -> dict:
    """What makes a job's result: the sentence and the segmenter's settings (``segmenter.made_with``)."""
    return {"sentence": sentence, **getattr(segmenter, "made_with", {})}


def changed_jobs(jobs: list[Job], segmenter, output_dir: str | os.PathLike, sentences: dict[str, str] | None = None,
                 default_sentence: str | None = None, reports: dict[str, Report] | None = None) -> dict[str, list[str]]:
    """Jobs done earlier with other inputs (the keys of ``made_with`` that differ): a rerun would replace their outputs."""
    output_dir = Path(output_dir)
    manifest = load_manifest(output_dir / "manifest.json")
    reports = reports_of(jobs) if reports is None else reports
    changed = {}
    for job in jobs:
        row = manifest.get(job.id)
        if is_done(row, output_dir):
            now = job_made_with(segmenter, sentence_for(job, sentences or {}, default_sentence, reports))
            before = row.get("made_with", {})
            differ = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
            if differ:
                changed[job.id] = differ
    return changed


def refuse_changed(changed: dict[str, list[str]], output_dir: Path, overwrite: bool) -> None:
    """FileExistsError naming the jobs done with other inputs (:func:`changed_jobs`), unless ``overwrite``."""
    if changed and not overwrite:
        shown = "; ".join(f"{k} ({', '.join(v)} changed)" for k, v in list(changed.items())[:10])
        raise FileExistsError(f"{len(changed)} series in {output_dir} were segmented with other inputs: {shown}"
                              f"{' ...' if len(changed) > 10 else ''}; pass --overwrite to redo them, or choose another --output")


def run_job(job: Job, segmenter, sentence: str, output_dir: Path, write_seg: bool = True) -> list[str]:
    """Segment one job and write its outputs; the paths written, relative to ``output_dir``."""
    if job.kind == "invalid":
        raise ClinicalInputError(job.error)
    folder = path_inside(output_dir, job.id)
    text = sentence or None
    outputs: list[Path] = []
    if job.kind == "nifti":
        volume = load_nifti(job.files[0])
        mask = segmenter.segment_volume(volume, text)
        outputs.append(save_nifti(mask, volume.affine, folder / "seg.nii.gz"))
    elif job.kind == "ct_series":
        volume = load_dicom_series(job.files)
        mask = segmenter.segment_volume(volume, text)
        outputs.append(save_nifti(mask, volume.affine, folder / "seg.nii.gz"))
        if write_seg:
            outputs.append(save_dicom_seg(mask, volume.datasets, folder / "seg.dcm", segmenter.name, segmenter.version))
    elif job.kind == "radiograph":
        image = load_radiograph(job.files[0])
        mask = segmenter.segment_radiograph(image, text)
        outputs.append(save_png(mask, folder / "mask.png"))
        if write_seg:
            outputs.append(save_dicom_seg(mask, [image.dataset], folder / "seg.dcm", segmenter.name, segmenter.version))
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    return [p.relative_to(output_dir).as_posix() for p in outputs]


def run_batch(jobs: list[Job], segmenter, output_dir: str | os.PathLike, sentences: dict[str, str] | None = None,
              default_sentence: str | None = None, write_seg: bool = True,
              progress: Callable[[list[Job]], Iterable[Job]] | None = None, overwrite: bool = False) -> dict[str, dict]:
    """Run every job not yet done; one failure is recorded and the batch goes on. Returns the manifest.

    A job done earlier with other inputs (another sentence, window, checkpoint, bundle version or config) is
    re-run when ``overwrite`` is set; otherwise a FileExistsError naming those jobs is raised before any work.
    """
    output_dir = Path(output_dir)
    reports = reports_of(jobs)
    jobs = [j for j in jobs if j.kind != "report"]
    refuse_changed(changed_jobs(jobs, segmenter, output_dir, sentences, default_sentence, reports), output_dir, overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = output_dir / "manifest.json"
    manifest = load_manifest(manifest_path)
    found = {j.id: sentence_and_source(j, sentences or {}, default_sentence, reports) for j in jobs}
    made_with = {j.id: job_made_with(segmenter, found[j.id][0]) for j in jobs}
    todo = [j for j in jobs if not is_done(manifest.get(j.id), output_dir, made_with[j.id])]
    iterator = progress(todo) if progress else todo
    for job in iterator:
        sentence, sentence_source = found[job.id]
        t0 = time.perf_counter()
        source = job.files[0] if len(job.files) == 1 else str(Path(job.files[0]).parent)
        try:
            outputs = run_job(job, segmenter, sentence, output_dir, write_seg)
            row = Row("done", job.kind, source, sentence, sentence_source, outputs, round(time.perf_counter() - t0, 3),
                      made_with=made_with[job.id])
        except (ClinicalInputError, ValueError, OSError, RuntimeError) as e:
            row = Row("failed", job.kind, source, sentence, sentence_source, [], round(time.perf_counter() - t0, 3),
                      f"{type(e).__name__}: {e}")
        manifest[job.id] = asdict(row)
        save_manifest(manifest, manifest_path)
    return manifest
