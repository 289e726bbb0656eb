"""Laterality in every orientation: the same patient stored in any orientation gives the same mask in world space.

A phantom patient is defined in world coordinates (RAS mm): two look-alike dense blobs, one in each lung. A stand-in
network does what a trained network does with "... left lung.": it marks bright pixels on the image's right half,
which is the patient's left in the radiological display the networks learned. Each storage of the phantom (NIfTI
axis codes, DICOM orientations, radiograph displays) is sampled from the same world, so a correct path marks the
same world voxels every time, all on the patient's left (RAS x < 0); a path that feeds the stored array as it is
marks the right lung for half of them.
"""

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.uid import generate_uid

from clinical_data import CT_STORAGE, DX_STORAGE, _base
from custom_nets.clinical import BundleSegmenter
from custom_nets.clinical.batch import discover, run_batch
from custom_nets.transforms import check_volume_geometry, radiograph_to_network
from test_clinical import HIMIX, SENTENCE, run_inference_config, tiny_bundle  # noqa: F401 - the module-scoped fixture

SPACING, N = 2.0, (24, 20, 6)  # mm; voxels along the patient's x (left-right), y (front-back), z


class LeftLungNetwork(torch.nn.Module):
    """Marks bright pixels in the image's right half (first axis = column: the high half), the patient's left."""

    def forward(self, image, text_hidden=None, text_mask=None):
        logits = image[:, :1].clone()
        logits[:, :, : image.shape[2] // 2] = -10.0
        return logits


def phantom(ras: np.ndarray) -> np.ndarray:
    """HU at world points (..., 3): lung background, a dense blob in each lung (x = -14 mm left, +14 mm right)."""
    hu = np.full(ras.shape[:-1], -900.0, np.float32)
    for x in (-14.0, 14.0):
        hu[np.linalg.norm((ras[..., :2] - [x, -2.0]) / [6.0, 8.0], axis=-1) <= 1.0] = 40.0
    return hu


def grid_affine(axcodes: str, shape_lps=N, spacing=SPACING) -> tuple[np.ndarray, tuple[int, ...]]:
    """A RAS affine and array shape storing the patient's box (centred on 0) with axes toward ``axcodes``."""
    direction = {"L": (0, -1), "R": (0, 1), "P": (1, -1), "A": (1, 1), "I": (2, -1), "S": (2, 1)}
    affine, shape = np.eye(4), []
    extent = np.array(shape_lps) * spacing
    for axis, code in enumerate(axcodes):
        world, sign = direction[code]
        affine[:3, axis] = 0.0
        affine[world, axis] = sign * spacing
        affine[world, 3] = -sign * (extent[world] - spacing) / 2  # first voxel at the far side: the box is centred
        shape.append(shape_lps[world])
    return affine, tuple(shape)


def world_points(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def marked_world(mask: np.ndarray, affine: np.ndarray) -> set:
    """The world points (rounded to 0.01 mm) of a mask's voxels."""
    points = world_points(affine, mask.shape)[mask > 0]
    return {tuple(p) for p in np.round(points, 2)}


def world_dice(a: set, b: set) -> float:
    return 2 * len(a & b) / (len(a) + len(b))


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):  # noqa: F811
    root, overrides = tiny_bundle
    s = BundleSegmenter(HIMIX, overrides, bundle_root=str(root), slice_batch=4)
    s.network = LeftLungNetwork()
    return s


def write_nifti_storage(path, axcodes: str) -> np.ndarray:
    affine, shape = grid_affine(axcodes)
    nib.save(nib.Nifti1Image(phantom(world_points(affine, shape)), affine), path)
    return affine


def write_dicom_storage(folder, row_dir, col_dir) -> None:
    """The phantom as a CT series: ``row_dir``/``col_dir`` are ImageOrientationPatient's two vectors (LPS)."""
    folder.mkdir(parents=True)
    row_dir, col_dir = np.array(row_dir, float), np.array(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    lps_extent = np.array(N) * SPACING
    columns, rows = (int(N[np.abs(v).argmax()]) for v in (row_dir, col_dir))
    corner = -(np.abs(row_dir) * (lps_extent - SPACING) / 2) * np.sign(row_dir.sum()) \
        - (np.abs(col_dir) * (lps_extent - SPACING) / 2) * np.sign(col_dir.sum())
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(N[2]):
        origin = corner + normal * (k * SPACING - (lps_extent[2] - SPACING) / 2)
        r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
        lps = origin + c[..., None] * SPACING * row_dir + r[..., None] * SPACING * col_dir
        hu = phantom(lps * [-1, -1, 1])  # LPS -> RAS
        ds = _base(folder / f"{k}.dcm", CT_STORAGE, "CT", study, series)
        ds.Rows, ds.Columns, ds.FrameOfReferenceUID, ds.PixelSpacing = rows, columns, frame, [SPACING, SPACING]
        ds.ImageOrientationPatient = [*row_dir.tolist(), *col_dir.tolist()]
        ds.ImagePositionPatient, ds.SliceThickness = origin.tolist(), SPACING
        ds.PhotometricInterpretation, ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = "MONOCHROME2", 1, 1, -1024
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)


NIFTI_STORAGES = ["LPS", "RAS", "LAS", "RPI", "PLS", "SLP"]  # axial as displayed, canonical, flips, transposed, sagittal-first
DICOM_STORAGES = {"standard": ([1, 0, 0], [0, 1, 0]), "columns flipped": ([-1, 0, 0], [0, 1, 0]),
                  "rows flipped": ([1, 0, 0], [0, -1, 0]), "transposed": ([0, 1, 0], [1, 0, 0])}


def test_every_storage_gives_the_same_world_mask_on_the_patients_left(tmp_path, segmenter, tiny_bundle):  # noqa: F811
    studies = tmp_path / "studies"
    studies.mkdir()
    for axcodes in NIFTI_STORAGES:
        write_nifti_storage(studies / f"{axcodes}.nii.gz", axcodes)
    for name, (row_dir, col_dir) in DICOM_STORAGES.items():
        write_dicom_storage(studies / name.replace(" ", "_"), row_dir, col_dir)
    manifest = run_batch(discover(studies), segmenter, tmp_path / "out", default_sentence=SENTENCE)
    assert all(r["status"] == "done" for r in manifest.values()), {k: r["error"] for k, r in manifest.items()}
    worlds = {}
    for row in manifest.values():
        out = nib.load(tmp_path / "out" / row["outputs"][0])
        mask = np.asarray(out.dataobj)
        if row["kind"] == "nifti":
            source = nib.load(row["source"])
            assert mask.shape == source.shape and np.allclose(out.affine, source.affine)  # the source's grid
            name = "NIfTI " + "".join(nib.aff2axcodes(source.affine))
        else:
            name = "DICOM " + next(k for k in DICOM_STORAGES if k.replace(" ", "_") in row["source"])
        worlds[name] = marked_world(mask, out.affine)
    # the config's volume path (what MONAI Label runs): a NIfTI stored RAS and one stored LPS
    for axcodes in ("RAS", "LPS"):
        result = run_inference_config("himix", tiny_bundle[1], studies / f"{axcodes}.nii.gz", LeftLungNetwork())
        affine = np.asarray(result["pred"].affine) if hasattr(result["pred"], "affine") else None
        assert affine is not None and np.allclose(affine, nib.load(studies / f"{axcodes}.nii.gz").affine)
        worlds[f"inference.json, NIfTI {axcodes}"] = marked_world(np.asarray(result["pred"]), affine)
    reference = worlds["NIfTI LPS"]
    assert reference and all(x < 0 for x, _, _ in reference)  # the left-lung blob: the patient's left, RAS x < 0
    table = {name: round(world_dice(points, reference), 4) for name, points in worlds.items()}
    print("\nworld-space Dice against NIfTI stored L,P,S:", json.dumps(table, indent=1))
    assert all(all(x < 0 for x, _, _ in points) for points in worlds.values()), table
    assert min(table.values()) >= 0.99, table


def test_volumes_that_cannot_be_read_as_axial_slices_are_refused(tmp_path, segmenter):
    sagittal = np.array([[0, 0, 5.0, 0], [0.7, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 0, 1]])  # 5 mm sagittal slices
    tilt = np.radians(10)
    oblique = np.diag([SPACING, SPACING, SPACING, 1.0])
    oblique[:2, :2] = SPACING * np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    for name, affine in (("sagittal", sagittal), ("oblique", oblique)):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), affine), tmp_path / f"{name}.nii.gz")
    manifest = run_batch(discover(tmp_path), segmenter, tmp_path / "out", default_sentence=SENTENCE)
    errors = {r["source"].rsplit("/", 1)[-1]: r["error"] for r in manifest.values()}
    assert "its stored slices are sagittal, 5.00 mm apart" in errors["sagittal.nii.gz"]
    assert "10.0 degrees off the patient's axes (an oblique volume" in errors["oblique.nii.gz"]
    with pytest.raises(ValueError, match="resample it to axial slices first"):
        check_volume_geometry(sagittal)


