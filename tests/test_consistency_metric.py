"""The text-mask consistency metric: the sentence parser, the checks, their calibration on demo ground truth
(the issue asks >= 95 % agreement on the demo test split), and that it fails masks that disobey the sentence."""

import json
import math
import re

import numpy as np
import pytest
import torch
from monai.transforms import LoadImage, Resize

from conftest import ROOT
from custom_nets.data.demo import write_demo_dataset
from custom_nets.metrics import TextMaskConsistencyMetric, lung_fields, mask_findings
from custom_nets.text.constraints import parse_constraints
from custom_nets.text.prompts import replaced_zone_sentence, swap_laterality


@pytest.mark.parametrize("sentence, count, sides, n_sides, zones", [
    ("Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.", 2, {"left", "right"}, 2,
     {("upper", "left"), ("lower", "right")}),
    ("Unilateral pulmonary infection, one infected area, middle right lung.", 1, {"right"}, 1, {("middle", "right")}),
    ("No pulmonary infection, no infected area.", 0, None, None, None),
    ("Opacity in the upper zone of the left lung.", None, {"left"}, 1, {("upper", "left")}),
    ("LUZ opacity.", None, {"left"}, 1, {("upper", "left")}),
    ("RUL and LLL consolidation, 2 lesions.", 2, {"left", "right"}, 2, {("upper", "right"), ("lower", "left")}),
    ("Consolidation in the left upper and lower lobes.", None, {"left"}, 1, {("upper", "left"), ("lower", "left")}),
    ("BILATERAL PULMONARY INFECTION, THREE INFECTED AREAS, UPPER AND MIDDLE LEFT LUNG AND LOWER RIGHT LUNG.", 3,
     {"left", "right"}, 2, {("upper", "left"), ("middle", "left"), ("lower", "right")}),
    ("Left-sided opacity.", None, {"left"}, 1, None),
    ("Bilateral infection.", None, None, 2, None),
    ("One infected area, lower left lung. No pleural effusion on the right side.", 1, {"left"}, 1, {("lower", "left")}),
    ("Heart size normal.", None, None, None, None),
    # LViT's QaTa-COV19 wording: runs of levels, and "all"
    ("Bilateral pulmonary infection, two infected areas, middle lower left lung and upper middle lower right lung.", 2,
     {"left", "right"}, 2, {("middle", "left"), ("lower", "left"), ("upper", "right"), ("middle", "right"), ("lower", "right")}),
    ("Unilateral pulmonary infection, one infected area, all left lung.", 1, {"left"}, 1,
     {("upper", "left"), ("middle", "left"), ("lower", "left")}),
    # negation in its clause, before or after the mention; a count of 0 only with nothing named elsewhere
    ("No opacity in the left lung; right lower lobe consolidation.", None, {"right"}, 1, {("lower", "right")}),
    ("Right lower lobe consolidation, left lung clear.", None, {"right"}, 1, {("lower", "right")}),
    ("Consolidation in the right upper and left lower lobes.", None, {"left", "right"}, 2, {("upper", "right"), ("lower", "left")}),
])
def test_sentence_constraints(sentence, count, sides, n_sides, zones):
    c = parse_constraints(sentence)
    assert (c.count, c.sides, c.n_sides, c.zones) == (count, sides and frozenset(sides), n_sides, zones and frozenset(zones))
    assert c.stated == any(v is not None for v in (count, sides, n_sides, zones))


def blob(mask: np.ndarray, col: int, row: int, r: int = 4) -> None:
    cc, rr = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[(cc - col) ** 2 + (rr - row) ** 2 <= r * r] = 1


def test_checks_pass_and_fail_as_the_sentence_says():
    """Without an image the lung fields are the whole image: columns >= 32 are the image's right (patient's left),
    rows in thirds of 64."""
    mask = np.zeros((64, 64))
    blob(mask, 48, 10)  # image right, top: upper left
    blob(mask, 16, 54)  # image left, bottom: lower right
    sentence = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
    ok = mask_findings(mask, parse_constraints(sentence))
    assert ok.checks == {"count_ok": 1.0, "side_ok": 1.0, "zone_ok": 1.0, "all_ok": 1.0}, ok.describe()
    swapped = mask_findings(mask, parse_constraints(swap_laterality(sentence))).checks
    assert swapped["zone_ok"] == 0.0 and swapped["all_ok"] == 0.0 and swapped["count_ok"] == 1.0
    three = mask_findings(mask, parse_constraints(sentence.replace("two", "three"))).checks
    assert three["count_ok"] == 0.0 and three["all_ok"] == 0.0
    one_side = mask_findings(mask, parse_constraints("Unilateral pulmonary infection.")).checks
    assert one_side["side_ok"] == 0.0 and math.isnan(one_side["zone_ok"]) and math.isnan(one_side["count_ok"])
    empty = mask_findings(np.zeros((64, 64)), parse_constraints("No pulmonary infection, no infected area.")).checks
    assert empty["count_ok"] == 1.0 and empty["all_ok"] == 1.0
    # the display convention: with the patient's left on the image's left the same mask reads the other way
    mirrored = mask_findings(mask, parse_constraints(sentence), patient_left_on_image_right=False).checks
    assert mirrored["zone_ok"] == 0.0
    # specks below min_size are not lesions
    speck = mask.copy()
    speck[2, 2] = 1
    assert mask_findings(speck, parse_constraints(sentence)).checks["all_ok"] == 1.0


