#!/usr/bin/env python
"""Export a trained bundle's network with its inputs (image, and text tensors if it reads text), reload it, check it.

    python scripts/export.py --bundle himix --config demo.json --bundle-root runs/demo/himix
    python scripts/export.py --bundle himix --config demo.json --bundle-root runs/demo/himix --format exported_program

MONAI's ``ckpt_export`` scripts the network (``torch.jit.script``); the timm encoders and the optional-text
forward of our networks do not script, so this exports with an example image, ``text_hidden`` and
``text_mask`` instead:
    torchscript        ``torch.jit.trace`` -> ``model.ts``; batch size, image size (multiples of 32) and
                       sentence length may differ from the example's. The bundle's ``metadata.json`` and
                       ``inference.json`` are stored as extra files, as ``ckpt_export`` does.
    exported_program   ``torch.export`` -> ``model.pt2`` (PyTorch's successor of TorchScript); dynamic batch
                       size and sentence length (up to ``max_text_tokens``), the config's image size.
A network that reads text takes all three inputs, always: an all-zero ``text_mask`` row means "no text"; an
image-only network (the unet bundle) takes the image alone.

The file is written under a temporary name and renamed; an existing file is kept unless ``--overwrite``.
After writing, the file is reloaded and compared with the eager network on new random inputs (batch 2,
another sentence length, one sample without text); a difference above ``--atol`` is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from custom_nets.bundle import bundle_dir, load_config, weights_from_checkpoint
from custom_nets.utils.files import write_atomically


def example_inputs(parser: ConfigParser, batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random (image, text_hidden, text_mask) with the config's channels, size and text encoder shape; (image,) for
    a bundle without a text encoder."""
    size = parser.get_parsed_content("image_size")
    image = torch.randn(batch, parser.get_parsed_content("in_channels"), *size, generator=generator)
    if not parser.get("text_encoder"):
        return (image,)
    width = parser.get_parsed_content("text_hidden_size")
    # networks that read every hidden layer name how many; the others (TAMISeg) read the last of any number
    layers = parser.get_parsed_content("text_num_layers") if parser.get("text_num_layers") else 2
    hidden = torch.randn(batch, layers, length, width, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    return image, hidden, mask


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="himix", help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=[], help="override files merged on train.json, e.g. demo.json")
    p.add_argument("--bundle-root", default=None, help="where models/model.pt is (default: bundles/<bundle>)")
    p.add_argument("--checkpoint", default=None, help="default: <bundle-root>/models/model.pt")
    p.add_argument("--format", choices=("torchscript", "exported_program"), default="torchscript")
    p.add_argument("--output", default=None, help="default: <bundle-root>/models/model.ts (.pt2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args(argv)

    try:
        parser = weights_from_checkpoint(load_config(args.bundle, *args.config))
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    configs = bundle_dir(args.bundle, "train.json") / "configs"
    bundle_root = Path(args.bundle_root or configs.parent)
    checkpoint = Path(args.checkpoint or bundle_root / "models" / "model.pt")
    suffix = ".ts" if args.format == "torchscript" else ".pt2"
    output = Path(args.output or bundle_root / "models" / f"model{suffix}")
    if not checkpoint.is_file():
        sys.exit(f"checkpoint not found: {checkpoint}")
    if output.exists() and not args.overwrite:
        sys.exit(f"{output} exists; pass --overwrite to replace it")
    parser["device"] = "cpu"
    uses_text = bool(parser.get("text_encoder"))

    network = parser.get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    g = torch.Generator().manual_seed(0)
    length = parser.get_parsed_content("text_max_length") if uses_text else 2  # the longest sentence it encodes
    extra = {name: json.dumps(ConfigParser.load_config_file(str(configs / name)))
             for name in ("metadata.json", "inference.json") if (configs / name).is_file()}
    diffs: list[float] = []

    def write_and_check(tmp: str) -> None:
        """Save to ``tmp``, reload, compare with the eager network; raising leaves no file behind."""
        if args.format == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(network, example_inputs(parser, 1, length, g))
            torch.jit.save(traced, tmp, _extra_files=extra)
            reloaded = torch.jit.load(tmp, map_location="cpu")
        else:
            batch, tokens = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("tokens", min=2, max=length)
            dynamic = ({0: batch}, {0: batch, 2: tokens}, {0: batch, 1: tokens}) if uses_text else ({0: batch},)
            program = torch.export.export(network, example_inputs(parser, 2, length, g), dynamic_shapes=dynamic)
            torch.export.save(program, tmp, extra_files=extra)
            reloaded = torch.export.load(tmp).module()
        inputs = example_inputs(parser, 2, max(2, length - 5), g)
        if uses_text:
            inputs[2][1] = 0  # the second sample has no text: the null-text path
        with torch.no_grad():
            diffs.append((reloaded(*inputs) - network(*inputs)).abs().max().item())
        if diffs[-1] > args.atol:
            raise RuntimeError(f"the exported network differs from the eager one by {diffs[-1]:.2e} > {args.atol}")

    write_atomically(output, write_and_check)
    diff = diffs[-1]
    print(f"wrote {output}; reloaded output differs from the eager network by at most {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
