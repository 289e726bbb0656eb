"""Issue 14, training and evaluation: bad input ends a run cleanly and is named; empty ground truth is reported as such."""

import csv
import json
import logging
import math
import re
import shutil

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.metrics import DiceMetric, SurfaceDistanceMetric
from PIL import Image

from conftest import ROOT, configs, run_bundle
from custom_nets.data import DatalistError, load_datalist
from custom_nets.engines import EmptyAwareMetric

BUNDLES = ("unet", "himix", "tamiseg")


def _copy(tiny_demo, tmp_path, edit=None):
    """A copy of the tiny demo data and datalist; ``edit(datalist_dict, data_root)`` changes it."""
    root, datalist = tiny_demo
    data = tmp_path / "data"
    shutil.copytree(root, data)
    d = json.loads(datalist.read_text())
    if edit:
        edit(d, data)
    path = tmp_path / "list.json"
    path.write_text(json.dumps(d))
    return path, data


# ------------------------------------------------------------------ input errors end the process with exit 1


def test_mask_size_mismatch_ends_with_exit_1(tiny_demo, tmp_path):
    """Caching stopped at a bad item must not leave threads running: MONAI's pool did, and a thread inside a
    torch operation at interpreter exit aborted the process (``terminate called without an active exception``,
    exit 134). Large ``image_size`` keeps the threads in torch; many items after the bad one keep them busy."""

    def edit(d, data):
        bad = d["training"][1]
        Image.open(data / bad["label"]).resize((32, 32)).save(data / bad["label"])
        d["training"] = [bad] + [d["training"][i % 8] for i in range(2, 60) if i % 8 != 1]
        d["validation"] = d["validation"][:2]

    path, data = _copy(tiny_demo, tmp_path, edit)
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json"), "--bundle_root", str(tmp_path / "run"),
                   "--data_root", str(data), "--datalist", str(path), "--epochs", "1", "--show_progress", "False",
                   "--num_workers", "2", "--image_size", "[1024,1024]", "--verify_images", "False")
    assert r.returncode == 1, (r.returncode, r.stdout[-3000:])
    assert "terminate called" not in r.stdout
    assert re.search(r"image/mask size mismatch: image \S*images/train_0001\.png has size \(64, 64\), "
                     r"label \S*masks/train_0001\.png has size \(32, 32\)", r.stdout), r.stdout[-3000:]


def test_mask_size_mismatch_listed_at_startup(tiny_demo, tmp_path):
    def edit(d, data):
        for i in (2, 5):
            mask = data / d["training"][i]["label"]
            Image.open(mask).resize((64, 48)).save(mask)

    path, data = _copy(tiny_demo, tmp_path, edit)
    load_datalist(path, data, "training")  # without verification only existence is checked
    with pytest.raises(DatalistError, match="2 problem") as e:
        load_datalist(path, data, "training", verify_images=True)
    assert re.search(r"\['training'\]\[2\]: image/mask size mismatch: image \S*train_0002\.png has size \(64, 64\), "
                     r"label \S*train_0002\.png has size \(64, 48\)", str(e.value))


# ------------------------------------------------------------------ file types: what MONAI's readers decode


def test_non_image_without_suffix_listed_at_startup(tiny_demo, tmp_path):
    def edit(d, data):
        (data / "images" / "notes").write_text("Not an image.\n")
        d["training"][3]["image"] = "images/notes"

    path, data = _copy(tiny_demo, tmp_path, edit)
    with pytest.raises(DatalistError, match=r"\['training'\]\[3\]: image \S*images/notes: unreadable image: no MONAI reader"):
        load_datalist(path, data, "training", verify_images=True)


def test_nifti_tiff_dicom_stay_valid(tmp_path):
    """Files MONAI's readers decode (NIfTI, TIFF, DICOM with or without a suffix) pass the check."""
    import nibabel as nib

    from clinical_data import write_radiograph

    data = tmp_path / "data"
    data.mkdir()
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(data / "mask.png")  # PIL: (W, H) = (56, 40), as ITK reads DICOM
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((56, 40), dtype=np.float32), np.eye(4)), str(data / "image.nii.gz"))
    nib.save(nib.Nifti1Image((mask.T > 0).astype(np.uint8), np.eye(4)), str(data / "mask.nii.gz"))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56), dtype=np.uint8)).save(data / "image.tif")
    write_radiograph(data / "image.dcm", monochrome1=False)
    write_radiograph(data / "IM0001", monochrome1=False)  # DICOM files often have no suffix
    text = "Unilateral pulmonary infection, one infected area, upper left lung."
    items = [{"image": "image.nii.gz", "label": "mask.nii.gz"}, {"image": "image.tif", "label": "mask.png"}]
    # a DICOM radiograph reads as (56, 40, 1): with a 2D mask that is a size mismatch for training too, so alone
    images = [{"image": "image.dcm"}, {"image": "IM0001"}]
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"training": [{**item, "text": text} for item in items],
                                "test": [{**item, "text": text} for item in images]}))
    assert len(load_datalist(path, data, "training", verify_images=True)) == 2
    assert len(load_datalist(path, data, "test", keys=["image"], file_keys=["image"], verify_images=True)) == 2


