"""Paths built from data (UIDs, file names, request values) that cannot leave the folder they belong to."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

#: a DICOM UID (PS3.5 9.1): components of digits separated by dots, no leading zero in a component, 64 characters at most
DICOM_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_dicom_uid(value: object) -> bool:
    """True for a valid DICOM UID (digits and dots, at most 64 characters).

    Example:
        >>> is_dicom_uid("1.2.840.10008.5.1.4.1.1.2"), is_dicom_uid("x/../../ESCAPED")
        (True, False)
    """
    return isinstance(value, str) and len(value) <= 64 and DICOM_UID.fullmatch(value) is not None


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (symbolic links and ``..`` resolved) lies in ``root`` or is ``root``."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def path_inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts...``, refused (ValueError naming both) when it resolves outside ``root``.

    Example:
        >>> path_inside("/out", "series_1.2.3", "seg.nii.gz").as_posix()
        '/out/series_1.2.3/seg.nii.gz'
    """
    path = Path(root).joinpath(*parts)
    if not is_inside(path, root):
        raise ValueError(f"refusing to write {path}: it resolves outside the output folder {root}")
    return path


def safe_component(text: str, max_length: int = 96) -> str:
    """One path component from any text: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``;
    a short hash of the original keeps two texts that clean up alike apart.

    Example:
        >>> safe_component("a/scan.nii.gz")
        'a_scan.nii.gz-5c6e68b3'
    """
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    cleaned = _UNSAFE.sub("_", text).strip("._") or "_"
    return f"{cleaned[:max_length]}-{digest}"


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> None:
    """Raise ValueError (naming ``what`` and the path) unless ``path`` is, or can be made, a folder this process can
    write in. Nothing is left behind: a probe file is created and removed in the nearest existing folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} {path} cannot be made: {existing} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"{what} {path} is not writable ({existing}: {e.strerror or e})") from None
