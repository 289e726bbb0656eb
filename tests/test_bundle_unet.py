"""The unet bundle end to end through ``python -m monai.bundle``, as a user runs it (subprocesses, tiny data)."""

import csv
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, configs, run_bundle

pytestmark = pytest.mark.slow
SMALL = ["--image_size", "[64,64]", "--show_progress", "False"]


def _data_args(tiny_demo):
    root, datalist = tiny_demo
    return ["--data_root", str(root), "--datalist", str(datalist)]


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    bundle_root = tmp_path_factory.mktemp("unet_bundle")
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json", "demo.json"),
                   "--bundle_root", str(bundle_root), "--epochs", "2", *SMALL, *_data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    return bundle_root, r.stdout


def test_training_writes_checkpoint_and_logs(trained):
    bundle_root, log = trained
    state = torch.load(bundle_root / "models" / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert list(state)[0].startswith("conv_0")  # a plain state_dict of the network, no wrapper keys
    assert list((bundle_root / "logs").glob("events.out.tfevents.*"))
    assert "val_mean_dice" in log and "Epoch[2]" in log


def test_training_refuses_to_replace_checkpoint(trained, tiny_demo):
    bundle_root, _ = trained
    before = (bundle_root / "models" / "model.pt").read_bytes()
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json", "demo.json"),
                   "--bundle_root", str(bundle_root), "--epochs", "1", *SMALL, *_data_args(tiny_demo))
    assert r.returncode != 0 and "already exist" in r.stdout and "--overwrite True" in r.stdout
    assert (bundle_root / "models" / "model.pt").read_bytes() == before


def test_evaluate_reports_all_metrics(trained, tiny_demo):
    bundle_root, _ = trained
    r = run_bundle("run", "evaluating", "--config_file", configs("unet", "train.json", "evaluate.json", "demo.json"),
                   "--bundle_root", str(bundle_root), *SMALL, *_data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    with open(bundle_root / "eval" / "metrics.csv") as f:
        metrics = {k: float(v) for k, v in csv.reader(f)}
    per_image = ("dice_mean", "iou_mean", "hd95", "assd")
    assert set(metrics) == {"dice_pooled", "iou_pooled", *per_image, *(f"{m}_{n}" for m in per_image for n in ("counted", "empty_gt"))}
    assert all(metrics[f"{m}_counted"] == 4 and metrics[f"{m}_empty_gt"] == 0 for m in per_image)  # every test mask has a lesion
    assert 0 <= metrics["dice_mean"] <= 1 and 0 <= metrics["iou_pooled"] <= 1
    with open(bundle_root / "eval" / "dice_mean_raw.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all("test_" in row["filename"] for row in rows)  # one row per test case
    assert not list(bundle_root.glob(".eval.staging-*"))


def _digest(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_inference_writes_masks_beside_never_over_inputs(trained, tiny_demo):
    bundle_root, _ = trained
    root, _ = tiny_demo
    inputs = _digest(root)
    args = ["run", "inferring", "--config_file", configs("unet", "inference.json", "demo.json"),
            "--bundle_root", str(bundle_root), "--image_size", "[64,64]", *_data_args(tiny_demo)]
    r = run_bundle(*args)
    assert r.returncode == 0, r.stdout[-3000:]
    outputs = sorted((bundle_root / "output").rglob("*.png"))
    assert [p.name for p in outputs] == [f"test_{i:04d}_seg.png" for i in range(4)]
    for p in outputs:
        mask = np.asarray(Image.open(p))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    assert _digest(root) == inputs
    written = _digest(bundle_root / "output")

    again = run_bundle(*args)  # a second run must not replace the first run's masks unasked
    assert again.returncode != 0 and "already exist" in again.stdout and "test_0000_seg.png" in again.stdout
    assert _digest(bundle_root / "output") == written
    for leftover in bundle_root.glob(".output.staging-*"):  # the second run's results were kept aside
        shutil.rmtree(leftover)


def test_saved_mask_orientation_matches_input(tmp_path):
    """Load and save through the inference transforms' readers/writers: the mask lands where it was."""
    from monai.transforms import LoadImaged, SaveImaged

    arr = np.zeros((16, 24), dtype=np.uint8)
    arr[3:5, 18:21] = 255
    Image.fromarray(arr).save(tmp_path / "x.png")
    d = LoadImaged("image", ensure_channel_first=True, image_only=True)({"image": str(tmp_path / "x.png")})
    SaveImaged("image", output_dir=str(tmp_path / "o"), output_postfix="seg", output_ext=".png", separate_folder=False,
               output_dtype=np.uint8, scale=None, resample=False, print_log=False)(d)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "x_seg.png")), arr)


def test_verify_metadata_offline():
    r = run_bundle("verify_metadata", "--meta_file", str(ROOT / "bundles/unet/configs/metadata.json"),
                   "--filepath", str(ROOT / "schemas/meta_schema_20240725.json"))
    assert r.returncode == 0 and "metadata is verified with no error" in r.stdout, r.stdout[-2000:]


def test_verify_net_in_out():
    r = run_bundle("verify_net_in_out", "network_def", "--meta_file", str(ROOT / "bundles/unet/configs/metadata.json"),
                   "--config_file", configs("unet", "train.json"))
    assert r.returncode == 0 and "data shape of network is verified with no error" in r.stdout, r.stdout[-2000:]


def test_corrupt_image_stops_at_start_up(tiny_demo, tmp_path):
    root, datalist = tiny_demo
    data = tmp_path / "data"
    shutil.copytree(root, data)
    bad = data / "images" / "val_0001.png"
    bad.write_bytes(b"not a png at all")
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json", "demo.json"),
                   "--bundle_root", str(tmp_path / "b"), *SMALL, "--data_root", str(data), "--datalist", str(datalist))
    assert r.returncode != 0 and "val_0001.png: unreadable image" in r.stdout
    assert not (tmp_path / "b" / "models").exists()


def test_multi_gpu_config_runs_with_gloo_on_two_processes(tiny_demo, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json", "demo.json", "multi_gpu_train.json"),
                   "--bundle_root", str(tmp_path), "--epochs", "1", *SMALL, *_data_args(tiny_demo), launcher=torchrun)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert r.stdout.count("SupervisedTrainer - INFO - Epoch[1] Complete") == 2  # both ranks trained
