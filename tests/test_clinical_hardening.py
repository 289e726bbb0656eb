"""scripts/infer_dicom.py against hostile and careless inputs: outputs stay inside --output, sentences are parsed
strictly, results are keyed on what made them, every bad argument stops the run before anything is written."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch

from clinical_data import write_ct_series, write_nifti, write_radiograph
from conftest import ROOT, load_script
from custom_nets.clinical import BundleSegmenter, ClinicalInputError, load_dicom_series
from custom_nets.clinical.batch import check_sentences, discover, read_sentences, run_batch
from test_clinical import HIMIX, SENTENCE, tiny_bundle  # noqa: F401 - the module-scoped fixture

OTHER = "Unilateral pulmonary infection, one infected area, lower left lung."
infer_dicom = load_script("infer_dicom.py")


class Result:
    def __init__(self, returncode: int, stdout: str) -> None:
        self.returncode, self.stdout = returncode, stdout


def cli(tiny_bundle, *args: str, subprocess_run: bool = False) -> Result:
    """scripts/infer_dicom.py with the tiny bundle: in this process (fast), or as its own process."""
    root, overrides = tiny_bundle
    argv = ["--bundle", str(HIMIX), "--config", *overrides, "--bundle-root", str(root), *args]
    if subprocess_run:
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "infer_dicom.py"), *argv], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        return Result(r.returncode, r.stdout)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = infer_dicom.main(argv)
        except SystemExit as e:  # sys.exit("error: ...") prints the message and exits 1
            code = e.code if isinstance(e.code, int) else 1
            if not isinstance(e.code, int):
                print(e.code)
    return Result(code, out.getvalue())


def files_under(folder):
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):  # noqa: F811
    root, overrides = tiny_bundle
    return BundleSegmenter(HIMIX, overrides, bundle_root=str(root), slice_batch=4)


def test_uids_that_are_paths_never_leave_the_output(tmp_path, segmenter):
    studies = tmp_path / "work" / "studies"
    write_ct_series(studies / "ct", n=3, series_uid="x/../../ESCAPED")
    write_radiograph(studies / "dx.dcm")
    ds = pydicom.dcmread(studies / "dx.dcm")
    ds.SOPInstanceUID = "../../../ESCAPED_DX"
    ds.save_as(studies / "dx.dcm")
    out = tmp_path / "work" / "out"
    manifest = run_batch(discover(studies), segmenter, out, default_sentence=SENTENCE)
    assert not list(tmp_path.rglob("*ESCAPED*")) and not (tmp_path / "ESCAPED").exists()
    assert all(p.resolve().is_relative_to(out.resolve()) for p in files_under(out))
    errors = {k: r["error"] for k, r in manifest.items() if r["status"] == "failed"}
    assert len(errors) == 4 and all(k.startswith("file_") for k in errors)  # three CT files and the radiograph
    assert sum("SeriesInstanceUID 'x/../../ESCAPED' is not a DICOM UID" in e for e in errors.values()) == 3
    assert any("SOPInstanceUID '../../../ESCAPED_DX' is not a DICOM UID" in e for e in errors.values())


def test_nifti_names_alike_in_other_folders_get_their_own_outputs(tmp_path, segmenter):
    for name in ("a/scan.nii.gz", "b/scan.nii.gz", "ct.v1.nii.gz", "ct.v2.nii.gz"):
        write_nifti(tmp_path / "in" / name, shape=(12, 10, 2))
    jobs = discover(tmp_path / "in")
    assert len({j.id for j in jobs}) == 4
    manifest = run_batch(jobs, segmenter, tmp_path / "out", default_sentence=SENTENCE)
    outputs = [r["outputs"][0] for r in manifest.values()]
    assert all(r["status"] == "done" for r in manifest.values()) and len(set(outputs)) == 4
    assert {r["source"] for r in manifest.values()} == {str(tmp_path / "in" / n) for n in
                                                         ("a/scan.nii.gz", "b/scan.nii.gz", "ct.v1.nii.gz", "ct.v2.nii.gz")}
    # sentences by relative path; the bare name would be ambiguous
    keyed = {"a/scan.nii.gz": SENTENCE, "b/scan.nii.gz": OTHER, "ct.v1.nii.gz": SENTENCE, "ct.v2.nii.gz": OTHER}
    assert check_sentences(jobs, keyed, None) == ([], [])
    with pytest.raises(ValueError, match=r"sentence uid 'scan.nii.gz' names 2 NIfTI files \(a/scan.nii.gz, b/scan.nii.gz\)"):
        check_sentences(jobs, {"scan.nii.gz": SENTENCE}, None)


@pytest.mark.parametrize("content,message", [
    (b"uid,sentence\n1.2.3,Bilateral infection, two areas\n", r"rows?\.csv, row 2: 3 fields, the header has 2 \(a comma in a sentence\? quote"),
    (b"uid,sentence\n1.2.3,\n", r"row 2: no sentence for uid 1.2.3"),
    (b"uid,sentence\n1.2.3,\xe2\x80\x8b \n", r"row 2: no sentence for uid 1.2.3"),  # a zero-width space only
    (b"uid,sentence\n1.2.3,One.\n1.2.4,Two.\n1.2.3,Three.\n", r"rows 2 and 4: two different sentences for uid 1.2.3"),
    (b"uid,sentence\n1.2.3,L\xe9sion gauche\n", r"rows\.csv, line 2: not UTF-8 \(byte 0xe9"),
    (b"uid;sentence\n1.2.3;One\n", r"columns 'uid' and 'sentence' expected"),
    (b"uid,sentence\n,One\n", r"row 2: empty uid"),
])
def test_sentence_csv_defects_are_named_with_file_and_row(tmp_path, content, message):
    (tmp_path / "rows.csv").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_sentences(tmp_path / "rows.csv")


def test_sentence_csv_as_spreadsheets_write_it(tmp_path):
    (tmp_path / "rows.csv").write_bytes("\ufeffUID,Sentence\r\n1.2.3,\"Bilateral infection, two areas.\"\r\n"
                                        "1.2.3,\"Bilateral infection, two areas.\"\r\n\r\n1.2.4,Lésion.\r\n".encode())
    assert read_sentences(tmp_path / "rows.csv") == {"1.2.3": "Bilateral infection, two areas.", "1.2.4": "Lésion."}


def test_series_without_a_sentence_are_listed_before_work(tmp_path, tiny_bundle):  # noqa: F811
    write_ct_series(tmp_path / "in" / "a", n=3, series_uid="1.2.826.0.1.1")
    write_ct_series(tmp_path / "in" / "b", n=3, series_uid="1.2.826.0.1.2")
    (tmp_path / "reports.csv").write_text(f'uid,sentence\n1.2.826.0.1.1,"{SENTENCE}"\nACC123,"{OTHER}"\n')
    jobs = discover(tmp_path / "in")
    missing, unmatched = check_sentences(jobs, read_sentences(tmp_path / "reports.csv"), None)
    assert [j.series_uid for j in missing] == ["1.2.826.0.1.2"] and unmatched == ["ACC123"]
    out = tmp_path / "out"
    r = cli(tiny_bundle, "--input", str(tmp_path / "in"), "--output", str(out), "--sentences", str(tmp_path / "reports.csv"))
    assert r.returncode == 1 and r.stdout.startswith("error: 1 series have no sentence"), r.stdout
    assert "series_1.2.826.0.1.2" in r.stdout and "--allow-missing-text" in r.stdout and not out.exists()
    r = cli(tiny_bundle, "--input", str(tmp_path / "in"), "--output", str(out), "--no-seg")  # no text at all
    assert r.returncode == 1 and "2 series have no sentence (neither --sentences nor --text was given)" in r.stdout
    r = cli(tiny_bundle, "--input", str(tmp_path / "in"), "--output", str(out), "--sentences", str(tmp_path / "reports.csv"),
            "--allow-missing-text", "--no-seg")
    assert r.returncode == 0 and "warning: 1 uid(s)" in r.stdout and "ACC123" in r.stdout, r.stdout[-2000:]
    rows = json.loads((out / "manifest.json").read_text())
    assert {k: v["sentence"] for k, v in rows.items()} == {"series_1.2.826.0.1.1": SENTENCE, "series_1.2.826.0.1.2": ""}


def test_bad_arguments_stop_before_anything_is_written(tmp_path, tiny_bundle):  # noqa: F811
    write_ct_series(tmp_path / "in" / "ct", n=3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "out"
    common = ["--input", str(tmp_path / "in"), "--text", SENTENCE]
    for args, message in [
        (["--output", str(out), "--window", "nan", "1500"], "error: CT window centre must be a finite number of HU, got nan"),
        (["--output", str(out), "--window", "-600", "inf"], "error: CT window width must be a finite number of HU, got inf"),
        (["--output", str(out), "--window", "-600", "0"], "error: CT window width must be > 0 HU, got 0.0"),
        (["--output", str(out), "--slice-batch", "0"], "error: slice batch must be a whole number >= 1, got 0"),
        (["--output", str(tmp_path / "a_file")], f"error: --output {tmp_path / 'a_file'} is a file, not a folder"),
        (["--output", "/proc/textseg-out"], "error: --output /proc/textseg-out is not writable"),
        (["--output", str(out), "--text", " \u200b "], "error: --text is empty"),
    ]:
        r = cli(tiny_bundle, *common, *args)
        assert r.returncode == 1 and r.stdout.strip().splitlines() == [r.stdout.strip().splitlines()[0]], r.stdout
        assert r.stdout.startswith(message), (args, r.stdout)
        assert "Traceback" not in r.stdout and not out.exists()
    r = cli(tiny_bundle, "--input", str(tmp_path / "empty"), "--output", str(out), "--text", SENTENCE, subprocess_run=True)
    assert r.returncode == 1 and r.stdout.startswith("error: no DICOM or NIfTI files found under") and not out.exists()


def test_a_wrong_checkpoint_is_named_without_a_traceback(tmp_path, tiny_bundle):  # noqa: F811
    write_ct_series(tmp_path / "in" / "ct", n=3)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    for checkpoint in ("other.pt", "junk.pt"):
        r = cli(tiny_bundle, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--text", SENTENCE,
                "--checkpoint", str(tmp_path / checkpoint))
        assert r.returncode == 1 and r.stdout.startswith(f"error: checkpoint {tmp_path / checkpoint} does not fit the himix network")
        assert "Traceback" not in r.stdout and not (tmp_path / "out").exists()


def test_resume_is_keyed_on_what_made_the_result(tmp_path, segmenter, tiny_bundle):  # noqa: F811
    write_ct_series(tmp_path / "in" / "ct", n=3)
    out = tmp_path / "out"
    first = run_batch(discover(tmp_path / "in"), segmenter, out, default_sentence=SENTENCE)
    (job_id, row), = first.items()
    assert row["made_with"]["sentence"] == SENTENCE and len(row["made_with"]["checkpoint_sha256"]) == 64
    mtime = (out / row["outputs"][0]).stat().st_mtime_ns
    with pytest.raises(FileExistsError, match=rf"{job_id} \(sentence changed\); pass --overwrite"):
        run_batch(discover(tmp_path / "in"), segmenter, out, default_sentence=OTHER)
    assert (out / row["outputs"][0]).stat().st_mtime_ns == mtime
    r = cli(tiny_bundle, "--input", str(tmp_path / "in"), "--output", str(out), "--text", SENTENCE, "--window", "40", "400")
    assert r.returncode == 1 and "(ct_window changed)" in r.stdout and "--overwrite" in r.stdout, r.stdout
    again = run_batch(discover(tmp_path / "in"), segmenter, out, default_sentence=OTHER, overwrite=True)
    assert again[job_id]["sentence"] == OTHER and (out / row["outputs"][0]).stat().st_mtime_ns != mtime
    same = run_batch(discover(tmp_path / "in"), segmenter, out, default_sentence=OTHER)  # unchanged: skipped
    assert same[job_id]["seconds"] == again[job_id]["seconds"]


def test_a_tilted_series_is_refused_with_its_reason(tmp_path):
    files, _ = write_ct_series(tmp_path / "ct", n=6)
    for f in files:  # gantry tilt: each slice's origin moves 0.5 mm in y per 2.5 mm step (11 degrees)
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.2 * (z - 100.0), z]
        ds.save_as(f)
    with pytest.raises(ClinicalInputError, match=r"slice origins shift 2.5 mm within the slice plane over 12.5 mm "
                                                 r"\(a tilt of 11.3 degrees: gantry tilt\?\); a tilted stack is refused"):
        load_dicom_series(files)


def test_radiograph_seg_reads_back_with_highdicom(tmp_path, segmenter):
    import highdicom as hd

    write_radiograph(tmp_path / "in" / "dx.dcm")
    ds = pydicom.dcmread(tmp_path / "in" / "dx.dcm")
    ds.PixelSpacing = [0.2, 0.2]  # as many DX/CR objects carry it beside ImagerPixelSpacing
    ds.save_as(tmp_path / "in" / "dx.dcm")
    manifest = run_batch(discover(tmp_path / "in"), segmenter, tmp_path / "out", default_sentence=SENTENCE)
    (row,) = manifest.values()
    seg = hd.seg.segread(tmp_path / "out" / row["outputs"][1])
    frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1])
    png = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "out" / row["outputs"][0])) > 0
    assert frames.shape == (1, 40, 56, 1) and np.array_equal(frames[0, :, :, 0] > 0, png)
