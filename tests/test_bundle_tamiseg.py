"""The tamiseg bundle's own behaviour through ``python -m monai.bundle`` (the checks every bundle passes are in
``tests/test_bundles.py``, the missing-checkpoint refusal among them): phase I, then phase II loading phase I by
path, and the ablation switches.
"""

import pytest
import torch

from conftest import bundle_configs, data_args, run_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_override(tiny_overrides):
    return tiny_overrides["tamiseg"]


def files(*names, tiny):
    return bundle_configs("tamiseg", *names, tiny=tiny)


@pytest.fixture(scope="module")
def trained(trained_bundle):
    root, (log1, log2) = trained_bundle("tamiseg")
    return root, log1, log2


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


@pytest.mark.parametrize("overrides", [["--distill_weight", "0", "--use_text", "False", "--encoder_init", "scratch"]])
def test_ablation_switches_run(tiny_demo, tiny_override, tmp_path, overrides):
    r = run_bundle("run", "training", "--config_file", files("train.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path), *data_args(tiny_demo), *overrides)
    assert r.returncode == 0, r.stdout[-3000:]
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert not any(k.startswith("alignment.") for k in state)
    assert "random weights" not in r.stdout  # no teacher was built
