"""Per-image metrics that say how many images they count, and skip those whose ground truth is empty.

MONAI's per-image metrics disagree on an image with an empty ground truth: ``DiceMetric`` and ``MeanIoU``
(``ignore_empty``) and ``HausdorffDistanceMetric`` give NaN, ``SurfaceDistanceMetric`` gives inf when the
prediction is not empty. Their ``"mean"`` reduction skips NaN (``do_metric_reduction``) but returns 0.0 when
no image is left, so a split whose masks are all empty evaluated to "Dice 0.0, HD95 0.0, ASSD inf".
:class:`EmptyAwareMetric` wraps any of them as an Ignite metric handler: an image with an empty ground truth
is NaN in every metric (and in the per-image details), the value is the NaN-aware mean over the other images
(NaN when none is left, with a warning), and ``<name>_counted`` (images averaged) and ``<name>_empty_gt``
(images skipped because their ground truth is empty) go into ``engine.state.metrics`` beside it, so
``StatsHandler`` logs them and ``MetricsSaver`` writes them to ``metrics.csv``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from ignite.exceptions import NotComputableError
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import IgniteMetricHandler
from monai.metrics import Cumulative, CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction

logger = logging.getLogger(__name__)


class _CaseFlags(Cumulative):
    """A cumulative buffer of per-image flags, gathered across ranks like a metric's own buffer."""

    def aggregate(self) -> torch.Tensor | None:
        return self.get_buffer()


def empty_ground_truth(y: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, C) booleans: True where channel c of image b has no foreground; ``y`` batch-first or a list of
    channel-first images."""
    return torch.stack([~(torch.as_tensor(yy) != 0).reshape(yy.shape[0], -1).any(dim=1) for yy in y])


class EmptyAwareMetric(IgniteMetricHandler):
    """An Ignite metric handler for a MONAI per-image metric that skips images with an empty ground truth and
    counts what it averaged (see the module docstring).

    Args:
        metric_fn: a MONAI ``CumulativeIterationMetric`` giving one value per image and channel, e.g.
            ``DiceMetric``, ``MeanIoU``, ``HausdorffDistanceMetric``, ``SurfaceDistanceMetric``. Its reduction is
            not used: the value is ``do_metric_reduction(..., "mean")`` over the images with a ground truth.
        output_transform: gives ``(y_pred, y)`` from the engine's output, as in MONAI's handlers.
        save_details: put the per-image values (NaN for the skipped images) in ``engine.state.metric_details``
            (what ``MetricsSaver`` writes to ``<name>_raw.csv``).

    Example (config)::

        "val_mean_dice": {"_target_": "custom_nets.engines.EmptyAwareMetric",
                          "metric_fn": {"_target_": "DiceMetric", "include_background": true},
                          "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}
    """

    def __init__(
        self,
        metric_fn: CumulativeIterationMetric,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        self._empty = _CaseFlags()
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    @reinit__is_reduced
    def reset(self) -> None:
        super().reset()
        self._empty.reset()

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        super().update(output)
        empty = empty_ground_truth(output[1])
        if not getattr(self.metric_fn, "include_background", True):
            empty = empty[:, 1:]
        self._empty.extend(empty.to(torch.uint8))  # bytes: every distributed backend gathers them

    def compute(self) -> float:
        values = self.metric_fn.get_buffer()
        if values is None:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        values = values.float().reshape(values.shape[0], -1).clone()
        empty = self._empty.get_buffer().to(values.device).bool().reshape(values.shape)
        values[empty] = torch.nan
        mean, counted = do_metric_reduction(values.clone(), "mean")  # NaN-aware, channels then images; zeroes NaN in place
        counted = int(counted.item())
        value = float(mean.item()) if counted else math.nan
        n_empty = int(empty.all(dim=1).sum().item())
        self._is_reduced = True
        if self._engine is None or self._name is None:
            raise RuntimeError("please call the attach() function to connect expected engine first.")
        if counted == 0:
            logger.warning(f"{self._name}: none of the {values.shape[0]} image(s) has a value to average ({n_empty} with "
                           "an empty ground truth); the metric is NaN")
        metrics = self._engine.state.metrics
        metrics[self._name] = value  # first, so that the counts follow it in logs and metrics.csv
        metrics[f"{self._name}_counted"] = counted
        metrics[f"{self._name}_empty_gt"] = n_empty
        if self.save_details:
            self._engine.state.metric_details[self._name] = values
        return value
