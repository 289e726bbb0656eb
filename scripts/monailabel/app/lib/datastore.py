"""MONAI Label's datastores as the app uses them.

*Local studies folder*: the names a client gives (image ids, label tags) are checked to be no paths.

The stock ``LocalDatastore`` joins a client's image id and label tag into file paths (``labels/<tag>/<id><ext>``),
so an upload with ``tag=../../elsewhere`` (or an inference request with ``save_label`` and such a ``label_tag``)
would write outside the studies folder. Each name is checked by :func:`custom_nets.serving.safe_name` first.

*A PACS over DICOMweb*: MONAI Label's ``DICOMWebDatastore``, with the same checks, made by :func:`dicomweb_datastore`
(no dcmqi download; final labels stored back as DICOM SEG written by pydicom-seg).
"""

from __future__ import annotations

import functools

import monailabel.datastore.dicom as dicomweb
from dicomweb_client.session_utils import create_session_from_user_pass
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import nifti_to_dicom_seg

from custom_nets.serving import RequestError, safe_name


def _checked(key: str, value):
    try:
        return safe_name(key, value)
    except RequestError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


class NameChecks:
    """Checks the names a client gives before the datastore below it in the MRO joins them into paths."""

    def add_image(self, image_id, image_filename, image_info):
        if image_id:
            _checked("image", image_id)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id, label_filename, label_tag, label_info, *args, **kwargs):
        return super().save_label(_checked("image", image_id), label_filename, _checked("tag", label_tag), label_info,
                                  *args, **kwargs)

    def remove_label(self, label_id, label_tag):
        return super().remove_label(_checked("label", label_id), _checked("tag", label_tag))

    def remove_image(self, image_id):
        return super().remove_image(_checked("image", image_id))


class CheckedLocalDatastore(NameChecks, LocalDatastore):
    pass


class CheckedDICOMWebDatastore(NameChecks, DICOMWebDatastore):
    pass


def dicomweb_datastore(url: str) -> CheckedDICOMWebDatastore:
    """MONAI Label's DICOMweb datastore as its stock app makes it (basic auth from MONAI Label's settings,
    ``MONAI_LABEL_DICOMWEB_USERNAME``/``_PASSWORD``; search filter, cache path and NIfTI conversion from
    theirs), with names checked and without dcmqi: the stock app downloads dcmqi's binaries from GitHub at start,
    which an offline hospital server cannot, and final labels become DICOM SEG by pydicom-seg instead
    (MONAI Label's own ``use_itk=False`` path)."""
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD)
    client = DICOMwebClientX(url=url, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                             wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX, stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
    dicomweb.nifti_to_dicom_seg = functools.partial(nifti_to_dicom_seg, use_itk=False)  # what save_label calls
    cache_path = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    return CheckedDICOMWebDatastore(client=client, search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
                                    cache_path=cache_path or None, fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                    convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI)
