import json

import numpy as np
import pytest
from PIL import Image

from custom_nets.data.demo import make_case, write_demo_dataset, write_demo_volume
from custom_nets.text import parse_zones


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes(tmp_path):
    write_demo_dataset(tmp_path / "a", tmp_path / "a.json", seed=3, n_train=4, n_val=2, n_test=2, size=64)
    write_demo_dataset(tmp_path / "b", tmp_path / "b.json", seed=3, n_train=4, n_val=2, n_test=2, size=64)
    write_demo_dataset(tmp_path / "c", tmp_path / "c.json", seed=4, n_train=4, n_val=2, n_test=2, size=64)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 16 and a == b and a != c
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_datalist_layout(tiny_demo):
    root, datalist = tiny_demo
    d = json.loads(datalist.read_text())
    assert [len(d[k]) for k in ("training", "validation", "test")] == [8, 4, 4]
    for item in d["training"]:
        assert not item["image"].startswith("/") and (root / item["image"]).is_file() and (root / item["label"]).is_file()
        assert parse_zones(item["text"]) == [tuple(z.split()) for z in item["lesion_zones"]]


@pytest.mark.parametrize("index", range(20))
def test_mask_covers_only_named_zones(index):
    case = make_case(np.random.default_rng([0, 0, index]))
    ys, xs = np.nonzero(case.mask)
    assert len(ys) > 0 and len(case.distractor_zones) >= 1
    assert set(parse_zones(case.text)) == set(case.lesion_zones)

    def inside(zone):
        y0, y1, x0, x1 = case.zone_boxes[zone]
        return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)

    named = np.zeros(len(ys), dtype=bool)
    for zone in case.lesion_zones:
        assert inside(zone).any(), f"named zone {zone} has no lesion"
        named |= inside(zone)
    assert named.all(), "mask pixels outside the named zones"
    for zone in case.distractor_zones:  # a look-alike opacity is drawn there, but not in the mask
        y0, y1, x0, x1 = case.zone_boxes[zone]
        assert case.mask[y0:y1, x0:x1].max() == 0
        assert case.image[y0:y1, x0:x1].max() > case.image[case.mask > 0].mean() - 30


def test_radiological_convention():
    """The patient's left lung lies on the image's right (larger column index)."""
    case = make_case(np.random.default_rng(5))
    assert case.zone_boxes[("upper", "left")][2] > case.zone_boxes[("upper", "right")][3]


def test_existing_output_not_overwritten(tmp_path):
    write_demo_dataset(tmp_path / "d", tmp_path / "d.json", seed=0, n_train=2, n_val=1, n_test=1, size=32)
    marker = tmp_path / "d" / "keep.txt"
    marker.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_demo_dataset(tmp_path / "d", tmp_path / "other.json", seed=0, n_train=2, n_val=1, n_test=1, size=32)
    assert marker.read_text() == "mine" and not (tmp_path / "other.json").exists()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    write_demo_dataset(tmp_path / "d", tmp_path / "d.json", seed=0, n_train=2, n_val=1, n_test=1, size=32, overwrite=True)
    assert not marker.exists() and Image.open(tmp_path / "d" / "images" / "train_0000.png").size == (32, 32)


def test_demo_volume_windows_back_to_the_picture(tmp_path, tiny_demo):
    import nibabel as nib

    from custom_nets.clinical import window

    data_root, datalist = tiny_demo
    image = data_root / json.loads(datalist.read_text())["test"][0]["image"]
    path = write_demo_volume(image, tmp_path / "ct.nii.gz", slices=2)
    volume = nib.load(path)
    picture = np.asarray(Image.open(image).convert("L"), np.float32).T
    assert volume.shape == (*picture.shape, 2) and np.allclose(volume.header.get_zooms(), (0.7, 0.7, 2.5))
    # the picture's right side is the patient's left: columns run toward the patient's left, rows toward the back
    assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
    assert np.abs(window(np.asarray(volume.dataobj, np.float32))[..., 1] - picture).max() <= 0.5  # int16 HU rounding
    with pytest.raises(FileExistsError, match="not replaced"):
        write_demo_volume(image, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]  # no temporary file left
