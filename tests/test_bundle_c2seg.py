"""The c2seg bundle's own behaviour (the checks every bundle passes are in ``tests/test_bundles.py``): stage I (CaCL)
then stage II loading stage I's encoder by path, the Table 3 ablation switches, and the stage I checkpoint written
only on completion (the missing-checkpoint refusal is a check of every two-phase bundle in ``tests/test_bundles.py``).
"""

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import ROOT, bundle_configs, data_args, run_bundle

pytestmark = pytest.mark.slow
CONFIGS = ROOT / "bundles" / "c2seg" / "configs"


@pytest.fixture(scope="module")
def tiny_override(tiny_overrides):
    return tiny_overrides["c2seg"]


def files(*names, tiny):
    return bundle_configs("c2seg", *names, tiny=tiny)


def parsed(tiny, *names, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in ("train.json", *names, "demo.json")] + [str(tiny)])
    parser.update(overrides)
    return parser


def test_stage1_then_stage2_checkpoints(trained_bundle):
    root, (log1, log2) = trained_bundle("c2seg")
    pre = torch.load(root / "models" / "pretrain" / "model.pt", weights_only=True)
    assert {k.split(".")[0] for k in pre} == {"encoder", "image_projection", "text_projection"}
    assert "saved the final checkpoint (epoch 1)" in log1 and "val_mean_dice" not in log1  # no mask metric in stage I
    final = torch.load(root / "models" / "model.pt", weights_only=True)
    assert {k.split(".")[0] for k in final} == {"encoder", "decoder", "fusion", "head", "null_text"}
    assert not list((root / "models" / "pretrain").glob(".model.pt.*"))  # no temporary file left


def test_stage2_starts_from_the_stage1_encoder(tiny_override, tmp_path):
    """initialize_encoder puts the stage I network's encoder, weight for weight, into the stage II network."""
    from custom_nets.backbones import initialize_encoder

    stage1 = parsed(tiny_override, "pretrain.json").get_parsed_content("network_def")
    path = tmp_path / "model.pt"
    torch.save(stage1.state_dict(), path)
    stage2 = parsed(tiny_override).get_parsed_content("network_def")
    assert not torch.equal(stage2.encoder.conv1.weight, stage1.encoder.conv1.weight)
    initialize_encoder(stage2, "phase1", str(path))
    assert all(torch.equal(a, b) for a, b in zip(stage2.encoder.state_dict().values(), stage1.encoder.state_dict().values()))


@pytest.mark.parametrize("overrides, missing, kept", [
    ({"gate": "mlp"}, ["fusion.0.gate.layers"], ["fusion.0.gate.mlp", "fusion.0.vision_attn", "fusion.0.lang_query"]),
    ({"gate": "none"}, ["fusion.0.gate"], ["fusion.0.vision_attn", "fusion.0.lang_query"]),
    ({"bcam_paths": "vision"}, ["fusion.0.lang_query"], ["fusion.0.vision_attn", "fusion.0.gate.layers"]),
    ({"bcam_paths": "language"}, ["fusion.0.vision_attn"], ["fusion.0.lang_query", "fusion.0.gate.layers"]),
    ({"use_text": False}, ["fusion", "null_text"], ["decoder"]),
], ids=["gate_mlp", "gate_none", "vision_path", "language_path", "text_off"])
def test_ablation_switches_build_the_network_they_name(tiny_override, overrides, missing, kept):
    """Table 3's architecture steps, through the config keys train.json and inference.json share."""
    for name in ("train.json", "inference.json"):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / name), str(CONFIGS / "demo.json"), str(tiny_override)])
        parser.update(overrides)
        net = parser.get_parsed_content("network_def").eval()
        keys = list(net.state_dict())
        assert not any(k.startswith(tuple(missing)) for k in keys), (name, missing)
        assert all(any(k.startswith(p) for k in keys) for p in kept), (name, kept)
        with torch.no_grad():
            out = net(torch.randn(2, 1, 64, 64), torch.randn(2, 4, 5, 32), torch.ones(2, 5, dtype=torch.long))
        assert out.shape == (2, 1, 64, 64)


def test_cacl_off_is_rho_zero(tiny_override):
    assert parsed(tiny_override, "pretrain.json").get_parsed_content("loss").cacl.rho == 0.8
    assert parsed(tiny_override, "pretrain.json", cacl_rho=0.0).get_parsed_content("loss").cacl.rho == 0.0


def test_ablations_train_through_the_bundle(tiny_demo, tiny_override, tmp_path):
    """Stage I with CaCL off, then stage II with stage I skipped and K-Gate replaced, end to end."""
    r = run_bundle("run", "training", "--config_file", files("train.json", "pretrain.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path), *data_args(tiny_demo), "--cacl_rho", "0.0")
    assert r.returncode == 0, r.stdout[-3000:]
    r = run_bundle("run", "training", "--config_file", files("train.json", tiny=tiny_override),
                   "--bundle_root", str(tmp_path / "scratch"), *data_args(tiny_demo), "--encoder_init", "scratch",
                   "--gate", "mlp", "--bcam_paths", "language")
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "scratch" / "models" / "model.pt").is_file()


def test_final_checkpoint_is_written_only_when_training_completes(tmp_path):
    from ignite.engine import Engine

    from custom_nets.handlers import FinalCheckpoint

    net = torch.nn.Linear(2, 1)

    def step(engine, batch):
        if engine.state.epoch == 2 and engine.state.iteration == 3:
            raise RuntimeError("crash in epoch 2")

    crashing = Engine(step)
    FinalCheckpoint(tmp_path / "crash" / "model.pt", net).attach(crashing)
    with pytest.raises(RuntimeError, match="crash in epoch 2"):
        crashing.run([0, 1], max_epochs=3)
    assert not (tmp_path / "crash").exists() or not any((tmp_path / "crash").iterdir())  # no model.pt, no temp file

    finishing = Engine(lambda e, b: None)
    FinalCheckpoint(tmp_path / "done" / "model.pt", net).attach(finishing)
    FinalCheckpoint(tmp_path / "rank1" / "model.pt", net, main_process=False).attach(finishing)
    finishing.run([0, 1], max_epochs=2)
    assert torch.equal(torch.load(tmp_path / "done" / "model.pt", weights_only=True)["weight"], net.weight)
    assert not (tmp_path / "rank1").exists()
