"""Text-mask consistency: does a mask obey what its sentence says (count, side, zones)?

Dice says how well a mask overlaps the truth; it does not say whether the mask follows the sentence, which is
what a text-guided network is for. Each case gets, for every constraint its sentence states
(:func:`custom_nets.text.constraints.parse_constraints`):

- ``count_ok``: the mask's connected components (4-connected, each at least ``min_size`` of the image area)
  number as many as the sentence says;
- ``side_ok``: the patient's sides that hold a lesion are the sides said ("bilateral" = both, "unilateral" = one
  of them, "left lung" = that one). A lesion (a component) holds a side when at least ``min_share`` of it, and
  ``min_size`` of the image area, lie on it: a lesion's rim over the midline does not count, a small lesion of
  its own does;
- ``zone_ok``: the (level, side) zones that hold a lesion, by the same rule, are the zones named;
- ``all_ok``: every stated constraint holds.

A constraint the sentence does not state is NaN, never a pass; a sentence that states none is counted as
``unparsed``. Rates are taken over the cases that state the constraint.

Geometry (2D, as MONAI reads a radiograph: spatial axis 0 = columns, axis 1 = rows top to bottom). The patient's
left is on the image's right (``patient_left_on_image_right``: radiographs in the standard display, axial CT in
the radiological convention). Sides split at the midline between the two lung fields; levels are thirds of the height of the lung field on
that side. The lung fields are estimated from the image (:func:`lung_fields`): the body is what an Otsu
threshold keeps brighter than the air around it, the lungs the two largest dark regions inside it (a second Otsu
threshold), their holes (opacities) filled. Where that fails (no image, not two dark fields) the body's box
stands for both lungs, and without a body the whole image; ``extent_source`` says which, per case.

Limits: the zones are thirds of the lung fields' height, not anatomical zones; lesions that touch count as one
component; two lesions in one zone count as one zone; an axial CT slice has no upper/middle/lower (give the
slice's ``zone_ok`` no weight, or evaluate zones on radiographs only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric
from scipy import ndimage

from custom_nets.text.constraints import SentenceConstraints, parse_constraints
from custom_nets.text.prompts import LEVELS

CHECKS = ("count_ok", "side_ok", "zone_ok", "all_ok")


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of a 1D array (256 bins)."""
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (mean0 - mean1) ** 2)])


def _box(region: np.ndarray) -> tuple[int, int, int, int]:
    """``(col0, col1, row0, row1)``: the box of a 2D region (axis 0 = columns), ends exclusive."""
    cols, rows = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    return int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1


def _span_fill(region: np.ndarray) -> np.ndarray:
    """``region`` with every row and every column filled between its first and last pixel, holes filled: the
    body from its bright tissue, even where a dark lung reaches the body's outline."""
    filled = np.zeros_like(region)
    for axis in (0, 1):
        n = region.shape[axis]
        first = region.argmax(axis=axis)
        last = n - 1 - np.flip(region, axis=axis).argmax(axis=axis)
        index = np.arange(n).reshape((-1, 1) if axis == 0 else (1, -1))
        filled |= (index >= np.expand_dims(first, axis)) & (index <= np.expand_dims(last, axis)) & region.any(axis=axis, keepdims=True)
    return ndimage.binary_fill_holes(filled)


@dataclass(frozen=True)
class LungFields:
    """Where the lung fields lie in a 2D image (axis 0 = columns): the column of the midline, the rows
    ``[top, bottom)`` of the field on each half of the image ("image_left", "image_right"), and the source of
    the estimate: "lungs", "body" or "image"."""

    midline: float
    rows: dict[str, tuple[int, int]]
    source: str


