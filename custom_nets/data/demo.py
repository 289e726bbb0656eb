"""A deterministic *referring* demo data set: chest-like radiographs where only the report sentence says
which of several look-alike opacities are lesions.

Each 256x256 image shows a body outline and two lung fields. Three or four opacities, all drawn from the
same distribution, sit in different lung zones (upper / middle / lower of each lung). The sentence names
one or two of them; the mask covers exactly those. An image-only model cannot know which opacities count,
and a sentence about other zones must move the prediction.

Radiological convention: the patient's left lung is on the image's right (larger column index).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from custom_nets.text.prompts import ZONES, zone_sentence

SPLITS = {"training": "train", "validation": "val", "test": "test"}


@dataclass
class DemoCase:
    """One generated sample. Arrays are (rows, columns) = (y, x), as written to the PNG."""

    image: np.ndarray  # uint8 (H, W)
    mask: np.ndarray  # uint8 (H, W), 0 or 255
    text: str
    lesion_zones: list[tuple[str, str]]
    distractor_zones: list[tuple[str, str]]
    zone_boxes: dict[tuple[str, str], tuple[int, int, int, int]] = field(default_factory=dict)  # y0, y1, x0, x1


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding (numpy only, so the bytes do not depend on a filter library)."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.pad(a.astype(np.float64), r, mode="edge")
    out = np.apply_along_axis(np.convolve, 0, out, k, mode="valid")
    out = np.apply_along_axis(np.convolve, 1, out, k, mode="valid")
    return out.astype(np.float32)


def make_case(rng: np.random.Generator, size: int = 256) -> DemoCase:
    """Draw one image, its mask and its sentence from ``rng``."""
    shape = (size, size)
    s = size / 256.0
    img = np.full(shape, 12.0, dtype=np.float32)
    img[_ellipse(shape, 134 * s, 128 * s, 118 * s, 112 * s + rng.uniform(-4, 4) * s)] = 112.0

    lung_masks, zone_boxes = {}, {}
    for side, sign in (("right", -1), ("left", +1)):  # patient's right lung on the image's left
        cx = 128 * s + sign * (52 + rng.uniform(-4, 4)) * s
        cy = (122 + rng.uniform(-5, 5)) * s
        rx, ry = (36 + rng.uniform(-3, 3)) * s, (80 + rng.uniform(-5, 5)) * s
        lung_masks[side] = _ellipse(shape, cy, cx, ry, rx)
        img[lung_masks[side]] = 42.0
        for k, level in enumerate(("upper", "middle", "lower")):
            y0 = cy - ry + k * 2 * ry / 3
            zone_boxes[(level, side)] = (int(y0), int(np.ceil(y0 + 2 * ry / 3)), int(cx - rx), int(np.ceil(cx + rx)))
    # faint ribs: horizontal bands across the lungs
    yy = np.mgrid[: shape[0], : shape[1]][0]
    ribs = (np.sin(yy / (9.0 * s) + rng.uniform(0, np.pi)) > 0.7) & (lung_masks["left"] | lung_masks["right"])
    img[ribs] += 10.0

    n_opacities = int(rng.integers(3, 5))
    n_lesions = int(rng.integers(1, 3))
    chosen = [ZONES[i] for i in rng.choice(len(ZONES), size=n_opacities, replace=False)]
    lesion_zones, distractor_zones = chosen[:n_lesions], chosen[n_lesions:]

    mask = np.zeros(shape, dtype=bool)
    opacity = np.zeros(shape, dtype=np.float32)
    for zone in chosen:
        y0, y1, x0, x1 = zone_boxes[zone]
        cy, cx = rng.uniform(y0 + 0.35 * (y1 - y0), y1 - 0.35 * (y1 - y0)), rng.uniform(x0 + 0.35 * (x1 - x0), x1 - 0.35 * (x1 - x0))
        blob = np.zeros(shape, dtype=bool)
        for _ in range(int(rng.integers(2, 4))):  # irregular: a few overlapping ellipses
            r = rng.uniform(8, 13) * s
            blob |= _ellipse(shape, cy + rng.uniform(-6, 6) * s, cx + rng.uniform(-6, 6) * s, r * rng.uniform(0.75, 1.25), r)
        blob &= lung_masks[zone[1]]
        blob[: max(y0, 0)] = False
        blob[y1:] = False
        opacity += blob * rng.uniform(45, 65)
        if zone in lesion_zones:
            mask |= blob
    img += _blur(opacity, 1.5 * s)
    img = _blur(img, 1.0 * s) + rng.normal(0.0, 5.0, shape)
    image = np.clip(img, 0, 255).astype(np.uint8)

    # mention lesions from the top of the image down, right lung first, as reports usually do
    order = {z: i for i, z in enumerate(ZONES)}
    lesion_zones = sorted(lesion_zones, key=lambda z: order[z])
    return DemoCase(image, mask.astype(np.uint8) * 255, zone_sentence(lesion_zones), lesion_zones, distractor_zones, zone_boxes)


def _write_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array, mode="L").save(path, format="PNG")


def write_demo_dataset(
    data_root: str | os.PathLike,
    datalist_path: str | os.PathLike,
    seed: int = 0,
    n_train: int = 300,
    n_val: int = 60,
    n_test: int = 60,
    size: int = 256,
    overwrite: bool = False,
) -> dict:
    """Write the demo PNGs under ``data_root`` and a decathlon-style datalist (paths relative to the root).

    Nothing is half-written: the images go to a temporary folder beside ``data_root`` that is renamed into
    place at the end, and the datalist is written to a temporary file and renamed. An existing data root or
    a different existing datalist is replaced only with ``overwrite=True``.

    Returns:
        the datalist as a dict.
    """
    data_root, datalist_path = Path(data_root), Path(datalist_path)
    counts = {"training": n_train, "validation": n_val, "test": n_test}
    datalist: dict = {"description": f"textseg-bundles demo referring data set (seed {seed}, {size}x{size})", "seed": seed}
    # generate the datalist first (cheap) to check for conflicts before anything is written
    cases: dict[str, list[DemoCase]] = {}
    for split_id, (split, n) in enumerate(counts.items()):
        cases[split] = [make_case(np.random.default_rng([seed, split_id, i]), size) for i in range(n)]
        datalist[split] = [
            {
                "image": f"images/{SPLITS[split]}_{i:04d}.png",
                "label": f"masks/{SPLITS[split]}_{i:04d}.png",
                "text": c.text,
                "lesion_zones": [" ".join(z) for z in c.lesion_zones],
                "distractor_zones": [" ".join(z) for z in c.distractor_zones],
            }
            for i, c in enumerate(cases[split])
        ]
    text = json.dumps(datalist, indent=1) + "\n"
    if datalist_path.exists() and datalist_path.read_text() != text and not overwrite:
        raise FileExistsError(f"{datalist_path} exists and differs from what seed {seed} gives; pass overwrite=True (--overwrite) to replace it.")
    if data_root.exists() and not overwrite:
        raise FileExistsError(f"{data_root} exists; pass overwrite=True (--overwrite) to replace it.")

    data_root.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{data_root.name}.partial-", dir=data_root.parent))
    try:
        (tmp_root / "images").mkdir()
        (tmp_root / "masks").mkdir()
        for split, split_cases in cases.items():
            for item, case in zip(datalist[split], split_cases):
                _write_png(case.image, tmp_root / item["image"])
                _write_png(case.mask, tmp_root / item["label"])
        if data_root.exists():
            shutil.rmtree(data_root)
        os.replace(tmp_root, data_root)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    datalist_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{datalist_path.name}.", dir=datalist_path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp_name, datalist_path)
    return datalist


def write_demo_volume(image: str | os.PathLike, output: str | os.PathLike, slices: int = 3,
                      spacing: tuple[float, float, float] = (0.7, 0.7, 2.5), overwrite: bool = False) -> Path:
    """A CT-like NIfTI volume from a demo radiograph, to try the volume path (MONAI Label, ``infer_dicom.py``).

    Every axial slice is the picture (as MONAI reads a PNG: first axis = column), mapped back through the lung
    window to HU, so the volume path's windowing gives the picture again; the mask of each slice is the
    picture's mask. The picture shows the patient's left on its right, and an axial slice is displayed the same
    way, so the affine says so: columns run toward the patient's left, rows toward the back (axis codes L, P, S;
    RAS diagonal ``(-spacing, -spacing, +spacing)``), and a viewer shows the lesions on their true side.
    Written under a temporary name, then renamed; an existing file is kept unless ``overwrite``.
    """
    import nibabel as nib

    from custom_nets.utils.files import write_atomically
    from custom_nets.transforms.intensity import LUNG_WINDOW, ct_window_range

    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; not replaced (--overwrite replaces it)")
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    picture = np.asarray(Image.open(image).convert("L"), np.float32).T  # (X, Y)
    low, high = ct_window_range(*LUNG_WINDOW)
    hu = np.round(np.repeat(picture[..., None], slices, axis=-1) / 255.0 * (high - low) + low).astype(np.int16)
    volume = nib.Nifti1Image(hu, np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]))  # L, P, S
    return write_atomically(output, lambda tmp: nib.save(volume, tmp))
