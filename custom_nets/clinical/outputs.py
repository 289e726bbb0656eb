"""Writing masks in the source's geometry: NIfTI, PNG and DICOM SEG (highdicom), never half-written.

Every writer writes to a temporary name in the target folder and renames it into place, so a crash leaves
either no file or the complete one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from custom_nets.utils.files import write_atomically


def save_nifti(mask: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """A uint8 NIfTI mask with the source's affine (qform and sform)."""
    import nibabel as nib

    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return write_atomically(path, lambda tmp: nib.save(img, tmp))


def save_png(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """A 0/255 PNG of an (X, Y) mask (written as rows x columns, like the source image)."""
    from PIL import Image

    image = Image.fromarray((mask.T > 0).astype(np.uint8) * 255)
    return write_atomically(path, lambda tmp: image.save(tmp, format="PNG"))


def save_dicom_seg(mask: np.ndarray, source_datasets: Sequence, path: str | os.PathLike, algorithm: str,
                   version: str, segment_label: str = "lesion") -> Path:
    """A binary DICOM SEG referencing ``source_datasets`` (in the mask's slice order).

    Args:
        mask: (X, Y, Z) for a series whose z-th slice is ``source_datasets[z]``, or (X, Y) for one image.
        algorithm: the algorithm's name in the SEG's algorithm identification (the bundle).
        version: the bundle version.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    frames = mask[..., None] if mask.ndim == 2 else mask
    if frames.shape[2] != len(source_datasets):
        raise ValueError(f"{frames.shape[2]} mask slices for {len(source_datasets)} source images")
    pixel_array = np.stack([frames[:, :, k].T for k in range(frames.shape[2])]).astype(bool)  # (frames, rows, cols)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=f"textseg-bundles {algorithm}", version=version, family=codes.cid7162.ArtificialIntelligence),
    )
    source_datasets = list(source_datasets)
    if mask.ndim == 2 and "PixelSpacing" in source_datasets[0]:
        # a projection radiograph has no slice thickness; highdicom would copy its PixelSpacing into a Pixel
        # Measures group without one, which highdicom's own reader then refuses. The SEG is pixel-aligned with
        # its source, which keeps the spacing; nothing is invented for it
        source = copy.deepcopy(source_datasets[0])
        del source.PixelSpacing
        source_datasets = [source]
    seg = hd.seg.Segmentation(
        source_images=list(source_datasets),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="textseg-bundles",
        manufacturer_model_name=algorithm,
        software_versions=version,
        device_serial_number="0",
        series_description=f"{algorithm} text-guided segmentation",  # passed on to highdicom's SOPClass
        omit_empty_frames=False,
    )
    return write_atomically(path, lambda tmp: seg.save_as(tmp))

