import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged
from PIL import Image

from custom_nets.text import parse_zones, swap_laterality, zone_sentence
from custom_nets.transforms import CheckImageLabelSized, EnsureChannelsd, RandFlipWithTextd, SwapLateralityd


def test_swap_laterality_only_touches_left_right():
    s = "Bilateral pulmonary infection, two infected areas, upper Left lung and lower RIGHT lung; leftover rightly."
    assert swap_laterality(s) == (
        "Bilateral pulmonary infection, two infected areas, upper Right lung and lower LEFT lung; leftover rightly."
    )
    assert swap_laterality(swap_laterality(s)) == s
    assert SwapLateralityd("text")({"text": "upper left lung", "image": 1}) == {"text": "upper right lung", "image": 1}


def test_zone_sentence_round_trip():
    zones = [("upper", "left"), ("lower", "right")]
    s = zone_sentence(zones)
    assert s == "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
    assert parse_zones(s) == zones
    assert zone_sentence([("middle", "right")]) == "Unilateral pulmonary infection, one infected area, middle right lung."


def _sample():
    img = torch.arange(2 * 6 * 4, dtype=torch.float32).reshape(2, 6, 4)
    lab = (img > 20).float()[:1]
    return {"image": img, "label": lab, "text": "Unilateral pulmonary infection, one infected area, upper left lung."}


def test_flip_swaps_text_and_twice_restores():
    flip = RandFlipWithTextd(keys=["image", "label"], prob=1.0)
    d0 = _sample()
    d1 = flip(dict(d0))
    assert d1["text"] == "Unilateral pulmonary infection, one infected area, upper right lung."
    assert torch.equal(torch.as_tensor(d1["image"]), torch.flip(d0["image"], dims=[1]))
    d2 = flip(d1)
    assert d2["text"] == d0["text"]
    assert torch.equal(torch.as_tensor(d2["image"]), d0["image"]) and torch.equal(torch.as_tensor(d2["label"]), d0["label"])


def test_no_flip_keeps_text():
    d = RandFlipWithTextd(keys=["image", "label"], prob=0.0)(_sample())
    assert "upper left lung" in d["text"]


def test_flip_axis_is_the_images_horizontal_axis(tmp_path):
    """MONAI loads a PNG as (x, y): spatial axis 0 must be the image's left-right axis."""
    arr = np.zeros((8, 12), dtype=np.uint8)  # rows, columns
    arr[2, 9] = 255  # a dot on the image's right
    Image.fromarray(arr).save(tmp_path / "dot.png")
    d = LoadImaged("image", ensure_channel_first=True, image_only=True)({"image": str(tmp_path / "dot.png"), "text": "left"})
    flipped = RandFlipWithTextd(keys="image", prob=1.0)(d)
    out = np.asarray(flipped["image"])[0].T  # back to rows, columns
    assert out[2, 12 - 1 - 9] == 255 and out[2, 9] == 0
    assert flipped["text"] == "right"


def test_size_mismatch_names_both_files():
    img = MetaTensor(torch.zeros(1, 8, 8), meta={"filename_or_obj": "/data/img_7.png"})
    lab = MetaTensor(torch.zeros(1, 8, 6), meta={"filename_or_obj": "/data/mask_7.png"})
    with pytest.raises(ValueError, match=r"img_7\.png.*mask_7\.png"):
        CheckImageLabelSized()({"image": img, "label": lab})


def test_ensure_channels():
    rgb = torch.stack([torch.zeros(4, 4), torch.ones(4, 4), 2 * torch.ones(4, 4)])
    assert torch.allclose(EnsureChannelsd("image", channels=1)({"image": rgb})["image"], torch.ones(1, 4, 4))
    assert EnsureChannelsd("image", channels=3)({"image": torch.zeros(1, 4, 4)})["image"].shape == (3, 4, 4)
    assert EnsureChannelsd("label", channels=1, reduce="max")({"label": rgb})["label"].max() == 2
    with pytest.raises(ValueError, match="2 channels"):
        EnsureChannelsd("image", channels=1)({"image": torch.zeros(2, 4, 4)})


