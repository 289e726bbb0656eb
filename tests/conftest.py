import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A small demo data set (64x64; 8 train / 4 val / 4 test) and its datalist."""
    from custom_nets.data.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("tiny_demo")
    write_demo_dataset(root / "data", root / "datalist.json", seed=1, n_train=8, n_val=4, n_test=4, size=64)
    return root / "data", root / "datalist.json"


@pytest.fixture(scope="session")
def tiny_text_encoder():
    from custom_nets.text import TextEncoder

    return TextEncoder("tiny-random-bert", max_length=32)


def run_bundle(*args: str, timeout: int = 600, cwd: Path = ROOT, launcher: list[str] | None = None,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in a subprocess (offline; ``env`` adds variables); stdout and stderr together
    in ``.stdout``."""
    cmd = (launcher or [sys.executable]) + ["-m", "monai.bundle", *args]
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env or {})})


def configs(bundle: str, *names: str) -> str:
    """A ``--config_file`` list of the bundle's config files."""
    return "[" + ",".join(f"'{ROOT / 'bundles' / bundle / 'configs' / n}'" for n in names) + "]"


def write_override(tmp_path_factory, name: str, values: dict) -> Path:
    """A config override file (JSON) in a fresh temporary folder."""
    import json

    path = tmp_path_factory.mktemp(name) / "tiny.json"
    path.write_text(json.dumps(values))
    return path


def config_files(configs_dir: Path, *names: str, tiny: Path) -> str:
    """A ``--config_file`` list: the bundle's files, then the tiny override."""
    return "[" + ",".join(f"'{configs_dir / n}'" for n in names) + f",'{tiny}']"


def data_args(tiny_demo) -> list[str]:
    root, datalist = tiny_demo
    return ["--data_root", str(root), "--datalist", str(datalist)]


def bundle_config_files(bundle: str, *names: str, tiny: Path | None = None) -> list[str]:
    """The bundle's config files, then ``demo.json`` and the tiny override when given."""
    files = [ROOT / "bundles" / bundle / "configs" / n for n in names]
    if tiny is not None:
        files += [ROOT / "bundles" / bundle / "configs" / "demo.json", tiny]
    return [str(f) for f in files]


def bundle_configs(bundle: str, *names: str, tiny: Path | None = None) -> str:
    """A ``--config_file`` list: the bundle's files, then ``demo.json`` and the tiny override when given."""
    return "[" + ",".join(f"'{f}'" for f in bundle_config_files(bundle, *names, tiny=tiny)) + "]"


def load_script(name: str):
    """A script of ``scripts/`` imported as a module (its ``main`` runs in this process: no new interpreter)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(name).stem, ROOT / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(run_id: str, config_files: list[str], **overrides) -> None:
    """``monai.bundle.run`` in this process: the function ``python -m monai.bundle run`` calls, for checks that need
    no process of their own (a new interpreter spends about 10 s importing MONAI). Raises what the run raises; its
    log goes to this process's stdout (``capfd``)."""
    from monai.bundle import run

    run(run_id, config_file=config_files, **overrides)


@pytest.fixture(scope="session")
def tiny_overrides(tmp_path_factory):
    """bundle name -> its tiny override file (tests/bundle_cases.py)."""
    import json

    from bundle_cases import BUNDLES

    folder = tmp_path_factory.mktemp("tiny_overrides")
    paths = {}
    for name, case in BUNDLES.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(case.tiny))
    return paths


@pytest.fixture(scope="session")
def trained_bundle(tiny_demo, tiny_overrides, tmp_path_factory):
    """``trained_bundle(name) -> (bundle_root, [log of each phase])``: the bundle trained once per session on the
    tiny demo data through ``python -m monai.bundle run training``, every phase in order."""
    from bundle_cases import BUNDLES

    runs: dict[str, tuple[Path, list[str]]] = {}

    def train(name: str) -> tuple[Path, list[str]]:
        if name not in runs:
            case, root = BUNDLES[name], tmp_path_factory.mktemp(f"{name}_bundle")
            logs = []
            for i, phase in enumerate(case.phases):
                last = i == len(case.phases) - 1
                r = run_bundle("run", "training", "--config_file",
                               bundle_configs(name, "train.json", *phase, tiny=tiny_overrides[name]),
                               "--bundle_root", str(root), *data_args(tiny_demo),
                               *(["--epochs", str(case.epochs)] if last else []))
                assert r.returncode == 0, f"{name} {phase or 'train.json'}:\n{r.stdout[-3000:]}"
                logs.append(r.stdout)
            runs[name] = (root, logs)
        return runs[name]

    return train
