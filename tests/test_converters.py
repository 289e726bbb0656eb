"""Data-set converters on tiny trees built from each data set's *published* description (the LViT README's tree,
GuideDecoder's config and dataset code, the Kvasir-SEG and CVC-ClinicDB release notes; docs/datasets.md quotes
them), and every bad input the issues list."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from monai.bundle import ConfigParser
from monai.transforms import Compose
from PIL import Image

from conftest import ROOT, load_script
from custom_nets.data.converters import ConversionError, convert_lvit, describe_polyps, load_mask

prepare_data = load_script("prepare_data.py")

SENTENCE = "Unilateral pulmonary infection, one infected area, lower {} lung."


def _png(path: Path, arr: np.ndarray, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


def _pair(img: Path, mask: Path, i: int, size=(32, 32), mask_size=None, rgb_mask=False) -> None:
    rng = np.random.default_rng(i)
    _png(img, rng.integers(0, 255, size, dtype=np.uint8))
    m = np.zeros(mask_size or size, np.uint8)
    m[4 + i % 5 : 12 + i % 5, 6:14] = 255
    _png(mask, np.stack([m, m, m], -1) if rgb_mask else m)


def lvit_tree(root: Path, counts=(3, 2, 2), image_ext=".png", mask_prefix="mask_", rows=None, tables="split") -> Path:
    """LViT's README tree: ``<Split>_Folder/{img,labelcol}`` and ``<Split>_Folder/<Split>_text.xlsx``
    (``tables="root"``: the tables at the root, as older copies have them)."""
    for (folder, n) in zip(("Train", "Val", "Test"), counts):
        base = root / f"{folder}_Folder"
        (base / "img").mkdir(parents=True, exist_ok=True)
        (base / "labelcol").mkdir(exist_ok=True)
        keys = []
        for i in range(n):
            stem = f"covid_{folder}_{i}"
            _pair(base / "img" / f"{stem}{image_ext}", base / "labelcol" / f"{mask_prefix}{stem}.png", i, rgb_mask=(i == 0))
            keys.append(f"{mask_prefix}{stem}.png")
        table = rows(folder, keys) if rows else [(k, SENTENCE.format("left" if j % 2 else "right")) for j, k in enumerate(keys)]
        where = base if tables == "split" else root
        pd.DataFrame(table, columns=["Image", "Description"]).to_excel(where / f"{folder}_text.xlsx", index=False)
    return root


def run_cli(*args: str) -> tuple[int, str]:
    try:
        code = prepare_data.main(list(args))
        return code, ""
    except SystemExit as e:
        return (e.code if isinstance(e.code, int) else 1), str(e.code)


def load_through_unet_transforms(datalist: Path, data_root: Path, split: str = "training") -> list[dict]:
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "unet" / "configs" / "train.json"))
    parser["datalist"], parser["data_root"], parser["image_size"] = str(datalist), str(data_root), [32, 32]
    items = parser.get_parsed_content("train#datalist") if split == "training" else parser.get_parsed_content("validate#datalist")
    transform = Compose(parser.get_parsed_content("load_transforms"))
    return [transform(item) for item in items]


def test_lvit_layout_qata(tmp_path):
    root = lvit_tree(tmp_path / "QaTa")
    out = tmp_path / "qata.json"
    with pytest.warns(UserWarning, match="differ from the published"):
        code, _ = run_cli("qata_cov19", "--root", str(root), "--out", str(out))
    assert code == 0
    d = json.loads(out.read_text())
    assert [len(d[s]) for s in ("training", "validation", "test")] == [3, 2, 2]
    item = d["training"][0]
    assert item == {"image": "Train_Folder/img/covid_Train_0.png", "label": "Train_Folder/labelcol/mask_covid_Train_0.png",
                    "text": SENTENCE.format("right"), "text_source": "annotated"}
    samples = load_through_unet_transforms(out, root)
    assert samples[0]["image"].shape == (1, 32, 32) and set(samples[0]["label"].unique().tolist()) == {0.0, 1.0}
    assert samples[0]["label"].shape == (1, 32, 32)  # the RGB mask was collapsed


def test_monuseg_lvit_layout_matches_by_stem(tmp_path):
    root = lvit_tree(tmp_path / "MoNuSeg", image_ext=".tif", mask_prefix="")
    out = tmp_path / "monuseg.json"
    assert run_cli("monuseg", "--root", str(root), "--out", str(out))[0] == 0
    d = json.loads(out.read_text())
    assert d["test"][1]["image"] == "Test_Folder/img/covid_Test_1.tif" and d["test"][1]["label"].endswith("covid_Test_1.png")
    assert len(load_through_unet_transforms(out, root, "validation")) == 2


def test_lvit_tables_in_either_place(tmp_path):
    """The published place (inside each split folder), older root-level copies, both: agreeing is fine, disagreeing
    is refused naming both files; a missing table names where LViT publishes it."""
    old = lvit_tree(tmp_path / "old", tables="root")
    with pytest.warns(UserWarning, match="differ from the published"):
        assert run_cli("qata_cov19", "--root", str(old), "--out", str(tmp_path / "old.json"))[0] == 0
    both = lvit_tree(tmp_path / "both")
    for folder in ("Train", "Val", "Test"):  # the same tables at the root too
        (both / f"{folder}_text.xlsx").write_bytes((both / f"{folder}_Folder" / f"{folder}_text.xlsx").read_bytes())
    with pytest.warns(UserWarning):
        assert run_cli("qata_cov19", "--root", str(both), "--out", str(tmp_path / "both.json"))[0] == 0
    pd.DataFrame([("mask_covid_Val_0.png", "Other."), ("mask_covid_Val_1.png", "Other.")],
                 columns=["Image", "Description"]).to_excel(both / "Val_text.xlsx", index=False)
    _fails(tmp_path, both, r"two different text tables for the Val split: .*Val_Folder/Val_text\.xlsx and .*both/Val_text\.xlsx")
    (both / "Val_text.xlsx").unlink()
    (both / "Val_Folder" / "Val_text.xlsx").unlink()
    _fails(tmp_path, both, r"text table of the Val split not found: .*\(LViT publishes it inside the split folder, as "
                           r".*Val_Folder/Val_text\.xlsx\)")


def test_lvit_code_combined_train_val_table(tmp_path):
    """LViT's QaTa code reads one Train_Folder/Train_Val_text.xlsx for training and validation."""
    root = lvit_tree(tmp_path / "q")
    rows = []
    for folder in ("Train", "Val"):
        rows += pd.read_excel(root / f"{folder}_Folder" / f"{folder}_text.xlsx").values.tolist()
        (root / f"{folder}_Folder" / f"{folder}_text.xlsx").unlink()
    pd.DataFrame(rows, columns=["Image", "Description"]).to_excel(root / "Train_Folder" / "Train_Val_text.xlsx", index=False)
    with pytest.warns(UserWarning):
        assert run_cli("qata_cov19", "--root", str(root), "--out", str(tmp_path / "q.json"))[0] == 0
    d = json.loads((tmp_path / "q.json").read_text())
    assert [len(d[s]) for s in ("training", "validation", "test")] == [3, 2, 2]


