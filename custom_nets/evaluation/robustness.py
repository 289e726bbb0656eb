"""Does a trained bundle read the sentence, and does it read it robustly? Its masks under every rewrite of
:mod:`custom_nets.evaluation.perturbations`, each compared with the *true* mask (Dice) and with what the rewrite
means (consistency: the constraints of the true sentence for a meaning-preserving rewrite, of the new sentence
for a meaning-changing one).

A network that reads the text loses little under the first kind and much under the second; an image-only
network gives the same masks under every rewrite (it is run once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from custom_nets.evaluation.casewise import CasePrediction, TrainedBundle, case_metrics, nanmean
from custom_nets.evaluation.perturbations import CHANGING, KINDS, PRESERVING, perturb
from custom_nets.text.constraints import parse_constraints


@dataclass
class RewriteRow:
    """One rewrite over the cases it applies to."""

    kind: str
    group: str  # "clean", "preserving" or "changing"
    cases: int
    dice: float
    clean_dice: float  # the clean Dice of the same cases
    consistency: float  # all_ok rate against the rewrite's meaning
    example: str = ""

    @property
    def drop(self) -> float:
        return self.clean_dice - self.dice


@dataclass
class RobustnessResult:
    clean: list[CasePrediction]
    clean_metrics: list[dict[str, float]]
    rows: list[RewriteRow]
    dice: dict[str, list[float | None]] = field(default_factory=dict)  # per kind, per case (None: not applicable)
    seconds_per_image: float = float("nan")  # of the clean pass: network and text encoding, no data loading

    def row(self, kind: str) -> RewriteRow:
        return next(r for r in self.rows if r.kind == kind)


def text_robustness(model: TrainedBundle, items: Sequence[dict], seed: int = 0, kinds: Sequence[str] = KINDS,
                    batch_size: int | None = None) -> RobustnessResult:
    """Run ``model`` on ``items`` with their true sentences and with each rewrite in ``kinds``."""
    clean = model.predict(items, batch_size=batch_size)
    seconds = model.seconds_per_image
    clean_metrics = [case_metrics(c) for c in clean]
    rows = [RewriteRow("clean", "clean", len(items), nanmean([m["dice"] for m in clean_metrics]),
                       nanmean([m["dice"] for m in clean_metrics]), nanmean([m["all_ok"] for m in clean_metrics]),
                       items[0].get("text", "") if items else "")]
    result = RobustnessResult(clean, clean_metrics, rows, {"clean": [m["dice"] for m in clean_metrics]}, seconds)
    for kind in kinds:
        rewritten = [perturb(item["text"], kind, seed + i, item.get("distractor_zones")) if item.get("text") else None
                     for i, item in enumerate(items)]
        keep = [i for i, t in enumerate(rewritten) if t is not None]
        group = "preserving" if kind in PRESERVING else "changing"
        if not keep:
            rows.append(RewriteRow(kind, group, 0, float("nan"), float("nan"), float("nan")))
            result.dice[kind] = [None] * len(items)
            continue
        if model.reads_text:
            preds = model.predict([items[i] for i in keep], [rewritten[i] for i in keep], batch_size=batch_size)
        else:  # the sentence is not read: the masks are the clean ones
            preds = [clean[i] for i in keep]
        metrics = []
        for i, pred in zip(keep, preds):
            meaning = parse_constraints(items[i]["text"] if kind in PRESERVING else rewritten[i])
            metrics.append(case_metrics(pred, meaning))
        result.dice[kind] = [None] * len(items)
        for i, m in zip(keep, metrics):
            result.dice[kind][i] = m["dice"]
        rows.append(RewriteRow(kind, group, len(keep), nanmean([m["dice"] for m in metrics]),
                               nanmean([clean_metrics[i]["dice"] for i in keep]), nanmean([m["all_ok"] for m in metrics]),
                               rewritten[keep[0]]))
    return result


def format_table(result: RobustnessResult) -> list[str]:
    """The rows as printed by ``scripts/text_sensitivity.py`` and ``scripts/demo.py``."""
    lines = [f"{'rewrite':<17}{'meaning':<12}{'cases':>6}{'Dice':>9}{'clean':>9}{'drop':>9}{'consistent':>12}  example"]
    for r in result.rows:
        lines.append(f"{r.kind:<17}{r.group:<12}{r.cases:>6}{r.dice:>9.4f}{r.clean_dice:>9.4f}{r.drop:>9.4f}"
                     f"{r.consistency:>12.3f}  {r.example}")
    preserving = [r.drop for r in result.rows if r.group == "preserving" and r.cases]
    changing = [r.drop for r in result.rows if r.group == "changing" and r.cases]
    if preserving:
        lines.append(f"LARGEST DROP meaning kept: {max(preserving):.4f}")
    if changing:
        lines.append(f"SMALLEST DROP meaning changed: {min(changing):.4f}")
    for kind in CHANGING:
        row = next((r for r in result.rows if r.kind == kind), None)
        if row is not None and row.cases:
            lines.append(f"DICE DROP {kind}: {row.drop:.4f}")
    return lines
