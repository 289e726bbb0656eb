#!/usr/bin/env python
"""Train and evaluate a bundle over several seeds (and training budgets); print mean +/- std of its test
metrics, and compare it case by case with another bundle's runs.

    python scripts/multiseed.py --bundle himix --config demo.json --seeds 0 1 2
    python scripts/multiseed.py --bundle unet --config demo.json --seeds 0 1 2
    python scripts/multiseed.py --bundle himix --config demo.json --seeds 0 1 2 --compare unet
    python scripts/multiseed.py --bundle himix --config demo.json --seeds 0 --budgets 0.05 0.1 0.25 0.5 1

Runs go to ``<out>/<bundle>/budget_<b>/seed_<s>/`` (models/, logs, eval/) and the summary to
``<out>/<bundle>/summary.json`` (every run of the bundle found under ``--out``, so separate calls add up); a run
already evaluated is kept (``--rerun`` trains it again). A budget is the
share of the training split used (``--train_fraction``, the subset drawn with the run's seed); validation and
test splits stay whole. ``--compare`` reads the other bundle's summary from the same ``--out`` and tests the
per-case Dice (mean over seeds, full budget) with the Wilcoxon signed-rank test and a bootstrap 95 % interval of
the mean difference. ``scripts/report.py --multiseed <out>`` puts it all in the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from custom_nets.evaluation.multiseed import compare, load_summary, run_seeds
from custom_nets.evaluation.runs import BundleRunError

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATALIST = ROOT / "datalists" / "demo.json"
PHRASING = ROOT / "datalists" / "demo_phrasing.json"  # the demo's test split in held-out phrasings
SHOWN = ("dice_mean", "dice_phrasing", "dice_pooled", "iou_mean", "hd95", "assd", "consistency", "consistency_gt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=["demo.json"], help="override files merged on train.json")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budgets", nargs="+", type=float, default=[1.0], help="shares of the training split, in (0, 1]")
    p.add_argument("--datalist", default=str(ROOT / "datalists" / "demo.json"))
    p.add_argument("--data-root", default=str(ROOT / "data" / "demo"))
    p.add_argument("--out", default=str(ROOT / "runs" / "multiseed"))
    p.add_argument("--phrasing", default=None,
                   help="a datalist of the same test images in other phrasings, evaluated too (dice_phrasing); default: "
                        f"{PHRASING.relative_to(ROOT)} with the demo datalist, none otherwise; 'none' to skip")
    p.add_argument("--rerun", action="store_true", help="train runs again even where their evaluation exists")
    p.add_argument("--phase1-from", default=None,
                   help="another --out whose runs (same bundle, budget, seed, datalist) lend their phase-I checkpoints: "
                        "for variants that change only phase II")
    p.add_argument("--compare", nargs="*", default=[], help="bundles (with summaries in --out) to compare with")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.phrasing is None:
        args.phrasing = str(PHRASING) if Path(args.datalist).resolve() == DEMO_DATALIST and PHRASING.is_file() else "none"
    phrasing = None if args.phrasing.lower() == "none" else Path(args.phrasing)
    if phrasing is not None and not phrasing.is_file():
        sys.exit(f"error: --phrasing {phrasing}: no such datalist")
    try:
        summary = run_seeds(args.bundle, args.config, out, Path(args.data_root), Path(args.datalist), args.seeds,
                            args.budgets, args.rerun, progress=lambda m: print(m, flush=True), phrasing=phrasing,
                            phase1_from=None if args.phase1_from is None else Path(args.phase1_from))
    except (BundleRunError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"\n{args.bundle}: test metrics over the seeds evaluated under {out / args.bundle} (mean +/- std)")
    print(f"{'budget':<8}{'seeds':>8}" + "".join(f"{m:>20}" for m in SHOWN))
    for budget, entry in summary["budgets"].items():
        cells = []
        for m in SHOWN:
            mean, std, n = entry["mean_std"].get(m, (float("nan"), float("nan"), 0))
            cells.append(f"{mean:.4f} +/- {std:.4f}" if n > 1 else f"{mean:.4f}" if n else "-")
        seeds = ",".join(str(r["seed"]) for r in entry["runs"])
        print(f"{budget:<8}{seeds:>8}" + "".join(f"{c:>20}" for c in cells))
    for other in args.compare:
        try:
            r = compare(summary, load_summary(out / other))
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"compare with {other}: {e}")
            continue
        print(f"{args.bundle} - {other}, per-case Dice (mean over seeds), {r['n']} cases: mean difference "
              f"{r['mean_difference']:+.4f}, 95% bootstrap CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], "
              f"Wilcoxon p = {r['wilcoxon_p']:.3g}")
    print(f"\nsummary: {out / args.bundle / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
