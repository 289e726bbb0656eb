#!/usr/bin/env python
"""Slice-wise CT inference cost on this machine: slices/s and peak memory for a synthetic volume.

    python scripts/benchmark_volume.py --bundle-root runs/demo/himix --config demo.json      # trained demo bundle
    python scripts/benchmark_volume.py --shape 512 512 300 --slice-batch 8

Runs the same path as ``scripts/infer_dicom.py`` (lung window, ``SliceInferer`` over axial slices, resize
to the training size and back, the sentence encoded once) on a random HU volume, and writes the NIfTI mask
to a temporary folder. Peak memory is the process's maximum resident set size (``ru_maxrss``), which
includes Python, torch and the model; the volume-only part is shown as the growth over the baseline taken
after the model is loaded. Without a checkpoint, random weights from the config are used (same cost).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="himix", help="a bundle name under bundles/ or a bundle folder")
    p.add_argument("--config", nargs="*", default=["demo.json"])
    p.add_argument("--bundle-root", default=None, help="where models/model.pt is; random weights when absent")
    p.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300], metavar=("X", "Y", "Z"))
    p.add_argument("--slice-batch", type=int, default=8)
    p.add_argument("--text", default="Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.")
    args = p.parse_args(argv)

    from custom_nets.bundle import load_config
    from custom_nets.clinical.inference import BundleSegmenter
    from custom_nets.clinical.io import Volume
    from custom_nets.clinical.outputs import save_nifti

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.bundle_root) if args.bundle_root else Path(tmp) / "bundle"
        checkpoint = root / "models" / "model.pt"
        if not checkpoint.is_file():
            parser = load_config(args.bundle, *args.config, main="inference.json")
            checkpoint.parent.mkdir(parents=True)
            torch.save(parser.get_parsed_content("network_def").state_dict(), checkpoint)
            print(f"no checkpoint under {args.bundle_root}: random weights from the config (same cost)")
        segmenter = BundleSegmenter(args.bundle, args.config, bundle_root=str(root), slice_batch=args.slice_batch)
        segmenter.segment_volume(Volume(np.zeros((64, 64, 2), np.float32), np.eye(4), "warm-up"), args.text)
        baseline = rss_mb()
        volume = Volume(np.random.default_rng(0).normal(-600, 400, args.shape).astype(np.float32), np.eye(4), "synthetic")
        t0 = time.perf_counter()
        mask = segmenter.segment_volume(volume, args.text)
        seconds = time.perf_counter() - t0
        save_nifti(mask, volume.affine, Path(tmp) / "seg.nii.gz")
        peak = rss_mb()

    x, y, z = args.shape
    print(f"bundle {Path(args.bundle).name} {' + '.join(args.config)} | volume {x}x{y}x{z} float32 "
          f"({volume.array.nbytes / 2**20:.0f} MiB), slice batch {args.slice_batch}, {torch.get_num_threads()} threads")
    print(f"inference: {seconds:.1f} s, {z / seconds:.1f} slices/s (windowing, resize, network, resize back, threshold)")
    print(f"peak memory (max RSS): {peak:.0f} MiB; after model load {baseline:.0f} MiB; growth for the volume {peak - baseline:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
