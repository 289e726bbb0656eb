"""textseg-bundles' MONAI Label app: the stock ``monaibundle`` app's bundles, served with checked requests.

Started by ``scripts/monailabel/serve.sh``, which copies this folder to ``runs/monailabel/apps/textseg`` and places
the trained bundles in its ``model/`` folder (``scripts/monailabel/prepare_app.py``). Each bundle named by
``--conf models a,b`` gets a :class:`lib.tasks.TextBundleInferTask` and (unless ``--conf skip_trainers true``) a
:class:`lib.tasks.TextBundleTrainTask`: MONAI Label's own bundle tasks, with every request value checked before
the bundle config sees it, and a :class:`lib.datastore.CheckedLocalDatastore`, which refuses image ids and label
tags that are paths (see ``docs/monailabel.md``); with ``--studies http(s)://.../dicom-web`` a PACS is the datastore
(:func:`lib.datastore.dicomweb_datastore`, the same checks). No model zoo, SAM or scoring: nothing is fetched.
"""

from __future__ import annotations

import logging
import os

import monailabel
from lib.datastore import CheckedLocalDatastore, dicomweb_datastore
from lib.tasks import TextBundleInferTask, TextBundleTrainTask
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

logger = logging.getLogger(__name__)


class TextSegApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        model_dir = os.path.join(app_dir, "model")
        names = [m.strip() for m in conf.get("models", "").split(",") if m.strip()]
        missing = [n for n in names if not os.path.isdir(os.path.join(model_dir, n))]
        if not names or missing:
            raise ValueError(f"--conf models must name bundles placed in {model_dir} (scripts/monailabel/prepare_app.py); "
                             f"got {conf.get('models')!r}, not found: {missing}")
        self.models = {n: os.path.join(model_dir, n) for n in names}
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="textseg-bundles",
                         description="Text-guided segmentation bundles; the report sentence is the model's prompt",
                         version=monailabel.__version__)

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")) and settings.MONAI_LABEL_DATASTORE.lower() not in ("xnat", "dsa"):
            # a PACS over DICOMweb (e.g. Orthanc's http://host:8042/dicom-web); image ids are its SeriesInstanceUIDs
            return dicomweb_datastore(self.studies)
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()  # XNAT, DSA: MONAI Label's own
        return CheckedLocalDatastore(self.studies, extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                                     auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                     read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def _tasks(self, task_class) -> dict:
        """One task of ``task_class`` per placed bundle, the valid ones."""
        tasks = {}
        for name, path in self.models.items():
            task = task_class(path, self.conf)
            if task.is_valid():
                logger.info(f"+++ Adding {task_class.__name__}:: {name} => {path}")
                tasks[name] = task
        return tasks

    def init_infers(self):
        return self._tasks(TextBundleInferTask)

    def init_trainers(self):
        return {} if strtobool(self.conf.get("skip_trainers", "false")) else self._tasks(TextBundleTrainTask)

    def init_strategies(self):
        return {"random": Random(), "first": First()}