def test_each_lesion_holds_the_zones_it_lies_in():
    """A lesion holds a side or zone where min_share of it lies: six zones covered pass six named zones; a small
    lesion of its own on the other side makes the mask bilateral; a big lesion's rim over an edge does not."""
    full = np.zeros((60, 60))
    full[4:26, 2:58] = 1  # image left (patient's right), all rows
    full[34:56, 2:58] = 1  # image right (patient's left)
    all_zones = "Bilateral pulmonary infection, two infected areas, all left lung and all right lung."
    assert mask_findings(full, parse_constraints(all_zones)).checks["all_ok"] == 1.0
    small = np.zeros((60, 60))
    small[2:28, 2:18] = 1  # a big lesion, upper right (image left, top)
    blob(small, 45, 8, r=3)  # a small one, upper left
    both = mask_findings(small, parse_constraints("Bilateral pulmonary infection, two infected areas, upper right lung "
                                                  "and upper left lung."))
    assert both.checks["all_ok"] == 1.0, both.describe()
    rim = np.zeros((60, 60))
    rim[4:26, 2:22] = 1  # upper right zone (rows 0-19) and a rim of 2 rows into the middle one
    assert mask_findings(rim, parse_constraints("One infected area, upper right lung.")).zones == {("upper", "right")}
    with pytest.raises(ValueError, match="must have one shape"):
        mask_findings(rim, parse_constraints("upper right lung"), np.zeros((30, 30)))


def test_unparsed_sentence_is_not_a_pass():
    metric = TextMaskConsistencyMetric()
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 20:26, 2:8] = 1
    values = metric(mask, text=["Heart size normal.", None])
    assert torch.isnan(values).all()
    rates = metric.aggregate()
    assert rates["stated"] == 0 and rates["unparsed"] == 2 and math.isnan(rates["all_ok"])
    with pytest.raises(ValueError, match="one sentence per mask"):
        metric(mask, text=["one"])


@pytest.fixture(scope="module")
def demo_test_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency")
    datalist = write_demo_dataset(root / "data", root / "datalist.json", n_train=0, n_val=0, n_test=60)
    load = LoadImage(image_only=True, ensure_channel_first=True)
    cases = []
    for item in datalist["test"]:  # at the demo configs' network size, as the evaluator sees them
        image = Resize((128, 128), mode="area")(load(root / "data" / item["image"]))
        label = Resize((128, 128), mode="nearest")(load(root / "data" / item["label"]))
        cases.append((image[0].numpy(), label[0].numpy(), item))
    return cases


def test_ground_truth_agrees_with_the_sentence_on_the_demo_test_split(demo_test_split):
    agree, disagreements = 0, []
    for image, label, item in demo_test_split:
        f = mask_findings(label, parse_constraints(item["text"]), image)
        assert f.extent_source == "lungs", item["image"]
        if f.checks["all_ok"] == 1.0:
            agree += 1
        else:
            disagreements.append(f"{item['image']}: '{item['text']}' vs {f.describe()}")
    rate = agree / len(demo_test_split)
    print(f"ground truth agrees with its sentence in {agree}/{len(demo_test_split)} demo test cases ({rate:.1%})")
    assert rate >= 0.95, "\n".join(disagreements)


def test_ground_truth_disobeys_counterfactual_sentences(demo_test_split):
    """The same true masks against sentences that say something else: the metric must say so."""
    lat, zones = [], []
    for image, label, item in demo_test_split:
        if set(parse_constraints(swap_laterality(item["text"])).zones) != set(parse_constraints(item["text"]).zones):
            lat.append(mask_findings(label, parse_constraints(swap_laterality(item["text"])), image).checks["all_ok"])
        other = replaced_zone_sentence(item["text"], item["distractor_zones"])
        zones.append(mask_findings(label, parse_constraints(other), image).checks["all_ok"])
    assert len(lat) >= 40 and np.mean(lat) == 0.0 and np.mean(zones) == 0.0


def test_flipped_image_and_mask_agree_with_the_swapped_sentence(demo_test_split):
    """Laterality: mirror the picture left-right (axis 0) and the sentence's sides swap with it."""
    for image, label, item in demo_test_split[:20]:
        flipped = mask_findings(label[::-1], parse_constraints(swap_laterality(item["text"])), image[::-1])
        assert flipped.checks["all_ok"] == 1.0, (item["image"], flipped.describe())


