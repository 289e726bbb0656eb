"""Request values are data: what a MONAI Label client sends reaches a bundle config only as a checked literal.

The end-to-end probes (a live server, files that must not appear) are in tests/test_monailabel.py; these check
the rules themselves, and that a value they let through stays a literal when MONAI's ConfigParser parses it.
"""

import json

import pytest
from monai.bundle import ConfigParser

from conftest import ROOT
from custom_nets.serving import RequestError, clean_infer_request, clean_train_request

DISPLAYABLE = {"prompt": "", "ct_window_centre": -600, "ct_window_width": 1500}
MODELS, DEVICES = ["model.pt"], ["cpu"]
SENTENCE = "Unilateral pulmonary infection, one infected area, middle left lung."


def infer(**values):
    return clean_infer_request({"model": "himix", "image": "test_0000", **values}, DISPLAYABLE, MODELS, DEVICES)


@pytest.mark.parametrize("prompt", [
    "$__import__('pathlib').Path('/tmp/owned').touch() or 'owned'",
    "  $print('x')",
    "@text_encoder_id",
    "%/etc/hostname#x",
    "%bundles/himix/configs/metadata.json#version",
    "left lung @#text_encoder_id",
    "upper::left",
    "rib #2 fracture",  # MONAI would turn it into "rib ::2 fracture"
    "\u200b\u202e$__import__('os').getpid()",  # invisible characters first: removed, then checked
])
def test_config_syntax_in_a_prompt_is_refused(prompt):
    with pytest.raises(RequestError, match="prompt must be plain text, not MONAI config syntax"):
        infer(prompt=prompt)


@pytest.mark.parametrize("value", [{"_target_": "subprocess.call", "args": ["id"]}, ["a"], 3, None])
def test_a_prompt_that_is_not_a_string_is_refused(value):
    with pytest.raises(RequestError, match=r"prompt must be a string, got (dict|list|int|NoneType)"):
        infer(prompt=value)


@pytest.mark.parametrize("centre,width,message", [
    ("$__import__('os').getpid()", 1500, "ct_window_centre must be a number"),
    ({"_target_": "os.getpid"}, 1500, "ct_window_centre must be a number, got dict"),
    ("nan", 1500, "ct_window_centre must be a finite number"),
    (-600, "inf", "ct_window_width must be a finite number"),
    (-600, 0, r"CT window width must be > 0 HU, got 0.0"),
    (-600, -5, r"CT window width must be > 0 HU"),
    (90000, 400, r"CT window centre must be within \[-2000, 5000\] HU"),
    (True, 400, "ct_window_centre must be a number, got bool"),
])
def test_ct_window_must_be_finite_and_sane(centre, width, message):
    with pytest.raises(RequestError, match=message):
        infer(prompt=SENTENCE, ct_window_centre=centre, ct_window_width=width)


def test_good_values_are_coerced_to_literals():
    out = infer(prompt=f"  {SENTENCE}\u200b\u0000 ", ct_window_centre="40", ct_window_width="400", device=["cpu"],
                model_filename="model.pt", output="all")
    assert out["prompt"] == SENTENCE and out["ct_window_centre"] == 40 and out["ct_window_width"] == 400.0
    assert out["device"] == "cpu" and out["model_filename"] == "model.pt" and out["output"] == "all"
    assert infer()["prompt"] == "" and infer()["ct_window_centre"] == -600  # missing keys take the defaults
    assert infer(prompt="x" * 5000)["prompt"] == "x" * 5000  # long, but text: the encoder truncates (and says so)
    with pytest.raises(RequestError, match="at most 10000"):
        infer(prompt="x" * 10001)


@pytest.mark.parametrize("key,value,message", [
    ("model_filename", "../../../../elsewhere/model.pt", r"model_filename must be one of \['model.pt'\]"),
    ("model_filename", "/etc/passwd", "model_filename must be one of"),
    ("device", "$__import__('os').getpid()", r"device must be one of \['cpu'\]"),
    ("device", {"_target_": "torch.device", "type": "cpu"}, "device must be one of"),
])
def test_choices_are_the_servers_own(key, value, message):
    with pytest.raises(RequestError, match=message):
        infer(prompt=SENTENCE, **{key: value})


def test_a_checked_prompt_stays_a_literal_in_the_bundle_config():
    """What the app writes into displayable_configs comes back unchanged from MONAI's ConfigParser."""
    tricky = "Upper left lung: 50% opacity, 2 areas @ base; $5 worth of 'quotes', a@b: and \\ back\"slash."
    out = infer(prompt=tricky, ct_window_centre="40", ct_window_width=400)
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "himix" / "configs" / "inference.json"))
    parser["displayable_configs"].update({k: out[k] for k in DISPLAYABLE})
    parser.parse()
    assert parser.get_parsed_content("displayable_configs#prompt") == tricky
    assert parser.get_parsed_content("ct_window_hu") == (-160.0, 240.0)


def test_training_requests():
    base = {"model": "himix", "max_epochs": 50, "val_split": 0.2, "tracking": ["None", "mlflow"], "run_id": "",
            "device": ["cpu"], "model_filename": ["model.pt"], "gpus": "all", "pretrained": True}
    out = clean_train_request({**base, "max_epochs": "3"}, {}, MODELS, DEVICES)  # MONAI Label's own defaults pass
    assert out["max_epochs"] == 3 and out["device"] == "cpu" and out["model_filename"] == "model.pt"
    for key, value, message in [
        ("max_epochs", "$__import__('os').getpid()", "max_epochs must be a number"),
        ("max_epochs", 0, "max_epochs must be a whole number from 1"),
        ("max_epochs", 2.5, "max_epochs must be a whole number"),
        ("val_split", 1.5, r"val_split must be in \[0, 1\)"),
        ("run_id", "initialize", r"run_id must be one of \['', 'run', 'training'\]"),
        ("tracking", "mlflow", "experiment tracking is off"),
        ("model_filename", "../x.pt", "model_filename must be one of"),
        ("gpus", "0;rm", "gpus must be 'all' or GPU numbers"),
        ("pretrained", "yes", "pretrained must be true or false"),
    ]:
        with pytest.raises(RequestError, match=message):
            clean_train_request({**base, key: value}, {}, MODELS, DEVICES)
    with pytest.raises(RequestError, match="prompt must be plain text"):
        clean_train_request({**base, "prompt": "@text_encoder_id"}, DISPLAYABLE, MODELS, DEVICES)
    json.dumps(out)  # still a JSON-able request


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", "..", ".", "", "x" * 129, "final\n", ["final"]])
def test_stored_names_are_never_paths(name):
    from custom_nets.serving import safe_name

    with pytest.raises(RequestError, match="label_tag must be a name of letters, digits"):
        safe_name("label_tag", name)
    assert safe_name("image", "test_0000.v2") == "test_0000.v2"
