"""Run a trained bundle on clinical inputs: CT volumes slice by slice, radiographs whole.

The bundle's own ``inference.json`` (plus override files, e.g. ``demo.json``) is the pipeline: its
``prepare_image`` (``preprocessing`` after loading: orientation and CT window for volumes, channels,
normalisation and resize for images), its ``inferer`` (:class:`~custom_nets.inferers.TextInferer` around
:class:`~custom_nets.inferers.SliceWiseInferer`) and its ``mask_postprocessing`` (sigmoid, ``Invertd`` back onto
the source grid, threshold) run here exactly as ``python -m monai.bundle run inferring`` and MONAI Label run them,
so a change to a bundle's preprocessing changes every way of using it. What this module adds is the clinical
side: DICOM/NIfTI reading, a radiograph's PatientOrientation, refusals, and :attr:`BundleSegmenter.made_with`.
The checkpoint is ``<bundle_root>/models/model.pt``.
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
from monai.inferers import Inferer
from monai.transforms import Compose

from custom_nets.bundle import config_files
from custom_nets.clinical.io import ClinicalInputError, Radiograph, Volume
from custom_nets.inferers import TextInferer
from custom_nets.transforms.intensity import LUNG_WINDOW, ct_window_range
from custom_nets.transforms.orientation import radiograph_to_network

#: DICOM ViewPosition values of lateral chest projections
LATERAL_VIEWS = ("LL", "RL", "LLD", "RLD", "LAT")
#: the keys of ``inference.json`` the clinical path runs (``preprocessing`` = ``load_image`` + ``prepare_image``)
PIPELINE_KEYS = ("network_def", "prepare_image", "inferer", "mask_postprocessing")


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
        missing = [k for k in PIPELINE_KEYS if k not in parser]
        if missing:
            raise ValueError(f"{files[0]}: the bundle's inference config has no {missing}; the clinical path runs the "
                             f"bundle's own {list(PIPELINE_KEYS)}")
        # what the bundle's settings are, the device, window and slice batch aside (recorded on their own)
        config_digest = hashlib.sha256(json.dumps(parser.get(), sort_keys=True, default=str).encode()).hexdigest()
        self.ct_window, self.slice_batch = tuple(float(v) for v in ct_window), slice_batch
        parser["displayable_configs#ct_window_centre"], parser["displayable_configs#ct_window_width"] = self.ct_window
        parser["slice_batch"], parser["device"] = slice_batch, str(device)
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
        self.network = network
        self.prepare_image: Compose = parser.get_parsed_content("prepare_image")
        self.inferer: Inferer = parser.get_parsed_content("inferer")
        self.mask_postprocessing: Compose = parser.get_parsed_content("mask_postprocessing")
        self.made_with = {"bundle": self.name, "version": self.version, "checkpoint_sha256": file_sha256(checkpoint),
                          "config_sha256": config_digest, "ct_window": list(self.ct_window)}

    @torch.no_grad()
    def _segment(self, image: MetaTensor, text: str | None) -> MetaTensor:
        """The bundle's pipeline on one loaded image (channel first): a 0/1 mask on the image's own grid."""
        try:
            data = self.prepare_image({"image": image})
        except (RuntimeError, ValueError) as e:  # MONAI's Compose wraps a transform's error in RuntimeError
            cause = e
            while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, ValueError):  # e.g. an oblique volume (NetworkOrientationd), a 4D array
                raise ClinicalInputError(str(cause)) from None
            raise
        # a bundle without text (the image-only baseline) has no TextInferer: the sentence is not used
        text_kwargs = {"text": text} if isinstance(self.inferer, TextInferer) else {}
        data["pred"] = self.inferer(data["image"][None].to(self.device), self.network, **text_kwargs)[0].cpu()
        return self.mask_postprocessing(data)["pred"]

    def segment_volume(self, volume: Volume, text: str | None = None) -> np.ndarray:
        """A uint8 0/1 mask of the volume's shape, on its grid (HU in, the bundle's CT window applied).

        The volume goes to the network in the networks' orientation (the config's
        :class:`~custom_nets.transforms.NetworkOrientationd`, from its affine), and the mask comes back onto the
        stored grid; an oblique or non-axial volume is refused.
        """
        image = MetaTensor(torch.from_numpy(np.asarray(volume.array, np.float32))[None],
                           affine=torch.as_tensor(volume.affine, dtype=torch.float64),
                           meta={"filename_or_obj": volume.source})
        return self._segment(image, text).as_tensor()[0].numpy().astype(np.uint8)

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
        loaded = MetaTensor(torch.from_numpy(np.asarray(array, np.float32))[None], meta={"filename_or_obj": image.source})
        mask = self._segment(loaded, text).as_tensor()[0].numpy().astype(np.uint8)
        return np.ascontiguousarray(back(mask))
