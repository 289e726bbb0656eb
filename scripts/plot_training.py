#!/usr/bin/env python
"""Draw a training run's loss and validation mean Dice per epoch from its TensorBoard event files.

    python scripts/plot_training.py --bundle himix --bundle-root runs/demo/himix     # after ./scripts/run_demo.sh
    python scripts/plot_training.py --bundle tamiseg --bundle-root runs/demo/tamiseg --config pretrain.json \\
        --output runs/demo/tamiseg/phase1_curves.png                                   # phase I of TAMISeg
    python scripts/plot_training.py --bundle unet --log-dir /runs/unet/logs --output curves.png

Where the event files are: the training config's ``log_dir`` (``$@bundle_root + '/logs'`` in every
``train.json``; TAMISeg's ``pretrain.json`` writes phase I's to ``logs/pretrain``), with ``bundle_root`` set
to ``--bundle-root`` (default: the bundle folder; ``scripts/demo.py`` trains with ``runs/demo/<bundle>``).
``--log-dir`` names the folder directly. Only files in that folder are read, not its subfolders.

What is read, as ``train.json``'s handlers write it:
    train_loss        the training ``TensorBoardStatsHandler``'s ``tag_name``: each iteration's loss (step = iteration)
    train_mean_dice   the trainer's key metric, written at the end of every epoch (step = epoch): where epochs end
    val_mean_dice     the evaluator's key metric (step = the trainer's epoch)
An epoch's training loss is the mean over its iterations (an iteration belongs to the first epoch that ends at
or after it was written; iterations of an unfinished last epoch are left out). Every handler writes its own
event file, and a rerun into the same folder adds more: each tag is read from the newest file that holds it.

The PNG (default ``<bundle>/docs/training_curves.png``, the figure of the bundle's model card) is written under
a temporary name and renamed; an existing file is kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import math
import sys
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

LOSS_TAG, EPOCH_TAG, DICE_TAG = "train_loss", "train_mean_dice", "val_mean_dice"
FIGURE = "training_curves.png"

Scalars = dict[str, list[tuple[float, int, float]]]  # tag -> [(wall_time, step, value)]


def read_scalars(log_dir: str | Path) -> Scalars:
    """Every scalar tag in the event files directly under ``log_dir``, each from the newest file holding it."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    log_dir = Path(log_dir)
    files = sorted(p for p in log_dir.glob("*tfevents*") if p.is_file()) if log_dir.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files (events.out.tfevents.*) in {log_dir}"
                                + ("" if log_dir.is_dir() else " (no such folder)")
                                + "; train the bundle first, or name the run's log folder with --log-dir")
    newest: dict[str, tuple[float, list[tuple[float, int, float]]]] = {}
    for path in files:
        events = EventAccumulator(str(path), size_guidance={SCALARS: 0})  # 0: keep every event, no sampling
        events.Reload()
        try:
            started = events.FirstEventTimestamp()
        except ValueError:  # an empty file (a run that stopped before writing anything)
            continue
        for tag in events.Tags()["scalars"]:
            if tag not in newest or started >= newest[tag][0]:
                newest[tag] = (started, [(e.wall_time, e.step, e.value) for e in events.Scalars(tag)])
    return {tag: values for tag, (_, values) in newest.items()}