def test_lvit_tree_with_what_unpacking_leaves(tmp_path):
    """macOS resource forks (._x.png), .DS_Store, Thumbs.db, upper-case suffixes: ignored or read as images."""
    root = lvit_tree(tmp_path / "q")
    for folder in ("Train_Folder/img", "Train_Folder/labelcol"):
        (root / folder / "._covid_Train_0.png").write_bytes(b"\x00\x05\x16\x07")
        (root / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (root / folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "Train_Folder" / "img" / "covid_Train_2.png").rename(root / "Train_Folder" / "img" / "covid_Train_2.PNG")
    with pytest.warns(UserWarning):
        assert run_cli("qata_cov19", "--root", str(root), "--out", str(tmp_path / "q.json"))[0] == 0
    d = json.loads((tmp_path / "q.json").read_text())
    assert len(d["training"]) == 3 and d["training"][2]["image"] == "Train_Folder/img/covid_Train_2.PNG"


def guidedecoder_tree(root: Path, n_train=10, n_test=2, columns=("path", "text")) -> Path:
    """GuideDecoder's published layout (config/training.yaml, utils/dataset.py): prompt/train.csv and test.csv only,
    rows naming the mask (mask_ prefix), images and masks under Train/ and Test/ in Images/ and GTs/."""
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            stem = f"covid_{split}_{i}"
            _pair(root / split.capitalize() / "Images" / f"{stem}.png", root / split.capitalize() / "GTs" / f"mask_{stem}.png", i)
            rows.append((f"mask_{stem}.png", SENTENCE.format("left" if i % 2 else "right")))
        (root / "prompt").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=list(columns)).to_csv(root / "prompt" / f"{split}.csv", index=False)
    return root


