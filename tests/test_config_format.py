"""Every bundle config is JSON in one format: 4-space indent, key order as written, UTF-8 kept, final newline
(what .pre-commit-config.yaml's pretty-format-json writes)."""

import json

import pytest

from conftest import ROOT

CONFIGS = sorted((ROOT / "bundles").glob("*/configs/**/*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_config_is_formatted(path):
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n", (
        f"{path.relative_to(ROOT)} is not in the project's JSON format; run pre-commit (pretty-format-json) or "
        "rewrite it with json.dumps(..., indent=4, ensure_ascii=False) + a final newline")


def test_there_are_configs_to_check():
    assert len(CONFIGS) >= 18
