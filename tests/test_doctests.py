"""The ``>>>`` examples in ``custom_nets`` docstrings run as doctests: offline, tiny, from the repository root.

Every module under ``custom_nets`` is imported (``pkgutil.walk_packages``) and its examples are run once, in
one shared pass; each module then gets a test of its own that fails with the doctest report. Examples marked
``# doctest: +SKIP`` are those that need a hub model or a trained bundle; the last test checks that most
examples do run.
"""

from __future__ import annotations

import doctest
import importlib
import io
import os
import pkgutil
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import custom_nets
from conftest import ROOT

MODULES = sorted(info.name for info in pkgutil.walk_packages(custom_nets.__path__, prefix="custom_nets."))
MIN_EXAMPLES_RUN = 65  # examples that actually run (72 when written); raise it as examples are added
OPTIONFLAGS = 0  # as `python -m doctest`: an example that needs ELLIPSIS says so itself


@dataclass
class ModuleDoctests:
    examples: int  # all examples found in the module
    skipped: int  # examples marked +SKIP
    attempted: int  # examples that ran
    failed: int
    report: str


def _is_skipped(example: doctest.Example) -> bool:
    return bool(example.options.get(doctest.SKIP, False))


def _run_module(name: str) -> ModuleDoctests:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    out = io.StringIO()
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=out.write)
    examples = [e for t in tests for e in t.examples]
    return ModuleDoctests(len(examples), sum(map(_is_skipped, examples)), runner.tries, runner.failures,
                          out.getvalue())


@pytest.fixture(scope="module")
def doctest_results() -> dict[str, ModuleDoctests]:
    """Run every module's examples once, from the repository root (``custom_nets.bundle``'s examples read
    ``bundles/``), with the random generators restored afterwards."""
    cwd = os.getcwd()
    py_state, np_state = random.getstate(), np.random.get_state()
    results = {}
    try:
        os.chdir(ROOT)
        with torch.random.fork_rng():
            for name in MODULES:
                results[name] = _run_module(name)
    finally:
        os.chdir(cwd)
        random.setstate(py_state)
        np.random.set_state(np_state)
    return results


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name, doctest_results):
    result = doctest_results[name]
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed:\n{result.report}"
    assert result.attempted == result.examples - result.skipped  # every example not marked +SKIP ran


def test_most_examples_run(doctest_results):
    attempted = sum(r.attempted for r in doctest_results.values())
    skipped = sum(r.skipped for r in doctest_results.values())
    assert attempted >= MIN_EXAMPLES_RUN, f"only {attempted} examples ran ({skipped} skipped)"
    assert skipped <= attempted // 10, f"{skipped} examples are skipped, {attempted} run"
    # the networks' and blocks' examples are among those that run
    for name in ("custom_nets.blocks.text_attention", "custom_nets.blocks.layer_fusion", "custom_nets.nets.himix",
                 "custom_nets.nets.tamiseg", "custom_nets.bundle"):
        assert doctest_results[name].attempted > 0, name