def lung_fields(image: np.ndarray | None, shape: tuple[int, int]) -> LungFields:
    """Estimate the lung fields of a 2D image (axis 0 = columns): the body is the largest region brighter than
    Otsu's threshold, its rows and columns filled (:func:`_span_fill`); the lungs are the two largest dark
    regions inside it (a second Otsu threshold over the body), their holes (opacities) filled. With fewer than
    two lung fields the body's box stands for both, and without a body the whole image."""

    def whole(box: tuple[int, int, int, int], source: str) -> LungFields:
        c0, c1, r0, r1 = box
        return LungFields((c0 + c1) / 2, {"image_left": (r0, r1), "image_right": (r0, r1)}, source)

    if image is None or image.size == 0 or not np.isfinite(image).all() or image.max() <= image.min():
        return whole((0, shape[0], 0, shape[1]), "image")
    labels, n = ndimage.label(image > _otsu(image.ravel()))
    if n == 0:
        return whole((0, shape[0], 0, shape[1]), "image")
    body = _span_fill(labels == (np.bincount(labels.ravel())[1:].argmax() + 1))
    inside = image[body]
    if inside.size < 0.05 * image.size:
        return whole((0, shape[0], 0, shape[1]), "image")
    dark = ndimage.binary_opening(ndimage.binary_fill_holes(body & (image < _otsu(inside))), iterations=2)
    labels, n = ndimage.label(dark)
    sizes = np.bincount(labels.ravel())[1:]
    fields = [labels == i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= 0.02 * body.sum()]
    if len(fields) < 2:  # one field is not enough to place a midline between two
        return whole(_box(body), "body")
    boxes = sorted((_box(f) for f in fields), key=lambda b: b[0] + b[1])  # image-left field first
    if boxes[0][1] > boxes[1][0]:  # side by side they are not: two pieces of one lung, say
        return whole(_box(body), "body")
    midline = (boxes[0][1] + boxes[1][0]) / 2
    return LungFields(midline, {"image_left": boxes[0][2:], "image_right": boxes[1][2:]}, "lungs")


@dataclass
class MaskFindings:
    """What a mask shows, in the sentence's terms, and the checks against the sentence's constraints."""

    components: int
    sides: set[str]
    zones: set[tuple[str, str]]
    extent_source: str
    checks: dict[str, float] = field(default_factory=dict)  # 1.0, 0.0 or NaN (not stated)

    def describe(self) -> str:
        zones = ", ".join(f"{lv} {s}" for lv, s in sorted(self.zones)) or "none"
        return f"{self.components} component(s); sides {'+'.join(sorted(self.sides)) or 'none'}; zones {zones}"


def mask_findings(
    mask: np.ndarray,
    constraints: SentenceConstraints,
    image: np.ndarray | None = None,
    min_size: float = 0.001,
    min_share: float = 0.2,
    patient_left_on_image_right: bool = True,
) -> MaskFindings:
    """Check one 2D mask (axis 0 = columns, axis 1 = rows) against a sentence's constraints; see the module
    docstring for the rules and :class:`TextMaskConsistencyMetric` for the arguments."""
    mask = np.asarray(mask) > 0
    if mask.ndim != 2:
        raise ValueError(f"the consistency metric checks 2D masks, got shape {mask.shape}")
    if image is not None and np.shape(image) != mask.shape:
        raise ValueError(f"the image ({np.shape(image)}) and the mask ({mask.shape}) of a case must have one shape")
    min_pixels = max(1, math.ceil(min_size * mask.size))
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    kept = [c for c in range(1, len(sizes)) if sizes[c] >= min_pixels]  # specks are no lesions

    fields = lung_fields(image, mask.shape)
    cols, rows = np.nonzero(mask)
    component = labels[cols, rows]
    image_right = cols >= fields.midline
    side_of = np.where(image_right == patient_left_on_image_right, "left", "right")
    top = np.where(image_right, fields.rows["image_right"][0], fields.rows["image_left"][0])
    bottom = np.where(image_right, fields.rows["image_right"][1], fields.rows["image_left"][1])
    level_of = np.asarray(LEVELS)[np.clip(((rows - top) / np.maximum(bottom - top, 1) * 3).astype(int), 0, 2)]

    # a lesion holds a side (zone) where at least min_share of it, and min_size of the image, lies there: its
    # rim spilling over a zone's edge does not count, a small lesion of its own does
    sides, zones = set(), set()
    for c in kept:
        here = component == c
        for s in ("left", "right"):
            on_side = here & (side_of == s)
            if on_side.sum() >= max(min_pixels, min_share * sizes[c]):
                sides.add(s)
            for lv in LEVELS:
                n = (on_side & (level_of == lv)).sum()
                if n >= max(min_pixels, min_share * sizes[c]):
                    zones.add((lv, s))
    components = len(kept)
    checks = {name: math.nan for name in CHECKS}
    if constraints.count is not None:
        checks["count_ok"] = float(components == constraints.count)
    if constraints.sides is not None:
        checks["side_ok"] = float(sides == set(constraints.sides))
    elif constraints.n_sides is not None:
        checks["side_ok"] = float(len(sides) == constraints.n_sides)
    if constraints.zones is not None:
        checks["zone_ok"] = float(zones == set(constraints.zones))
    stated = [v for k, v in checks.items() if k != "all_ok" and not math.isnan(v)]
    if stated:
        checks["all_ok"] = float(all(stated))
    return MaskFindings(components, sides, zones, fields.source, checks)


