"""The unet bundle's own behaviour through ``python -m monai.bundle`` (the checks every bundle passes are in
``tests/test_bundles.py``): refusals to overwrite, every metric of the evaluation, masks beside and never over
the inputs, mask orientation, and a corrupt image stopping the run at start-up.
"""

import csv
import hashlib
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import bundle_config_files, bundle_configs, data_args, run_bundle, run_in_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_overrides):
    return tiny_overrides["unet"]


@pytest.fixture(scope="module")
def trained(trained_bundle):
    root, logs = trained_bundle("unet")
    return root, logs[-1]


def test_training_refuses_to_replace_checkpoint(trained, tiny_demo, tiny):
    bundle_root, _ = trained
    before = (bundle_root / "models" / "model.pt").read_bytes()
    r = run_bundle("run", "training", "--config_file", bundle_configs("unet", "train.json", tiny=tiny),
                   "--bundle_root", str(bundle_root), "--epochs", "1", *data_args(tiny_demo))
    assert r.returncode != 0 and "already exist" in r.stdout and "--overwrite True" in r.stdout
    assert (bundle_root / "models" / "model.pt").read_bytes() == before


def test_evaluate_reports_all_metrics(trained, tiny_demo, tiny):
    bundle_root, _ = trained
    r = run_bundle("run", "evaluating", "--config_file", bundle_configs("unet", "train.json", "evaluate.json", tiny=tiny),
                   "--bundle_root", str(bundle_root), *data_args(tiny_demo))
    assert r.returncode == 0, r.stdout[-3000:]
    with open(bundle_root / "eval" / "metrics.csv") as f:
        metrics = {k: float(v) for k, v in csv.reader(f)}
    per_image = ("dice_mean", "iou_mean", "hd95", "assd")
    consistency = [f"consistency{gt}{part}" for gt in ("", "_gt") for part in ("", "_count", "_side", "_zone", "_stated", "_unparsed")]
    assert set(metrics) == {"dice_pooled", "iou_pooled", *per_image, *(f"{m}_{n}" for m in per_image for n in ("counted", "empty_gt")),
                            *consistency}
    assert all(metrics[f"{m}_counted"] == 4 and metrics[f"{m}_empty_gt"] == 0 for m in per_image)  # every test mask has a lesion
    assert 0 <= metrics["dice_mean"] <= 1 and 0 <= metrics["iou_pooled"] <= 1
    with open(bundle_root / "eval" / "dice_mean_raw.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all("test_" in row["filename"] for row in rows)  # one row per test case
    assert not list(bundle_root.glob(".eval.staging-*"))


def _digest(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_inference_writes_masks_beside_never_over_inputs(trained, tiny_demo, tiny):
    bundle_root, _ = trained
    root, _ = tiny_demo
    inputs = _digest(root)
    args = ["run", "inferring", "--config_file", bundle_configs("unet", "inference.json", tiny=tiny),
            "--bundle_root", str(bundle_root), *data_args(tiny_demo)]
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


def test_corrupt_image_stops_at_start_up(tiny_demo, tiny, tmp_path):
    """In this process (``monai.bundle.run``): the run raises, so ``python -m monai.bundle run`` exits non-zero."""
    root, datalist = tiny_demo
    data = tmp_path / "data"
    shutil.copytree(root, data)
    bad = data / "images" / "val_0001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(Exception) as failure:
        run_in_process("training", bundle_config_files("unet", "train.json", tiny=tiny), bundle_root=str(tmp_path / "b"),
                       data_root=str(data), datalist=str(datalist))
    assert "val_0001.png: unreadable image" in "".join(traceback.format_exception(failure.value))
    assert not (tmp_path / "b" / "models").exists()
