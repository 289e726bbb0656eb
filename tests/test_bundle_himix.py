"""The himix bundle end to end through ``python -m monai.bundle`` and the scripts, as a user runs them.

A tiny override (random 4-layer text encoder, reduced ConvNeXt, 64x64) is merged on top of the demo override.
"""

import csv
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from conftest import ROOT, config_files, data_args, run_bundle, write_override

pytestmark = pytest.mark.slow
CONFIGS = ROOT / "bundles" / "himix" / "configs"
TINY = {
    "image_size": [64, 64],
    "text_encoder_id": "tiny-random-bert",
    "backbone_kwargs": {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]},
    "text_hidden_size": 32,
    "text_num_layers": 4,
    "num_heads": 2,
    "show_progress": False,
}


@pytest.fixture(scope="module")
def tiny_override(tmp_path_factory):
    return write_override(tmp_path_factory, "himix_cfg", TINY)


def files(*names, tiny):
    return config_files(CONFIGS, *names, tiny=tiny)


def script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


@pytest.fixture(scope="module")
def trained(tiny_demo, tiny_override, tmp_path_factory):
    bundle_root = tmp_path_factory.mktemp("himix_bundle")
    r = run_bundle("run", "training", "--config_file", files("train.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(bundle_root), "--epochs", "2", *data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    return bundle_root, r.stdout


def test_training_writes_checkpoint_with_text_network(trained):
    bundle_root, log = trained
    state = torch.load(bundle_root / "models" / "model.pt", weights_only=True)
    assert "null_text" in state and any(k.startswith("layer_fusion.") for k in state)
    assert any(k.startswith("stages.0.asrm.") for k in state)
    assert "val_mean_dice" in log and "Epoch[2]" in log


def test_evaluate(trained, tiny_demo, tiny_override):
    bundle_root, _ = trained
    r = run_bundle("run", "evaluating", "--config_file", files("train.json", "evaluate.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    with open(bundle_root / "eval" / "metrics.csv") as f:
        metrics = {k: float(v) for k, v in csv.reader(f)}
    assert {"dice_mean", "dice_pooled", "hd95"} <= set(metrics) and 0 <= metrics["dice_mean"] <= 1


def test_inference_with_datalist_sentences(trained, tiny_demo, tiny_override):
    bundle_root, _ = trained
    r = run_bundle("run", "inferring", "--config_file", files("inference.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    outputs = sorted((bundle_root / "output").rglob("*.png"))
    assert [p.name for p in outputs] == [f"test_{i:04d}_seg.png" for i in range(4)]
    assert all(np.asarray(Image.open(p)).shape == (64, 64) for p in outputs)


def test_inference_config_reads_the_prompt(tiny_override):
    """The inferer of inference.json takes ``displayable_configs#prompt``, and the sentence reaches the network."""
    outputs = {}
    for prompt in ("Unilateral pulmonary infection, one infected area, upper left lung.",
                   "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.", ""):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "demo.json"), str(tiny_override)])
        parser["displayable_configs#prompt"] = prompt
        parser["device"] = "cpu"
        torch.manual_seed(0)
        network, inferer = parser.get_parsed_content("network_def").eval(), parser.get_parsed_content("inferer")
        assert inferer.prompt == prompt
        with torch.no_grad():
            outputs[prompt] = inferer(torch.ones(1, 1, 64, 64), network)
    first, second, empty = outputs.values()
    assert first.shape == (1, 1, 64, 64)
    assert not torch.allclose(first, second) and not torch.allclose(first, empty)


def test_text_sensitivity_script(trained, tiny_demo, tiny_override):
    bundle_root, _ = trained
    root, datalist = tiny_demo
    r = script("text_sensitivity.py", "--config", "demo.json", str(tiny_override), "--bundle-root", str(bundle_root),
               "--datalist", str(datalist), "--data-root", str(root))
    assert r.returncode == 0, r.stdout[-3000:]
    assert "test split: 4 images" in r.stdout
    drops = dict(re.findall(r"DICE DROP (\w+): (-?[0-9.]+|nan)", r.stdout))
    assert set(drops) == {"laterality", "zones"}
    assert re.search(r"zones replaced\s+4\s", r.stdout)


def test_text_sensitivity_refuses_image_only_bundle():
    r = script("text_sensitivity.py", "--bundle", "unet")
    assert r.returncode != 0 and "no text encoder" in r.stdout


@pytest.mark.parametrize("fmt, suffix", [("torchscript", ".ts"), ("exported_program", ".pt2")])
def test_export_reload_same_output(trained, tiny_override, fmt, suffix):
    bundle_root, _ = trained
    args = ["--config", "demo.json", str(tiny_override), "--bundle-root", str(bundle_root), "--format", fmt]
    r = script("export.py", *args)
    assert r.returncode == 0, r.stdout[-3000:]
    diff = float(re.search(r"differs from the eager network by at most (\S+)", r.stdout).group(1))
    assert diff <= 1e-4
    exported = bundle_root / "models" / f"model{suffix}"
    before = exported.read_bytes()
    again = script("export.py", *args)
    assert again.returncode != 0 and "--overwrite" in again.stdout and exported.read_bytes() == before
    assert not list(exported.parent.glob(".model*"))  # no temporary file left behind


def test_exported_torchscript_runs_without_custom_nets(trained, tmp_path):
    """The traced file needs torch only: image, text tensors and an all-zero mask (no text) in a clean process."""
    bundle_root, _ = trained
    code = ("import sys, torch; sys.modules['custom_nets'] = None; m = torch.jit.load(sys.argv[1]);"
            "mask = torch.ones(2, 7, dtype=torch.long); mask[1] = 0;"
            "print(tuple(m(torch.randn(2, 1, 96, 96), torch.randn(2, 4, 7, 32), mask).shape))")
    r = subprocess.run([sys.executable, "-c", code, str(bundle_root / "models" / "model.ts")], cwd=ROOT, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0 and "(2, 1, 96, 96)" in r.stdout, r.stdout[-2000:]


def test_verify_metadata_offline():
    r = run_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
                   "--filepath", str(ROOT / "schemas/meta_schema_20240725.json"))
    assert r.returncode == 0 and "metadata is verified with no error" in r.stdout, r.stdout[-2000:]


def test_verify_net_in_out_full_size_image_only():
    r = run_bundle("verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
                   "--config_file", str(CONFIGS / "train.json"))
    assert r.returncode == 0 and "data shape of network is verified with no error" in r.stdout, r.stdout[-2000:]


def test_multi_gpu_config_runs_with_gloo_on_two_processes(tiny_demo, tiny_override, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29518"]
    r = run_bundle("run", "training", "--config_file", files("train.json", "demo.json", "multi_gpu_train.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path), "--epochs", "1", *data_args(tiny_demo), launcher=torchrun)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert r.stdout.count("SupervisedTrainer - INFO - Epoch[1] Complete") == 2
