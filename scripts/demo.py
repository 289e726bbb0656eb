#!/usr/bin/env python
"""The README's main job: make the demo data, train and evaluate bundles on it, print their test figures.

It ends by writing the report (``scripts/report.py``: results table, text-mask consistency, Dice under sentence
rewrites that keep or change the meaning, plots and overlays) to ``runs/demo/report/index.html`` and printing its
path: the rewrites are the check that a network uses the sentence.

    python scripts/demo.py                 # HiMix, the default (about 8 minutes on 2 CPU cores)
    python scripts/demo.py --all           # every bundle that ships configs/demo.json (about 45 minutes)
    python scripts/demo.py --bundles c2seg unet

Outputs go to ``runs/demo/<bundle>/`` (models/, logs/, eval/) and ``runs/demo/report/``; a rerun replaces them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from custom_nets.evaluation.runs import BundleRunError, evaluate_on, run_logged, train_and_evaluate

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = ROOT / "data" / "demo"
DATALIST = ROOT / "datalists" / "demo.json"
PHRASING = ROOT / "datalists" / "demo_phrasing.json"  # the test split in held-out phrasings (custom_nets/data/phrasing.py)
DEFAULT_BUNDLE = "himix"  # all bundles take longer than the README's 20 minutes on 2 cores: --all runs them
SHOWN = ("dice_mean", "dice_phrasing", "dice_pooled", "iou_mean", "iou_pooled", "hd95", "assd", "consistency",
         "consistency_gt")


def main(argv: list[str] | None = None) -> int:
    available = sorted(p.parent.parent.name for p in (ROOT / "bundles").glob("*/configs/demo.json"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--bundles", nargs="+", default=[DEFAULT_BUNDLE], choices=available,
                       help=f"bundles to run (default: {DEFAULT_BUNDLE})")
    group.add_argument("--all", action="store_true", help=f"run every bundle with a demo.json: {', '.join(available)}")
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"), help="where each bundle's outputs go")
    args = p.parse_args(argv)
    args.out = str(Path(args.out).resolve())  # training, evaluation and the report all find the runs there
    if args.all:
        args.bundles = available

    if not DATA_ROOT.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--data-root", str(DATA_ROOT),
                        "--datalist", str(DATALIST)], check=True, cwd=ROOT)
    results: dict[str, dict[str, float]] = {}
    for name in args.bundles:
        out = Path(args.out) / name
        t0 = time.time()
        try:
            results[name] = train_and_evaluate(name, ["demo.json"], out, DATA_ROOT, DATALIST,
                                               progress=lambda m: print(m, flush=True))
            if name != "unet":  # the same test images, sentences in phrasings training never saw
                print(f"[{name}] evaluating on the held-out phrasings ({PHRASING.name}) ...", flush=True)
                phrasing = evaluate_on(name, ["demo.json"], out, DATA_ROOT, PHRASING, "eval_phrasing")
                results[name]["dice_phrasing"] = phrasing["dice_mean"]
        except BundleRunError as e:
            sys.exit(str(e))
        print(f"[{name}] done in {time.time() - t0:.0f}s; per-case CSVs in {out / 'eval'}", flush=True)
    # the report: sentence rewrites (Dice and consistency), figures, overlays; it prints the rewrite tables
    report = Path(args.out) / "report"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), "--bundles", *args.bundles, "--runs", args.out,
                        "--config", "demo.json", "--datalist", str(DATALIST), "--data-root", str(DATA_ROOT),
                        "--phrasing", str(PHRASING), "--out", str(report), "--overwrite"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"the report failed:\n{r.stdout[-4000:]}")
    print("\n".join(line for line in r.stdout.splitlines() if not line.startswith(("[report]", "REPORT:"))
                    and not any(noise in line for noise in ("nvImageCodec", "deprecated", "Loading weights"))))

    print("\nTest split of the demo referring data set (mean = over images, pooled = over all pixels of the set;"
          " dice_phrasing = mean Dice of the same images with their sentences in held-out phrasings; HD95/ASSD in pixels"
          " at the training size)")
    print(f"{'bundle':<10}" + "".join(f"{m:>16}" for m in SHOWN))
    for name, m in results.items():
        print(f"{name:<10}" + "".join(f"{m.get(k, float('nan')):>16.4f}" for k in SHOWN))
    print()
    for name, m in results.items():
        print(f"TEST DICE {name}: {m['dice_mean']:.4f}")
    print(f"REPORT: {report / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
