"""Reading what hospitals store: CT volumes (NIfTI, DICOM series) and chest radiographs (DICOM DX/CR).

Array conventions match the training PNGs as MONAI loads them (first spatial axis = image column, x):
    - a volume is ``(X, Y, Z)`` with a 4x4 RAS ``affine`` (NIfTI convention); axial slices are ``[:, :, k]``;
    - a radiograph is ``(X, Y)`` = the transposed ``pixel_array``, scaled to 0..255 like a PNG.
A DICOM series is sorted by the slices' positions along the slice normal, and its geometry is checked
(one orientation and size, even spacing: a missing slice is an error, not a silent gap; a tilted, sheared stack
is refused).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CT_MODALITIES = ("CT",)
RADIOGRAPH_MODALITIES = ("DX", "CR", "DR", "RG")


class ClinicalInputError(ValueError):
    """An input that cannot be segmented as asked; the message names the file or series."""


@dataclass
class Volume:
    """A 3D image: ``array`` (X, Y, Z) float32, ``affine`` 4x4 RAS, and its DICOM sources (if any)."""

    array: np.ndarray
    affine: np.ndarray
    source: str
    datasets: list = field(default_factory=list)  # pydicom datasets in slice order (z), DICOM input only


@dataclass
class Radiograph:
    """A 2D image: ``array`` (X, Y) float32 in 0..255 and its DICOM dataset (if any)."""

    array: np.ndarray
    source: str
    dataset: object | None = None


# ---------------------------------------------------------------- DICOM files and series


def read_header(path: str | os.PathLike):
    """The dataset of a DICOM file without pixel data; ClinicalInputError if it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ClinicalInputError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from e


def group_series(files: Iterable[str | os.PathLike]) -> tuple[dict[str, list[tuple[Path, object]]], dict[str, str]]:
    """``(path, header)`` pairs grouped by SeriesInstanceUID, and ``{file: error}`` for files that are not DICOM."""
    series: dict[str, list[tuple[Path, object]]] = defaultdict(list)
    errors: dict[str, str] = {}
    for f in files:
        try:
            ds = read_header(f)
        except ClinicalInputError as e:
            errors[str(f)] = str(e)
            continue
        uid = getattr(ds, "SeriesInstanceUID", None)
        if uid is None:
            errors[str(f)] = f"{f}: DICOM file without SeriesInstanceUID"
            continue
        series[str(uid)].append((Path(f), ds))
    return dict(series), errors


def _pixels(ds, path: Path) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as e:  # noqa: BLE001 - a missing or undecodable pixel data element
        raise ClinicalInputError(f"{path}: no readable pixel data ({type(e).__name__}: {e})") from e


