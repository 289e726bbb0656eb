"""Images in the orientation the 2D networks learned, whatever orientation they are stored in.

The networks learn from radiographs displayed the radiological way: the patient's left on the image's right,
so (as MONAI indexes a 2D image, first axis = column) the first axis runs toward the patient's left. An axial CT
slice is displayed the same way, with rows running toward the patient's back. So every volume goes to the
network with its axes toward Left, Posterior, Superior (axis codes ``LPS``, as nibabel and MONAI write them: the
direction each axis increases toward), is segmented slice by slice along the last axis, and the mask is mapped
back exactly onto the source's grid; MONAI's ``Orientation`` does both ways (axes flipped and permuted, nothing
interpolated). A volume whose axes are oblique to the patient's, or whose axial pixels would not be square (a
sagittal or coronal stack of thick slices), is refused with the reason.

A DICOM radiograph says how it is displayed in ``PatientOrientation``: the patient direction of its rows
(toward increasing column) and of its columns (toward increasing row); a frontal chest film displayed as
trained is ``L\\F``. :func:`radiograph_to_network` flips or transposes other frontal displays (``R\\F``: mirrored,
``L\\H``: upside down, ``F\\L``: rotated) to it, and refuses lateral or oblique projections.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Orientationd

#: the axis codes the networks see: columns toward the patient's Left, rows toward Posterior, slices toward Superior
NETWORK_AXCODES = "LPS"
#: RAS world labels (nibabel's and MONAI's NIfTI convention), stated rather than taken from the image's metadata
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
#: largest angle (degrees) between a voxel axis and the patient axis it is taken for
MAX_OBLIQUITY_DEGREES = 3.0
#: largest ratio of the two in-plane spacings of an axial slice (the networks saw square pixels)
MAX_PIXEL_ASPECT = 1.25
#: how a frontal chest radiograph is displayed when the networks see it: (rows toward, columns toward)
RADIOGRAPH_CONVENTION = ("L", "F")


def check_volume_geometry(affine: np.ndarray, source: str = "volume") -> None:
    """Raise ValueError (naming ``source``) for a volume the networks cannot read slice by slice after reorientation:
    voxel axes more than :data:`MAX_OBLIQUITY_DEGREES` off the patient's axes, or axial pixels whose sides differ by
    more than :data:`MAX_PIXEL_ASPECT` (e.g. sagittal slices 5 mm apart).

    Example:
        >>> check_volume_geometry(np.diag([0.7, 0.7, 2.5, 1.0]))  # axial, any flips: fine
        >>> sagittal = np.array([[0, 0, 5.0, 0], [0.7, 0, 0, 0], [0, 0.7, 0, 0], [0, 0, 0, 1]])  # slices along x
        >>> check_volume_geometry(sagittal, "sag.nii.gz")
        Traceback (most recent call last):
        ...
        ValueError: sag.nii.gz: its axial slices would have 0.70 x 5.00 mm pixels (its stored slices are sagittal, 5.00 mm apart); the networks read axial slices with square pixels (within 1.25x): resample it to axial slices first
    """
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if not np.all(spacing > 0) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"{source}: its affine has a zero or non-finite voxel size: {spacing.tolist()}")
    directions = matrix / spacing
    nearest = np.abs(directions).argmax(axis=0)  # the patient axis (x, y, z) each voxel axis runs along
    angles = np.degrees(np.arccos(np.clip(np.abs(directions).max(axis=0), 0.0, 1.0)))
    if len(set(nearest.tolist())) < 3 or angles.max() > MAX_OBLIQUITY_DEGREES:
        raise ValueError(f"{source}: its voxel axes are {angles.max():.1f} degrees off the patient's axes (an oblique "
                         f"volume; at most {MAX_OBLIQUITY_DEGREES:g} are taken as aligned); the networks read axial "
                         "slices: resample it to an axial grid first")
    slice_axis = int(np.nonzero(nearest == 2)[0][0])  # the stored axis that runs head to foot
    in_plane = np.delete(spacing, slice_axis)
    if in_plane.max() / in_plane.min() > MAX_PIXEL_ASPECT:
        plane = ("sagittal", "coronal", "axial")[int(nearest[2])]  # where the stored slice axis runs
        raise ValueError(f"{source}: its axial slices would have {in_plane.min():.2f} x {in_plane.max():.2f} mm pixels "
                         f"(its stored slices are {plane}, {spacing[2]:.2f} mm apart); the networks read axial "
                         f"slices with square pixels (within {MAX_PIXEL_ASPECT:g}x): resample it to axial slices first")


class NetworkOrientationd(Orientationd):
    """MONAI's ``Orientationd`` to the networks' axis codes (:data:`NETWORK_AXCODES`), refusing what cannot be read
    slice by slice (:func:`check_volume_geometry`). Invertible: ``Invertd`` maps a prediction back onto the source grid.

    Args:
        keys: the volume keys (channel first, with an affine in their metadata).
        allow_missing_keys: as in MONAI.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, axcodes=NETWORK_AXCODES, labels=RAS_LABELS, allow_missing_keys=allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object], lazy: bool | None = None) -> dict:
        for key in self.key_iterator(dict(data)):
            image = data[key]
            meta = getattr(image, "meta", {})
            check_volume_geometry(np.asarray(getattr(image, "affine")), str(meta.get("filename_or_obj", key)))
        return super().__call__(data, lazy=lazy)


def radiograph_to_network(array: np.ndarray, patient_orientation: Sequence[str] | None,
                          source: str = "radiograph") -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A radiograph ``(X, Y)`` (first axis = column) as the networks saw radiographs, and the function that maps a
    mask of that back onto the stored pixels.

    Args:
        array: the stored image, first axis = column.
        patient_orientation: DICOM ``PatientOrientation`` (row direction, column direction), e.g. ``["R", "F"]``;
            None or empty: the image is taken as displayed the trained way.
        source: named in errors.

    Example:
        >>> image = np.arange(6).reshape(3, 2)
        >>> seen, back = radiograph_to_network(image, ["R", "F"])  # mirrored: flipped left-right
        >>> seen.tolist(), bool((back(seen) == image).all())
        ([[4, 5], [2, 3], [0, 1]], True)
    """
    codes = [str(v).strip().upper() for v in (patient_orientation or []) if str(v).strip()]
    if not codes:
        return array, lambda mask: mask
    if len(codes) != 2 or any(len(c) != 1 or c not in "LRHF" for c in codes) or {codes[0] in "LR", codes[1] in "LR"} != {True, False}:
        shown = "\\".join(codes)
        raise ValueError(f"{source}: PatientOrientation {shown} is not a frontal projection (rows and columns "
                         "toward left/right and head/feet); the networks read frontal chest radiographs")
    transpose = codes[0] in "HF"  # rows run head-feet: the image is turned a quarter
    if transpose:
        array, codes = array.T, codes[::-1]
    flips = tuple(axis for axis, (code, want) in enumerate(zip(codes, RADIOGRAPH_CONVENTION)) if code != want)
    seen = np.flip(array, flips) if flips else array

    def back(mask: np.ndarray) -> np.ndarray:
        mask = np.flip(mask, flips) if flips else mask
        return mask.T if transpose else mask

    return np.ascontiguousarray(seen), back
