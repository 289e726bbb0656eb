"""Label budgets (a seeded subset of the training split only) and the mask rule a datalist records (issue: data sets
as published): through each bundle's own config, and once end to end through ``python -m monai.bundle run training``."""

import json
import re

import pytest
from monai.bundle import ConfigParser

from conftest import ROOT, configs, run_bundle

BUNDLES = ("unet", "himix", "tamiseg")


def raises_with(message: str, call) -> None:
    """``call()`` raises, and the error or one it came from (ConfigParser wraps them) matches ``message``."""
    with pytest.raises(Exception) as info:
        call()
    chain, error = [], info.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(re.search(message, text) for text in chain), chain


def parsed(bundle: str, tiny_demo, **overrides) -> ConfigParser:
    root, datalist = tiny_demo
    parser = ConfigParser()
    parser.read_config([str(ROOT / "bundles" / bundle / "configs" / f) for f in ("train.json", "demo.json")])
    parser.update({"data_root": str(root), "datalist": str(datalist), "verify_images": False, **overrides})
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
def test_budgets_cut_the_training_split_only(bundle, tiny_demo):
    whole = parsed(bundle, tiny_demo)
    n_train, n_val = len(whole.get_parsed_content("train#datalist")), len(whole.get_parsed_content("validate#datalist"))
    images = lambda p: [d["image"] for d in p.get_parsed_content("train#datalist")]  # noqa: E731
    three = parsed(bundle, tiny_demo, train_items=3, train_seed=1)
    assert len(images(three)) == 3 and len(three.get_parsed_content("validate#datalist")) == n_val
    assert images(three) == images(parsed(bundle, tiny_demo, train_items=3, train_seed=1))  # same seed, same subset
    assert images(three) != images(parsed(bundle, tiny_demo, train_items=3, train_seed=2))  # another seed, another
    half = parsed(bundle, tiny_demo, train_fraction=0.5)
    assert len(images(half)) == round(0.5 * n_train) and set(images(three)) <= set(images(whole))
    for bad, message in (({"train_items": 0}, "train_items must be a whole number from 1"),
                         ({"train_items": n_train + 1}, "train_items must be a whole number from 1"),
                         ({"train_fraction": 1.5}, r"train_fraction must be in \(0, 1\]"),
                         ({"train_items": 2, "train_fraction": 0.5}, "not both")):
        raises_with(message, lambda: parsed(bundle, tiny_demo, **bad).get_parsed_content("train#datalist"))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_mask_rule_from_the_datalist_unless_given(bundle, tiny_demo, tmp_path):
    root, datalist = tiny_demo
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps({**json.loads(datalist.read_text()), "mask_rule": "half"}))
    assert parsed(bundle, tiny_demo).get_parsed_content("mask_rule_used") == "nonzero"  # the demo records none
    assert parsed(bundle, tiny_demo, datalist=str(recorded)).get_parsed_content("mask_rule_used") == "half"
    assert parsed(bundle, tiny_demo, datalist=str(recorded), mask_rule="255").get_parsed_content("mask_rule_used") == "255"
    binarize = [t for t in parsed(bundle, tiny_demo, datalist=str(recorded)).get_parsed_content("load_transforms")
                if type(t).__name__ == "BinarizeMaskd"]
    assert binarize and binarize[0].rule == "half"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**json.loads(datalist.read_text()), "mask_rule": "most"}))
    raises_with(r"mask rule 'most' \(recorded in the datalist .*wrong.json\) is not one of",
                lambda: parsed(bundle, tiny_demo, datalist=str(wrong)).get_parsed_content("mask_rule_used"))


@pytest.mark.slow
def test_budget_through_monai_bundle_run_training(tiny_demo, tmp_path):
    root, datalist = tiny_demo
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps({**json.loads(datalist.read_text()), "mask_rule": "half"}))
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json", "demo.json"), "--bundle_root",
                   str(tmp_path / "run"), "--data_root", str(root), "--datalist", str(recorded), "--epochs", "1",
                   "--image_size", "[32,32]", "--show_progress", "False", "--train_items", "3", "--train_seed", "7")
    assert r.returncode == 0, r.stdout[-3000:]
    assert "label budget: 3 of 8 training items (seed 7)" in r.stdout
    assert f"mask rule 'half': recorded in the datalist {recorded}" in r.stdout
    record = json.loads((tmp_path / "run" / "models" / "training_subset.json").read_text())
    assert record["count"] == 3 and record["train_seed"] == 7 and len(record["stems"]) == 3
    assert all((root / image).is_file() for image in record["images"])
    assert "Epoch[1]" in r.stdout and (tmp_path / "run" / "models" / "model.pt").is_file()