def test_lung_fields_fall_back_without_an_image():
    assert lung_fields(None, (32, 48)).source == "image"
    assert lung_fields(np.full((32, 32), 7.0), (32, 32)).source == "image"
    fields = lung_fields(np.full((32, 32), 7.0), (32, 32))
    assert fields.midline == 16 and fields.rows["image_left"] == (0, 32)


def test_rewrites_keep_or_change_what_the_sentence_says(demo_test_split):
    """scripts/text_sensitivity.py's rewrites: meaning kept = same zones and sides (and count, but for typos in
    "infected areas"); meaning changed = other zones; the same seed gives the same rewrite."""
    from custom_nets.evaluation.perturbations import CHANGING, PRESERVING, perturb

    applied = {kind: 0 for kind in PRESERVING + CHANGING}
    for _, _, item in demo_test_split:
        c = parse_constraints(item["text"])
        for kind in PRESERVING + CHANGING:
            out = perturb(item["text"], kind, 3, item["distractor_zones"])
            assert out == perturb(item["text"], kind, 3, item["distractor_zones"])
            if out is None:
                assert kind == "laterality" and set(parse_constraints(swap_laterality(item["text"])).zones) == set(c.zones)
                continue
            applied[kind] += 1
            new = parse_constraints(out)
            if kind in PRESERVING:
                assert (new.zones, new.sides) == (c.zones, c.sides), (kind, out)
                assert kind == "typos" or new.count == c.count, (kind, out)
            else:
                assert new.zones != c.zones and new.stated, (kind, out)
    assert all(n >= 40 for n in applied.values()), applied
    # the same on sentences as LViT's QaTa-COV19 text writes them, and clinical phrasing
    for sentence in ("Bilateral pulmonary infection, two infected areas, middle lower left lung and lower right lung.",
                     "Unilateral pulmonary infection, one infected area, all right lung.",
                     "Bilateral pulmonary infection, two infected areas, upper middle left lung and middle right lung."):
        c = parse_constraints(sentence)
        for kind in PRESERVING:
            out = perturb(sentence, kind, 0, ["upper left"])
            if out is not None:
                new = parse_constraints(out)
                assert (new.zones, new.sides) == (c.zones, c.sides) and (kind == "typos" or new.count == c.count), (kind, out)
        for kind in CHANGING:
            out = perturb(sentence, kind, 0, ["upper left"])
            assert out is None or parse_constraints(out).zones != c.zones, (kind, out)
    assert perturb("Bilateral pulmonary infection, two infected areas.", "missing_finding") is None  # would lose "bilateral"
    # the count rewrite when every distractor is already named
    assert perturb("Unilateral pulmonary infection, one infected area, upper left lung.", "count", 0, ["upper left"])
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb("x", "shouting")


def test_two_dark_fields_one_above_the_other_are_not_two_lungs():
    """A midline needs two fields side by side; one lung cut in two by an opacity gives the body's box instead."""
    image = np.zeros((64, 64))
    image[4:60, 4:60] = 100.0  # body (axis 0 = columns, axis 1 = rows)
    image[10:30, 8:28] = 30.0  # a dark field
    image[10:30, 36:56] = 30.0  # another, below it in the same columns
    assert lung_fields(image, image.shape).source == "body"
    image[34:54, 8:56] = 30.0  # a second lung beside the first: now side by side
    image[10:30, 30:34] = 30.0  # (the first lung made whole)
    fields = lung_fields(image, image.shape)
    assert fields.source == "lungs" and 30 <= fields.midline <= 34


def test_zones_rewrite_keeps_a_held_out_phrasing_in_its_own_words():
    """On the held-out phrasings (datalists/demo_phrasing.json) the zones counterfactual moves the places the
    sentence names, in its own wording and style, to zones it does not name (look-alike distractors first);
    a template sentence keeps the template's counterfactual."""
    from custom_nets.evaluation.perturbations import perturb, relocated

    items = json.loads((ROOT / "datalists" / "demo_phrasing.json").read_text())["test"]
    for item in items:
        c = parse_constraints(item["text"])
        out = perturb(item["text"], "zones", 0, item["distractor_zones"])
        new = parse_constraints(out)
        assert not new.zones & c.zones and len(new.zones) == len(c.zones) and new.count == c.count, (item["text"], out)
        # the same words but the places: the telegraphic stays telegraphic, the narrative narrative
        assert re.sub(r"\b([RL][UML][ZL]|left|right|upper|middle|mid|lower)\b", "_", out) == \
            re.sub(r"\b([RL][UML][ZL]|left|right|upper|middle|mid|lower)\b", "_", item["text"]), (item["text"], out)
    assert relocated("Opacity: LMZ.", ["upper right"]) == "Opacity: RUZ."
    assert relocated("Heart size normal.") is None
    template = "Unilateral pulmonary infection, one infected area, upper left lung."
    assert perturb(template, "zones", 0, ["lower right"]) == "Unilateral pulmonary infection, one infected area, lower right lung."
