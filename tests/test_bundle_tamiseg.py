"""The tamiseg bundle end to end through ``python -m monai.bundle``: phase I, phase II (which loads phase I by
path), evaluation, inference, export, the missing-checkpoint refusal, metadata and the multi-GPU config.

A tiny override (random 4-layer text encoder, reduced ResNet, 2-block teacher, 64x64) is merged on the demo
override.
"""

import csv
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, config_files, data_args, run_bundle, write_override

pytestmark = pytest.mark.slow
CONFIGS = ROOT / "bundles" / "tamiseg" / "configs"
TINY = {
    "image_size": [64, 64],
    "text_encoder_id": "tiny-random-bert",
    "backbone_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
    "feature_width": 32,
    "decoder_width": 16,
    "text_hidden_size": 32,
    "num_heads": 2,
    "teacher_kwargs": {"depth": 4, "embed_dim": 32, "num_heads": 2},
    "pretrain_epochs": 1,
    "pretrain_batch_size": 4,
    "epochs": 1,
    "show_progress": False,
}


@pytest.fixture(scope="module")
def tiny_override(tmp_path_factory):
    return write_override(tmp_path_factory, "tamiseg_cfg", TINY)


def files(*names, tiny):
    return config_files(CONFIGS, *names, tiny=tiny)


@pytest.fixture(scope="module")
def trained(tiny_demo, tiny_override, tmp_path_factory):
    bundle_root = tmp_path_factory.mktemp("tamiseg_bundle")
    phase1 = run_bundle("run", "training", "--config_file", files("train.json", "pretrain.json", "demo.json", tiny=tiny_override),
                        "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert phase1.returncode == 0, phase1.stdout[-3000:]
    phase2 = run_bundle("run", "training", "--config_file", files("train.json", "demo.json", tiny=tiny_override),
                        "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert phase2.returncode == 0, phase2.stdout[-3000:]
    return bundle_root, phase1.stdout, phase2.stdout


def test_phase1_then_phase2_checkpoints(trained):
    bundle_root, log1, log2 = trained
    pre = torch.load(bundle_root / "models" / "pretrain" / "model.pt", weights_only=True)
    assert any(k.startswith("encoder.") for k in pre) and any(k.startswith("reduce.") for k in pre)
    assert "Epoch[1] Complete" in log1 and "val_mean_dice" in log1
    state = torch.load(bundle_root / "models" / "model.pt", weights_only=True)
    assert any(k.startswith("alignment.") for k in state) and any(k.startswith("branches.2.") for k in state)
    assert not any("teacher" in k for k in state)  # the teacher never enters the model
    assert "random weights" in log2  # the offline teacher says so
    # phase II started from phase I's encoder: after one epoch at lr 1e-3 the stem is near it, not at random init
    key = "encoder.conv1.weight"
    assert torch.nn.functional.cosine_similarity(pre[key].flatten(), state[key].flatten(), dim=0) > 0.9


def test_phase2_refuses_to_start_without_phase1_checkpoint(tiny_demo, tiny_override, tmp_path):
    r = run_bundle("run", "training", "--config_file", files("train.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path), *data_args(tiny_demo))
    assert r.returncode != 0
    assert f"phase I checkpoint not found: {tmp_path}/models/pretrain/model.pt" in r.stdout
    assert not (tmp_path / "models" / "model.pt").exists()
    assert "Epoch[1]" not in r.stdout  # refused before any training


@pytest.mark.parametrize("overrides", [["--distill_weight", "0", "--use_text", "False", "--encoder_init", "scratch"]])
def test_ablation_switches_run(tiny_demo, tiny_override, tmp_path, overrides):
    r = run_bundle("run", "training", "--config_file", files("train.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path), *data_args(tiny_demo), *overrides)
    assert r.returncode == 0, r.stdout[-3000:]
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert not any(k.startswith("alignment.") for k in state)
    assert "random weights" not in r.stdout  # no teacher was built


def test_evaluate_and_infer(trained, tiny_demo, tiny_override):
    bundle_root, _, _ = trained
    r = run_bundle("run", "evaluating", "--config_file", files("train.json", "evaluate.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    assert "random weights" not in r.stdout  # evaluation builds no teacher
    with open(bundle_root / "eval" / "metrics.csv") as f:
        metrics = {k: float(v) for k, v in csv.reader(f)}
    assert 0 <= metrics["dice_mean"] <= 1
    r = run_bundle("run", "inferring", "--config_file", files("inference.json", "demo.json", tiny=tiny_override),
                   "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    outputs = sorted((bundle_root / "output").rglob("*.png"))
    assert len(outputs) == 4 and all(np.asarray(Image.open(p)).shape == (64, 64) for p in outputs)


def test_export_reload_same_output(trained, tiny_override):
    bundle_root, _, _ = trained
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), "--bundle", "tamiseg", "--config", "demo.json",
                        str(tiny_override), "--bundle-root", str(bundle_root)], cwd=ROOT, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    assert float(re.search(r"differs from the eager network by at most (\S+)", r.stdout).group(1)) <= 1e-4
    code = ("import sys, torch; sys.modules['custom_nets'] = None; sys.modules['timm'] = None; m = torch.jit.load(sys.argv[1]);"
            "print(tuple(m(torch.randn(1, 1, 64, 64), torch.randn(1, 2, 5, 32), torch.ones(1, 5, dtype=torch.long)).shape))")
    r = subprocess.run([sys.executable, "-c", code, str(bundle_root / "models" / "model.ts")], cwd=ROOT, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0 and "(1, 1, 64, 64)" in r.stdout, r.stdout[-2000:]


def test_verify_metadata_and_net_in_out():
    r = run_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
                   "--filepath", str(ROOT / "schemas/meta_schema_20240725.json"))
    assert r.returncode == 0 and "metadata is verified with no error" in r.stdout, r.stdout[-2000:]
    r = run_bundle("verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
                   "--config_file", str(CONFIGS / "train.json"))
    assert r.returncode == 0 and "data shape of network is verified with no error" in r.stdout, r.stdout[-2000:]


def test_multi_gpu_config_runs_with_gloo_on_two_processes(trained, tiny_demo, tiny_override, tmp_path):
    bundle_root, _, _ = trained
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519"]
    r = run_bundle("run", "training", "--config_file", files("train.json", "demo.json", "multi_gpu_train.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path), "--phase1_checkpoint", str(bundle_root / "models" / "pretrain" / "model.pt"),
                   *data_args(tiny_demo), launcher=torchrun)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert r.stdout.count("SupervisedTrainer - INFO - Epoch[1] Complete") == 2
