import json
import shutil

import pytest

from custom_nets.data import DatalistError, load_datalist


def _copy(tiny_demo, tmp_path, edit):
    """A copy of the tiny demo data and datalist with ``edit(datalist_dict, data_root)`` applied."""
    root, datalist = tiny_demo
    data = tmp_path / "data"
    shutil.copytree(root, data)
    d = json.loads(datalist.read_text())
    edit(d, data)
    path = tmp_path / "list.json"
    path.write_text(json.dumps(d))
    return path, data


def test_good_datalist_loads(tiny_demo):
    root, datalist = tiny_demo
    items = load_datalist(datalist, root, "training", verify_images=True)
    assert len(items) == 8 and items[0]["image"].startswith(str(root))


def test_missing_file_named(tiny_demo, tmp_path):
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: (r / d["training"][2]["label"]).unlink())
    with pytest.raises(DatalistError, match=r"list\.json \['training'\]\[2\]: file of key 'label' not found: .*train_0002\.png"):
        load_datalist(path, data, "training")


def test_missing_text_key_named(tiny_demo, tmp_path):
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: d["training"][1].pop("text"))
    with pytest.raises(DatalistError, match=r"\[1\]: missing key 'text'"):
        load_datalist(path, data, "training")


def test_empty_sentence_named(tiny_demo, tmp_path):
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: d["validation"][3].update(text="  "))
    with pytest.raises(DatalistError, match=r"\['validation'\]\[3\]: empty sentence .*val_0003\.png"):
        load_datalist(path, data, "validation")


def test_corrupt_png_named(tiny_demo, tmp_path):
    def corrupt(d, r):
        f = r / d["training"][0]["image"]
        f.write_bytes(f.read_bytes()[:60])  # truncated

    path, data = _copy(tiny_demo, tmp_path, corrupt)
    load_datalist(path, data, "training")  # without verification only existence is checked
    with pytest.raises(DatalistError, match=r"\[0\]: image .*train_0000\.png: unreadable image"):
        load_datalist(path, data, "training", verify_images=True)


def test_all_problems_listed_at_once(tiny_demo, tmp_path):
    def many(d, r):
        d["training"][0].pop("text")
        d["training"][5]["image"] = "images/nope.png"

    path, data = _copy(tiny_demo, tmp_path, many)
    with pytest.raises(DatalistError, match="2 problem") as e:
        load_datalist(path, data, "training")
    assert "nope.png" in str(e.value) and "missing key 'text'" in str(e.value)


def test_missing_split_and_files(tiny_demo, tmp_path):
    root, datalist = tiny_demo
    with pytest.raises(DatalistError, match="holdout"):
        load_datalist(datalist, root, "holdout")
    with pytest.raises(DatalistError, match="datalist file not found"):
        load_datalist(tmp_path / "none.json", root)
    with pytest.raises(DatalistError, match="data root not found"):
        load_datalist(datalist, tmp_path / "nowhere")
