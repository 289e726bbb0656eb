"""The published recipes (``bundles/<bundle>/configs/recipes/<data set>.json``): every one names only settings its
bundle has, merges with ``train.json`` and ``evaluate.json``, and trains one iteration on the tiny set; the training
log states the recipe, the patience and the metric it watches."""

from __future__ import annotations

import json

import pytest
from monai.bundle import ConfigParser

from bundle_cases import BUNDLES
from conftest import ROOT, bundle_config_files, run_in_process
from custom_nets.bundle import check_recipe, recipe_commands, recipe_files

RECIPES = [(bundle, ds) for bundle in sorted(BUNDLES) for ds in recipe_files(bundle)]


def test_recipes_exist_for_the_papers_data_sets():
    expected = {"unet": {"qata_cov19", "mosmeddata_plus", "monuseg"}, "himix": {"qata_cov19", "mosmeddata_plus", "kvasir_seg"},
                "tamiseg": {"qata_cov19", "mosmeddata_plus", "kvasir_seg"},
                "c2seg": {"qata_cov19", "mosmeddata_plus", "kvasir_seg", "cvc_clinicdb"},
                "lcpdn": {"monuseg", "qata_cov19", "mosmeddata_plus"}}
    assert {b: set(recipe_files(b)) for b in expected} == expected


@pytest.mark.parametrize("bundle,dataset", RECIPES)
def test_recipe_names_only_settings_of_its_bundle_and_its_sources(bundle, dataset):
    settings = check_recipe(bundle, dataset)
    assert settings["recipe"] and "recipe" in settings
    card = (ROOT / "bundles" / bundle / "docs" / "README.md").read_text()
    assert f"recipes/{dataset}.json" in card, f"the {bundle} model card does not give the sources of {dataset}.json"


def test_a_misspelt_or_nested_key_is_an_error(tmp_path):
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"recipe": "x", "learnig_rate": 1e-3}))
    with pytest.raises(ValueError, match=r"typo.json: not settings of the himix bundle .*'learnig_rate' \(did you mean 'learning_rate'\?\)"):
        check_recipe("himix", typo)
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"train#augmentation": []}))
    with pytest.raises(ValueError, match="top-level settings only"):
        check_recipe("unet", nested)
    with pytest.raises(FileNotFoundError, match="no recipe 'brats' for unet"):
        check_recipe("unet", "brats")


@pytest.mark.parametrize("bundle,dataset", RECIPES)
def test_recipe_merges_and_trains_one_iteration(bundle, dataset, tiny_demo, tiny_overrides, trained_bundle, tmp_path, capfd):
    recipe = recipe_files(bundle)[dataset]
    case = BUNDLES[bundle]
    # the evaluation stack (train.json, evaluate.json) takes the recipe too; its training settings are unused there
    evaluate = ConfigParser()
    evaluate.read_config(bundle_config_files(bundle, "train.json", "evaluate.json") + [str(recipe)] +
                         bundle_config_files(bundle, tiny=tiny_overrides[bundle])[-2:])
    evaluate.parse()
    assert evaluate.get("recipe") == json.loads(recipe.read_text())["recipe"]
    # train.json + the recipe + the tiny encoders: one iteration, then the validation
    files = bundle_config_files(bundle, "train.json") + [str(recipe)] + bundle_config_files(bundle, tiny=tiny_overrides[bundle])[-2:]
    extra = {}
    if len(case.phases) > 1:  # phase II starts from the session's phase I
        extra["phase1_checkpoint"] = str(trained_bundle(bundle)[0] / "models" / "pretrain" / "model.pt")
    data_root, datalist = tiny_demo
    run_in_process("training", files, bundle_root=str(tmp_path), data_root=str(data_root), datalist=str(datalist),
                   epochs=1, **{"train#trainer#epoch_length": 1}, **extra)
    log = capfd.readouterr().out
    assert (tmp_path / "models" / "model.pt").is_file()
    merged = ConfigParser()
    merged.read_config(files)
    assert f"recipe: {merged['recipe']}" in log
    patience = merged["early_stop_patience"]  # the recipe's, else the bundle's
    assert ("early stopping off" in log) if not patience else (f"early stopping after {patience} validations" in log)


def test_prepare_data_prints_each_bundles_recipe_command():
    [first, second] = recipe_commands("tamiseg", "kvasir_seg", "datalists/kvasir_seg.json", "/data/Kvasir-SEG")
    assert "'bundles/tamiseg/configs/pretrain.json','bundles/tamiseg/configs/recipes/kvasir_seg.json'" in first
    assert "pretrain.json" not in second and "--bundle_root runs/kvasir_seg/tamiseg" in second