def load_dicom_series(files: Sequence[str | os.PathLike], modalities: Sequence[str] = CT_MODALITIES,
                      spacing_tolerance: float = 0.1) -> Volume:
    """A CT series as a :class:`Volume` in Hounsfield units, slices ordered by position.

    Checks, each with the file or series in its message: every file is DICOM with pixel data; all belong to
    one series (``SeriesInstanceUID``); the modality is in ``modalities``; one orientation, one size, one
    pixel spacing and frame of reference; positions along the slice normal evenly spaced (within ``spacing_tolerance`` of the
    median step), so a missing slice or a duplicate position is an error; slice origins on one line along the
    normal (within half a pixel), so a gantry-tilted, sheared stack is an error rather than a misplaced volume.
    """
    import pydicom

    paths = [Path(f) for f in files]
    if not paths:
        raise ClinicalInputError("no DICOM files given")
    headers = [read_header(p) for p in paths]
    uids = {str(getattr(h, "SeriesInstanceUID", "?")) for h in headers}
    if len(uids) > 1:
        raise ClinicalInputError(f"{paths[0].parent}: files of {len(uids)} series mixed: {sorted(uids)}; "
                                 "give one series (the batch runner groups them by SeriesInstanceUID)")
    uid = uids.pop()
    modality = str(getattr(headers[0], "Modality", "?"))
    if modality not in modalities:
        raise ClinicalInputError(f"series {uid} ({paths[0].parent}): modality {modality}, expected {'/'.join(modalities)}")
    missing = [str(p) for p, h in zip(paths, headers) if not all(hasattr(h, k) for k in
               ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"))]
    if missing:
        raise ClinicalInputError(f"series {uid}: {len(missing)} file(s) without image geometry tags, e.g. {missing[:2]}")
    orientation = np.array(headers[0].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    for p, h in zip(paths, headers):
        if not np.allclose(np.array(h.ImageOrientationPatient, dtype=float), orientation, atol=1e-4):
            raise ClinicalInputError(f"series {uid}: {p} has another orientation")
        if (h.Rows, h.Columns) != (headers[0].Rows, headers[0].Columns):
            raise ClinicalInputError(f"series {uid}: {p} is {h.Rows}x{h.Columns}, not {headers[0].Rows}x{headers[0].Columns}")
    frames_of_reference = {str(getattr(h, "FrameOfReferenceUID", "")) for h in headers}
    if len(frames_of_reference) > 1:
        raise ClinicalInputError(f"series {uid}: {len(frames_of_reference)} frames of reference in one series")
    origins = np.array([np.array(h.ImagePositionPatient, dtype=float) for h in headers])
    positions = origins @ normal
    order = np.argsort(positions)
    # a tilted gantry (or any sheared stack) moves the slice origins within the slice plane: the NIfTI affine,
    # whose third column is the slice normal, would then place the slices up to that drift off; refuse
    drift = origins[order] - origins[order[0]]
    in_plane = np.linalg.norm(drift - np.outer(drift @ normal, normal), axis=1)
    half_pixel = 0.5 * min(float(v) for v in headers[0].PixelSpacing)
    if in_plane.max(initial=0.0) > half_pixel:
        k = int(np.argmax(in_plane))
        along = abs(float(drift[k] @ normal)) or 1.0
        raise ClinicalInputError(
            f"series {uid}: slice origins shift {in_plane[k]:.1f} mm within the slice plane over {along:.1f} mm "
            f"(a tilt of {np.degrees(np.arctan2(in_plane[k], along)):.1f} degrees: gantry tilt?); a tilted stack is "
            "refused, since its slices are not where an orthogonal grid puts them. Resample it to an orthogonal grid "
            "first (e.g. 3D Slicer's or dcm2niix's gantry-tilt correction).")
    steps = np.diff(positions[order])
    if len(paths) > 1:
        step = float(np.median(steps))
        if step <= 0:
            raise ClinicalInputError(f"series {uid}: slices share positions (duplicates?)")
        bad = np.nonzero(np.abs(steps - step) > spacing_tolerance * step)[0]
        if len(bad):
            i = int(bad[0])
            raise ClinicalInputError(
                f"series {uid}: uneven slice spacing: {steps[i]:.3f} mm between {paths[order[i]].name} and "
                f"{paths[order[i + 1]].name}, {step:.3f} mm elsewhere (a missing slice?)")
    else:
        step = float(getattr(headers[0], "SliceThickness", 1.0) or 1.0)

    datasets, slices = [], []
    for k in order:
        ds = pydicom.dcmread(paths[k])
        pixels = _pixels(ds, paths[k]).astype(np.float32)
        slope, intercept = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
        slices.append((pixels * slope + intercept).T)  # (rows, cols) -> (X = column, Y = row)
        datasets.append(ds)
    row_spacing, col_spacing = (float(v) for v in headers[0].PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing  # x: along a row (next column)
    lps[:3, 1] = col_dir * row_spacing  # y: down a column (next row)
    lps[:3, 2] = normal * step
    lps[:3, 3] = np.array(datasets[0].ImagePositionPatient, dtype=float)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM LPS -> NIfTI RAS
    return Volume(np.stack(slices, axis=-1), affine, f"DICOM series {uid}", datasets)


def load_radiograph(path: str | os.PathLike, modalities: Sequence[str] = RADIOGRAPH_MODALITIES) -> Radiograph:
    """A DX/CR radiograph as it looks on a viewer: VOI LUT (or window) applied, MONOCHROME1 inverted, 0..255."""
    import pydicom
    from pydicom.pixels import apply_voi_lut

    path = Path(path)
    header = read_header(path)
    modality = str(getattr(header, "Modality", "?"))
    if modality not in modalities:
        raise ClinicalInputError(f"{path}: modality {modality}, expected a radiograph ({'/'.join(modalities)})")
    ds = pydicom.dcmread(path)
    pixels = _pixels(ds, path)
    if pixels.ndim != 2:
        raise ClinicalInputError(f"{path}: expected one grey frame, got pixel data of shape {pixels.shape}")
    image = apply_voi_lut(pixels, ds).astype(np.float32)
    low, high = float(image.min()), float(image.max())
    image = (image - low) / (high - low) * 255.0 if high > low else np.zeros_like(image)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        image = 255.0 - image  # MONOCHROME1: high values are dark
    return Radiograph(image.T.astype(np.float32), str(path), ds)


# ---------------------------------------------------------------- NIfTI


def load_nifti(path: str | os.PathLike) -> Volume:
    """A 3D NIfTI volume (a 4D file with one volume is squeezed); 2D or true 4D is an error naming the file."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # noqa: BLE001
        raise ClinicalInputError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ClinicalInputError(f"{path}: a {data.ndim}D image of shape {data.shape}; a 3D volume is expected "
                                 "(2D images go through the radiograph or PNG paths; split a 4D series first)")
    return Volume(data, np.asarray(img.affine, dtype=float), str(path))