def test_guidedecoder_csv_layout_as_published(tmp_path):
    root = guidedecoder_tree(tmp_path / "QaTa-COV19-v2")
    out = tmp_path / "qata_csv.json"
    with pytest.warns(UserWarning, match="differ from the published"):
        assert run_cli("qata_cov19", "--root", str(root), "--out", str(out))[0] == 0
    d = json.loads(out.read_text())
    assert d["layout"] == "csv" and [len(d[s]) for s in ("training", "validation", "test")] == [8, 1, 2]
    assert d["validation"][0]["image"] == "Train/Images/covid_train_9.png" and "GuideDecoder" in d["validation_from"]
    assert d["test"][1] == {"image": "Test/Images/covid_test_1.png", "label": "Test/GTs/mask_covid_test_1.png",
                            "text": SENTENCE.format("left"), "text_source": "annotated"}
    assert len(load_through_unet_transforms(out, root)) == 8


def test_csv_layout_detects_image_or_mask_names(tmp_path):
    """A fork's MosMedData+ copy: val.csv too, Image/Description columns, rows naming images or masks; here with
    Images/ and GTs/ at the root (a flattened copy)."""
    root = tmp_path / "csv"
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        rows = []
        for i in range(n):
            stem = f"{split}_{i}"
            _pair(root / "Images" / f"{stem}.png", root / "GTs" / f"mask_{stem}.png", i)
            rows.append((f"mask_{stem}.png" if split == "val" else f"{stem}.png", SENTENCE.format("left")))
        (root / "prompt").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["Image", "Description"]).to_csv(root / "prompt" / f"{split}.csv", index=False)
    _png(root / "Images" / "orphan.png", np.zeros((32, 32), np.uint8))  # an image no row names
    out = tmp_path / "mosmed.json"
    with pytest.warns(UserWarning):
        assert run_cli("mosmeddata_plus", "--root", str(root), "--out", str(out))[0] == 0
    d = json.loads(out.read_text())
    assert d["layout"] == "csv" and d["validation"][0] == {"image": "Images/val_0.png", "label": "GTs/mask_val_0.png",
                                                            "text": SENTENCE.format("left"), "text_source": "annotated"}
    assert d["training"][2]["label"] == "GTs/mask_train_2.png"
    assert len(load_through_unet_transforms(out, root)) == 3