def write_dx(path, picture: np.ndarray, patient_orientation=None, view=None) -> None:
    ds = _base(path, DX_STORAGE, "DX", generate_uid(), generate_uid())
    ds.Rows, ds.Columns = picture.shape
    ds.PhotometricInterpretation, ds.PixelRepresentation = "MONOCHROME2", 0
    if patient_orientation:
        ds.PatientOrientation = patient_orientation
    if view:
        ds.ViewPosition = view
    ds.PixelData = picture.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_radiographs_are_shown_to_the_network_as_it_learned(tmp_path, segmenter):
    """The same frontal film stored as displayed (L\\F), mirrored (R\\F), upside down (L\\H) and turned (F\\L)."""
    film = np.zeros((30, 40), np.uint16)  # rows x columns as displayed: patient's left on the right
    film[8:20, 26:36] = 255  # the patient's left lung opacity
    film[8:20, 4:14] = 255  # the right lung's look-alike
    (tmp_path / "in").mkdir()
    stored = {"L\\F": film, "R\\F": film[:, ::-1], "L\\H": film[::-1], "F\\L": film.T}
    for i, (orientation, pixels) in enumerate(stored.items()):
        write_dx(tmp_path / "in" / f"dx{i}.dcm", pixels, orientation.split("\\"))
    write_dx(tmp_path / "in" / "lateral.dcm", film, ["A", "F"])
    write_dx(tmp_path / "in" / "lateral_view.dcm", film, ["L", "F"], view="LL")
    manifest = run_batch(discover(tmp_path / "in"), segmenter, tmp_path / "out", default_sentence=SENTENCE)
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in manifest.values()}
    expected = film > 128
    expected[:, :20] = False  # only the patient's left
    undo = {"L\\F": lambda m: m, "R\\F": lambda m: m[:, ::-1], "L\\H": lambda m: m[::-1], "F\\L": lambda m: m.T}
    seen = {}
    for i, orientation in enumerate(stored):
        row = rows[f"dx{i}.dcm"]
        assert row["status"] == "done", row
        mask = np.asarray(Image.open(tmp_path / "out" / row["outputs"][0])) > 0  # stored rows x columns
        seen[orientation] = undo[orientation](mask)  # back to the film as displayed
    as_displayed = seen["L\\F"]
    # the left blob (edges blur a pixel: the film is resized to the network's 32 x 32 and back), nothing of the right
    assert 2 * (as_displayed & expected).sum() / (as_displayed.sum() + expected.sum()) > 0.85 and not as_displayed[:, :20].any()
    assert all(np.array_equal(m, as_displayed) for m in seen.values())  # the same film, the same mask
    assert "PatientOrientation A\\F is not a frontal projection" in rows["lateral.dcm"]["error"]
    assert "ViewPosition LL is a lateral view" in rows["lateral_view.dcm"]["error"]
    with pytest.raises(ValueError, match="not a frontal projection"):
        radiograph_to_network(film.T, ["LP", "F"])
