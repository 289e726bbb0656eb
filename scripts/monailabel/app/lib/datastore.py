"""MONAI Label's local datastore, with the names a client gives (image ids, label tags) checked to be no paths.

The stock ``LocalDatastore`` joins a client's image id and label tag into file paths (``labels/<tag>/<id><ext>``),
so an upload with ``tag=../../elsewhere`` (or an inference request with ``save_label`` and such a ``label_tag``)
would write outside the studies folder. Each name is checked by :func:`custom_nets.serving.safe_name` first.
"""

from __future__ import annotations

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore

from custom_nets.serving import RequestError, safe_name


def _checked(key: str, value):
    try:
        return safe_name(key, value)
    except RequestError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


class CheckedLocalDatastore(LocalDatastore):
    def add_image(self, image_id, image_filename, image_info):
        if image_id:
            _checked("image", image_id)
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id, label_filename, label_tag, label_info):
        return super().save_label(_checked("image", image_id), label_filename, _checked("tag", label_tag), label_info)

    def remove_label(self, label_id, label_tag):
        return super().remove_label(_checked("label", label_id), _checked("tag", label_tag))

    def remove_image(self, image_id):
        return super().remove_image(_checked("image", image_id))