def test_kvasir_derived_text_from_jpeg_masks(tmp_path, capsys):
    """Kvasir-SEG as released: images/ and masks/ of JPEG files with the same names, kavsir_bboxes.json beside them,
    all inside the zip's own Kvasir-SEG/ folder (so the root a user gives may be one level up)."""
    root = tmp_path / "download" / "Kvasir-SEG"
    (root / "images").mkdir(parents=True)
    (root / "kavsir_bboxes.json").write_text("{}")
    for i in range(10):
        m = np.zeros((100, 100), np.uint8)
        m[10:20, 10:20] = 255  # 1 %: small
        if i % 2:
            m[40:90, 40:90] = 255  # 25 %: large
        _png(root / "masks" / f"c{i}.jpg", m, quality=75)
        _png(root / "images" / f"c{i}.jpg", np.full((100, 100, 3), 120, np.uint8))
    out = tmp_path / "kvasir.json"
    assert run_cli("kvasir_seg", "--root", str(root.parent), "--out", str(out), "--seed", "3")[0] == 0  # found inside
    d = json.loads(out.read_text())
    assert [len(d[s]) for s in ("training", "validation", "test")] == [8, 1, 1]
    texts = {item["image"]: item["text"] for s in ("training", "validation", "test") for item in d[s]}
    assert texts["Kvasir-SEG/images/c0.jpg"] == "One small polyp." and texts["Kvasir-SEG/images/c1.jpg"] == "Two polyps, one large and one small."
    assert all(item["text_source"] == "derived" for item in d["training"]) and d["mask_rule"] == "half"
    assert "train with: --datalist" in capsys.readouterr().out
    # JPEG noise: > 0 counts compression halos as polyp, >= 128 does not
    noisy = load_mask(root / "masks" / "c0.jpg", "nonzero").sum()
    assert load_mask(root / "masks" / "c0.jpg", "half").sum() == pytest.approx(100, abs=8) and noisy >= 100
    # the same seed gives the same split; a split file is honoured
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"training": [f"c{i}" for i in range(6)], "validation": ["c6", "c7"], "test": ["c8", "c9"]}))
    out2 = tmp_path / "kvasir2.json"
    assert run_cli("kvasir_seg", "--root", str(root), "--out", str(out2), "--split-file", str(split_file))[0] == 0
    assert [i["image"] for i in json.loads(out2.read_text())["validation"]] == ["images/c6.jpg", "images/c7.jpg"]
    # a JPEG mask's halo values: 'half' gives the mask as drawn, where 'nonzero' grows it
    half, nonzero = load_mask(root / "masks" / "c1.jpg", "half"), load_mask(root / "masks" / "c1.jpg", "nonzero")
    drawn = np.zeros((100, 100), bool)
    drawn[10:20, 10:20] = drawn[40:90, 40:90] = True
    assert (half != drawn).sum() <= 8 and (nonzero & ~drawn).sum() > (half & ~drawn).sum()


def test_cvc_clinicdb_tif_layout_as_released(tmp_path):
    """CVC-ClinicDB's release: Original/ and Ground Truth/ of .tif files with the same numeric names."""
    root = tmp_path / "CVC-ClinicDB"
    for i in range(1, 11):
        _pair(root / "Original" / f"{i}.tif", root / "Ground Truth" / f"{i}.tif", i)
    out = tmp_path / "cvc_tif.json"
    assert run_cli("cvc_clinicdb", "--root", str(root), "--out", str(out))[0] == 0
    d = json.loads(out.read_text())
    assert sum(len(d[s]) for s in ("training", "validation", "test")) == 10 and d["test"][0]["label"].startswith("Ground Truth/")
    assert len(load_through_unet_transforms(out, root)) == 8


def test_cvc_clinicdb_png_layout(tmp_path):
    root = tmp_path / "CVC"
    for i in range(1, 11):
        _pair(root / "PNG" / "Original" / f"{i}.png", root / "PNG" / "Ground Truth" / f"{i}.png", i)
    out = tmp_path / "cvc.json"
    assert run_cli("cvc_clinicdb", "--root", str(root), "--out", str(out))[0] == 0
    d = json.loads(out.read_text())
    assert d["training"][0]["image"].startswith("PNG/Original/") and d["training"][0]["text"] == "One medium polyp."  # 8x8 of 32x32: 6 %


def test_describe_polyps_counts_and_sizes():
    m = np.zeros((100, 100), bool)
    assert describe_polyps(m) == "No polyp."
    m[0:4, 0:4] = True  # 0.16 %: small
    m[20:30, 20:45] = True  # 2.5 %: medium
    m[60:62, 60:61] = True  # 0.02 %: below min_fraction, noise
    assert describe_polyps(m) == "Two polyps, one medium and one small."


