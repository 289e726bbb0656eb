"""Clinical inference: loaders (geometry, VOI LUT, MONOCHROME1), slice-wise inference, NIfTI/PNG/DICOM SEG outputs,
the resumable batch runner, and every bad input of the issue."""

import json
from pathlib import Path
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from clinical_data import write_ct_series, write_nifti, write_non_image_dicom, write_radiograph
from conftest import ROOT, load_script
from custom_nets.clinical import BundleSegmenter, ClinicalInputError, load_dicom_series, load_nifti, load_radiograph, window
from custom_nets.clinical.batch import discover, run_batch

HIMIX = ROOT / "bundles" / "himix"
TINY = {"image_size": [32, 32], "text_encoder_id": "tiny-random-bert",
        "backbone_kwargs": {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]},
        "text_hidden_size": 32, "text_num_layers": 4, "num_heads": 2}
SENTENCE = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """The himix bundle with tiny encoders and a random-weight checkpoint (geometry, not accuracy, is tested)."""
    root = tmp_path_factory.mktemp("himix_clinical")
    override = root / "tiny.json"
    override.write_text(json.dumps(TINY))
    parser = ConfigParser()
    parser.read_config([str(HIMIX / "configs" / f) for f in ("inference.json", "demo.json")] + [str(override)])
    torch.manual_seed(0)
    (root / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    return root, ["demo.json", str(override)]


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    root, overrides = tiny_bundle
    return BundleSegmenter(HIMIX, overrides, bundle_root=str(root), slice_batch=4)


def test_ct_series_sorted_by_position_with_ras_affine(tmp_path):
    files, hu = write_ct_series(tmp_path / "ct")
    volume = load_dicom_series(files)
    assert volume.array.shape == hu.shape and np.array_equal(volume.array, hu)
    assert np.allclose(volume.affine, [[-0.7, 0, 0, 40], [0, -0.8, 0, 30], [0, 0, 2.5, 100], [0, 0, 0, 1]])
    assert [int(ds.InstanceNumber) for ds in volume.datasets] == list(range(1, 17))
    assert window(np.array([-1350.0, -600.0, 150.0, 1000.0])).tolist() == [0.0, 127.5, 255.0, 255.0]


def test_radiograph_voi_and_monochrome1(tmp_path):
    stored = write_radiograph(tmp_path / "dx1.dcm", monochrome1=True)
    inverted = load_radiograph(tmp_path / "dx1.dcm").array
    write_radiograph(tmp_path / "dx2.dcm", monochrome1=False)
    plain = load_radiograph(tmp_path / "dx2.dcm").array
    assert inverted.shape == stored.T.shape == plain.shape
    assert plain[0, 0] == 0 and plain[-1, 0] == 255  # low stored values are dark in MONOCHROME2
    assert np.allclose(inverted, 255 - plain)  # and bright in MONOCHROME1


def test_volume_inference_keeps_geometry_and_seg_references_sources(tmp_path, segmenter):
    import highdicom as hd

    files, _ = write_ct_series(tmp_path / "study" / "ct")
    jobs = discover(tmp_path / "study")
    assert [j.kind for j in jobs] == ["ct_series"]
    manifest = run_batch(jobs, segmenter, tmp_path / "out", default_sentence=SENTENCE)
    row = manifest[jobs[0].id]
    assert row["status"] == "done", row
    volume = load_dicom_series(files)
    mask = nib.load(tmp_path / "out" / row["outputs"][0])
    assert mask.shape == volume.array.shape and np.allclose(mask.affine, volume.affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    seg = hd.seg.segread(tmp_path / "out" / row["outputs"][1])
    referenced = {item.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for item in s.ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in volume.datasets}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.datasets[0].SeriesInstanceUID
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "textseg-bundles himix" and algorithm.AlgorithmVersion == "0.1.0"
    # the SEG's frames equal the NIfTI mask, slice by slice in source order (rows x columns)
    nifti = np.asarray(mask.dataobj)
    assert seg.pixel_array.shape == (16, 48, 64) and nifti.any()
    assert all(np.array_equal(seg.pixel_array[k], nifti[:, :, k].T) for k in range(16))


def test_the_sentence_reaches_every_slice(tmp_path, segmenter):
    files, _ = write_ct_series(tmp_path / "ct", n=4)
    volume = load_dicom_series(files)
    x = torch.from_numpy(window(volume.array))[None, None]

    def logits(text):  # the bundle's own inferer (TextInferer around SliceWiseInferer), as the segmenter runs it
        with torch.no_grad():
            return segmenter.inferer(x, segmenter.network, text=text)

    a, b, none = logits(SENTENCE), logits("Unilateral pulmonary infection, one infected area, lower left lung."), logits(None)
    assert a.shape == (1, 1, *volume.array.shape)
    for k in range(4):  # every slice saw the text (the outputs differ on each slice)
        assert not torch.allclose(a[..., k], b[..., k]) and not torch.allclose(a[..., k], none[..., k])


def test_nifti_and_radiograph_outputs(tmp_path, segmenter):
    affine = write_nifti(tmp_path / "in" / "vol.nii.gz")
    write_radiograph(tmp_path / "in" / "cxr" / "dx.dcm")
    manifest = run_batch(discover(tmp_path / "in"), segmenter, tmp_path / "out", default_sentence=SENTENCE)
    rows = {r["kind"]: r for r in manifest.values()}
    assert all(r["status"] == "done" for r in rows.values()), manifest
    mask = nib.load(tmp_path / "out" / rows["nifti"]["outputs"][0])
    assert mask.shape == (40, 32, 6) and np.allclose(mask.affine, affine)
    png = np.asarray(Image.open(tmp_path / "out" / rows["radiograph"]["outputs"][0]))
    assert png.shape == (40, 56) and set(np.unique(png)) <= {0, 255}  # rows x columns of the source
    assert rows["radiograph"]["outputs"][1].endswith("seg.dcm")


def test_batch_resumes_and_records_bad_inputs(tmp_path, segmenter):
    studies = tmp_path / "studies"
    write_ct_series(studies / "good")
    write_ct_series(studies / "gap", n=8, skip=4)  # a missing slice
    write_ct_series(studies / "mr", n=4, modality="MR")  # not CT
    write_non_image_dicom(studies / "sr" / "report.dcm")
    (studies / "corrupt").mkdir()
    (studies / "corrupt" / "broken.dcm").write_bytes(b"DICM" + b"\x00" * 10)
    write_ct_series(studies / "mixed", n=4)  # two series in one folder: grouped apart, both segmented
    write_ct_series(studies / "mixed", n=4, prefix="b")
    write_nifti(studies / "flat.nii.gz", shape=(16, 16))
    write_nifti(studies / "fourd.nii.gz", shape=(8, 8, 4, 3))
    jobs = discover(studies)
    manifest = run_batch(jobs, segmenter, tmp_path / "out", default_sentence=SENTENCE)
    status = {job_id: row["status"] for job_id, row in manifest.items()}
    errors = " | ".join(row["error"] for row in manifest.values())
    assert list(status.values()).count("done") == 3  # good + the two series of the mixed folder
    assert "uneven slice spacing" in errors and "a missing slice" in errors
    assert "modality MR, expected CT" in errors
    assert "report.dcm" not in errors and "sr" not in {Path(r["source"]).parent.name for r in manifest.values()}  # an SR is a sentence, not an image
    assert "broken.dcm: not a readable DICOM file" in errors
    assert "flat.nii.gz: a 2D image" in errors and "fourd.nii.gz: a 4D image" in errors
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary file left behind

    # resume: nothing done is redone, failed rows are retried
    before = {k: v for k, v in manifest.items() if v["status"] == "done"}
    mtimes = {o: (tmp_path / "out" / o).stat().st_mtime_ns for r in before.values() for o in r["outputs"]}
    calls = []
    original = segmenter.segment_volume
    segmenter.segment_volume = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = run_batch(discover(studies), segmenter, tmp_path / "out", default_sentence=SENTENCE)
    finally:
        segmenter.segment_volume = original
    assert calls == [] and {k: again[k] for k in before} == before
    assert all((tmp_path / "out" / o).stat().st_mtime_ns == t for o, t in mtimes.items())
    assert {k for k, v in again.items() if v["status"] == "failed"} == {k for k, v in manifest.items() if v["status"] == "failed"}


def test_loader_errors_name_the_input(tmp_path):
    files, _ = write_ct_series(tmp_path / "a", n=4)
    other, _ = write_ct_series(tmp_path / "b", n=4)
    with pytest.raises(ClinicalInputError, match="files of 2 series mixed"):
        load_dicom_series(files + other)
    write_ct_series(tmp_path / "mr", n=4, modality="MR")
    with pytest.raises(ClinicalInputError, match=r"modality MR, expected CT"):
        load_dicom_series(sorted((tmp_path / "mr").iterdir()))
    write_nifti(tmp_path / "flat.nii", shape=(8, 8))
    with pytest.raises(ClinicalInputError, match=r"flat.nii: a 2D image"):
        load_nifti(tmp_path / "flat.nii")
    with pytest.raises(ClinicalInputError, match=r"dx.dcm.*modality CT, expected a radiograph"):
        (tmp_path / "dx.dcm").write_bytes(files[0].read_bytes())
        load_radiograph(tmp_path / "dx.dcm")


def test_cli_unknown_bundle_and_summary(tmp_path, tiny_bundle):
    with pytest.raises(SystemExit) as unknown:  # in this process; the command line itself is run below
        load_script("infer_dicom.py").main(["--bundle", str(tmp_path / "nope"), "--input", str(tmp_path),
                                            "--output", str(tmp_path / "out")])
    assert f"not a bundle: {tmp_path / 'nope' / 'configs' / 'inference.json'} not found" in str(unknown.value.code)
    assert not (tmp_path / "out").exists()
    root, overrides = tiny_bundle
    write_ct_series(tmp_path / "in" / "ct", n=4)
    (tmp_path / "in" / "notes.dcm").write_text("not dicom")
    cmd = [sys.executable, str(ROOT / "scripts" / "infer_dicom.py"), "--bundle", str(HIMIX), "--config", *overrides,
           "--bundle-root", str(root), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--text", SENTENCE]
    r = subprocess.run(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 2 and "2 series found" in r.stdout and "done 1, failed 1" in r.stdout, r.stdout[-2000:]
    assert "notes.dcm: not a readable DICOM file" in r.stdout and "series/s" in r.stdout


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Masks resized to the network's size and back move block edges by a pixel at most: compare by Dice."""
    return 2 * (a & b).sum() / (a.sum() + b.sum())


class Brightness(torch.nn.Module):
    """A stand-in network whose logit is the normalised image: the mask is "brighter than the slice mean"."""

    def forward(self, image, text_hidden=None, text_mask=None):
        return image[:, :1]


def test_masks_land_where_the_image_is_in_every_path(tmp_path, segmenter, monkeypatch):
    """Orientation end to end: an asymmetric picture through the radiograph (MONOCHROME1) and CT paths; the saved
    masks must be the picture's bright part, in the source's rows x columns."""
    from clinical_data import CT_STORAGE, DX_STORAGE, _base
    from pydicom.uid import generate_uid

    monkeypatch.setattr(segmenter, "network", Brightness())
    picture = np.zeros((32, 48), np.uint16)  # rows x columns, bright block upper right
    picture[2:10, 30:46] = 255
    expected = picture > picture.mean()
    dx = tmp_path / "in" / "dx.dcm"
    dx.parent.mkdir(parents=True)
    ds = _base(dx, DX_STORAGE, "DX", generate_uid(), generate_uid())
    ds.Rows, ds.Columns, ds.PhotometricInterpretation, ds.PixelRepresentation = 32, 48, "MONOCHROME1", 0
    ds.PixelData = (255 - picture).astype(np.uint16).tobytes()  # MONOCHROME1: the bright block is stored low
    ds.save_as(dx, enforce_file_format=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(3):
        p = tmp_path / "in" / "ct" / f"{k}.dcm"
        p.parent.mkdir(exist_ok=True)
        ds = _base(p, CT_STORAGE, "CT", study, series)
        ds.Rows, ds.Columns, ds.FrameOfReferenceUID, ds.PixelSpacing = 32, 48, frame, [1, 1]
        ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.SliceThickness = [1, 0, 0, 0, 1, 0], [0, 0, 2.0 * k], 2.0
        ds.PhotometricInterpretation, ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = "MONOCHROME2", 1, 1, -1000
        ds.PixelData = (picture.astype(np.int16) * 4 - 600 + 1000).astype(np.int16).tobytes()
        ds.save_as(p, enforce_file_format=True)
    manifest = run_batch(discover(tmp_path / "in"), segmenter, tmp_path / "out")
    rows = {r["kind"]: r for r in manifest.values()}
    assert all(r["status"] == "done" for r in rows.values()), manifest
    png = np.asarray(Image.open(tmp_path / "out" / rows["radiograph"]["outputs"][0])) > 0
    assert png.shape == expected.shape and dice(png, expected) > 0.9
    volume = np.asarray(nib.load(tmp_path / "out" / rows["ct_series"]["outputs"][0]).dataobj)
    assert all(dice(volume[:, :, k].T > 0, expected) > 0.9 for k in range(3))
    assert dice(expected[::-1], expected) == 0 and dice(expected[:, ::-1], expected) == 0  # a flip would fail


def run_inference_config(bundle: str, overrides: list[str], source, network: torch.nn.Module, prompt: str = "") -> dict:
    """The bundle's own inference.json as MONAI Label's app runs it: preprocessing, inferer, postprocessing
    (without SaveImaged, which the app filters out)."""
    from monai.transforms import Compose, SaveImaged

    configs = ROOT / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "inference.json")] + [str(configs / o) if not o.startswith("/") else o for o in overrides])
    parser["device"] = "cpu"
    if "prompt" in parser["displayable_configs"]:
        parser["displayable_configs#prompt"] = prompt
    data = parser.get_parsed_content("preprocessing")({"image": str(source)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    post = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, SaveImaged)]
    return Compose(post)(data)


@pytest.mark.parametrize("bundle", ["himix", "tamiseg", "unet"])
def test_inference_config_takes_a_volume_slice_by_slice_and_a_png_whole(tmp_path, tiny_bundle, bundle):
    """One inference.json for both (MONAI Label's app sends whatever the studies hold): a NIfTI volume is windowed
    and goes slice by slice (mask of the volume's shape, bright part of each slice), a PNG as before."""
    overrides = tiny_bundle[1] if bundle == "himix" else ["demo.json"]
    if bundle == "tamiseg":  # the stand-in network needs only the tiny text encoder
        (tmp_path / "tiny.json").write_text(json.dumps({"image_size": [32, 32], "text_encoder_id": "tiny-random-bert"}))
        overrides.append(str(tmp_path / "tiny.json"))
    hu = np.full((48, 40, 5), -900.0, np.float32)  # (X, Y, Z)
    hu[24:44, 4:24, :] = 40.0  # a dense block, off centre
    nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / "vol.nii.gz")
    out = run_inference_config(bundle, overrides, tmp_path / "vol.nii.gz", Brightness())
    mask = np.asarray(out["pred"])
    assert mask.shape == hu.shape
    slice_dice = [dice(mask[..., k] > 0, hu[..., k] > 0) for k in range(5)]
    assert all(d > 0.9 for d in slice_dice), slice_dice
    picture = np.zeros((40, 48), np.uint8)  # rows x columns
    picture[4:24, 24:44] = 255
    Image.fromarray(picture).save(tmp_path / "cxr.png")
    out = run_inference_config(bundle, overrides, tmp_path / "cxr.png", Brightness())
    mask = np.asarray(out["pred"]).T  # MONAI's (X, Y) back to rows x columns
    assert mask.shape == picture.shape and dice(mask > 0, picture > 0) > 0.9


class TextShiftedBrightness(Brightness):
    """Brightness, shifted up when a sentence is given: the mask shows whether the text reached the network."""

    def forward(self, image, text_hidden=None, text_mask=None):
        return image[:, :1] + (0.5 if text_hidden is not None else 0.0)


def test_inference_config_volume_path_matches_the_clinical_segmenter(tmp_path, tiny_bundle):
    """The config's volume path (MONAI Label) and scripts/infer_dicom.py give the same mask, and the sentence counts."""
    root, overrides = tiny_bundle
    write_nifti(tmp_path / "vol.nii.gz", shape=(40, 32, 4))
    network = TextShiftedBrightness()
    segmenter = BundleSegmenter(HIMIX, overrides, bundle_root=str(root), slice_batch=3)
    segmenter.network = network
    config_masks = {t: np.asarray(run_inference_config("himix", overrides, tmp_path / "vol.nii.gz", network, t)["pred"])
                    for t in (SENTENCE, "")}
    assert np.array_equal(config_masks[SENTENCE], segmenter.segment_volume(load_nifti(tmp_path / "vol.nii.gz"), SENTENCE))
    assert np.array_equal(config_masks[""], segmenter.segment_volume(load_nifti(tmp_path / "vol.nii.gz"), None))
    assert not np.array_equal(config_masks[SENTENCE], config_masks[""])


def test_volume_inputs_that_cannot_be_segmented(tmp_path):
    from monai.inferers import SimpleInferer

    from custom_nets.inferers import SliceWiseInferer
    from custom_nets.transforms import ImageOrVolumed, ct_window_range

    assert ct_window_range("-600", "1500") == (-1350.0, 150.0)  # a UI may send strings
    with pytest.raises(ValueError, match="width must be > 0 HU, got 0.0"):
        ct_window_range(40, 0)
    with pytest.raises(ValueError, match="must be numbers.*'wide'"):
        ct_window_range(40, "wide")
    dispatch = ImageOrVolumed("image", [], [])
    with pytest.raises(KeyError, match="Key `image` of transform `ImageOrVolumed` was missing"):
        dispatch({"label": torch.zeros(1, 8, 8)})
    with pytest.raises(ValueError, match=r"expected a 2D image .* got shape \(1, 2, 3, 4, 5\)"):
        dispatch({"image": torch.zeros(1, 2, 3, 4, 5)})
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 2, 3, 4, 5\)"):
        SliceWiseInferer((8, 8), 1, SimpleInferer())(torch.zeros(1, 1, 2, 3, 4, 5), Brightness())


