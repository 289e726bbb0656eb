"""A real PACS for the tests: Orthanc with its DICOMweb plugin, on 127.0.0.1, its own storage and configuration.

:func:`orthanc_or_skip` makes sure Orthanc is installed (``scripts/setup_orthanc.sh``: Debian's ``orthanc`` and
``orthanc-dicomweb``) and skips the calling test with the script's reason when it cannot be.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT

USER, PASSWORD = "tester", "s3cret-pw-for-tests"
#: a Lua filter that refuses STOW-RS (POST under /dicom-web/studies) with 403 and lets everything else through
REFUSE_STOW = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if method == 'POST' and string.find(uri, '/dicom-web/studies', 1, true) == 1 then
    return false
  end
  return true
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def _setup_orthanc() -> str | None:
    """Run ``scripts/setup_orthanc.sh`` once per session: None when Orthanc is there, else the reason."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup_orthanc.sh")], text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if r.returncode == 0:
        return None
    return (r.stdout.strip().splitlines() or ["scripts/setup_orthanc.sh failed"])[-1]


def orthanc_or_skip() -> tuple[str, str]:
    """``(Orthanc executable, DICOMweb plugin)``, installing them if needed; skips the test when they cannot be."""
    reason = _setup_orthanc()
    if reason is not None:
        print(f"PACS tests skipped: {reason}")
        pytest.skip(f"no Orthanc: {reason}")
    exe = os.environ.get("ORTHANC") or shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    return exe, os.environ.get("ORTHANC_DICOMWEB_PLUGIN", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class Orthanc:
    """One Orthanc server: started on a free port of 127.0.0.1 with HTTP basic auth (``USER``/``PASSWORD``) and
    DICOMweb at ``/dicom-web``; stopped by its PID. ``start`` again after ``stop`` keeps the stored studies."""

    def __init__(self, folder: Path, refuse_stow: bool = False) -> None:
        self.exe, self.plugin = orthanc_or_skip()
        self.folder = Path(folder)
        self.refuse_stow = refuse_stow
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The DICOMweb root."""
        return f"{self.base}/dicom-web"

    def start(self, refuse_stow: bool | None = None) -> Orthanc:
        if refuse_stow is not None:
            self.refuse_stow = refuse_stow
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {"Name": "textseg-tests", "HttpPort": self.port, "DicomServerEnabled": False,
                  "StorageDirectory": str(storage), "IndexDirectory": str(storage), "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "Plugins": [self.plugin],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True}}
        if self.refuse_stow:
            (self.folder / "refuse_stow.lua").write_text(REFUSE_STOW)
            config["LuaScripts"] = [str(self.folder / "refuse_stow.lua")]
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(self.folder / "orthanc.log", "a")
        self.proc = subprocess.Popen([self.exe, str(self.folder / "orthanc.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while True:
            assert self.proc.poll() is None, (self.folder / "orthanc.log").read_text()[-2000:]
            try:
                if requests.get(f"{self.base}/system", auth=(USER, PASSWORD), timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "Orthanc did not start:\n" + (self.folder / "orthanc.log").read_text()[-2000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        self.proc = None

    # ------------------------------------------------------------ Orthanc's own REST API, for setting up and checking

    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        r = requests.request(method, f"{self.base}{path}", auth=(USER, PASSWORD), timeout=60, **kwargs)
        r.raise_for_status()
        return r

    def upload(self, *files: Path) -> None:
        for f in files:
            self.rest("POST", "/instances", data=Path(f).read_bytes())

    def delete_series(self, series_uid: str) -> None:
        [found] = [x for x in self.rest("POST", "/tools/lookup", data=series_uid).json() if x["Type"] == "Series"]
        self.rest("DELETE", f"/series/{found['ID']}")

    def series(self, study_uid: str, modality: str) -> list[dict]:
        """The study's series of one modality, as Orthanc's DICOMweb answers QIDO-RS."""
        return self.rest("GET", f"/dicom-web/studies/{study_uid}/series", params={"Modality": modality}).json()
