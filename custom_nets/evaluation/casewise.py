"""A trained bundle run over a datalist split with any sentences, and the per-case figures of its masks.

:class:`TrainedBundle` builds the network, the text encoder and the load transforms from the bundle's own
config (as ``evaluate.json`` does) and loads a checkpoint; :meth:`TrainedBundle.predict` gives, per case, the
image, the true mask and the predicted mask at the network's size (sigmoid > 0.5, as the bundles' post
transforms). :func:`case_metrics` gives Dice, IoU, HD95, ASSD (MONAI's metrics, per image) and the text-mask
consistency checks. The robustness tests (``scripts/text_sensitivity.py``) and the report (``scripts/report.py``)
both stand on these two.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, SurfaceDistanceMetric
from monai.transforms import Compose

from custom_nets.bundle import bundle_dir, load_config, weights_from_checkpoint
from custom_nets.metrics import mask_findings
from custom_nets.text.constraints import SentenceConstraints, parse_constraints


@dataclass
class CasePrediction:
    """One case at the network's size; arrays 2D, axis 0 = columns (as MONAI reads a picture)."""

    image: np.ndarray  # float, channels averaged
    label: np.ndarray  # bool
    pred: np.ndarray  # bool
    text: str | None


class TrainedBundle:
    """A bundle's network with a trained checkpoint, its text encoder (None for an image-only bundle) and its
    load transforms, built from ``configs/train.json`` and ``configs``.

    Args:
        bundle: a bundle name under ``bundles/`` or a bundle folder.
        configs: override files merged on ``train.json`` (e.g. ``["demo.json"]``).
        bundle_root: where ``models/model.pt`` is (default: the bundle's folder).
        checkpoint: the checkpoint path (default: ``<bundle_root>/models/model.pt``).
        overrides: config values to set (e.g. ``{"variant": "authors_code"}``), as ``--key value`` would.

    Raises:
        FileNotFoundError: the bundle, a config file or the checkpoint is missing (named in the message).
        ValueError: the checkpoint does not fit the network the configs build.
    """

    def __init__(self, bundle: str | os.PathLike, configs: Sequence[str] = (), bundle_root: str | os.PathLike | None = None,
                 checkpoint: str | os.PathLike | None = None, overrides: dict | None = None) -> None:
        parser = weights_from_checkpoint(load_config(bundle, *configs))
        for key, value in (overrides or {}).items():
            parser[key] = value
        self.name = Path(bundle).name
        self.checkpoint = Path(checkpoint or Path(bundle_root or bundle_dir(bundle, "train.json")) / "models" / "model.pt")
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"no checkpoint at {self.checkpoint} (train the bundle first, or give its bundle root)")
        self.device = parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network_def").to(self.device).eval()
        try:
            self.network.load_state_dict(torch.load(self.checkpoint, map_location=self.device, weights_only=True))
        except RuntimeError as e:  # another bundle's, or another variant's, checkpoint
            first = str(e).splitlines()[0]
            raise ValueError(f"checkpoint {self.checkpoint} does not fit the network that {self.name} builds from "
                             f"train.json + {list(configs)}: {first} (was it trained with other configs?)") from None
        self.encoder = parser.get_parsed_content("text_encoder") if parser.get("text_encoder") else None
        self.transform = Compose(parser.get_parsed_content("load_transforms"))
        self.parser = parser
        self.seconds_per_image = math.nan  # of the last predict(): network and text encoding, no data loading

    @property
    def reads_text(self) -> bool:
        return self.encoder is not None

    def predict(self, items: Sequence[dict], texts: Sequence[str | None] | None = None,
                batch_size: int | None = None) -> list[CasePrediction]:
        """The masks of ``items`` (datalist entries with absolute paths), each with ``texts[i]`` as its sentence
        (default: the item's own ``text``), in batches of the config's ``batch_size`` (as its evaluator runs:
        a different batch size can flip a boundary pixel through floating-point sums)."""
        batch_size = batch_size or int(self.parser.get_parsed_content("batch_size"))
        texts = [item.get("text") for item in items] if texts is None else list(texts)
        data = [{**item, "text": t if t is not None else ""} for item, t in zip(items, texts)]
        loader = DataLoader(Dataset(data, self.transform), batch_size=batch_size, shuffle=False, num_workers=0)
        out, busy = [], 0.0
        with torch.no_grad():
            for batch in loader:
                image = batch["image"].to(self.device)
                t0 = time.perf_counter()
                kwargs = {}
                if self.encoder is not None:
                    hidden, mask = self.encoder(list(batch["text"]))
                    kwargs = {"text_hidden": hidden.to(self.device), "text_mask": mask.to(self.device)}
                pred = torch.sigmoid(self.network(image, **kwargs)) > 0.5
                busy += time.perf_counter() - t0
                for i in range(len(image)):
                    out.append(CasePrediction(image[i].float().mean(0).cpu().numpy(), batch["label"][i, 0].cpu().numpy() > 0,
                                              pred[i, 0].cpu().numpy(), batch["text"][i] or None))
        self.seconds_per_image = busy / max(len(out), 1)
        return out


_METRICS = {
    "dice": DiceMetric(include_background=True, reduction="none", ignore_empty=True),
    "iou": MeanIoU(include_background=True, reduction="none", ignore_empty=True),
    "hd95": HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none"),
    "assd": SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none"),
}


def case_metrics(case: CasePrediction, constraints: SentenceConstraints | None = None) -> dict[str, float]:
    """Dice, IoU, HD95, ASSD (pixels at the network's size; NaN where the truth is empty; where the prediction is
    empty, what MONAI's metrics give, as in the bundles' evaluations: HD95 NaN, ASSD inf) and the consistency
    checks of one case against ``constraints`` (default: those of the case's own sentence)."""
    pred = torch.as_tensor(case.pred[None, None], dtype=torch.float32)
    label = torch.as_tensor(case.label[None, None], dtype=torch.float32)
    values = {}
    for name, metric in _METRICS.items():
        if not case.label.any():
            values[name] = math.nan  # skipped, as the evaluators' EmptyAwareMetric skips it
            continue
        with warnings.catch_warnings():  # an empty prediction: MONAI warns, HD95 is NaN (skipped), ASSD inf
            warnings.simplefilter("ignore")
            values[name] = float(metric(pred, label).flatten()[0])
        metric.reset()
    findings = mask_findings(case.pred, constraints if constraints is not None else parse_constraints(case.text), case.image)
    return values | findings.checks | {"tp": float((case.pred & case.label).sum()), "fp": float((case.pred & ~case.label).sum()),
                                       "fn": float((~case.pred & case.label).sum())}


def pooled(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Dice and IoU over all pixels of the set (from the rows' tp/fp/fn), as ``dice_pooled``/``iou_pooled``."""
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return {"dice_pooled": 2 * tp / max(2 * tp + fp + fn, 1), "iou_pooled": tp / max(tp + fp + fn, 1)}


def nanmean(values: Sequence[float]) -> float:
    """Mean over the values that are not NaN; NaN when none is left."""
    kept = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(kept)) if kept else math.nan
