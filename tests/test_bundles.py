"""The checks every bundle must pass, run over every bundle in ``tests/bundle_cases.py``, as a user runs them
(``python -m monai.bundle`` in subprocesses, tiny encoders, the tiny demo data set):
metadata and network shapes verified offline, training (every phase), evaluation, inference, training under
``torchrun`` with two gloo processes, and TorchScript export (``scripts/export.py``'s ``main``, in this process) that
reloads in a bare interpreter without this package.

A bundle's own behaviour (TAMISeg's phases, HiMix's text-sensitivity script, UNet's refusals) is tested in
``tests/test_bundle_<name>.py``.
"""

import csv
import json
import re
import subprocess
import sys
import traceback

import numpy as np
import pytest
import torch
from PIL import Image

from bundle_cases import BUNDLES
from conftest import ROOT, bundle_config_files, bundle_configs, data_args, load_script, run_bundle, run_in_process

pytestmark = pytest.mark.slow
NAMES = sorted(BUNDLES)
export_script = load_script("export.py")


def test_every_bundle_is_listed():
    """A bundle under bundles/ that the table does not list would escape every check below."""
    shipped = sorted(p.parent.parent.name for p in (ROOT / "bundles").glob("*/configs/metadata.json"))
    assert shipped == NAMES, f"add the missing bundles to tests/bundle_cases.py: {sorted(set(shipped) - set(NAMES))}"


@pytest.mark.parametrize("bundle", NAMES)
def test_verify_metadata_offline(bundle):
    """MONAI's ``verify_metadata`` (what ``python -m monai.bundle verify_metadata`` runs; in this process, which has
    MONAI imported already: a subprocess spends 10 s importing it) against the schema kept in the repository."""
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(ROOT / "bundles" / bundle / "configs" / "metadata.json"),
                    filepath=str(ROOT / "schemas/meta_schema_20240725.json"))  # raises on a violation


def test_verify_metadata_catches_a_violation(tmp_path):
    from monai.bundle import verify_metadata

    meta = json.loads((ROOT / "bundles" / "unet" / "configs" / "metadata.json").read_text())
    del meta["version"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'version' is a required property"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(ROOT / "schemas/meta_schema_20240725.json"))


@pytest.mark.parametrize("bundle", NAMES)
def test_verify_net_in_out_at_full_size(bundle):
    """The full network of train.json (not the tiny one) against metadata's network_data_format, with MONAI's
    ``verify_net_in_out`` (in this process, as above); offline, so without the pretrained weights (shapes do not
    depend on them)."""
    from monai.bundle import verify_net_in_out

    configs = ROOT / "bundles" / bundle / "configs"
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"),
                      config_file=str(configs / "train.json"), **BUNDLES[bundle].offline_overrides)  # raises on a mismatch


@pytest.mark.parametrize("bundle", NAMES)
def test_training_writes_a_plain_checkpoint_and_logs(bundle, trained_bundle):
    root, logs = trained_bundle(bundle)
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())  # the network's state_dict only
    assert not any(k.startswith(("module.", "student.", "teacher.")) for k in state)  # no wrapper, no teacher
    assert list((root / "logs").glob("events.out.tfevents.*"))
    assert "val_mean_dice" in logs[-1] and f"Epoch[{BUNDLES[bundle].epochs}] Complete" in logs[-1]
    assert all("Engine run finished" in log for log in logs)  # every phase ran to its end


@pytest.mark.parametrize("bundle", NAMES)
def test_evaluate_writes_metrics(bundle, trained_bundle, tiny_demo, tiny_overrides, tmp_path, capfd):
    root, _ = trained_bundle(bundle)
    data_root, datalist = tiny_demo
    run_in_process("evaluating", bundle_config_files(bundle, "train.json", "evaluate.json", tiny=tiny_overrides[bundle]),
                   bundle_root=str(root), output_dir=str(tmp_path / "eval"), data_root=str(data_root),
                   datalist=str(datalist))
    with open(tmp_path / "eval" / "metrics.csv") as f:
        metrics = {k: float(v) for k, v in csv.reader(f)}
    assert {"dice_mean", "dice_pooled", "iou_mean", "iou_pooled", "hd95", "assd"} <= set(metrics)
    assert 0 <= metrics["dice_mean"] <= 1 and 0 <= metrics["dice_pooled"] <= 1
    # text-mask consistency of the predictions and of the ground truth, over the cases whose sentence says something
    assert metrics["consistency_stated"] == metrics["consistency_gt_stated"] == 4 and metrics["consistency_unparsed"] == 0
    assert all(0 <= metrics[f"consistency{s}"] <= 1 for s in ("", "_count", "_side", "_zone", "_gt"))
    log = capfd.readouterr().out
    assert "Engine run finished" in log, log[-2000:]  # the run's log was captured
    assert "random weights" not in log  # evaluation builds no teacher