def per_epoch(scalars: Scalars, loss_tag: str = LOSS_TAG, epoch_tag: str = EPOCH_TAG,
              dice_tag: str = DICE_TAG) -> tuple[dict[int, float], dict[int, float]]:
    """(training loss per epoch: the mean over the epoch's iterations, validation Dice per epoch)."""
    missing = [t for t in (loss_tag, epoch_tag, dice_tag) if t not in scalars]
    if missing:
        raise ValueError(f"tag(s) {missing} not in the event files (found: {sorted(scalars) or 'no scalars'}); "
                         f"name them with --loss-tag / --epoch-tag / --dice-tag")
    ends = sorted((wall, step) for wall, step, _ in scalars[epoch_tag])
    end_times = [wall for wall, _ in ends]
    losses: dict[int, list[float]] = defaultdict(list)
    for wall, _, value in scalars[loss_tag]:
        i = bisect_left(end_times, wall)
        if i < len(ends):
            losses[ends[i][1]].append(value)
    loss = {epoch: sum(v) / len(v) for epoch, v in sorted(losses.items())}
    dice = {step: value for _, step, value in sorted(scalars[dice_tag], key=lambda e: e[1])}
    if not loss:
        raise ValueError(f"no complete epoch: no '{loss_tag}' event was written before an '{epoch_tag}' event")
    return loss, dice


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    span = max(high - low, 1e-12)
    raw = span / count
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    first = math.floor(low / step + 1e-9) * step
    return [round(first + i * step, 12) for i in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, series: dict[int, float],
           colour: tuple[int, int, int], y_range: tuple[float, float] | None, best: str | None, fonts) -> None:
    """One line chart of ``series`` (epoch -> value) inside ``box``, with axes, ticks and a title."""
    font, small = fonts
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + 64, top + 34, right - 16, bottom - 46  # plot area
    epochs = sorted(series)
    values = [series[e] for e in epochs]
    x_ticks = [t for t in _ticks(min(epochs), max(epochs), 6) if float(t).is_integer() and min(epochs) <= t <= max(epochs)]
    x_ticks = x_ticks or [min(epochs)]
    x_low, x_high = min(epochs), max(max(epochs), min(epochs) + 1)
    lo, hi = y_range or (min(0.0, min(values)), max(values))
    y_ticks = _ticks(lo, hi if hi > lo else lo + 1)
    y_low, y_high = min(y_ticks[0], lo), max(y_ticks[-1], hi)

    def at(epoch: float, value: float) -> tuple[float, float]:
        return (x0 + (epoch - x_low) / (x_high - x_low) * (x1 - x0),
                y1 - (value - y_low) / (y_high - y_low) * (y1 - y0))

    draw.text(((x0 + x1) / 2, top + 8), title, fill="black", font=font, anchor="mt")
    for t in y_ticks:
        _, y = at(x_low, t)
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((x0 - 6, y), _label(t), fill="black", font=small, anchor="rm")
    for t in x_ticks:
        x, _ = at(t, y_low)
        draw.line([(x, y1), (x, y1 + 5)], fill="black")
        draw.text((x, y1 + 8), f"{int(t)}", fill="black", font=small, anchor="mt")
    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text(((x0 + x1) / 2, bottom - 8), "epoch", fill="black", font=small, anchor="mb")
    points = [at(e, v) for e, v in zip(epochs, values)]
    if len(points) > 1:
        draw.line(points, fill=colour, width=2, joint="curve")
    radius = 3 if len(points) <= 60 else 0
    for x, y in points:
        if radius:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    if best:
        draw.text((x1 - 6, y1 - 6), best, fill=colour, font=small, anchor="rd")


def draw_curves(loss: dict[int, float], dice: dict[int, float], label: str) -> Image.Image:
    """Training loss (left) and validation mean Dice (right, 0 to 1) against the epoch."""
    width, height = 1200, 470
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    fonts = ImageFont.load_default(size=17), ImageFont.load_default(size=13)
    best_epoch = max(dice, key=lambda e: (dice[e], -e))
    draw.text((width / 2, 10), f"{label}: {max(loss)} epochs", fill="black", font=fonts[0], anchor="mt")
    _panel(draw, (0, 30, width // 2, height), "training loss (mean over each epoch's iterations)", loss,
           (31, 119, 180), None, None, fonts)
    _panel(draw, (width // 2, 30, width, height), "validation mean Dice", dice, (214, 39, 40), (0.0, 1.0),
           f"best {dice[best_epoch]:.4f} (epoch {best_epoch})", fonts)
    return image


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on train.json (e.g. pretrain.json), "
                   "for their log_dir")
    p.add_argument("--bundle-root", default=None, help="the run's bundle_root (default: the bundle folder)")
    p.add_argument("--log-dir", default=None, help="the folder of the event files (default: the config's log_dir)")
    p.add_argument("--output", default=None, help=f"PNG to write (default: <bundle>/docs/{FIGURE})")
    p.add_argument("--loss-tag", default=LOSS_TAG)
    p.add_argument("--epoch-tag", default=EPOCH_TAG, help="a tag written once at the end of every training epoch")
    p.add_argument("--dice-tag", default=DICE_TAG)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)

    from custom_nets.bundle import bundle_dir, load_config
    from custom_nets.utils.files import write_atomically

    try:
        folder = bundle_dir(args.bundle, "train.json")
        if args.log_dir:
            log_dir = Path(args.log_dir)
        else:
            parser = load_config(folder, *args.config)
            parser["bundle_root"] = str(args.bundle_root or folder)
            log_dir = Path(parser.get_parsed_content("log_dir"))
        output = Path(args.output or folder / "docs" / FIGURE)
        if output.exists() and not args.overwrite:
            raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
        loss, dice = per_epoch(read_scalars(log_dir), args.loss_tag, args.epoch_tag, args.dice_tag)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    image = draw_curves(loss, dice, folder.name)
    write_atomically(output, lambda tmp: image.save(tmp, format="PNG"))
    best = max(dice, key=lambda e: (dice[e], -e))
    print(f"wrote {output}: {len(loss)} epochs from {log_dir}; last training loss {loss[max(loss)]:.4f}, "
          f"best validation mean Dice {dice[best]:.4f} (epoch {best})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
