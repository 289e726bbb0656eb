"""General helpers: files written atomically and never replaced unasked, paths that stay inside a folder, safe names."""

from .files import refuse_overwrite, write_atomically
from .paths import DICOM_UID, check_writable_dir, is_dicom_uid, is_inside, path_inside, safe_component

__all__ = ["DICOM_UID", "check_writable_dir", "is_dicom_uid", "is_inside", "path_inside", "safe_component", "refuse_overwrite",
           "write_atomically"]
