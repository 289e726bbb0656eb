"""The batch runner against a real PACS: Orthanc with DICOMweb (tests/orthanc.py), a CT series, a radiograph and a
structured report uploaded to it; SEGs found there by QIDO-RS afterwards; every fault of the issue.

``scripts/infer_dicom.py`` runs in this process (its ``main``), with the tiny random HiMix of test_clinical:
geometry and bookkeeping are tested here, not accuracy.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from clinical_data import write_ct_series, write_radiograph, write_report_sr
from conftest import ROOT
from custom_nets.clinical import BundleSegmenter
from custom_nets.clinical.batch import discover, run_batch
from custom_nets.clinical.dicomweb import (
    UPLOAD_FAILED,
    Pacs,
    PacsAuthError,
    PacsUnreachable,
    parse_query,
    remote_jobs,
    run_remote_batch,
)
from custom_nets.clinical.reports import report_of
from orthanc import PASSWORD, USER, Orthanc, free_port
from test_clinical import HIMIX, SENTENCE, tiny_bundle  # noqa: F401 - the module-scoped fixture

REPORTED = "Unilateral pulmonary infection, one infected area, middle left lung."
spec = importlib.util.spec_from_file_location("infer_dicom", ROOT / "scripts" / "infer_dicom.py")
infer_dicom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(infer_dicom)


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("DICOMWEB_USER", USER)
    monkeypatch.setenv("DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.setenv("NETRC", "/nonexistent")  # this machine's own netrc, if any, plays no part


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):  # noqa: F811
    root, overrides = tiny_bundle
    return BundleSegmenter(HIMIX, overrides, bundle_root=str(root), slice_batch=4)


def cli(tiny_bundle, url: str, output, *extra: str) -> tuple[int, str]:  # noqa: F811
    """``infer_dicom.py --dicomweb url ...`` in this process: (exit code, what it printed)."""
    root, overrides = tiny_bundle
    argv = ["--bundle", str(HIMIX), "--config", *overrides, "--bundle-root", str(root), "--dicomweb", url,
            "--output", str(output), *extra]
    try:
        return infer_dicom.main(argv), ""
    except SystemExit as e:
        return (e.code if isinstance(e.code, int) else 1), str(e.code)


def upload_study(orthanc: Orthanc, tmp_path, n: int = 6, report: str | None = REPORTED):
    """A CT series (and, when ``report`` is given, an Enhanced SR with that Findings text) in one study."""
    files, _ = write_ct_series(tmp_path / "ct" / generate_uid(), n=n, study_uid=generate_uid())
    orthanc.upload(*files)
    datasets = [pydicom.dcmread(f) for f in files]
    if report is not None:
        sr = tmp_path / "sr" / f"{generate_uid()}.dcm"
        write_report_sr(sr, datasets, findings=[report], impressions=["COVID-19 pneumonia."])
        orthanc.upload(sr)
    return datasets


def manifest_of(output) -> dict:
    return json.loads((output / "manifest.json").read_text())


# ---------------------------------------------------------------------- reports as the standard shapes them


def test_report_text_from_findings_else_impression(tmp_path):
    files, _ = write_ct_series(tmp_path / "ct", n=2)
    evidence = [pydicom.dcmread(f) for f in files]
    write_report_sr(tmp_path / "both.dcm", evidence, findings=["Opacity  in the left\nupper zone.", "Second finding."],
                    impressions=["Pneumonia."])
    both = report_of(pydicom.dcmread(tmp_path / "both.dcm"))
    assert (both.section, both.text) == ("Findings", "Opacity in the left upper zone. Second finding.")
    write_report_sr(tmp_path / "impression.dcm", evidence, impressions=["Pneumonia, right lower lobe."],
                    kind="comprehensive", codes="LN")
    impression = report_of(pydicom.dcmread(tmp_path / "impression.dcm"))
    assert (impression.section, impression.text) == ("Impression", "Pneumonia, right lower lobe.")
    write_report_sr(tmp_path / "empty.dcm", evidence)  # a report with neither section gives no sentence
    assert report_of(pydicom.dcmread(tmp_path / "empty.dcm")) is None
    assert report_of(evidence[0]) is None  # an image is no report


def test_folder_study_takes_its_reports_sentence_before_the_csv_and_text(tmp_path, segmenter):
    files, _ = write_ct_series(tmp_path / "in" / "ct", n=4)
    evidence = [pydicom.dcmread(f) for f in files]
    write_report_sr(tmp_path / "in" / "sr" / "old.dcm", evidence, findings=["An older report."])
    newest = write_report_sr(tmp_path / "in" / "sr" / "new.dcm", evidence, findings=[REPORTED])  # written later
    write_ct_series(tmp_path / "in" / "other", n=4)  # another study, no report
    jobs = discover(tmp_path / "in")
    assert sorted(j.kind for j in jobs) == ["ct_series", "ct_series", "report", "report"]
    csv = {str(evidence[0].SeriesInstanceUID): "The CSV's sentence."}
    manifest = run_batch(jobs, segmenter, tmp_path / "out", csv, default_sentence=SENTENCE)
    assert len(manifest) == 2  # the reports are no rows
    row = manifest[f"series_{evidence[0].SeriesInstanceUID}"]
    assert (row["sentence"], row["sentence_source"]) == (REPORTED, f"report: SR {newest} (Findings)")
    [other] = [r for k, r in manifest.items() if k != f"series_{evidence[0].SeriesInstanceUID}"]
    assert (other["sentence"], other["sentence_source"]) == (SENTENCE, "--text")


def test_query_and_url_checks():
    assert parse_query(["Modality=CT", "StudyDate=20260101-20260131"]) == {"Modality": "CT", "StudyDate": "20260101-20260131"}
    with pytest.raises(ValueError, match="'Modalty' is not a DICOM attribute keyword"):
        parse_query(["Modalty=CT"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_query(["Modality"])
    with pytest.raises(ValueError, match="the URL holds credentials"):
        Pacs(f"http://{USER}:{PASSWORD}@127.0.0.1:8042/dicom-web")


# ---------------------------------------------------------------------- the batch over DICOMweb


def test_batch_over_dicomweb_stores_segs_that_reference_their_sources(tmp_path, orthanc, tiny_bundle):  # noqa: F811
    ct = upload_study(orthanc, tmp_path)
    study, series = str(ct[0].StudyInstanceUID), str(ct[0].SeriesInstanceUID)
    write_radiograph(tmp_path / "dx.dcm")
    dx = pydicom.dcmread(tmp_path / "dx.dcm")
    orthanc.upload(tmp_path / "dx.dcm")
    out = tmp_path / "out"

    code, said = cli(tiny_bundle, orthanc.url, out, "--study", study, "--study", str(dx.StudyInstanceUID), "--text", SENTENCE)
    assert code == 0, said
    manifest = manifest_of(out)
    ct_row, dx_row = manifest[f"series_{series}"], manifest[f"image_{dx.SOPInstanceUID}"]
    # the CT's sentence is its study's report; the radiograph's study has none: --text
    assert ct_row["sentence"] == REPORTED and ct_row["sentence_source"].startswith("report: SR ")
    assert ct_row["sentence_source"].endswith("(Findings)")
    assert dx_row["sentence"] == SENTENCE and dx_row["sentence_source"] == "--text"
    assert ct_row["remote"] == {"url": orthanc.url, "study": study, "series": series}
    assert dx_row["remote"]["instance"] == str(dx.SOPInstanceUID)
    assert ct_row["status"] == dx_row["status"] == "done" and ct_row["stored"]["status"] == dx_row["stored"]["status"] == "stored"
    text = (out / "manifest.json").read_text()
    assert PASSWORD not in text and USER not in text  # credentials are never written

    # the SEG is on the server (QIDO-RS), references every source instance, and has the source's geometry
    [seg_series] = orthanc.series(study, "SEG")
    assert seg_series["0020000E"]["Value"] == [ct_row["stored"]["series_uid"]]
    client = Pacs(orthanc.url).client
    [seg] = client.retrieve_series(study, ct_row["stored"]["series_uid"])
    assert str(seg.SOPInstanceUID) == ct_row["stored"]["sop_instance_uid"]
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == series
    assert {str(r.ReferencedSOPInstanceUID) for r in referenced.ReferencedInstanceSequence} == {str(d.SOPInstanceUID) for d in ct}
    assert (seg.Rows, seg.Columns, int(seg.NumberOfFrames)) == (ct[0].Rows, ct[0].Columns, len(ct))
    positions = sorted(float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in seg.PerFrameFunctionalGroupsSequence)
    assert np.allclose(positions, sorted(float(d.ImagePositionPatient[2]) for d in ct))
    assert seg.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
    local = pydicom.dcmread(out / ct_row["outputs"][1])  # the stored SEG is the one kept on disk
    assert local.SOPInstanceUID == seg.SOPInstanceUID and local.PixelData == seg.PixelData
    assert len(orthanc.series(str(dx.StudyInstanceUID), "SEG")) == 1

    # a rerun stores nothing new, with its manifest or without it (the server is asked)
    code, said = cli(tiny_bundle, orthanc.url, out, "--study", study, "--study", str(dx.StudyInstanceUID), "--text", SENTENCE)
    assert code == 0 and manifest_of(out) == manifest, said
    code, said = cli(tiny_bundle, orthanc.url, tmp_path / "elsewhere", "--study", study, "--study",
                     str(dx.StudyInstanceUID), "--text", SENTENCE)
    assert code == 0, said
    elsewhere = manifest_of(tmp_path / "elsewhere")
    for key, row in ((f"series_{series}", ct_row), (f"image_{dx.SOPInstanceUID}", dx_row)):
        assert elsewhere[key]["stored"] == {"status": "already on the server", "series_uid": row["stored"]["series_uid"],
                                            "sop_instance_uid": row["stored"]["sop_instance_uid"]}
    assert len(orthanc.series(study, "SEG")) == 1 and len(orthanc.series(str(dx.StudyInstanceUID), "SEG")) == 1


# ---------------------------------------------------------------------- faults


def test_server_down_at_start_writes_nothing(tmp_path, tiny_bundle):  # noqa: F811
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    code, said = cli(tiny_bundle, url, tmp_path / "out", "--query", "Modality=CT", "--text", SENTENCE)
    assert code == 1 and said.startswith(f"error: {url}: server not reachable"), said
    assert not (tmp_path / "out").exists()


def test_refused_credentials_are_one_request_and_a_clear_error(tmp_path, orthanc, tiny_bundle, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DICOMWEB_PASSWORD", "wrong")
    sent = []
    send = requests.Session.send
    monkeypatch.setattr(requests.Session, "send", lambda self, request, **kw: sent.append(request.url) or send(self, request, **kw))
    code, said = cli(tiny_bundle, orthanc.url, tmp_path / "out", "--query", "Modality=CT", "--text", SENTENCE)
    assert code == 1 and f"{orthanc.url}: 401 Unauthorized" in said and "DICOMWEB_USER/DICOMWEB_PASSWORD" in said, said
    assert "wrong" not in said and len(sent) == 1  # no retry storm
    assert not (tmp_path / "out").exists()


def test_server_lost_mid_run_fails_the_series_in_flight_and_a_rerun_resumes(tmp_path, orthanc, segmenter):
    first, second = upload_study(orthanc, tmp_path, report=None), upload_study(orthanc, tmp_path, report=None)
    pacs = Pacs(orthanc.url)
    found = remote_jobs(pacs, pacs.find_series(query={"Modality": "CT"}))
    assert [j.kind for j in found.jobs] == ["ct_series", "ct_series"]

    def lose_the_server_after_the_first(jobs):
        yield jobs[0]
        orthanc.stop()
        yield from jobs[1:]

    out = tmp_path / "out"
    manifest, stopped = run_remote_batch(pacs, found, segmenter, out, default_sentence=SENTENCE,
                                         progress=lose_the_server_after_the_first)
    assert stopped and "server not reachable" in stopped
    done, lost = manifest[found.jobs[0].id], manifest[found.jobs[1].id]
    assert done["status"] == "done" and done["stored"]["status"] == "stored"
    assert lost["status"] == "failed" and "PacsUnreachable" in lost["error"] and orthanc.url in lost["error"]
    assert manifest_of(out) == manifest

    orthanc.start()  # back, with what it stored
    segmented = []
    original = segmenter.segment_volume
    segmenter.segment_volume = lambda *a, **k: segmented.append(1) or original(*a, **k)
    try:
        manifest, stopped = run_remote_batch(pacs, found, segmenter, out, default_sentence=SENTENCE)
    finally:
        segmenter.segment_volume = original
    assert stopped is None and len(segmented) == 1  # only the series lost in flight
    assert manifest[found.jobs[0].id] == done and manifest[found.jobs[1].id]["stored"]["status"] == "stored"
    for ct in (first, second):
        assert len(orthanc.series(str(ct[0].StudyInstanceUID), "SEG")) == 1


def test_refused_upload_keeps_the_seg_and_a_rerun_uploads_it(tmp_path, segmenter):
    orthanc = Orthanc(tmp_path / "orthanc", refuse_stow=True).start()
    try:
        ct = upload_study(orthanc, tmp_path)
        pacs = Pacs(orthanc.url)
        found = remote_jobs(pacs, pacs.find_series([str(ct[0].StudyInstanceUID)]))
        manifest, stopped = run_remote_batch(pacs, found, segmenter, tmp_path / "out")
        row = manifest[found.jobs[0].id]
        assert stopped is None and row["status"] == "done" and row["stored"]["status"] == UPLOAD_FAILED
        assert "403 Forbidden while storing seg.dcm (STOW-RS)" in row["stored"]["error"]
        assert (tmp_path / "out" / row["outputs"][1]).is_file() and orthanc.series(str(ct[0].StudyInstanceUID), "SEG") == []
        orthanc.stop()
        orthanc.start(refuse_stow=False)
        manifest, stopped = run_remote_batch(pacs, found, segmenter, tmp_path / "out")
        assert manifest[found.jobs[0].id]["stored"]["status"] == "stored"
        [seg] = orthanc.series(str(ct[0].StudyInstanceUID), "SEG")
        assert seg["0020000E"]["Value"] == [manifest[found.jobs[0].id]["stored"]["series_uid"]]
    finally:
        orthanc.stop()


def test_series_deleted_between_query_and_retrieve(tmp_path, orthanc, segmenter):
    kept, deleted = upload_study(orthanc, tmp_path, report=None), upload_study(orthanc, tmp_path, report=None)
    pacs = Pacs(orthanc.url)
    found = remote_jobs(pacs, pacs.find_series(query={"Modality": "CT"}))
    orthanc.delete_series(str(deleted[0].SeriesInstanceUID))
    manifest, stopped = run_remote_batch(pacs, found, segmenter, tmp_path / "out", default_sentence=SENTENCE)
    assert stopped is None
    gone = manifest[f"series_{deleted[0].SeriesInstanceUID}"]
    assert gone["status"] == "failed" and "404 Not Found" in gone["error"] and "deleted from the server" in gone["error"]
    assert manifest[f"series_{kept[0].SeriesInstanceUID}"]["stored"]["status"] == "stored"


def test_credentials_from_netrc_and_tls_verified_by_default(tmp_path, orthanc, monkeypatch):
    monkeypatch.delenv("DICOMWEB_USER")
    monkeypatch.delenv("DICOMWEB_PASSWORD")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    pacs = Pacs(orthanc.url)
    assert pacs.auth_source == "netrc" and pacs.client._session.verify is True
    pacs.check()  # accepted with the netrc credentials
    ca = tmp_path / "hospital-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert Pacs(orthanc.url, ca_bundle=str(ca)).client._session.verify == str(ca)
    with pytest.raises(FileNotFoundError, match="--ca-bundle"):
        Pacs(orthanc.url, ca_bundle=str(tmp_path / "missing.pem"))


def test_errors_before_any_work(tmp_path, orthanc, tiny_bundle, monkeypatch):  # noqa: F811
    code, said = cli(tiny_bundle, orthanc.url, tmp_path / "out", "--text", SENTENCE)
    assert code == 1 and "--dicomweb needs --study UID or --query" in said
    code, said = cli(tiny_bundle, orthanc.url, tmp_path / "out", "--study", "1.2.3.4", "--text", SENTENCE)
    assert code == 1 and f"--study 1.2.3.4: no series on {orthanc.url}" in said
    ct = upload_study(orthanc, tmp_path, n=2, report=None)  # no report, no CSV, no --text: no sentence
    code, said = cli(tiny_bundle, orthanc.url, tmp_path / "out", "--query", "Modality=CT")
    assert code == 1 and "1 series have no sentence" in said and str(ct[0].StudyInstanceUID) in said, said
    monkeypatch.delenv("DICOMWEB_PASSWORD")
    code, said = cli(tiny_bundle, orthanc.url, tmp_path / "out", "--query", "Modality=CT", "--text", SENTENCE)
    assert code == 1 and "DICOMWEB_PASSWORD is not set, DICOMWEB_USER is" in said
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("DICOMWEB_PASSWORD", PASSWORD)
    with pytest.raises((PacsAuthError, PacsUnreachable)):
        Pacs(f"http://127.0.0.1:{free_port()}/dicom-web").check()
