"""Every bundle the project ships, with the tiny override that lets its configs run in seconds on a CPU.

``tests/test_bundles.py`` runs the checks every bundle must pass over this table, and the ``trained_bundle``
fixture (``conftest.py``) trains each bundle once per session for them and for the bundle's own tests. A new
bundle gets the checks by being listed here (a bundle under ``bundles/`` that is missing fails the suite).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BundleCase:
    """How the suite runs one bundle.

    Args:
        name: the folder under ``bundles/``.
        tiny: override merged on ``demo.json``: random tiny encoders, 64x64 images, no progress bar.
        phases: the config stacks (after ``train.json``) trained in order; TAMISeg's phase II loads phase I.
        epochs: training epochs of the last phase (earlier phases take theirs from ``tiny``).
        multi_gpu_args: extra arguments of the two-process gloo run (e.g. where phase I's checkpoint is).
        export_input: (image channels, text layers, text width) of the export check's dummy input, or None
            for an image-only network.
        exportable: whether ``scripts/export.py`` can trace the network (LCPDN cannot: its fixed noise comes from a
            seeded generator, which a trace does not keep).
        offline_overrides: the overrides that turn the full train.json's pretrained weights off (for the
            full-size shape check, offline).
    """

    name: str
    tiny: dict
    phases: tuple[tuple[str, ...], ...] = ((),)
    epochs: int = 2
    multi_gpu_args: tuple[str, ...] = ()
    export_input: tuple[int, int, int] | None = field(default=None)
    exportable: bool = True
    offline_overrides: dict = field(default_factory=lambda: {"imagenet_weights": False})


BUNDLES = {
    "c2seg": BundleCase(
        "c2seg",
        tiny={"image_size": [64, 64], "text_encoder_id": "tiny-random-bert",
              "backbone_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 16},
              "text_hidden_size": 32, "num_heads": 2, "embed_dim": 16,
              "pretrain_epochs": 1, "pretrain_batch_size": 4, "epochs": 1, "show_progress": False},
        phases=(("pretrain.json",), ()),
        epochs=1,
        multi_gpu_args=("--phase1_checkpoint", "{bundle_root}/models/pretrain/model.pt"),
        export_input=(1, 2, 32),
    ),
    "himix": BundleCase(
        "himix",
        tiny={"image_size": [64, 64], "text_encoder_id": "tiny-random-bert",
              "backbone_kwargs": {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]},
              "text_hidden_size": 32, "text_num_layers": 4, "num_heads": 2, "show_progress": False},
        export_input=(1, 4, 32),
    ),
    "lcpdn": BundleCase(
        "lcpdn",
        tiny={"image_size": [64, 64], "text_encoder_id": "tiny-random-bert", "text_hidden_size": 32,
              "image_encoder_kwargs": {"depth": 1, "embed_dim": 16, "num_heads": 2, "img_size": 64},
              "image_encoder_input_size": 64, "unet_channels": [8, 16], "attention_levels": [False, True],
              "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 8, "feature_blocks": [1, 2],
              "fusion_width": 8, "classifier_channels": [8], "num_heads": 2, "train_items": None,
              "pretrain_epochs": 1, "pretrain_batch_size": 4, "epochs": 1, "batch_size": 2, "val_interval": 1,
              "show_progress": False},
        phases=(("pretrain.json",), ()),
        epochs=1,
        multi_gpu_args=("--phase1_checkpoint", "{bundle_root}/models/pretrain/model.pt"),
        exportable=False,
        offline_overrides={"clip_weights": False},
    ),
    "tamiseg": BundleCase(
        "tamiseg",
        tiny={"image_size": [64, 64], "text_encoder_id": "tiny-random-bert",
              "backbone_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
              "feature_width": 32, "decoder_width": 16, "text_hidden_size": 32, "num_heads": 2,
              "teacher_kwargs": {"depth": 4, "embed_dim": 32, "num_heads": 2},
              "pretrain_epochs": 1, "pretrain_batch_size": 4, "epochs": 1, "show_progress": False},
        phases=(("pretrain.json",), ()),
        epochs=1,
        multi_gpu_args=("--phase1_checkpoint", "{bundle_root}/models/pretrain/model.pt"),
        export_input=(1, 2, 32),
    ),
    "unet": BundleCase("unet", tiny={"image_size": [64, 64], "show_progress": False}),
}