# ------------------------------------------------------------------ paths outside the data root


def test_outside_data_root_needs_the_flag(tiny_demo, tmp_path):
    def edit(d, data):
        shutil.copy(data / d["training"][4]["image"], tmp_path / "outside.png")
        d["training"][4]["image"] = "../outside.png"

    path, data = _copy(tiny_demo, tmp_path, edit)
    with pytest.raises(DatalistError) as e:
        load_datalist(path, data, "training")
    message = str(e.value)
    assert re.search(r"list\.json \['training'\]\[4\]: file of key 'image' is outside the data root \S*data: "
                     r"\S*/outside\.png \(set allow_outside_data_root to True", message), message
    items = load_datalist(path, data, "training", verify_images=True, allow_outside_data_root=True)
    assert items[4]["image"] == str(tmp_path / "outside.png")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundles_pass_the_flag(tiny_demo, tmp_path, bundle):
    """``allow_outside_data_root`` is a top-level key of every bundle, read by training, validation and evaluation."""
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: d["test"][0].update(image=str(r / d["test"][0]["image"])))
    for ids, files in ((("train#datalist", "validate#datalist"), ["train.json"]), (("validate#datalist",), ["train.json", "evaluate.json"])):
        parser = ConfigParser()
        parser.read_config([str(ROOT / "bundles" / bundle / "configs" / f) for f in files])
        assert parser["allow_outside_data_root"] is False
        parser.update({"datalist": str(path), "data_root": str(data), "eval_split": "test", "verify_images": False})
        for id in ids:
            assert len(parser.get_parsed_content(id)) > 0  # all inside
    parser["allow_outside_data_root"] = False
    root_copy = tmp_path / "other"
    shutil.copytree(data, root_copy)
    parser["data_root"] = str(root_copy)  # the test split's first image is an absolute path into `data`
    with pytest.raises(RuntimeError) as e:  # the config's "Failed to evaluate", caused by the datalist check
        parser.get_parsed_content("validate#datalist", lazy=False)
    assert isinstance(e.value.__cause__, DatalistError)
    assert re.search(r"\['test'\]\[0\]: file of key 'image' is outside the data root .*set allow_outside_data_root to True",
                     str(e.value.__cause__))
    parser["allow_outside_data_root"] = True
    assert len(parser.get_parsed_content("validate#datalist", lazy=False)) == 4


# ------------------------------------------------------------------ sentences


@pytest.mark.parametrize("text", ["\u200b\u200b", " \u200b\ufeff\t", "\x00\x07", "\u2060 \u200d"])
def test_zero_width_and_control_sentences_are_empty(tiny_demo, tmp_path, tiny_text_encoder, text):
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: d["training"][6].update(text=text))
    with pytest.raises(DatalistError, match=r"\['training'\]\[6\]: empty sentence in key 'text' .*train_0006\.png"):
        load_datalist(path, data, "training")
    with pytest.raises(ValueError, match="sentence 1 of the batch is empty"):
        tiny_text_encoder(["Upper left lung.", text])


@pytest.mark.parametrize("value, shown", [(5, "int 5"), (0.5, "float 0.5"), (None, "NoneType None"), (["a"], "list ['a']")])
def test_non_string_sentence_named_with_type_and_value(tiny_demo, tmp_path, tiny_text_encoder, value, shown):
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: d["validation"][2].update(text=value))
    with pytest.raises(DatalistError) as e:
        load_datalist(path, data, "validation")
    message = str(e.value)
    assert f"['validation'][2]: sentence in key 'text' is not a string but {shown}" in message and "empty" not in message
    with pytest.raises(ValueError, match=re.escape(f"sentence 0 of the batch is not a string but {shown}")):
        tiny_text_encoder([value])


