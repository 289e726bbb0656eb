"""A PACS over DICOMweb (``dicomweb-client``): find series (QIDO-RS), retrieve them (WADO-RS), store SEG back (STOW-RS).

:class:`Pacs` wraps one server and turns every transport or HTTP failure into a :class:`PacsError` naming the URL and
what was being done; :func:`remote_jobs` turns the series found into the batch runner's jobs (and the studies'
structured reports into their sentences); :func:`run_remote_batch` runs them like :func:`~custom_nets.clinical.batch.run_batch`
runs a folder, with the same manifest, plus where each series came from and what became of its SEG on the server.

Credentials come from the environment (``DICOMWEB_USER``, ``DICOMWEB_PASSWORD``) or a netrc file (``NETRC`` or
``~/.netrc``), never from the URL, and are never printed or written. TLS certificates are verified (``ca_bundle`` for
a hospital's own certificate authority). Requests answered 408/429/503/504 are retried at most twice, with back-off;
nothing else is retried (a 401 is one request, not a storm).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from custom_nets.clinical.batch import (
    Job,
    Row,
    changed_jobs,
    is_done,
    job_made_with,
    load_manifest,
    refuse_changed,
    run_job,
    save_manifest,
    sentence_and_source,
)
from custom_nets.clinical.io import CT_MODALITIES, RADIOGRAPH_MODALITIES, ClinicalInputError
from custom_nets.clinical.reports import Report, newest_reports, report_of
from custom_nets.utils import is_dicom_uid, path_inside

ENV_USER, ENV_PASSWORD = "DICOMWEB_USER", "DICOMWEB_PASSWORD"
#: written as the SEG's Manufacturer (custom_nets.clinical.outputs): how our SEGs on a server are recognised
SEG_MANUFACTURER = "textseg-bundles"
UPLOAD_FAILED = "stored locally, upload failed"


class PacsError(RuntimeError):
    """A DICOMweb request that failed; the message names the URL and what was being done."""


class PacsUnreachable(PacsError):
    """No answer from the server (refused, timed out, TLS not verified): the batch stops, a rerun resumes."""


class PacsAuthError(PacsError):
    """401/403: the credentials were refused; the batch stops (no retry)."""


class PacsNotFound(PacsError):
    """404: the study, series or instance is not (or no longer) on the server."""


def credentials(url: str) -> tuple[tuple[str, str] | None, str]:
    """``((user, password) or None, where they came from)``: the environment, else netrc, else none."""
    import requests

    user, password = os.environ.get(ENV_USER, ""), os.environ.get(ENV_PASSWORD, "")
    if user or password:
        if not (user and password):
            unset, given = (ENV_USER, ENV_PASSWORD) if not user else (ENV_PASSWORD, ENV_USER)
            raise ValueError(f"{unset} is not set, {given} is: set both, or neither (a netrc file is read then)")
        return (user, password), f"{ENV_USER}/{ENV_PASSWORD}"
    auth = requests.utils.get_netrc_auth(url)
    if auth:
        return tuple(auth), "netrc"
    return None, "no credentials"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_query(items: Iterable[str]) -> dict[str, str]:
    """``["Modality=CT", "StudyDate=20260101-20260131"]`` -> QIDO search filters; keys must be DICOM keywords."""
    from pydicom.datadict import tag_for_keyword

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"--query {item!r}: expected KEY=VALUE, e.g. Modality=CT or StudyDate=20260101-20260131")
        if tag_for_keyword(key) is None:
            raise ValueError(f"--query {item!r}: {key!r} is not a DICOM attribute keyword (e.g. PatientID, StudyDate, Modality)")
        out[key] = value
    return out


class Pacs:
    """One DICOMweb server.

    Args:
        url: the DICOMweb root, e.g. ``https://pacs.example.org/dicom-web`` (Orthanc: ``http://host:8042/dicom-web``).
        ca_bundle: a CA certificate file to verify the server's TLS certificate with (default: the system's).
        timeout: seconds to wait for each answer.

    Raises ValueError for a URL that is not http(s) or that holds credentials (they belong in the environment or netrc).
    """

    def __init__(self, url: str, ca_bundle: str | None = None, timeout: float = 60.0) -> None:
        import requests
        from dicomweb_client import DICOMwebClient

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--dicomweb {url!r}: expected an http:// or https:// URL of the DICOMweb root")
        if parts.username or parts.password:
            raise ValueError(f"--dicomweb: the URL holds credentials; give them in {ENV_USER}/{ENV_PASSWORD} or a netrc "
                             "file instead (a URL ends up in logs and manifests)")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise FileNotFoundError(f"--ca-bundle {ca_bundle}: file not found")
        self.url = url.rstrip("/")
        auth, self.auth_source = credentials(self.url)
        self.plain_http_with_credentials = bool(auth) and parts.scheme == "http" and not _is_loopback(parts.hostname)
        session = requests.Session()
        session.auth = auth
        session.verify = ca_bundle or True
        self.client = DICOMwebClient(self.url, session=session, timeout=timeout)
        self.client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)

    @contextmanager
    def _request(self, what: str) -> Iterator[None]:
        import requests

        try:
            yield
        except requests.exceptions.SSLError as e:
            raise PacsUnreachable(f"{self.url}: TLS certificate not verified while {what} ({e.__class__.__name__}); "
                                  "pass --ca-bundle with your hospital's CA certificate") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise PacsUnreachable(f"{self.url}: server not reachable while {what} ({e.__class__.__name__})") from None
        except requests.exceptions.HTTPError as e:
            status = e.response.status_code if e.response is not None else 0
            reason = f"{status} {HTTPStatus(status).phrase}" if status in HTTPStatus._value2member_map_ else str(status)
            if status in (401, 403):
                raise PacsAuthError(f"{self.url}: {reason} while {what}: the server refused the credentials "
                                    f"({self.auth_source}); set {ENV_USER}/{ENV_PASSWORD} or a netrc entry for this host") from None
            if status == 404:
                raise PacsNotFound(f"{self.url}: {reason} while {what} (deleted from the server since it was found?)") from None
            raise PacsError(f"{self.url}: {reason} while {what}") from None

    # ------------------------------------------------------------------ QIDO-RS

    def check(self) -> None:
        """One study search: raises PacsUnreachable / PacsAuthError before any work."""
        with self._request("checking the server (QIDO-RS /studies)"):
            self.client.search_for_studies(limit=1)

    def find_series(self, studies: Iterable[str] = (), query: dict[str, str] | None = None) -> list:
        """Series (pydicom Datasets of their QIDO attributes) of the given studies and/or matching ``query``."""
        from pydicom import Dataset

        fields = ["StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "Manufacturer",
                  "ManufacturerModelName"]
        found = []
        for study in list(studies) or [None]:
            if study is not None and not is_dicom_uid(study):
                raise ValueError(f"--study {study!r}: not a DICOM UID (digits and dots)")
            with self._request(f"searching series{f' of study {study}' if study else ''} (QIDO-RS)"):
                answer = self.client.search_for_series(study_instance_uid=study, search_filters=dict(query or {}),
                                                       fields=fields, get_remaining=True)
            if study is not None and not answer:
                raise ValueError(f"--study {study}: no series on {self.url}{' match the --query' if query else ''}")
            found += [Dataset.from_json(a) for a in answer]
        return found

    def instances(self, study: str, series: str) -> list:
        from pydicom import Dataset

        with self._request(f"listing the instances of series {series} (QIDO-RS)"):
            return [Dataset.from_json(a) for a in self.client.search_for_instances(study, series, get_remaining=True)]

    def has_series(self, study: str, series: str) -> bool:
        with self._request(f"looking for series {series} (QIDO-RS)"):
            return bool(self.client.search_for_series(study_instance_uid=study, search_filters={"SeriesInstanceUID": series}))

    def our_segs(self, study: str, source_series: str, algorithm: str, source_instance: str | None = None) -> list[tuple[str, str]]:
        """``(SEG series UID, SOP instance UID)`` of this project's SEGs (same bundle) on the server that reference
        ``source_series`` of ``study`` (and ``source_instance`` of it, when given: one radiograph of a series)."""
        from pydicom import Dataset

        out = []
        with self._request(f"looking for SEGs in study {study} (QIDO-RS)"):
            candidates = self.client.search_for_series(study_instance_uid=study, search_filters={"Modality": "SEG"},
                                                       fields=["Manufacturer", "ManufacturerModelName"])
        for c in map(Dataset.from_json, candidates):
            if str(c.get("Manufacturer", "")) != SEG_MANUFACTURER or str(c.get("ManufacturerModelName", "")) != algorithm:
                continue
            with self._request(f"reading SEG series {c.SeriesInstanceUID} (WADO-RS metadata)"):
                metadata = self.client.retrieve_series_metadata(study, str(c.SeriesInstanceUID))
            for m in (Dataset.from_json(x, bulk_data_uri_handler=lambda *_: None) for x in metadata):  # no pixels needed
                for r in m.get("ReferencedSeriesSequence", []):
                    instances = {str(i.get("ReferencedSOPInstanceUID", "")) for i in r.get("ReferencedInstanceSequence", [])}
                    if str(r.get("SeriesInstanceUID", "")) == source_series and (source_instance is None or source_instance in instances):
                        out.append((str(c.SeriesInstanceUID), str(m.SOPInstanceUID)))
                        break
        return out

    def reports(self, study: str) -> list[Report]:
        """The Findings/Impression reports of the study's SR series (:func:`~custom_nets.clinical.reports.report_of`)."""
        from pydicom import Dataset

        with self._request(f"looking for reports (SR) in study {study} (QIDO-RS)"):
            series = [Dataset.from_json(a) for a in self.client.search_for_series(
                study_instance_uid=study, search_filters={"Modality": "SR"})]
        out = []
        for s in series:
            with self._request(f"retrieving report series {s.SeriesInstanceUID} (WADO-RS)"):
                datasets = self.client.retrieve_series(study, str(s.SeriesInstanceUID))
            out += [r for r in map(report_of, datasets) if r is not None]
        return out

    # ------------------------------------------------------------------ WADO-RS

    def retrieve(self, study: str, series: str, folder: Path, sop_instance: str | None = None) -> list[Path]:
        """A series (or one instance of it) as files in ``folder``."""
        what = f"retrieving {'instance ' + sop_instance if sop_instance else 'series ' + series} (WADO-RS)"
        with self._request(what):
            datasets = ([self.client.retrieve_instance(study, series, sop_instance)] if sop_instance
                        else self.client.retrieve_series(study, series))
        if not datasets:
            raise PacsNotFound(f"{self.url}: nothing returned while {what}")
        files = []
        for i, ds in enumerate(datasets):
            path = folder / f"{i:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
        return files

    # ------------------------------------------------------------------ STOW-RS

    def store(self, path: Path) -> tuple[str, str]:
        """Store one DICOM file; its ``(SeriesInstanceUID, SOPInstanceUID)``. A server's refusal (an HTTP error, or
        the instance in the answer's FailedSOPSequence) is a PacsError with its reason."""
        import pydicom

        ds = pydicom.dcmread(path)
        with self._request(f"storing {path.name} (STOW-RS)"):
            answer = self.client.store_instances([ds], study_instance_uid=str(ds.StudyInstanceUID))
        failed = answer.get("FailedSOPSequence", []) if answer is not None else []
        if failed:
            reason = getattr(failed[0], "FailureReason", "?")
            raise PacsError(f"{self.url}: the server refused {path.name} (STOW-RS failure reason 0x{int(reason):04X})"
                            if str(reason).isdigit() else f"{self.url}: the server refused {path.name} ({reason})")
        return str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


