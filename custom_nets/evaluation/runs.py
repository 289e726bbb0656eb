"""Train and evaluate a bundle with ``python -m monai.bundle`` in a subprocess, as a user would, and read back
what its evaluation wrote (``eval/metrics.csv`` and the per-case ``eval/<metric>_raw.csv``).

Used by ``scripts/demo.py`` (the README's main job) and ``scripts/multiseed.py``.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from custom_nets.bundle import bundle_dir

PHASE1_DIR = Path("models") / "pretrain"  # where a bundle's phase I writes its checkpoint (``phase1_dir``), under its root


class BundleRunError(RuntimeError):
    """A bundle command failed; the message holds the command and the last lines of its log."""


def bundle_command(run_id: str, configs: Sequence[Path], bundle_root: Path, data_root: Path, datalist: Path,
                   *extra: str) -> list[str]:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files, "--bundle_root", str(bundle_root),
            "--data_root", str(data_root), "--datalist", str(datalist), *extra]


def run_logged(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run ``cmd`` with its output to ``log`` (offline); on failure raise :class:`BundleRunError` with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise BundleRunError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- last lines of {log} ---\n{tail}")


def train_and_evaluate(bundle: str, overrides: Sequence[str | os.PathLike], root: Path, data_root: Path, datalist: Path,
                       extra: Sequence[str] = (), progress=print, phase1_from: Path | None = None) -> dict[str, float]:
    """Phase I (when the bundle has ``configs/pretrain.json``), training and evaluation of ``bundle`` into
    ``root`` (logs ``pretrain.log``, ``train.log``, ``evaluate.log``; results in ``root/eval``); the test metrics.

    ``overrides`` are config files merged after the bundle's own (names in its ``configs/`` or paths); ``extra``
    are ``--key value`` arguments given to every command (e.g. ``--seed 1``). ``phase1_from``: a run folder whose
    phase-I checkpoint (``models/pretrain/``) is copied in instead of training phase I again; it must come from the
    same phase-I settings and seed, which is the caller's to ensure (phase I is deterministic per seed on CPU).
    """
    configs = bundle_dir(bundle, "train.json") / "configs"
    files = [Path(o) if Path(o).is_file() else configs / o for o in overrides]
    flags = ["--overwrite", "True", *extra]
    has_phase1 = (configs / "pretrain.json").is_file()  # a first phase whose checkpoint the training config loads
    if phase1_from is not None:
        source = Path(phase1_from) / PHASE1_DIR
        if not has_phase1:
            raise ValueError(f"{bundle} has no phase I (no configs/pretrain.json): phase1_from={phase1_from} has no use")
        if not (source / "model.pt").is_file():
            raise FileNotFoundError(f"{source / 'model.pt'}: no phase-I checkpoint to reuse (phase1_from={phase1_from})")
        progress(f"[{bundle}] phase I: reusing {source}")
        copy = root / PHASE1_DIR.parent / f".{PHASE1_DIR.name}.copying"  # whole or not at all
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy)
        if (root / PHASE1_DIR).exists():
            shutil.rmtree(root / PHASE1_DIR)
        copy.rename(root / PHASE1_DIR)
    elif has_phase1:
        progress(f"[{bundle}] phase I (log: {root / 'pretrain.log'}) ...")
        run_logged(bundle_command("training", [configs / "train.json", configs / "pretrain.json", *files], root, data_root,
                                  datalist, *flags, "--show_progress", "False"), root / "pretrain.log")
    progress(f"[{bundle}] training (log: {root / 'train.log'}) ...")
    run_logged(bundle_command("training", [configs / "train.json", *files], root, data_root, datalist, *flags,
                              "--show_progress", "False"), root / "train.log")
    progress(f"[{bundle}] evaluating on the test split ...")
    run_logged(bundle_command("evaluating", [configs / "train.json", configs / "evaluate.json", *files], root, data_root,
                              datalist, *flags), root / "evaluate.log")
    return read_metrics(root / "eval")


def evaluate_on(bundle: str, overrides: Sequence[str | os.PathLike], root: Path, data_root: Path, datalist: Path,
                name: str, extra: Sequence[str] = ()) -> dict[str, float]:
    """Evaluate the trained ``root`` on another datalist's test split (e.g. the held-out phrasings) into
    ``root/<name>`` (log ``<name>.log``); its metrics."""
    configs = bundle_dir(bundle, "train.json") / "configs"
    files = [Path(o) if Path(o).is_file() else configs / o for o in overrides]
    run_logged(bundle_command("evaluating", [configs / "train.json", configs / "evaluate.json", *files], root, data_root,
                              datalist, "--output_dir", str(root / name), *extra), root / f"{name}.log")
    return read_metrics(root / name)


def read_metrics(eval_dir: Path) -> dict[str, float]:
    """``metrics.csv`` of an evaluation as a dict."""
    with open(eval_dir / "metrics.csv") as f:
        return {row[0]: float(row[1]) for row in csv.reader(f) if len(row) == 2}


def read_per_case(eval_dir: Path, metric: str = "dice_mean") -> dict[str, float]:
    """``<metric>_raw.csv`` of an evaluation: case file name -> value (NaN where the metric skipped the case)."""
    out = {}
    with open(eval_dir / f"{metric}_raw.csv") as f:
        rows = csv.reader(f)
        header = next(rows)
        column = header.index("class0") if "class0" in header else 1
        for row in rows:
            value = row[column].strip().lower()
            out[row[0]] = math.nan if value in ("nan", "") else float(value)
    return out
