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


def run_bundle(*args: str, timeout: int = 600, cwd: Path = ROOT, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` in a subprocess; stdout and stderr together in ``.stdout``."""
    cmd = (launcher or [sys.executable]) + ["-m", "monai.bundle", *args]
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})


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