class TextMaskConsistencyMetric(CumulativeIterationMetric):
    """Text-mask consistency as a MONAI metric: per case ``count_ok``, ``side_ok``, ``zone_ok``, ``all_ok``
    (1, 0, or NaN where the sentence does not state it); :meth:`aggregate` gives their rates.

    Args:
        min_size: smallest component (and smallest part of one in a side or zone) that counts, as a fraction of
            the image area.
        min_share: smallest fraction of a component that must lie in a side or zone for it to hold that side or
            zone.
        patient_left_on_image_right: the display convention of the images (True for radiographs and axial CT
            in the radiological convention).

    Example:
        >>> import torch
        >>> mask = torch.zeros(1, 1, 64, 64); mask[0, 0, 40:50, 10:20] = 1  # image's right (axis 0), top
        >>> metric = TextMaskConsistencyMetric()
        >>> metric(mask, text=["Unilateral pulmonary infection, one infected area, upper left lung."]).tolist()
        [[1.0, 1.0, 1.0, 1.0]]
        >>> metric.aggregate()["all_ok"]
        1.0
    """

    def __init__(self, min_size: float = 0.001, min_share: float = 0.2, patient_left_on_image_right: bool = True) -> None:
        super().__init__()
        self.min_size, self.min_share, self.patient_left_on_image_right = min_size, min_share, patient_left_on_image_right

    def findings(self, mask: torch.Tensor, text: str | None, image: torch.Tensor | None = None) -> MaskFindings:
        """The findings of one channel-first 2D mask (C, X, Y) and its image (C, X, Y), channels averaged."""
        picture = None if image is None else torch.as_tensor(image).detach().float().mean(0).cpu().numpy()
        return mask_findings(torch.as_tensor(mask).detach()[0].cpu().numpy(), parse_constraints(text), picture,
                             self.min_size, self.min_share, self.patient_left_on_image_right)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, text: Sequence[str | None] = (),
                        image: torch.Tensor | None = None) -> torch.Tensor:
        if len(text) != len(y_pred):
            raise ValueError(f"the consistency metric needs one sentence per mask: {len(y_pred)} masks, {len(text)} sentences")
        rows = [[self.findings(y_pred[i], text[i], None if image is None else image[i]).checks[c] for c in CHECKS]
                for i in range(len(y_pred))]
        return torch.tensor(rows, dtype=torch.float32)

    def aggregate(self) -> dict[str, float]:
        """Rates of each check over the cases that state it, and how many cases were ``stated`` / ``unparsed``."""
        buffer = self.get_buffer()
        values = torch.empty(0, len(CHECKS)) if buffer is None else buffer.reshape(-1, len(CHECKS)).float().cpu()
        out = {}
        for j, name in enumerate(CHECKS):
            column = values[:, j][~torch.isnan(values[:, j])]
            out[name] = float(column.mean()) if len(column) else math.nan
        stated = int((~torch.isnan(values[:, CHECKS.index("all_ok")])).sum())
        return out | {"stated": stated, "unparsed": len(values) - stated}


def batch_sentences(batch) -> list[str | None] | None:
    """The sentences of an engine's batch: decollated (a list of dicts) or not (a dict of lists); None when the
    batch has none."""
    if isinstance(batch, dict):
        text = batch.get("text")
        return None if text is None else [text] if isinstance(text, str) else list(text)
    return [b.get("text") if isinstance(b, dict) else None for b in batch]


