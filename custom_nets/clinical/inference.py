"""Run a trained bundle on clinical inputs: CT volumes slice by slice, radiographs whole.

The bundle's ``inference.json`` (plus override files, e.g. ``demo.json``) gives the network, the text
encoder, ``image_size`` and ``in_channels``; the checkpoint is ``<bundle_root>/models/model.pt``. Each slice
is normalised as in training (per channel), resized to the training size, segmented, and the logits are
resized back, so the mask has the source's exact grid (:class:`~custom_nets.inferers.SliceWiseInferer`, the
same path MONAI Label's app takes for volumes); :class:`~custom_nets.inferers.TextInferer` encodes the study's
sentence once and gives it to every slice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SimpleInferer

from custom_nets.bundle import config_files
from custom_nets.clinical.io import ClinicalInputError, Radiograph, Volume
from custom_nets.inferers import ResizingSliceNetwork, SliceWiseInferer, TextInferer
from custom_nets.transforms.intensity import LUNG_WINDOW, ct_window_range, window
from custom_nets.transforms.orientation import NetworkOrientationd, radiograph_to_network

#: DICOM ViewPosition values of lateral chest projections
LATERAL_VIEWS = ("LL", "RL", "LLD", "RLD", "LAT")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BundleSegmenter:
    """A bundle ready for clinical inputs.

    Args:
        bundle: a bundle name under ``bundles/`` or a bundle folder, holding ``configs/inference.json``.
        config_overrides: extra config files merged on ``inference.json`` (names in ``configs/`` or paths).
        bundle_root: where ``models/model.pt`` is (default: ``bundle``).
        checkpoint: explicit checkpoint path (default: ``<bundle_root>/models/model.pt``).
        ct_window: (centre, width) in HU applied to CT before the network's normalisation.
        slice_batch: slices per forward pass.
        device: torch device.

    Bad settings (a window that is not finite or has width <= 0, ``slice_batch`` < 1, a missing file, a checkpoint
    that does not fit the network) raise ValueError or FileNotFoundError naming the value or file, before any work.
    :attr:`made_with` records what makes a mask (bundle, version, checkpoint and config hashes, window), for resuming.
    """

    def __init__(self, bundle: str | os.PathLike, config_overrides: Sequence[str] = (), bundle_root: str | None = None,
                 checkpoint: str | None = None, ct_window: tuple[float, float] = LUNG_WINDOW, slice_batch: int = 8,
                 device: str | torch.device = "cpu") -> None:
        files = config_files(bundle, "inference.json", config_overrides)
        bundle, configs = files[0].parent.parent, files[0].parent
        ct_window_range(*ct_window)  # finite, width > 0: a NaN window would give empty masks without a word
        if isinstance(slice_batch, bool) or not isinstance(slice_batch, int) or slice_batch < 1:
            raise ValueError(f"slice batch must be a whole number >= 1, got {slice_batch!r}")
        parser = ConfigParser()
        parser.read_config([str(f) for f in files])
        # what the bundle's settings are, the device aside (it changes no mask beyond rounding)
        config_digest = hashlib.sha256(json.dumps(parser.get(), sort_keys=True, default=str).encode()).hexdigest()
        parser["device"] = str(device)
        checkpoint = Path(checkpoint or Path(bundle_root or bundle) / "models" / "model.pt")
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint} (train the bundle, or pass --checkpoint)")
        meta = json.loads((configs / "metadata.json").read_text()) if (configs / "metadata.json").is_file() else {}
        self.name, self.version = bundle.name, str(meta.get("version", "0"))
        self.device = torch.device(device)
        network = parser.get_parsed_content("network_def").to(self.device).eval()
        try:
            state = torch.load(checkpoint, map_location=self.device, weights_only=True)
            network.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - unpickling and shape errors alike: the file does not fit
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ValueError(f"checkpoint {checkpoint} does not fit the {bundle.name} network built from "
                             f"{[f.name for f in files]} ({type(e).__name__}: {reason}); was it trained with other "
                             "config overrides (--config)?") from None
        self.network = ResizingSliceNetwork(network, parser.get_parsed_content("image_size"),
                                            parser.get_parsed_content("in_channels")).eval()
        self.text_encoder = parser.get_parsed_content("text_encoder") if parser.get("text_encoder") else None
        self.ct_window, self.slice_batch = tuple(float(v) for v in ct_window), slice_batch
        self.made_with = {"bundle": self.name, "version": self.version, "checkpoint_sha256": file_sha256(checkpoint),
                          "config_sha256": config_digest, "ct_window": list(self.ct_window)}

    def _inferer(self, inner) -> TextInferer:
        return TextInferer(self.text_encoder, inner)

    @torch.no_grad()
    def segment_volume(self, volume: Volume, text: str | None = None, windowed: bool = True) -> np.ndarray:
        """A uint8 0/1 mask of the volume's shape, on its grid; ``windowed=False`` for volumes already in 0..255.

        The volume goes to the network in the networks' orientation (:class:`~custom_nets.transforms.NetworkOrientationd`,
        from its affine), and the mask comes back onto the stored grid; an oblique or non-axial volume is refused.
        """
        array = window(volume.array, *self.ct_window) if windowed else volume.array.astype(np.float32)
        orient = NetworkOrientationd("image")
        image = MetaTensor(torch.from_numpy(array)[None], affine=torch.as_tensor(volume.affine, dtype=torch.float64),
                           meta={"filename_or_obj": volume.source})
        try:
            oriented = orient({"image": image})["image"]
        except ValueError as e:
            raise ClinicalInputError(str(e)) from None
        slices = SliceWiseInferer(self.network.image_size, self.network.in_channels, slice_batch=self.slice_batch)
        logits = self._inferer(slices)(oriented.as_tensor()[None].to(self.device), self.network.network, text=text)
        pred = MetaTensor((logits[0] > 0).to(torch.uint8).cpu(), affine=oriented.affine,  # sigmoid(logit) > 0.5
                          applied_operations=list(oriented.applied_operations))
        mask = orient.inverse({"image": pred})["image"]
        return mask.as_tensor()[0].numpy().astype(np.uint8)

    @torch.no_grad()
    def segment_radiograph(self, image: Radiograph, text: str | None = None) -> np.ndarray:
        """A uint8 0/1 mask (X, Y) of the radiograph's stored pixels.

        A DICOM radiograph goes to the network displayed as the networks saw radiographs (its PatientOrientation
        read, :func:`~custom_nets.transforms.radiograph_to_network`); a lateral or oblique one is refused.
        """
        orientation = getattr(image.dataset, "PatientOrientation", None)  # None for a PNG: taken as displayed
        view = str(getattr(image.dataset, "ViewPosition", "") or "").upper()
        if view in LATERAL_VIEWS:
            raise ClinicalInputError(f"{image.source}: ViewPosition {view} is a lateral view; the networks read frontal "
                                     "chest radiographs")
        try:
            array, back = radiograph_to_network(image.array, orientation, image.source)
        except ValueError as e:
            raise ClinicalInputError(str(e)) from None
        x = torch.from_numpy(array)[None, None].to(self.device)
        logits = self._inferer(SimpleInferer())(x, self.network, text=text)
        return np.ascontiguousarray(back((logits[0, 0] > 0).to(torch.uint8).cpu().numpy()))
