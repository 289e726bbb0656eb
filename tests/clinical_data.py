"""Synthetic clinical inputs for the tests: a CT series with real geometry tags, a radiograph, NIfTI volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
ORIGIN = (-40.0, -30.0, 100.0)
PIXEL_SPACING = (0.8, 0.7)  # row spacing, column spacing (mm)
SLICE_STEP = 2.5


def _base(path: Path, sop_class: str, modality: str, study_uid: str, series_uid: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, study_uid, series_uid
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "P1", "19700101", "O"
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "20260101", "120000", "A1", ""
    ds.SeriesNumber, ds.Manufacturer = 1, "test"
    ds.FrameOfReferenceUID = generate_uid()
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    return ds


def write_ct_series(folder: Path, n: int = 16, rows: int = 48, cols: int = 64, skip: int | None = None,
                    modality: str = "CT", study_uid: str | None = None, series_uid: str | None = None, prefix: str = "im",
                    hu: np.ndarray | None = None) -> tuple[list[Path], np.ndarray]:
    """``n`` axial slices (files in shuffled name order); a bright cube in the middle, or ``hu`` (X, Y, Z) when given
    (columns toward the patient's left, rows toward posterior). Returns files and HU (X, Y, Z)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_of_reference = study_uid or generate_uid(), series_uid or generate_uid(), generate_uid()
    if hu is not None:
        cols, rows, n = hu.shape
        hu = np.round(hu).astype(np.float32)
    else:
        hu = np.full((cols, rows, n), -900.0, np.float32)  # (X, Y, Z): lung-like background
        hu[cols // 3 : 2 * cols // 3, rows // 3 : 2 * rows // 3, n // 4 : 3 * n // 4] = 40.0
    files = []
    order = np.random.default_rng(0).permutation(n)  # file names do not follow position
    for k in range(n):
        if k == skip:
            continue
        path = folder / f"{prefix}{order[k]:03d}.dcm"
        ds = _base(path, CT_STORAGE, modality, study_uid, series_uid)
        ds.Rows, ds.Columns, ds.FrameOfReferenceUID = rows, cols, frame_of_reference
        ds.PixelSpacing = list(PIXEL_SPACING)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SLICE_STEP]
        ds.SliceThickness = SLICE_STEP
        ds.InstanceNumber = k + 1
        ds.PhotometricInterpretation, ds.PixelRepresentation = "MONOCHROME2", 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (hu[:, :, k].T + 1024).astype(np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files, hu


def write_radiograph(path: Path, rows: int = 40, cols: int = 56, monochrome1: bool = True) -> np.ndarray:
    """A DX image with a window (VOI) and, by default, MONOCHROME1. Returns the stored pixels (rows, cols)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _base(path, DX_STORAGE, "DX", generate_uid(), generate_uid())
    ds.Rows, ds.Columns = rows, cols
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.ImagerPixelSpacing = [0.2, 0.2]
    pixels = np.tile(np.linspace(0, 4095, cols, dtype=np.uint16), (rows, 1))
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pixels


def write_nifti(path: Path, shape=(40, 32, 6), affine=None) -> np.ndarray:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.array([[-0.9, 0, 0, 30], [0, 0.8, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]]) if affine is None else affine
    data = np.random.default_rng(0).normal(-500, 300, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


def write_non_image_dicom(path: Path) -> None:
    """A DICOM file without pixel data (a structured-report-like object)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _base(path, "1.2.840.10008.5.1.4.1.1.88.11", "SR", generate_uid(), generate_uid())
    ds.save_as(path, enforce_file_format=True)


def read(path: Path):
    return pydicom.dcmread(path)


def write_report_sr(path: Path, evidence: list, findings: list[str] = (), impressions: list[str] = (),
                    kind: str = "enhanced", codes: str = "DCM") -> str:
    """A radiology report as the standard shapes it (TID 2000, PS3.16): a "Diagnostic Imaging Report" container
    holding a Findings section of TEXT "Finding" items and an Impressions section of TEXT "Impression" items, as an
    Enhanced (or Comprehensive) SR in the study of ``evidence`` (the datasets it reports on). ``codes="LN"``
    names the sections with their LOINC codes instead. Returns its SOPInstanceUID."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    contains = hd.sr.RelationshipTypeValues.CONTAINS
    section_codes = {"DCM": (Code("121070", "DCM", "Findings"), Code("121072", "DCM", "Impressions")),
                     "LN": (Code("59776-5", "LN", "Procedure Findings"), Code("19005-8", "LN", "Impression"))}[codes]
    root = hd.sr.ContainerContentItem(Code("18748-4", "LN", "Diagnostic Imaging Report"))
    sections = []
    for section_code, item_code, texts in ((section_codes[0], Code("121071", "DCM", "Finding"), findings),
                                           (section_codes[1], Code("121073", "DCM", "Impression"), impressions)):
        if texts:
            section = hd.sr.ContainerContentItem(section_code, relationship_type=contains)
            section.ContentSequence = hd.sr.ContentSequence([hd.sr.TextContentItem(item_code, t, contains) for t in texts])
            sections.append(section)
    root.ContentSequence = hd.sr.ContentSequence(sections)
    cls = {"enhanced": hd.sr.EnhancedSR, "comprehensive": hd.sr.ComprehensiveSR}[kind]
    sr = cls(evidence=evidence, content=root, series_instance_uid=hd.UID(), series_number=100, sop_instance_uid=hd.UID(),
             instance_number=1, manufacturer="test reporting system", is_complete=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path)
    return str(sr.SOPInstanceUID)
