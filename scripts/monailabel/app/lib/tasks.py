"""MONAI Label's stock bundle tasks, with every request value checked before the bundle config sees it.

The stock ``BundleInferTask`` copies the request's values of ``displayable_configs`` (our ``prompt`` and CT window)
and its ``device`` into the bundle config and re-parses it; ``BundleTrainTask`` does the same with
``max_epochs``, ``device``, ``run_id`` and the displayable options, and both load ``model_filename`` from a path
joined with the request's value. MONAI's ConfigParser evaluates ``$...``, resolves ``@...``/``%...`` and
instantiates ``_target_``, so a client could otherwise run code on the server. These subclasses pass the request
through :mod:`custom_nets.serving` first: each such value becomes a literal of the expected type or the request
is answered with HTTP 422 naming the key, and nothing runs.
"""

from __future__ import annotations

import glob
import logging
import os

from fastapi import HTTPException
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import device_list

from custom_nets.serving import RequestError, clean_infer_request, clean_train_request

logger = logging.getLogger(__name__)


def _devices() -> list[str]:
    """What a client may name: MONAI Label's device list (GPU names), and cpu / cuda / cuda:N."""
    import torch

    return ["cpu", "cuda", *[f"cuda:{i}" for i in range(torch.cuda.device_count())], *device_list()]


def _model_files(bundle_path: str) -> list[str]:
    """The checkpoints the bundle offers (``models/*.pt``): the only names ``model_filename`` may take."""
    return [os.path.basename(p) for p in glob.glob(os.path.join(bundle_path, "models", "*.pt"))]


def _refuse(error: RequestError) -> HTTPException:
    logger.warning(f"request refused: {error}")
    return HTTPException(status_code=422, detail=str(error))


class TextBundleInferTask(BundleInferTask):
    """``BundleInferTask`` whose request values (prompt, CT window, device, model file) are checked literals."""

    def __call__(self, request, callbacks=None):
        displayable = getattr(self, "displayable_configs", {}) or {}
        try:
            request = clean_infer_request(request, displayable, _model_files(self.bundle_path), _devices())
        except RequestError as e:
            raise _refuse(e) from None
        return super().__call__(request, callbacks)


class TextBundleTrainTask(BundleTrainTask):
    """``BundleTrainTask`` whose request values (epochs, split, run id, device, model file, options) are checked."""

    def __call__(self, request, datastore):
        displayable = {}
        for key in self.const.key_displayable_configs():
            if self.bundle_config.get(key):
                displayable.update(self.bundle_config.get_parsed_content(key, instantiate=True))
        try:
            request = clean_train_request(request, displayable, _model_files(self.bundle_path), _devices())
        except RequestError as e:
            raise _refuse(e) from None
        return super().__call__(request, datastore)
