"""General helpers: paths that stay inside a folder, names safe for a file system."""

from .paths import DICOM_UID, check_writable_dir, is_dicom_uid, is_inside, path_inside, safe_component

__all__ = ["DICOM_UID", "check_writable_dir", "is_dicom_uid", "is_inside", "path_inside", "safe_component"]