@pytest.mark.parametrize("bundle", NAMES)
def test_inference_writes_one_mask_per_test_image(bundle, trained_bundle, tiny_demo, tiny_overrides, tmp_path):
    root, _ = trained_bundle(bundle)
    data_root, datalist = tiny_demo
    run_in_process("inferring", bundle_config_files(bundle, "inference.json", tiny=tiny_overrides[bundle]),
                   bundle_root=str(root), output_dir=str(tmp_path / "output"), data_root=str(data_root),
                   datalist=str(datalist))
    outputs = sorted((tmp_path / "output").rglob("*.png"))
    assert [p.name for p in outputs] == [f"test_{i:04d}_seg.png" for i in range(4)]
    for p in outputs:
        mask = np.asarray(Image.open(p))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}


@pytest.mark.parametrize("bundle", NAMES)
def test_multi_gpu_config_runs_with_gloo_on_two_processes(bundle, trained_bundle, tiny_demo, tiny_overrides, tmp_path):
    root, _ = trained_bundle(bundle)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={29517 + NAMES.index(bundle)}"]
    extra = [a.format(bundle_root=root) for a in BUNDLES[bundle].multi_gpu_args]
    r = run_bundle("run", "training", "--config_file",
                   bundle_configs(bundle, "train.json", "multi_gpu_train.json", tiny=tiny_overrides[bundle]),
                   "--bundle_root", str(tmp_path), "--epochs", "1", "--train_items", "6", *extra, *data_args(tiny_demo),
                   launcher=torchrun, env={"PYTHONFAULTHANDLER": "1"})  # a rank that aborts prints its Python stack
    assert r.returncode == 0, r.stdout[-8000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    assert len(re.findall(r"Trainer - INFO - Epoch\[1\] Complete", r.stdout)) == 2  # both ranks trained
    assert json.loads((tmp_path / "models" / "training_subset.json").read_text())["count"] == 6  # by rank 0


@pytest.mark.parametrize("bundle", [n for n in NAMES if len(BUNDLES[n].phases) > 1])
def test_second_phase_refuses_to_start_without_the_first(bundle, tiny_demo, tiny_overrides, tmp_path, capfd):
    """train.json of a two-phase bundle (TAMISeg, C2Seg, LCPDN) loads phase I's encoder (denoiser) by path: without that file it stops
    before any training and writes nothing, naming the path (in this process: ``monai.bundle.run``, which
    ``python -m monai.bundle run`` calls, raises what makes that command exit non-zero)."""
    data_root, datalist = tiny_demo
    with pytest.raises(Exception) as failure:
        run_in_process("training", bundle_config_files(bundle, "train.json", tiny=tiny_overrides[bundle]),
                       bundle_root=str(tmp_path), data_root=str(data_root), datalist=str(datalist))
    message = "".join(traceback.format_exception(failure.value))
    assert f"phase I checkpoint not found: {tmp_path}/models/pretrain/model.pt" in message
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*"))  # nothing written
    assert "Epoch[1]" not in capfd.readouterr().out  # refused before any training


@pytest.mark.parametrize("bundle", [n for n in NAMES if BUNDLES[n].exportable])
def test_torchscript_export_reloads_without_this_package(bundle, trained_bundle, tiny_overrides, capsys):
    """``scripts/export.py`` (its ``main``, in this process: the script's command line is run in a process of its own by
    ``tests/test_bundle_himix.py``), then the TorchScript file loaded by a bare interpreter without this package."""
    root, _ = trained_bundle(bundle)
    assert export_script.main(["--bundle", bundle, "--config", "demo.json", str(tiny_overrides[bundle]),
                               "--bundle-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert float(re.search(r"differs from the eager network by at most (\S+)", out).group(1)) <= 1e-4
    text = BUNDLES[bundle].export_input
    inputs = "torch.randn(2, 1, 96, 96)" + ("" if text is None else
                                           f", torch.randn(2, {text[1]}, 7, {text[2]}), torch.ones(2, 7, dtype=torch.long)")
    code = ("import sys, torch; sys.modules['custom_nets'] = None; sys.modules['timm'] = None;"
            f"m = torch.jit.load(sys.argv[1]); print(tuple(m({inputs}).shape))")
    r = subprocess.run([sys.executable, "-c", code, str(root / "models" / "model.ts")], cwd=ROOT, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0 and "(2, 1, 96, 96)" in r.stdout, r.stdout[-2000:]
