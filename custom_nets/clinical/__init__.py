"""Clinical inference: CT volumes (NIfTI, DICOM series) and radiographs (DICOM), NIfTI/PNG/DICOM SEG outputs."""

from .inference import BundleSegmenter
from custom_nets.transforms.intensity import window  # the clinical API's windowing, stated once in transforms

from .io import ClinicalInputError, Radiograph, Volume, load_dicom_series, load_nifti, load_radiograph

__all__ = ["BundleSegmenter", "ClinicalInputError", "Radiograph", "Volume",
           "load_dicom_series", "load_nifti", "load_radiograph", "window"]