# ---------------------------------------------------------------- bad input: clear message, nothing written


def _fails(tmp_path, root, match, name="qata_cov19"):
    out = tmp_path / "bad.json"
    code, message = run_cli(name, "--root", str(root), "--out", str(out))
    assert code != 0 and "nothing was written" in message
    assert re.search(match, message), message
    assert not out.exists() and not list(tmp_path.glob(".bad.json.*"))
    return message


def test_text_key_matching_no_mask(tmp_path):
    root = lvit_tree(tmp_path / "d", rows=lambda f, keys: [(k, SENTENCE.format("left")) for k in keys] + [("mask_ghost.png", "x")])
    _fails(tmp_path, root, r"Train_text\.xlsx: key 'mask_ghost\.png' matches no mask")


def test_duplicate_keys_with_different_sentences(tmp_path):
    root = lvit_tree(tmp_path / "d", rows=lambda f, keys: [(k, SENTENCE.format("left")) for k in keys] + [(keys[0], "Other.")])
    _fails(tmp_path, root, r"Train_text\.xlsx, rows 2 and 5: 'mask_covid_Train_0\.png' has two different sentences")


def test_empty_sentence(tmp_path):
    root = lvit_tree(tmp_path / "d", rows=lambda f, keys: [(k, "" if j == 1 else SENTENCE.format("left")) for j, k in enumerate(keys)])
    _fails(tmp_path, root, r"Train_text\.xlsx, row 3: empty sentence for 'mask_covid_Train_1\.png'")


def test_sentence_cell_that_is_a_number(tmp_path):
    root = lvit_tree(tmp_path / "d", rows=lambda f, keys: [(k, 5 if j == 1 else SENTENCE.format("left")) for j, k in enumerate(keys)])
    message = _fails(tmp_path, root, r"Train_text\.xlsx, row 3: the sentence for 'mask_covid_Train_1\.png' is not text but int\d* 5")
    assert "empty" not in message


def test_zero_width_sentence_is_empty(tmp_path):
    root = lvit_tree(tmp_path / "d", rows=lambda f, keys: [(k, "\u200b \u200b" if j == 2 else SENTENCE.format("left")) for j, k in enumerate(keys)])
    _fails(tmp_path, root, r"Train_text\.xlsx, row 4: empty sentence for 'mask_covid_Train_2\.png'")


def test_mask_of_wrong_size(tmp_path):
    root = lvit_tree(tmp_path / "d")
    _pair(root / "Val_Folder" / "img" / "covid_Val_1.png", root / "Val_Folder" / "labelcol" / "mask_covid_Val_1.png", 1, mask_size=(16, 32))
    _fails(tmp_path, root, r"size mismatch: image .*covid_Val_1\.png is \(32, 32\), mask .*mask_covid_Val_1\.png is \(32, 16\)")


def test_folder_missing(tmp_path):
    root = lvit_tree(tmp_path / "d")
    for p in sorted((root / "Test_Folder").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / "Test_Folder").rmdir()
    _fails(tmp_path, root, r"folder not found: .*Test_Folder")


def test_split_with_zero_items(tmp_path):
    root = lvit_tree(tmp_path / "d", counts=(3, 0, 2))
    _fails(tmp_path, root, r"qata_cov19: split 'validation' has no items")


def test_existing_datalist_is_kept(tmp_path):
    root = lvit_tree(tmp_path / "d")
    out = tmp_path / "existing.json"
    out.write_text("{}")
    code, message = run_cli("qata_cov19", "--root", str(root), "--out", str(out))
    assert code != 0 and "--overwrite" in message and out.read_text() == "{}"
    with pytest.warns(UserWarning):
        assert run_cli("qata_cov19", "--root", str(root), "--out", str(out), "--overwrite")[0] == 0
    assert json.loads(out.read_text())["layout"] == "lvit"


def test_convert_lvit_raises_conversion_error_directly(tmp_path):
    with pytest.raises(ConversionError, match="folder not found"):
        convert_lvit(tmp_path / "nowhere", "qata_cov19")
