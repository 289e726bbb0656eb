#!/usr/bin/env python
"""The README's main job: make the demo data, train and evaluate bundles on it, print their test figures.

For bundles that read text it also runs ``scripts/text_sensitivity.py`` (test Dice with true against
counterfactual sentences), the check that the network uses the sentence.

    python scripts/demo.py                 # HiMix, the default (about 6 minutes on 2 CPU cores)
    python scripts/demo.py --all           # every bundle that ships configs/demo.json (about 40 minutes)
    python scripts/demo.py --bundles c2seg unet

Outputs go to ``runs/demo/<bundle>/`` (models/, logs/, eval/); a rerun replaces that folder's results.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = ROOT / "data" / "demo"
DATALIST = ROOT / "datalists" / "demo.json"
DEFAULT_BUNDLE = "himix"  # all bundles take longer than the README's 20 minutes on 2 cores: --all runs them
SHOWN = ("dice_mean", "dice_pooled", "iou_mean", "iou_pooled", "hd95", "assd")


def bundle_cmd(run_id: str, configs: list[Path], bundle_root: Path, *extra: str) -> list[str]:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files,
            "--bundle_root", str(bundle_root), "--data_root", str(DATA_ROOT), "--datalist", str(DATALIST), *extra]


def run(cmd: list[str], log: Path) -> None:
    """Run a bundle command, its output to ``log``; on failure show the log's tail and stop."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-40:]
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- last lines of {log} ---\n" + "\n".join(tail))


def read_metrics(eval_dir: Path) -> dict[str, float]:
    with open(eval_dir / "metrics.csv") as f:
        return {row[0]: float(row[1]) for row in csv.reader(f, delimiter=",") if len(row) == 2}


def main(argv: list[str] | None = None) -> int:
    available = sorted(p.parent.parent.name for p in (ROOT / "bundles").glob("*/configs/demo.json"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--bundles", nargs="+", default=[DEFAULT_BUNDLE], choices=available,
                       help=f"bundles to run (default: {DEFAULT_BUNDLE})")
    group.add_argument("--all", action="store_true", help=f"run every bundle with a demo.json: {', '.join(available)}")
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"), help="where each bundle's outputs go")
    args = p.parse_args(argv)
    if args.all:
        args.bundles = available

    if not DATA_ROOT.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--data-root", str(DATA_ROOT),
                        "--datalist", str(DATALIST)], check=True, cwd=ROOT)
    results: dict[str, dict[str, float]] = {}
    sensitivity: dict[str, list[str]] = {}
    for name in args.bundles:
        configs = ROOT / "bundles" / name / "configs"
        out = Path(args.out) / name
        t0 = time.time()
        if (configs / "pretrain.json").is_file():  # a first phase whose checkpoint the training config loads
            print(f"[{name}] phase I (log: {out / 'pretrain.log'}) ...", flush=True)
            run(bundle_cmd("training", [configs / "train.json", configs / "pretrain.json", configs / "demo.json"], out,
                           "--overwrite", "True", "--show_progress", "False"), out / "pretrain.log")
        print(f"[{name}] training (log: {out / 'train.log'}) ...", flush=True)
        run(bundle_cmd("training", [configs / "train.json", configs / "demo.json"], out, "--overwrite", "True",
                       "--show_progress", "False"), out / "train.log")
        print(f"[{name}] evaluating on the test split ...", flush=True)
        run(bundle_cmd("evaluating", [configs / "train.json", configs / "evaluate.json", configs / "demo.json"], out,
                       "--overwrite", "True"), out / "evaluate.log")
        results[name] = read_metrics(out / "eval")
        if json.loads((configs / "train.json").read_text()).get("text_encoder"):
            print(f"[{name}] text sensitivity on the test split ...", flush=True)
            log = out / "text_sensitivity.log"
            run([sys.executable, str(ROOT / "scripts" / "text_sensitivity.py"), "--bundle", name, "--config", "demo.json",
                 "--bundle-root", str(out), "--datalist", str(DATALIST), "--data-root", str(DATA_ROOT)], log)
            sensitivity[name] = [line for line in log.read_text().splitlines() if line.startswith(("counterfactual", "laterality", "zones", "DICE DROP"))]
        print(f"[{name}] done in {time.time() - t0:.0f}s; per-case CSVs in {out / 'eval'}", flush=True)

    print("\nTest split of the demo referring data set (mean = over images, pooled = over all pixels of the set;"
          " HD95/ASSD in pixels at the training size)")
    print(f"{'bundle':<10}" + "".join(f"{m:>13}" for m in SHOWN))
    for name, m in results.items():
        print(f"{name:<10}" + "".join(f"{m.get(k, float('nan')):>13.4f}" for k in SHOWN))
    for name, lines in sensitivity.items():
        print(f"\nText sensitivity of {name} (test Dice against the true masks):")
        print("\n".join(lines))
    print()
    for name, m in results.items():
        print(f"TEST DICE {name}: {m['dice_mean']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