def test_truncation_counted_and_warned_once(caplog):
    from custom_nets.text import TextEncoder

    encoder = TextEncoder("tiny-random-bert", max_length=16)  # `short` is 15 tokens
    short = "Unilateral pulmonary infection, one infected area, upper left lung."
    long = "Bilateral pulmonary infection, " * 330  # about 10,000 characters
    with caplog.at_level(logging.WARNING, logger="custom_nets.text.encoder"):
        hidden, mask = encoder([short, long, long + "lung."])
        assert encoder.truncated == 2 and mask.shape[1] == 16
        encoder([long, short])  # cached: nothing encoded, nothing counted
        encoder(["Two infected areas, " * 40])
    assert encoder.truncated == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "2 sentence(s)" in warnings[0] and "max_length=16" in warnings[0]
    assert TextEncoder("tiny-random-bert", max_length=64).truncated == 0


# ------------------------------------------------------------------ metrics with empty ground truth


def _run_metric(metric, batches) -> Engine:
    engine = Engine(lambda e, batch: batch)
    metric.attach(engine, "m")
    engine.run(batches, max_epochs=1)
    return engine


def _mask(*boxes, size=16) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    for y0, y1, x0, x1 in boxes:
        m[0, y0:y1, x0:x1] = 1
    return m


def test_empty_ground_truth_skipped_and_counted():
    full, empty = _mask((2, 10, 2, 10)), _mask()
    half = _mask((2, 10, 2, 6))  # Dice with `full`: 2 * 32 / (32 + 64)
    batches = [([full, half], [full, full]), ([half, empty], [empty, empty])]  # 2 counted, 2 empty (one predicted)
    for fn, expected in ((DiceMetric(include_background=True), (1 + 2 / 3) / 2),
                         (SurfaceDistanceMetric(include_background=True, symmetric=True), None)):
        engine = _run_metric(EmptyAwareMetric(fn), batches)
        m = engine.state.metrics
        assert m["m_counted"] == 2 and m["m_empty_gt"] == 2 and math.isfinite(m["m"])
        if expected is not None:
            assert m["m"] == pytest.approx(expected)
        details = engine.state.metric_details["m"]
        assert details.shape == (4, 1) and torch.isfinite(details[:2]).all() and torch.isnan(details[2:]).all()


def test_all_empty_ground_truth_is_nan_not_zero(caplog):
    empty = _mask()
    with caplog.at_level(logging.WARNING, logger="custom_nets.engines.metrics"):
        engine = _run_metric(EmptyAwareMetric(DiceMetric(include_background=True)), [([_mask((1, 5, 1, 5)), empty], [empty, empty])])
    m = engine.state.metrics
    assert math.isnan(m["m"]) and m["m_counted"] == 0 and m["m_empty_gt"] == 2
    assert "none of the 2 image(s)" in caplog.text


def _zero_masks(data, d, splits):
    for split in splits:
        for item in d[split]:
            mask = data / item["label"]
            Image.fromarray(np.zeros_like(np.asarray(Image.open(mask)))).save(mask)


def test_bundle_reports_empty_ground_truth(tiny_demo, tmp_path):
    """Training whose validation masks are all empty logs NaN, not 0.0; evaluation on all-empty test masks writes
    NaN means and the counts to metrics.csv (it wrote dice 0.0, hd95 0.0, assd inf)."""
    path, data = _copy(tiny_demo, tmp_path, lambda d, r: _zero_masks(r, d, ("validation", "test")))
    common = ["--bundle_root", str(tmp_path / "run"), "--data_root", str(data), "--datalist", str(path),
              "--show_progress", "False", "--image_size", "[64,64]", "--max_items", "4"]
    r = run_bundle("run", "training", "--config_file", configs("unet", "train.json", "demo.json"), "--epochs", "1", *common)
    assert r.returncode == 0, r.stdout[-3000:]
    assert re.search(r"val_mean_dice: nan val_mean_dice_counted: 0\.0000 val_mean_dice_empty_gt: 4\.0000", r.stdout), r.stdout[-3000:]
    assert (tmp_path / "run" / "models" / "model.pt").is_file()

    r = run_bundle("run", "evaluating", "--config_file", configs("unet", "train.json", "evaluate.json", "demo.json"), *common)
    assert r.returncode == 0, r.stdout[-3000:]
    with open(tmp_path / "run" / "eval" / "metrics.csv") as f:
        metrics = {k: float(v) for k, v in csv.reader(f)}
    for name in ("dice_mean", "iou_mean", "hd95", "assd"):
        assert math.isnan(metrics[name]) and metrics[f"{name}_counted"] == 0 and metrics[f"{name}_empty_gt"] == 4, metrics
    with open(tmp_path / "run" / "eval" / "assd_raw.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(row["mean"] == "nan" for row in rows)