def test_bundle_cli_and_infer_dicom_give_the_same_mask(tmp_path, tiny_bundle):
    """One source of truth: a CT volume through ``python -m monai.bundle run inferring`` (the bundle config, as
    MONAI Label runs it) and through ``scripts/infer_dicom.py`` (the clinical path) gives the same mask on the same
    grid, with the trained (here random, tiny) network and the sentence."""
    from conftest import run_bundle

    root, overrides = tiny_bundle
    studies = tmp_path / "studies"
    affine = write_nifti(studies / "vol.nii.gz", shape=(40, 32, 5))
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "vol.nii.gz", "text": SENTENCE}]}))
    config_list = "[" + ",".join(f"'{HIMIX / 'configs' / f}'" for f in ["inference.json", *overrides[:-1]]) + f",'{overrides[-1]}']"
    r = run_bundle("run", "inferring", "--config_file", config_list, "--bundle_root", str(root), "--data_root", str(studies),
                   "--datalist", str(datalist), "--output_dir", str(tmp_path / "config_out"), "--output_ext", ".nii.gz")
    assert r.returncode == 0, r.stdout[-3000:]
    config_mask = nib.load(tmp_path / "config_out" / "vol_seg.nii.gz")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "infer_dicom.py"), "--bundle", str(HIMIX), "--config", *overrides,
                        "--bundle-root", str(root), "--input", str(studies), "--output", str(tmp_path / "clinical_out"),
                        "--text", SENTENCE], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout[-3000:]
    [clinical_file] = (tmp_path / "clinical_out").rglob("seg.nii.gz")
    clinical_mask = nib.load(clinical_file)
    a, b = np.asarray(config_mask.dataobj), np.asarray(clinical_mask.dataobj)
    assert a.shape == b.shape == (40, 32, 5) and set(np.unique(a)) <= {0, 1} and set(np.unique(b)) <= {0, 1}
    assert np.allclose(config_mask.affine, affine) and np.allclose(clinical_mask.affine, affine)
    assert 0 < b.sum() < b.size and np.array_equal(a, b), (int(a.sum()), int(b.sum()), int((a != b).sum()))
