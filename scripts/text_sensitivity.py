#!/usr/bin/env python
"""Does a trained bundle use the report text? Dice with the true sentences against Dice with counterfactual ones.

    python scripts/text_sensitivity.py --bundle-root runs/demo/himix --config demo.json

Every image of the split is segmented three times, the mask always compared with the *true* mask:
    true         the datalist's sentence;
    laterality   left and right swapped ("upper left" -> "upper right");
    zones        the named zones replaced by as many other zones (the image's look-alike distractors first,
                 when the datalist lists ``distractor_zones``, as the demo set does).
A network that reads the text loses Dice under both counterfactuals; an image-only one does not. Laterality
swaps that name the same zones (e.g. "upper left and upper right") cannot change the truth; their Dice is
shown separately ("swap changes zones" counts only the others).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset
from monai.metrics import DiceMetric
from monai.transforms import Compose

from custom_nets.bundle import bundle_dir, load_config, weights_from_checkpoint
from custom_nets.data import load_datalist
from custom_nets.text import TextEncoder
from custom_nets.text.prompts import parse_zones, replaced_zone_sentence, swap_laterality

ROOT = Path(__file__).resolve().parent.parent


def counterfactuals(item: dict, seed: int) -> dict[str, str | None]:
    """The item's true sentence and its counterfactuals (None where a sentence names no zone)."""
    text = item["text"]
    has_zones = bool(parse_zones(text))
    return {
        "true": text,
        "laterality": swap_laterality(text) if has_zones else None,
        "zones": replaced_zone_sentence(text, item.get("distractor_zones"), seed=seed),
    }


def dice_per_image(network, loader, encoder: TextEncoder, device: torch.device) -> list[float]:
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    network.eval()
    with torch.no_grad():
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            hidden, mask = encoder(list(batch["text"]))
            logits = network(image, text_hidden=hidden.to(device), text_mask=mask.to(device))
            metric((torch.sigmoid(logits) > 0.5).float(), label)
    return metric.aggregate().flatten().tolist()


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="himix", help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on train.json, e.g. demo.json")
    p.add_argument("--bundle-root", default=None, help="where models/model.pt is (default: bundles/<bundle>)")
    p.add_argument("--checkpoint", default=None, help="checkpoint path (default: <bundle-root>/models/model.pt)")
    p.add_argument("--datalist", default=str(ROOT / "datalists" / "demo.json"))
    p.add_argument("--data-root", default=str(ROOT / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--max-items", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    try:
        parser = weights_from_checkpoint(load_config(args.bundle, *args.config))
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    if not parser.get("text_encoder"):
        sys.exit(f"bundle '{args.bundle}' has no text encoder (text_encoder is null): nothing to compare")
    checkpoint = Path(args.checkpoint or Path(args.bundle_root or bundle_dir(args.bundle, "train.json")) / "models" / "model.pt")
    if not checkpoint.is_file():
        sys.exit(f"checkpoint not found: {checkpoint} (train the bundle first, or pass --checkpoint)")

    device = parser.get_parsed_content("device")
    network = parser.get_parsed_content("network_def").to(device)
    network.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    encoder = parser.get_parsed_content("text_encoder")
    transform = Compose(parser.get_parsed_content("load_transforms"))
    items = load_datalist(args.datalist, args.data_root, args.split, max_items=args.max_items)
    variants = [counterfactuals(item, args.seed + i) for i, item in enumerate(items)]

    dice: dict[str, list[float | None]] = {}
    for kind in ("true", "laterality", "zones"):
        keep = [i for i, v in enumerate(variants) if v[kind] is not None]
        data = [{**items[i], "text": variants[i][kind]} for i in keep]
        loader = DataLoader(Dataset(data, transform), batch_size=8, shuffle=False, num_workers=0)
        values = dice_per_image(network, loader, encoder, device) if data else []
        dice[kind] = [None] * len(items)
        for i, d in zip(keep, values):
            dice[kind][i] = d

    def row(name: str, idx: list[int], kind: str) -> str:
        true = mean([dice["true"][i] for i in idx])
        cf = mean([dice[kind][i] for i in idx])
        return f"{name:<34}{len(idx):>7}{true:>12.4f}{cf:>16.4f}{cf - true:>12.4f}"

    print(f"bundle {args.bundle}, checkpoint {checkpoint}, {args.split} split: {len(items)} images")
    print(f"{'counterfactual':<34}{'images':>7}{'Dice true':>12}{'Dice counterf.':>16}{'difference':>12}")
    lat = [i for i, v in enumerate(variants) if v["laterality"] is not None]
    changed = [i for i in lat if set(parse_zones(variants[i]["laterality"])) != set(parse_zones(variants[i]["true"]))]
    zones = [i for i, v in enumerate(variants) if v["zones"] is not None]
    print(row("laterality swapped (all)", lat, "laterality"))
    print(row("laterality swapped (zones change)", changed, "laterality"))
    print(row("zones replaced", zones, "zones"))
    for kind, idx in (("laterality", changed), ("zones", zones)):
        print(f"DICE DROP {kind}: {mean([dice['true'][i] for i in idx]) - mean([dice[kind][i] for i in idx]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
