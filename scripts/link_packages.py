#!/usr/bin/env python
"""Hard-link installed packages (and what they require) from another virtual environment into this one.

    .venv-monailabel/bin/python scripts/link_packages.py --source .venv torch torchvision

Run with the *target* environment's Python. torch with its CUDA libraries is about 5.5 GB: pip unpacks it
again for every venv (minutes on 2 cores), where hard links to the files of a venv that already has the same
build take seconds and no disk. Each distribution is linked file by file from its ``RECORD``, so pip sees it as
installed here and, with the same constraints, leaves it; files outside site-packages (console scripts, whose
first line names the other venv's Python) are not linked. The two venvs then share file contents, not
installs: pip replacing a package in one removes only that venv's links.

Nothing is linked unless both environments run the same Python (major.minor) on the same platform, the target
lacks the package, and both lie on one file system; otherwise it says why and exits 0, and pip installs as usual.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path


def site_packages(python: Path) -> tuple[Path, str]:
    """The purelib folder of another interpreter and its ``major.minor platform`` tag."""
    out = subprocess.run([str(python), "-c", "import sys, sysconfig; print(sysconfig.get_paths()['purelib']); "
                          "print(f'{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}')"],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    return Path(out[0]), out[1]


def closure(names: list[str], source: Path) -> list[metadata.Distribution]:
    """The named distributions installed in ``source`` and, recursively, those they require that are there too
    (requirements of extras are skipped)."""
    found = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d for d in metadata.distributions(path=[str(source)])}
    todo, seen = [re.sub(r"[-_.]+", "-", n).lower() for n in names], {}
    while todo:
        name = todo.pop()
        if name in seen or name not in found:
            continue
        seen[name] = found[name]
        for req in found[name].requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker:  # other markers: what is installed in the source applied there, and so here
                continue
            todo.append(re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~\[(;]", spec.strip(), maxsplit=1)[0]).lower())
    return list(seen.values())


def link(dist: metadata.Distribution, source: Path, target: Path) -> int:
    """Hard-link the files of ``dist`` under ``source`` into ``target``; the number linked. On failure the
    links made for this distribution are removed and the error raised."""
    made: list[Path] = []
    try:
        for entry in dist.files or []:
            rel = Path(entry)
            if rel.is_absolute() or ".." in rel.parts:  # console scripts and data outside site-packages
                continue
            src, dst = source / rel, target / rel
            if not src.is_file() or dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
            made.append(dst)
    except OSError:
        for path in made:
            path.unlink(missing_ok=True)
        raise
    return len(made)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="the virtual environment to link from, e.g. .venv")
    p.add_argument("packages", nargs="+", help="distributions to link, with what they require")
    args = p.parse_args(argv)

    python = Path(args.source) / "bin" / "python"
    if not python.exists():
        print(f"[link] {args.source} has no bin/python; nothing linked")
        return 0
    source, tag = site_packages(python)
    here = f"{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}"
    target = Path(sysconfig.get_paths()["purelib"])
    if tag != here:
        print(f"[link] {args.source} runs Python {tag}, this venv {here}; nothing linked")
        return 0
    if source.stat().st_dev != target.stat().st_dev:
        print(f"[link] {source} and {target} lie on different file systems; nothing linked")
        return 0
    present = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions(path=[str(target)])}
    total = 0
    for dist in closure(args.packages, source):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in present:
            continue
        try:
            total += link(dist, source, target)
        except OSError as e:
            print(f"[link] could not link {name} ({e}); pip installs it instead")
    print(f"[link] {total} files hard-linked from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
