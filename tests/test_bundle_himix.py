"""The himix bundle's own behaviour through ``python -m monai.bundle`` and the scripts (the checks every bundle
passes are in ``tests/test_bundles.py``): the text network in the checkpoint, sentences from the datalist and
from ``displayable_configs#prompt``, the text-sensitivity script, and ExportedProgram export.
"""

import re
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import ROOT, load_script

pytestmark = pytest.mark.slow
CONFIGS = ROOT / "bundles" / "himix" / "configs"


@pytest.fixture(scope="module")
def tiny_override(tiny_overrides):
    return tiny_overrides["himix"]


@pytest.fixture(scope="module")
def trained(trained_bundle):
    root, logs = trained_bundle("himix")
    return root, logs[-1]


def script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


def test_training_writes_checkpoint_with_text_network(trained):
    bundle_root, log = trained
    state = torch.load(bundle_root / "models" / "model.pt", weights_only=True)
    assert "null_text" in state and any(k.startswith("layer_fusion.") for k in state)
    assert any(k.startswith("stages.0.asrm.") for k in state)


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
    assert set(drops) == {"laterality", "zones", "count"}
    assert re.search(r"^zones\s+changing\s+4\s", r.stdout, flags=re.M)
    assert re.search(r"^abbreviations\s+preserving\s+4\s", r.stdout, flags=re.M)


def test_text_sensitivity_names_a_missing_checkpoint(tmp_path):
    r = script("text_sensitivity.py", "--bundle", "himix", "--bundle-root", str(tmp_path))
    assert r.returncode != 0 and f"no checkpoint at {tmp_path / 'models' / 'model.pt'}" in r.stdout


def test_exported_program_reloads_with_the_same_output(trained, tiny_override):
    bundle_root, _ = trained
    args = ["--config", "demo.json", str(tiny_override), "--bundle-root", str(bundle_root), "--format", "exported_program"]
    r = script("export.py", *args)
    assert r.returncode == 0, r.stdout[-3000:]
    diff = float(re.search(r"differs from the eager network by at most (\S+)", r.stdout).group(1))
    assert diff <= 1e-4
    exported = bundle_root / "models" / "model.pt2"
    before = exported.read_bytes()
    with pytest.raises(SystemExit) as again:  # the same command again, in this process (its exit message)
        load_script("export.py").main(["--bundle", "himix", *args])
    assert "--overwrite" in str(again.value.code) and exported.read_bytes() == before
    assert not list(exported.parent.glob(".model*"))  # no temporary file left behind
