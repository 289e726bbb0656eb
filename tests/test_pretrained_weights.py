"""The full configs start from the weights the authors used (ImageNet encoders, a pretrained DINOv3 teacher); when
those can be had neither from a local file, nor the cache, nor the hub, training stops at start-up with a message
naming the model, the override that turns them off and how to use a local weights file, and writes nothing."""

import json
import traceback

import pytest
import torch

from conftest import ROOT, bundle_config_files, run_in_process

pytestmark = pytest.mark.slow


def test_full_configs_default_to_the_authors_pretrained_weights_and_the_demo_turns_them_off():
    for bundle, keys in (("himix", ["imagenet_weights"]), ("tamiseg", ["imagenet_weights", "teacher_pretrained"]),
                         ("c2seg", ["imagenet_weights"]), ("lcpdn", ["clip_weights"])):
        train = json.loads((ROOT / "bundles" / bundle / "configs" / "train.json").read_text())
        demo = json.loads((ROOT / "bundles" / bundle / "configs" / "demo.json").read_text())
        assert all(train[k] is True for k in keys) and all(demo[k] is False for k in keys), bundle


def nothing_written(folder) -> bool:
    return not folder.exists() or not any(folder.rglob("*"))


@pytest.mark.parametrize("bundle, phase, switch, model", [
    ("himix", (), "imagenet_weights", "convnext_tiny.fb_in1k"),
    ("tamiseg", ("pretrain.json",), "imagenet_weights", "resnet50.tv_in1k"),
    ("tamiseg", (), "teacher_pretrained", "vit_small_patch16_dinov3.lvd1689m"),
    ("c2seg", ("pretrain.json",), "imagenet_weights", "resnet18.tv_in1k"),
    ("lcpdn", (), "clip_weights", "vit_base_patch16_clip_224.openai"),
])
def test_training_stops_at_start_up_without_the_weights(bundle, phase, switch, model, tiny_demo, tiny_overrides, tmp_path,
                                                        monkeypatch):
    """Offline with an empty cache: the run names the model, `--<switch> False` and pretrained_cfg_overlay. In this
    process (``monai.bundle.run``, as ``python -m monai.bundle run`` calls it), the hub's cache pointed at an empty
    folder: huggingface_hub reads ``constants.HF_HUB_CACHE`` at every download."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    root, (data_root, datalist) = tmp_path / "bundle", tiny_demo
    with pytest.raises(Exception) as failure:
        run_in_process("training", bundle_config_files(bundle, "train.json", *phase, tiny=tiny_overrides[bundle]),
                       bundle_root=str(root), data_root=str(data_root), datalist=str(datalist), train_items=4, **{switch: True})
    message = "".join(traceback.format_exception(failure.value))  # MONAI's config parser wraps the start-up error
    assert f"timm model '{model}'" in message and f"timm/{model}" in message, message[-3000:]
    assert f"`--{switch} False`" in message and "pretrained_cfg_overlay=dict(file=...)" in message
    assert nothing_written(root)  # no checkpoint folder, no logs, no label-budget record


def test_a_missing_local_weights_file_stops_training(tiny_demo, tiny_overrides, tmp_path):
    """The same start-up check for a local file that is not there (one bundle: the check is shared code,
    ``ensure_pretrained_weights``, tested for every message below)."""
    root, missing, (data_root, datalist) = tmp_path / "bundle", tmp_path / "no_such_weights.safetensors", tiny_demo
    with pytest.raises(Exception) as failure:
        run_in_process("training", bundle_config_files("himix", "train.json", tiny=tiny_overrides["himix"]),
                       bundle_root=str(root), data_root=str(data_root), datalist=str(datalist), imagenet_weights=str(missing))
    message = "".join(traceback.format_exception(failure.value))
    assert f"local weights file for timm model 'convnext_tiny.fb_in1k' not found: {missing}" in message
    assert nothing_written(root)


def test_a_local_weights_file_is_loaded(tmp_path):
    """The way the message gives: a local file through timm's pretrained_cfg_overlay, adapted to 1 channel."""
    import timm

    from custom_nets.backbones import create_image_encoder, ensure_pretrained_weights

    tiny = {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)}
    torch.manual_seed(0)
    source = timm.create_model("convnext_tiny", num_classes=0, **tiny)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    ensure_pretrained_weights("convnext_tiny.fb_in1k", str(tmp_path / "weights.pth"))  # found: no error
    encoder = create_image_encoder("convnext_tiny.fb_in1k", 3, pretrained=str(tmp_path / "weights.pth"), **tiny)
    assert torch.equal(encoder.stages_3.blocks[0].conv_dw.weight, source.stages[3].blocks[0].conv_dw.weight)
    grey = create_image_encoder("convnext_tiny.fb_in1k", 1, pretrained=str(tmp_path / "weights.pth"), **tiny)
    assert torch.allclose(grey.stem_0.weight[:, 0], source.stem[0].weight.sum(1))  # timm sums the RGB stem
    with pytest.raises(RuntimeError, match="`--imagenet_weights False`"):
        ensure_pretrained_weights("convnext_tiny.fb_in1k", str(tmp_path / "missing.pth"))