class TextConsistencyHandler(IgniteMetricHandler):
    """The consistency metric as an Ignite handler for MONAI's evaluators: the sentences come from the engine's
    batch, the masks (and images, for the lung fields) from its output.

    Under ``name`` it puts the ``all_ok`` rate of the predictions in ``engine.state.metrics``, and beside it
    ``<name>_count``, ``<name>_side``, ``<name>_zone`` (rates), ``<name>_stated`` and ``<name>_unparsed`` (cases);
    with ``check_ground_truth`` the same for the ground-truth masks as ``<name>_gt`` and ``<name>_gt_*`` (how far
    the metric itself agrees with the sentences). Per case, ``all_ok`` (NaN = nothing stated) goes to
    ``engine.state.metric_details`` under ``<name>`` and ``<name>_gt`` (what ``MetricsSaver`` writes to
    ``<name>_raw.csv``); :func:`mask_findings` gives the rest of a case.

    Args:
        output_transform: gives ``(masks, images)`` from the engine's output.
        label_transform: gives the ground-truth masks from the engine's output (with ``check_ground_truth``).
        text_transform: gives the sentences from the engine's batch (None where an item has no sentence);
            default :func:`batch_sentences`.
        check_ground_truth: also check the ground-truth masks.
        min_size, min_share, patient_left_on_image_right: as in :class:`TextMaskConsistencyMetric`.

    Example (config)::

        "consistency": {"_target_": "custom_nets.metrics.TextConsistencyHandler",
                        "output_transform": "$monai.handlers.from_engine(['pred', 'image'])"}
    """

    def __init__(
        self,
        output_transform: Callable = from_engine(["pred", "image"]),
        label_transform: Callable = from_engine("label"),
        text_transform: Callable | None = None,
        check_ground_truth: bool = True,
        min_size: float = 0.001,
        min_share: float = 0.2,
        patient_left_on_image_right: bool = True,
    ) -> None:
        options = dict(min_size=min_size, min_share=min_share, patient_left_on_image_right=patient_left_on_image_right)
        self.gt_metric = TextMaskConsistencyMetric(**options) if check_ground_truth else None
        self.label_transform, self.text_transform = label_transform, text_transform or batch_sentences
        super().__init__(metric_fn=TextMaskConsistencyMetric(**options), output_transform=output_transform,
                         save_details=True)

    @reinit__is_reduced
    def reset(self) -> None:
        super().reset()
        if self.gt_metric is not None:
            self.gt_metric.reset()

    def iteration_completed(self, engine) -> None:
        masks, images = self._output_transform(engine.state.output)
        texts = self.text_transform(engine.state.batch)
        texts = [None] * len(masks) if texts is None else list(texts)
        if len(texts) != len(masks):
            raise ValueError(f"{self._name}: {len(masks)} masks but {len(texts)} sentences in the batch")
        labels = self.label_transform(engine.state.output) if self.gt_metric is not None else None
        for i, (mask, image) in enumerate(zip(masks, images)):  # one at a time: sizes may differ between cases
            self.metric_fn(mask[None], text=[texts[i]], image=image[None])
            if labels is not None:
                self.gt_metric(labels[i][None], text=[texts[i]], image=image[None])

    def compute(self) -> float:
        if self._engine is None or self._name is None:
            raise RuntimeError("please call the attach() function to connect expected engine first.")
        metrics, details = self._engine.state.metrics, self._engine.state.metric_details
        value = math.nan
        for suffix, metric in (("", self.metric_fn), ("_gt", self.gt_metric)):
            if metric is None:
                continue
            rates = metric.aggregate()
            name = f"{self._name}{suffix}"
            metrics[name] = rates["all_ok"]
            for key in ("count", "side", "zone"):
                metrics[f"{name}_{key}"] = rates[f"{key}_ok"]
            metrics[f"{name}_stated"], metrics[f"{name}_unparsed"] = rates["stated"], rates["unparsed"]
            buffer = metric.get_buffer()
            if buffer is not None:  # per case: all_ok (1, 0, NaN when nothing is stated)
                j = CHECKS.index("all_ok")
                details[name] = buffer.reshape(-1, len(CHECKS))[:, j:j + 1]
            if not suffix:
                value = rates["all_ok"]
        self._is_reduced = True
        return value