# ---------------------------------------------------------------------- series -> jobs


@dataclass
class RemoteFound:
    """What a search found: the jobs to run, the studies' reports, and the series left aside (modality -> count)."""

    jobs: list[Job]
    reports: dict[str, Report]
    ignored: Counter


def remote_jobs(pacs: Pacs, series: list) -> RemoteFound:
    """Jobs for the CT series and radiographs found (one per radiograph instance, as for a folder), the newest
    Findings/Impression report of each of their studies (SR series, searched in every study involved), and the
    other modalities counted. UIDs from the server are checked to be DICOM UIDs before they name anything."""
    jobs, ignored, studies = [], Counter(), set()
    for s in series:
        study, uid, modality = str(s.get("StudyInstanceUID", "")), str(s.get("SeriesInstanceUID", "")), str(s.get("Modality", "?"))
        if not (is_dicom_uid(study) and is_dicom_uid(uid)):
            jobs.append(Job(f"series_invalid_{len(jobs)}", "invalid", [], error=f"series {uid!r} of study {study!r}: not DICOM UIDs"))
            continue
        if modality in CT_MODALITIES:
            jobs.append(Job(f"series_{uid}", "ct_series", [], study, uid))
            studies.add(study)
        elif modality in RADIOGRAPH_MODALITIES:
            for instance in pacs.instances(study, uid):
                sop = str(instance.get("SOPInstanceUID", ""))
                if is_dicom_uid(sop):
                    jobs.append(Job(f"image_{sop}", "radiograph", [], study, uid))
                else:
                    jobs.append(Job(f"series_{uid}", "invalid", [], study, uid, error=f"series {uid}: instance UID {sop!r} is not a DICOM UID"))
            studies.add(study)
        elif modality != "SR":  # reports are read per study below
            ignored[modality] += 1
    reports = [r for study in sorted(studies) for r in pacs.reports(study)]
    return RemoteFound(jobs, newest_reports(reports), ignored)


