"""Clinical inference: CT volumes (NIfTI, DICOM series) and radiographs (DICOM), NIfTI/PNG/DICOM SEG outputs."""

from .inference import BundleSegmenter, ResizingSliceNetwork
from .io import ClinicalInputError, Radiograph, Volume, load_dicom_series, load_nifti, load_radiograph, window

__all__ = ["BundleSegmenter", "ResizingSliceNetwork", "ClinicalInputError", "Radiograph", "Volume",
           "load_dicom_series", "load_nifti", "load_radiograph", "window"]
