"""Batch segmentation of a folder of studies: discovery, sentences, a resumable manifest.

A *job* is one CT series (DICOM files grouped by SeriesInstanceUID), one radiograph (a DX/CR instance) or
one NIfTI volume. The manifest (``<output>/manifest.json``) has one row per job: status (``done`` or
``failed``), kind, source, sentence, outputs, seconds, error. It is rewritten (temp file + rename) after
every job, so a crash loses at most the job in flight. A rerun skips jobs that are done (and whose outputs
exist) and retries failed ones. Files that are no DICOM (or corrupt) become failed rows of their own.
"""

from __future__ import annotations

import csv
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
from custom_nets.engines.outputs import write_atomically

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IGNORED_NAMES = {"manifest.json", "DICOMDIR"}


@dataclass
class Job:
    """One unit of work; ``id`` names its output folder and manifest row."""

    id: str
    kind: str  # "ct_series", "radiograph", "nifti" or "invalid"
    files: list[str]
    study_uid: str = ""
    series_uid: str = ""
    error: str = ""  # set for "invalid" jobs: found but not segmentable


@dataclass
class Row:
    status: str
    kind: str
    source: str
    sentence: str = ""
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def discover(input_dir: str | os.PathLike) -> list[Job]:
    """Every job under ``input_dir`` (searched recursively), in a stable order."""
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES and not p.name.startswith("."))
    jobs = [Job(f"nifti_{p.name.split('.')[0]}", "nifti", [str(p)]) for p in files if _is_nifti(p)]
    series, errors = group_series(p for p in files if not _is_nifti(p))
    for path, error in sorted(errors.items()):
        jobs.append(Job(f"file_{Path(path).relative_to(root).as_posix().replace('/', '_')}", "invalid", [path], error=error))
    for uid, members in sorted(series.items()):
        paths, header = [p for p, _ in members], members[0][1]
        modality, study = str(getattr(header, "Modality", "?")), str(getattr(header, "StudyInstanceUID", ""))
        if modality in CT_MODALITIES:
            jobs.append(Job(f"series_{uid}", "ct_series", [str(p) for p in paths], study, uid))
        elif modality in RADIOGRAPH_MODALITIES:
            for p, h in members:  # headers read once, by group_series
                sop = str(getattr(h, "SOPInstanceUID", p.stem))
                jobs.append(Job(f"image_{sop}", "radiograph", [str(p)], study, uid))
        else:
            jobs.append(Job(f"series_{uid}", "invalid", [str(p) for p in paths], study, uid,
                            error=f"series {uid} ({paths[0].parent}): modality {modality}, expected CT or a radiograph "
                                  f"({'/'.join(RADIOGRAPH_MODALITIES)})"))
    return jobs


def read_sentences(csv_path: str | os.PathLike) -> dict[str, str]:
    """``uid -> sentence`` from a CSV with columns ``uid`` (study or series UID, or a NIfTI file name) and ``sentence``."""
    path = Path(csv_path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"uid", "sentence"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: columns 'uid' and 'sentence' expected, found {reader.fieldnames}")
        out = {}
        for i, row in enumerate(reader, start=2):
            uid, sentence = (row["uid"] or "").strip(), (row["sentence"] or "").strip()
            if not uid:
                raise ValueError(f"{path}, row {i}: empty uid")
            out[uid] = sentence
    return out


def sentence_for(job: Job, sentences: dict[str, str], default: str | None) -> str:
    """Series UID first, then study UID, then the NIfTI file name, then ``default``."""
    keys = [job.series_uid, job.study_uid] + ([Path(job.files[0]).name] if job.kind == "nifti" else [])
    return next((sentences[k] for k in keys if k and k in sentences), default or "")


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


def is_done(row: dict | None, output_dir: Path) -> bool:
    return bool(row) and row.get("status") == "done" and all((output_dir / o).is_file() for o in row.get("outputs", []))


def run_job(job: Job, segmenter, sentence: str, output_dir: Path, write_seg: bool = True) -> list[str]:
    """Segment one job and write its outputs; the paths written, relative to ``output_dir``."""
    if job.kind == "invalid":
        raise ClinicalInputError(job.error)
    folder = output_dir / job.id
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
              progress: Callable[[list[Job]], Iterable[Job]] | None = None) -> dict[str, dict]:
    """Run every job not yet done; one failure is recorded and the batch goes on. Returns the manifest."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = output_dir / "manifest.json"
    manifest = load_manifest(manifest_path)
    todo = [j for j in jobs if not is_done(manifest.get(j.id), output_dir)]
    iterator = progress(todo) if progress else todo
    for job in iterator:
        sentence = sentence_for(job, sentences or {}, default_sentence)
        t0 = time.perf_counter()
        source = job.files[0] if len(job.files) == 1 else str(Path(job.files[0]).parent)
        try:
            outputs = run_job(job, segmenter, sentence, output_dir, write_seg)
            row = Row("done", job.kind, source, sentence, outputs, round(time.perf_counter() - t0, 3))
        except (ClinicalInputError, ValueError, OSError, RuntimeError) as e:
            row = Row("failed", job.kind, source, sentence, [], round(time.perf_counter() - t0, 3), f"{type(e).__name__}: {e}")
        manifest[job.id] = asdict(row)
        save_manifest(manifest, manifest_path)
    return manifest