# ---------------------------------------------------------------------- the batch


def _sop_of(job: Job) -> str | None:
    return job.id.removeprefix("image_") if job.kind == "radiograph" else None


def run_remote_batch(pacs: Pacs, found: RemoteFound, segmenter, output_dir: str | os.PathLike,
                     sentences: dict[str, str] | None = None, default_sentence: str | None = None, write_seg: bool = True,
                     progress: Callable[[list[Job]], Iterable[Job]] | None = None,
                     overwrite: bool = False) -> tuple[dict[str, dict], str | None]:
    """Retrieve, segment and store back every job not yet done; returns the manifest and why the batch stopped early
    (None when it did not).

    Per job: a row done with the same inputs whose SEG the server still has is skipped; one whose upload failed
    (or whose SEG is gone from the server) is uploaded again from disk; a series without a done row that already has
    a SEG of this bundle on the server is not segmented again (the row records that SEG; ``overwrite`` stores a new
    one). Otherwise the job is retrieved into a temporary folder, segmented by
    :func:`~custom_nets.clinical.batch.run_job` and its SEG stored. A series gone from the server fails its row; an
    unreachable server or refused credentials fail the job in flight and stop the batch (every other row is kept; a
    rerun resumes). A refused upload keeps the SEG on disk and marks the row ``stored locally, upload failed``.
    Rows done with other inputs are refused before any work unless ``overwrite`` (as for a folder).
    """
    output_dir = Path(output_dir)
    sentences = sentences or {}
    refuse_changed(changed_jobs(found.jobs, segmenter, output_dir, sentences, default_sentence, found.reports), output_dir,
                   overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = output_dir / "manifest.json"
    manifest = load_manifest(manifest_path)
    iterator = progress(found.jobs) if progress else found.jobs
    for job in iterator:
        sentence, sentence_source = sentence_and_source(job, sentences, default_sentence, found.reports)
        remote = {"url": pacs.url, "study": job.study_uid, "series": job.series_uid}
        if _sop_of(job):
            remote["instance"] = _sop_of(job)
        t0 = time.perf_counter()
        try:
            row = _run_one(pacs, job, manifest.get(job.id), segmenter, output_dir, sentence, sentence_source, remote,
                           write_seg, overwrite)
        except (PacsUnreachable, PacsAuthError) as e:  # the server is gone or refuses us: nothing else can work
            if not is_done(manifest.get(job.id), output_dir):  # a done row stays done
                manifest[job.id] = _failed(job, remote, sentence, sentence_source, t0, e)
                save_manifest(manifest, manifest_path)
            return manifest, str(e)
        except (PacsError, ClinicalInputError, ValueError, OSError, RuntimeError) as e:
            row = _failed(job, remote, sentence, sentence_source, t0, e)
        if row is None:
            continue
        stop = row.get("stored", {}).pop("stop", None)
        manifest[job.id] = row
        save_manifest(manifest, manifest_path)
        if stop:
            return manifest, stop
    return manifest, None


def _run_one(pacs: Pacs, job: Job, row: dict | None, segmenter, output_dir: Path, sentence: str, sentence_source: str,
             remote: dict, write_seg: bool, overwrite: bool) -> dict | None:
    """The job's new manifest row, or None when nothing is to be done."""
    made_with = job_made_with(segmenter, sentence)
    if is_done(row, output_dir, made_with):
        stored = row.get("stored", {})
        if not write_seg or (stored.get("status") in ("stored", "already on the server")
                             and pacs.has_series(job.study_uid, stored["series_uid"])):
            return None
        seg = path_inside(output_dir, job.id) / "seg.dcm"
        if seg.is_file():  # the upload failed earlier, or the SEG is gone from the server: upload it again
            return {**row, "stored": _store(pacs, seg)}
    if write_seg and not overwrite and job.kind != "invalid" and (row is None or row.get("status") != "done"):
        existing = pacs.our_segs(job.study_uid, job.series_uid, getattr(segmenter, "name", ""), _sop_of(job))
        if existing:
            return asdict(Row("done", job.kind, _source(remote), sentence, sentence_source, [], 0.0, made_with=made_with)) | {
                "remote": remote, "stored": {"status": "already on the server", "series_uid": existing[0][0],
                                             "sop_instance_uid": existing[0][1]}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="textseg-dicomweb-") as tmp:
        files = [] if job.kind == "invalid" else pacs.retrieve(job.study_uid, job.series_uid, Path(tmp), _sop_of(job))
        outputs = run_job(replace(job, files=[str(f) for f in files]), segmenter, sentence, output_dir, write_seg)
    new = asdict(Row("done", job.kind, _source(remote), sentence, sentence_source, outputs,
                     round(time.perf_counter() - t0, 3), made_with=made_with)) | {"remote": remote}
    new["stored"] = _store(pacs, path_inside(output_dir, job.id) / "seg.dcm") if write_seg else {"status": "not stored (--no-seg)"}
    return new


def _source(remote: dict) -> str:
    return f"{remote['url']}/studies/{remote['study']}/series/{remote['series']}" + (
        f"/instances/{remote['instance']}" if "instance" in remote else "")


def _store(pacs: Pacs, seg: Path) -> dict:
    """Upload a SEG; what the manifest records of it (``stop`` set when the server is gone: the batch cannot go on)."""
    try:
        series_uid, sop_uid = pacs.store(seg)
        return {"status": "stored", "series_uid": series_uid, "sop_instance_uid": sop_uid}
    except PacsError as e:
        stored = {"status": UPLOAD_FAILED, "error": str(e)}
        if isinstance(e, PacsUnreachable):
            stored["stop"] = str(e)
        return stored


def _failed(job: Job, remote: dict, sentence: str, source: str, t0: float, e: Exception) -> dict:
    return asdict(Row("failed", job.kind, _source(remote), sentence, source, [], round(time.perf_counter() - t0, 3),
                      f"{type(e).__name__}: {e}")) | {"remote": remote}
