"""scripts/link_packages.py: what MONAI Label's venv takes from the project's venv by hard links, not by unpacking."""

import os

import pytest

from conftest import load_script

link_packages = load_script("link_packages.py")


def fake_distribution(site, name, files, requires=()):
    """An installed distribution as pip leaves it: files, and a dist-info with METADATA and RECORD."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    for rel in files:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(f"# {rel}\n")
    record = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD", "../bin/console-script"]
    (site.parent / "bin").mkdir(exist_ok=True)
    (site.parent / "bin" / "console-script").write_text("#!/the/other/venv/bin/python\n")
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in record))


def test_links_a_package_and_what_it_requires(tmp_path):
    source, target = tmp_path / "source" / "site-packages", tmp_path / "target" / "site-packages"
    target.mkdir(parents=True)
    fake_distribution(source, "torchish", ["torchish/__init__.py", "torchish/lib/core.so"],
                      requires=["Dep-Lib>=1", "docs-only; extra == 'docs'"])
    fake_distribution(source, "dep_lib", ["dep_lib.py"])
    fake_distribution(source, "docs_only", ["docs_only.py"])
    fake_distribution(source, "unrelated", ["unrelated.py"])
    dists = link_packages.closure(["torchish"], source)
    assert sorted(d.metadata["Name"] for d in dists) == ["dep_lib", "torchish"]  # not the extra's, not the unrelated
    for dist in dists:
        link_packages.link(dist, source, target)
    core = target / "torchish" / "lib" / "core.so"
    assert core.read_text() == "# torchish/lib/core.so\n" and os.path.samefile(core, source / "torchish/lib/core.so")
    assert (target / "torchish-1.0.dist-info" / "RECORD").is_file() and (target / "dep_lib.py").is_file()
    assert not (target / "unrelated.py").exists()
    assert not (target.parent / "bin").exists()  # a console script names the other venv's Python: not linked


def test_a_failed_link_leaves_no_part_of_the_distribution(tmp_path, monkeypatch):
    source, target = tmp_path / "source" / "site-packages", tmp_path / "target" / "site-packages"
    target.mkdir(parents=True)
    fake_distribution(source, "torchish", ["torchish/a.py", "torchish/b.py"])
    calls = []

    def link_once(src, dst):
        if calls:
            raise OSError(18, "Invalid cross-device link")
        calls.append(dst)
        os.link(src, dst)

    monkeypatch.setattr(link_packages.os, "link", link_once)
    (dist,) = link_packages.closure(["torchish"], source)
    with pytest.raises(OSError, match="cross-device"):
        link_packages.link(dist, source, target)
    assert calls and not any(p.is_file() for p in target.rglob("*"))