def test_replaced_zone_sentence_names_other_zones():
    from custom_nets.text.prompts import replaced_zone_sentence

    s = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
    for seed in range(5):
        cf = replaced_zone_sentence(s, seed=seed)
        assert len(parse_zones(cf)) == 2 and not set(parse_zones(cf)) & set(parse_zones(s))
    # distractor zones are used first, as strings or pairs
    assert set(parse_zones(replaced_zone_sentence(s, ["middle left", ("upper", "right")]))) == {("upper", "right"), ("middle", "left")}
    assert parse_zones(replaced_zone_sentence(s, ["upper left"])) != [("upper", "left")]  # a named zone is never reused
    assert replaced_zone_sentence("one medium polyp") is None
    with pytest.raises(ValueError, match="unknown lung zone"):
        replaced_zone_sentence(s, ["centre"])


def test_record_text_says_which_sentence_guided_the_mask():
    from custom_nets.transforms import RecordTextd

    assert RecordTextd(prompt="")({"pred": 1})["result"] == {"text_prompt": "", "null_text": True}
    assert RecordTextd(prompt="upper left lung")({"result": {"x": 1}})["result"] == {
        "x": 1, "text_prompt": "upper left lung", "null_text": False}
    assert RecordTextd(prompt="upper left lung")({"text": "lower right lung"})["result"]["text_prompt"] == "lower right lung"


def test_sidecar_text_for_items_without_a_sentence(tmp_path):
    import json as _json

    from custom_nets.transforms import SidecarTextd

    (tmp_path / "sentences.json").write_text(_json.dumps({"case1": "upper left lung", "case2.nii.gz": "lower right lung"}))
    t = SidecarTextd()
    assert t({"image": str(tmp_path / "case1.png")})["text"] == "upper left lung"  # by MONAI Label's image id
    assert t({"image": str(tmp_path / "case2.nii.gz")})["text"] == "lower right lung"  # or by file name
    assert t({"image": "/nowhere/x.png", "text": "given"})["text"] == "given"  # datalist sentences win, no file read
    with pytest.raises(KeyError, match=r"sentences.json: no sentence for image id 'case3'"):
        t({"image": str(tmp_path / "case3.png")})
    with pytest.raises(FileNotFoundError, match="sidecar .*sentences.json not found"):
        t({"image": str(tmp_path / "sub" / "case1.png")})


def test_sentences_are_cleaned_wherever_they_enter(tmp_path):
    """Zero-width and control characters: the inferer, the recorded prompt and the sidecar treat them as no text."""
    import json as _json

    from custom_nets.inferers import TextInferer
    from custom_nets.transforms import RecordTextd, SidecarTextd

    inferer = TextInferer(None)
    assert inferer.sentences(2, "\u200b \u202e") == [None, None]
    assert inferer.sentences(1, ["  Upper\u200b left lung.\u0000 "]) == ["Upper left lung."]
    assert RecordTextd(prompt="\u200b")({"text": "\u200b"})["result"] == {"text_prompt": "", "null_text": True}
    (tmp_path / "sentences.json").write_text(_json.dumps({"a": "\u200b", "b": " Lower\u200b right lung. ", "c": 5}))
    sidecar = SidecarTextd()
    with pytest.raises(ValueError, match=r"sentence of 'c' is not a string but int 5"):
        sidecar({"image": str(tmp_path / "b.png")})
    (tmp_path / "sentences.json").write_text(_json.dumps({"a": "\u200b", "b": " Lower\u200b right lung. "}))
    sidecar = SidecarTextd()
    assert sidecar({"image": str(tmp_path / "b.png")})["text"] == "Lower right lung."
    with pytest.raises(KeyError, match="no sentence for image id 'a'"):
        sidecar({"image": str(tmp_path / "a.png")})
