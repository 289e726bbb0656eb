"""Train and evaluate a bundle over several seeds (and training budgets) and summarise: mean +/- std of every
test metric per budget, the per-case Dice of every run, and paired comparisons between two bundles' summaries.

The summary is ``<out>/<bundle>/summary.json`` (what ``scripts/report.py`` reads)::

    {"bundle": "himix", "configs": ["demo.json"], "skipped": [runs made with other configs],
     "budgets": {"1.0": {"runs": [{"seed": 0, "root": ..., "metrics": {...}, "dice_per_case": {case: dice}}],
                         "mean_std": {"dice_mean": [mean, std, n], ...}}}}

A run evaluated on a second datalist as well (``phrasing``: the same test images with their sentences in held-out
phrasings, ``eval_phrasing/``) adds ``dice_phrasing`` and ``consistency_phrasing`` to its metrics.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from custom_nets.bundle import load_config
from custom_nets.evaluation.runs import evaluate_on, read_metrics, read_per_case, train_and_evaluate
from custom_nets.evaluation.stats import mean_std, paired_comparison
from custom_nets.utils.files import write_atomically

SUMMARY = "summary.json"
PHRASING_EVAL = "eval_phrasing"  # a run's evaluation on the held-out phrasings (``phrasing=`` of run_seeds)


def run_directory(out: Path, bundle: str, budget: float, seed: int) -> Path:
    return out / bundle / f"budget_{budget:g}" / f"seed_{seed}"


RUN_RECORD = "run.json"


def record_run(root: Path, bundle: str, configs: Sequence[str], datalist: Path, budget: float, seed: int,
               arguments: Sequence[str], phase1_from: Path | None = None) -> None:
    """What trained the run in ``root`` (``run.json``), so that a later summary or resume takes only its own runs."""
    record = {"bundle": bundle, "configs": [str(c) for c in configs], "datalist": str(Path(datalist).resolve()),
              "budget": budget, "seed": seed, "arguments": list(arguments)}
    if phase1_from is not None:
        record["phase1_from"] = str(Path(phase1_from).resolve())
    write_atomically(root / RUN_RECORD, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))


def read_run_record(root: Path) -> dict | None:
    """The ``run.json`` of the run in ``root``; None where it is missing or not JSON."""
    try:
        return json.loads((root / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _matches(root: Path, configs: Sequence[str], datalist: Path) -> bool:
    record = read_run_record(root)
    if record is None:
        return False
    return record.get("configs") == [str(c) for c in configs] and record.get("datalist") == str(Path(datalist).resolve())


def phase1_source(other_out: Path, bundle: str, budget: float, seed: int, datalist: Path) -> Path:
    """The run under ``other_out`` that lends its phase-I checkpoint to the run (``bundle``, ``budget``, ``seed``):
    its ``run.json`` must name the same bundle, budget, seed and datalist."""
    root = run_directory(other_out, bundle, budget, seed)
    record = read_run_record(root)
    if record is None:
        raise FileNotFoundError(f"{root / RUN_RECORD}: no run to take phase I from (missing or not JSON)")
    wanted = {"bundle": bundle, "budget": budget, "seed": seed, "datalist": str(Path(datalist).resolve())}
    differing = {k: record.get(k) for k, v in wanted.items() if record.get(k) != v}
    if differing:
        raise ValueError(f"{root / RUN_RECORD}: its run differs in {differing}, wanted {wanted}")
    return root


def budget_arguments(bundle: str, configs: Sequence[str], budget: float) -> list[str]:
    """The training-budget options of a run: ``--train_fraction B``, or, where the configs already fix
    ``train_items`` N (LCPDN's recipes: 150 QaTa-COV19 images), ``--train_items round(B * N)``; none at the full budget."""
    if budget >= 1:
        return []
    items = load_config(bundle, *configs).get("train_items")
    if isinstance(items, int):
        return ["--train_items", str(max(1, round(budget * items)))]
    return ["--train_fraction", str(budget)]


def run_seeds(bundle: str, configs: Sequence[str], out: Path, data_root: Path, datalist: Path, seeds: Sequence[int],
              budgets: Sequence[float] = (1.0,), rerun: bool = False, progress: Callable[[str], None] = print,
              phrasing: Path | None = None, phase1_from: Path | None = None) -> dict:
    """Train and evaluate ``bundle`` once per (budget, seed) into ``run_directory(...)``; a run evaluated before
    with the same configs and datalist is kept (resume) unless ``rerun``, one made with others is an error.
    ``phrasing``: a datalist whose test split each run is evaluated on as well, into ``eval_phrasing/`` (a kept run
    lacking it is evaluated now). ``phase1_from``: another ``out`` whose run of the same bundle, budget, seed and
    datalist lends its phase-I checkpoint (a variant that changes only phase II need not train phase I again).
    Writes and returns the summary of the bundle's runs under ``out`` (:func:`summarise`)."""
    for budget in budgets:
        if not 0 < budget <= 1:
            raise ValueError(f"a training budget is a share of the training split in (0, 1], got {budget}")
    for budget in budgets:
        for seed in seeds:
            root = run_directory(out, bundle, budget, seed)
            done = (root / "eval" / "metrics.csv").is_file()
            if done and not rerun and not _matches(root, configs, datalist):
                raise ValueError(f"{root} holds a run made with other configs or another datalist (its {RUN_RECORD}); "
                                 "pass --rerun to replace it, or use another --out")
            if rerun or not done:
                extra = ["--seed", str(seed), "--train_seed", str(seed), *budget_arguments(bundle, configs, budget)]
                lender = None if phase1_from is None else phase1_source(Path(phase1_from), bundle, budget, seed, datalist)
                progress(f"[{bundle}] budget {budget:g}, seed {seed}: {root}")
                train_and_evaluate(bundle, configs, root, data_root, datalist, extra, progress, phase1_from=lender)
                record_run(root, bundle, configs, datalist, budget, seed, extra, phase1_from=lender)
            else:
                progress(f"[{bundle}] budget {budget:g}, seed {seed}: kept {root / 'eval'} (--rerun to train again)")
            if phrasing is not None and (rerun or not done or not (root / PHRASING_EVAL / "metrics.csv").is_file()):
                progress(f"[{bundle}] budget {budget:g}, seed {seed}: evaluating on {Path(phrasing).name}")
                evaluate_on(bundle, configs, root, data_root, Path(phrasing), PHRASING_EVAL)
    return summarise(bundle, configs, out, datalist)


def summarise(bundle: str, configs: Sequence[str], out: Path, datalist: Path) -> dict:
    """The summary of every evaluated run of ``bundle`` under ``out`` made with ``configs`` and ``datalist`` (all
    budgets and seeds found there, so that separate calls add up; runs made otherwise are listed under
    ``"skipped"``); written to ``<out>/<bundle>/summary.json``."""
    summary = {"bundle": bundle, "configs": list(configs), "datalist": str(datalist), "budgets": {}, "skipped": []}
    found: dict[float, list[tuple[int, Path]]] = {}
    for eval_dir in sorted((out / bundle).glob("budget_*/seed_*/eval/metrics.csv")):
        root = eval_dir.parent.parent
        if not _matches(root, configs, datalist):
            summary["skipped"].append(str(root))
            continue
        found.setdefault(float(root.parent.name.removeprefix("budget_")), []).append((int(root.name.removeprefix("seed_")), root))
    for budget in sorted(found):
        runs = [{"seed": seed, "root": str(root), "metrics": run_metrics(root),
                 "dice_per_case": read_per_case(root / "eval", "dice_mean")} for seed, root in sorted(found[budget])]
        names = sorted({k for r in runs for k in r["metrics"]})
        summary["budgets"][f"{budget:g}"] = {
            "runs": runs, "mean_std": {k: list(mean_std([r["metrics"].get(k, math.nan) for r in runs])) for k in names}}
    path = out / bundle / SUMMARY
    write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
    return summary


def run_metrics(root: Path) -> dict[str, float]:
    """A run's test metrics, with ``dice_phrasing``/``consistency_phrasing`` where it was evaluated on the
    held-out phrasings too."""
    metrics = read_metrics(root / "eval")
    if (root / PHRASING_EVAL / "metrics.csv").is_file():
        held_out = read_metrics(root / PHRASING_EVAL)
        for name in ("dice_mean", "consistency"):
            if name in held_out:
                metrics[name.replace("_mean", "") + "_phrasing"] = held_out[name]
    return metrics


def load_summary(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"no multi-seed summary at {path} (run scripts/multiseed.py first)")
    return json.loads(path.read_text())


def case_dice(summary: dict, budget: str = "1") -> dict[str, float]:
    """Per-case Dice averaged over the seeds of one budget (NaN-aware)."""
    runs = summary["budgets"][budget]["runs"]
    cases = sorted({c for r in runs for c in r["dice_per_case"]})
    out = {}
    for case in cases:
        values = [r["dice_per_case"].get(case, math.nan) for r in runs]
        kept = [v for v in values if not math.isnan(v)]
        out[case] = float(np.mean(kept)) if kept else math.nan
    return out


def compare(summary_a: dict, summary_b: dict, budget: str = "1") -> dict[str, float]:
    """Paired comparison (Wilcoxon, bootstrap CI of the mean difference) of two bundles' per-case Dice, averaged
    over seeds, on the cases both evaluated. Different case sets are an error."""
    a, b = case_dice(summary_a, budget), case_dice(summary_b, budget)
    if set(a) != set(b):
        raise ValueError(f"{summary_a['bundle']} and {summary_b['bundle']} were evaluated on different cases "
                         f"({len(set(a) ^ set(b))} differ): compare runs on the same datalist and split")
    cases = sorted(a)
    return paired_comparison([a[c] for c in cases], [b[c] for c in cases])
